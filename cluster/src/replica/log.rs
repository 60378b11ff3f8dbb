//! [`ReplicaLog`]: the partition's log used *as* the Raft log, and
//! [`MemReplicaLog`], the in-memory implementation the tests and the
//! simulator run on.
//!
//! In production the implementation is an adapter over the partition's
//! segment log: one Raft entry is one record batch whose header carries the
//! Raft term (the batch header's epoch field), so the data is written once,
//! not once into a Raft log and again into the partition. The trait is the
//! narrow waist between the two: positions are Raft indices, entries are
//! raft-rs [`Entry`]s (type, term, index, batch bytes).
//!
//! Durability contract (what the driver relies on):
//! - [`ReplicaLog::append`] may be buffered (group commit); it becomes durable
//!   on [`ReplicaLog::sync`], and [`ReplicaLog::synced_index`] always says how
//!   far the log *as it is now* is durable. Nothing the driver sends vouches
//!   for an entry above that index.
//! - [`ReplicaLog::set_hard_state`]: the term and the vote are durable when it
//!   returns (they change only on elections, so the fsync is rare); the
//!   commit index in it may be persisted lazily, and recovery clamps it into
//!   the log.
//! - [`ReplicaLog::set_conf_state`] and [`ReplicaLog::install_snapshot`] are
//!   durable when they return (rare: membership changes, lagging followers).
//! - [`ReplicaLog::compact`] may be lazy: a crash may bring a longer log back,
//!   which is harmless.

use std::cell::RefCell;
use std::rc::Rc;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState};

/// Bound of one snapshot payload's entry count (a corrupt count field must
/// not make the decoder allocate gigabytes).
const PAYLOAD_ENTRY_BYTES_MIN: usize = 21;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaLogError {
    #[error("index {index} is compacted (the log starts after {start})")]
    Compacted { index: u64, start: u64 },
    #[error("index {index} is past the last index {last}")]
    Unavailable { index: u64, last: u64 },
    #[error("invalid write: {0}")]
    InvalidWrite(String),
    #[error("snapshot payload does not decode: {0}")]
    BadPayload(String),
    #[error("log I/O failed: {0}")]
    Io(String),
}

/// Where a log starts: every index up to and including `index` (whose entry
/// had `term`) is covered by a snapshot, i.e. is committed and no longer
/// served as Raft entries. `(0, 0)` for a brand-new log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSnapshot {
    pub index: u64,
    pub term: u64,
    /// The group's membership as of `index`.
    pub conf_state: ConfState,
}

/// The log of one partition replica, as the Raft driver needs it.
pub trait ReplicaLog {
    /// `(index, term)` the log starts after (see [`LogSnapshot`]).
    fn start(&self) -> (u64, u64);
    /// First index the log serves as an entry.
    fn first_index(&self) -> u64 {
        self.start().0 + 1
    }
    /// Last index written (synced or not); `start().0` when empty.
    fn last_index(&self) -> u64;
    /// Term of the entry at `index` (the start's term at `start().0`).
    fn term(&self, index: u64) -> Result<u64, ReplicaLogError>;
    /// Entries `lo..hi`, cut after `max_bytes` (but at least one).
    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, ReplicaLogError>;
    /// Append `entries` (contiguous), first dropping every stored entry at
    /// or after `entries[0].index`: the suffix truncation a follower does
    /// when a new leader's log disagrees with its uncommitted tail. Entries
    /// at or below the start are already covered and skipped. May be
    /// buffered until [`ReplicaLog::sync`].
    fn append(&mut self, entries: &[Entry]) -> Result<(), ReplicaLogError>;
    fn hard_state(&self) -> HardState;
    /// Term and vote durable on return; the commit index may be lazy.
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), ReplicaLogError>;
    /// The membership and the index of the entry that set it (durable).
    fn conf_state(&self) -> (ConfState, u64);
    /// Record the membership applied at `index` (a committed entry), and
    /// that `index` is committed. Durable on return.
    fn set_conf_state(&mut self, conf: &ConfState, index: u64) -> Result<(), ReplicaLogError>;
    /// Highest index up to which the log as it is now is durable.
    fn synced_index(&self) -> u64;
    /// Make every write so far durable.
    fn sync(&mut self) -> Result<(), ReplicaLogError>;
    /// Stop serving entries up to `through` (committed and applied) as Raft
    /// entries: the log then starts after `through`. In production this is
    /// retention deleting old segments (or tiering them away).
    fn compact(&mut self, through: u64) -> Result<(), ReplicaLogError>;
    /// What a follower that is behind the start receives with the Raft
    /// snapshot at `through`: in production a descriptor of where to fetch
    /// the data out of band (segments from the leader or tiered storage);
    /// [`MemReplicaLog`] carries the entries themselves.
    fn snapshot_payload(&self, through: u64) -> Result<Vec<u8>, ReplicaLogError>;
    /// For a log that is never compacted past its bootstrap snapshot: the
    /// snapshot a replica joining the group as node `to` starts from — the
    /// bootstrap index and term, the initial membership with `to` added as
    /// a learner (if it is not an initial voter) and no data — after which
    /// it receives every entry, membership changes included, from the
    /// leader. `None` (the default): send the regular snapshot.
    fn base_snapshot(&self, _to: u64) -> Option<LogSnapshot> {
        None
    }
    /// Replace the whole log by "it starts after `snapshot.index`", with the
    /// payload from [`ReplicaLog::snapshot_payload`]. Durable on return,
    /// together with every write before it.
    fn install_snapshot(
        &mut self,
        snapshot: &LogSnapshot,
        payload: &[u8],
    ) -> Result<(), ReplicaLogError>;
}

// ------------------------------------------------------------ payload codec

/// Encode entries as a snapshot payload: `u32 LE count`, then per entry
/// `u64 index | u64 term | u8 type | u32 length | data`, all little-endian.
pub fn encode_payload(entries: &[Entry]) -> Vec<u8> {
    let bytes: usize = entries.iter().map(|e| e.data.len() + 21).sum();
    let mut out = Vec::with_capacity(4 + bytes);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.term.to_le_bytes());
        out.push(e.get_entry_type() as u8);
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    out
}

/// Decode [`encode_payload`]'s format; any malformed input is an error.
pub fn decode_payload(mut buf: &[u8]) -> Result<Vec<Entry>, ReplicaLogError> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], ReplicaLogError> {
        if buf.len() < n {
            return Err(ReplicaLogError::BadPayload("truncated".into()));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn u64_of(b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    }
    fn u32_of(b: &[u8]) -> usize {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        u32::from_le_bytes(a) as usize
    }
    let count = u32_of(take(&mut buf, 4)?);
    if count > buf.len() / PAYLOAD_ENTRY_BYTES_MIN {
        return Err(ReplicaLogError::BadPayload(format!(
            "{count} entries cannot fit in {} bytes",
            buf.len()
        )));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let index = u64_of(take(&mut buf, 8)?);
        let term = u64_of(take(&mut buf, 8)?);
        let entry_type = match take(&mut buf, 1)?[0] {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            t => return Err(ReplicaLogError::BadPayload(format!("entry type {t}"))),
        };
        let len = u32_of(take(&mut buf, 4)?);
        let data = take(&mut buf, len)?.to_vec();
        if let Some(prev) = entries.last().map(|e: &Entry| e.index) {
            if index != prev + 1 {
                return Err(ReplicaLogError::BadPayload(format!(
                    "entry {index} after {prev}"
                )));
            }
        }
        let mut e = Entry {
            index,
            term,
            data: data.into(),
            ..Entry::default()
        };
        e.set_entry_type(entry_type);
        entries.push(e);
    }
    if !buf.is_empty() {
        return Err(ReplicaLogError::BadPayload(format!(
            "{} bytes after the entries",
            buf.len()
        )));
    }
    Ok(entries)
}

// ------------------------------------------------------------- in memory

/// One state of the log: what the driver reads (`current`) or what
/// survives a crash (`durable`).
#[derive(Debug, Clone, Default)]
struct Image {
    start: (u64, u64),
    /// Entries at or below `start.0`: no longer Raft entries, kept as the
    /// out-of-band data source (older segments, tiered storage) so that
    /// checks can still read every committed index.
    archive: Vec<Entry>,
    /// Entries after `start.0`, contiguous.
    entries: Vec<Entry>,
    hard_state: HardState,
    conf: ConfState,
    conf_index: u64,
}

impl Image {
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.start.0, |e| e.index)
    }

    fn entry(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        self.entries.get(index.checked_sub(first)? as usize)
    }

    fn archived(&self, index: u64) -> Option<&Entry> {
        let first = self.archive.first()?.index;
        self.archive.get(index.checked_sub(first)? as usize)
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.start.0 {
            return Some(self.start.1);
        }
        self.entry(index).map(|e| e.term)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), ReplicaLogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(ReplicaLogError::InvalidWrite(format!(
                    "entries not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                )));
            }
        }
        if first.index > self.last_index() + 1 {
            return Err(ReplicaLogError::InvalidWrite(format!(
                "gap: appending {} after last index {}",
                first.index,
                self.last_index()
            )));
        }
        let start = self.start.0;
        let keep = self.entries.partition_point(|e| e.index < first.index);
        self.entries.truncate(keep);
        self.entries
            .extend(entries.iter().filter(|e| e.index > start).cloned());
        Ok(())
    }

    fn compact(&mut self, through: u64) -> Result<(), ReplicaLogError> {
        if through <= self.start.0 {
            return Ok(());
        }
        let Some(term) = self.term_of(through) else {
            return Err(ReplicaLogError::InvalidWrite(format!(
                "compact through {through}: not in the log (last {})",
                self.last_index()
            )));
        };
        let n = self.entries.partition_point(|e| e.index <= through);
        self.archive.extend(self.entries.drain(..n));
        self.start = (through, term);
        Ok(())
    }

    fn install(&mut self, snap: &LogSnapshot, archive: Vec<Entry>) {
        self.start = (snap.index, snap.term);
        self.archive = archive;
        self.entries.clear();
        self.hard_state.term = self.hard_state.term.max(snap.term);
        self.hard_state.commit = self.hard_state.commit.max(snap.index);
        self.conf = snap.conf_state.clone();
        self.conf_index = snap.index;
    }

    /// The commit index is volatile in Raft: after a crash it may point
    /// past a lost tail; keep it inside the log.
    fn clamp_commit(&mut self) {
        self.hard_state.commit = self
            .hard_state
            .commit
            .max(self.start.0)
            .max(self.conf_index)
            .min(self.last_index());
    }
}

#[derive(Debug, Default)]
struct MemDisk {
    current: Image,
    durable: Image,
    /// Appends since the last sync, in order.
    unsynced: Vec<Vec<Entry>>,
    /// Longest prefix on which `current` and `durable` agree.
    synced: u64,
}

/// In-memory [`ReplicaLog`]. A cheap handle: clones share one "disk" that
/// outlives the replica using it, so a simulator can crash a node, inspect
/// what survived and reopen it. On [`MemReplicaLog::crash`] the unsynced
/// tail of appends is lost (all of it, or all but a prefix).
///
/// Compacted entries move to an archive that stands in for the
/// out-of-band source a production follower fetches snapshot data from;
/// [`ReplicaLog::snapshot_payload`] carries them, so a follower that
/// installs a snapshot can still answer "what is committed at index i".
#[derive(Debug, Clone, Default)]
pub struct MemReplicaLog {
    disk: Rc<RefCell<MemDisk>>,
}

impl MemReplicaLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends written since the last sync.
    pub fn unsynced_appends(&self) -> usize {
        self.disk.borrow().unsynced.len()
    }

    /// Lose power: what survives is the synced state plus the first
    /// `keep_unsynced` appends made after it. Returns how many appends were
    /// lost.
    pub fn crash(&self, keep_unsynced: usize) -> usize {
        let mut disk = self.disk.borrow_mut();
        let unsynced = std::mem::take(&mut disk.unsynced);
        let keep = keep_unsynced.min(unsynced.len());
        let mut image = disk.durable.clone();
        for entries in &unsynced[..keep] {
            image
                .append(entries)
                .expect("appends that applied once apply again to a prefix of their log");
        }
        image.clamp_commit();
        disk.synced = image.last_index();
        disk.durable = image.clone();
        disk.current = image;
        unsynced.len() - keep
    }

    /// Whether the durable log holds the entry `(index, term)`, as an entry
    /// or inside the snapshot it starts after.
    pub fn durable_contains(&self, index: u64, term: u64) -> bool {
        let disk = self.disk.borrow();
        let d = &disk.durable;
        index <= d.start.0 || d.term_of(index) == Some(term)
    }

    /// The durable commit index (as recovery would clamp it).
    pub fn durable_commit(&self) -> u64 {
        let disk = self.disk.borrow();
        let d = &disk.durable;
        d.hard_state.commit.max(d.start.0).min(d.last_index())
    }

    /// `(term, type, data)` stored at `index`: a Raft entry, or an archived
    /// one below the start. `None` for the bootstrap index and beyond the
    /// last index.
    pub fn entry_at(&self, index: u64) -> Option<(u64, EntryType, Vec<u8>)> {
        let disk = self.disk.borrow();
        let c = &disk.current;
        let e = if index <= c.start.0 {
            c.archived(index)
        } else {
            c.entry(index)
        }?;
        Some((e.term, e.get_entry_type(), e.data.to_vec()))
    }

    /// Every stored entry (archive, then log), for end-of-run comparisons.
    pub fn all_entries(&self) -> Vec<Entry> {
        let disk = self.disk.borrow();
        let c = &disk.current;
        c.archive.iter().chain(&c.entries).cloned().collect()
    }
}

impl ReplicaLog for MemReplicaLog {
    fn start(&self) -> (u64, u64) {
        self.disk.borrow().current.start
    }

    fn last_index(&self) -> u64 {
        self.disk.borrow().current.last_index()
    }

    fn term(&self, index: u64) -> Result<u64, ReplicaLogError> {
        let disk = self.disk.borrow();
        let c = &disk.current;
        if index < c.start.0 {
            return Err(ReplicaLogError::Compacted {
                index,
                start: c.start.0,
            });
        }
        c.term_of(index).ok_or(ReplicaLogError::Unavailable {
            index,
            last: c.last_index(),
        })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, ReplicaLogError> {
        let disk = self.disk.borrow();
        let c = &disk.current;
        if lo <= c.start.0 {
            return Err(ReplicaLogError::Compacted {
                index: lo,
                start: c.start.0,
            });
        }
        if hi > c.last_index() + 1 || lo > hi {
            return Err(ReplicaLogError::Unavailable {
                index: hi,
                last: c.last_index(),
            });
        }
        let first = c.start.0 + 1;
        let mut out = c.entries[(lo - first) as usize..(hi - first) as usize].to_vec();
        raft::util::limit_size(&mut out, max_bytes);
        Ok(out)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), ReplicaLogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut disk = self.disk.borrow_mut();
        disk.current.append(entries)?;
        disk.synced = disk.synced.min(first.index.saturating_sub(1));
        disk.unsynced.push(entries.to_vec());
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.disk.borrow().current.hard_state.clone()
    }

    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), ReplicaLogError> {
        let mut disk = self.disk.borrow_mut();
        disk.current.hard_state = hard_state.clone();
        // Term and vote are durable at once; the commit index waits for the
        // next sync.
        disk.durable.hard_state.term = hard_state.term;
        disk.durable.hard_state.vote = hard_state.vote;
        Ok(())
    }

    fn conf_state(&self) -> (ConfState, u64) {
        let disk = self.disk.borrow();
        (disk.current.conf.clone(), disk.current.conf_index)
    }

    fn set_conf_state(&mut self, conf: &ConfState, index: u64) -> Result<(), ReplicaLogError> {
        let mut disk = self.disk.borrow_mut();
        if index > disk.synced {
            return Err(ReplicaLogError::InvalidWrite(format!(
                "configuration at {index} applied above the synced index {}",
                disk.synced
            )));
        }
        let disk = &mut *disk;
        for image in [&mut disk.current, &mut disk.durable] {
            image.conf = conf.clone();
            image.conf_index = index;
            image.hard_state.commit = image.hard_state.commit.max(index);
        }
        Ok(())
    }

    fn synced_index(&self) -> u64 {
        self.disk.borrow().synced
    }

    fn sync(&mut self) -> Result<(), ReplicaLogError> {
        let mut disk = self.disk.borrow_mut();
        let disk = &mut *disk;
        for entries in disk.unsynced.drain(..) {
            disk.durable
                .append(&entries)
                .expect("appends that applied to the current log apply to the durable one");
        }
        disk.durable.hard_state = disk.current.hard_state.clone();
        disk.synced = disk.current.last_index();
        Ok(())
    }

    fn compact(&mut self, through: u64) -> Result<(), ReplicaLogError> {
        let mut disk = self.disk.borrow_mut();
        if through > disk.synced {
            return Err(ReplicaLogError::InvalidWrite(format!(
                "compact through {through} above the synced index {}",
                disk.synced
            )));
        }
        disk.current.compact(through)?;
        disk.durable.compact(through)
    }

    fn snapshot_payload(&self, through: u64) -> Result<Vec<u8>, ReplicaLogError> {
        let disk = self.disk.borrow();
        let c = &disk.current;
        if through > c.last_index() {
            return Err(ReplicaLogError::Unavailable {
                index: through,
                last: c.last_index(),
            });
        }
        let upto = c.entries.partition_point(|e| e.index <= through);
        let all: Vec<Entry> = c
            .archive
            .iter()
            .filter(|e| e.index <= through)
            .chain(&c.entries[..upto])
            .cloned()
            .collect();
        Ok(encode_payload(&all))
    }

    fn install_snapshot(
        &mut self,
        snapshot: &LogSnapshot,
        payload: &[u8],
    ) -> Result<(), ReplicaLogError> {
        let mut archive = decode_payload(payload)?;
        archive.retain(|e| e.index <= snapshot.index);
        let mut disk = self.disk.borrow_mut();
        let disk = &mut *disk;
        disk.current.install(snapshot, archive);
        disk.unsynced.clear();
        disk.durable = disk.current.clone();
        disk.synced = disk.current.last_index();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("{index}@{term}").into_bytes().into(),
            ..Entry::default()
        }
    }

    #[test]
    fn append_truncates_the_conflicting_suffix_and_tracks_the_synced_index() {
        let mut log = MemReplicaLog::new();
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(log.synced_index(), 0);
        log.sync().unwrap();
        assert_eq!(log.synced_index(), 5);
        // A new leader's entry at 4 replaces 4 and 5.
        log.append(&[entry(4, 2)]).unwrap();
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.term(4).unwrap(), 2);
        assert_eq!(log.synced_index(), 3);
        assert!(log.append(&[entry(9, 2)]).is_err());
        // A crash before the sync brings the old, synced suffix back.
        assert_eq!(log.crash(0), 1);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.term(4).unwrap(), 1);
        assert_eq!(log.synced_index(), 5);
    }

    #[test]
    fn crash_keeps_the_synced_part_and_a_prefix_of_the_rest() {
        let mut log = MemReplicaLog::new();
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        log.sync().unwrap();
        log.append(&[entry(3, 1)]).unwrap();
        log.append(&[entry(4, 1)]).unwrap();
        log.set_hard_state(&HardState {
            term: 3,
            vote: 2,
            commit: 4,
            ..HardState::default()
        })
        .unwrap();
        assert!(log.durable_contains(2, 1) && !log.durable_contains(3, 1));
        assert_eq!(log.crash(1), 1);
        assert_eq!(log.last_index(), 3);
        let hs = log.hard_state();
        // Term and vote were durable at once; the commit index was not.
        assert_eq!((hs.term, hs.vote, hs.commit), (3, 2, 0));
    }

    #[test]
    fn compaction_moves_entries_to_the_archive_and_snapshots_carry_them() {
        let mut log = MemReplicaLog::new();
        log.append(&(1..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        assert!(log.compact(3).is_err(), "compaction above the synced index");
        log.sync().unwrap();
        log.compact(3).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (4, 6));
        assert_eq!(log.term(3).unwrap(), 1);
        assert!(matches!(
            log.term(2),
            Err(ReplicaLogError::Compacted { .. })
        ));
        assert!(log.entries(3, 5, None).is_err());
        assert_eq!(log.entries(4, 7, None).unwrap().len(), 3);
        assert_eq!(log.entry_at(2).unwrap().2, b"2@1");

        let payload = log.snapshot_payload(5).unwrap();
        let mut other = MemReplicaLog::new();
        other.append(&[entry(1, 1), entry(2, 9)]).unwrap();
        let snap = LogSnapshot {
            index: 5,
            term: 1,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                ..ConfState::default()
            },
        };
        other.install_snapshot(&snap, &payload).unwrap();
        assert_eq!(other.start(), (5, 1));
        assert_eq!(other.last_index(), 5);
        assert_eq!(other.synced_index(), 5);
        assert_eq!(other.entry_at(2).unwrap().2, b"2@1");
        assert_eq!(other.conf_state(), (snap.conf_state.clone(), 5));
        assert_eq!(other.hard_state().commit, 5);
        assert!(other.durable_contains(4, 7), "covered by the snapshot");
    }

    #[test]
    fn payload_decoding_rejects_garbage() {
        let good = encode_payload(&[entry(2, 1), entry(3, 1)]);
        assert_eq!(decode_payload(&good).unwrap().len(), 2);
        for cut in 0..good.len() {
            assert!(decode_payload(&good[..cut]).is_err(), "cut {cut}");
        }
        assert!(decode_payload(&[0xff, 0xff, 0xff, 0xff]).is_err());
        let gap = encode_payload(&[entry(2, 1), entry(4, 1)]);
        assert!(decode_payload(&gap).is_err());
    }
}
