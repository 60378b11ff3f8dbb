//! `loadgen` against a real `sprawl` node: the report directory holds a
//! well-formed summary.json whose counts match what the node stored
//! (DescribeTopic high watermarks), `.hgrm` files and an SVG; a shaped load
//! (bursts on one topic, a hot partition) reaches the node as shaped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sprawl_client::{Client, ClientConfig, ServerTrust};
use sprawl_loadgen::placement::partitions_on_shard;
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
    admin: SocketAddr,
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
            admin,
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
    stored_per_partition(node, topic).iter().sum()
}

/// The high watermark of each of `topic`'s partitions, as the node says.
fn stored_per_partition(node: &Node, topic: &str) -> Vec<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
            .await
            .unwrap();
        let mut info = client.describe_topic(topic).await.unwrap();
        info.partitions.sort_by_key(|p| p.partition);
        info.partitions.iter().map(|p| p.high_watermark).collect()
    })
}

/// `GET /topics` of the node's admin endpoint, parsed.
fn admin_topics(node: &Node) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(node.admin).unwrap();
    write!(
        conn,
        "GET /topics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.admin
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
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

/// Rows of a CSV file as maps from column name to cell.
fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn bursts_and_a_hot_partition_reach_the_node_as_shaped() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"));
    let report = dir.path().join("shaped");
    // 400 msgs/s over two topics (200 each); the first bursts to 3000 msgs/s
    // for the first second of every even Unix second pair. 90% of each
    // topic's messages to partition 0.
    let s = loadgen(
        &node,
        &[
            "produce",
            "--duration",
            "3",
            "--rate",
            "400",
            "--topics",
            "2",
            "--partitions",
            "4",
            "--batch",
            "8",
            "--burst-period",
            "2s",
            "--burst-duration",
            "1s",
            "--burst-rate",
            "3000",
            "--burst-topics",
            "1",
            "--hot-partitions",
            "0",
            "--hot-share",
            "0.9",
            "--topic-prefix",
            "itest-shape",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(s.results.failed_total, 0, "{:?}", s.results.first_error);
    let scenario = s
        .workload
        .scenario
        .as_ref()
        .expect("the scenario is recorded");
    let bursts = scenario.bursts.as_ref().unwrap();
    assert_eq!(bursts.topics, ["itest-shape-0"]);
    assert_eq!(
        (bursts.period_s, bursts.duration_s, bursts.rate_per_s),
        (2.0, 1.0, 3000.0)
    );
    assert_eq!(
        scenario.hot_partitions.as_ref().unwrap().partitions["itest-shape-1"],
        [0]
    );

    let (bursting, steady) = ("itest-shape-0", "itest-shape-1");
    let mut per_topic = Vec::new();
    for topic in [bursting, steady] {
        let parts = stored_per_partition(&node, topic);
        let total: u64 = parts.iter().sum();
        assert_eq!(
            total, s.results.acked_by_topic[topic],
            "{topic}: node vs acked"
        );
        // The hot share, within the last (possibly short) window of 8.
        let hot = parts[0] as f64 / total as f64;
        assert!((0.87..=0.93).contains(&hot), "{topic}: {parts:?}");
        assert!(parts[1..].iter().all(|&n| n > 0), "{topic}: {parts:?}");
        per_topic.push(total);
    }
    assert_eq!(per_topic.iter().sum::<u64>(), s.results.acked_total);
    // Steady: 200 msgs/s for 3 s. Bursting: 200 msgs/s, but 3000 during
    // the 1 to 2 s of bursts that 3 s hold, whatever the phase.
    let (b, st) = (per_topic[0], per_topic[1]);
    // (Less if the pacing thread started late on a busy machine.)
    assert!((540..=600).contains(&st), "steady topic: {st}");
    assert!((3300..=6200).contains(&b), "bursting topic: {b}");

    // timeline.csv: one row per Unix second, acked summing to the total;
    // the messages due in whole seconds inside the run follow the bursts,
    // which start at even Unix seconds.
    let rows = csv_rows(&report.join("timeline.csv"));
    let cell = |r: &std::collections::HashMap<String, String>, c: &str| -> u64 {
        r[c].parse()
            .unwrap_or_else(|e| panic!("{c} = {:?}: {e}", r[c]))
    };
    assert_eq!(
        rows.iter().map(|r| cell(r, "acked")).sum::<u64>(),
        s.results.acked_total
    );
    assert_eq!(
        rows.iter()
            .map(|r| cell(r, "acked_itest-shape-0"))
            .sum::<u64>(),
        b
    );
    let whole: Vec<_> = rows
        .iter()
        .filter(|r| {
            let t_s: f64 = r["t_s"].parse().unwrap();
            t_s >= 0.0 && t_s + 1.0 <= 3.0
        })
        .collect();
    assert!(whole.len() >= 2, "{rows:?}");
    for r in whole {
        let (second, due) = (cell(r, "unix_s"), cell(r, "due"));
        // 3200 a burst second, 400 a quiet one (due counts go by intended
        // send times: a slow node does not blur them).
        if second % 2 == 0 {
            assert!(due > 1500, "burst second {second}: {due} due");
        } else {
            assert!(due <= 401, "quiet second {second}: {due} due");
        }
        assert!(!r["p99_ms"].is_empty(), "no latency in second {second}");
    }

    // --hot-on-shard's premise: the node places partitions where
    // `partitions_on_shard` says (each topic's, at first).
    let topics = admin_topics(&node);
    for t in topics["topics"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        if !name.starts_with("itest-shape") {
            continue;
        }
        for shard in 0..2 {
            let on: Vec<u32> = t["partition_state"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["shard"] == shard)
                .map(|p| p["partition"].as_u64().unwrap() as u32)
                .collect();
            assert_eq!(on, partitions_on_shard(name, 4, shard, 2), "{name}");
        }
    }
}
