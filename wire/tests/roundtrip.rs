//! Every message survives encode → decode, by every decoding path, and the
//! framing and verification errors are the typed ones the README promises.

mod common;

use bytes::Bytes;
use common::{full_samples, minimal_samples, BATCH};
use sprawl_wire::*;

fn all_frames() -> Vec<Frame<'static>> {
    full_samples()
        .into_iter()
        .chain(minimal_samples())
        .enumerate()
        .map(|(i, body)| Frame::new(1000 + i as u64, body))
        .collect()
}

#[test]
fn samples_cover_every_body_kind() {
    for samples in [full_samples(), minimal_samples()] {
        let kinds: Vec<u8> = samples.iter().map(|b| b.kind().0).collect();
        let expected: Vec<u8> = (1..=BodyKind::ENUM_MAX).collect();
        assert_eq!(kinds, expected);
    }
}

#[test]
fn every_message_round_trips_through_decode_frame() {
    for frame in all_frames() {
        let bytes = frame.encode().unwrap();
        let decoded =
            decode_frame(&bytes).unwrap_or_else(|e| panic!("{:?}: {e}", frame.body.kind()));
        assert_eq!(decoded, frame);
    }
}

#[test]
fn frame_layout_is_length_prefix_then_identified_flatbuffer() {
    for frame in all_frames() {
        let bytes = frame.encode().unwrap();
        let prefix = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(prefix as usize, bytes.len() - FRAME_PREFIX_BYTES);
        assert_eq!(&bytes[8..12], FILE_IDENTIFIER);
        assert_eq!(bytes.len() % 8, 0, "frames are padded to 8 bytes");
    }
    assert_eq!(fb::FRAME_IDENTIFIER.as_bytes(), FILE_IDENTIFIER);
}

#[test]
fn every_message_round_trips_through_the_stream_decoder_byte_by_byte() {
    let frames = all_frames();
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
    let mut decoder = FrameDecoder::default();
    let mut got = Vec::new();
    for byte in &stream {
        decoder.feed(std::slice::from_ref(byte)).unwrap();
        while let Some(frame) = decoder.next_frame().unwrap() {
            got.push(frame);
        }
    }
    decoder.finish().unwrap();
    assert_eq!(got.len(), frames.len());
    for (verified, frame) in got.iter().zip(&frames) {
        assert_eq!(verified.request_id(), frame.request_id);
        assert_eq!(verified.kind(), frame.body.kind());
        assert_eq!(verified.decode().unwrap(), *frame);
    }
}

#[test]
fn whole_frames_in_one_chunk_are_not_copied() {
    let frame = Frame::new(
        5,
        ProduceRequest {
            topic: "orders",
            target: PartitionTarget::Partition(1),
            acks: Acks::Durable,
            timeout_ms: 0,
            records: BATCH,
        },
    );
    let chunk = Bytes::from(frame.encode().unwrap());
    let mut decoder = FrameDecoder::default();
    decoder.feed_bytes(chunk.clone()).unwrap();
    let verified = decoder.next_frame().unwrap().unwrap();
    assert_eq!(verified.as_bytes().as_ptr(), chunk.as_ptr());

    let Frame {
        body: Body::ProduceRequest(produce),
        ..
    } = verified.decode().unwrap()
    else {
        panic!("not a produce request");
    };
    let records = verified.share(produce.records);
    assert_eq!(&records[..], BATCH);
    let offset = records.as_ptr() as usize - chunk.as_ptr() as usize;
    assert!(offset < chunk.len(), "records share the chunk's memory");
}

#[test]
fn feed_bytes_handles_frames_split_across_chunks() {
    let frames = all_frames();
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
    for chunk_bytes in [1, 3, 7, 64, 1000] {
        let mut decoder = FrameDecoder::default();
        let mut got = 0;
        for chunk in stream.chunks(chunk_bytes) {
            decoder.feed_bytes(Bytes::copy_from_slice(chunk)).unwrap();
            while let Some(frame) = decoder.next_frame().unwrap() {
                assert_eq!(frame.decode().unwrap(), frames[got]);
                got += 1;
            }
        }
        assert_eq!(got, frames.len(), "chunks of {chunk_bytes}");
        assert!(!decoder.has_partial_frame());
        assert_eq!(decoder.buffered_bytes(), 0);
    }
}

#[test]
fn requests_fit_the_tight_request_limits_and_responses_the_defaults() {
    for frame in all_frames() {
        let bytes = frame.encode().unwrap();
        match frame.body.direction() {
            Direction::ClientToNode => {
                decode_frame_with(&bytes, &FrameLimits::for_requests()).unwrap();
            }
            Direction::NodeToClient => {
                decode_frame_with(&bytes, &FrameLimits::default()).unwrap();
            }
        }
    }
}

#[test]
fn one_encoder_reused_gives_the_same_bytes_as_fresh_encoders() {
    let mut encoder = FrameEncoder::new();
    for frame in all_frames() {
        assert_eq!(
            encoder.encode(&frame).unwrap(),
            &frame.encode().unwrap()[..]
        );
    }
}

#[test]
fn frames_decode_at_any_memory_alignment() {
    let bytes = all_frames()[15].encode().unwrap();
    for shift in 0..8 {
        let mut buf = vec![0u8; shift];
        buf.extend_from_slice(&bytes);
        decode_frame(&buf[shift..]).unwrap();
    }
}

// ----------------------------------------------------------------- limits

#[test]
fn decoder_rejects_an_oversized_frame_from_its_prefix_alone() {
    let limits = FrameLimits::default().with_frame_bytes_max(1024);
    let mut decoder = FrameDecoder::new(limits);
    let err = decoder.feed(&2048u32.to_le_bytes()).unwrap_err();
    assert_eq!(
        err,
        WireError::FrameTooLarge {
            frame_bytes: 2048,
            frame_bytes_max: 1024
        }
    );
    assert!(err.is_fatal_to_stream());
    assert_eq!(err.error_code(), ErrorCode::MessageTooLarge);
    assert_eq!(decoder.buffered_bytes(), 0);
    assert_eq!(decoder.feed(&[0; 8]), Err(WireError::DecoderFailed));
    assert_eq!(decoder.finish(), Err(WireError::DecoderFailed));
}

#[test]
fn decoder_rejects_prefix_split_over_feeds() {
    let mut decoder = FrameDecoder::new(FrameLimits::default());
    let prefix = (FRAME_BYTES_MAX_DEFAULT + 1).to_le_bytes();
    decoder.feed(&prefix[..3]).unwrap();
    assert!(matches!(
        decoder.feed(&prefix[3..]),
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn limit_above_the_ceiling_is_capped() {
    let limits = FrameLimits::default().with_frame_bytes_max(u32::MAX);
    let mut decoder = FrameDecoder::new(limits);
    assert!(matches!(
        decoder.feed(&u32::MAX.to_le_bytes()),
        Err(WireError::FrameTooLarge {
            frame_bytes_max: FRAME_BYTES_MAX_CEILING,
            ..
        })
    ));
}

#[test]
fn encoder_refuses_frames_over_the_peer_limit() {
    let big = vec![0u8; 4096];
    let frame = Frame::new(
        1,
        ProduceRequest {
            topic: "t",
            target: PartitionTarget::Partition(0),
            acks: Acks::Durable,
            timeout_ms: 0,
            records: &big,
        },
    );
    // Refused before building (payload alone is too big) ...
    let mut encoder = FrameEncoder::with_frame_bytes_max(1024);
    assert!(matches!(
        encoder.encode(&frame),
        Err(WireError::FrameTooLarge {
            frame_bytes: 4097..,
            frame_bytes_max: 1024
        })
    ));
    // ... and after building (payload fits, table overhead does not).
    let mut encoder = FrameEncoder::with_frame_bytes_max(4100);
    assert!(matches!(
        encoder.encode(&frame),
        Err(WireError::FrameTooLarge { .. })
    ));
    let mut encoder = FrameEncoder::with_frame_bytes_max(8192);
    let bytes = encoder.encode(&frame).unwrap().to_vec();
    let limits = FrameLimits::default().with_frame_bytes_max(4100);
    assert!(matches!(
        decode_frame_with(&bytes, &limits),
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn table_and_depth_limits_are_enforced() {
    let frame = &all_frames()[4]; // MetadataResponse: 5 deep, 7 tables
    assert_eq!(frame.body.kind(), BodyKind::MetadataResponse);
    let bytes = frame.encode().unwrap();
    let shallow = FrameLimits {
        depth_max: 4,
        ..FrameLimits::default()
    };
    assert!(matches!(
        decode_frame_with(&bytes, &shallow),
        Err(WireError::Invalid(
            flatbuffers::InvalidFlatbuffer::DepthLimitReached
        ))
    ));
    let few_tables = FrameLimits {
        tables_max: 3,
        ..FrameLimits::default()
    };
    assert!(matches!(
        decode_frame_with(&bytes, &few_tables),
        Err(WireError::Invalid(
            flatbuffers::InvalidFlatbuffer::TooManyTables
        ))
    ));
    assert!(decode_frame_with(&bytes, &FrameLimits::for_requests()).is_err());
}

// ------------------------------------------------------------ bad input

#[test]
fn truncated_input_waits_and_finish_reports_it() {
    let bytes = all_frames()[0].encode().unwrap();
    let mut decoder = FrameDecoder::default();
    decoder.feed(&bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(decoder.next_frame().unwrap(), None);
    assert!(decoder.has_partial_frame());
    assert_eq!(
        decoder.finish(),
        Err(WireError::Truncated {
            received_bytes: bytes.len() as u64 - 1,
            expected_bytes: bytes.len() as u64
        })
    );
    decoder.feed(&bytes[bytes.len() - 1..]).unwrap();
    assert!(decoder.next_frame().unwrap().is_some());
    decoder.finish().unwrap();

    decoder.feed(&bytes[..2]).unwrap();
    assert_eq!(
        decoder.finish(),
        Err(WireError::Truncated {
            received_bytes: 2,
            expected_bytes: 4
        })
    );
}

#[test]
fn decode_frame_wants_exactly_one_frame() {
    let bytes = all_frames()[0].encode().unwrap();
    assert!(matches!(
        decode_frame(&bytes[..bytes.len() - 4]),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        decode_frame(&bytes[..3]),
        Err(WireError::Truncated { .. })
    ));
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_eq!(
        decode_frame(&longer),
        Err(WireError::TrailingBytes {
            frame_bytes: bytes.len() as u64,
            trailing_bytes: 4
        })
    );
}

#[test]
fn foreign_bytes_are_refused_by_identifier() {
    let mut bytes = all_frames()[0].encode().unwrap();
    bytes[8..12].copy_from_slice(b"HTTP");
    let err = decode_frame(&bytes).unwrap_err();
    assert_eq!(err, WireError::WrongIdentifier { found: *b"HTTP" });
    assert_eq!(err.error_code(), ErrorCode::UnsupportedVersion);
    // Too short to hold an identifier at all.
    assert!(matches!(
        decode_frame(&[4, 0, 0, 0, 0, 0, 0, 0]),
        Err(WireError::Invalid(_))
    ));
    assert!(matches!(
        decode_frame(&[0, 0, 0, 0]),
        Err(WireError::Invalid(_))
    ));
}

#[test]
fn a_corrupt_frame_is_reported_and_the_next_one_still_decodes() {
    let frames = all_frames();
    let mut bad = frames[13].encode().unwrap(); // ProduceRequest
                                                // Point the root offset past the end of the buffer.
    bad[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let good = frames[14].encode().unwrap();
    let mut decoder = FrameDecoder::default();
    decoder.feed(&bad).unwrap();
    decoder.feed(&good).unwrap();
    let err = decoder.next_frame().unwrap_err();
    assert!(matches!(err, WireError::Invalid(_)), "{err}");
    assert!(!err.is_fatal_to_stream());
    assert_eq!(err.error_code(), ErrorCode::InvalidRequest);
    assert_eq!(
        decoder.next_frame().unwrap().unwrap().decode().unwrap(),
        frames[14]
    );
}

/// Builds a frame by hand with the raw flatbuffers API, to produce what the
/// typed encoder never would.
fn raw_frame(
    build: impl FnOnce(
        &mut flatbuffers::FlatBufferBuilder<'static>,
    ) -> (
        BodyKind,
        Option<flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>>,
    ),
) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let (body_type, body) = build(&mut fbb);
    let root = fb::Frame::create(
        &mut fbb,
        &fb::FrameArgs {
            request_id: 77,
            body_type,
            body,
        },
    );
    fb::finish_size_prefixed_frame_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

fn produce(
    fbb: &mut flatbuffers::FlatBufferBuilder<'static>,
    partition: Option<u32>,
    key: Option<&[u8]>,
    acks: fb::Acks,
) -> (
    BodyKind,
    Option<flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>>,
) {
    let topic = Some(fbb.create_string("t"));
    let records = Some(fbb.create_vector(BATCH));
    let key = key.map(|k| fbb.create_vector(k));
    let body = fb::ProduceRequest::create(
        fbb,
        &fb::ProduceRequestArgs {
            topic,
            partition,
            key,
            acks,
            timeout_ms: 0,
            records,
        },
    );
    (BodyKind::ProduceRequest, Some(body.as_union_value()))
}

#[test]
fn contradictory_or_unknown_fields_are_typed_errors() {
    let both = raw_frame(|fbb| produce(fbb, Some(1), Some(b"k"), fb::Acks::Durable));
    assert!(matches!(
        decode_frame(&both),
        Err(WireError::InvalidField {
            message: "ProduceRequest",
            field: "partition",
            ..
        })
    ));
    let neither = raw_frame(|fbb| produce(fbb, None, None, fb::Acks::Durable));
    assert!(matches!(
        decode_frame(&neither),
        Err(WireError::InvalidField { .. })
    ));
    let future_acks = raw_frame(|fbb| produce(fbb, Some(1), None, fb::Acks(9)));
    assert_eq!(
        decode_frame(&future_acks),
        Err(WireError::UnknownEnumValue {
            message: "ProduceRequest",
            field: "acks",
            value: 9
        })
    );
}

#[test]
fn unknown_and_missing_bodies_are_typed_errors() {
    let unknown = raw_frame(|fbb| {
        let table = fb::Unsubscribe::create(fbb, &fb::UnsubscribeArgs { subscription_id: 1 });
        (BodyKind(200), Some(table.as_union_value()))
    });
    // A newer peer's message verifies (unknown union members are skipped) ...
    let mut decoder = FrameDecoder::default();
    decoder.feed(&unknown).unwrap();
    let verified = decoder.next_frame().unwrap().unwrap();
    assert_eq!(verified.request_id(), 77);
    // ... and decoding names it, so the node can answer UnsupportedRequest.
    let err = verified.decode().unwrap_err();
    assert_eq!(
        err,
        WireError::UnknownBody {
            request_id: 77,
            body_type: 200
        }
    );
    assert_eq!(err.error_code(), ErrorCode::UnsupportedRequest);

    let empty = raw_frame(|_| (BodyKind::NONE, None));
    assert_eq!(
        decode_frame(&empty),
        Err(WireError::MissingBody { request_id: 77 })
    );
    // A body type without a body is an inconsistent union.
    let typed_only = raw_frame(|_| (BodyKind::Unsubscribe, None));
    assert!(matches!(
        decode_frame(&typed_only),
        Err(WireError::Invalid(_))
    ));
}

#[test]
fn missing_required_fields_fail_verification() {
    // The generated builder refuses to leave out a required field, so write
    // an empty table of another type and label it DeleteTopicRequest.
    let bytes = raw_frame(|fbb| {
        let body =
            fb::DeleteTopicResponse::create(fbb, &fb::DeleteTopicResponseArgs { error: None });
        (BodyKind::DeleteTopicRequest, Some(body.as_union_value()))
    });
    assert!(matches!(
        decode_frame(&bytes),
        Err(WireError::Invalid(
            flatbuffers::InvalidFlatbuffer::MissingRequiredField { .. }
        ))
    ));
}

// --------------------------------------------------------------- errors

#[test]
fn error_codes_map_to_rust_errors_and_back() {
    let response: Body = ProduceResponse {
        error: common::error(ErrorCode::NotLeader),
        ..Default::default()
    }
    .into();
    let err = response.check().unwrap_err();
    assert_eq!(err.code, ErrorCode::NotLeader);
    assert_eq!(err.leader_node_id, Some(7));
    assert!(err.is_retryable());
    assert!(err.code.refreshes_metadata());
    assert_eq!(err.as_info(), *response.error().unwrap());
    assert!(err
        .to_string()
        .starts_with("node answered NotLeader: partition 3"));

    let ok: Body = ProduceResponse::default().into();
    assert_eq!(ok.check(), Ok(()));
    let explicit_none: Body = ProduceResponse {
        error: Some(ErrorInfo::new(ErrorCode::None, "")),
        ..Default::default()
    }
    .into();
    assert_eq!(explicit_none.check(), Ok(()));
    let request: Body = Unsubscribe { subscription_id: 1 }.into();
    assert_eq!(request.error(), None);

    let retryable: Vec<&str> = (0..=ErrorCode::ENUM_MAX)
        .map(ErrorCode)
        .filter(|c| c.is_retryable())
        .map(|c| c.name())
        .collect();
    assert_eq!(
        retryable,
        [
            "NotLeader",
            "Throttled",
            "StorageError",
            "Timeout",
            "LeaderNotAvailable",
            "NotEnoughReplicas",
            "ShuttingDown"
        ]
    );
    assert_eq!(ErrorCode(999).name(), "Unknown");
    assert!(!ErrorCode(999).is_retryable());
}

#[test]
fn future_error_codes_survive_decoding() {
    let frame = Frame::new(
        1,
        DeleteTopicResponse {
            error: Some(ErrorInfo::new(ErrorCode(4242), "from the future")),
        },
    );
    let bytes = frame.encode().unwrap();
    let decoded = decode_frame(&bytes).unwrap();
    assert_eq!(decoded.body.check().unwrap_err().code, ErrorCode(4242));
}

#[test]
fn app_error_codes_round_trip() {
    for code in 0..16 {
        if let Some(app) = AppErrorCode::from_u32(code) {
            assert_eq!(app.as_u32(), code);
        }
    }
    assert_eq!(AppErrorCode::from_u32(7), Some(AppErrorCode::Internal));
    assert_eq!(AppErrorCode::from_u32(8), None);
}

#[test]
fn constants() {
    assert_eq!(ALPN, b"sprawl/1");
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(FRAME_BYTES_MAX_DEFAULT, 16 * 1024 * 1024);
}
