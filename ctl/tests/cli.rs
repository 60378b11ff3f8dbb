//! sprawlctl end to end: the real binary against a real `sprawl` node.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{ctl_in, Node};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(json).collect()
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());

    let created = node.ctl(&["topic", "create", "orders", "--partitions", "3"]);
    assert!(
        created
            .ok()
            .starts_with("created topic orders: 3 partitions"),
        "{created:?}"
    );
    let again = node.ctl(&["topic", "create", "orders"]);
    assert!(again.failed(1).contains("TopicExists"), "{again:?}");
    node.ctl(&["topic", "create", "orders", "--if-not-exists"])
        .ok();
    let logs = node.ctl(&[
        "--format",
        "json",
        "topic",
        "create",
        "logs",
        "--retention-ms",
        "3600000",
        "--retention-bytes",
        "unlimited",
    ]);
    let logs = json(&logs.ok());
    assert_eq!(logs["created"], true);
    assert_eq!(logs["topic"]["retention_ms"], 3_600_000);
    assert_eq!(logs["topic"]["retention_bytes"], -1);

    let list = node.ctl(&["topic", "list"]).ok();
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("orders ")), "{list}");
    let list = json(&node.ctl(&["topic", "list", "--format", "json"]).ok());
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logs", "orders"]);

    let describe = node.ctl(&["topic", "describe", "orders"]).ok();
    assert!(describe.contains("HIGH_WATERMARK"), "{describe}");
    assert_eq!(
        describe
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        3,
        "{describe}"
    );
    let described = json(
        &node
            .ctl(&["--format", "json", "topic", "describe", "orders"])
            .ok(),
    );
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    for p in partitions {
        assert_eq!(p["high_watermark"], 0);
        assert_eq!(p["log_end_offset"], 0);
        assert_eq!(p["log_start_offset"], 0);
    }

    // From the node's own directory no --ca is needed: ./data/tls/cert.pem.
    let status = ctl_in(
        home.path(),
        &[
            "--node",
            &node.quic.to_string(),
            "status",
            "--admin",
            &node.admin.to_string(),
        ],
        None,
    )
    .ok();
    assert!(status.starts_with("node 1 at "), "{status}");
    assert!(status.contains("2 shards"), "{status}");
    assert!(status.contains("status=ok"), "{status}");

    assert_eq!(
        node.ctl(&["topic", "delete", "orders"]).ok(),
        "deleted topic orders\n"
    );
    let gone = node.ctl(&["topic", "describe", "orders"]);
    assert!(gone.failed(1).contains("does not exist"), "{gone:?}");
    node.ctl(&["topic", "delete", "orders", "--if-exists"]).ok();
    let deleted_twice = node.ctl(&["topic", "delete", "orders"]);
    deleted_twice.failed(1);
}

/// 1,000 keyed lines: published from a file, read back per partition in
/// input order, byte for byte.
#[test]
fn published_lines_come_back_in_order_per_partition() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());
    node.ctl(&["topic", "create", "events", "--partitions", "4"])
        .ok();
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "user-{}:event {i} «ü» \t{}",
                (i * 7919) % 23,
                "x".repeat(i % 50)
            )
        })
        .collect();
    let file = home.path().join("events.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let published = node.ctl(&[
        "publish",
        "-t",
        "events",
        "--file",
        file.to_str().unwrap(),
        "--key-separator",
        ":",
        "--header",
        "source=test",
    ]);
    let summary = published.ok();
    assert!(
        summary.starts_with("acknowledged 1000 of 1000 messages to events"),
        "{summary}"
    );

    // Without --follow, consume stops at the end by itself.
    let consumed = json_lines(
        &node
            .ctl(&["consume", "-t", "events", "--format", "json"])
            .ok(),
    );
    assert_eq!(consumed.len(), 1000);
    let mut by_partition: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for record in &consumed {
        assert_eq!(record["topic"], "events");
        assert_eq!(record["headers"][0]["name"], "source");
        assert_eq!(record["headers"][0]["value"], "test");
        assert!(record["timestamp_ms"].as_i64().unwrap() > 0);
        let partition = record["partition"].as_u64().unwrap();
        let seen = by_partition.entry(partition).or_default();
        assert_eq!(
            record["offset"].as_u64().unwrap(),
            seen.len() as u64,
            "contiguous"
        );
        seen.push((
            record["key"].as_str().unwrap().to_owned(),
            record["value"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(by_partition.len() > 1, "keys spread over partitions");
    for (partition, got) in &by_partition {
        let keys: HashSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        // Every line of these keys, in input order.
        let expected: Vec<&String> = lines
            .iter()
            .filter(|l| keys.contains(l.split_once(':').unwrap().0))
            .collect();
        assert_eq!(got.len(), expected.len(), "partition {partition}");
        // Text output of one partition: the input lines themselves.
        let text = node.ctl(&[
            "consume",
            "-t",
            "events",
            "-p",
            &partition.to_string(),
            "--key-separator",
            ":",
        ]);
        let expected_bytes: String = expected.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            text.stdout,
            expected_bytes.as_bytes(),
            "partition {partition}"
        );
    }

    let first_ten = node.ctl(&["consume", "-t", "events", "--count", "10"]).ok();
    assert_eq!(first_ten.lines().count(), 10);
    let from_latest = node
        .ctl(&["consume", "-t", "events", "--from", "latest"])
        .ok();
    assert_eq!(from_latest, "");
}

#[test]
fn a_group_resumes_where_it_committed() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());
    node.ctl(&["topic", "create", "jobs", "--partitions", "2"])
        .ok();
    let input: String = (0..100).map(|i| format!("job-{i}\n")).collect();
    let published = node.ctl_with_input(
        &["publish", "-t", "jobs", "--file", "-"],
        Some(input.as_bytes()),
    );
    assert!(published.ok().starts_with("acknowledged 100 of 100"));

    let group = ["consume", "-t", "jobs", "--group", "workers"];
    let first = node
        .ctl(&[&group[..], &["--count", "30"][..]].concat())
        .ok();
    let second = node.ctl(&group).ok();
    let third = node.ctl(&group).ok();
    assert_eq!(first.lines().count(), 30);
    assert_eq!(second.lines().count(), 70, "resumes after the 30: {second}");
    assert_eq!(third, "", "everything was committed");
    let mut all: Vec<&str> = first.lines().chain(second.lines()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 100, "each job exactly once");
    // Another group starts from the beginning.
    let other = node.ctl(&["consume", "-t", "jobs", "-g", "audit", "--format", "json"]);
    assert_eq!(json_lines(&other.ok()).len(), 100);
}

#[test]
fn failures_are_one_line_with_distinct_exit_statuses() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());

    let unknown = node.ctl(&["publish", "-t", "nope", "-m", "hello"]);
    let line = unknown.failed(1);
    assert!(line.contains("\"nope\" does not exist"), "{line}");

    // A valid certificate of another node: not the issuer of this one.
    let other = tempfile::tempdir().unwrap();
    let other_ca = sprawl_io::quic::generate_self_signed(other.path())
        .unwrap()
        .cert_path;
    let wrong_ca = ctl_in(
        home.path(),
        &[
            "--node",
            &node.quic.to_string(),
            "--ca",
            other_ca.to_str().unwrap(),
            "topic",
            "list",
        ],
        None,
    );
    let line = wrong_ca.failed(1);
    assert!(line.contains("TLS handshake"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    let not_pem = home.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let garbage_ca = ctl_in(
        home.path(),
        &[
            "--node",
            &node.quic.to_string(),
            "--ca",
            not_pem.to_str().unwrap(),
            "status",
        ],
        None,
    );
    assert!(
        garbage_ca.failed(1).contains("no certificate"),
        "{garbage_ca:?}"
    );
    // Outside the node's directory, without --ca: refuse to guess.
    let nowhere = tempfile::tempdir().unwrap();
    let no_ca = ctl_in(
        nowhere.path(),
        &["--node", &node.quic.to_string(), "status"],
        None,
    );
    assert!(no_ca.failed(2).contains("--ca"), "{no_ca:?}");

    // Usage errors are clap's, status 2.
    let usage = node.ctl(&["consume", "-t", "x", "--from", "yesterday"]);
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // A malformed second line stops the publish after the first: partial.
    node.ctl(&["topic", "create", "t"]).ok();
    let partial = node.ctl_with_input(
        &["publish", "-t", "t", "--file", "-", "--key-separator", "="],
        Some(b"k=v\nno separator\nk=w\n"),
    );
    let line = partial.failed(3);
    assert!(line.contains("message 2 has no key separator"), "{line}");
    assert!(
        partial.stdout_text().starts_with("acknowledged 1 of 1"),
        "{partial:?}"
    );
    assert_eq!(
        node.ctl(&["consume", "-t", "t"]).ok(),
        "v\n",
        "only the prefix"
    );
}

#[test]
fn follow_waits_for_messages_published_later() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());
    node.ctl(&["topic", "create", "live", "--partitions", "2"])
        .ok();
    node.ctl(&["publish", "-t", "live", "-m", "before"]).ok();
    let followed = std::thread::scope(|scope| {
        let follower = scope.spawn(|| {
            node.ctl(&[
                "consume", "-t", "live", "--follow", "--count", "3", "--group", "tail",
            ])
        });
        // Whether or not the follower subscribed yet, it must end up with
        // three messages and stop there.
        node.ctl(&["publish", "-t", "live", "-m", "one", "-m", "two"])
            .ok();
        follower.join().unwrap()
    });
    let mut lines: Vec<String> = followed.ok().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["before", "one", "two"]);
    node.ctl(&["publish", "-t", "live", "-m", "three"]).ok();
    let rest = node.ctl(&["consume", "-t", "live", "--group", "tail"]).ok();
    assert_eq!(rest, "three\n", "the follower committed what it printed");
}
