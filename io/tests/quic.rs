//! QUIC on glommio end to end: handshake, verification, streams, SO_REUSEPORT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use glommio::LocalExecutorBuilder;
use sprawl_io::quic::{
    generate_self_signed, CertPaths, LocalEndpoint, QuicError, QuicLimits, ServerTrust, TlsIdentity,
};

/// Upper bound for one test; a hang fails the test instead of the whole run.
const TEST_TIMEOUT_S: u64 = 30;
const ECHO_PAYLOAD_BYTES: usize = 4 << 20;

fn localhost_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs `make()` on a fresh glommio executor thread (one shard).
fn on_shard<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (done_tx, done_rx) = mpsc::channel();
    let shard = LocalExecutorBuilder::default()
        .name("quic-test")
        .spawn(move || async move {
            make().await;
            let _ = done_tx.send(());
        })
        .unwrap();
    match done_rx.recv_timeout(Duration::from_secs(TEST_TIMEOUT_S)) {
        // A panic on the shard drops `done_tx`: join re-raises it.
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => shard.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("not done within {TEST_TIMEOUT_S} s"),
    }
}

fn test_pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn new_cert(dir: &tempfile::TempDir, name: &str) -> CertPaths {
    generate_self_signed(&dir.path().join(name)).unwrap()
}

#[test]
fn echoes_4_mib_over_a_verified_connection() {
    let dir = tempfile::tempdir().unwrap();
    let paths = new_cert(&dir, "server");
    on_shard(move || async move {
        let identity = TlsIdentity::load(&paths).unwrap();
        let limits = QuicLimits::default();
        let server = LocalEndpoint::server(localhost_any_port(), &identity, &limits).unwrap();
        let server_addr = server.local_addr().unwrap();

        let echo = glommio::spawn_local(async move {
            let connection = server.accept().await.unwrap().accept().await.unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let mut echoed_bytes = 0;
            while let Some(chunk) = recv.read_chunk(64 * 1024).await.unwrap() {
                echoed_bytes += chunk.len();
                send.write_chunk(chunk).await.unwrap();
            }
            send.finish().unwrap();
            // Everything acknowledged by the client before we drop the connection.
            assert_eq!(send.stopped().await.unwrap(), None);
            echoed_bytes
        });

        let trust = ServerTrust::CaFile(paths.cert_path.clone());
        let client = LocalEndpoint::client(localhost_any_port(), &trust, &limits).unwrap();
        let connection = client.connect(server_addr, "localhost").await.unwrap();
        assert_eq!(connection.remote_address(), server_addr);
        let (mut send, mut recv) = connection.open_bi().await.unwrap();

        let payload = test_pattern(ECHO_PAYLOAD_BYTES);
        let to_send = payload.clone();
        // Write and read concurrently, as an echo needs.
        let writer = glommio::spawn_local(async move {
            send.write_all(&to_send).await.unwrap();
            send.finish().unwrap();
            send
        });
        let echoed = recv.read_to_end(2 * ECHO_PAYLOAD_BYTES).await.unwrap();
        let _send = writer.await;

        assert_eq!(echoed.len(), payload.len());
        assert!(echoed == payload, "echoed bytes differ from the payload");
        assert_eq!(echo.await, ECHO_PAYLOAD_BYTES);

        connection.close(0, b"done");
        client.wait_idle().await;
    });
}

#[test]
fn handshake_fails_when_the_client_trusts_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_paths = new_cert(&dir, "server");
    let unrelated_ca = new_cert(&dir, "unrelated");
    on_shard(move || async move {
        let identity = TlsIdentity::load(&server_paths).unwrap();
        let limits = QuicLimits::default();
        let server = LocalEndpoint::server(localhost_any_port(), &identity, &limits).unwrap();
        let server_addr = server.local_addr().unwrap();
        let server_side = glommio::spawn_local(async move {
            let incoming = server.accept().await.unwrap();
            incoming.accept().await.map(|_| ())
        });

        let trust = ServerTrust::CaFile(unrelated_ca.cert_path.clone());
        let client = LocalEndpoint::client(localhost_any_port(), &trust, &limits).unwrap();
        let err = client
            .connect(server_addr, "localhost")
            .await
            .expect_err("handshake must fail with an untrusted certificate");
        assert!(
            matches!(
                &err,
                QuicError::Connection {
                    source: quinn::ConnectionError::TransportError(_),
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("UnknownIssuer"), "{message}");

        // The server learns it too (the client's alert closes the connection).
        let server_err = server_side
            .await
            .expect_err("server must not see a connection");
        assert!(
            matches!(server_err, QuicError::Connection { .. }),
            "{server_err:?}"
        );
    });
}

#[test]
fn insecure_client_connects_without_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let paths = new_cert(&dir, "server");
    on_shard(move || async move {
        let identity = TlsIdentity::load(&paths).unwrap();
        let limits = QuicLimits::default();
        let server = LocalEndpoint::server(localhost_any_port(), &identity, &limits).unwrap();
        let server_addr = server.local_addr().unwrap();
        let server_side = glommio::spawn_local(async move {
            let connection = server.accept().await.unwrap().accept().await.unwrap();
            let mut recv = connection.accept_uni().await.unwrap();
            recv.read_to_end(1024).await.unwrap()
        });

        let trust = ServerTrust::from_flags(None, true).unwrap();
        let client = LocalEndpoint::client(localhost_any_port(), &trust, &limits).unwrap();
        // Any name: the certificate is not checked against it.
        let connection = client
            .connect(server_addr, "not-in-the-cert")
            .await
            .unwrap();
        let mut send = connection.open_uni().await.unwrap();
        send.write_all(b"ping").await.unwrap();
        send.finish().unwrap();
        assert_eq!(server_side.await, b"ping");
    });
}

#[test]
fn two_server_endpoints_share_a_port_with_so_reuseport() {
    let dir = tempfile::tempdir().unwrap();
    let paths = new_cert(&dir, "server");
    on_shard(move || async move {
        let identity = TlsIdentity::load(&paths).unwrap();
        let limits = QuicLimits::default();
        let first = LocalEndpoint::server(localhost_any_port(), &identity, &limits).unwrap();
        let port_addr = first.local_addr().unwrap();
        let second = LocalEndpoint::server(port_addr, &identity, &limits).unwrap();
        assert_eq!(second.local_addr().unwrap(), port_addr);

        // Without SO_REUSEPORT the port is taken.
        let plain = std::net::UdpSocket::bind(port_addr).unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::AddrInUse);

        // Whichever endpoint the kernel picks serves the connection.
        for (index, endpoint) in [first, second].into_iter().enumerate() {
            glommio::spawn_local(async move {
                while let Some(incoming) = endpoint.accept().await {
                    let Ok(connection) = incoming.accept().await else {
                        continue;
                    };
                    let mut send = connection.open_uni().await.unwrap();
                    send.write_all(&[index as u8]).await.unwrap();
                    send.finish().unwrap();
                    let _ = send.stopped().await;
                }
            })
            .detach();
        }
        let trust = ServerTrust::CaFile(paths.cert_path.clone());
        let client = LocalEndpoint::client(localhost_any_port(), &trust, &limits).unwrap();
        let connection = client.connect(port_addr, "localhost").await.unwrap();
        let mut recv = connection.accept_uni().await.unwrap();
        let served_by = recv.read_to_end(16).await.unwrap();
        assert!(served_by == [0] || served_by == [1], "{served_by:?}");
    });
}
