//! The log's exclusive I/O turn: one flush, roll, truncation or retention
//! pass at a time, with every waiter woken when a turn ends.
//!
//! Why not a semaphore: glommio's `Semaphore` lets a newly arriving task take
//! a released permit before the woken waiter runs, and under a steady stream
//! of appends a waiter starved for seconds (measured: p99.9 ack of 3 s). Here
//! a released turn wakes *all* waiters; for appends that is also what group
//! commit wants, since whichever task runs first flushes everyone's batches.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct IoGate {
    busy: Cell<bool>,
    /// Bumped whenever a turn ends.
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

/// Holds the turn; releasing it (drop) wakes every waiter.
pub struct IoTurn<'a> {
    gate: &'a IoGate,
}

impl Drop for IoTurn<'_> {
    fn drop(&mut self) {
        self.gate.busy.set(false);
        self.gate.generation.set(self.gate.generation.get() + 1);
        for w in self.gate.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

impl IoGate {
    /// Waits for and takes the turn.
    pub async fn turn(&self) -> IoTurn<'_> {
        loop {
            if !self.busy.get() {
                self.busy.set(true);
                return IoTurn { gate: self };
            }
            self.turn_ended().await;
        }
    }

    /// Takes the turn if nobody holds it.
    pub fn try_turn(&self) -> Option<IoTurn<'_>> {
        if self.busy.get() {
            return None;
        }
        self.busy.set(true);
        Some(IoTurn { gate: self })
    }

    /// Resolves once the current turn (if any) has ended.
    pub fn turn_ended(&self) -> TurnEnded<'_> {
        TurnEnded {
            gate: self,
            generation: self.generation.get(),
        }
    }
}

pub struct TurnEnded<'a> {
    gate: &'a IoGate,
    generation: u64,
}

impl Future for TurnEnded<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.generation.get() != self.generation || !self.gate.busy.get() {
            return Poll::Ready(());
        }
        self.gate.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_exclusive_and_waiters_wake() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let gate = std::rc::Rc::new(IoGate::default());
                let inside = std::rc::Rc::new(Cell::new(0));
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let (gate, inside) = (gate.clone(), inside.clone());
                        glommio::spawn_local(async move {
                            for _ in 0..10 {
                                let _t = gate.turn().await;
                                inside.set(inside.get() + 1);
                                assert_eq!(inside.get(), 1);
                                glommio::yield_if_needed().await;
                                glommio::timer::sleep(std::time::Duration::from_micros(10)).await;
                                inside.set(inside.get() - 1);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
            });
    }
}
