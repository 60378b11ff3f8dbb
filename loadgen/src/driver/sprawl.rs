//! A Sprawl node through `sprawl-client`: one QUIC connection per
//! publisher and per consumer connection index, the client's `Producer`
//! (batch = records per ProduceRequest) and push `Subscription`s.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use futures::FutureExt;
use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, ErrorCode, Producer, ProducerConfig, Record, ServerTrust,
    StartPosition, Subscription,
};

use super::{
    Ack, AckLevel, Broker, PartitionState, Publisher, PublisherSettings, StartAt, Subscriber,
};
use crate::report::TargetInfo;

/// Bytes of window each subscription grants the node.
const SUBSCRIPTION_CREDIT_BYTES: u64 = 8 << 20;
/// Record framing in a batch beyond the value (varints, timestamp delta,
/// header count): generous, it only sizes `batch_bytes_max`.
const RECORD_OVERHEAD_BYTES: usize = 32;

pub struct SprawlBroker {
    config: ClientConfig,
    admin: Client,
    consumers: tokio::sync::Mutex<HashMap<usize, Client>>,
    server_version: String,
    replication_factor: Option<u16>,
}

impl SprawlBroker {
    /// Connects to `node`, verifying its certificate against `ca` (or not
    /// at all when `ca` is `None`: only when asked for with --insecure).
    /// `via_node`: every request goes through `node` (which forwards to
    /// partition leaders) instead of straight to the leaders.
    pub async fn connect(
        node: &str,
        ca: Option<PathBuf>,
        via_node: bool,
        replication_factor: Option<u16>,
    ) -> anyhow::Result<Self> {
        let trust = match ca {
            Some(path) => ServerTrust::CaFile(path),
            None => ServerTrust::InsecureSkipVerification,
        };
        let mut config = ClientConfig::new(node, trust);
        config.client_id = "loadgen".into();
        config.direct_to_leaders = !via_node;
        let admin = Client::connect(config.clone())
            .await
            .with_context(|| format!("connecting to Sprawl at {node}"))?;
        let server_version = admin
            .node()
            .map_or_else(|| "unknown".into(), |n| n.server_version);
        Ok(Self {
            config,
            admin,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            server_version,
            replication_factor,
        })
    }

    async fn consumer_client(&self, connection: usize) -> anyhow::Result<Client> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(&connection) {
            return Ok(c.clone());
        }
        let client = Client::connect(self.config.clone()).await?;
        consumers.insert(connection, client.clone());
        Ok(client)
    }
}

impl Broker for SprawlBroker {
    type Publisher = SprawlPublisher;
    type Subscriber = SprawlSubscriber;

    fn target(&self) -> TargetInfo {
        TargetInfo {
            kind: "sprawl".into(),
            address: self.config.node.to_string(),
            server_version: self.server_version.clone(),
            durability: "acks=durable: acknowledged after fdatasync of the partition log \
                         (group commit); acks=leader: after the O_DIRECT write; \
                         acks=none: no answer"
                .into(),
        }
    }

    async fn prepare(&self, topics: &[String], partitions: u32) -> anyhow::Result<()> {
        for topic in topics {
            match self
                .admin
                .create_topic_replicated(topic, partitions, self.replication_factor, None, None)
                .await
            {
                Ok(_) => {}
                Err(e) if e.remote_code() == Some(ErrorCode::TopicExists) => {
                    let info = self.admin.describe_topic(topic).await?;
                    anyhow::ensure!(
                        info.partition_count >= partitions,
                        "topic {topic} exists with {} partitions, fewer than {partitions}",
                        info.partition_count
                    );
                }
                Err(e) => return Err(e).with_context(|| format!("creating topic {topic}")),
            }
        }
        // In a cluster the topic reaches every node (and its partitions
        // elect leaders) shortly after the create returns: start the clock
        // only once every partition answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for topic in topics {
            loop {
                let ready = match self.admin.describe_topic(topic).await {
                    Ok(info) => {
                        info.partitions.len() as u32 >= partitions
                            && info.partitions.iter().all(|p| p.error.is_none())
                    }
                    Err(e) if e.is_retryable() => false,
                    Err(e) => return Err(e).with_context(|| format!("describing topic {topic}")),
                };
                if ready {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "topic {topic}: partitions not all available within 30 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    async fn stored(
        &self,
        topics: &[String],
        partitions: u32,
    ) -> anyhow::Result<Vec<PartitionState>> {
        let mut out = Vec::new();
        for topic in topics {
            let info = self
                .admin
                .describe_topic(topic)
                .await
                .with_context(|| format!("describing topic {topic}"))?;
            for p in 0..partitions {
                let part = info
                    .partitions
                    .iter()
                    .find(|i| i.partition == p)
                    .with_context(|| format!("{topic} has no partition {p}"))?;
                if let Some(e) = &part.error {
                    anyhow::bail!("{topic}/{p}: {e}");
                }
                out.push(PartitionState {
                    messages: part.high_watermark - part.log_start_offset,
                    bytes: part.size_bytes,
                });
            }
        }
        Ok(out)
    }

    async fn publisher(&self, settings: &PublisherSettings) -> anyhow::Result<SprawlPublisher> {
        let client = Client::connect(self.config.clone()).await?;
        let record_bytes = settings.message_bytes_max + RECORD_OVERHEAD_BYTES;
        let config = ProducerConfig {
            acks: match settings.acks {
                AckLevel::None => Acks::None,
                AckLevel::Leader => Acks::Leader,
                AckLevel::Durable => Acks::Durable,
            },
            batch_bytes_max: sprawl_storage::BATCH_HEADER_BYTES + settings.batch * record_bytes,
            linger: settings.linger,
            max_in_flight_per_partition: settings.batches_in_flight_per_partition.max(1),
            buffer_bytes_max: (settings.max_in_flight * record_bytes).max(32 << 20),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(&client, config)?;
        Ok(SprawlPublisher {
            producer,
            _client: client,
        })
    }

    async fn subscriber(
        &self,
        connection: usize,
        topic: &str,
        partition: u32,
        start: StartAt,
    ) -> anyhow::Result<SprawlSubscriber> {
        let client = self.consumer_client(connection).await?;
        let start = match start {
            StartAt::Earliest => StartPosition::Earliest,
            StartAt::Latest => StartPosition::Latest,
        };
        let subscription = Consumer::new(&client)
            .subscribe(topic, partition, start, SUBSCRIPTION_CREDIT_BYTES)
            .await
            .with_context(|| format!("subscribing to {topic}/{partition}"))?;
        Ok(SprawlSubscriber { subscription })
    }

    async fn delete(&self, topics: &[String], _partitions: u32) -> anyhow::Result<()> {
        for topic in topics {
            self.admin
                .delete_topic(topic)
                .await
                .with_context(|| format!("deleting topic {topic}"))?;
        }
        Ok(())
    }
}

pub struct SprawlPublisher {
    producer: Producer,
    /// Keeps the connection's owner alive as long as the producer.
    _client: Client,
}

impl Publisher for SprawlPublisher {
    async fn publish(&self, topic: &str, partition: u32, payload: Bytes) -> anyhow::Result<Ack> {
        let ack = self
            .producer
            .send(topic, Record::new(payload).with_partition(partition));
        Ok(ack
            .map(|r| r.map(|_| ()).map_err(anyhow::Error::from))
            .boxed())
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.producer.flush().await;
        Ok(())
    }
}

pub struct SprawlSubscriber {
    subscription: Subscription,
}

impl Subscriber for SprawlSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        match self.subscription.next().await {
            Some(Ok(record)) => Ok(Some(record.value)),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }
}
