//! The `cluster-apply` thread: brings the shards' catalog to what the
//! metadata group committed, one job at a time, in commit order.
//!
//! `ControlHandle::call` blocks until every shard adopted a change (with
//! tiered storage a delete may wait on S3); the Raft thread must keep
//! ticking and heartbeating meanwhile, so the blocking happens here.

use std::collections::{BTreeSet, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprawl_shards::{ClusterTopic, ControlHandle, ShardRequest, TopicCatalog};
use tokio::sync::mpsc::UnboundedSender;

use super::peer::Inbound;

/// A topic with its partition leaders and replicas, or `None` for its
/// deletion.
type TopicChange = Option<ClusterTopic>;

/// A change for the shards, committed at a metadata log index.
pub enum Job {
    /// Adopt a topic with its partition leaders, or (`None`) delete it.
    Topic { name: String, topic: TopicChange },
    /// After a leader's snapshot: delete every cluster topic it lacks. The
    /// shards' catalog is read when the job runs (every earlier job done),
    /// not when it is queued.
    DeleteAllBut(BTreeSet<String>),
}

/// The driver's end: queues jobs and knows which are still pending.
pub struct Applier {
    jobs: mpsc::Sender<(Job, u64)>,
    /// Indexes of queued jobs not done yet, in order (the thread is FIFO).
    pending: VecDeque<u64>,
}

impl Applier {
    /// Starts the thread; it reports each finished job as
    /// `Inbound::Applied` on `done`.
    pub fn start(
        control: ControlHandle,
        catalog: Arc<Mutex<TopicCatalog>>,
        done: UnboundedSender<Inbound>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<(Job, u64)>();
        std::thread::Builder::new()
            .name("cluster-apply".into())
            .spawn(move || {
                for (job, index) in queue {
                    run(&control, &catalog, job, index);
                    if done.send(Inbound::Applied { index }).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs,
            pending: VecDeque::new(),
        })
    }

    pub fn submit(&mut self, job: Job, index: u64) {
        self.pending.push_back(index);
        if self.jobs.send((job, index)).is_err() {
            tracing::error!(index, "the metadata applier thread has stopped");
        }
    }

    /// The oldest job finished.
    pub fn finished(&mut self) {
        self.pending.pop_front();
    }

    /// The metadata index the shards reflect, given the state machine's:
    /// all of it unless jobs are pending, else just below the oldest.
    pub fn locally_applied(&self, state_applied: u64) -> u64 {
        self.pending
            .front()
            .map_or(state_applied, |&oldest| oldest.saturating_sub(1))
    }
}

/// Runs one job, retrying while the shards fail (a full disk, say): the
/// change is committed cluster-wide, so this node must take it, and clients
/// are only answered once it has.
fn run(control: &ControlHandle, catalog: &Arc<Mutex<TopicCatalog>>, job: Job, index: u64) {
    let changes: Vec<(String, TopicChange)> = match job {
        Job::Topic { name, topic } => vec![(name, topic)],
        Job::DeleteAllBut(keep) => {
            // Only topics that came from the metadata group: a topic this
            // node had before it joined a cluster is the operator's.
            let local: Vec<String> = catalog.lock().unwrap().leaders.keys().cloned().collect();
            local
                .into_iter()
                .filter(|name| !keep.contains(name))
                .map(|name| (name, None))
                .collect()
        }
    };
    for (name, topic) in changes {
        let mut backoff = Duration::from_millis(100);
        loop {
            let request = ShardRequest::ApplyClusterTopic {
                name: name.clone(),
                topic: topic.clone(),
                index,
            };
            match control.call(request) {
                Ok(_) => break,
                Err(sprawl_shards::ShardError::ShuttingDown) => return,
                Err(e) => {
                    tracing::error!(index, error = %e, "cannot apply a committed metadata change locally; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn locally_applied_stops_below_the_oldest_pending_job() {
        let (jobs, _queue) = std::sync::mpsc::channel();
        let mut a = super::Applier {
            jobs,
            pending: Default::default(),
        };
        assert_eq!(
            a.locally_applied(9),
            9,
            "nothing pending: the state's index"
        );
        // A snapshot's reconcile: several jobs at one index.
        a.submit(super::Job::DeleteAllBut(Default::default()), 7);
        a.submit(super::Job::DeleteAllBut(Default::default()), 7);
        a.submit(super::Job::DeleteAllBut(Default::default()), 9);
        assert_eq!(a.locally_applied(9), 6);
        a.finished();
        assert_eq!(a.locally_applied(9), 6, "one job at 7 still pending");
        a.finished();
        assert_eq!(a.locally_applied(9), 8);
        a.finished();
        assert_eq!(a.locally_applied(9), 9);
    }
}
