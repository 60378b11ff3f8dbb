//! Live partition moves between the shards of one node, end to end with
//! real `sprawl` processes:
//!
//! - moves back and forth under produce (durable and leader acks) and
//!   subscribe load: every acknowledged record is in the log exactly once,
//!   in order, and the subscriber saw the same; the placement shows in
//!   /topics and topics.json and survives a SIGTERM restart;
//! - a partition moved back and forth hundreds of times keeps its offsets
//!   (regression for two races with the shards' reopen tick);
//! - a reactive rebalance of a node whose whole load is on shard 0 moves a
//!   hot partition to shard 1 and reports it in /rebalance/status;
//! - kill -9 while moves run back to back: the restarted node has no move
//!   left in topics.json and every durable acknowledgement survived.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{admin_request, NodeProcess};
use serde_json::Value;
use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
    StartPosition,
};
use sprawl_shards::TopicCatalog;

const SHARDS: usize = 2;
/// No forecasting model training while a test runs: it would only compete
/// with the node for the machine's cores.
const NODE_FLAGS: &[&str] = &["--forecast-train-every-s", "3600"];
/// Generous bound on anything a loaded 2-core machine may take a while to
/// show (snapshots, load samples, subscriptions catching up).
const PATIENCE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start(dir: &Path) -> NodeProcess {
    NodeProcess::start_with(dir, SHARDS, NODE_FLAGS)
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
        .await
        .expect("connect")
}

fn catalog_of(dir: &Path) -> TopicCatalog {
    TopicCatalog::load(&dir.join("topics.json")).expect("topics.json")
}

/// Partition → shard as the catalog in topics.json places them.
fn catalog_placement(dir: &Path, topic: &str, partitions: u32) -> BTreeMap<u32, usize> {
    let catalog = catalog_of(dir);
    (0..partitions)
        .map(|p| (p, catalog.owner(topic, p, SHARDS)))
        .collect()
}

/// Partition → the shards /topics lists it on.
fn topics_listing(admin: SocketAddr, topic: &str) -> (BTreeMap<u32, Vec<usize>>, String) {
    let (status, body) = admin_request(admin, "GET", "/topics").expect("GET /topics");
    assert!(status.contains(" 200 "), "{status} {body}");
    let v: Value = serde_json::from_str(&body).expect("/topics is JSON");
    let mut shards: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for t in v["topics"].as_array().expect("topics array") {
        if t["name"] != topic {
            continue;
        }
        for p in t["partition_state"].as_array().expect("partition_state") {
            let partition = p["partition"].as_u64().expect("partition") as u32;
            let shard = p["shard"].as_u64().expect("shard") as usize;
            shards.entry(partition).or_default().push(shard);
        }
    }
    (shards, body)
}

/// Waits until /topics lists every partition of `topic` exactly once, on
/// the shard `expected` names. Shards publish their partitions every
/// 500 ms, so right after a move /topics may briefly show the old place.
fn wait_for_placement(admin: SocketAddr, topic: &str, expected: &BTreeMap<u32, usize>) {
    let want: BTreeMap<u32, Vec<usize>> = expected.iter().map(|(&p, &s)| (p, vec![s])).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (seen, body) = topics_listing(admin, topic);
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/topics never showed {topic} as placed {expected:?}; last seen {seen:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `POST /partitions/move`, which must answer 200 and name `from` and `to`.
/// Returns how long the node says the move took.
fn move_partition(admin: SocketAddr, topic: &str, partition: u32, from: usize, to: usize) -> u64 {
    let path = format!("/partitions/move?topic={topic}&partition={partition}&to={to}");
    let (status, body) =
        admin_request(admin, "POST", &path).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    check_move_answer(&path, &status, &body, topic, partition, from, to)
}

fn check_move_answer(
    path: &str,
    status: &str,
    body: &str,
    topic: &str,
    partition: u32,
    from: usize,
    to: usize,
) -> u64 {
    assert!(status.contains(" 200 "), "POST {path}: {status} {body}");
    let v: Value = serde_json::from_str(body).expect("move answer is JSON");
    assert_eq!(v["partition"], format!("{topic}/{partition}"), "{body}");
    assert_eq!(v["from_shard"], from, "{body}");
    assert_eq!(v["to_shard"], to, "{body}");
    v["duration_ms"].as_u64().expect("duration_ms")
}

/// Every record of a partition from offset 0, checking the offsets are
/// contiguous (nothing here is ever deleted by retention).
async fn read_partition(client: &Client, topic: &str, partition: u32) -> Vec<Bytes> {
    let consumer = Consumer::new(client);
    let mut values = Vec::new();
    loop {
        let next = values.len() as u64;
        let fetched = consumer
            .fetch(topic, partition, next, 1 << 20, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("fetch {topic}/{partition} from {next}: {e}"));
        if fetched.records.is_empty() {
            return values;
        }
        for r in fetched.records {
            assert_eq!(
                r.offset,
                values.len() as u64,
                "{topic}/{partition}: offsets skip or repeat"
            );
            values.push(r.value);
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Moves under load.

const LOADED_TOPIC: &str = "moving";
const LOADED_PARTITIONS: u32 = 4;
const LOADED_RECORDS_PER_PARTITION: usize = 5_000;
/// Records sent per partition per round, and the pause between rounds:
/// spreads the 20k records over a few seconds, while the moves run.
const LOADED_ROUND_RECORDS: usize = 25;
const LOADED_ROUND_PAUSE: Duration = Duration::from_millis(15);
const LOADED_MOVES_PER_PARTITION_MIN: usize = 4;
/// Bounds the moves if producing is slow; the pause spreads them over the
/// whole time records are produced.
const LOADED_MOVES_MAX: usize = 160;
const LOADED_MOVE_PAUSE: Duration = Duration::from_millis(25);
/// Partitions with a subscriber: one produced with durable acks, one with
/// leader acks.
const SUBSCRIBED: [u32; 2] = [0, 2];

fn loaded_value(partition: u32, seq: usize) -> String {
    format!("p{partition}-{seq}")
}

/// Reads `partition` through subscriptions from offset 0 until it has
/// `target` records (unknown at first: `u64::MAX`), resubscribing from
/// its position after a retryable error. Returns the values and how many
/// times it had to resubscribe.
async fn subscribe_until(
    client: Client,
    topic: &'static str,
    partition: u32,
    target: Arc<AtomicU64>,
) -> (Vec<Bytes>, usize) {
    let consumer = Consumer::new(&client);
    let mut values: Vec<Bytes> = Vec::new();
    let mut resubscribed = 0;
    'subscribe: while (values.len() as u64) < target.load(Ordering::Acquire) {
        let from = values.len() as u64;
        let mut sub = match consumer
            .subscribe(topic, partition, StartPosition::Offset(from), 256 << 10)
            .await
        {
            Ok(sub) => sub,
            Err(e) if e.is_retryable() => {
                resubscribed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => panic!("subscribing to {topic}/{partition} at {from}: {e}"),
        };
        while (values.len() as u64) < target.load(Ordering::Acquire) {
            // `next` is cancel-safe: time out only to look at the target again.
            let Ok(next) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            else {
                continue;
            };
            match next {
                Some(Ok(r)) => {
                    assert_eq!(
                        r.offset,
                        values.len() as u64,
                        "subscription to {topic}/{partition} skipped or repeated an offset"
                    );
                    values.push(r.value);
                }
                Some(Err(e)) if e.is_retryable() => {
                    resubscribed += 1;
                    continue 'subscribe;
                }
                Some(Err(e)) => panic!("subscription to {topic}/{partition}: {e}"),
                // Ended in order by the node: start again where it stopped.
                None => {
                    resubscribed += 1;
                    continue 'subscribe;
                }
            }
        }
    }
    (values, resubscribed)
}

/// Moves partitions round robin to the other shard until the producer is
/// done and each partition moved at least the minimum (or the cap is
/// reached). Returns the final placement and the moves per partition.
fn move_round_robin(
    admin: SocketAddr,
    mut placement: BTreeMap<u32, usize>,
    producing_done: &AtomicBool,
) -> (BTreeMap<u32, usize>, Vec<usize>) {
    let mut moves = vec![0usize; LOADED_PARTITIONS as usize];
    let mut durations_ms = Vec::new();
    for i in 0..LOADED_MOVES_MAX {
        let enough = moves.iter().all(|&n| n >= LOADED_MOVES_PER_PARTITION_MIN);
        if enough && producing_done.load(Ordering::Acquire) {
            break;
        }
        let partition = (i % LOADED_PARTITIONS as usize) as u32;
        let from = placement[&partition];
        let to = 1 - from;
        durations_ms.push(move_partition(admin, LOADED_TOPIC, partition, from, to));
        placement.insert(partition, to);
        moves[partition as usize] += 1;
        std::thread::sleep(LOADED_MOVE_PAUSE);
    }
    eprintln!("move durations (ms, as the node measured them): {durations_ms:?}");
    (placement, moves)
}

/// Checks every partition holds exactly the records `p{p}-0..` in order.
async fn verify_loaded_logs(client: &Client) {
    for p in 0..LOADED_PARTITIONS {
        let values = read_partition(client, LOADED_TOPIC, p).await;
        assert_eq!(
            values.len(),
            LOADED_RECORDS_PER_PARTITION,
            "{LOADED_TOPIC}/{p}: every acknowledged record exactly once"
        );
        for (seq, v) in values.iter().enumerate() {
            assert_eq!(
                v.as_ref(),
                loaded_value(p, seq).as_bytes(),
                "{LOADED_TOPIC}/{p} offset {seq}"
            );
        }
    }
}

#[test]
fn moves_under_load_lose_and_duplicate_nothing_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    let admin = node.admin;
    let rt = runtime();
    let client = rt.block_on(async {
        let client = connect(&node).await;
        client
            .create_topic(LOADED_TOPIC, LOADED_PARTITIONS, None, None)
            .await
            .unwrap();
        client
    });
    let initial = catalog_placement(dir.path(), LOADED_TOPIC, LOADED_PARTITIONS);
    wait_for_placement(admin, LOADED_TOPIC, &initial);

    let producing_done = Arc::new(AtomicBool::new(false));
    let mover = {
        let done = producing_done.clone();
        std::thread::spawn(move || move_round_robin(admin, initial, &done))
    };
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let subscribers: Vec<_> = SUBSCRIBED
        .iter()
        .map(|&p| {
            let _guard = rt.enter();
            tokio::spawn(subscribe_until(
                client.clone(),
                LOADED_TOPIC,
                p,
                target.clone(),
            ))
        })
        .collect();

    rt.block_on(async {
        let producer = |acks| {
            Producer::new(
                &client,
                ProducerConfig {
                    acks,
                    ..ProducerConfig::default()
                },
            )
            .unwrap()
        };
        // Partitions 0 and 1 with durable acks, 2 and 3 with leader acks.
        let durable = producer(Acks::Durable);
        let leader = producer(Acks::Leader);
        let mut pending: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for round in 0..LOADED_RECORDS_PER_PARTITION / LOADED_ROUND_RECORDS {
            for p in 0..LOADED_PARTITIONS {
                let producer = if p < 2 { &durable } else { &leader };
                for i in 0..LOADED_ROUND_RECORDS {
                    let seq = round * LOADED_ROUND_RECORDS + i;
                    let record = Record::new(loaded_value(p, seq)).with_partition(p);
                    pending
                        .entry(p)
                        .or_default()
                        .push(producer.send(LOADED_TOPIC, record));
                }
            }
            tokio::time::sleep(LOADED_ROUND_PAUSE).await;
        }
        // The producer retries retryable errors (a partition held or
        // refused during its move) by itself; with one batch in flight per
        // partition and no ambiguous failure (no lost connection, no
        // timeout) it appends each record once, so record `seq` is
        // acknowledged at offset `seq`: a loss or a duplicate before it
        // would shift it.
        for (p, acks) in pending {
            for (seq, ack) in acks.into_iter().enumerate() {
                let ack = ack
                    .await
                    .unwrap_or_else(|e| panic!("{LOADED_TOPIC}/{p} record {seq}: {e}"));
                assert_eq!(ack.partition, p);
                assert_eq!(
                    ack.offset,
                    Some(seq as u64),
                    "{LOADED_TOPIC}/{p} record {seq}"
                );
            }
        }
    });
    producing_done.store(true, Ordering::Release);
    let (placement, moves) = mover.join().expect("mover");
    eprintln!("moves per partition: {moves:?}; final placement {placement:?}");
    assert!(
        moves.iter().all(|&n| n >= LOADED_MOVES_PER_PARTITION_MIN),
        "{moves:?}"
    );

    target.store(LOADED_RECORDS_PER_PARTITION as u64, Ordering::Release);
    rt.block_on(async {
        verify_loaded_logs(&client).await;
        for (p, subscriber) in SUBSCRIBED.iter().zip(subscribers) {
            let (values, resubscribed) = tokio::time::timeout(PATIENCE, subscriber)
                .await
                .unwrap_or_else(|_| panic!("subscriber of partition {p} did not catch up"))
                .expect("subscriber task");
            eprintln!("subscriber of partition {p} resubscribed {resubscribed} times");
            assert_eq!(values.len(), LOADED_RECORDS_PER_PARTITION, "partition {p}");
            for (seq, v) in values.iter().enumerate() {
                assert_eq!(
                    v.as_ref(),
                    loaded_value(*p, seq).as_bytes(),
                    "partition {p}"
                );
            }
        }
    });

    // The moves put the partitions where /topics and topics.json say.
    wait_for_placement(admin, LOADED_TOPIC, &placement);
    let catalog = catalog_of(dir.path());
    assert!(catalog.moving.is_empty(), "{:?}", catalog.moving);
    assert_eq!(
        catalog_placement(dir.path(), LOADED_TOPIC, LOADED_PARTITIONS),
        placement
    );

    client.close();
    assert_eq!(node.terminate(), Some(0), "SIGTERM exits 0");
    let node = start(dir.path());
    wait_for_placement(node.admin, LOADED_TOPIC, &placement);
    assert_eq!(
        catalog_placement(dir.path(), LOADED_TOPIC, LOADED_PARTITIONS),
        placement,
        "the placement survives a restart"
    );
    rt.block_on(async {
        let client = connect(&node).await;
        verify_loaded_logs(&client).await;
    });
}

const BACK_AND_FORTH_TOPIC: &str = "back-and-forth";
const BACK_AND_FORTH_PARTITIONS: u32 = 4;
const BACK_AND_FORTH_MOVES: usize = 400;
const BACK_AND_FORTH_ROUND_RECORDS: usize = 10;

/// Regression for two races between a move and a shard's housekeeping,
/// which every 500 ms opens the partitions the catalog gives the shard
/// that are not open (yet):
///
/// - on the source, it reopened a partition the move had just released,
///   before the switch; the stale copy stayed there, and when the
///   partition came back its appends reused offsets from the old log end;
/// - on the destination, it opened the partition a second time while the
///   switch was still opening it, and the second copy, recovered before
///   the appends the first one took meanwhile, replaced it: the next
///   appends reused their offsets.
///
/// With moves back to back and records produced all along, every record
/// must be acknowledged at the offset its place in the partition implies.
#[test]
fn a_partition_moved_back_and_forth_keeps_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let rt = runtime();
    let (client, producer) = rt.block_on(async {
        let client = connect(&node).await;
        client
            .create_topic(BACK_AND_FORTH_TOPIC, BACK_AND_FORTH_PARTITIONS, None, None)
            .await
            .unwrap();
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        (client, producer)
    });
    let mover = {
        let (admin, mut placement) = (
            node.admin,
            catalog_placement(dir.path(), BACK_AND_FORTH_TOPIC, BACK_AND_FORTH_PARTITIONS),
        );
        std::thread::spawn(move || {
            for i in 0..BACK_AND_FORTH_MOVES {
                let p = (i % BACK_AND_FORTH_PARTITIONS as usize) as u32;
                let from = placement[&p];
                move_partition(admin, BACK_AND_FORTH_TOPIC, p, from, 1 - from);
                placement.insert(p, 1 - from);
            }
            placement
        })
    };
    let records = rt.block_on(async {
        let mut records = vec![0usize; BACK_AND_FORTH_PARTITIONS as usize];
        while !mover.is_finished() {
            let mut round = Vec::new();
            for p in 0..BACK_AND_FORTH_PARTITIONS {
                for _ in 0..BACK_AND_FORTH_ROUND_RECORDS {
                    let seq = records[p as usize];
                    records[p as usize] += 1;
                    let record = Record::new(seq.to_string()).with_partition(p);
                    round.push((p, seq, producer.send(BACK_AND_FORTH_TOPIC, record)));
                }
            }
            for (p, seq, ack) in round {
                let ack = ack
                    .await
                    .unwrap_or_else(|e| panic!("{BACK_AND_FORTH_TOPIC}/{p} record {seq}: {e}"));
                assert_eq!(
                    ack.offset,
                    Some(seq as u64),
                    "{BACK_AND_FORTH_TOPIC}/{p}: record {seq} acknowledged at another offset"
                );
            }
        }
        records
    });
    let placement = mover.join().expect("mover");
    wait_for_placement(node.admin, BACK_AND_FORTH_TOPIC, &placement);
    rt.block_on(async {
        for p in 0..BACK_AND_FORTH_PARTITIONS {
            let values = read_partition(&client, BACK_AND_FORTH_TOPIC, p).await;
            assert_eq!(values.len(), records[p as usize], "partition {p}");
            for (seq, v) in values.iter().enumerate() {
                assert_eq!(v.as_ref(), seq.to_string().as_bytes(), "partition {p}");
            }
        }
    });
}

// ---------------------------------------------------------------------------
// 2. Reactive rebalance of a skewed node.

const SKEWED_TOPIC: &str = "skewed";
const SKEWED_PARTITIONS: u32 = 4;
/// Per hot partition: this many records every `SKEWED_PAUSE` (a few
/// hundred a second, far above the planner's idle floor of 10 msgs/s).
const SKEWED_ROUND_RECORDS: usize = 10;
const SKEWED_PAUSE: Duration = Duration::from_millis(40);
/// The planner's "current" load is the mean of the newest 5 seconds.
const SKEWED_SAMPLES_MIN: usize = 5;

/// Produces to `hot` at a steady pace until `stop`; returns the records
/// acknowledged per partition (every send must succeed).
fn produce_steadily(
    node: &NodeProcess,
    hot: Vec<u32>,
    stop: Arc<AtomicBool>,
) -> impl FnOnce() -> BTreeMap<u32, u64> {
    let (quic, ca) = (node.quic, node.ca());
    move || {
        runtime().block_on(async move {
            let client = Client::connect(ClientConfig::new(quic, ServerTrust::CaFile(ca)))
                .await
                .expect("connect");
            let producer = Producer::new(
                &client,
                ProducerConfig {
                    acks: Acks::Leader,
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut acked: BTreeMap<u32, u64> = hot.iter().map(|&p| (p, 0)).collect();
            while !stop.load(Ordering::Acquire) {
                let mut round = Vec::new();
                for &p in &hot {
                    for _ in 0..SKEWED_ROUND_RECORDS {
                        let record = Record::new(&b"hot"[..]).with_partition(p);
                        round.push((p, producer.send(SKEWED_TOPIC, record)));
                    }
                }
                for (p, ack) in round {
                    ack.await
                        .unwrap_or_else(|e| panic!("{SKEWED_TOPIC}/{p}: {e}"));
                    *acked.get_mut(&p).expect("hot") += 1;
                }
                tokio::time::sleep(SKEWED_PAUSE).await;
            }
            client.close();
            acked
        })
    }
}

/// Waits until the load thread has at least `SKEWED_SAMPLES_MIN` newest
/// per-second message rates above zero for each of `hot`.
fn wait_for_load_samples(admin: SocketAddr, hot: &[u32]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = admin_request(
            admin,
            "GET",
            "/load?scope=partition&resource=message_rate&window=10",
        )
        .expect("GET /load");
        assert!(status.contains(" 200 "), "{status} {body}");
        let v: Value = serde_json::from_str(&body).expect("/load is JSON");
        let busy = hot.iter().all(|p| {
            let name = format!("messages_in_per_s@partition:{SKEWED_TOPIC}/{p}");
            v["series"].as_array().expect("series").iter().any(|s| {
                s["series"] == name.as_str()
                    && s["values"].as_array().is_some_and(|values| {
                        values.len() >= SKEWED_SAMPLES_MIN
                            && values[values.len() - SKEWED_SAMPLES_MIN..]
                                .iter()
                                .all(|x| x.as_f64().is_some_and(|x| x > 0.0))
                    })
            })
        });
        if busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {SKEWED_SAMPLES_MIN} busy seconds recorded for {hot:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_reactive_rebalance_moves_a_hot_partition_off_the_busy_shard() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let admin = node.admin;
    let rt = runtime();
    rt.block_on(async {
        connect(&node)
            .await
            .create_topic(SKEWED_TOPIC, SKEWED_PARTITIONS, None, None)
            .await
            .unwrap();
    });
    let mut placement = catalog_placement(dir.path(), SKEWED_TOPIC, SKEWED_PARTITIONS);
    wait_for_placement(admin, SKEWED_TOPIC, &placement);
    // Two partitions on shard 0 carry all the traffic; move one there if
    // the hash put fewer (with one, no move could even anything out).
    let mut hot: Vec<u32> = Vec::new();
    for p in 0..SKEWED_PARTITIONS {
        if placement[&p] == 0 {
            hot.push(p);
        }
    }
    for p in 0..SKEWED_PARTITIONS {
        if hot.len() >= 2 {
            break;
        }
        if placement[&p] == 1 {
            move_partition(admin, SKEWED_TOPIC, p, 1, 0);
            placement.insert(p, 0);
            hot.push(p);
        }
    }
    hot.truncate(2);
    wait_for_placement(admin, SKEWED_TOPIC, &placement);
    eprintln!("placement {placement:?}, hot partitions {hot:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let producer = std::thread::spawn(produce_steadily(&node, hot.clone(), stop.clone()));
    wait_for_load_samples(admin, &hot);

    let (status, body) = node.admin_post("/rebalance/apply?strategy=reactive&moves_max=2");
    assert!(status.contains(" 200 "), "{status} {body}");
    let applied: Value = serde_json::from_str(&body).expect("apply answer is JSON");
    eprintln!("applied: {applied}");
    assert_eq!(applied["plan"]["strategy"], "reactive", "{body}");
    let moves = applied["moves"].as_array().expect("moves");
    assert!(
        !moves.is_empty(),
        "all load on shard 0 and nothing moved: {body}"
    );
    assert!(moves.len() <= 2, "moves_max=2: {body}");
    let mut moved_hot = Vec::new();
    for m in moves {
        assert_eq!(m["state"], "done", "{m}");
        assert!(m["error"].is_null(), "{m}");
        let (topic, partition) = m["partition"]
            .as_str()
            .and_then(|p| p.split_once('/'))
            .expect("partition is topic/partition");
        assert_eq!(topic, SKEWED_TOPIC);
        let partition: u32 = partition.parse().unwrap();
        let (from, to) = (
            m["from_shard"].as_u64().unwrap() as usize,
            m["to_shard"].as_u64().unwrap() as usize,
        );
        assert_eq!(from, placement[&partition], "{m}");
        placement.insert(partition, to);
        if hot.contains(&partition) && (from, to) == (0, 1) {
            moved_hot.push(partition);
        }
    }
    assert!(
        !moved_hot.is_empty(),
        "no hot partition moved from shard 0 to shard 1: {body}"
    );
    assert_ne!(
        placement[&hot[0]], placement[&hot[1]],
        "the two hot partitions end on different shards: {body}"
    );

    let (status, body) = node.admin_get("/rebalance/status");
    assert!(status.contains(" 200 "), "{status} {body}");
    let v: Value = serde_json::from_str(&body).expect("status is JSON");
    assert_eq!(v["applying"], false, "{body}");
    assert!(
        v["moves"]["in_flight"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{body}"
    );
    assert!(v["moves"]["moves_done"].as_u64() >= Some(1), "{body}");
    let recent = v["moves"]["recent"].as_array().expect("moves.recent");
    for p in &moved_hot {
        let name = format!("{SKEWED_TOPIC}/{p}");
        assert!(
            recent.iter().any(|r| r["partition"] == name.as_str()
                && r["state"] == "done"
                && r["from_shard"] == 0
                && r["to_shard"] == 1),
            "{name} not listed as done in moves.recent: {body}"
        );
    }
    wait_for_placement(admin, SKEWED_TOPIC, &placement);
    assert_eq!(
        catalog_placement(dir.path(), SKEWED_TOPIC, SKEWED_PARTITIONS),
        placement
    );

    stop.store(true, Ordering::Release);
    let acked = producer.join().expect("producer");
    rt.block_on(async {
        let info = connect(&node)
            .await
            .describe_topic(SKEWED_TOPIC)
            .await
            .unwrap();
        for p in &info.partitions {
            let expected = acked.get(&p.partition).copied().unwrap_or(0);
            assert_eq!(
                p.high_watermark, expected,
                "{SKEWED_TOPIC}/{}: every acknowledged record, once, across the move",
                p.partition
            );
        }
    });
}

// ---------------------------------------------------------------------------
// 3. kill -9 in the middle of moves.

const CRASH_TOPIC: &str = "crashy";
const CRASH_PARTITIONS: u32 = 4;
const CRASH_ROUNDS: usize = 5;
/// The kill comes this long (at random below the bound) after the first
/// move of the round finished and every partition took records.
const CRASH_DELAY_MS_MAX: u64 = 250;
const CRASH_CHUNK_RECORDS: usize = 8;

/// Per partition, the durably acknowledged records: (offset, value).
type Acked = BTreeMap<u32, Vec<(u64, String)>>;

/// splitmix64: a seeded, replayable source of kill delays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

fn seed() -> u64 {
    std::env::var("SPRAWL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn crash_value(round: usize, partition: u32, seq: usize) -> String {
    format!("r{round}-p{partition}-{seq}")
}

/// `(round, seq)` of a record of partition `partition`.
fn parse_crash_value(value: &[u8], partition: u32) -> (usize, usize) {
    let text = std::str::from_utf8(value).expect("utf-8 value");
    let parsed = text.strip_prefix('r').and_then(|rest| {
        let (round, rest) = rest.split_once('-')?;
        let (p, seq) = rest.strip_prefix('p')?.split_once('-')?;
        (p.parse::<u32>().ok()? == partition).then_some((round.parse().ok()?, seq.parse().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("{CRASH_TOPIC}/{partition}: unexpected record {text:?}"))
}

/// Sends records to `partition` with durable acks, a chunk at a time,
/// recording each acknowledgement as it arrives, until the task is dropped.
async fn produce_recording(
    producer: Producer,
    round: usize,
    partition: u32,
    acked: Arc<Mutex<Acked>>,
) {
    let mut seq = 0;
    loop {
        let chunk: Vec<_> = (seq..seq + CRASH_CHUNK_RECORDS)
            .map(|s| {
                let value = crash_value(round, partition, s);
                let record = Record::new(value.clone()).with_partition(partition);
                (value, producer.send(CRASH_TOPIC, record))
            })
            .collect();
        seq += CRASH_CHUNK_RECORDS;
        for (value, ack) in chunk {
            let ack = ack
                .await
                .unwrap_or_else(|e| panic!("{CRASH_TOPIC}/{partition} {value}: {e}"));
            let offset = ack.offset.expect("durable acks carry offsets");
            acked
                .lock()
                .unwrap()
                .entry(partition)
                .or_default()
                .push((offset, value));
        }
    }
}

/// Moves partitions to the other shard back to back until the node stops
/// answering; returns how many moves completed.
fn move_until_gone(
    admin: SocketAddr,
    mut placement: BTreeMap<u32, usize>,
    moves_done: &AtomicUsize,
) {
    for i in 0.. {
        let partition = (i % CRASH_PARTITIONS as usize) as u32;
        let from = placement[&partition];
        let to = 1 - from;
        let path = format!("/partitions/move?topic={CRASH_TOPIC}&partition={partition}&to={to}");
        // Refused, reset or cut short: the node was killed.
        let Ok((status, body)) = admin_request(admin, "POST", &path) else {
            return;
        };
        check_move_answer(&path, &status, &body, CRASH_TOPIC, partition, from, to);
        placement.insert(partition, to);
        moves_done.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every acknowledged record is at its acknowledged offset, and each
/// partition holds, per round, a gap-free prefix of what was sent in it.
async fn verify_crash_logs(client: &Client, acked: &Acked) {
    for p in 0..CRASH_PARTITIONS {
        let values = read_partition(client, CRASH_TOPIC, p).await;
        for (offset, value) in acked.get(&p).into_iter().flatten() {
            let stored = values.get(*offset as usize).unwrap_or_else(|| {
                panic!(
                    "{CRASH_TOPIC}/{p}: acknowledged {value} at offset {offset} is gone \
                     (log ends at {})",
                    values.len()
                )
            });
            assert_eq!(
                stored.as_ref(),
                value.as_bytes(),
                "{CRASH_TOPIC}/{p} offset {offset}"
            );
        }
        let mut expected: Option<(usize, usize)> = None;
        for (offset, v) in values.iter().enumerate() {
            let (round, seq) = parse_crash_value(v, p);
            let in_order = match expected {
                None => seq == 0,
                Some((r, next)) => (round == r && seq == next) || (round > r && seq == 0),
            };
            assert!(
                in_order,
                "{CRASH_TOPIC}/{p} offset {offset}: r{round} #{seq} after {expected:?}"
            );
            expected = Some((round, seq + 1));
        }
    }
}

#[test]
fn kill_9_during_moves_rolls_back_and_keeps_every_durable_ack() {
    let seed = seed();
    eprintln!("seed {seed} (SPRAWL_TEST_SEED={seed} replays the kill delays)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    runtime().block_on(async {
        connect(&node)
            .await
            .create_topic(CRASH_TOPIC, CRASH_PARTITIONS, None, None)
            .await
            .unwrap();
    });
    let acked: Arc<Mutex<Acked>> = Arc::default();
    for round in 0..CRASH_ROUNDS {
        let placement = catalog_placement(dir.path(), CRASH_TOPIC, CRASH_PARTITIONS);
        let moves_done = Arc::new(AtomicUsize::new(0));
        let mover = {
            let (admin, moves_done) = (node.admin, moves_done.clone());
            std::thread::spawn(move || move_until_gone(admin, placement, &moves_done))
        };
        // A runtime per round: dropping it ends the producers, whose
        // in-flight batches would otherwise retry against the dead node.
        let rt = runtime();
        let delay_ms = rng.below(CRASH_DELAY_MS_MAX);
        rt.block_on(async {
            let client = connect(&node).await;
            let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
            let acked_before: Vec<usize> = {
                let acked = acked.lock().unwrap();
                (0..CRASH_PARTITIONS)
                    .map(|p| acked.get(&p).map_or(0, Vec::len))
                    .collect()
            };
            let producers: Vec<_> = (0..CRASH_PARTITIONS)
                .map(|p| tokio::spawn(produce_recording(producer.clone(), round, p, acked.clone())))
                .collect();
            // Moves and produces both under way before the kill.
            let deadline = Instant::now() + PATIENCE;
            loop {
                let producing = {
                    let acked = acked.lock().unwrap();
                    (0..CRASH_PARTITIONS)
                        .all(|p| acked.get(&p).map_or(0, Vec::len) > acked_before[p as usize])
                };
                if producing && moves_done.load(Ordering::Acquire) > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: no move or no acknowledgement"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            node.kill_9();
            // They run until dropped: one that ended failed before the kill.
            for producer in producers {
                if producer.is_finished() {
                    if let Err(e) = producer.await {
                        panic!("round {round}: a producer failed before the kill: {e}");
                    }
                }
            }
        });
        drop(rt);
        mover.join().expect("mover");
        let in_flight = catalog_of(dir.path()).moves();
        eprintln!(
            "round {round}: killed {delay_ms} ms in, after {} moves; moves in topics.json: {in_flight:?}",
            moves_done.load(Ordering::Acquire)
        );

        node = start(dir.path());
        let catalog = catalog_of(dir.path());
        assert!(
            catalog.moving.is_empty(),
            "round {round}: an unfinished move survived the restart: {:?}",
            catalog.moving
        );
        let placement = catalog_placement(dir.path(), CRASH_TOPIC, CRASH_PARTITIONS);
        for (_, partition, m) in &in_flight {
            assert_eq!(
                placement[partition], m.from as usize,
                "round {round}: {CRASH_TOPIC}/{partition} was rolled back to its source"
            );
        }
        wait_for_placement(node.admin, CRASH_TOPIC, &placement);
        let acked = acked.lock().unwrap().clone();
        runtime().block_on(async {
            let client = connect(&node).await;
            verify_crash_logs(&client, &acked).await;
        });
    }

    // Producing works after the last restart, right after what survived.
    runtime().block_on(async {
        let client = connect(&node).await;
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        let consumer = Consumer::new(&client);
        for p in 0..CRASH_PARTITIONS {
            let end = read_partition(&client, CRASH_TOPIC, p).await.len() as u64;
            let ack = producer
                .send(CRASH_TOPIC, Record::new("after").with_partition(p))
                .await
                .unwrap();
            assert_eq!(ack.offset, Some(end), "{CRASH_TOPIC}/{p}");
            let f = consumer
                .fetch(CRASH_TOPIC, p, end, 1 << 20, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(f.records.len(), 1);
            assert_eq!(f.records[0].value.as_ref(), b"after");
        }
    });
}
