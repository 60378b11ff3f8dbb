//! quinn's `AsyncUdpSocket` for a glommio shard.
//!
//! The datagrams themselves go through `quinn_udp` on a non-blocking std
//! socket: `sendmsg` with `UDP_SEGMENT` (GSO, up to 64 datagrams per call) and
//! `recvmmsg` with `UDP_GRO`, which is where QUIC throughput comes from. Only
//! readiness comes from elsewhere:
//!
//! - Readable: glommio 0.9 exposes no fd-readiness API, but its `UdpSocket`
//!   exposes `peek_from`, an io_uring `recvmsg(MSG_PEEK)` that the kernel
//!   completes when a datagram is queued, without consuming it. A small probe
//!   task on the shard owns a `dup` of the socket and issues one such peek
//!   each time quinn's receive found the queue empty; its completion wakes
//!   quinn, which then drains the queue with `recvmmsg`. The peek is level
//!   triggered (it completes at once if data is already queued), so no wake-up
//!   can be lost between "queue empty" and "probe armed". Idle sockets cost
//!   nothing: the probe only runs when quinn asks.
//! - Writable: see `write_watcher` (sends only block when the send buffer is
//!   full).

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

use super::write_watcher::WriteReadiness;

/// Pause after a failed readiness probe, so that a persistent socket error
/// cannot turn the probe into a busy loop.
const PROBE_ERROR_BACKOFF_MS: u64 = 1;

/// Counters of one endpoint's UDP socket (since it was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpSocketStats {
    /// `recvmmsg` calls that returned data.
    pub recv_syscalls: u64,
    /// Buffers returned by those calls (one per GRO batch).
    pub recv_buffers: u64,
    /// Datagrams in those buffers: `recv_datagrams / recv_syscalls` shows GRO at work.
    pub recv_datagrams: u64,
    /// `sendmsg` calls not refused with `WouldBlock` (quinn_udp logs and drops
    /// other send errors: UDP is lossy anyway).
    pub send_syscalls: u64,
    /// Datagrams sent: `sent_datagrams / send_syscalls` shows GSO at work.
    pub sent_datagrams: u64,
    /// Sends refused because the socket send buffer was full.
    pub send_would_block: u64,
    /// Times the receive queue was found empty and readiness was awaited.
    pub read_waits: u64,
}

#[derive(Debug, Default)]
struct SocketCounters {
    recv_syscalls: AtomicU64,
    recv_buffers: AtomicU64,
    recv_datagrams: AtomicU64,
    send_syscalls: AtomicU64,
    sent_datagrams: AtomicU64,
    send_would_block: AtomicU64,
}

/// A UDP socket owned by one shard's quinn endpoint.
pub(crate) struct ShardUdpSocket {
    io: std::net::UdpSocket,
    state: UdpSocketState,
    read: Arc<ReadReadiness>,
    write: Arc<WriteReadiness>,
    next_poller_id: AtomicU64,
    counters: SocketCounters,
}

impl ShardUdpSocket {
    /// Must run on a glommio executor thread: it spawns the read probe there.
    pub(crate) fn new(io: std::net::UdpSocket) -> io::Result<Self> {
        // Also switches the socket to non-blocking and enables GRO.
        let state = UdpSocketState::new((&io).into())?;
        let probe_fd = io.try_clone()?.into_raw_fd();
        // SAFETY: `probe_fd` is an open UDP socket fd (a dup of `io`) whose sole ownership
        // `into_raw_fd` just handed over; glommio closes it when the probe task ends.
        let probe_socket = unsafe { glommio::net::UdpSocket::from_raw_fd(probe_fd) };
        let read = Arc::new(ReadReadiness::default());
        glommio::spawn_local(probe_readable(probe_socket, read.clone())).detach();
        let write = WriteReadiness::new(io.as_raw_fd());
        Ok(Self {
            io,
            state,
            read,
            write,
            next_poller_id: AtomicU64::new(1),
            counters: SocketCounters::default(),
        })
    }

    pub(crate) fn stats(&self) -> UdpSocketStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        UdpSocketStats {
            recv_syscalls: load(&c.recv_syscalls),
            recv_buffers: load(&c.recv_buffers),
            recv_datagrams: load(&c.recv_datagrams),
            send_syscalls: load(&c.send_syscalls),
            sent_datagrams: load(&c.sent_datagrams),
            send_would_block: load(&c.send_would_block),
            read_waits: load(&self.read.probes_completed),
        }
    }
}

/// Relaxed counting: one writer (the shard), readers only want a snapshot.
fn count(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

impl fmt::Debug for ShardUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardUdpSocket")
            .field("io", &self.io)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl Drop for ShardUdpSocket {
    fn drop(&mut self) {
        self.read.close();
        // Before `io` (and with it the fd) is closed.
        self.write.deregister();
    }
}

impl quinn::AsyncUdpSocket for ShardUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        let id = self.next_poller_id.fetch_add(1, Ordering::Relaxed);
        Box::pin(ShardUdpPoller { socket: self, id })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // `send` logs and swallows every error except WouldBlock (UDP is lossy anyway).
        match self.state.send((&self.io).into(), transmit) {
            Ok(()) => {
                count(&self.counters.send_syscalls, 1);
                let datagrams = match transmit.segment_size {
                    Some(segment) if segment > 0 => transmit.contents.len().div_ceil(segment),
                    _ => 1,
                };
                count(&self.counters.sent_datagrams, datagrams);
                Ok(())
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    count(&self.counters.send_would_block, 1);
                    self.write.mark_blocked();
                }
                Err(e)
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        match self.state.recv((&self.io).into(), bufs, meta) {
            Ok(buffers) => {
                count(&self.counters.recv_syscalls, 1);
                count(&self.counters.recv_buffers, buffers);
                let datagrams = meta[..buffers]
                    .iter()
                    .map(|m| m.len.div_ceil(m.stride.max(1)))
                    .sum();
                count(&self.counters.recv_datagrams, datagrams);
                Poll::Ready(Ok(buffers))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read.request(cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

/// One quinn task's registration for write readiness.
#[derive(Debug)]
struct ShardUdpPoller {
    socket: Arc<ShardUdpSocket>,
    id: u64,
}

impl quinn::UdpPoller for ShardUdpPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.socket.write.poll_writable(self.id, cx)
    }
}

impl Drop for ShardUdpPoller {
    fn drop(&mut self) {
        self.socket.write.forget_waiter(self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections only move wakers and flags: always consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hand-off between quinn's receive path and the shard's probe task.
///
/// The mutex is never contended (both sides run on the shard); it only exists
/// because quinn requires the socket to be `Sync`.
#[derive(Debug, Default)]
struct ReadReadiness {
    state: Mutex<ReadState>,
    /// Completed probes, i.e. times the socket was reported readable.
    probes_completed: AtomicU64,
}

#[derive(Debug, Default)]
struct ReadState {
    /// quinn found the queue empty and waits for a datagram.
    wanted: bool,
    /// The socket was dropped: the probe task must end.
    closed: bool,
    receiver: Option<Waker>,
    probe: Option<Waker>,
}

fn store_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(stored) => stored.clone_from(waker),
        None => *slot = Some(waker.clone()),
    }
}

impl ReadReadiness {
    /// quinn's side: the queue is empty, wake `waker` once a datagram is queued.
    fn request(&self, waker: &Waker) {
        let probe = {
            let mut state = lock(&self.state);
            store_waker(&mut state.receiver, waker);
            if state.wanted {
                None
            } else {
                state.wanted = true;
                state.probe.take()
            }
        };
        if let Some(probe) = probe {
            probe.wake();
        }
    }

    /// Probe side: `Ready(true)` when quinn wants readiness, `Ready(false)` once closed.
    fn poll_wanted(&self, cx: &Context) -> Poll<bool> {
        let mut state = lock(&self.state);
        if state.closed {
            Poll::Ready(false)
        } else if state.wanted {
            Poll::Ready(true)
        } else {
            store_waker(&mut state.probe, cx.waker());
            Poll::Pending
        }
    }

    fn poll_closed(&self, cx: &Context) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.closed {
            Poll::Ready(())
        } else {
            store_waker(&mut state.probe, cx.waker());
            Poll::Pending
        }
    }

    /// Probe side: a datagram is queued (or the socket has an error to report).
    fn on_readable(&self) {
        self.probes_completed.fetch_add(1, Ordering::Relaxed);
        let receiver = {
            let mut state = lock(&self.state);
            state.wanted = false;
            state.receiver.take()
        };
        if let Some(receiver) = receiver {
            receiver.wake();
        }
    }

    fn close(&self) {
        let probe = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.probe.take()
        };
        if let Some(probe) = probe {
            probe.wake();
        }
    }
}

/// The shard-local probe task: one io_uring `MSG_PEEK` per "queue empty".
async fn probe_readable(socket: glommio::net::UdpSocket, readiness: Arc<ReadReadiness>) {
    // A 1-byte peek: it only has to complete, the datagram stays queued.
    let mut probe_byte = [0u8; 1];
    while poll_fn(|cx| readiness.poll_wanted(cx)).await {
        let outcome = {
            let mut peek = pin!(socket.peek_from(&mut probe_byte));
            poll_fn(|cx| {
                if readiness.poll_closed(cx).is_ready() {
                    // Dropping `peek` cancels the in-flight io_uring request.
                    return Poll::Ready(None);
                }
                peek.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match outcome {
            None => return,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                // quinn's own recvmmsg will see (and report) the socket error.
                tracing::debug!("QUIC read-readiness probe failed: {e}");
                glommio::timer::sleep(Duration::from_millis(PROBE_ERROR_BACKOFF_MS)).await;
            }
        }
        readiness.on_readable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::AsyncUdpSocket;
    use std::cell::Cell;

    #[test]
    fn waits_for_a_datagram_without_spinning() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let socket = ShardUdpSocket::new(std_socket).unwrap();
                let addr = socket.local_addr().unwrap();

                // The datagram arrives 20 ms later; if the probe busy-looped,
                // quinn's receive would be polled many times meanwhile.
                glommio::spawn_local(async move {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    sender.send_to(b"hello", addr).unwrap();
                })
                .detach();

                let mut storage = vec![0u8; 64 * 1024];
                let mut meta = [RecvMeta::default(); 1];
                let polls = Cell::new(0u32);
                let received = poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    let mut bufs = [IoSliceMut::new(&mut storage)];
                    socket.poll_recv(cx, &mut bufs, &mut meta)
                })
                .await
                .unwrap();
                assert_eq!(received, 1);
                assert_eq!(meta[0].len, 5);
                assert_eq!(&storage[..5], b"hello");
                assert_eq!(polls.get(), 2, "receive polled more than pending + ready");
                let stats = socket.stats();
                assert_eq!(stats.read_waits, 1);
                assert_eq!((stats.recv_syscalls, stats.recv_datagrams), (1, 1));

                // Dropping the socket ends the probe task (and closes its fd).
                let read = socket.read.clone();
                drop(socket);
                glommio::executor().yield_now().await;
                assert_eq!(Arc::strong_count(&read), 1, "probe task still alive");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
