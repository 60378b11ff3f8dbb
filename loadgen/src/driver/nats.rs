//! NATS JetStream through `async-nats`, the side-by-side baseline.
//!
//! Each Sprawl partition maps to one JetStream stream (`<topic>-<p>`, file
//! storage, one replica) bound to subject `<topic>.<p>`, so NATS gets the
//! same parallelism of independent logs. acks=durable and acks=leader wait
//! for JetStream's PubAck (stored by the server; JetStream's own fsync
//! policy applies, see the suite's comparison); acks=none is a core NATS
//! publish to the stream's subject (the server still stores it).
//! "Batch B" = B publishes in flight before their acks are awaited.
//! Subscribers are ordered pull consumers (no acks, flow-controlled).

use std::collections::HashMap;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use super::{
    Ack, AckLevel, Broker, PartitionState, Publisher, PublisherSettings, StartAt, Subscriber,
};
use crate::report::TargetInfo;

pub struct NatsBroker {
    url: String,
    js: jetstream::Context,
    consumers: tokio::sync::Mutex<HashMap<usize, jetstream::Context>>,
    server_version: String,
}

/// `nats://host:port` → what async-nats connects to.
fn address(url: &str) -> &str {
    url.strip_prefix("nats://").unwrap_or(url)
}

fn stream_name(topic: &str, partition: u32) -> String {
    // Stream names may not contain '.', '*', '>' or whitespace.
    let topic: String = topic
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>' | ' ') {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{topic}-{partition}")
}

fn subject(topic: &str, partition: u32) -> String {
    format!("{topic}.{partition}")
}

async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("loadgen")
        .connect(address(url))
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

impl NatsBroker {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = connect(url).await?;
        let server_version = client.server_info().version;
        anyhow::ensure!(
            client.server_info().jetstream,
            "the NATS server at {url} runs without JetStream (start it with -js)"
        );
        Ok(Self {
            url: url.to_string(),
            js: jetstream::new(client),
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            server_version,
        })
    }

    async fn consumer_context(&self, connection: usize) -> anyhow::Result<jetstream::Context> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(&connection) {
            return Ok(c.clone());
        }
        let js = jetstream::new(connect(&self.url).await?);
        consumers.insert(connection, js.clone());
        Ok(js)
    }
}

impl Broker for NatsBroker {
    type Publisher = NatsPublisher;
    type Subscriber = NatsSubscriber;

    fn target(&self) -> TargetInfo {
        TargetInfo {
            kind: "nats-jetstream".into(),
            address: self.url.clone(),
            server_version: self.server_version.clone(),
            durability: "acks=durable/leader: JetStream PubAck from a file-storage stream \
                         (written to the server's file store; fsync as the server's \
                         sync_interval says, 2 min by default); acks=none: core publish"
                .into(),
        }
    }

    async fn prepare(&self, topics: &[String], partitions: u32) -> anyhow::Result<()> {
        for topic in topics {
            for p in 0..partitions {
                let name = stream_name(topic, p);
                self.js
                    .get_or_create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![subject(topic, p)],
                        storage: stream::StorageType::File,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("creating stream {name}: {e}"))?;
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
            for p in 0..partitions {
                let name = stream_name(topic, p);
                let mut s = self
                    .js
                    .get_stream(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
                let info = s
                    .info()
                    .await
                    .map_err(|e| anyhow::anyhow!("stream {name} info: {e}"))?;
                out.push(PartitionState {
                    messages: info.state.messages,
                    bytes: info.state.bytes,
                });
            }
        }
        Ok(out)
    }

    async fn publisher(&self, settings: &PublisherSettings) -> anyhow::Result<NatsPublisher> {
        let client = connect(&self.url).await?;
        let js = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(settings.max_in_flight.max(settings.batch).max(1))
            .build(client.clone());
        Ok(NatsPublisher {
            client,
            js,
            acks: settings.acks,
        })
    }

    async fn subscriber(
        &self,
        connection: usize,
        topic: &str,
        partition: u32,
        start: StartAt,
    ) -> anyhow::Result<NatsSubscriber> {
        let js = self.consumer_context(connection).await?;
        let name = stream_name(topic, partition);
        let stream = js
            .get_stream(&name)
            .await
            .map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: match start {
                    StartAt::Earliest => consumer::DeliverPolicy::All,
                    StartAt::Latest => consumer::DeliverPolicy::New,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("consumer on {name}: {e}"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consuming {name}: {e}"))?;
        Ok(NatsSubscriber { messages })
    }

    async fn delete(&self, topics: &[String], partitions: u32) -> anyhow::Result<()> {
        for topic in topics {
            for p in 0..partitions {
                let name = stream_name(topic, p);
                self.js
                    .delete_stream(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("deleting stream {name}: {e}"))?;
            }
        }
        Ok(())
    }
}

pub struct NatsPublisher {
    client: async_nats::Client,
    js: jetstream::Context,
    acks: AckLevel,
}

impl Publisher for NatsPublisher {
    async fn publish(&self, topic: &str, partition: u32, payload: Bytes) -> anyhow::Result<Ack> {
        let subject = subject(topic, partition);
        match self.acks {
            AckLevel::None => {
                self.client
                    .publish(subject, payload)
                    .await
                    .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
                Ok(futures::future::ready(Ok(())).boxed())
            }
            AckLevel::Leader | AckLevel::Durable => {
                let ack = self
                    .js
                    .publish(subject, payload)
                    .await
                    .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
                Ok(async move {
                    ack.await.map_err(|e| anyhow::anyhow!("PubAck: {e}"))?;
                    Ok(())
                }
                .boxed())
            }
        }
    }

    async fn flush(&self) -> anyhow::Result<()> {
        if self.acks == AckLevel::None {
            self.client
                .flush()
                .await
                .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
        }
        Ok(())
    }
}

pub struct NatsSubscriber {
    messages: consumer::pull::Ordered,
}

impl Subscriber for NatsSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        match self.messages.next().await {
            Some(Ok(m)) => Ok(Some(m.message.payload)),
            Some(Err(e)) => Err(anyhow::anyhow!("ordered consumer: {e}")),
            None => Ok(None),
        }
    }
}
