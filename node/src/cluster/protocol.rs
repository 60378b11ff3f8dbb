//! What nodes say to each other on the peer QUIC endpoint: one
//! `u32 LE length + postcard` frame per message. Raft traffic travels on
//! unidirectional streams (no reply: Raft retries on its own); requests
//! that want an answer (a topic change forwarded to the metadata leader)
//! use a bidirectional stream, one request and one response.
//!
//! Every peer connection is mutually authenticated (cluster CA): nothing
//! here is decoded from a sender that could not prove cluster membership.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest peer frame: metadata snapshots travel in one.
pub const PEER_FRAME_BYTES_MAX: usize = 64 << 20;

/// A topic as a client asked for it; the metadata leader places it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: Option<u16>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Metadata Raft messages (protobuf, as raft-rs encodes them) from node `from`.
    MetaRaft {
        from: u64,
        messages: Vec<Vec<u8>>,
    },
    CreateTopic(TopicSpec),
    DeleteTopic {
        name: String,
    },
    /// Partition Raft envelopes (`sprawl_cluster::replica::envelope`) from
    /// node `from`'s shard for the same shard index here.
    PartitionRaft {
        from: u64,
        shard: u32,
        #[serde(with = "raw_bytes")]
        envelope: Vec<u8>,
    },
    /// A partition replica won an election: record `node` as the leader
    /// the cluster routes to, with the Raft term as the leader epoch.
    ClaimLeadership {
        topic: String,
        partition: u32,
        node: u64,
        term: u64,
    },
    /// A partition's leader moving a replica: record `replicas` as the
    /// replica set (same leader, next leader epoch).
    SetReplicas {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
    },
}

/// Leader epochs: the Raft term of the partition group in the high bits
/// (a new leader's claim always exceeds every earlier epoch), a counter of
/// replica-set changes within the term in the low 16.
pub const EPOCH_TERM_SHIFT: u32 = 16;

/// Why a forwarded change failed, in terms the client protocol can carry.
/// A byte string as one length-prefixed run (serde's default for `Vec<u8>`
/// is a sequence, which postcard walks byte by byte: a tenth of a leader's
/// CPU went there with 100 KiB replica envelopes).
mod raw_bytes {
    use serde::de::{Deserializer, Error, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectKind {
    TopicExists,
    UnknownTopic,
    Invalid,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Committed at this metadata log index (wait for it to be applied
    /// locally before answering a client, so it reads its own write).
    Committed {
        index: u64,
    },
    Rejected {
        kind: RejectKind,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer frame of {0} bytes exceeds the {PEER_FRAME_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("undecodable peer frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("peer stream: {0}")]
    Io(#[from] std::io::Error),
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    // Encoded behind a 4-byte hole for the length: one copy of the body.
    let mut frame = postcard::to_extend(message, vec![0u8; 4])?;
    let len = frame.len() - 4;
    if len > PEER_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    input: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > PEER_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    // Grown as bytes arrive, not allocated up front from the prefix alone.
    let mut body = Vec::with_capacity(len.min(64 << 10));
    (&mut *input)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(postcard::from_bytes(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn frames_round_trip_and_refuse_garbage() {
        let requests = vec![
            PeerRequest::MetaRaft {
                from: 3,
                messages: vec![vec![1, 2, 3], vec![]],
            },
            PeerRequest::CreateTopic(TopicSpec {
                name: "orders".into(),
                partitions: 8,
                replication_factor: Some(1),
                retention_bytes: None,
                retention_ms: Some(60_000),
            }),
            PeerRequest::DeleteTopic { name: "x".into() },
            PeerRequest::PartitionRaft {
                from: 2,
                shard: 1,
                envelope: (0..=255u8).collect(),
            },
            PeerRequest::ClaimLeadership {
                topic: "orders".into(),
                partition: 3,
                node: 2,
                term: 7,
            },
        ];
        let mut wire = Vec::new();
        for r in &requests {
            write_frame(&mut wire, r).await.unwrap();
        }
        let mut input = &wire[..];
        for r in &requests {
            let got: PeerRequest = read_frame(&mut input).await.unwrap().unwrap();
            assert_eq!(&got, r);
        }
        assert!(read_frame::<_, PeerRequest>(&mut input)
            .await
            .unwrap()
            .is_none());

        let mut huge = &(u32::MAX.to_le_bytes())[..];
        assert!(matches!(
            read_frame::<_, PeerRequest>(&mut huge).await,
            Err(FrameError::TooLarge(_))
        ));
        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<_, PeerRequest>(&mut &garbage[..]).await,
            Err(FrameError::Decode(_))
        ));
    }
}
