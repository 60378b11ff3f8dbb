//! Storage of the metadata Raft log: entries, hard state and the latest
//! snapshot, behind [`MetaStorage`] (raft-rs's read side plus writes and a
//! sync barrier).
//!
//! Both implementations are the same machine: a stream of [`Record`]s
//! (entries, hard state, snapshot) applied in order to a [`LogState`].
//! [`FileMetaStorage`](super::FileMetaStorage) writes the records to a file
//! and replays them on open; [`MemMetaStorage`] keeps them in memory and
//! can "crash", keeping any prefix of what was written since the last sync,
//! which is exactly what a file can hold after power loss once a torn tail
//! is cut at the first bad CRC.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Bound on one record (a snapshot is the largest): a corrupt length field
/// must not make replay allocate gigabytes.
pub const RECORD_BYTES_MAX: usize = 256 << 20;

/// Record framing: `u32 LE payload length | u32 LE CRC32C | kind | payload`.
/// The CRC covers the length, the kind and the payload, so a torn length
/// field is caught as surely as a torn payload.
const RECORD_HEADER_BYTES: usize = 9;

#[derive(Debug, thiserror::Error)]
pub enum MetaStorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt metadata log {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("invalid write to the metadata log: {0}")]
    InvalidWrite(String),
    #[error("metadata log {0} refused writes after an earlier I/O error; reopen it")]
    Poisoned(PathBuf),
}

/// The storage the metadata Raft node runs on.
///
/// Writes may be buffered; [`MetaStorage::sync`] makes everything written
/// so far durable. The driver never lets a message that depends on a write
/// (a vote, an append acknowledgement) leave before that write is synced.
pub trait MetaStorage: raft::Storage {
    /// Append entries, replacing any stored suffix from `entries[0].index`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), MetaStorageError>;
    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), MetaStorageError>;
    /// Store a snapshot: entries it covers are dropped (kept after it if the
    /// log agrees with it at its index, as for a local compaction).
    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MetaStorageError>;
    /// Make every write so far durable.
    fn sync(&mut self) -> Result<(), MetaStorageError>;
    /// The latest stored snapshot (empty before the first one).
    fn stored_snapshot(&self) -> Snapshot;
}

/// One unit of the log's history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Entries(Vec<Entry>),
    HardState(HardState),
    Snapshot(Snapshot),
}

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

/// How a byte range parses as a record.
#[derive(Debug)]
pub(crate) enum Frame {
    Record {
        record: Record,
        bytes: usize,
    },
    /// Not a whole record with a valid CRC: the tail of an interrupted write.
    Torn,
    /// A valid CRC around content that does not decode: real corruption
    /// (or a newer format), never a torn write.
    Invalid(String),
}

impl Record {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        let kind = match self {
            Record::Entries(entries) => {
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for e in entries {
                    let bytes = e.write_to_bytes().expect("entry encodes");
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                KIND_ENTRIES
            }
            Record::HardState(hs) => {
                out.extend_from_slice(&hs.write_to_bytes().expect("hard state encodes"));
                KIND_HARD_STATE
            }
            Record::Snapshot(snap) => {
                out.extend_from_slice(&snap.write_to_bytes().expect("snapshot encodes"));
                KIND_SNAPSHOT
            }
        };
        let payload = (out.len() - start - RECORD_HEADER_BYTES) as u32;
        out[start..start + 4].copy_from_slice(&payload.to_le_bytes());
        out[start + 8] = kind;
        let crc = record_crc(&out[start..start + 4], &out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    pub(crate) fn decode(buf: &[u8]) -> Frame {
        if buf.len() < RECORD_HEADER_BYTES {
            return Frame::Torn;
        }
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX || buf.len() < RECORD_HEADER_BYTES + len {
            return Frame::Torn;
        }
        let end = RECORD_HEADER_BYTES + len;
        if record_crc(&buf[0..4], &buf[8..end]) != crc {
            return Frame::Torn;
        }
        let kind = buf[8];
        let payload = &buf[RECORD_HEADER_BYTES..end];
        let record = match kind {
            KIND_ENTRIES => decode_entries(payload).map(Record::Entries),
            KIND_HARD_STATE => HardState::parse_from_bytes(payload)
                .map(Record::HardState)
                .map_err(|e| e.to_string()),
            KIND_SNAPSHOT => Snapshot::parse_from_bytes(payload)
                .map(Record::Snapshot)
                .map_err(|e| e.to_string()),
            other => Err(format!("unknown record kind {other}")),
        };
        match record {
            Ok(record) => Frame::Record { record, bytes: end },
            Err(reason) => Frame::Invalid(reason),
        }
    }
}

fn record_crc(len: &[u8], kind_and_payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), kind_and_payload)
}

fn decode_entries(mut payload: &[u8]) -> Result<Vec<Entry>, String> {
    let take_u32 = |p: &mut &[u8]| -> Result<usize, String> {
        if p.len() < 4 {
            return Err("truncated entry list".into());
        }
        let (head, rest) = p.split_at(4);
        *p = rest;
        Ok(u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize)
    };
    let count = take_u32(&mut payload)?;
    // Each entry takes at least its 4-byte length: bounds the allocation.
    if count > payload.len() / 4 + 1 {
        return Err(format!("entry count {count} exceeds the record"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(&mut payload)?;
        if payload.len() < len {
            return Err("truncated entry".into());
        }
        let (bytes, rest) = payload.split_at(len);
        payload = rest;
        entries.push(Entry::parse_from_bytes(bytes).map_err(|e| e.to_string())?);
    }
    if !payload.is_empty() {
        return Err(format!("{} bytes after the entry list", payload.len()));
    }
    Ok(entries)
}

/// The log as Raft reads it: the latest snapshot, the entries after it and
/// the hard state. Invariant: entries are contiguous and start right after
/// the snapshot's index.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogState {
    snapshot: Snapshot,
    entries: Vec<Entry>,
    hard_state: HardState,
}

impl LogState {
    /// Whether `record` can follow this log (the only failure: entries that
    /// are not contiguous or leave a gap after the last index).
    pub(crate) fn check(&self, record: &Record) -> Result<(), String> {
        let Record::Entries(entries) = record else {
            return Ok(());
        };
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(format!(
                    "entries not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                ));
            }
        }
        if first.index > self.last_index() + 1 {
            return Err(format!(
                "gap: appending {} after last index {}",
                first.index,
                self.last_index()
            ));
        }
        Ok(())
    }

    pub(crate) fn apply(&mut self, record: &Record) -> Result<(), String> {
        self.check(record)?;
        match record {
            Record::Entries(entries) => self.append(entries),
            Record::HardState(hs) => {
                self.hard_state = hs.clone();
                // The commit index is volatile in Raft; never let it point
                // below the snapshot (already applied) or past the log.
                self.clamp_commit();
            }
            Record::Snapshot(snap) => self.install(snap),
        }
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let snap_index = self.snapshot_index();
        // Entries at or below the snapshot are already covered by it.
        let fresh = entries.iter().filter(|e| e.index > snap_index);
        let keep = self.entries.partition_point(|e| e.index < first.index);
        self.entries.truncate(keep);
        self.entries.extend(fresh.cloned());
    }

    fn install(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        if meta.index < self.snapshot_index() {
            // Older than the one we have: nothing to learn from it.
            return;
        }
        if self.term_of(meta.index) == Some(meta.term) {
            // Local compaction: the log continues after the snapshot.
            let keep_from = self.entries.partition_point(|e| e.index <= meta.index);
            self.entries.drain(..keep_from);
        } else {
            self.entries.clear();
        }
        self.snapshot = snap.clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
    }

    fn clamp_commit(&mut self) {
        let commit = self
            .hard_state
            .commit
            .max(self.snapshot_index())
            .min(self.last_index());
        self.hard_state.commit = commit;
    }

    fn entry(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub(crate) fn entries_all(&self) -> &[Entry] {
        &self.entries
    }

    /// The term of the entry at `index` if this log holds it (or its
    /// snapshot covers it exactly).
    pub(crate) fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub(crate) fn raft_state(&self) -> RaftState {
        RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        )
    }

    pub(crate) fn raft_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let first = self.first_index();
        let mut out = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    pub(crate) fn raft_term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entry(index)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    pub(crate) fn raft_snapshot(&self, request_index: u64) -> raft::Result<Snapshot> {
        // The driver keeps a snapshot at its applied index after every
        // membership change and every `snapshot_interval_entries`, and
        // never asks followers to request one, so this is the one to send.
        if self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

/// In-memory [`MetaStorage`] for tests and the simulator. A cheap handle:
/// clones share one "disk", which outlives the node that used it, so a
/// simulator can crash a node, inspect what survived and restart it.
#[derive(Debug, Clone, Default)]
pub struct MemMetaStorage {
    disk: Rc<RefCell<MemDisk>>,
}

#[derive(Debug, Default)]
struct MemDisk {
    /// What Raft reads: every write applied.
    current: LogState,
    /// What has been synced.
    durable: LogState,
    /// Written since the last sync, in order.
    unsynced: Vec<Record>,
}

impl MemMetaStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self, record: Record) -> Result<(), MetaStorageError> {
        let mut disk = self.disk.borrow_mut();
        disk.current
            .apply(&record)
            .map_err(MetaStorageError::InvalidWrite)?;
        disk.unsynced.push(record);
        Ok(())
    }

    /// Records written since the last sync.
    pub fn unsynced_records(&self) -> usize {
        self.disk.borrow().unsynced.len()
    }

    /// Lose power: what survives is the synced state plus the first
    /// `keep_unsynced` records written after it (a write that reached the
    /// disk before the crash; later ones did not). Returns how many unsynced
    /// records were lost.
    pub fn crash(&self, keep_unsynced: usize) -> usize {
        let mut disk = self.disk.borrow_mut();
        let unsynced = std::mem::take(&mut disk.unsynced);
        let keep = keep_unsynced.min(unsynced.len());
        let mut state = disk.durable.clone();
        for record in &unsynced[..keep] {
            state
                .apply(record)
                .expect("a prefix of records that applied once applies again");
        }
        disk.durable = state.clone();
        disk.current = state;
        unsynced.len() - keep
    }

    /// Whether the synced state holds the entry (`index`, `term`), itself or
    /// through a snapshot that covers it.
    pub fn durable_contains(&self, index: u64, term: u64) -> bool {
        let disk = self.disk.borrow();
        index <= disk.durable.snapshot_index() || disk.durable.term_of(index) == Some(term)
    }

    /// Index of the latest synced snapshot. It never goes down: an entry it
    /// covers stays covered.
    pub fn durable_snapshot_index(&self) -> u64 {
        self.disk.borrow().durable.snapshot_index()
    }

    /// The stored entry at `index` (term, data), if the log holds it.
    pub fn entry_at(&self, index: u64) -> Option<(u64, Vec<u8>)> {
        let disk = self.disk.borrow();
        disk.current.entry(index).map(|e| (e.term, e.data.to_vec()))
    }

    pub fn first_index_now(&self) -> u64 {
        self.disk.borrow().current.first_index()
    }

    pub fn last_index_now(&self) -> u64 {
        self.disk.borrow().current.last_index()
    }
}

impl raft::Storage for MemMetaStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(self.disk.borrow().current.raft_state())
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.disk
            .borrow()
            .current
            .raft_entries(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.disk.borrow().current.raft_term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.disk.borrow().current.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.disk.borrow().current.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        self.disk.borrow().current.raft_snapshot(request_index)
    }
}

impl MetaStorage for MemMetaStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), MetaStorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(Record::Entries(entries.to_vec()))
    }

    fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), MetaStorageError> {
        self.write(Record::HardState(hard_state.clone()))
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MetaStorageError> {
        self.write(Record::Snapshot(snapshot.clone()))
    }

    fn sync(&mut self) -> Result<(), MetaStorageError> {
        let mut disk = self.disk.borrow_mut();
        let unsynced = std::mem::take(&mut disk.unsynced);
        for record in &unsynced {
            disk.durable
                .apply(record)
                .expect("records that applied to the current state apply to the durable one");
        }
        Ok(())
    }

    fn stored_snapshot(&self) -> Snapshot {
        self.disk.borrow().current.snapshot().clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use raft::Storage as _;

    use super::*;

    pub(crate) fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("{index}@{term}").into_bytes().into(),
            ..Entry::default()
        }
    }

    pub(crate) fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = voters.to_vec();
        s.data = vec![7u8; 3].into();
        s
    }

    #[test]
    fn records_round_trip_and_torn_frames_are_detected() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 1,
            ..HardState::default()
        };
        let records = vec![
            Record::Entries(vec![entry(1, 1), entry(2, 1)]),
            Record::HardState(hs),
            Record::Snapshot(snapshot(5, 2, &[1, 2, 3])),
            Record::Entries(vec![]),
        ];
        let mut buf = Vec::new();
        for r in &records {
            r.encode(&mut buf);
        }
        let mut at = 0;
        for r in &records {
            match Record::decode(&buf[at..]) {
                Frame::Record { record, bytes } => {
                    assert_eq!(&record, r);
                    at += bytes;
                }
                other => panic!("{other:?} at {at}"),
            }
        }
        assert_eq!(at, buf.len());
        // Every strict prefix of a record is torn, as is any flipped bit.
        let mut one = Vec::new();
        records[0].encode(&mut one);
        for cut in 0..one.len() {
            assert!(
                matches!(Record::decode(&one[..cut]), Frame::Torn),
                "cut {cut}"
            );
        }
        for byte in 0..one.len() {
            let mut bad = one.clone();
            bad[byte] ^= 0x10;
            assert!(
                matches!(Record::decode(&bad), Frame::Torn),
                "flip in byte {byte} accepted"
            );
        }
    }

    #[test]
    fn append_truncates_conflicting_suffix_and_refuses_gaps() {
        let mut log = LogState::default();
        log.apply(&Record::Entries((1..=5).map(|i| entry(i, 1)).collect()))
            .unwrap();
        log.apply(&Record::Entries(vec![entry(4, 2)])).unwrap();
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.term_of(4), Some(2));
        assert_eq!(log.term_of(3), Some(1));
        assert!(log.apply(&Record::Entries(vec![entry(9, 2)])).is_err());
    }

    #[test]
    fn snapshot_compacts_when_log_agrees_and_replaces_when_not() {
        let mut log = LogState::default();
        log.apply(&Record::Entries((1..=6).map(|i| entry(i, 1)).collect()))
            .unwrap();
        // Local compaction at 4: entries 5 and 6 stay.
        log.apply(&Record::Snapshot(snapshot(4, 1, &[1]))).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (5, 6));
        assert_eq!(log.raft_term(4).unwrap(), 1);
        assert!(matches!(
            log.raft_term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            log.raft_entries(4, 6, None),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(log.raft_entries(5, 7, None).unwrap().len(), 2);
        // A leader's snapshot at 10, term 3: the local log is replaced.
        log.apply(&Record::Snapshot(snapshot(10, 3, &[1]))).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (11, 10));
        assert_eq!(log.hard_state().commit, 10);
        assert_eq!(log.raft_state().conf_state.voters, vec![1]);
        // Entries the snapshot covers are ignored on append.
        log.apply(&Record::Entries(vec![entry(10, 3), entry(11, 3)]))
            .unwrap();
        assert_eq!((log.first_index(), log.last_index()), (11, 11));
    }

    #[test]
    fn crash_keeps_synced_state_and_a_prefix_of_the_rest() {
        let mut s = MemMetaStorage::new();
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.sync().unwrap();
        s.append(&[entry(3, 1)]).unwrap();
        s.append(&[entry(4, 1)]).unwrap();
        assert!(s.durable_contains(2, 1));
        assert!(!s.durable_contains(3, 1));
        let handle = s.clone();
        assert_eq!(handle.crash(1), 1);
        assert_eq!(s.last_index().unwrap(), 3);
        assert!(s.durable_contains(3, 1));
        assert_eq!(handle.crash(0), 0);
        assert_eq!(s.last_index().unwrap(), 3);
    }
}
