//! End-to-end smoke run against a real node:
//!
//! ```text
//! sprawl --data-dir /tmp/sprawl --listen 127.0.0.1:7470 &
//! cargo run -p sprawl-client --example smoke -- 127.0.0.1:7470 /tmp/sprawl/tls/cert.pem
//! ```
//!
//! Creates a topic, produces keyed records, reads them back by fetch and by
//! subscription, commits a group offset, and checks order per partition.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
    StartPosition,
};

const PARTITIONS: u32 = 4;
const RECORDS: usize = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let node = args.next().unwrap_or_else(|| "127.0.0.1:7470".into());
    let trust = match args.next() {
        Some(ca) => ServerTrust::CaFile(ca.into()),
        None => ServerTrust::InsecureSkipVerification,
    };
    let mut config = ClientConfig::new(node, trust);
    config.client_id = "smoke".into();
    let client = Client::connect(config).await?;
    println!("connected: {:?}", client.node());

    let topic = format!("smoke-{}", std::process::id());
    let created = client.create_topic(&topic, PARTITIONS, None, None).await?;
    println!("created {created:?}");

    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::Durable,
            ..ProducerConfig::default()
        },
    )?;
    let started = Instant::now();
    let sent: Vec<(String, String)> = (0..RECORDS)
        .map(|i| (format!("key-{}", i % 101), format!("value-{i}")))
        .collect();
    let acks: Vec<_> = sent
        .iter()
        .map(|(k, v)| producer.send(&topic, Record::new(v.clone()).with_key(k.clone())))
        .collect();
    let mut expected: HashMap<u32, Vec<(u64, String)>> = HashMap::new();
    for ((_, value), ack) in sent.iter().zip(acks) {
        let ack = ack.await?;
        expected
            .entry(ack.partition)
            .or_default()
            .push((ack.offset.expect("acks=durable"), value.clone()));
    }
    println!("produced {RECORDS} records in {:?}", started.elapsed());

    let described = client.describe_topic(&topic).await?;
    for p in &described.partitions {
        println!(
            "partition {}: hw {} end {}",
            p.partition, p.high_watermark, p.log_end_offset
        );
    }

    let consumer = Consumer::with_group(&client, "smoke-group");
    for partition in 0..PARTITIONS {
        let want = expected.remove(&partition).unwrap_or_default();
        assert!(
            want.windows(2).all(|w| w[0].0 + 1 == w[1].0),
            "offsets of partition {partition} follow send order"
        );
        let mut offset = want.first().map_or(0, |w| w.0);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let fetched = consumer
                .fetch(
                    &topic,
                    partition,
                    offset,
                    256 << 10,
                    Duration::from_millis(100),
                )
                .await?;
            offset = fetched.next_offset;
            got.extend(fetched.records);
        }
        for (record, (offset, value)) in got.iter().zip(&want) {
            assert_eq!(record.offset, *offset);
            assert_eq!(record.value, value.as_bytes());
        }
        println!(
            "partition {partition}: fetched {} records in order",
            got.len()
        );
    }

    let mut subscription = consumer
        .subscribe(&topic, 0, StartPosition::Earliest, 16 << 10)
        .await?;
    let target = described.partitions[0].high_watermark;
    let mut received = 0u64;
    while subscription.position() < target {
        let record = subscription.next().await.expect("open")?;
        assert_eq!(record.offset, received);
        received += 1;
    }
    let position = subscription.unsubscribe().await?;
    consumer.commit(&topic, 0, position).await?;
    println!(
        "subscribed to partition 0: {received} records, committed {:?}",
        client.committed_offset("smoke-group", &topic, 0).await?
    );
    assert_eq!(consumer.group_offset(&topic, 0).await?, position);

    client.delete_topic(&topic).await?;
    println!("ok");
    Ok(())
}
