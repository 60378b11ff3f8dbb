//! [`Consumer`]: fetches, subscriptions, and consumer-group offsets.

use std::time::Duration;

use sprawl_wire::{Body, ErrorCode, FetchRequest, StartPosition};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::link::{body_of, millis, unexpected};
use crate::records::{decode_batches, ConsumedRecord};
use crate::subscription::{decode_error, Subscription};

/// Reads partitions, by fetch (pull) or subscription (push).
///
/// A consumer made [`Consumer::with_group`] also starts from, and commits,
/// the group's offsets. Group membership (who reads which partition) is
/// not part of protocol version 1: the application assigns partitions.
#[derive(Debug, Clone)]
pub struct Consumer {
    client: Client,
    group: Option<String>,
    fallback: StartPosition,
}

/// The answer to one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Records at or after the requested offset, in offset order.
    pub records: Vec<ConsumedRecord>,
    /// Where to fetch next (the requested offset when nothing came back).
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

impl Consumer {
    /// A consumer without a group.
    pub fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
            group: None,
            fallback: StartPosition::Earliest,
        }
    }

    /// A consumer of consumer group `group`: [`Consumer::group_offset`] and
    /// [`Consumer::subscribe_group`] start from the group's committed offset,
    /// or from the fallback position ([`Consumer::with_fallback`], default
    /// `Earliest`) when it never committed or its offset is no longer
    /// retained.
    pub fn with_group(client: &Client, group: impl Into<String>) -> Self {
        Self {
            group: Some(group.into()),
            ..Self::new(client)
        }
    }

    /// Where a group without a usable committed offset starts.
    pub fn with_fallback(mut self, fallback: StartPosition) -> Self {
        self.fallback = fallback;
        self
    }

    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Reads records of `topic`/`partition` from `offset`: up to about
    /// `max_bytes` of batches (the first batch comes whole even if larger),
    /// waiting up to `max_wait` for the first byte if there is nothing yet.
    /// Every batch's CRC is verified; records before `offset` (a batch may
    /// start earlier) are skipped.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<Fetched> {
        let what = format!("fetch {topic}/{partition} from offset {offset}");
        let request = FetchRequest {
            topic,
            partition,
            offset,
            max_bytes,
            min_bytes: 1,
            max_wait_ms: u32::try_from(millis(max_wait)).unwrap_or(u32::MAX),
        };
        let target = self.client.target(topic, partition).await;
        let sent = target.link.call(&what, request.into(), max_wait).await;
        let answer = self.client.checked(topic, &target, sent)?;
        let response = match body_of(&what, &answer)? {
            Body::FetchResponse(r) => r,
            other => return Err(unexpected(&what, other.kind())),
        };
        let batches = answer.share(response.batches);
        let mut records = Vec::new();
        decode_batches(&batches, offset, &mut records)
            .map_err(|f| decode_error(f, topic, partition, &what))?;
        if let Some(last) = records.last().filter(|r| response.next_offset <= r.offset) {
            return Err(Error::protocol(
                &what,
                format!(
                    "next offset {} does not follow the last record returned ({})",
                    response.next_offset, last.offset
                ),
            ));
        }
        Ok(Fetched {
            records,
            next_offset: response.next_offset,
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
        })
    }

    /// Subscribes to `topic`/`partition` from `start`, with a window of
    /// `credit_bytes` (the most the subscription holds, plus one batch).
    pub async fn subscribe(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        credit_bytes: u64,
    ) -> Result<Subscription> {
        let target = self.client.target(topic, partition).await;
        let opened = Subscription::open(&target.link, topic, partition, start, credit_bytes).await;
        let subscription = self.client.checked(topic, &target, opened)?;
        // If it ends with an error, the next subscription (from its
        // position) goes to the leader the refreshed metadata names.
        Ok(subscription.with_feedback(self.client.route_feedback(topic, &target)))
    }

    /// Where the group resumes in `topic`/`partition`: its committed
    /// offset if it is still retained, else the fallback position resolved.
    pub async fn group_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        let group = self.group.as_deref().ok_or(Error::NoGroup)?;
        let client = &self.client;
        if let Some(committed) = client.committed_offset(group, topic, partition).await? {
            match client
                .resolve_offset(topic, partition, StartPosition::Offset(committed))
                .await
            {
                Err(e) if e.remote_code() == Some(ErrorCode::OffsetOutOfRange) => {
                    tracing::info!(
                        group, topic, partition, committed, fallback = ?self.fallback,
                        "committed offset no longer retained; using the fallback"
                    );
                }
                resolved => return resolved,
            }
        }
        client.resolve_offset(topic, partition, self.fallback).await
    }

    /// Subscribes from [`Consumer::group_offset`].
    pub async fn subscribe_group(
        &self,
        topic: &str,
        partition: u32,
        credit_bytes: u64,
    ) -> Result<Subscription> {
        let offset = self.group_offset(topic, partition).await?;
        self.subscribe(
            topic,
            partition,
            StartPosition::Offset(offset),
            credit_bytes,
        )
        .await
    }

    /// Commits `offset` for the group: the **next** offset to consume,
    /// e.g. [`Subscription::position`] after processing.
    pub async fn commit(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        let group = self.group.as_deref().ok_or(Error::NoGroup)?;
        self.client
            .commit_offset(group, topic, partition, offset)
            .await
    }
}

/// First wait before resubscribing after a retryable failure; doubles up
/// to [`RESUBSCRIBE_BACKOFF_MAX`].
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A subscription that survives leader changes and lost connections: on a
/// retryable failure it subscribes again from its position (to the leader
/// the refreshed metadata names), so the records it returns stay gapless
/// and in order. Made by [`Consumer::follow`].
#[derive(Debug)]
pub struct FollowingSubscription {
    consumer: Consumer,
    topic: String,
    partition: u32,
    credit_bytes: u64,
    start: Option<StartPosition>,
    /// The next offset [`FollowingSubscription::next`] returns (once known).
    position: Option<u64>,
    current: Option<Subscription>,
    backoff: Duration,
    /// Resubscriptions after a retryable failure so far.
    pub resubscribed: u64,
}

impl Consumer {
    /// Follows `topic`/`partition` from `start` by subscription, resuming
    /// from the last position after retryable failures (a leader change, a
    /// node restarting). Fails only on a permanent error.
    pub fn follow(
        &self,
        topic: &str,
        partition: u32,
        start: StartPosition,
        credit_bytes: u64,
    ) -> FollowingSubscription {
        FollowingSubscription {
            consumer: self.clone(),
            topic: topic.to_owned(),
            partition,
            credit_bytes,
            start: Some(start),
            position: None,
            current: None,
            backoff: RESUBSCRIBE_BACKOFF_MIN,
            resubscribed: 0,
        }
    }
}

impl FollowingSubscription {
    /// The next offset [`FollowingSubscription::next`] returns, once known.
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// The next record; `Err` only for a permanent failure (or when the
    /// node ended the subscription in order, e.g. the topic was deleted).
    pub async fn next(&mut self) -> Result<ConsumedRecord> {
        loop {
            let subscription = match &mut self.current {
                Some(s) => s,
                None => {
                    let start = match self.position {
                        Some(offset) => StartPosition::Offset(offset),
                        None => self.start.unwrap_or(StartPosition::Earliest),
                    };
                    match self
                        .consumer
                        .subscribe(&self.topic, self.partition, start, self.credit_bytes)
                        .await
                    {
                        Ok(s) => self.current.insert(s),
                        Err(e) if e.is_retryable() => {
                            self.wait_before_retry().await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match subscription.next().await {
                Some(Ok(record)) => {
                    self.backoff = RESUBSCRIBE_BACKOFF_MIN;
                    self.position = Some(record.offset + 1);
                    return Ok(record);
                }
                Some(Err(e)) if e.is_retryable() => {
                    self.position = Some(subscription.position());
                    self.current = None;
                    self.resubscribed += 1;
                    tracing::debug!(topic = %self.topic, partition = self.partition, error = %e,
                        "subscription failed; resubscribing from its position");
                    self.wait_before_retry().await;
                }
                Some(Err(e)) => return Err(e),
                None => {
                    // Ended in order by the node (deleted, or a stop): a
                    // retryable end was reported as an error above.
                    return Err(Error::SubscriptionClosed {
                        topic: self.topic.clone(),
                        partition: self.partition,
                    });
                }
            }
        }
    }

    async fn wait_before_retry(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
    }
}
