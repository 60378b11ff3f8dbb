//! `loadgen` against a real `sprawl` node: the report directory holds a
//! well-formed summary.json whose counts match what the node stored
//! (DescribeTopic high watermarks), `.hgrm` files and an SVG.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sprawl_client::{Client, ClientConfig, ServerTrust};
use sprawl_loadgen::report::{Summary, END_TO_END, PUBLISH_ACK};

/// The `sprawl` binary next to `loadgen`, built first if it is missing.
fn sprawl_binary() -> PathBuf {
    let loadgen = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let sprawl = loadgen.with_file_name("sprawl");
    if !sprawl.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "sprawl-node", "--bin", "sprawl"]);
        if loadgen.parent().and_then(|d| d.file_name()) == Some("release".as_ref()) {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p sprawl-node failed");
    }
    assert!(
        sprawl.exists(),
        "{} missing after the build",
        sprawl.display()
    );
    sprawl
}

/// A node on free 127.0.0.1 ports (as node/tests/common/mod.rs starts one).
struct Node {
    child: Child,
    quic: SocketAddr,
    data_dir: PathBuf,
}

impl Node {
    fn start(data_dir: &Path) -> Node {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let quic = udp.local_addr().unwrap();
        let admin = tcp.local_addr().unwrap();
        drop((udp, tcp));
        let mut child = Command::new(sprawl_binary())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &quic.to_string(), "--admin", &admin.to_string()])
            .args(["--shards", "2", "--no-pin", "--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sprawl");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(" ready in ") => break,
                Ok(_) => {}
                Err(e) => panic!("sprawl did not become ready: {e}"),
            }
        }
        Node {
            child,
            quic,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn ca(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(node: &Node, args: &[&str]) -> Summary {
    let report = args[args.iter().position(|a| *a == "--report").unwrap() + 1];
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--node", &node.quic.to_string()])
        .arg("--ca")
        .arg(node.ca())
        .args(["--quiet", "--threads", "2"])
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadgen failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("| target | mode | msgs/s |"),
        "no summary table:\n{stdout}"
    );
    let text = std::fs::read_to_string(Path::new(report).join("summary.json")).unwrap();
    serde_json::from_str(&text).expect("summary.json parses")
}

/// Sum of the high watermarks of `topic`'s partitions, as the node says.
fn stored_messages(node: &Node, topic: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
            .await
            .unwrap();
        let info = client.describe_topic(topic).await.unwrap();
        info.partitions.iter().map(|p| p.high_watermark).sum()
    })
}

fn assert_report_files(dir: &Path, kinds: &[&str]) {
    for kind in kinds {
        let hgrm = std::fs::read_to_string(dir.join(format!("{kind}.hgrm"))).unwrap();
        assert!(
            hgrm.starts_with("       Value     Percentile TotalCount"),
            "{hgrm}"
        );
        assert!(hgrm.contains("#[Max     ="), "{hgrm}");
        assert!(
            hgrm.lines().any(|l| l.contains(" 1.000000000000 ")),
            "no 100th percentile line:\n{hgrm}"
        );
    }
    let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "no curve in the SVG"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "Command: `",
        "## Machine",
        "- CPU: ",
        "- kernel: ",
        "- commit: ",
        "| p99 |",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }
}

#[test]
fn produce_and_pubsub_reports_match_what_the_node_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"));

    let produce_dir = dir.path().join("produce");
    let s = loadgen(
        &node,
        &[
            "produce",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--batch",
            "16",
            "--producers",
            "2",
            "--partitions",
            "3",
            "--size",
            "100-2000",
            "--topic-prefix",
            "itest-produce",
            "--report",
            produce_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(s.workload.mode, "produce");
    assert_eq!(s.target.kind, "sprawl");
    assert_eq!(s.results.failed_total, 0, "{:?}", s.results.first_error);
    assert!(s.results.acked_total > 0);
    assert_eq!(s.results.acked_total, s.results.sent_total);
    assert!(s.results.measured_messages > 0 && s.results.measured_messages < s.results.acked_total);
    assert!(s.results.msgs_per_s > 0.0 && s.results.mb_per_s > 0.0);
    let stored = stored_messages(&node, "itest-produce-0");
    assert_eq!(
        stored, s.results.acked_total,
        "node high watermarks vs acknowledged"
    );
    assert_eq!(s.stored.unwrap().messages(), stored);
    let ack = &s.latency[PUBLISH_ACK];
    assert_eq!(ack.count, s.results.measured_messages);
    assert!(ack.p50_ms > 0.0 && ack.p50_ms <= ack.p99_ms && ack.p99_ms <= ack.max_ms);
    assert_report_files(&produce_dir, &[PUBLISH_ACK]);

    // Consume reads back exactly what the node holds; it has no latency.
    let consume_dir = dir.path().join("consume");
    let c = loadgen(
        &node,
        &[
            "consume",
            "--consumers",
            "2",
            "--partitions",
            "3",
            "--duration",
            "20",
            "--topic-prefix",
            "itest-produce",
            "--report",
            consume_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(c.results.failed_total, 0, "{:?}", c.results.first_error);
    assert_eq!(
        c.results.delivered_total, stored,
        "read back every stored message"
    );
    assert_eq!(c.results.measured_messages, stored);
    assert!(c.latency.is_empty());
    assert!(consume_dir.join("report.md").is_file());
    assert!(!consume_dir.join("latency.svg").exists());

    let pubsub_dir = dir.path().join("pubsub");
    let s = loadgen(
        &node,
        &[
            "pubsub",
            "--duration",
            "2",
            "--rate",
            "2000",
            "--batch",
            "64",
            "--consumers",
            "2",
            "--topic-prefix",
            "itest-pubsub",
            "--report",
            pubsub_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(s.results.failed_total, 0, "{:?}", s.results.first_error);
    assert_eq!(
        s.results.delivered_total, s.results.acked_total,
        "every acked message delivered"
    );
    assert_eq!(
        stored_messages(&node, "itest-pubsub-0"),
        s.results.acked_total
    );
    assert!(s.workload.open_loop);
    for kind in [
        "publish_ack",
        "publish_ack_uncorrected",
        "end_to_end",
        "end_to_end_uncorrected",
    ] {
        assert!(s.latency[kind].count > 0, "{kind} has no samples");
    }
    assert_eq!(s.latency[END_TO_END].count, s.results.measured_messages);
    assert_report_files(
        &pubsub_dir,
        &[
            "publish_ack",
            "publish_ack_uncorrected",
            "end_to_end",
            "end_to_end_uncorrected",
        ],
    );
}
