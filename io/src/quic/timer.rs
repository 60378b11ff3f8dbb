//! quinn's `AsyncTimer` on glommio timers.
//!
//! quinn needs a `Send` timer, glommio's `Timer` holds an `Rc`. The quinn side
//! ([`ShardTimer`]) is therefore only a deadline and a slot number; the glommio
//! `Timer` lives in a thread-local table of the shard that first polled it.
//! quinn resets a connection's timer on nearly every packet, so a reset only
//! moves the deadline and the glommio timer is re-armed lazily on the next
//! poll (quinn always polls after a reset): no task per timer, no allocation
//! per reset.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use glommio::timer::Timer;

thread_local! {
    /// glommio timers of this shard, keyed by [`ShardTimer::slot`].
    static SHARD_TIMERS: RefCell<HashMap<u64, ArmedTimer>> = RefCell::new(HashMap::new());
    static NEXT_SLOT: Cell<u64> = const { Cell::new(1) };
}

struct ArmedTimer {
    deadline: Instant,
    timer: Timer,
}

/// A quinn timer: a deadline, backed by a glommio timer on the polling shard.
///
/// Must be polled and dropped on the executor thread that first polled it
/// (quinn's drivers run there). Dropped elsewhere, the glommio timer would be
/// left in the first thread's table until that thread exits.
#[derive(Debug)]
pub(crate) struct ShardTimer {
    deadline: Instant,
    /// Key in `SHARD_TIMERS`; 0 until first polled while pending.
    slot: u64,
}

impl ShardTimer {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self { deadline, slot: 0 }
    }
}

impl quinn::AsyncTimer for ShardTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<()> {
        let now = Instant::now();
        if now >= self.deadline {
            return Poll::Ready(());
        }
        if self.slot == 0 {
            self.slot = NEXT_SLOT.with(|next| {
                let slot = next.get();
                next.set(slot + 1);
                slot
            });
        }
        let (slot, deadline) = (self.slot, self.deadline);
        let fired = SHARD_TIMERS.with(|timers| {
            let mut timers = timers.borrow_mut();
            let armed = timers.entry(slot).or_insert_with(|| ArmedTimer {
                deadline,
                timer: Timer::new(deadline - now),
            });
            if armed.deadline != deadline {
                armed.deadline = deadline;
                armed.timer.reset(deadline - now);
            }
            Pin::new(&mut armed.timer).poll(cx).is_ready()
        });
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ShardTimer {
    fn drop(&mut self) {
        if self.slot != 0 {
            // `try_with`: the table may already be gone during thread exit.
            let _ = SHARD_TIMERS.try_with(|timers| timers.borrow_mut().remove(&self.slot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::AsyncTimer;
    use std::future::poll_fn;
    use std::time::Duration;

    #[test]
    fn fires_at_the_deadline_after_resets_in_both_directions() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let start = Instant::now();
                let mut timer = Box::pin(ShardTimer::new(start + Duration::from_secs(60)));
                // Arm it far away, then pull the deadline in: it must fire at
                // the new (earlier) deadline, not the armed one.
                assert!(poll_fn(|cx| Poll::Ready(timer.as_mut().poll(cx)))
                    .await
                    .is_pending());
                timer.as_mut().reset(start + Duration::from_millis(10));
                poll_fn(|cx| timer.as_mut().poll(cx)).await;
                let fired_after = start.elapsed();
                assert!(fired_after >= Duration::from_millis(10), "{fired_after:?}");
                assert!(fired_after < Duration::from_secs(5), "{fired_after:?}");

                // Push it out again from the already-fired state.
                let second = Instant::now();
                timer.as_mut().reset(second + Duration::from_millis(5));
                poll_fn(|cx| timer.as_mut().poll(cx)).await;
                assert!(second.elapsed() >= Duration::from_millis(5));

                drop(timer);
                assert_eq!(SHARD_TIMERS.with(|t| t.borrow().len()), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
