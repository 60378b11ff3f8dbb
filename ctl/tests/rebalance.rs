//! `sprawlctl partition move` and `sprawlctl rebalance` against a real
//! node (2 shards): moves by hand, then a load that leaves one shard
//! carrying everything, which a plan has to move half of away.

mod common;

use std::time::{Duration, Instant};

use common::{Node, Run};
use serde_json::Value;

/// How long the test load runs: the node's "current" load is the mean of
/// the newest 5 seconds of per-second samples.
const LOAD_DURATION: Duration = Duration::from_secs(7);

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// sprawlctl `args` with `--admin` pointing at the node.
fn admin(node: &Node, args: &[&str]) -> Run {
    let addr = node.admin.to_string();
    node.ctl(&[args, &["--admin", &addr]].concat())
}

/// Puts `partition` of `topic` on shard 0, wherever it was.
fn onto_shard_0(node: &Node, topic: &str, partition: &str) {
    let run = admin(node, &["partition", "move", topic, partition, "--to", "0"]);
    if run.code != Some(0) {
        let line = run.failed(1);
        assert!(line.contains("already there"), "{line}");
    }
}

#[test]
fn partitions_move_by_hand_and_by_plan() {
    let home = tempfile::tempdir().unwrap();
    let node = Node::start(home.path());
    node.ctl(&["topic", "create", "orders", "--partitions", "2"])
        .ok();
    node.ctl(&[
        "publish",
        "-t",
        "orders",
        "-p",
        "1",
        "-m",
        "before the moves",
    ])
    .ok();

    // By hand: both partitions onto shard 0, then orders/1 away and back.
    onto_shard_0(&node, "orders", "0");
    onto_shard_0(&node, "orders", "1");
    let moved = admin(&node, &["partition", "move", "orders", "1", "--to", "1"]).ok();
    assert!(
        moved.starts_with("moved orders/1 from shard 0 to shard 1 in "),
        "{moved}"
    );
    assert!(moved.ends_with("(log end offset 1)\n"), "{moved}");
    let back = json(
        &admin(
            &node,
            &[
                "--format",
                "json",
                "partition",
                "move",
                "orders",
                "1",
                "--to",
                "0",
            ],
        )
        .ok(),
    );
    assert_eq!(back["partition"], "orders/1");
    assert_eq!(
        (back["from_shard"].as_u64(), back["to_shard"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(back["log_end_offset"], 1);
    // What was there before the moves is still there.
    let consumed = node.ctl(&["consume", "-t", "orders", "-p", "1"]).ok();
    assert_eq!(consumed, "before the moves\n");

    let again = admin(&node, &["partition", "move", "orders", "1", "--to", "0"]);
    let line = again.failed(1);
    assert!(line.contains("400 Bad Request"), "{line}");
    assert!(line.contains("already there"), "{line}");
    let unknown = admin(&node, &["partition", "move", "nope", "0", "--to", "1"]);
    let line = unknown.failed(1);
    assert!(
        line.contains("404 Not Found: unknown topic \"nope\""),
        "{line}"
    );
    let no_shard = admin(&node, &["partition", "move", "orders", "0", "--to", "9"]);
    assert!(no_shard.failed(1).contains("no such shard"), "{no_shard:?}");

    // Both partitions busy on shard 0, none on shard 1.
    let lines: String = (0..2000).map(|i| format!("message {i}\n")).collect();
    let file = home.path().join("load.txt");
    std::fs::write(&file, lines).unwrap();
    let file = file.to_str().unwrap();
    let started = Instant::now();
    while started.elapsed() < LOAD_DURATION {
        for partition in ["0", "1"] {
            let run = node.ctl(&[
                "publish", "-t", "orders", "-p", partition, "--file", file, "--acks", "leader",
            ]);
            run.ok();
        }
    }

    let plan = json(&admin(&node, &["--format", "json", "rebalance", "plan"]).ok());
    assert_eq!(plan["strategy"], "predictive", "{plan}");
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "one of two equal partitions moves: {plan}");
    let m = &moves[0];
    assert_eq!(
        (m["from_shard"].as_u64(), m["to_shard"].as_u64()),
        (Some(0), Some(1)),
        "{plan}"
    );
    assert_eq!(m["partition"]["topic"], "orders", "{plan}");
    assert!(m["reason"].as_str().unwrap().contains("shard 0"), "{plan}");
    let before = plan["imbalance_before"].as_f64().unwrap();
    let after = plan["imbalance_after"].as_f64().unwrap();
    // Shard 0 carries everything: 2x the mean, +100%.
    assert!(before > 0.8, "{plan}");
    assert!(after < before / 2.0, "{plan}");
    let text = admin(&node, &["rebalance", "plan", "--strategy", "reactive"]).ok();
    assert!(
        text.starts_with("reactive plan: 1 move, 0 B to copy\n"),
        "{text}"
    );
    assert!(text.contains("× mean (+"), "{text}");
    assert!(
        text.contains("PARTITION  MOVE   PEAK_IN  REASON\n"),
        "{text}"
    );
    assert!(text.contains("0 → 1      now  shard 0 at "), "{text}");
    let nothing = admin(&node, &["rebalance", "plan", "--moves-max", "0"]).ok();
    assert!(
        nothing.starts_with("predictive plan: no moves; peak imbalance "),
        "{nothing}"
    );

    // Moves by hand above are on the status page too.
    let done_before = json(&admin(&node, &["--format", "json", "rebalance", "status"]).ok())
        ["moves"]["moves_done"]
        .as_u64()
        .unwrap();
    let applied = json(&admin(&node, &["--format", "json", "rebalance", "apply"]).ok());
    let done = applied["moves"].as_array().unwrap();
    assert_eq!(done.len(), 1, "{applied}");
    assert_eq!(done[0]["state"], "done", "{applied}");
    let status = admin(&node, &["rebalance", "status"]).ok();
    assert!(status.starts_with("auto rebalancing: off\n"), "{status}");
    assert!(
        status.contains(&format!("{} done, 0 failed", done_before + 1)),
        "{status}"
    );
    assert!(status.contains("recent moves, newest first:\n"), "{status}");

    let auto = admin(
        &node,
        &["rebalance", "apply", "--auto", "--strategy", "reactive"],
    )
    .ok();
    assert!(
        auto.starts_with("auto rebalancing: reactive, considered every "),
        "{auto}"
    );
    let status = json(&admin(&node, &["--format", "json", "rebalance", "status"]).ok());
    assert_eq!(status["auto"]["strategy"], "reactive", "{status}");
    assert_eq!(
        admin(&node, &["rebalance", "auto", "off"]).ok(),
        "auto rebalancing: off\n"
    );
}

#[test]
fn an_unreachable_admin_endpoint_is_one_line_naming_it() {
    let home = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let run = common::ctl_in(
        home.path(),
        &["rebalance", "status", "--admin", &closed],
        None,
    );
    let line = run.failed(1);
    assert!(
        line.starts_with(&format!(
            "sprawlctl: GET http://{closed}/rebalance/status: "
        )),
        "{line}"
    );
    assert!(line.contains("is the node running?"), "{line}");
}
