//! Write readiness for sockets whose send buffer filled up.
//!
//! glommio 0.9 keeps its fd-readiness primitive (`Reactor::poll_write_ready`)
//! crate-private, and nothing public in it waits for "writable" on a foreign
//! fd. A UDP send only fails with `EAGAIN` when the socket send buffer is full,
//! which is rare (a burst larger than `SO_SNDBUF` still in the NIC queue), so
//! instead of a second io_uring this uses one process-wide thread parked in
//! `epoll_wait`. A socket is registered `EPOLLOUT | EPOLLONESHOT` only while a
//! sender is blocked; the thread then wakes the blocked quinn tasks through
//! their wakers (glommio accepts wakes from foreign threads). The thread costs
//! nothing while no socket is blocked and never sits on the receive path.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// Events taken from the kernel per `epoll_wait`.
const EPOLL_EVENTS_PER_WAIT: usize = 64;

/// The process-wide epoll thread and the sockets registered with it.
struct Watcher {
    epoll: OwnedFd,
    /// epoll token -> socket; tokens are never reused.
    sockets: Mutex<HashMap<u64, Weak<WriteReadiness>>>,
    next_token: AtomicU64,
}

static WATCHER: OnceLock<Result<Arc<Watcher>, String>> = OnceLock::new();

fn watcher() -> io::Result<&'static Watcher> {
    match WATCHER.get_or_init(|| Watcher::start().map_err(|e| e.to_string())) {
        Ok(watcher) => Ok(watcher),
        Err(e) => Err(io::Error::other(format!(
            "starting the QUIC write-readiness thread: {e}"
        ))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the state consistent, so a panic in
    // another holder does not invalidate it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watcher {
    fn start() -> io::Result<Arc<Watcher>> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created by epoll_create1 and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let watcher = Arc::new(Watcher {
            epoll,
            sockets: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
        });
        let running = watcher.clone();
        std::thread::Builder::new()
            .name("sprawl-quic-writable".into())
            .spawn(move || running.run())?;
        Ok(watcher)
    }

    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS_PER_WAIT];
        loop {
            // SAFETY: `events` is a writable array of EPOLL_EVENTS_PER_WAIT entries and the
            // epoll fd stays open as long as `self` (the thread holds an `Arc`).
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EPOLL_EVENTS_PER_WAIT as libc::c_int,
                    -1,
                )
            };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("QUIC write-readiness thread stops: epoll_wait: {e}");
                return;
            }
            for event in &events[..ready as usize] {
                // Copy out of the (packed) struct before use.
                let token = event.u64;
                let socket = lock(&self.sockets).get(&token).and_then(Weak::upgrade);
                if let Some(socket) = socket {
                    socket.on_writable();
                }
            }
        }
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is valid for the duration of the call; `fd` is an open socket
        // (callers deregister before the socket is closed).
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Write readiness of one socket, shared by all of quinn's pollers on it.
#[derive(Debug)]
pub(crate) struct WriteReadiness {
    fd: RawFd,
    /// Set when a send failed with `WouldBlock`, cleared by the watcher.
    blocked: AtomicBool,
    state: Mutex<WriteState>,
}

#[derive(Debug, Default)]
struct WriteState {
    /// epoll token, 0 while never registered.
    token: u64,
    /// `EPOLLOUT` is armed and has not fired yet.
    armed: bool,
    /// Tasks waiting for the socket to become writable, by poller id.
    waiters: Vec<(u64, Waker)>,
}

impl WriteReadiness {
    /// `fd` must stay open until [`WriteReadiness::deregister`] is called.
    pub(crate) fn new(fd: RawFd) -> Arc<Self> {
        Arc::new(Self {
            fd,
            blocked: AtomicBool::new(false),
            state: Mutex::new(WriteState::default()),
        })
    }

    /// Records that a send just failed with `WouldBlock`.
    pub(crate) fn mark_blocked(&self) {
        self.blocked.store(true, Ordering::Release);
    }

    /// Ready unless the last send found the buffer full and the kernel has not
    /// reported space since; otherwise registers `waiter` to be woken.
    pub(crate) fn poll_writable(
        self: &Arc<Self>,
        waiter: u64,
        cx: &Context,
    ) -> Poll<io::Result<()>> {
        // quinn calls this before every send: the common case is one atomic load.
        if !self.blocked.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut state = lock(&self.state);
        if !self.blocked.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        match state.waiters.iter_mut().find(|(id, _)| *id == waiter) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => state.waiters.push((waiter, cx.waker().clone())),
        }
        if !state.armed {
            if let Err(e) = self.arm(&mut state) {
                state.waiters.retain(|(id, _)| *id != waiter);
                return Poll::Ready(Err(e));
            }
            state.armed = true;
        }
        Poll::Pending
    }

    fn arm(self: &Arc<Self>, state: &mut WriteState) -> io::Result<()> {
        let watcher = watcher()?;
        let events = (libc::EPOLLOUT | libc::EPOLLONESHOT) as u32;
        if state.token == 0 {
            let token = watcher.next_token.fetch_add(1, Ordering::Relaxed);
            lock(&watcher.sockets).insert(token, Arc::downgrade(self));
            if let Err(e) = watcher.ctl(libc::EPOLL_CTL_ADD, self.fd, events, token) {
                lock(&watcher.sockets).remove(&token);
                return Err(e);
            }
            state.token = token;
            Ok(())
        } else {
            // Level check at re-arm: if space already appeared, the event fires at once.
            watcher.ctl(libc::EPOLL_CTL_MOD, self.fd, events, state.token)
        }
    }

    /// Drops the registration of a poller that quinn discarded.
    pub(crate) fn forget_waiter(&self, waiter: u64) {
        lock(&self.state).waiters.retain(|(id, _)| *id != waiter);
    }

    /// Called on the watcher thread when the kernel reports `EPOLLOUT`.
    fn on_writable(&self) {
        let waiters = {
            let mut state = lock(&self.state);
            state.armed = false;
            self.blocked.store(false, Ordering::Release);
            std::mem::take(&mut state.waiters)
        };
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Removes the socket from epoll. Must run before its fd is closed.
    pub(crate) fn deregister(&self) {
        let token = std::mem::take(&mut lock(&self.state).token);
        if token == 0 {
            return;
        }
        if let Ok(watcher) = watcher() {
            // ENOENT cannot happen (we added it); nothing useful to do on error anyway.
            let _ = watcher.ctl(libc::EPOLL_CTL_DEL, self.fd, 0, token);
            lock(&watcher.sockets).remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::mpsc;
    use std::task::Wake;
    use std::time::Duration;

    struct ChannelWaker(Mutex<mpsc::Sender<()>>);

    impl Wake for ChannelWaker {
        fn wake(self: Arc<Self>) {
            let _ = lock(&self.0).send(());
        }
    }

    #[test]
    fn wakes_a_blocked_sender_once_the_peer_drains() {
        // A Unix datagram pair blocks the sender deterministically once the
        // receiver's queue is full; EPOLLOUT works the same way as for UDP.
        let (sender, receiver) = UnixDatagram::pair().unwrap();
        sender.set_nonblocking(true).unwrap();
        let datagram = [7u8; 1024];
        let mut sent = 0usize;
        loop {
            match sender.send(&datagram) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("send: {e}"),
            }
            assert!(sent < 1_000_000, "sender never blocked");
        }

        let readiness = WriteReadiness::new(sender.as_raw_fd());
        let (woken_tx, woken_rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(ChannelWaker(Mutex::new(woken_tx))));
        let cx = Context::from_waker(&waker);

        assert!(
            readiness.poll_writable(1, &cx).is_ready(),
            "not blocked yet"
        );
        readiness.mark_blocked();
        assert!(readiness.poll_writable(1, &cx).is_pending());
        assert!(readiness.poll_writable(2, &cx).is_pending());
        assert!(woken_rx.try_recv().is_err(), "woken while still full");

        // Drain everything: a full sender buffer only reports writable again
        // once it is below half, so one datagram may not be enough.
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while receiver.recv(&mut buf).is_ok() {}
        woken_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("not woken after the queue drained");
        woken_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("second waiter not woken");
        assert!(readiness.poll_writable(1, &cx).is_ready());
        sender.send(&datagram).unwrap();

        readiness.deregister();
        assert_eq!(lock(&readiness.state).token, 0);
    }
}
