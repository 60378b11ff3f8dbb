//! Arbitrary bytes into the frame decoder: nothing may panic, framing errors
//! must be the fatal kind, and every frame that decodes must re-encode to
//! the same message.
//!
//! The first input byte picks the chunking and limits, so one corpus
//! explores split prefixes, the zero-copy path and the tight request limits.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sprawl_wire::{decode_frame_with, FrameDecoder, FrameLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk_bytes = usize::from(control & 0x3f) + 1;
    let zero_copy = control & 0x40 != 0;
    let limits = if control & 0x80 != 0 {
        FrameLimits::for_requests().with_frame_bytes_max(64 * 1024)
    } else {
        FrameLimits::default().with_frame_bytes_max(64 * 1024)
    };

    if let Ok(frame) = decode_frame_with(stream, &limits) {
        check_canonical(&frame);
    }

    let mut decoder = FrameDecoder::new(limits);
    for chunk in stream.chunks(chunk_bytes) {
        let fed = if zero_copy {
            decoder.feed_bytes(Bytes::copy_from_slice(chunk))
        } else {
            decoder.feed(chunk)
        };
        if let Err(e) = fed {
            assert!(e.is_fatal_to_stream(), "feed error not fatal: {e}");
            return;
        }
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(verified)) => {
                    let _ = verified.request_id();
                    let _ = verified.kind();
                    if let Ok(frame) = verified.decode() {
                        let _ = frame.body.check();
                        let _ = frame.body.direction();
                        check_canonical(&frame);
                    }
                }
                Err(e) => assert!(!e.is_fatal_to_stream(), "frame error fatal: {e}"),
            }
        }
    }
    let _ = decoder.finish();
    let _ = decoder.buffered_bytes();
});

fn check_canonical(frame: &sprawl_wire::Frame<'_>) {
    let bytes = frame.encode().expect("a decoded frame re-encodes");
    let again = sprawl_wire::decode_frame(&bytes).expect("a re-encoded frame decodes");
    assert_eq!(&again, frame);
}
