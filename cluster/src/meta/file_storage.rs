//! File-backed [`MetaStorage`]: one append-only file of CRC-framed records
//! (entries, hard state, snapshot) in the node's metadata directory.
//!
//! Crash safety:
//! - Writes go to the page cache; [`MetaStorage::sync`] is one
//!   `fdatasync`, and the driver sends nothing that depends on a write
//!   before it.
//! - On open, records are replayed until the first one that is short or
//!   fails its CRC: the tail of an interrupted write. The file is cut there
//!   (and synced) so a later append can never line up with stale bytes.
//!   A record with a valid CRC that does not decode is corruption and
//!   refuses the open instead: cutting there could drop synced votes.
//! - When a snapshot is stored and the file has grown past
//!   `rewrite_bytes_min`, the live state (snapshot, hard state, entries
//!   after it) is written to a temporary file, synced, renamed over the
//!   log and the directory synced: a crash leaves either file, both whole.
//! - After any write or sync error the storage refuses further writes:
//!   retrying `fdatasync` after a failure can silently lose data.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

use super::storage::{Frame, LogState, MetaStorage, MetaStorageError, Record};

const LOG_FILE: &str = "meta.log";
const REWRITE_FILE: &str = "meta.log.rewrite";

/// Default size past which storing a snapshot rewrites the file.
pub const REWRITE_BYTES_MIN_DEFAULT: u64 = 8 << 20;

#[derive(Debug)]
pub struct FileMetaStorage {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    file_bytes: u64,
    state: LogState,
    unsynced: bool,
    poisoned: bool,
    rewrite_bytes_min: u64,
    /// Bytes cut from a torn tail when this storage was opened.
    torn_bytes_dropped: u64,
}

impl FileMetaStorage {
    pub fn open(dir: &Path) -> Result<Self, MetaStorageError> {
        Self::open_with(dir, REWRITE_BYTES_MIN_DEFAULT)
    }

    pub fn open_with(dir: &Path, rewrite_bytes_min: u64) -> Result<Self, MetaStorageError> {
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| MetaStorageError::Io { op, path, source }
        };
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let rewrite = dir.join(REWRITE_FILE);
        // A rewrite that did not reach its rename: the log is still whole.
        match fs::remove_file(&rewrite) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &rewrite)(e)),
        }
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        if !existed {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read", &path))?;

        let mut state = LogState::default();
        let mut at = 0usize;
        while at < bytes.len() {
            match Record::decode(&bytes[at..]) {
                Frame::Record { record, bytes: n } => {
                    state
                        .apply(&record)
                        .map_err(|reason| MetaStorageError::Corrupt {
                            path: path.clone(),
                            offset: at as u64,
                            reason,
                        })?;
                    at += n;
                }
                Frame::Torn => break,
                Frame::Invalid(reason) => {
                    return Err(MetaStorageError::Corrupt {
                        path,
                        offset: at as u64,
                        reason,
                    })
                }
            }
        }
        let torn_bytes_dropped = (bytes.len() - at) as u64;
        if torn_bytes_dropped > 0 {
            tracing::warn!(
                path = %path.display(),
                offset = at,
                bytes = torn_bytes_dropped,
                "metadata log: cutting a torn tail"
            );
            file.set_len(at as u64).map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            path,
            file,
            file_bytes: at as u64,
            state,
            unsynced: false,
            poisoned: false,
            rewrite_bytes_min,
            torn_bytes_dropped,
        })
    }

    pub fn torn_bytes_dropped(&self) -> u64 {
        self.torn_bytes_dropped
    }

    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    fn write(&mut self, record: Record) -> Result<(), MetaStorageError> {
        if self.poisoned {
            return Err(MetaStorageError::Poisoned(self.path.clone()));
        }
        // Validate against the in-memory log first: an invalid write must
        // never reach the file, where replay would refuse it forever.
        self.state
            .check(&record)
            .map_err(MetaStorageError::InvalidWrite)?;
        let mut buf = Vec::new();
        record.encode(&mut buf);
        if let Err(source) = self.file.write_all(&buf) {
            self.poisoned = true;
            return Err(MetaStorageError::Io {
                op: "write",
                path: self.path.clone(),
                source,
            });
        }
        self.file_bytes += buf.len() as u64;
        self.state.apply(&record).expect("checked before the write");
        self.unsynced = true;
        Ok(())
    }

    /// Replace the file by one holding only the live state.
    fn rewrite(&mut self) -> Result<(), MetaStorageError> {
        let tmp = self.dir.join(REWRITE_FILE);
        let mut buf = Vec::new();
        // Hard state last: replay clamps its commit index to the log.
        Record::Snapshot(self.state.snapshot().clone()).encode(&mut buf);
        Record::Entries(self.state.entries_all().to_vec()).encode(&mut buf);
        Record::HardState(self.state.hard_state().clone()).encode(&mut buf);
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            OpenOptions::new().read(true).append(true).open(&self.path)
        })();
        let file = result.map_err(|source| {
            self.poisoned = true;
            MetaStorageError::Io {
                op: "rewrite",
                path: self.path.clone(),
                source,
            }
        })?;
        sync_dir(&self.dir).inspect_err(|_| self.poisoned = true)?;
        tracing::debug!(
            path = %self.path.display(),
            from_bytes = self.file_bytes,
            to_bytes = buf.len(),
            "metadata log rewritten"
        );
        self.file = file;
        self.file_bytes = buf.len() as u64;
        // Everything written before is in the synced new file.
        self.unsynced = false;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), MetaStorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MetaStorageError::Io {
            op: "fsync directory",
            path: dir.to_owned(),
            source,
        })
}

impl raft::Storage for FileMetaStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(self.state.raft_state())
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.state.raft_entries(low, high, max_size.into())
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.state.raft_term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.state.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.state.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        self.state.raft_snapshot(request_index)
    }
}

impl MetaStorage for FileMetaStorage {
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
        self.write(Record::Snapshot(snapshot.clone()))?;
        if self.file_bytes > self.rewrite_bytes_min {
            self.rewrite()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), MetaStorageError> {
        if self.poisoned {
            return Err(MetaStorageError::Poisoned(self.path.clone()));
        }
        if !self.unsynced {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            self.poisoned = true;
            return Err(MetaStorageError::Io {
                op: "fdatasync",
                path: self.path.clone(),
                source,
            });
        }
        self.unsynced = false;
        Ok(())
    }

    fn stored_snapshot(&self) -> Snapshot {
        self.state.snapshot().clone()
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::super::storage::tests::{entry, snapshot};
    use super::*;

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    #[test]
    fn write_sync_reopen_gives_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = FileMetaStorage::open(dir.path()).unwrap();
            s.apply_snapshot(&snapshot(1, 1, &[1, 2, 3])).unwrap();
            s.append(&(2..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .unwrap();
            // A new leader overwrote 5 and 6.
            s.append(&[entry(5, 2)]).unwrap();
            s.set_hard_state(&hard_state(2, 3, 4)).unwrap();
            s.sync().unwrap();
        }
        let s = FileMetaStorage::open(dir.path()).unwrap();
        assert_eq!(s.torn_bytes_dropped(), 0);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (2, 5));
        assert_eq!(s.term(5).unwrap(), 2);
        assert_eq!(s.term(4).unwrap(), 1);
        assert_eq!(s.term(1).unwrap(), 1);
        let rs = s.initial_state().unwrap();
        assert_eq!(rs.hard_state, hard_state(2, 3, 4));
        assert_eq!(rs.conf_state.voters, vec![1, 2, 3]);
        let got = s
            .entries(2, 6, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got[3], entry(5, 2));
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let whole;
        {
            let mut s = FileMetaStorage::open(dir.path()).unwrap();
            s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
            s.set_hard_state(&hard_state(1, 1, 2)).unwrap();
            s.sync().unwrap();
            whole = s.file_bytes();
            s.append(&[entry(3, 1), entry(4, 1)]).unwrap();
            s.sync().unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let full = fs::read(&path).unwrap();
        // Cut the last record at every possible byte: always back to the
        // first two records, and the file is cut to match.
        for cut in whole as usize..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let s = FileMetaStorage::open(dir.path()).unwrap();
            assert_eq!(s.last_index().unwrap(), 2, "cut at {cut}");
            assert_eq!(s.torn_bytes_dropped(), (cut - whole as usize) as u64);
            assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        }
        // Garbage after whole records (a write that never completed over
        // preallocated space) is cut the same way.
        let mut garbage = full.clone();
        garbage.extend_from_slice(&[0xAB; 100]);
        fs::write(&path, &garbage).unwrap();
        let mut s = FileMetaStorage::open(dir.path()).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.torn_bytes_dropped(), 100);
        // And the log keeps working after the cut.
        s.append(&[entry(5, 1)]).unwrap();
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            FileMetaStorage::open(dir.path())
                .unwrap()
                .last_index()
                .unwrap(),
            5
        );
    }

    #[test]
    fn valid_crc_around_bad_content_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        Record::Entries(vec![entry(1, 1)]).encode(&mut buf);
        // An entry record that leaves a gap: framed correctly, wrong content.
        Record::Entries(vec![entry(5, 1)]).encode(&mut buf);
        fs::write(dir.path().join(LOG_FILE), &buf).unwrap();
        let err = FileMetaStorage::open(dir.path()).unwrap_err();
        assert!(matches!(err, MetaStorageError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn rewrite_keeps_the_live_state_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileMetaStorage::open_with(dir.path(), 1).unwrap();
        s.append(&(1..=50).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        s.set_hard_state(&hard_state(1, 1, 50)).unwrap();
        let before = s.file_bytes();
        s.apply_snapshot(&snapshot(40, 1, &[1])).unwrap();
        assert!(s.file_bytes() < before, "{} !< {before}", s.file_bytes());
        assert!(!dir.path().join(REWRITE_FILE).exists());
        s.append(&[entry(51, 2)]).unwrap();
        s.sync().unwrap();
        drop(s);
        // A leftover temporary file from a crashed rewrite is ignored.
        fs::write(dir.path().join(REWRITE_FILE), b"partial").unwrap();
        let s = FileMetaStorage::open(dir.path()).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (41, 51)
        );
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 50);
        assert_eq!(s.stored_snapshot().get_metadata().index, 40);
        assert!(!dir.path().join(REWRITE_FILE).exists());
    }

    #[test]
    fn invalid_write_never_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileMetaStorage::open(dir.path()).unwrap();
        s.append(&[entry(1, 1)]).unwrap();
        assert!(matches!(
            s.append(&[entry(3, 1)]),
            Err(MetaStorageError::InvalidWrite(_))
        ));
        s.sync().unwrap();
        drop(s);
        assert_eq!(
            FileMetaStorage::open(dir.path())
                .unwrap()
                .last_index()
                .unwrap(),
            1
        );
    }
}
