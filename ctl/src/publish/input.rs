//! Where the messages of a publish come from: `-m` arguments, or the lines
//! of a file or stdin read on a thread of their own (a blocking read must
//! not stall the producer's acknowledgements), and how a line becomes a
//! [`Record`].

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use sprawl_client::Record;
use tokio::sync::mpsc;

/// Longest line accepted (the node's largest possible batch).
pub const LINE_BYTES_MAX: usize = 64 << 20;
/// The reader hands over lines in chunks of at most this many bytes...
const CHUNK_BYTES_MAX: usize = 1 << 20;
/// ...and this many lines; a chunk also ends when no more input is at hand
/// without blocking, so interactive input goes out line by line.
const CHUNK_LINES_MAX: usize = 10_000;
/// Chunks read ahead of the producer.
const CHUNKS_AHEAD_MAX: usize = 8;
const READ_BUFFER_BYTES: usize = 256 << 10;

/// One message of the input, numbered from 1 (the line number for files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: u64,
    pub bytes: Vec<u8>,
}

pub type Chunk = anyhow::Result<Vec<Line>>;

/// Opens `path` (`-` = stdin); fails before anything is sent.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(file))
}

/// The `-m` messages as one chunk.
pub fn from_arguments(messages: &[String]) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel(1);
    let lines = messages
        .iter()
        .zip(1..)
        .map(|(m, number)| Line {
            number,
            bytes: m.as_bytes().to_vec(),
        })
        .collect();
    tx.try_send(Ok(lines))
        .expect("a fresh channel has room for one chunk");
    rx
}

/// Reads lines of `input` on a thread. The receiver gets chunks in input
/// order, then an `Err` if reading failed; dropping it stops the thread
/// at its next chunk.
pub fn spawn_reader(input: Box<dyn Read + Send>, name: String) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD_MAX);
    std::thread::Builder::new()
        .name("input-lines".into())
        .spawn(move || {
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, input);
            for chunk in LineChunks::new(&mut reader, name) {
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the input thread");
    rx
}

/// Chunks of lines of a buffered reader; after an error, nothing more.
struct LineChunks<'a, R> {
    reader: &'a mut BufReader<R>,
    name: String,
    next_number: u64,
    /// A failure found after some lines of a chunk: it comes next.
    failed: Option<anyhow::Error>,
    done: bool,
}

impl<'a, R: Read> LineChunks<'a, R> {
    fn new(reader: &'a mut BufReader<R>, name: String) -> Self {
        Self {
            reader,
            name,
            next_number: 1,
            failed: None,
            done: false,
        }
    }

    /// The next line without its `\n`; `None` at the end.
    fn read_line(&mut self) -> anyhow::Result<Option<Line>> {
        let number = self.next_number;
        let mut bytes = Vec::new();
        let limit = LINE_BYTES_MAX as u64 + 1;
        let n = (&mut *self.reader)
            .take(limit)
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("reading {} at line {number}", self.name))?;
        if n == 0 {
            return Ok(None);
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        } else if bytes.len() > LINE_BYTES_MAX {
            anyhow::bail!(
                "{} line {number} is longer than {} MiB",
                self.name,
                LINE_BYTES_MAX >> 20
            );
        }
        self.next_number += 1;
        Ok(Some(Line { number, bytes }))
    }
}

impl<R: Read> Iterator for LineChunks<'_, R> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        let mut lines = Vec::new();
        let mut bytes = 0;
        loop {
            match self.read_line() {
                Ok(Some(line)) => {
                    bytes += line.bytes.len();
                    lines.push(line);
                    let at_hand = !self.reader.buffer().is_empty();
                    if bytes >= CHUNK_BYTES_MAX || lines.len() >= CHUNK_LINES_MAX || !at_hand {
                        return Some(Ok(lines));
                    }
                }
                Ok(None) => {
                    self.done = true;
                    return (!lines.is_empty()).then_some(Ok(lines));
                }
                Err(e) if lines.is_empty() => {
                    self.done = true;
                    return Some(Err(e));
                }
                Err(e) => {
                    self.failed = Some(e);
                    return Some(Ok(lines));
                }
            }
        }
    }
}

/// What every message of one publish shares.
#[derive(Debug, Clone, Default)]
pub struct MessageShape {
    pub key: Option<Vec<u8>>,
    pub key_separator: Option<Vec<u8>>,
    pub partition: Option<u32>,
    pub headers: Vec<(String, String)>,
}

impl MessageShape {
    /// The record for one message, or why the message is malformed.
    pub fn record(&self, line: Line) -> Result<Record, String> {
        let Line { number, mut bytes } = line;
        let mut record = match &self.key_separator {
            Some(separator) => {
                let at = find(&bytes, separator).ok_or_else(|| {
                    format!(
                        "message {number} has no key separator {:?}",
                        String::from_utf8_lossy(separator)
                    )
                })?;
                let value = bytes.split_off(at + separator.len());
                bytes.truncate(at);
                Record::new(value).with_key(bytes)
            }
            None => Record::new(bytes),
        };
        if let Some(key) = &self.key {
            record = record.with_key(key.clone());
        }
        if let Some(partition) = self.partition {
            record = record.with_partition(partition);
        }
        for (name, value) in &self.headers {
            record = record.with_header(name.clone(), value.clone());
        }
        Ok(record)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], buffer: usize) -> Vec<Chunk> {
        let mut reader = BufReader::with_capacity(buffer, input);
        LineChunks::new(&mut reader, "input".into()).collect()
    }

    fn values(chunks: Vec<Chunk>) -> Vec<Vec<u8>> {
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap())
            .map(|l| l.bytes)
            .collect()
    }

    #[test]
    fn lines_lose_only_their_newline() {
        let got = values(chunks(b"a\r\n\nb\xff\nlast", 4));
        assert_eq!(
            got,
            vec![b"a\r".to_vec(), vec![], b"b\xff".to_vec(), b"last".to_vec()]
        );
        assert!(chunks(b"", 4).is_empty());
        assert_eq!(values(chunks(b"x\n", 4)), vec![b"x".to_vec()]);
    }

    #[test]
    fn chunks_end_when_the_buffer_runs_dry_and_keep_numbers() {
        let all = chunks(b"one\ntwo\nthree\n", 8);
        assert!(all.len() > 1, "an 8-byte buffer cannot hold every line");
        let numbers: Vec<u64> = all
            .into_iter()
            .flat_map(|c| c.unwrap())
            .map(|l| l.number)
            .collect();
        assert_eq!(numbers, vec![1, 2, 3]);
        let one = chunks(b"one\ntwo\nthree\n", 1024);
        assert_eq!(one.len(), 1, "all at hand: one chunk");
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        let shape = MessageShape {
            key_separator: Some(b"::".to_vec()),
            headers: vec![("h".into(), "v".into())],
            ..Default::default()
        };
        let line = |s: &str| Line {
            number: 7,
            bytes: s.as_bytes().to_vec(),
        };
        let record = shape.record(line("k::v::w")).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&record.value[..], b"v::w");
        assert_eq!(record.headers.len(), 1);
        let record = shape.record(line("::v")).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b""[..]));
        let missing = shape.record(line("no separator")).unwrap_err();
        assert!(missing.contains("message 7"), "{missing}");
    }

    #[test]
    fn a_fixed_key_and_partition_apply_to_every_message() {
        let shape = MessageShape {
            key: Some(b"user-1".to_vec()),
            partition: Some(3),
            ..Default::default()
        };
        let record = shape
            .record(Line {
                number: 1,
                bytes: b"hello".to_vec(),
            })
            .unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"user-1"[..]));
        assert_eq!(record.partition, Some(3));
        assert_eq!(&record.value[..], b"hello");
    }
}
