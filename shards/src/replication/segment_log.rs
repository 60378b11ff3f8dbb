//! [`SegmentReplicaLog`]: a partition's segment log used as its Raft log
//! (the [`ReplicaLog`] the per-partition Raft core drives).
//!
//! One Raft entry is one batch in the segment log: a producer's data batch
//! stamped with the entry's index and term, or a control batch (an empty
//! entry of a new leader, a membership change) whose payload is the entry
//! type byte followed by the entry's data. The data is written once.
//!
//! The Raft core is synchronous and buffered; the log is asynchronous. So
//! writes go to a [`WriteQueue`] that the shard's flusher task drains in
//! order (truncations and appends, then one fdatasync for all of them) and
//! entries not yet written are served from an in-memory overlay:
//! - entries below the lowest index any queued write touches are the same
//!   in the log as the Raft core sees them: they come from the log (the
//!   memory ring, else a positional read of the segment file);
//! - entries from there on come from the overlay.
//!
//! Durability: [`ReplicaLog::synced_index`] is the log's own fdatasync'ed
//! Raft index, clamped below the lowest queued write: nothing queued (and
//! so nothing a truncation may still remove) counts as durable.
//!
//! The term, the vote, the membership and where the log starts live in a
//! small `raft-state` file next to the log, replaced atomically (written,
//! fsynced, renamed, directory fsynced): it changes on elections and
//! membership changes only.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sprawl_cluster::raft::eraftpb::{ConfState, Entry, EntryType, HardState};
use sprawl_cluster::replica::{LogSnapshot, ReplicaLog, ReplicaLogError, BOOTSTRAP_INDEX};
use sprawl_storage::batch::peek_header;
use sprawl_storage::BATCH_HEADER_BYTES;

use crate::partition::Partition;

/// One write the flusher applies to the segment log, in order.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Remove Raft entry `.0` and every later one.
    Truncate(u64),
    Append(Entry),
}

impl WriteOp {
    fn index(&self) -> u64 {
        match self {
            WriteOp::Truncate(i) => *i,
            WriteOp::Append(e) => e.index,
        }
    }
}

/// Writes not yet applied to the segment log, and the entries they make
/// (shared by the adapter, inside the Raft core, and the flusher task).
#[derive(Debug, Default)]
pub struct WriteQueue {
    ops: VecDeque<WriteOp>,
    /// Entries `overlay_base..` as the Raft core sees them, covering every
    /// index from the lowest queued write on.
    overlay: VecDeque<Entry>,
    overlay_base: u64,
    /// A write failed: the log is not trustworthy any more.
    failed: Option<String>,
}

impl WriteQueue {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The next write, left queued (and in the overlay) until it is done.
    pub fn front(&self) -> Option<WriteOp> {
        self.ops.front().cloned()
    }

    /// The front write is done: the log now holds its effect (its entry
    /// stays in the overlay until synced, see [`WriteQueue::trim_synced`]).
    pub fn pop_done(&mut self) {
        self.ops.pop_front();
    }

    /// The log is durable up to `synced`: overlay entries up to there that
    /// no queued write touches are read from the log from now on. (Until
    /// then they are served from here: a written-but-unsynced entry may be
    /// in a write in flight, which the log cannot serve synchronously.)
    pub fn trim_synced(&mut self, synced: u64) {
        let touched = self.lowest_touched().unwrap_or(u64::MAX);
        while self
            .overlay
            .front()
            .is_some_and(|e| e.index < touched && e.index <= synced)
        {
            self.overlay.pop_front();
            self.overlay_base += 1;
        }
    }

    pub fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn lowest_touched(&self) -> Option<u64> {
        self.ops.iter().map(WriteOp::index).min()
    }

    fn overlay_get(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(self.overlay_base)
            .and_then(|i| self.overlay.get(i as usize))
    }

    fn overlay_last(&self) -> Option<u64> {
        self.overlay.back().map(|e| e.index)
    }
}

/// What `raft-state` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RaftStateFile {
    snapshot_index: u64,
    snapshot_term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    conf_index: u64,
    term: u64,
    vote: u64,
    commit: u64,
    /// The group's voters at the bootstrap snapshot (index 1): what a
    /// joining replica starts from (see `ReplicaLog::base_snapshot`).
    #[serde(default)]
    bootstrap_voters: Vec<u64>,
}

pub struct SegmentReplicaLog {
    part: Rc<Partition>,
    queue: Rc<RefCell<WriteQueue>>,
    state_path: PathBuf,
    state: RaftStateFile,
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ReplicaLogError {
    ReplicaLogError::Io(format!("{what} {}: {e}", path.display()))
}

impl SegmentReplicaLog {
    /// The adapter over `log`, whose Raft state file is `state_path`.
    pub fn open(part: Rc<Partition>, state_path: PathBuf) -> Result<Self, ReplicaLogError> {
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| io_error("decoding", &state_path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RaftStateFile::default(),
            Err(e) => return Err(io_error("reading", &state_path, e)),
        };
        let mut me = Self {
            part,
            queue: Rc::default(),
            state_path,
            state,
        };
        // The commit index is persisted lazily and the log may have lost an
        // unsynced tail: keep it inside what the log holds.
        let last = me.last_index();
        me.state.commit = me.state.commit.min(last).max(me.state.conf_index.min(last));
        Ok(me)
    }

    /// The queue the flusher drains.
    pub fn queue(&self) -> Rc<RefCell<WriteQueue>> {
        self.queue.clone()
    }

    fn check_healthy(&self) -> Result<(), ReplicaLogError> {
        match self.queue.borrow().failed() {
            Some(why) => Err(ReplicaLogError::Io(why.to_string())),
            None => Ok(()),
        }
    }

    fn save_state(&self) -> Result<(), ReplicaLogError> {
        let path = &self.state_path;
        let tmp = path.with_extension("tmp");
        // The commit index is saved no higher than what the log durably
        // holds in its final form: entries above may still be replaced by
        // a queued truncation, or lost with an unsynced tail, and a restart
        // must not take them for committed.
        let mut state = self.state.clone();
        state.commit = state
            .commit
            .min(self.synced_index())
            .max(state.snapshot_index);
        let bytes = serde_json::to_vec(&state).map_err(|e| io_error("encoding", path, e))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_error("creating", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error("writing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error("renaming", &tmp, e))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("fsync of", dir, e))?;
        }
        Ok(())
    }

    /// Highest index of the log as the segment log holds it, without the
    /// queued writes.
    fn disk_last(&self) -> u64 {
        self.part
            .log
            .last_raft_entry()
            .map_or(self.state.snapshot_index, |(i, _)| i)
    }

    fn entry_of_batch(bytes: Bytes) -> Result<Entry, ReplicaLogError> {
        let header = peek_header(&bytes).map_err(|e| ReplicaLogError::Io(e.to_string()))?;
        let (index, term) = (header.raft_index(), header.leader_epoch());
        let mut entry = Entry {
            index,
            term,
            ..Entry::default()
        };
        if header.is_control() {
            let payload = &bytes[BATCH_HEADER_BYTES..];
            let (kind, data) = payload
                .split_first()
                .ok_or_else(|| ReplicaLogError::Io(format!("control entry {index} is empty")))?;
            entry.set_entry_type(match kind {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                k => return Err(ReplicaLogError::Io(format!("control entry type {k}"))),
            });
            entry.data = Bytes::copy_from_slice(data);
        } else {
            entry.data = bytes;
        }
        Ok(entry)
    }
}

/// The batch an entry is stored as: its data batch (copied once, into
/// the buffer the log stamps), or a control batch carrying the entry type
/// byte and the entry's data. `(batch, is control)`.
pub fn stored_batch(entry: &Entry) -> (bytes::BytesMut, bool) {
    if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
        (bytes::BytesMut::from(&entry.data[..]), false)
    } else {
        let mut payload = Vec::with_capacity(1 + entry.data.len());
        payload.push(entry.get_entry_type() as u8);
        payload.extend_from_slice(&entry.data);
        (sprawl_storage::batch::control_batch(&payload), true)
    }
}

impl ReplicaLog for SegmentReplicaLog {
    fn start(&self) -> (u64, u64) {
        (self.state.snapshot_index, self.state.snapshot_term)
    }

    fn last_index(&self) -> u64 {
        self.last_index_locked(&self.queue.borrow())
    }

    fn term(&self, index: u64) -> Result<u64, ReplicaLogError> {
        let (start, start_term) = self.start();
        if index == start {
            return Ok(start_term);
        }
        if index < start {
            return Err(ReplicaLogError::Compacted { index, start });
        }
        let last = self.last_index();
        if index > last {
            return Err(ReplicaLogError::Unavailable { index, last });
        }
        if let Some(e) = self.queue.borrow().overlay_get(index) {
            return Ok(e.term);
        }
        self.part
            .log
            .raft_term(index)
            .ok_or(ReplicaLogError::Unavailable { index, last })
    }

    fn entries(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, ReplicaLogError> {
        let (start, _) = self.start();
        if lo <= start {
            return Err(ReplicaLogError::Compacted { index: lo, start });
        }
        let last = self.last_index();
        if hi > last + 1 {
            return Err(ReplicaLogError::Unavailable {
                index: hi - 1,
                last,
            });
        }
        let max = max_bytes.unwrap_or(u64::MAX);
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0u64;
        let mut next = lo;
        let full = |out: &Vec<Entry>, bytes: u64, add: u64| !out.is_empty() && bytes + add > max;
        while next < hi {
            let from_overlay = self.queue.borrow().overlay_get(next).cloned();
            if let Some(e) = from_overlay {
                let size = e.data.len() as u64;
                if full(&out, bytes, size) {
                    break;
                }
                bytes += size;
                out.push(e);
                next += 1;
                continue;
            }
            let want = max.saturating_sub(bytes).clamp(1, 1 << 20) as usize;
            let batches = self
                .part
                .log
                .read_raft_blocking(next, want)
                .map_err(|e| ReplicaLogError::Io(e.to_string()))?;
            if batches.is_empty() {
                return Err(ReplicaLogError::Unavailable { index: next, last });
            }
            let mut progressed = false;
            for b in batches {
                if next >= hi || self.queue.borrow().overlay_get(next).is_some() {
                    break;
                }
                let e = Self::entry_of_batch(b)?;
                if e.index != next {
                    return Err(ReplicaLogError::Io(format!(
                        "segment log returned entry {} for {next}",
                        e.index
                    )));
                }
                let size = e.data.len() as u64;
                if full(&out, bytes, size) {
                    return Ok(out);
                }
                bytes += size;
                out.push(e);
                next += 1;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        Ok(out)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), ReplicaLogError> {
        self.check_healthy()?;
        let (start, _) = self.start();
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index > start).collect();
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(ReplicaLogError::InvalidWrite(format!(
                    "entry {} after {}",
                    pair[1].index, pair[0].index
                )));
            }
        }
        let last = self.last_index();
        if first > last + 1 {
            return Err(ReplicaLogError::InvalidWrite(format!(
                "entry {first} leaves a gap after {last}"
            )));
        }
        let mut q = self.queue.borrow_mut();
        if first <= last {
            q.ops.push_back(WriteOp::Truncate(first));
        }
        if q.overlay.is_empty() || first < q.overlay_base {
            q.overlay.clear();
            q.overlay_base = first;
        } else {
            let keep = (first - q.overlay_base) as usize;
            q.overlay.truncate(keep);
        }
        for e in entries {
            q.overlay.push_back(e.clone());
            q.ops.push_back(WriteOp::Append(e.clone()));
        }
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.state.term,
            vote: self.state.vote,
            commit: self.state.commit,
            ..HardState::default()
        }
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), ReplicaLogError> {
        self.check_healthy()?;
        let changed = hs.term != self.state.term || hs.vote != self.state.vote;
        self.state.term = hs.term;
        self.state.vote = hs.vote;
        self.state.commit = hs.commit;
        if changed {
            self.save_state()?;
        }
        Ok(())
    }

    fn conf_state(&self) -> (ConfState, u64) {
        (
            ConfState {
                voters: self.state.voters.clone(),
                learners: self.state.learners.clone(),
                ..ConfState::default()
            },
            self.state.conf_index,
        )
    }

    fn set_conf_state(&mut self, conf: &ConfState, index: u64) -> Result<(), ReplicaLogError> {
        self.check_healthy()?;
        if !conf.voters_outgoing.is_empty() || !conf.learners_next.is_empty() {
            return Err(ReplicaLogError::InvalidWrite(
                "joint consensus is not used (single-step membership changes only)".into(),
            ));
        }
        self.state.voters = conf.voters.clone();
        self.state.learners = conf.learners.clone();
        self.state.conf_index = index;
        self.state.commit = self.state.commit.max(index);
        self.save_state()
    }

    fn synced_index(&self) -> u64 {
        let disk = self
            .part
            .log
            .synced_raft_index()
            .unwrap_or(self.state.snapshot_index);
        let q = self.queue.borrow();
        match q.lowest_touched() {
            Some(cut) => disk.min(cut.saturating_sub(1)),
            None => disk,
        }
        .max(self.state.snapshot_index)
        .min(self.last_index_locked(&q))
    }

    fn sync(&mut self) -> Result<(), ReplicaLogError> {
        // Writes become durable through the shard's flusher (asynchronous
        // I/O); the Raft core learns of it through `on_persisted`.
        self.check_healthy()?;
        if self.queue.borrow().is_empty() && self.synced_index() == self.last_index() {
            return Ok(());
        }
        Err(ReplicaLogError::Io(
            "a synchronous sync of the segment log was asked for (only snapshots do that)".into(),
        ))
    }

    fn compact(&mut self, _through: u64) -> Result<(), ReplicaLogError> {
        // Replicated partitions keep their whole local log (retention of
        // replicated partitions is not applied yet): nothing to do.
        Ok(())
    }

    fn snapshot_payload(&self, through: u64) -> Result<Vec<u8>, ReplicaLogError> {
        Err(ReplicaLogError::Io(format!(
            "no snapshot through {through}: replicated logs are never compacted, so a \
             replica needs none"
        )))
    }

    fn base_snapshot(&self, to: u64) -> Option<LogSnapshot> {
        let voters = &self.state.bootstrap_voters;
        if voters.is_empty() || self.state.snapshot_index != BOOTSTRAP_INDEX {
            return None;
        }
        let learners = if voters.contains(&to) {
            Vec::new()
        } else {
            vec![to]
        };
        Some(LogSnapshot {
            index: self.state.snapshot_index,
            term: self.state.snapshot_term,
            conf_state: ConfState {
                voters: voters.clone(),
                learners,
                ..ConfState::default()
            },
        })
    }

    fn install_snapshot(
        &mut self,
        snapshot: &LogSnapshot,
        payload: &[u8],
    ) -> Result<(), ReplicaLogError> {
        self.check_healthy()?;
        let empty = sprawl_cluster::replica::log::decode_payload(payload)
            .map(|e| e.is_empty())
            .unwrap_or(false);
        if !empty
            || self.disk_last() > self.state.snapshot_index
            || !self.queue.borrow().is_empty()
            || !self.queue.borrow().overlay.is_empty()
        {
            return Err(ReplicaLogError::InvalidWrite(
                "only the bootstrap snapshot of an empty replica is supported".into(),
            ));
        }
        self.state.snapshot_index = snapshot.index;
        self.state.snapshot_term = snapshot.term;
        self.state.bootstrap_voters = snapshot.conf_state.voters.clone();
        self.state.voters = snapshot.conf_state.voters.clone();
        self.state.learners = snapshot.conf_state.learners.clone();
        self.state.conf_index = snapshot.index;
        self.state.commit = self.state.commit.max(snapshot.index);
        self.state.term = self.state.term.max(snapshot.term);
        self.save_state()
    }
}

impl SegmentReplicaLog {
    fn last_index_locked(&self, q: &WriteQueue) -> u64 {
        // Only truncations queued: the log ends before the lowest.
        if let Some(last) = q.overlay_last() {
            return last;
        }
        match q.lowest_touched() {
            Some(cut) => cut.saturating_sub(1).min(self.disk_last()),
            None => self.disk_last(),
        }
    }
}
