//! Bad input on the wire: garbage, truncated and oversized frames, requests
//! before the handshake, a wrong protocol version, a wrong CA. Each gets a
//! typed error (or a refused connection), and the node keeps serving: a
//! normal publish right after succeeds.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::NodeProcess;
use sprawl_io::quic::{LocalConnection, LocalEndpoint, QuicLimits, ServerTrust};
use sprawl_storage::{BatchBuilder, BatchView, Record};
use sprawl_wire::{
    decode_frame, Acks, Body, CreateTopicRequest, ErrorCode, FetchRequest, Frame, HandshakeRequest,
    PartitionTarget, ProduceRequest, PROTOCOL_VERSION,
};

fn on_executor<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

async fn connect(addr: SocketAddr, ca: PathBuf) -> LocalConnection {
    let ep = LocalEndpoint::client(
        "127.0.0.1:0".parse().unwrap(),
        &ServerTrust::CaFile(ca),
        &QuicLimits::default(),
    )
    .unwrap();
    // The endpoint lives as long as the test's executor.
    let ep = Box::leak(Box::new(ep));
    ep.connect(addr, "localhost").await.unwrap()
}

/// Sends raw bytes on a new stream and returns the raw response bytes.
async fn exchange_raw(conn: &LocalConnection, bytes: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    recv.read_to_end(64 << 20).await.unwrap_or_default()
}

async fn exchange(conn: &LocalConnection, frame: Frame<'_>) -> Vec<u8> {
    exchange_raw(conn, &frame.encode().unwrap()).await
}

fn error_code(response: &[u8]) -> ErrorCode {
    let frame = decode_frame(response).expect("a well-formed response frame");
    frame.body.error().map_or(ErrorCode::None, |e| e.code)
}

fn handshake(version: u16) -> Frame<'static> {
    Frame::new(
        1,
        HandshakeRequest {
            protocol_version: version,
            client_id: "protocol-test",
            ..Default::default()
        },
    )
}

#[test]
fn bad_frames_get_typed_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 2);
    let (addr, ca) = (node.quic, node.ca());
    on_executor(move || async move {
        let conn = connect(addr, ca.clone()).await;
        // Before the handshake: refused with HandshakeRequired.
        let r = exchange(
            &conn,
            Frame::new(
                2,
                CreateTopicRequest {
                    name: "t",
                    partition_count: 1,
                    ..Default::default()
                },
            ),
        )
        .await;
        assert_eq!(error_code(&r), ErrorCode::HandshakeRequired);
        // Wrong protocol version.
        assert_eq!(
            error_code(&exchange(&conn, handshake(99)).await),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            error_code(&exchange(&conn, handshake(PROTOCOL_VERSION)).await),
            ErrorCode::None
        );

        // Garbage after a valid length prefix.
        let mut garbage = 40u32.to_le_bytes().to_vec();
        garbage.extend((0..40u8).map(|i| i.wrapping_mul(37)));
        let r = exchange_raw(&conn, &garbage).await;
        assert_ne!(error_code(&r), ErrorCode::None, "garbage is an error");
        // An oversized frame is refused from its prefix alone.
        let r = exchange_raw(&conn, &u32::MAX.to_le_bytes()).await;
        assert_eq!(error_code(&r), ErrorCode::MessageTooLarge);
        // A truncated frame (the stream ends early).
        let whole = Frame::new(
            3,
            CreateTopicRequest {
                name: "x",
                partition_count: 1,
                ..Default::default()
            },
        )
        .encode()
        .unwrap();
        let r = exchange_raw(&conn, &whole[..whole.len() - 3]).await;
        assert_ne!(
            error_code(&r),
            ErrorCode::None,
            "truncated frame is an error"
        );

        // A new connection publishes normally.
        let conn = connect(addr, ca).await;
        assert_eq!(
            error_code(&exchange(&conn, handshake(PROTOCOL_VERSION)).await),
            ErrorCode::None
        );
        let r = exchange(
            &conn,
            Frame::new(
                4,
                CreateTopicRequest {
                    name: "t",
                    partition_count: 2,
                    ..Default::default()
                },
            ),
        )
        .await;
        assert_eq!(error_code(&r), ErrorCode::None);
        let mut b = BatchBuilder::new();
        b.push(&Record {
            timestamp_ms: 1,
            value: b"hello",
            ..Default::default()
        });
        let batch = b.finish();
        let produce = |topic, batch| {
            Frame::new(
                5,
                ProduceRequest {
                    topic,
                    target: PartitionTarget::Partition(1),
                    acks: Acks::Durable,
                    timeout_ms: 0,
                    records: batch,
                },
            )
        };
        assert_eq!(
            error_code(&exchange(&conn, produce("t", &batch)).await),
            ErrorCode::None
        );
        assert_eq!(
            error_code(&exchange(&conn, produce("nope", &batch)).await),
            ErrorCode::UnknownTopic
        );
        let mut corrupt = batch.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(
            error_code(&exchange(&conn, produce("t", &corrupt)).await),
            ErrorCode::CorruptBatch
        );
        let r = exchange(
            &conn,
            Frame::new(
                6,
                FetchRequest {
                    topic: "t",
                    partition: 1,
                    offset: 0,
                    max_bytes: 1 << 20,
                    min_bytes: 1,
                    max_wait_ms: 0,
                },
            ),
        )
        .await;
        let Body::FetchResponse(f) = decode_frame(&r).unwrap().body else {
            panic!("fetch response")
        };
        assert!(f.error.is_none());
        let view = BatchView::parse_exact(f.batches).unwrap();
        assert_eq!(view.records().next().unwrap().unwrap().value, b"hello");
        assert_eq!(f.high_watermark, 1, "the corrupt batch was not appended");
    });
    let (status, body) = node.admin_get("/health");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
}

#[test]
fn a_client_trusting_another_ca_cannot_connect() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 1);
    let other = tempfile::tempdir().unwrap();
    let other_ca = sprawl_io::quic::generate_self_signed(other.path())
        .unwrap()
        .cert_path;
    let addr = node.quic;
    on_executor(move || async move {
        let ep = LocalEndpoint::client(
            "127.0.0.1:0".parse().unwrap(),
            &ServerTrust::CaFile(other_ca),
            &QuicLimits::default(),
        )
        .unwrap();
        let Err(err) = ep.connect(addr, "localhost").await else {
            panic!("TLS must fail");
        };
        let msg = err.to_string();
        assert!(
            msg.to_lowercase().contains("certificate") || msg.contains("Issuer"),
            "{msg}"
        );
    });
    let (status, _) = node.admin_get("/health");
    assert!(status.contains("200"));
}
