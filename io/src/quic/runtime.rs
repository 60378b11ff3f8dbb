//! quinn's `Runtime` for glommio.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::socket::ShardUdpSocket;
use super::timer::ShardTimer;

/// Runs quinn on the glommio executor of the calling thread.
///
/// quinn calls into the runtime from `Endpoint::new` and from its own driver
/// tasks, so as long as endpoints are created on an executor thread (which
/// [`super::LocalEndpoint`] ensures), everything it spawns stays on that
/// shard. Calling any method off an executor thread panics (glommio's
/// `spawn_local` and `Timer` need the thread's executor).
#[derive(Debug, Default, Clone, Copy)]
pub struct GlommioRuntime;

impl quinn::Runtime for GlommioRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        Box::pin(ShardTimer::new(deadline))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        glommio::spawn_local(future).detach();
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        Ok(Arc::new(ShardUdpSocket::new(socket)?))
    }
}
