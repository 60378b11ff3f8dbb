//! `sprawlctl cert ca | node`: offline; the files it writes are what a
//! node's cluster TLS loads.

mod common;

use std::path::Path;

use common::ctl_in;
use serde_json::Value;
use sprawl_io::quic::{cluster_ca_paths, node_cert_paths, peer_server_name, ClusterTls};

#[test]
fn cert_ca_and_node_write_what_cluster_tls_loads() {
    let home = tempfile::tempdir().unwrap();
    let pki = home.path().join("pki");

    let text = ctl_in(home.path(), &["cert", "ca", "--dir", "pki"], None).ok();
    assert!(text.contains("pki/ca.pem"), "{text}");
    assert!(text.contains("pki/ca-key.pem"), "{text}");
    let ca = cluster_ca_paths(&pki);

    // Node 1 next to the CA, with an IP name; node 2 elsewhere, in JSON.
    let text = ctl_in(
        home.path(),
        &[
            "cert",
            "node",
            "--ca-dir",
            "pki",
            "--node-id",
            "1",
            "--name",
            "127.0.0.2",
            "--name",
            "node1.example",
        ],
        None,
    )
    .ok();
    assert!(text.contains("pki/node-1.pem"), "{text}");
    assert!(text.contains(&peer_server_name(1)), "{text}");
    let json: Value = serde_json::from_str(
        &ctl_in(
            home.path(),
            &[
                "--format",
                "json",
                "cert",
                "node",
                "--ca-dir",
                "pki",
                "--node-id",
                "2",
                "--out",
                "nodes",
            ],
            None,
        )
        .ok(),
    )
    .unwrap();
    assert_eq!(json["node_id"], 2);
    assert_eq!(json["server_name"], "node-2.sprawl.cluster");

    for node in [
        node_cert_paths(&pki, 1),
        node_cert_paths(&home.path().join("nodes"), 2),
    ] {
        assert!(
            node.cert_path.is_file() && node.key_path.is_file(),
            "{node:?}"
        );
        assert_eq!(mode(&node.key_path), 0o600);
        let tls = ClusterTls::load(&ca.cert_path, &node).unwrap();
        tls.server_config().unwrap();
        tls.client_config().unwrap();
        tls.server_config_for_clients().unwrap();
    }
    // Paths as given: relative to where sprawlctl ran.
    assert_eq!(json["certificate"], "nodes/node-2.pem");
    assert_eq!(mode(&ca.key_path), 0o600);
}

#[test]
fn cert_refuses_to_replace_a_ca_and_bad_names() {
    let home = tempfile::tempdir().unwrap();
    ctl_in(home.path(), &["cert", "ca", "--dir", "pki"], None).ok();
    let before = std::fs::read(home.path().join("pki/ca.pem")).unwrap();

    let run = ctl_in(home.path(), &["cert", "ca", "--dir", "pki"], None);
    let line = run.failed(1);
    assert!(
        line.contains("cert ca") && line.contains("pki/ca.pem"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(home.path().join("pki/ca.pem")).unwrap(),
        before
    );

    let run = ctl_in(
        home.path(),
        &[
            "cert",
            "node",
            "--ca-dir",
            "pki",
            "--node-id",
            "1",
            "--name",
            "no such name!",
        ],
        None,
    );
    let line = run.failed(2);
    assert!(
        line.contains("--name") && line.contains("no such name!"),
        "{line}"
    );

    let run = ctl_in(
        home.path(),
        &["cert", "node", "--ca-dir", "missing", "--node-id", "1"],
        None,
    );
    let line = run.failed(1);
    assert!(line.contains("missing/ca.pem"), "{line}");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
