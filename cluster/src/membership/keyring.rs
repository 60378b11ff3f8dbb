//! Authenticated encryption of every gossip datagram with a shared cluster
//! key, and the keyring that lets that key be rotated without downtime.
//!
//! Packet layout (all integers big-endian):
//!
//! ```text
//! +---------+-----------+--------------------------------+----------------------+---------+
//! | version | key id    | nonce: sender prefix | counter | ciphertext (foca)    | tag     |
//! | 1 byte  | 4 bytes   | 6 bytes              | 6 bytes | variable             | 16 bytes|
//! +---------+-----------+--------------------------------+----------------------+---------+
//!  \______________ header: sent in the clear, authenticated as AAD ________/
//! ```
//!
//! The cipher is ChaCha20-Poly1305 (`ring`). The key id in the clear lets a
//! receiver pick the key without trial decryption, so a keyring holding
//! several keys costs one AEAD open per packet.
//!
//! Nonces never repeat for a key: the first 6 bytes are a random prefix
//! drawn once per process (per `Keyring`), the last 6 bytes a counter that
//! only goes up and is never allowed to wrap (sealing fails after 2^48
//! packets, ~9 years at a million packets per second). Two processes share a
//! prefix with probability ~ p²/2^49 for p processes that ever used a key
//! (2e-7 for ten thousand restarts), and only then could their counters meet.
//!
//! Replays: the (key id, prefix) pair names one sending process, so each
//! receiver keeps a sliding window of counters seen per sender (as IPsec and
//! WireGuard do). Only authenticated packets touch the window, so a forger
//! cannot push it forward. A network-duplicated packet is a replay too and
//! is dropped the same way, which SWIM does not mind.

use std::collections::HashMap;
use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use super::config::PACKET_BYTES_MAX;

/// The packet format this module writes and the only one it reads.
pub const PACKET_VERSION: u8 = 1;
/// Bytes of the clear header: version, key id, nonce.
pub const HEADER_BYTES: usize = 1 + 4 + NONCE_LEN;
/// Bytes of the Poly1305 tag at the end of every packet.
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed packet has on top of its plaintext.
pub const SEAL_OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// Bytes of a cluster key's secret.
pub const KEY_BYTES: usize = 32;
/// Keys one keyring holds at most: a rotation needs two, a slow rollout
/// three; more than this is a forgotten retirement.
pub const KEYS_MAX: usize = 8;
/// Senders whose replay window is remembered. Past this, the least recently
/// heard sender is forgotten (a replay of its old packets would then pass
/// the window, which SWIM's incarnation numbers make harmless). Bounded so
/// that restarts (each a new prefix) cannot grow memory forever.
pub const REPLAY_SENDERS_MAX: usize = 4096;
/// Width of each sender's replay window, in packets. Anything older than
/// the newest counter minus this is dropped as a replay. The counter is
/// shared by all of a sender's destinations, so this must cover the
/// packets a sender sends to others while one of ours is still in flight.
pub const REPLAY_WINDOW_PACKETS: u64 = 1024;
/// Bytes of the per-process nonce prefix.
pub const NONCE_PREFIX_BYTES: usize = 6;
const COUNTER_MAX: u64 = (1 << 48) - 1;
const REPLAY_WINDOW_WORDS: usize = (REPLAY_WINDOW_PACKETS / 64) as usize;

/// Identifies a key in the clear header so the receiver can pick it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A shared cluster key: every member holding it can join and read gossip.
#[derive(Clone)]
pub struct ClusterKey {
    id: KeyId,
    secret: [u8; KEY_BYTES],
}

impl ClusterKey {
    /// A key from its id and 32 secret bytes (from a secrets store or
    /// `ClusterKey::from_hex`).
    pub fn new(id: KeyId, secret: [u8; KEY_BYTES]) -> Self {
        Self { id, secret }
    }

    /// A key from 64 hex digits, the form operators put in config files.
    pub fn from_hex(id: KeyId, hex: &str) -> Result<Self, KeyringError> {
        let hex = hex.trim();
        if hex.len() != KEY_BYTES * 2 {
            return Err(KeyringError::BadKeyHex {
                id,
                reason: "expected 64 hex digits",
            });
        }
        let mut secret = [0u8; KEY_BYTES];
        for (i, byte) in secret.iter_mut().enumerate() {
            let pair = &hex[i * 2..i * 2 + 2];
            *byte = u8::from_str_radix(pair, 16).map_err(|_| KeyringError::BadKeyHex {
                id,
                reason: "not a hex digit",
            })?;
        }
        Ok(Self { id, secret })
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate(id: KeyId) -> Result<Self, KeyringError> {
        let mut secret = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| KeyringError::Random)?;
        Ok(Self { id, secret })
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl fmt::Debug for ClusterKey {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Misuse of the keyring by its owner (not packet problems: see
/// [`OpenError`]).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyringError {
    /// `add` of an id already in the ring.
    #[error("key {0} is already in the keyring")]
    DuplicateKeyId(KeyId),
    /// `promote`/`retire` of an id not in the ring.
    #[error("key {0} is not in the keyring")]
    UnknownKeyId(KeyId),
    /// The primary seals every outgoing packet; promote another first.
    #[error("key {0} is the primary: promote another key before retiring it")]
    RetirePrimary(KeyId),
    /// More than [`KEYS_MAX`] keys.
    #[error("keyring already holds {KEYS_MAX} keys: retire one before adding key {0}")]
    Full(KeyId),
    /// A key given as hex could not be parsed.
    #[error("cluster key {id}: {reason}")]
    BadKeyHex {
        /// The key being parsed.
        id: KeyId,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
}

/// Why a packet could not be sealed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// 2^48 packets were sealed by this keyring: reusing a nonce would
    /// break the cipher, so the process must restart (new prefix).
    #[error(
        "nonce counter exhausted after 2^48 packets: restart the process for a new nonce prefix"
    )]
    NonceSpaceExhausted,
}

/// Why a received packet was dropped. Each is counted in [`RejectCounts`].
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than a header and a tag.
    #[error("packet of {len} bytes is shorter than the {SEAL_OVERHEAD_BYTES}-byte header and tag")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Longer than the largest packet a member sends.
    #[error("packet of {len} bytes is over the {max} byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A format version this build does not read.
    #[error("packet format version {0} is not {PACKET_VERSION}")]
    BadVersion(u8),
    /// Sealed with a key this keyring does not hold (another cluster, or a
    /// key retired here before the sender stopped using it).
    #[error("packet sealed with unknown key {0}")]
    UnknownKey(KeyId),
    /// The tag did not verify: tampered, corrupted, or a wrong secret under
    /// a known key id.
    #[error("packet under key {0} failed authentication")]
    AuthFailed(KeyId),
    /// Authentic but already received (or older than the replay window).
    #[error("packet under key {key} from sender {prefix:012x} counter {counter} is a replay")]
    Replayed {
        /// The key it was sealed with.
        key: KeyId,
        /// The sender's nonce prefix.
        prefix: u64,
        /// The packet's counter.
        counter: u64,
    },
}

/// Packets dropped by [`Keyring::open`], by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// [`OpenError::Truncated`].
    pub truncated: u64,
    /// [`OpenError::TooLarge`].
    pub too_large: u64,
    /// [`OpenError::BadVersion`].
    pub bad_version: u64,
    /// [`OpenError::UnknownKey`].
    pub unknown_key: u64,
    /// [`OpenError::AuthFailed`].
    pub auth_failed: u64,
    /// [`OpenError::Replayed`].
    pub replayed: u64,
}

impl RejectCounts {
    /// All rejected packets.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.too_large
            + self.bad_version
            + self.unknown_key
            + self.auth_failed
            + self.replayed
    }

    fn count(&mut self, err: &OpenError) {
        let slot = match err {
            OpenError::Truncated { .. } => &mut self.truncated,
            OpenError::TooLarge { .. } => &mut self.too_large,
            OpenError::BadVersion(_) => &mut self.bad_version,
            OpenError::UnknownKey(_) => &mut self.unknown_key,
            OpenError::AuthFailed(_) => &mut self.auth_failed,
            OpenError::Replayed { .. } => &mut self.replayed,
        };
        *slot += 1;
    }
}

/// Counters of a keyring since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyringStats {
    /// Packets sealed.
    pub sealed: u64,
    /// Packets that opened and passed the replay window.
    pub opened: u64,
    /// Packets dropped, by reason.
    pub rejected: RejectCounts,
}

struct KeyEntry {
    id: KeyId,
    aead: LessSafeKey,
}

/// Counters seen from one sender under one key: the newest, and a bitmap
/// of the [`REPLAY_WINDOW_PACKETS`] before it (bit i = newest - i seen).
struct ReplayWindow {
    newest: u64,
    seen: [u64; REPLAY_WINDOW_WORDS],
    last_used_tick: u64,
}

impl ReplayWindow {
    fn new(counter: u64, tick: u64) -> Self {
        let mut seen = [0u64; REPLAY_WINDOW_WORDS];
        seen[0] = 1;
        Self {
            newest: counter,
            seen,
            last_used_tick: tick,
        }
    }

    /// Whether `counter` was not seen yet and is still inside the window.
    fn is_fresh(&self, counter: u64) -> bool {
        if counter > self.newest {
            return true;
        }
        let age = self.newest - counter;
        if age >= REPLAY_WINDOW_PACKETS {
            return false;
        }
        self.seen[(age / 64) as usize] & (1 << (age % 64)) == 0
    }

    fn mark(&mut self, counter: u64, tick: u64) {
        debug_assert!(self.is_fresh(counter));
        self.last_used_tick = tick;
        if counter > self.newest {
            self.shift(counter - self.newest);
            self.newest = counter;
            self.seen[0] |= 1;
        } else {
            let age = self.newest - counter;
            self.seen[(age / 64) as usize] |= 1 << (age % 64);
        }
    }

    /// Ages every seen bit by `by` packets (bit i moves to bit i + by).
    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW_PACKETS {
            self.seen = [0; REPLAY_WINDOW_WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..REPLAY_WINDOW_WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.seen[f]);
            let low = from
                .and_then(|f| f.checked_sub(1))
                .map_or(0, |f| self.seen[f]);
            self.seen[i] = if bits == 0 {
                high
            } else {
                (high << bits) | (low >> (64 - bits))
            };
        }
    }
}

/// The keys a member accepts, the primary it seals with, its nonce state
/// and the replay windows of the senders it hears.
///
/// Rotation without downtime, each step applied on every member before the
/// next one starts: `add(new)` (accepted, not yet used) → `promote(new)`
/// (now sealing with it; members still on the old primary are read with
/// the old key) → `retire(old)`.
pub struct Keyring {
    keys: Vec<KeyEntry>,
    primary: KeyId,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
    next_counter: u64,
    packet_bytes_max: usize,
    replay: HashMap<(KeyId, u64), ReplayWindow>,
    replay_tick: u64,
    stats: KeyringStats,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.key_ids())
            .field("primary", &self.primary)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring sealing with `primary`, with a nonce prefix drawn from the
    /// operating system's CSPRNG. It accepts packets up to the UDP maximum
    /// until [`Keyring::set_packet_bytes_max`] lowers that (the membership
    /// driver sets its configured size).
    pub fn new(primary: ClusterKey) -> Result<Self, KeyringError> {
        let mut prefix = [0u8; NONCE_PREFIX_BYTES];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| KeyringError::Random)?;
        Ok(Self::with_nonce_prefix(primary, prefix))
    }

    /// Like [`Keyring::new`] with a given nonce prefix, for deterministic
    /// simulation. The prefix must never be used by two keyrings that share
    /// a key (that would repeat nonces): real nodes use [`Keyring::new`].
    pub fn with_nonce_prefix(primary: ClusterKey, nonce_prefix: [u8; NONCE_PREFIX_BYTES]) -> Self {
        let primary_id = primary.id;
        Self {
            keys: vec![KeyEntry::from_key(&primary)],
            primary: primary_id,
            nonce_prefix,
            next_counter: 0,
            packet_bytes_max: PACKET_BYTES_MAX,
            replay: HashMap::new(),
            replay_tick: 0,
            stats: KeyringStats::default(),
        }
    }

    /// Packets longer than this are dropped before any work
    /// ([`OpenError::TooLarge`]).
    pub fn set_packet_bytes_max(&mut self, packet_bytes_max: usize) {
        self.packet_bytes_max = packet_bytes_max;
    }

    /// Accept packets sealed with `key` (does not seal with it yet).
    pub fn add(&mut self, key: ClusterKey) -> Result<(), KeyringError> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(KeyringError::DuplicateKeyId(key.id));
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(KeyringError::Full(key.id));
        }
        tracing::info!(key = %key.id, "gossip key added");
        self.keys.push(KeyEntry::from_key(&key));
        Ok(())
    }

    /// Seal every packet from now on with key `id` (already added).
    pub fn promote(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if !self.keys.iter().any(|k| k.id == id) {
            return Err(KeyringError::UnknownKeyId(id));
        }
        tracing::info!(key = %id, previous = %self.primary, "gossip key promoted to primary");
        self.primary = id;
        Ok(())
    }

    /// Stop accepting packets sealed with key `id`.
    pub fn retire(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if id == self.primary {
            return Err(KeyringError::RetirePrimary(id));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(KeyringError::UnknownKeyId(id));
        }
        // Windows under a retired key can never match again.
        self.replay.retain(|(key, _), _| *key != id);
        tracing::info!(key = %id, "gossip key retired");
        Ok(())
    }

    /// The key that seals outgoing packets.
    pub fn primary(&self) -> KeyId {
        self.primary
    }

    /// Every key accepted, in the order added.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Counters since creation.
    pub fn stats(&self) -> KeyringStats {
        self.stats
    }

    /// The largest packet accepted by [`Keyring::open`].
    pub fn packet_bytes_max(&self) -> usize {
        self.packet_bytes_max
    }

    /// Seals `plaintext` with the primary key into a new packet.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let counter = self.next_counter;
        if counter > COUNTER_MAX {
            return Err(SealError::NonceSpaceExhausted);
        }
        self.next_counter += 1;

        let entry = self
            .keys
            .iter()
            .find(|k| k.id == self.primary)
            .expect("the primary is always in the keyring: retire refuses it");
        let mut packet = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD_BYTES);
        packet.push(PACKET_VERSION);
        packet.extend_from_slice(&self.primary.0.to_be_bytes());
        packet.extend_from_slice(&self.nonce_prefix);
        packet.extend_from_slice(&counter.to_be_bytes()[2..]);
        debug_assert_eq!(packet.len(), HEADER_BYTES);
        let nonce = nonce_of(&packet);
        packet.extend_from_slice(plaintext);

        let (header, body) = packet.split_at_mut(HEADER_BYTES);
        let tag = entry
            .aead
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), body)
            .expect("ChaCha20-Poly1305 seals any packet that fits in memory");
        packet.extend_from_slice(tag.as_ref());
        self.stats.sealed += 1;
        Ok(packet)
    }

    /// Authenticates and decrypts `packet` into `plaintext` (cleared
    /// first). Every failure is counted by reason in [`Keyring::stats`].
    /// Returns the key the packet was sealed with.
    pub fn open(&mut self, packet: &[u8], plaintext: &mut Vec<u8>) -> Result<KeyId, OpenError> {
        let result = self.open_inner(packet, plaintext);
        match &result {
            Ok(_) => self.stats.opened += 1,
            Err(err) => self.stats.rejected.count(err),
        }
        result
    }

    fn open_inner(&mut self, packet: &[u8], plaintext: &mut Vec<u8>) -> Result<KeyId, OpenError> {
        plaintext.clear();
        if packet.len() < SEAL_OVERHEAD_BYTES {
            return Err(OpenError::Truncated { len: packet.len() });
        }
        if packet.len() > self.packet_bytes_max {
            return Err(OpenError::TooLarge {
                len: packet.len(),
                max: self.packet_bytes_max,
            });
        }
        let (header, body) = packet.split_at(HEADER_BYTES);
        if header[0] != PACKET_VERSION {
            return Err(OpenError::BadVersion(header[0]));
        }
        let key_id = KeyId(u32::from_be_bytes(
            header[1..5].try_into().expect("4 bytes"),
        ));
        let entry = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(OpenError::UnknownKey(key_id))?;

        let mut prefix_bytes = [0u8; 8];
        prefix_bytes[2..].copy_from_slice(&header[5..5 + NONCE_PREFIX_BYTES]);
        let prefix = u64::from_be_bytes(prefix_bytes);
        let mut counter_bytes = [0u8; 8];
        counter_bytes[2..].copy_from_slice(&header[5 + NONCE_PREFIX_BYTES..HEADER_BYTES]);
        let counter = u64::from_be_bytes(counter_bytes);

        // Cheap pre-check so replays cost no decryption; the window is only
        // moved after the tag verifies.
        let sender = (key_id, prefix);
        if let Some(window) = self.replay.get(&sender) {
            if !window.is_fresh(counter) {
                return Err(OpenError::Replayed {
                    key: key_id,
                    prefix,
                    counter,
                });
            }
        }

        plaintext.extend_from_slice(body);
        let opened_len = entry
            .aead
            .open_in_place(nonce_of(header), Aad::from(header), plaintext)
            .map_err(|_| OpenError::AuthFailed(key_id))?
            .len();
        plaintext.truncate(opened_len);

        self.replay_tick += 1;
        let tick = self.replay_tick;
        match self.replay.get_mut(&sender) {
            Some(window) => window.mark(counter, tick),
            None => {
                if self.replay.len() >= REPLAY_SENDERS_MAX {
                    self.forget_least_recent_sender();
                }
                self.replay.insert(sender, ReplayWindow::new(counter, tick));
            }
        }
        Ok(key_id)
    }

    fn forget_least_recent_sender(&mut self) {
        // O(senders), only when a new sender arrives at the bound: rare
        // (a restart somewhere in a cluster of thousands).
        if let Some(oldest) = self
            .replay
            .iter()
            .min_by_key(|(_, w)| w.last_used_tick)
            .map(|(sender, _)| *sender)
        {
            self.replay.remove(&oldest);
        }
    }
}

impl KeyEntry {
    fn from_key(key: &ClusterKey) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.secret)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        Self {
            id: key.id,
            aead: LessSafeKey::new(unbound),
        }
    }
}

fn nonce_of(header: &[u8]) -> Nonce {
    let bytes: [u8; NONCE_LEN] = header[5..HEADER_BYTES]
        .try_into()
        .expect("header holds a 12-byte nonce");
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1400;

    fn key(id: u32, fill: u8) -> ClusterKey {
        ClusterKey::new(KeyId(id), [fill; KEY_BYTES])
    }

    fn ring(primary: ClusterKey, prefix: u8) -> Keyring {
        let mut ring = Keyring::with_nonce_prefix(primary, [prefix; NONCE_PREFIX_BYTES]);
        ring.set_packet_bytes_max(MAX);
        ring
    }

    fn open(ring: &mut Keyring, packet: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        ring.open(packet, &mut out).map(|_| out)
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let mut a = ring(key(1, 7), 1);
        let mut b = ring(key(1, 7), 2);
        let msg = b"ping from node 3 with some updates";
        let packet = a.seal(msg).unwrap();
        assert_eq!(packet.len(), msg.len() + SEAL_OVERHEAD_BYTES);
        assert!(
            !packet.windows(msg.len()).any(|w| w == msg),
            "plaintext visible on the wire"
        );
        assert_eq!(open(&mut b, &packet).unwrap(), msg);
        assert_eq!(b.stats().opened, 1);
        assert_eq!(a.stats().sealed, 1);
    }

    #[test]
    fn nonces_never_repeat_within_a_keyring() {
        let mut a = ring(key(1, 7), 1);
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..5000 {
            let p = a.seal(b"x").unwrap();
            assert!(nonces.insert(p[5..HEADER_BYTES].to_vec()), "nonce reused");
        }
    }

    #[test]
    fn nonce_counter_refuses_to_wrap() {
        let mut a = ring(key(1, 7), 1);
        a.next_counter = COUNTER_MAX;
        assert!(a.seal(b"last").is_ok());
        assert_eq!(a.seal(b"one too many"), Err(SealError::NonceSpaceExhausted));
        assert_eq!(a.seal(b"still no"), Err(SealError::NonceSpaceExhausted));
    }

    #[test]
    fn every_tampered_byte_fails_authentication() {
        let mut a = ring(key(1, 7), 1);
        let packet = a.seal(b"member 4 is suspect").unwrap();
        let mut b = ring(key(1, 7), 2);
        // Flip one bit in each byte after the version and key id (those two
        // fail earlier with their own reasons, tested below).
        for i in 5..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&mut b, &bad),
                Err(OpenError::AuthFailed(KeyId(1))),
                "byte {i}"
            );
        }
        assert_eq!(b.stats().rejected.auth_failed, (packet.len() - 5) as u64);
        // The untouched packet still opens: failures did not move the window.
        assert!(open(&mut b, &packet).is_ok());
    }

    #[test]
    fn wrong_secret_under_the_same_key_id_fails_authentication() {
        let mut a = ring(key(1, 7), 1);
        let mut b = ring(key(1, 8), 2);
        let packet = a.seal(b"hello").unwrap();
        assert_eq!(open(&mut b, &packet), Err(OpenError::AuthFailed(KeyId(1))));
        assert_eq!(b.stats().rejected.auth_failed, 1);
        assert_eq!(b.stats().opened, 0);
    }

    #[test]
    fn unknown_key_id_and_bad_version_are_rejected_by_reason() {
        let mut a = ring(key(9, 7), 1);
        let mut b = ring(key(1, 7), 2);
        let packet = a.seal(b"hello").unwrap();
        assert_eq!(open(&mut b, &packet), Err(OpenError::UnknownKey(KeyId(9))));
        let mut v2 = packet.clone();
        v2[0] = 2;
        assert_eq!(open(&mut b, &v2), Err(OpenError::BadVersion(2)));
        let counts = b.stats().rejected;
        assert_eq!((counts.unknown_key, counts.bad_version), (1, 1));
        assert_eq!(counts.total(), 2);
    }

    #[test]
    fn truncated_empty_and_oversized_packets_are_rejected() {
        let mut a = ring(key(1, 7), 1);
        let mut b = ring(key(1, 7), 2);
        let packet = a.seal(b"some gossip").unwrap();
        assert_eq!(open(&mut b, &[]), Err(OpenError::Truncated { len: 0 }));
        assert_eq!(
            open(&mut b, &packet[..SEAL_OVERHEAD_BYTES - 1]),
            Err(OpenError::Truncated {
                len: SEAL_OVERHEAD_BYTES - 1
            })
        );
        // Cut but still long enough to parse: the tag no longer matches.
        assert_eq!(
            open(&mut b, &packet[..packet.len() - 1]),
            Err(OpenError::AuthFailed(KeyId(1)))
        );
        let huge = vec![PACKET_VERSION; MAX + 1];
        assert_eq!(
            open(&mut b, &huge),
            Err(OpenError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
        let counts = b.stats().rejected;
        assert_eq!(
            (counts.truncated, counts.auth_failed, counts.too_large),
            (2, 1, 1)
        );
    }

    #[test]
    fn garbage_never_opens() {
        let mut b = ring(key(1, 7), 2);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600 {
            let mut junk = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                junk.push(state as u8);
            }
            if len > 4 {
                // Half of them claim the right version and key id, so the
                // tag check is what stops them.
                if len % 2 == 0 {
                    junk[0] = PACKET_VERSION;
                    junk[1..5].copy_from_slice(&1u32.to_be_bytes());
                }
            }
            assert!(
                open(&mut b, &junk).is_err(),
                "garbage of {len} bytes opened"
            );
        }
        assert_eq!(b.stats().rejected.total(), 600);
        assert_eq!(b.stats().opened, 0);
    }

    #[test]
    fn replayed_packets_are_dropped_but_reordered_ones_pass() {
        let mut a = ring(key(1, 7), 1);
        let mut b = ring(key(1, 7), 2);
        let packets: Vec<_> = (0..10).map(|i| a.seal(&[i]).unwrap()).collect();
        // Out of order: 5, 3, 9, 0 ... all fresh.
        for i in [5usize, 3, 9, 0, 1, 2, 4, 6, 7, 8] {
            assert_eq!(open(&mut b, &packets[i]).unwrap(), vec![i as u8]);
        }
        for p in &packets {
            assert!(matches!(open(&mut b, p), Err(OpenError::Replayed { .. })));
        }
        assert_eq!(b.stats().rejected.replayed, 10);
        assert_eq!(b.stats().opened, 10);
    }

    #[test]
    fn packets_older_than_the_window_are_replays() {
        let mut a = ring(key(1, 7), 1);
        let mut b = ring(key(1, 7), 2);
        let old = a.seal(b"old").unwrap();
        let mut newest = Vec::new();
        for _ in 0..REPLAY_WINDOW_PACKETS {
            newest = a.seal(b"newer").unwrap();
        }
        assert!(open(&mut b, &newest).is_ok());
        assert!(matches!(
            open(&mut b, &old),
            Err(OpenError::Replayed { counter: 0, .. })
        ));
    }

    #[test]
    fn replay_window_tracks_each_sender_separately() {
        let mut a1 = ring(key(1, 7), 1);
        // Same key, a restarted process: new prefix, counter from zero.
        let mut a2 = ring(key(1, 7), 3);
        let mut b = ring(key(1, 7), 2);
        let p1 = a1.seal(b"first life").unwrap();
        let p2 = a2.seal(b"second life").unwrap();
        assert!(open(&mut b, &p1).is_ok());
        assert!(
            open(&mut b, &p2).is_ok(),
            "counter 0 from a new prefix is fresh"
        );
        assert!(open(&mut b, &p1).is_err());
        assert!(open(&mut b, &p2).is_err());
    }

    #[test]
    fn window_shift_keeps_bits_across_word_boundaries() {
        let mut w = ReplayWindow::new(100, 0);
        for c in [99, 40, 37] {
            w.mark(c, 0);
        }
        // Move by a non-multiple of 64 so bits straddle words.
        w.mark(170, 0);
        for c in [170, 100, 99, 40, 37] {
            assert!(!w.is_fresh(c), "counter {c} forgotten");
        }
        for c in [169, 101, 98, 41, 38, 36] {
            assert!(w.is_fresh(c), "counter {c} wrongly seen");
        }
        w.mark(170 + REPLAY_WINDOW_PACKETS + 5, 0);
        assert!(!w.is_fresh(170), "older than the window");
        assert!(w.is_fresh(171 + REPLAY_WINDOW_PACKETS));
    }

    #[test]
    fn rotation_add_promote_retire() {
        let k1 = key(1, 0x11);
        let k2 = key(2, 0x22);
        let mut a = ring(k1.clone(), 1);
        let mut b = ring(k1.clone(), 2);

        // Step 1: add everywhere; still sealing with k1.
        a.add(k2.clone()).unwrap();
        b.add(k2.clone()).unwrap();
        assert_eq!(
            a.add(k2.clone()),
            Err(KeyringError::DuplicateKeyId(KeyId(2)))
        );
        assert_eq!(a.seal(b"x").unwrap()[1..5], 1u32.to_be_bytes());

        // Step 2: promote on one member first: the other reads it with the
        // key it already added, and the promoted one still reads k1.
        a.promote(KeyId(2)).unwrap();
        let from_a = a.seal(b"sealed with k2").unwrap();
        assert_eq!(from_a[1..5], 2u32.to_be_bytes());
        assert_eq!(open(&mut b, &from_a).unwrap(), b"sealed with k2");
        let from_b = b.seal(b"sealed with k1").unwrap();
        assert_eq!(open(&mut a, &from_b).unwrap(), b"sealed with k1");
        b.promote(KeyId(2)).unwrap();

        // Step 3: retire k1; the primary cannot be retired.
        assert_eq!(
            a.retire(KeyId(2)),
            Err(KeyringError::RetirePrimary(KeyId(2)))
        );
        a.retire(KeyId(1)).unwrap();
        b.retire(KeyId(1)).unwrap();
        assert_eq!(
            a.retire(KeyId(1)),
            Err(KeyringError::UnknownKeyId(KeyId(1)))
        );
        assert_eq!(a.key_ids(), vec![KeyId(2)]);

        // A straggler still on k1 is now shut out.
        let mut straggler = ring(k1, 3);
        let late = straggler.seal(b"late").unwrap();
        assert_eq!(open(&mut a, &late), Err(OpenError::UnknownKey(KeyId(1))));
        let fine = b.seal(b"fine").unwrap();
        assert_eq!(open(&mut a, &fine).unwrap(), b"fine");
    }

    #[test]
    fn keyring_bounds_and_unknown_promotions() {
        let mut a = ring(key(0, 1), 1);
        for id in 1..KEYS_MAX as u32 {
            a.add(key(id, id as u8)).unwrap();
        }
        assert_eq!(a.add(key(99, 9)), Err(KeyringError::Full(KeyId(99))));
        assert_eq!(
            a.promote(KeyId(99)),
            Err(KeyringError::UnknownKeyId(KeyId(99)))
        );
        assert_eq!(a.primary(), KeyId(0));
    }

    #[test]
    fn hex_keys_parse_and_debug_hides_the_secret() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let k = ClusterKey::from_hex(KeyId(3), hex).unwrap();
        assert_eq!(k.secret[1], 0x11);
        assert_eq!(k.secret[31], 0xff);
        assert!(!format!("{k:?}").contains("17"), "secret bytes in Debug");
        assert!(matches!(
            ClusterKey::from_hex(KeyId(3), "abcd"),
            Err(KeyringError::BadKeyHex { .. })
        ));
        let bad = format!("zz{}", &hex[2..]);
        assert!(matches!(
            ClusterKey::from_hex(KeyId(3), &bad),
            Err(KeyringError::BadKeyHex { .. })
        ));
        let a = ClusterKey::generate(KeyId(4)).unwrap();
        let b = ClusterKey::generate(KeyId(4)).unwrap();
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn many_senders_stay_bounded() {
        let mut b = ring(key(1, 7), 2);
        for s in 0..(REPLAY_SENDERS_MAX as u64 + 10) {
            let mut prefix = [0u8; NONCE_PREFIX_BYTES];
            prefix.copy_from_slice(&(s + 1000).to_be_bytes()[2..]);
            let mut a = Keyring::with_nonce_prefix(key(1, 7), prefix);
            assert!(open(&mut b, &a.seal(b"x").unwrap()).is_ok());
        }
        assert_eq!(b.replay.len(), REPLAY_SENDERS_MAX);
    }
}
