//! Commands of the metadata state machine and their log encoding.
//!
//! An encoded command is one version byte followed by the postcard
//! encoding of [`MetaCommand`]. Postcard encodes enum variants by index, so
//! appending a variant keeps every existing entry decodable (older builds
//! cannot read the new one: propose it only once every node knows it). A
//! change to an existing variant's fields needs a new version byte and a
//! decoder for the old one, since logs and snapshots keep old entries.

use serde::{Deserialize, Serialize};

use super::membership::MembershipChange;

/// Version byte of [`encode_command`].
pub const COMMAND_ENCODING_VERSION: u8 = 1;

/// Topic configuration as the cluster replicates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    pub replication_factor: u16,
    /// Per partition; `None` = no size limit.
    pub retention_bytes: Option<u64>,
    /// `None` = no time limit.
    pub retention_ms: Option<u64>,
    /// Chosen by the proposer, never at apply time: applying must give
    /// every replica the same bytes, and replicas apply at different times.
    pub created_ms: i64,
}

/// One change to the metadata, as proposed and as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A new topic with its initial replica sets (from placement), one per
    /// partition; each partition's first replica is its first leader.
    CreateTopic {
        name: String,
        config: TopicConfig,
        replicas: Vec<Vec<u64>>,
    },
    DeleteTopic {
        name: String,
    },
    /// A partition's replica set and leader. `leader_epoch` must exceed the
    /// current epoch: it fences the previous leader's writes.
    SetAssignment {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
        leader: u64,
        leader_epoch: u64,
    },
    CommitGroupOffset {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    /// Carried by a Raft configuration change entry, never a normal one.
    ChangeMembership(MembershipChange),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty encoding")]
    Empty,
    #[error("encoding version {found} is not known (this build reads {supported})")]
    UnknownVersion { found: u8, supported: u8 },
    #[error("malformed encoding: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} trailing bytes after the encoding")]
    TrailingBytes(usize),
}

pub fn encode_command(command: &MetaCommand) -> Vec<u8> {
    encode_versioned(COMMAND_ENCODING_VERSION, command)
}

pub fn decode_command(bytes: &[u8]) -> Result<MetaCommand, DecodeError> {
    decode_versioned(COMMAND_ENCODING_VERSION, bytes)
}

pub(crate) fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Serialising owned strings, integers and collections into a Vec
    // cannot fail: postcard errors only on unsupported serde features.
    let body = postcard::to_stdvec(value).expect("postcard encodes plain data");
    out.extend_from_slice(&body);
    out
}

pub(crate) fn decode_versioned<T: for<'de> Deserialize<'de>>(
    version: u8,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let (&found, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if found != version {
        return Err(DecodeError::UnknownVersion {
            found,
            supported: version,
        });
    }
    let (value, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<MetaCommand> {
        vec![
            MetaCommand::CreateTopic {
                name: "orders".into(),
                config: TopicConfig {
                    partitions: 2,
                    replication_factor: 3,
                    retention_bytes: Some(1 << 30),
                    retention_ms: None,
                    created_ms: 1_700_000_000_000,
                },
                replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
            },
            MetaCommand::DeleteTopic {
                name: "orders".into(),
            },
            MetaCommand::SetAssignment {
                topic: "orders".into(),
                partition: 1,
                replicas: vec![2, 3, 4],
                leader: 3,
                leader_epoch: 7,
            },
            MetaCommand::CommitGroupOffset {
                group: "billing".into(),
                topic: "orders".into(),
                partition: 0,
                offset: 42,
            },
            MetaCommand::ChangeMembership(MembershipChange::Promote(4)),
        ]
    }

    #[test]
    fn commands_round_trip() {
        for command in samples() {
            let bytes = encode_command(&command);
            assert_eq!(bytes[0], COMMAND_ENCODING_VERSION);
            assert_eq!(decode_command(&bytes).unwrap(), command);
        }
    }

    #[test]
    fn encoding_is_pinned() {
        // Entries live in logs and snapshots for the cluster's lifetime: an
        // accidental change of the encoding must fail here, not in a mixed
        // version cluster.
        let bytes = encode_command(&MetaCommand::DeleteTopic { name: "t".into() });
        assert_eq!(bytes, vec![1, 1, 1, b't']);
    }

    #[test]
    fn bad_encodings_are_typed_errors() {
        assert!(matches!(decode_command(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode_command(&[9, 0]),
            Err(DecodeError::UnknownVersion {
                found: 9,
                supported: 1
            })
        ));
        let mut bytes = encode_command(&samples()[0]);
        bytes.push(0);
        assert!(matches!(
            decode_command(&bytes),
            Err(DecodeError::TrailingBytes(1))
        ));
        let bytes = encode_command(&samples()[0]);
        for cut in 1..bytes.len() {
            assert!(decode_command(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Unknown variant index.
        assert!(matches!(
            decode_command(&[1, 200]),
            Err(DecodeError::Malformed(_))
        ));
    }
}
