//! Connecting (TLS trust, handshake), reconnecting, and the admin calls.

use sprawl_client::{Client, ClientConfig, Error, ErrorCode, ServerTrust, StartPosition};

use crate::fake::FakeNode;

#[tokio::test]
async fn admin_calls_round_trip() {
    let node = FakeNode::start().await;
    let client = Client::connect(node.client_config()).await.unwrap();
    let identity = client.node().unwrap();
    assert_eq!(identity.cluster_id, "fake-cluster");
    assert_eq!(identity.protocol_version, 1);

    let created = client
        .create_topic("orders", 3, Some(1 << 20), None)
        .await
        .unwrap();
    assert_eq!(created.partition_count, 3);
    assert_eq!(created.retention_bytes, 1 << 20);
    assert_eq!(created.retention_ms, -1);

    let again = client
        .create_topic("orders", 3, None, None)
        .await
        .unwrap_err();
    assert_eq!(again.remote_code(), Some(ErrorCode::TopicExists));
    assert!(!again.is_retryable());
    assert!(again.to_string().contains("orders"), "{again}");

    client
        .create_topic("audit", 1, None, Some(-1))
        .await
        .unwrap();
    let names: Vec<String> = client
        .list_topics(false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["audit", "orders"]);

    let described = client.describe_topic("orders").await.unwrap();
    assert_eq!(described.partitions.len(), 3);
    assert!(described
        .partitions
        .iter()
        .all(|p| p.high_watermark == 0 && p.error.is_none()));

    let metadata = client.metadata(&["orders"]).await.unwrap();
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].partitions.len(), 3);

    assert_eq!(
        client
            .resolve_offset("orders", 1, StartPosition::Latest)
            .await
            .unwrap(),
        0
    );
    let out_of_range = client
        .resolve_offset("orders", 1, StartPosition::Offset(5))
        .await
        .unwrap_err();
    assert_eq!(
        out_of_range.remote_code(),
        Some(ErrorCode::OffsetOutOfRange)
    );

    assert_eq!(
        client.committed_offset("g", "orders", 2).await.unwrap(),
        None
    );
    client.commit_offset("g", "orders", 2, 42).await.unwrap();
    assert_eq!(
        client.committed_offset("g", "orders", 2).await.unwrap(),
        Some(42)
    );

    client.delete_topic("orders").await.unwrap();
    let gone = client.describe_topic("orders").await.unwrap_err();
    assert_eq!(gone.remote_code(), Some(ErrorCode::UnknownTopic));
}

#[tokio::test]
async fn a_node_signed_by_another_ca_fails_with_a_tls_error() {
    let node = FakeNode::start().await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = sprawl_io::quic::generate_self_signed(other.path()).unwrap();
    let config = ClientConfig {
        trust: ServerTrust::CaFile(other_ca.cert_path),
        ..node.client_config()
    };
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("CA file"), "{message}");
}

#[tokio::test]
async fn a_wrong_server_name_fails_with_a_tls_error() {
    let node = FakeNode::start().await;
    let config = ClientConfig {
        server_name: "not-the-node.example".into(),
        ..node.client_config()
    };
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn insecure_mode_skips_verification_only_when_asked() {
    let node = FakeNode::start().await;
    let config = ClientConfig {
        trust: ServerTrust::InsecureSkipVerification,
        ..node.client_config()
    };
    let client = Client::connect(config).await.unwrap();
    client.list_topics(false).await.unwrap();
}

#[tokio::test]
async fn a_missing_ca_file_is_a_configuration_error() {
    let node = FakeNode::start().await;
    let config = ClientConfig {
        trust: ServerTrust::CaFile("/nonexistent/ca.pem".into()),
        ..node.client_config()
    };
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn the_next_request_reconnects_after_the_connection_dies() {
    let node = FakeNode::start().await;
    let client = Client::connect(node.client_config()).await.unwrap();
    client.create_topic("t", 1, None, None).await.unwrap();
    node.close_connections();
    // A request racing the close may fail, retryably; the next reconnects.
    let mut failures = 0;
    loop {
        match client.describe_topic("t").await {
            Ok(topic) => {
                assert_eq!(topic.partition_count, 1);
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                failures += 1;
                assert!(failures < 3, "did not reconnect: {e}");
            }
        }
    }
    // Clones share the new connection.
    let clone = client.clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = clone.clone();
            tokio::spawn(async move { c.describe_topic("t").await.map(|t| t.name) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "t");
    }
}

#[tokio::test]
async fn an_unreachable_node_fails_to_connect_quickly() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    let mut config = ClientConfig::new(addr, ServerTrust::InsecureSkipVerification);
    config.connect_timeout = std::time::Duration::from_millis(200);
    let err = Client::connect(config).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}
