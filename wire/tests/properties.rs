//! Property tests: random messages round-trip; random, mutated and
//! truncated bytes never panic the decoder.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use sprawl_wire::*;

// Messages borrow their strings and bytes; leaking them gives the 'static
// borrows the strategies need. A test run leaks a few MiB at most.
fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_bytes(b: Vec<u8>) -> &'static [u8] {
    Box::leak(b.into_boxed_slice())
}

fn text() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => "[a-z0-9._-]{0,24}",
        1 => any::<String>(),
    ]
    .prop_map(leak_str)
}

fn blob() -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..300).prop_map(leak_bytes)
}

fn error_info() -> impl Strategy<Value = ErrorInfo<'static>> {
    (
        any::<u16>(),
        text(),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
    )
        .prop_map(
            |(code, message, retry_after_ms, leader_node_id)| ErrorInfo {
                code: ErrorCode(code),
                message,
                retry_after_ms,
                leader_node_id,
            },
        )
}

fn error() -> impl Strategy<Value = Option<ErrorInfo<'static>>> {
    option::of(error_info())
}

fn start_position() -> impl Strategy<Value = StartPosition> {
    prop_oneof![
        Just(StartPosition::Earliest),
        Just(StartPosition::Latest),
        any::<u64>().prop_map(StartPosition::Offset),
        any::<u64>().prop_map(StartPosition::TimestampMs),
    ]
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::Durable)]
}

fn partition_info() -> impl Strategy<Value = PartitionInfo<'static>> {
    (
        any::<u32>(),
        error(),
        option::of(any::<u32>()),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        (
            any::<u64>(),
            any::<u64>(),
            option::of(any::<u64>()),
            option::of(any::<u64>()),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(partition, error, leader, epoch, start, hw, end, size, tiers)| PartitionInfo {
                partition,
                error,
                leader_node_id: leader,
                leader_epoch: epoch,
                log_start_offset: start,
                high_watermark: hw,
                log_end_offset: end,
                size_bytes: size,
                local_log_start_offset: tiers.0,
                local_bytes: tiers.1,
                archive_start_offset: tiers.2,
                archive_end_offset: tiers.3,
                archive_bytes: tiers.4,
            },
        )
}

fn topic_info() -> impl Strategy<Value = TopicInfo<'static>> {
    (
        text(),
        any::<u32>(),
        any::<u16>(),
        any::<i64>(),
        any::<i64>(),
        vec(partition_info(), 0..4),
    )
        .prop_map(|(name, count, rf, bytes, ms, partitions)| TopicInfo {
            name,
            partition_count: count,
            replication_factor: rf,
            retention_bytes: bytes,
            retention_ms: ms,
            partitions,
        })
}

fn metadata_response() -> impl Strategy<Value = MetadataResponse<'static>> {
    let node = (any::<u32>(), text(), any::<u16>()).prop_map(|(node_id, host, port)| NodeInfo {
        node_id,
        host,
        port,
    });
    let partition = (
        any::<u32>(),
        error(),
        option::of(any::<u32>()),
        any::<u32>(),
        vec(any::<u32>(), 0..5),
        vec(any::<u32>(), 0..5),
    )
        .prop_map(
            |(partition, error, leader, epoch, replicas, isr)| PartitionMetadata {
                partition,
                error,
                leader_node_id: leader,
                leader_epoch: epoch,
                replica_node_ids: replicas,
                in_sync_node_ids: isr,
            },
        );
    let topic = (text(), error(), vec(partition, 0..4)).prop_map(|(name, error, partitions)| {
        TopicMetadata {
            name,
            error,
            partitions,
        }
    });
    (error(), text(), vec(node, 0..4), vec(topic, 0..3)).prop_map(
        |(error, cluster_id, nodes, topics)| MetadataResponse {
            error,
            cluster_id,
            nodes,
            topics,
        },
    )
}

fn body() -> impl Strategy<Value = Body<'static>> {
    prop_oneof![
        (
            any::<u16>(),
            text(),
            option::of(blob()),
            text(),
            any::<u32>()
        )
            .prop_map(
                |(protocol_version, client_id, auth_token, client_software, frame_bytes_max)| {
                    HandshakeRequest {
                        protocol_version,
                        client_id,
                        auth_token,
                        client_software,
                        frame_bytes_max,
                    }
                    .into()
                }
            ),
        (
            error(),
            any::<[u16; 3]>(),
            text(),
            any::<u32>(),
            any::<u16>(),
            text(),
            any::<u32>()
        )
            .prop_map(
                |(error, v, server_version, node_id, shards, cluster_id, max)| {
                    HandshakeResponse {
                        error,
                        protocol_version: v[0],
                        protocol_version_min: v[1],
                        protocol_version_max: v[2],
                        server_version,
                        node_id,
                        shard_count: shards,
                        cluster_id,
                        frame_bytes_max: max,
                    }
                    .into()
                }
            ),
        error_info().prop_map(|error| ErrorResponse { error }.into()),
        vec(text(), 0..5).prop_map(|topics| MetadataRequest { topics }.into()),
        metadata_response().prop_map(Body::from),
        (
            text(),
            any::<u32>(),
            option::of(any::<u16>()),
            option::of(any::<i64>()),
            option::of(any::<i64>()),
            any::<bool>()
        )
            .prop_map(|(name, count, rf, bytes, ms, validate_only)| {
                CreateTopicRequest {
                    name,
                    partition_count: count,
                    replication_factor: rf,
                    retention_bytes: bytes,
                    retention_ms: ms,
                    validate_only,
                }
                .into()
            }),
        (error(), option::of(topic_info())).prop_map(|(error, topic)| CreateTopicResponse {
            error,
            topic
        }
        .into()),
        text().prop_map(|name| DeleteTopicRequest { name }.into()),
        error().prop_map(|error| DeleteTopicResponse { error }.into()),
        any::<bool>()
            .prop_map(|include_partitions| ListTopicsRequest { include_partitions }.into()),
        (error(), vec(topic_info(), 0..3)).prop_map(|(error, topics)| ListTopicsResponse {
            error,
            topics
        }
        .into()),
        text().prop_map(|name| DescribeTopicRequest { name }.into()),
        (error(), option::of(topic_info())).prop_map(|(error, topic)| DescribeTopicResponse {
            error,
            topic
        }
        .into()),
        (
            text(),
            prop_oneof![
                any::<u32>().prop_map(PartitionTarget::Partition),
                blob().prop_map(PartitionTarget::Key)
            ],
            acks(),
            any::<u32>(),
            blob()
        )
            .prop_map(|(topic, target, acks, timeout_ms, records)| {
                ProduceRequest {
                    topic,
                    target,
                    acks,
                    timeout_ms,
                    records,
                }
                .into()
            }),
        (error(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(error, partition, base_offset, last_offset)| {
                ProduceResponse {
                    error,
                    partition,
                    base_offset,
                    last_offset,
                }
                .into()
            }
        ),
        (text(), any::<u32>(), any::<u64>(), any::<[u32; 3]>()).prop_map(
            |(topic, partition, offset, n)| {
                FetchRequest {
                    topic,
                    partition,
                    offset,
                    max_bytes: n[0],
                    min_bytes: n[1],
                    max_wait_ms: n[2],
                }
                .into()
            }
        ),
        (error(), any::<u32>(), any::<[u64; 3]>(), blob()).prop_map(
            |(error, partition, o, batches)| {
                FetchResponse {
                    error,
                    partition,
                    high_watermark: o[0],
                    log_start_offset: o[1],
                    next_offset: o[2],
                    batches,
                }
                .into()
            }
        ),
        (text(), any::<u32>(), start_position()).prop_map(|(topic, partition, position)| {
            ResolveOffsetRequest {
                topic,
                partition,
                position,
            }
            .into()
        }),
        (error(), any::<u32>(), any::<u64>()).prop_map(|(error, partition, offset)| {
            ResolveOffsetResponse {
                error,
                partition,
                offset,
            }
            .into()
        }),
        (text(), any::<u32>(), start_position(), any::<u64>()).prop_map(
            |(topic, partition, start, credit_bytes)| {
                SubscribeRequest {
                    topic,
                    partition,
                    start,
                    credit_bytes,
                }
                .into()
            }
        ),
        (error(), any::<u64>(), any::<u32>(), any::<[u64; 3]>()).prop_map(
            |(error, subscription_id, partition, o)| {
                SubscribeResponse {
                    error,
                    subscription_id,
                    partition,
                    start_offset: o[0],
                    high_watermark: o[1],
                    log_start_offset: o[2],
                }
                .into()
            }
        ),
        (any::<u64>(), any::<u64>()).prop_map(|(subscription_id, credit_bytes)| {
            SubscriptionCredit {
                subscription_id,
                credit_bytes,
            }
            .into()
        }),
        (any::<u64>(), any::<[u64; 3]>(), blob()).prop_map(|(subscription_id, o, batches)| {
            SubscriptionData {
                subscription_id,
                high_watermark: o[0],
                log_start_offset: o[1],
                next_offset: o[2],
                batches,
            }
            .into()
        }),
        any::<u64>().prop_map(|subscription_id| Unsubscribe { subscription_id }.into()),
        (any::<u64>(), error(), any::<u64>()).prop_map(|(subscription_id, error, next_offset)| {
            SubscriptionEnd {
                subscription_id,
                error,
                next_offset,
            }
            .into()
        }),
        (text(), text(), any::<u32>(), any::<u64>(), text()).prop_map(
            |(group, topic, partition, offset, metadata)| {
                CommitOffsetRequest {
                    group,
                    topic,
                    partition,
                    offset,
                    metadata,
                }
                .into()
            }
        ),
        error().prop_map(|error| CommitOffsetResponse { error }.into()),
        (text(), text(), any::<u32>()).prop_map(|(group, topic, partition)| {
            CommittedOffsetRequest {
                group,
                topic,
                partition,
            }
            .into()
        }),
        (error(), option::of(any::<u64>()), text()).prop_map(|(error, offset, metadata)| {
            CommittedOffsetResponse {
                error,
                offset,
                metadata,
            }
            .into()
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame<'static>> {
    (any::<u64>(), body()).prop_map(|(request_id, body)| Frame { request_id, body })
}

/// Feeds `stream` in chunks of the given sizes (cycled) and decodes every
/// frame that comes out, by both paths. Returns the frames that decoded.
fn drain(stream: &[u8], chunk_sizes: &[usize], limits: FrameLimits, zero_copy: bool) -> usize {
    let mut decoder = FrameDecoder::new(limits);
    let mut decoded = 0;
    let mut pos = 0;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while pos < stream.len() {
        let n = sizes.next().unwrap_or(1).max(1).min(stream.len() - pos);
        let chunk = &stream[pos..pos + n];
        pos += n;
        let fed = if zero_copy {
            decoder.feed_bytes(Bytes::copy_from_slice(chunk))
        } else {
            decoder.feed(chunk)
        };
        if let Err(e) = fed {
            assert!(e.is_fatal_to_stream(), "{e}");
            return decoded;
        }
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let _ = frame.request_id();
                    let _ = frame.kind();
                    if let Ok(f) = frame.decode() {
                        let _ = f.body.check();
                        decoded += 1;
                    }
                }
                Err(e) => assert!(!e.is_fatal_to_stream(), "{e}"),
            }
        }
    }
    let _ = decoder.finish();
    decoded
}

/// A frame that decodes must re-encode to a frame that decodes to the same
/// value: there is one meaning per accepted frame.
fn assert_canonical(bytes: &[u8], limits: &FrameLimits) {
    if let Ok(frame) = decode_frame_with(bytes, limits) {
        let again = frame.encode().expect("a decoded frame re-encodes");
        assert_eq!(
            decode_frame(&again).expect("re-encoded frame decodes"),
            frame
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_frames_round_trip(frame in frame()) {
        let bytes = frame.encode().unwrap();
        prop_assert_eq!(decode_frame(&bytes).unwrap(), frame.clone());
        let verified = VerifiedFrame::new(Bytes::from(bytes), &FrameLimits::default()).unwrap();
        prop_assert_eq!(verified.decode().unwrap(), frame);
    }

    #[test]
    fn random_frame_streams_round_trip_in_any_chunking(
        frames in vec(frame(), 1..6),
        chunk_sizes in vec(1usize..200, 1..8),
        zero_copy in any::<bool>(),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
        let mut decoder = FrameDecoder::default();
        let mut got = Vec::new();
        let mut pos = 0;
        for n in chunk_sizes.iter().cycle() {
            if pos == stream.len() {
                break;
            }
            let n = (*n).min(stream.len() - pos);
            if zero_copy {
                decoder.feed_bytes(Bytes::copy_from_slice(&stream[pos..pos + n])).unwrap();
            } else {
                decoder.feed(&stream[pos..pos + n]).unwrap();
            }
            pos += n;
            while let Some(f) = decoder.next_frame().unwrap() {
                got.push(f);
            }
        }
        decoder.finish().unwrap();
        prop_assert_eq!(got.len(), frames.len());
        for (verified, frame) in got.iter().zip(&frames) {
            prop_assert_eq!(&verified.decode().unwrap(), frame);
        }
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..2048),
        chunk_sizes in vec(1usize..64, 1..4),
    ) {
        let _ = decode_frame(&bytes);
        drain(&bytes, &chunk_sizes, FrameLimits::default(), false);
        drain(&bytes, &chunk_sizes, FrameLimits::for_requests(), true);
    }

    #[test]
    fn random_bytes_behind_a_valid_prefix_and_identifier_never_panic(
        body in vec(any::<u8>(), 4..2048),
    ) {
        // Random bytes rarely get past the length and identifier checks;
        // give them a correct prefix and identifier so the verifier runs.
        let mut bytes = Vec::with_capacity(body.len() + 8);
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        bytes.extend_from_slice(&body[..4]);
        bytes.extend_from_slice(FILE_IDENTIFIER);
        bytes.extend_from_slice(&body[4..]);
        assert_canonical(&bytes, &FrameLimits::default());
        drain(&bytes, &[bytes.len()], FrameLimits::default(), true);
    }

    #[test]
    fn mutated_frames_never_panic_and_decode_canonically(
        frame in frame(),
        mutations in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        keep_prefix in any::<bool>(),
    ) {
        let mut bytes = frame.encode().unwrap();
        let first = if keep_prefix { FRAME_PREFIX_BYTES } else { 0 };
        for (index, value) in mutations {
            let i = first + index.index(bytes.len() - first);
            bytes[i] = value;
        }
        let _ = decode_frame(&bytes);
        assert_canonical(&bytes, &FrameLimits::default());
        assert_canonical(&bytes, &FrameLimits::for_requests());
        drain(&bytes, &[7, 1, 100], FrameLimits::default(), false);
    }

    #[test]
    fn truncated_frames_wait_and_never_panic(frame in frame(), cut in any::<prop::sample::Index>()) {
        let bytes = frame.encode().unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(decode_frame(&bytes[..cut]).is_err());
        let mut decoder = FrameDecoder::default();
        decoder.feed(&bytes[..cut]).unwrap();
        prop_assert!(decoder.next_frame().unwrap().is_none());
        prop_assert_eq!(decoder.finish().is_err(), cut > 0);
        decoder.feed(&bytes[cut..]).unwrap();
        let verified = decoder.next_frame().unwrap().unwrap();
        prop_assert_eq!(verified.decode().unwrap(), frame);
    }
}
