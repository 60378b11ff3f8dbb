//! Per-connection bound on request bytes held in memory: a frame's body is
//! read only once its bytes fit the budget, so a client that pipelines many
//! large requests waits (QUIC flow control then pushes back on it) instead
//! of growing the node's memory.

use std::cell::Cell;
use std::rc::Rc;

use sprawl_shards::notify::LocalNotify;

pub struct ByteBudget {
    capacity: usize,
    available: Cell<usize>,
    released: LocalNotify,
}

pub struct BudgetPermit {
    budget: Rc<ByteBudget>,
    bytes: usize,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget
            .available
            .set(self.budget.available.get() + self.bytes);
        self.budget.released.notify_all();
    }
}

impl ByteBudget {
    pub fn new(capacity: usize) -> Rc<Self> {
        Rc::new(Self {
            capacity,
            available: Cell::new(capacity),
            released: LocalNotify::default(),
        })
    }

    /// Waits until `bytes` (capped at the capacity, so one huge frame can
    /// still pass alone) are available and takes them.
    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> BudgetPermit {
        let bytes = bytes.min(self.capacity);
        loop {
            let released = self.released.notified();
            if self.available.get() >= bytes {
                self.available.set(self.available.get() - bytes);
                return BudgetPermit {
                    budget: self.clone(),
                    bytes,
                };
            }
            released.await;
        }
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.available.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_bytes_are_released() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let budget = ByteBudget::new(100);
                let a = budget.acquire(80).await;
                let b2 = budget.clone();
                let waiter = glommio::spawn_local(async move { b2.acquire(50).await });
                glommio::yield_if_needed().await;
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                assert_eq!(budget.available(), 20, "the waiter has not taken anything");
                drop(a);
                let b = waiter.await;
                assert_eq!(budget.available(), 50);
                drop(b);
                let huge = budget.acquire(10_000).await;
                assert_eq!(
                    budget.available(),
                    0,
                    "oversized asks take the whole budget"
                );
                drop(huge);
            });
    }
}
