//! Wire compatibility: frames encoded once and committed under
//! `tests/golden/` must keep decoding to the same messages. A schema change
//! that breaks this breaks every deployed client.
//!
//! After an intended, additive change that adds a message, write the new
//! files with `SPRAWL_WIRE_BLESS=1 cargo test -p sprawl-wire --test golden`;
//! never rewrite an existing file. A field appended to a table after its
//! files were written is absent from them: `as_committed` resets it in the
//! expected message, which checks that it decodes as its default.

mod common;

use std::path::PathBuf;

use sprawl_wire::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn file_name(body: &Body<'_>) -> String {
    let kind = body.kind();
    format!(
        "{:02}-{}.bin",
        kind.0,
        kind.variant_name().unwrap_or("Unknown")
    )
}

#[test]
fn committed_frames_still_decode_to_the_same_messages() {
    let bless = std::env::var_os("SPRAWL_WIRE_BLESS").is_some();
    for (i, body) in common::full_samples().into_iter().enumerate() {
        let frame = Frame::new(0x5350_524C_0000_0000 + i as u64, body);
        let path = golden_dir().join(file_name(&frame.body));
        if bless && !path.exists() {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, frame.encode().unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (bless new messages, see module docs)",
                path.display()
            )
        });
        let decoded = decode_frame(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(decoded, as_committed(frame), "{}", path.display());
    }
}

/// `frame` without the fields appended after the golden files were written.
fn as_committed(mut frame: Frame<'_>) -> Frame<'_> {
    // PartitionInfo's storage-tier fields.
    let topics = match &mut frame.body {
        Body::CreateTopicResponse(r) => r.topic.as_mut().into_iter().collect(),
        Body::DescribeTopicResponse(r) => r.topic.as_mut().into_iter().collect(),
        Body::ListTopicsResponse(r) => r.topics.iter_mut().collect(),
        _ => Vec::new(),
    };
    for p in topics.into_iter().flat_map(|t| t.partitions.iter_mut()) {
        p.local_log_start_offset = 0;
        p.local_bytes = 0;
        p.archive_start_offset = None;
        p.archive_end_offset = None;
        p.archive_bytes = 0;
    }
    frame
}
