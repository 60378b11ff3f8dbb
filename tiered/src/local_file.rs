//! Local segment files as the S3 client's body: read in 1 MiB chunks on
//! the archive thread (blocking reads belong there, never on a shard),
//! CRC32C'd as they go, optionally rate-limited.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::stats::Shared;

/// Local segment files are read (and rate-limited) in chunks of this size.
const FILE_CHUNK_BYTES: usize = 1 << 20;

/// Progress of one pass over a local file, shared with the stream the S3
/// client pulls from.
#[derive(Default)]
pub(crate) struct FileRead {
    pub crc32c: u32,
    pub bytes: u64,
    pub error: Option<std::io::Error>,
}

/// A local file as a stream of 1 MiB chunks for the S3 client, CRC32C'd
/// as it goes, optionally rate-limited. Reads block the archive thread:
/// that is where file reads belong.
pub(crate) fn file_stream(
    file: std::fs::File,
    read: Arc<Mutex<FileRead>>,
    shared: Arc<Shared>,
    bytes_per_s_max: Option<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let started = tokio::time::Instant::now();
    futures::stream::unfold(Some(file), move |file| {
        let (read, shared) = (read.clone(), shared.clone());
        async move {
            let mut file = file?;
            let mut buf = BytesMut::zeroed(FILE_CHUNK_BYTES);
            let n = match read_full(&mut file, &mut buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => {
                    let kind = e.kind();
                    let message = e.to_string();
                    read.lock().unwrap_or_else(|e| e.into_inner()).error = Some(e);
                    return Some((Err(std::io::Error::new(kind, message)), None));
                }
            };
            buf.truncate(n);
            let total = {
                let mut r = read.lock().unwrap_or_else(|e| e.into_inner());
                r.crc32c = crc32c::crc32c_append(r.crc32c, &buf);
                r.bytes += n as u64;
                r.bytes
            };
            shared.update(|c| c.bytes_up += n as u64);
            if let Some(rate) = bytes_per_s_max {
                let due = Duration::from_secs_f64(total as f64 / rate as f64);
                tokio::time::sleep_until(started + due).await;
            }
            Some((Ok(buf.freeze()), Some(file)))
        }
    })
}

/// Fills `buf` unless the file ends first; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
