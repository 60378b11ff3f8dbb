//! The node-to-node envelope: every Raft message of every group that one
//! node sends another in one poll, in one frame.
//!
//! ```text
//! header (12 bytes, little-endian)
//!   magic   b"SR"
//!   version u8    = 1
//!   flags   u8    = 0 (reserved)
//!   length  u32   body bytes
//!   crc     u32   CRC32C of header bytes 0..8, then of the body
//! body
//!   from u64, to u64                      sending and receiving node
//!   heartbeats: u32 count, then per heartbeat (25 bytes)
//!     group u64, kind u8 (0 heartbeat, 1 response), term u64, commit u64
//!   messages: u32 count, then per message
//!     group u64, length u32, raft-rs `eraftpb::Message` (protobuf)
//! ```
//!
//! Heartbeat coalescing (the CockroachDB / Redpanda idea): with thousands of
//! partition groups between the same nodes, heartbeats dominate the message
//! count. Here
//! - all groups' messages to one node travel in one envelope per poll, so
//!   the per-message cost (a stream write, a syscall, a packet) is paid once
//!   per destination, not once per group;
//! - a heartbeat or heartbeat response that carries nothing but group, term
//!   and commit (no read-index context) is a fixed 25-byte record instead
//!   of a protobuf message; sender and receiver come from the envelope;
//! - of several heartbeats (or responses) of one group in one envelope only
//!   the newest is kept: it supersedes the others (same sender, same or
//!   later term, commit never lower), and Raft tolerates a lost one anyway.
//!
//! Any other message (appends, votes, snapshots, heartbeats with context)
//! is carried as-is, protobuf-encoded. Heartbeats are stepped before the
//! other messages of an envelope; Raft tolerates the reordering.
//!
//! Trust: the frame is checked (length, CRC32C, every count against the
//! bytes left) and decoding never panics on any input, but the protobuf
//! messages inside are only ever decoded from authenticated peers (the
//! node-to-node transport is mutually authenticated): protobuf 2 parsing is
//! not hardened against hostile input (RUSTSEC-2024-0437), and raft-rs
//! trusts its peers' messages anyway. The CRC catches corruption, not
//! attackers.

use std::collections::HashMap;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use super::GroupId;

pub const ENVELOPE_MAGIC: [u8; 2] = *b"SR";
pub const ENVELOPE_VERSION: u8 = 1;
pub const ENVELOPE_HEADER_BYTES: usize = 12;
/// Bound of one envelope's body (snapshot messages ride inside).
pub const ENVELOPE_BODY_BYTES_MAX: usize = 256 << 20;
const HEARTBEAT_BYTES: usize = 25;
const MESSAGE_HEADER_BYTES: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{0} bytes: shorter than the 12-byte header")]
    TooShort(usize),
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved flags {0:#04x} set")]
    BadFlags(u8),
    #[error("body of {len} bytes exceeds the bound of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("header says {declared} body bytes, {actual} follow")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("body truncated in {0}")]
    Truncated(&'static str),
    #[error("{0} bytes after the last message")]
    TrailingBytes(usize),
    #[error("heartbeat kind {0}")]
    BadHeartbeatKind(u8),
    #[error("message {index} of group {group}: {reason}")]
    BadMessage {
        index: usize,
        group: GroupId,
        reason: String,
    },
    #[error(
        "envelope from {envelope_from} to {envelope_to} carries a message from {from} to {to}"
    )]
    Inconsistent {
        envelope_from: u64,
        envelope_to: u64,
        from: u64,
        to: u64,
    },
    #[error("envelope from node {claimed} arrived on the connection of node {peer}")]
    WrongSender { claimed: u64, peer: u64 },
    #[error("envelope for node {to} reached node {node}")]
    Misaddressed { to: u64, node: u64 },
    #[error("message does not encode: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeartbeatKind {
    Heartbeat = 0,
    Response = 1,
}

/// A coalesced heartbeat: the only fields raft-rs sets on a heartbeat (or
/// its response) without read-index context, besides sender and receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub group: GroupId,
    pub kind: HeartbeatKind,
    pub term: u64,
    pub commit: u64,
}

impl Heartbeat {
    /// The record for `message` if it says nothing more than one (so that
    /// [`Heartbeat::to_message`] gives it back exactly).
    pub fn from_message(group: GroupId, message: &Message) -> Option<Heartbeat> {
        let kind = match message.get_msg_type() {
            MessageType::MsgHeartbeat => HeartbeatKind::Heartbeat,
            MessageType::MsgHeartbeatResponse => HeartbeatKind::Response,
            _ => return None,
        };
        let hb = Heartbeat {
            group,
            kind,
            term: message.term,
            commit: message.commit,
        };
        (hb.to_message(message.from, message.to) == *message).then_some(hb)
    }

    pub fn to_message(&self, from: u64, to: u64) -> Message {
        let mut m = Message {
            from,
            to,
            term: self.term,
            commit: self.commit,
            ..Message::default()
        };
        m.set_msg_type(match self.kind {
            HeartbeatKind::Heartbeat => MessageType::MsgHeartbeat,
            HeartbeatKind::Response => MessageType::MsgHeartbeatResponse,
        });
        m
    }
}

/// One decoded envelope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    pub from: u64,
    pub to: u64,
    pub heartbeats: Vec<Heartbeat>,
    pub messages: Vec<(GroupId, Message)>,
}

impl Envelope {
    /// Every message, heartbeats (expanded) first.
    pub fn into_messages(self) -> impl Iterator<Item = (GroupId, Message)> {
        let (from, to) = (self.from, self.to);
        self.heartbeats
            .into_iter()
            .map(move |hb| (hb.group, hb.to_message(from, to)))
            .chain(self.messages)
    }

    pub fn message_count(&self) -> usize {
        self.heartbeats.len() + self.messages.len()
    }

    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = vec![0u8; ENVELOPE_HEADER_BYTES];
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&(self.heartbeats.len() as u32).to_le_bytes());
        for hb in &self.heartbeats {
            out.extend_from_slice(&hb.group.0.to_le_bytes());
            out.push(hb.kind as u8);
            out.extend_from_slice(&hb.term.to_le_bytes());
            out.extend_from_slice(&hb.commit.to_le_bytes());
        }
        out.extend_from_slice(&(self.messages.len() as u32).to_le_bytes());
        for (group, m) in &self.messages {
            let bytes = m
                .write_to_bytes()
                .map_err(|e| EnvelopeError::Encode(e.to_string()))?;
            out.extend_from_slice(&group.0.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        let body = out.len() - ENVELOPE_HEADER_BYTES;
        if body > ENVELOPE_BODY_BYTES_MAX {
            return Err(EnvelopeError::TooLarge {
                len: body,
                max: ENVELOPE_BODY_BYTES_MAX,
            });
        }
        out[0..2].copy_from_slice(&ENVELOPE_MAGIC);
        out[2] = ENVELOPE_VERSION;
        out[3] = 0;
        out[4..8].copy_from_slice(&(body as u32).to_le_bytes());
        let crc = frame_crc(&out[0..8], &out[ENVELOPE_HEADER_BYTES..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Total frame length announced by a header (for reading envelopes off
    /// a byte stream): checks magic, version, flags and the size bound.
    pub fn frame_len(header: &[u8]) -> Result<usize, EnvelopeError> {
        if header.len() < ENVELOPE_HEADER_BYTES {
            return Err(EnvelopeError::TooShort(header.len()));
        }
        let magic = [header[0], header[1]];
        if magic != ENVELOPE_MAGIC {
            return Err(EnvelopeError::BadMagic(magic));
        }
        if header[2] != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(header[2]));
        }
        if header[3] != 0 {
            return Err(EnvelopeError::BadFlags(header[3]));
        }
        let len = u32_at(&header[4..8]) as usize;
        if len > ENVELOPE_BODY_BYTES_MAX {
            return Err(EnvelopeError::TooLarge {
                len,
                max: ENVELOPE_BODY_BYTES_MAX,
            });
        }
        Ok(ENVELOPE_HEADER_BYTES + len)
    }

    /// Decode one whole frame. Never panics; any malformed input is an
    /// error (see the module docs for what is trusted).
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let total = Self::frame_len(bytes)?;
        if bytes.len() != total {
            return Err(EnvelopeError::LengthMismatch {
                declared: total - ENVELOPE_HEADER_BYTES,
                actual: bytes.len() - ENVELOPE_HEADER_BYTES,
            });
        }
        let stored = u32_at(&bytes[8..12]);
        let mut body = &bytes[ENVELOPE_HEADER_BYTES..];
        let computed = frame_crc(&bytes[0..8], body);
        if stored != computed {
            return Err(EnvelopeError::Checksum { stored, computed });
        }
        let from = u64_at(take(&mut body, 8, "sender")?);
        let to = u64_at(take(&mut body, 8, "receiver")?);
        let count = u32_at(take(&mut body, 4, "heartbeat count")?) as usize;
        if count > body.len() / HEARTBEAT_BYTES {
            return Err(EnvelopeError::Truncated("heartbeats"));
        }
        let mut heartbeats = Vec::with_capacity(count);
        for _ in 0..count {
            let rec = take(&mut body, HEARTBEAT_BYTES, "heartbeat")?;
            let kind = match rec[8] {
                0 => HeartbeatKind::Heartbeat,
                1 => HeartbeatKind::Response,
                k => return Err(EnvelopeError::BadHeartbeatKind(k)),
            };
            heartbeats.push(Heartbeat {
                group: GroupId(u64_at(&rec[0..8])),
                kind,
                term: u64_at(&rec[9..17]),
                commit: u64_at(&rec[17..25]),
            });
        }
        let count = u32_at(take(&mut body, 4, "message count")?) as usize;
        if count > body.len() / MESSAGE_HEADER_BYTES {
            return Err(EnvelopeError::Truncated("messages"));
        }
        let mut messages = Vec::with_capacity(count);
        for index in 0..count {
            let group = GroupId(u64_at(take(&mut body, 8, "message group")?));
            let len = u32_at(take(&mut body, 4, "message length")?) as usize;
            let bytes = take(&mut body, len, "message")?;
            // Authenticated peers only: see the module docs.
            let m = Message::parse_from_bytes(bytes).map_err(|e| EnvelopeError::BadMessage {
                index,
                group,
                reason: e.to_string(),
            })?;
            if m.from != from || m.to != to {
                return Err(EnvelopeError::Inconsistent {
                    envelope_from: from,
                    envelope_to: to,
                    from: m.from,
                    to: m.to,
                });
            }
            messages.push((group, m));
        }
        if !body.is_empty() {
            return Err(EnvelopeError::TrailingBytes(body.len()));
        }
        Ok(Envelope {
            from,
            to,
            heartbeats,
            messages,
        })
    }
}

/// Builds one envelope from a poll's messages, coalescing heartbeats.
#[derive(Debug)]
pub struct EnvelopeBuilder {
    envelope: Envelope,
    heartbeat_at: HashMap<(GroupId, HeartbeatKind), usize>,
    /// Heartbeats superseded by a newer one of the same group.
    pub superseded: u64,
}

impl EnvelopeBuilder {
    pub fn new(from: u64, to: u64) -> Self {
        Self {
            envelope: Envelope {
                from,
                to,
                ..Envelope::default()
            },
            heartbeat_at: HashMap::new(),
            superseded: 0,
        }
    }

    /// Add one message of `group` (addressed from/to this envelope's nodes;
    /// the caller routes by `message.to`).
    pub fn push(&mut self, group: GroupId, message: Message) {
        debug_assert_eq!(
            (message.from, message.to),
            (self.envelope.from, self.envelope.to)
        );
        if let Some(hb) = Heartbeat::from_message(group, &message) {
            match self.heartbeat_at.get(&(group, hb.kind)) {
                Some(&at) => {
                    let old = &mut self.envelope.heartbeats[at];
                    if (hb.term, hb.commit) >= (old.term, old.commit) {
                        *old = hb;
                    }
                    self.superseded += 1;
                }
                None => {
                    self.heartbeat_at
                        .insert((group, hb.kind), self.envelope.heartbeats.len());
                    self.envelope.heartbeats.push(hb);
                }
            }
            return;
        }
        self.envelope.messages.push((group, message));
    }

    pub fn is_empty(&self) -> bool {
        self.envelope.message_count() == 0
    }

    pub fn finish(self) -> Envelope {
        self.envelope
    }
}

fn frame_crc(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), body)
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
    if buf.len() < n {
        return Err(EnvelopeError::Truncated(what));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::Entry;

    fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> Message {
        Heartbeat {
            group: GroupId(0),
            kind: HeartbeatKind::Heartbeat,
            term,
            commit,
        }
        .to_message(from, to)
    }

    fn arb_message(from: u64, to: u64) -> impl Strategy<Value = Message> {
        (
            0u8..4,
            0u64..50,
            0u64..100,
            0u64..100,
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..4),
            proptest::collection::vec(any::<u8>(), 0..3),
            any::<bool>(),
        )
            .prop_map(
                move |(kind, term, index, commit, entries, context, reject)| {
                    let mut m = Message {
                        from,
                        to,
                        term,
                        commit,
                        ..Message::default()
                    };
                    match kind {
                        0 => m.set_msg_type(MessageType::MsgHeartbeat),
                        1 => m.set_msg_type(MessageType::MsgHeartbeatResponse),
                        2 => {
                            m.set_msg_type(MessageType::MsgAppend);
                            m.index = index;
                            m.log_term = term;
                            m.set_entries(
                                entries
                                    .into_iter()
                                    .enumerate()
                                    .map(|(i, data)| Entry {
                                        index: index + 1 + i as u64,
                                        term,
                                        data: data.into(),
                                        ..Entry::default()
                                    })
                                    .collect(),
                            );
                        }
                        _ => {
                            m.set_msg_type(MessageType::MsgAppendResponse);
                            m.index = index;
                            m.reject = reject;
                        }
                    }
                    // Some heartbeats carry read-index context: not coalescible.
                    m.context = context.into();
                    m
                },
            )
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(
            msgs in proptest::collection::vec((0u64..6, arb_message(3, 7)), 0..40)
        ) {
            let mut b = EnvelopeBuilder::new(3, 7);
            for (g, m) in msgs.iter().cloned() {
                b.push(GroupId(g), m);
            }
            let env = b.finish();
            let bytes = env.encode().unwrap();
            prop_assert_eq!(Envelope::frame_len(&bytes).unwrap(), bytes.len());
            let back = Envelope::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &env);
            // Nothing but superseded heartbeats is lost, and every message
            // comes back exactly as pushed.
            let out: Vec<(GroupId, Message)> = back.into_messages().collect();
            for (g, m) in &msgs {
                if Heartbeat::from_message(GroupId(*g), m).is_none() {
                    prop_assert!(out.contains(&(GroupId(*g), m.clone())));
                }
            }
            for (g, m) in &out {
                prop_assert!(msgs.iter().any(|(g2, m2)| GroupId(*g2) == *g && m2 == m));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Envelope::decode(&bytes);
            let _ = Envelope::frame_len(&bytes);
        }

        /// Garbage with a valid header and CRC reaches the body parser.
        #[test]
        fn arbitrary_bodies_with_valid_frames_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            // A plausible start (nodes, counts) followed by junk, or junk.
            let mut b = prefix;
            b.extend_from_slice(&body);
            let mut frame = vec![b'S', b'R', ENVELOPE_VERSION, 0];
            frame.extend_from_slice(&(b.len() as u32).to_le_bytes());
            let crc = frame_crc(&frame[0..8], &b);
            frame.extend_from_slice(&crc.to_le_bytes());
            frame.extend_from_slice(&b);
            let _ = Envelope::decode(&frame);
        }

        /// Flipping any bit of a valid envelope is caught.
        #[test]
        fn corruption_is_detected(
            msgs in proptest::collection::vec((0u64..4, arb_message(1, 2)), 1..10),
            pick in any::<usize>(),
            bit in 0u8..8,
        ) {
            let mut b = EnvelopeBuilder::new(1, 2);
            for (g, m) in msgs {
                b.push(GroupId(g), m);
            }
            let mut bytes = b.finish().encode().unwrap();
            let at = pick % bytes.len();
            bytes[at] ^= 1 << bit;
            prop_assert!(Envelope::decode(&bytes).is_err());
        }
    }

    #[test]
    fn heartbeats_of_a_group_coalesce_to_the_newest() {
        let mut b = EnvelopeBuilder::new(1, 2);
        for g in 0..100 {
            b.push(GroupId(g), heartbeat(1, 2, 3, 5));
        }
        b.push(GroupId(7), heartbeat(1, 2, 3, 9));
        let mut with_context = heartbeat(1, 2, 3, 9);
        with_context.context = b"read".to_vec().into();
        b.push(GroupId(8), with_context.clone());
        assert_eq!(b.superseded, 1);
        let env = b.finish();
        assert_eq!(env.heartbeats.len(), 100);
        assert_eq!(env.heartbeats[7].commit, 9);
        assert_eq!(env.messages, vec![(GroupId(8), with_context)]);
        // 100 heartbeats: one 2.5 KB frame.
        let bytes = env.encode().unwrap();
        assert!(bytes.len() < 100 * 25 + 200, "{} bytes", bytes.len());
    }

    #[test]
    fn frames_are_checked_before_anything_is_parsed() {
        let env = Envelope {
            from: 1,
            to: 2,
            ..Envelope::default()
        };
        let good = env.encode().unwrap();
        assert_eq!(Envelope::decode(&good).unwrap(), env);
        assert_eq!(
            Envelope::decode(&good[..5]),
            Err(EnvelopeError::TooShort(5))
        );
        let mut bad = good.clone();
        bad[2] = 9;
        assert_eq!(
            Envelope::decode(&bad),
            Err(EnvelopeError::UnsupportedVersion(9))
        );
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            Envelope::decode(&long),
            Err(EnvelopeError::LengthMismatch { .. })
        ));
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Envelope::decode(&huge),
            Err(EnvelopeError::TooLarge { .. })
        ));
        // A message whose sender is not the envelope's is refused.
        let forged = Envelope {
            from: 1,
            to: 2,
            heartbeats: Vec::new(),
            messages: vec![(GroupId(1), heartbeat(5, 2, 1, 1))],
        };
        assert!(matches!(
            Envelope::decode(&forged.encode().unwrap()),
            Err(EnvelopeError::Inconsistent { from: 5, .. })
        ));
    }
}
