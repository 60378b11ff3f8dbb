//! [`Subscription`]: records pushed by the node on one long-lived stream,
//! under a credit of bytes that the subscription grants back as the
//! records are consumed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sprawl_wire::{
    Body, FrameEncoder, StartPosition, SubscribeRequest, SubscriptionCredit, Unsubscribe,
};

use crate::client::RouteFeedback;
use crate::error::{Error, Result};
use crate::link::{body_of, unexpected, Link};
use crate::records::{decode_batches, ConsumedRecord, DecodeFailure};
use crate::stream::RequestStream;
use crate::types::remote_error;

/// A partition's records as the node appends them, in offset order.
///
/// Flow control: the node sends only while it holds credit (bytes of
/// batches); the subscription starts it at `credit_bytes` and, each time
/// everything received so far has been handed out by [`Subscription::next`]
/// and at least half the window is free, tops it up to the window again.
/// So it holds at most one window plus one batch, however slow the caller.
///
/// Dropping a subscription cancels its stream; [`Subscription::unsubscribe`]
/// ends it in order.
pub struct Subscription {
    topic: String,
    partition: u32,
    addr: SocketAddr,
    subscription_id: u64,
    request_id: u64,
    stream: RequestStream,
    encoder: FrameEncoder,
    /// A credit frame not completely written yet, and how much of it was.
    unsent: Option<(Bytes, usize)>,
    buffered: VecDeque<ConsumedRecord>,
    window_bytes: u64,
    /// The node's credit as it counts it: less each batch byte sent, never
    /// below zero (an overshooting frame leaves it at zero).
    node_credit_bytes: u64,
    /// The next offset `next` will return.
    position: u64,
    high_watermark: u64,
    log_start_offset: u64,
    request_timeout: Duration,
    ended: bool,
    /// Told of the error that ends the subscription, so that the client
    /// re-routes the next one (e.g. to a new leader).
    feedback: Option<RouteFeedback>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("subscription_id", &self.subscription_id)
            .field("position", &self.position)
            .field("high_watermark", &self.high_watermark)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Opens the stream, sends the SubscribeRequest and waits for the
    /// SubscribeResponse.
    pub(crate) async fn open(
        link: &Link,
        topic: &str,
        partition: u32,
        start: StartPosition,
        credit_bytes: u64,
    ) -> Result<Subscription> {
        if credit_bytes == 0 {
            return Err(Error::invalid(
                "credit_bytes",
                "a subscription without credit receives nothing",
            ));
        }
        let what = format!("subscribe to {topic}/{partition} at {start:?}");
        let timeout = link.config().request_timeout;
        let open = async {
            let session = link.session().await?;
            let addr = session.node.addr;
            let mut stream = link.open(&session).await?;
            let request_id = link.next_request_id();
            let mut encoder = FrameEncoder::with_frame_bytes_max(session.node.frame_bytes_max);
            let request = SubscribeRequest {
                topic,
                partition,
                start,
                credit_bytes,
            };
            let frame = encoder
                .encode(&sprawl_wire::Frame::new(request_id, request))
                .map_err(|e| Error::invalid("subscription", e.to_string()))?;
            stream
                .write(frame)
                .await
                .map_err(|f| f.into_error(&what, addr))?;
            let answer = stream
                .reader
                .next_frame()
                .await
                .map_err(|f| f.into_error(&what, addr))?
                .ok_or_else(|| Error::protocol(&what, "stream ended before the answer"))?;
            let response = match body_of(&what, &answer)? {
                Body::SubscribeResponse(r) => r,
                Body::ErrorResponse(e) => {
                    return Err(Error::Remote {
                        request: what.clone(),
                        source: e.error.into(),
                    })
                }
                other => return Err(unexpected(&what, other.kind())),
            };
            if let Some(source) = remote_error(response.error) {
                // The node finishes its side after an error; so do we.
                stream.finish();
                stream.complete();
                return Err(Error::Remote {
                    request: what.clone(),
                    source,
                });
            }
            Ok(Subscription {
                topic: topic.to_owned(),
                partition,
                addr,
                subscription_id: response.subscription_id,
                request_id,
                stream,
                encoder,
                unsent: None,
                buffered: VecDeque::new(),
                window_bytes: credit_bytes,
                node_credit_bytes: credit_bytes,
                position: response.start_offset,
                high_watermark: response.high_watermark,
                log_start_offset: response.log_start_offset,
                request_timeout: timeout,
                ended: false,
                feedback: None,
            })
        };
        tokio::time::timeout(timeout, open)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    request: what.clone(),
                    after_ms: crate::link::millis(timeout),
                })
            })
    }

    pub(crate) fn with_feedback(mut self, feedback: RouteFeedback) -> Self {
        self.feedback = Some(feedback);
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The offset of the next record [`Subscription::next`] returns: where
    /// to resubscribe, or what to commit once the records before it are
    /// processed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The latest high watermark the node reported.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The latest log start offset the node reported.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// Records between the position and the high watermark.
    pub fn lag(&self) -> u64 {
        self.high_watermark.saturating_sub(self.position)
    }

    /// The next record, waiting for the node if none is buffered. `None`
    /// once the subscription ended in order; after an error (the node
    /// ended it with [`Error::SubscriptionEnded`], or the connection was
    /// lost) the next call returns `None`. Resubscribe from
    /// [`Subscription::position`].
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!`) loses
    /// no record.
    pub async fn next(&mut self) -> Option<Result<ConsumedRecord>> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                self.position = record.offset + 1;
                return Some(Ok(record));
            }
            if self.ended {
                return None;
            }
            // Everything received has been handed out.
            if let Err(e) = self.grant_credit().await {
                return Some(Err(self.fail(e)));
            }
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(self.fail(e))),
            }
        }
    }

    /// Tops the node's credit up to the window once half of it is free.
    async fn grant_credit(&mut self) -> Result<()> {
        if self.unsent.is_none() {
            let grant = self.window_bytes.saturating_sub(self.node_credit_bytes);
            if grant == 0 || grant.saturating_mul(2) < self.window_bytes {
                return Ok(());
            }
            let frame = self
                .encoder
                .encode(&sprawl_wire::Frame::new(
                    self.request_id,
                    SubscriptionCredit {
                        subscription_id: self.subscription_id,
                        credit_bytes: grant,
                    },
                ))
                .map_err(|e| Error::invalid("subscription credit", e.to_string()))?;
            self.unsent = Some((Bytes::copy_from_slice(frame), 0));
            self.node_credit_bytes += grant;
        }
        let addr = self.addr;
        while let Some((frame, written)) = &mut self.unsent {
            let n = match self.stream.write_some(&frame[*written..]).await {
                Ok(n) => n,
                Err(f) => return Err(f.into_error(&self.what(), addr)),
            };
            *written += n;
            if *written == frame.len() {
                self.unsent = None;
            }
        }
        Ok(())
    }

    /// Reads one frame. `Ok(false)`: the subscription ended in order.
    async fn receive(&mut self) -> Result<bool> {
        let what = self.what();
        let frame = self
            .stream
            .reader
            .next_frame()
            .await
            .map_err(|f| f.into_error(&what, self.addr))?
            .ok_or_else(|| Error::protocol(&what, "stream ended without SubscriptionEnd"))?;
        match body_of(&what, &frame)? {
            Body::SubscriptionData(data) => {
                if data.subscription_id != self.subscription_id {
                    return Err(Error::protocol(
                        &what,
                        format!("data for subscription {}", data.subscription_id),
                    ));
                }
                self.node_credit_bytes = self
                    .node_credit_bytes
                    .saturating_sub(data.batches.len() as u64);
                self.high_watermark = data.high_watermark;
                self.log_start_offset = data.log_start_offset;
                let batches = frame.share(data.batches);
                decode_batches(&batches, self.position, &mut self.buffered)
                    .map_err(|f| decode_error(f, &self.topic, self.partition, &what))?;
                Ok(true)
            }
            Body::SubscriptionEnd(end) => {
                self.end_in_order();
                match remote_error(end.error) {
                    None => Ok(false),
                    Some(source) => Err(Error::SubscriptionEnded {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        next_offset: end.next_offset,
                        source,
                    }),
                }
            }
            Body::ErrorResponse(e) => Err(Error::Remote {
                request: what.clone(),
                source: e.error.into(),
            }),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Ends the subscription in order: sends Unsubscribe, discards data
    /// still arriving, waits (up to the request timeout) for
    /// SubscriptionEnd. Returns [`Subscription::position`]; records
    /// received but not yet returned by `next` are dropped.
    pub async fn unsubscribe(mut self) -> Result<u64> {
        if self.ended {
            return Ok(self.position);
        }
        let what = self.what();
        let frame = self
            .encoder
            .encode(&sprawl_wire::Frame::new(
                self.request_id,
                Unsubscribe {
                    subscription_id: self.subscription_id,
                },
            ))
            .map_err(|e| Error::invalid("unsubscribe", e.to_string()))?
            .to_vec();
        let addr = self.addr;
        let timeout = self.request_timeout;
        let end = async {
            // A credit frame cut short must be completed first.
            if let Some((unsent, written)) = self.unsent.take() {
                self.stream
                    .write(&unsent[written..])
                    .await
                    .map_err(|f| f.into_error(&what, addr))?;
            }
            self.stream
                .write(&frame)
                .await
                .map_err(|f| f.into_error(&what, addr))?;
            self.stream.finish();
            loop {
                let frame = self
                    .stream
                    .reader
                    .next_frame()
                    .await
                    .map_err(|f| f.into_error(&what, addr))?;
                let Some(frame) = frame else {
                    return Ok(());
                };
                if let Body::SubscriptionEnd(_) = body_of(&what, &frame)? {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, end).await {
            Ok(Ok(())) => {
                self.end_in_order();
                Ok(self.position)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                request: self.what(),
                after_ms: crate::link::millis(timeout),
            }),
        }
    }

    fn end_in_order(&mut self) {
        self.ended = true;
        self.stream.finish();
        self.stream.complete();
    }

    /// After an error the subscription is over; its stream is cancelled
    /// when it is dropped.
    fn fail(&mut self, error: Error) -> Error {
        self.ended = true;
        if let Some(feedback) = &self.feedback {
            feedback.failed(&error);
        }
        error
    }

    fn what(&self) -> String {
        format!(
            "subscription {} to {}/{}",
            self.subscription_id, self.topic, self.partition
        )
    }
}

pub(crate) fn decode_error(
    failure: DecodeFailure,
    topic: &str,
    partition: u32,
    what: &str,
) -> Error {
    match failure {
        DecodeFailure::Corrupt {
            position,
            offset,
            source,
        } => Error::CorruptBatch {
            topic: topic.to_owned(),
            partition,
            offset,
            position,
            source,
        },
        DecodeFailure::Backwards {
            base_offset,
            expected,
        } => Error::protocol(
            what,
            format!("batch at offset {base_offset} follows one ending at {expected}"),
        ),
    }
}
