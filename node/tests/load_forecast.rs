//! The load thread end to end: per-second series appear in `/load` while a
//! producer runs, `/predictions` answers with a forecaster and its rolling
//! errors against the others, bad queries get a 400 naming the problem, the
//! history survives a restart, and `--no-load-forecast` turns it all off.

mod common;

use std::time::{Duration, Instant};

use common::NodeProcess;
use serde_json::Value;
use sprawl_client::{Client, ClientConfig, Producer, ProducerConfig, Record, ServerTrust};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Produces to partition 0 of `topic` for `seconds`, a batch every 20 ms.
fn produce_for(node: &NodeProcess, topic: &str, seconds: u64, create: bool) -> usize {
    runtime().block_on(async {
        let client = Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
            .await
            .expect("connect");
        if create {
            client.create_topic(topic, 2, None, None).await.unwrap();
        }
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut sent = 0;
        while Instant::now() < deadline {
            for i in 0..20 {
                producer
                    .send(topic, Record::new(format!("m{i}")).with_partition(0))
                    .await
                    .unwrap();
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    })
}

fn get_json(node: &NodeProcess, path: &str) -> (String, Value) {
    let (status, body) = node.admin_get(path);
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

fn partition_series<'a>(load: &'a Value, topic: &str) -> Option<&'a Value> {
    load["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series"] == format!("messages_in_per_s@partition:{topic}/0"))
}

#[test]
fn series_predictions_and_history_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2);
    let sent = produce_for(&node, "metered", 4, true);
    assert!(sent > 0);
    // The load thread takes samples every second; give it two more.
    std::thread::sleep(Duration::from_secs(2));

    let (status, load) = get_json(
        &node,
        "/load?scope=partition&resource=message_rate&window=30",
    );
    assert!(status.contains("200"), "{status}");
    let series = partition_series(&load, "metered").expect("the partition's series");
    let values: Vec<f64> = series["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let recorded: f64 = values.iter().sum();
    // Per-second rates summed over the run ≈ messages sent (the first and
    // last seconds are partial, samples land on whole seconds).
    assert!(
        recorded > sent as f64 * 0.5 && recorded < sent as f64 * 1.5,
        "recorded {recorded} msgs over {values:?}, sent {sent}"
    );
    assert!(
        load["forecaster"]["cpu_share_of_one_core"]
            .as_f64()
            .unwrap()
            < 0.5
    );

    let (_, shards) = get_json(&node, "/load?scope=shard&resource=cpu");
    assert_eq!(
        shards["series"].as_array().unwrap().len(),
        2,
        "one cpu series per shard"
    );

    let (status, predictions) = get_json(
        &node,
        "/predictions?resource=message_rate&scope=partition&horizon=10s",
    );
    assert!(status.contains("200"), "{status}");
    let p = predictions["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["series"] == "messages_in_per_s@partition:metered/0")
        .expect("a prediction for the busy partition");
    assert!(p["forecast"].as_f64().unwrap() >= 0.0);
    assert!(p["forecaster"].as_str().is_some_and(|f| !f.is_empty()));
    assert!(p["rolling_errors"].is_array());

    // Bad queries say what is wrong.
    let (status, body) = node.admin_get("/predictions?resource=cpu&scope=node&horizon=7s");
    assert!(
        status.contains("400") && body.contains("horizon"),
        "{status} {body}"
    );
    let (status, body) = node.admin_get("/predictions?resource=disk");
    assert!(
        status.contains("400") && body.contains("unknown resource"),
        "{status} {body}"
    );
    let (status, _) = node.admin_post("/load");
    assert!(status.contains("405"), "{status}");

    // A clean stop saves the history; the restarted node still has it.
    assert_eq!(node.terminate(), Some(0));
    assert!(dir.path().join("load/history.bin").exists());
    assert!(dir.path().join("load/model.safetensors").exists());
    let node = NodeProcess::start(dir.path(), 2);
    let (_, load) = get_json(
        &node,
        "/load?scope=partition&resource=message_rate&window=60",
    );
    let series = partition_series(&load, "metered").expect("history kept across the restart");
    let kept: f64 = series["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    assert!(
        kept > 0.0,
        "the pre-restart traffic is still in the history"
    );
}

#[test]
fn no_load_forecast_turns_the_endpoints_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with(dir.path(), 1, &["--no-load-forecast"]);
    let (status, body) = node.admin_get("/load");
    assert!(
        status.contains("503") && body.contains("--no-load-forecast"),
        "{status} {body}"
    );
    let (status, _) = node.admin_get("/health");
    assert!(status.contains("200"));
}
