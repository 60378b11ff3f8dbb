//! A per-shard pool of direct-I/O buffers.
//!
//! glommio's `DmaBuffer`s come from the executor's registered `io_memory` when
//! it has room (fixed buffers: no page pinning per write) and from an aligned
//! heap allocation otherwise. A `DmaBuffer` cannot grow back after a trim, so
//! the pool keeps idle buffers by exact (4 KiB-aligned) size: steady workloads
//! flush the same few sizes over and over and allocate nothing.
//!
//! The pool is `!Send` on purpose: it belongs to exactly one shard.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::io::DmaBuffer;

/// Pool of direct-I/O buffers owned by one shard, keyed by size.
pub struct DmaBufPool {
    idle_bytes_max: usize,
    state: RefCell<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// `(size, idle buffers of that size)`, most recently used size last.
    by_size: Vec<(usize, Vec<DmaBuffer>)>,
    idle_bytes: usize,
    reused: u64,
    allocated: u64,
}

impl DmaBufPool {
    /// A pool keeping at most `idle_bytes_max` bytes of idle buffers.
    pub fn new(idle_bytes_max: usize) -> Rc<Self> {
        Rc::new(Self {
            idle_bytes_max,
            state: RefCell::default(),
        })
    }

    /// A zero-filled-or-reused buffer of `bytes` rounded up to 4 KiB. Its
    /// contents are unspecified: callers overwrite what they write.
    /// Must run on a glommio executor.
    pub fn take(&self, bytes: usize) -> DmaBuffer {
        let size = crate::align_up(bytes as u64) as usize;
        let mut st = self.state.borrow_mut();
        if let Some(i) = st.by_size.iter().position(|(s, _)| *s == size) {
            if let Some(buf) = st.by_size[i].1.pop() {
                st.idle_bytes -= size;
                st.reused += 1;
                return buf;
            }
        }
        st.allocated += 1;
        glommio::allocate_dma_buffer(size)
    }

    /// Returns a buffer for reuse; dropped when the idle bound is reached.
    pub fn give_back(&self, buf: DmaBuffer) {
        let size = buf.len();
        let mut st = self.state.borrow_mut();
        if size % crate::DIO_ALIGN != 0 || st.idle_bytes + size > self.idle_bytes_max {
            return;
        }
        st.idle_bytes += size;
        match st.by_size.iter().position(|(s, _)| *s == size) {
            Some(i) => st.by_size[i].1.push(buf),
            None => st.by_size.push((size, vec![buf])),
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.state.borrow().idle_bytes
    }

    /// `(buffers reused, buffers allocated)` since creation.
    pub fn reuse_counts(&self) -> (u64, u64) {
        let st = self.state.borrow();
        (st.reused, st.allocated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_size_aligned_and_bounded() {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async {
                let pool = DmaBufPool::new(3 * 12_288);
                let a = pool.take(10_000);
                assert_eq!(a.len(), 12_288);
                assert_eq!(a.as_ptr() as usize % crate::DIO_ALIGN, 0);
                let ptr = a.as_ptr();
                pool.give_back(a);
                let b = pool.take(12_000);
                assert_eq!(
                    b.as_ptr(),
                    ptr,
                    "the idle buffer of that size is handed out again"
                );
                let c = pool.take(4096);
                assert_eq!(c.len(), 4096);
                pool.give_back(b);
                for _ in 0..3 {
                    pool.give_back(glommio::allocate_dma_buffer(12_288));
                }
                assert_eq!(pool.idle_bytes(), 3 * 12_288, "idle bytes are bounded");
                assert_eq!(pool.reuse_counts(), (1, 2));
            });
    }
}
