//! `log-crash-writer DIR SEGMENT_BYTES START_SEQ`: appends self-describing records to
//! a partition log forever from several concurrent appenders, printing
//! `ACK <base> <next>` for each acknowledged (durable) batch. The crash test
//! `kill -9`s it at random moments and checks every ack survived.
//!
//! Record value: appender id (u8) | sequence (u64 LE) | filler derived from both.
//!
//! `log-crash-writer --raft DIR SEGMENT_BYTES`: appends as a Raft leader
//! would, forever, from the log's last Raft entry: each start (and now and
//! then) a new term opened by a control entry, then data entries
//! ([`value::raft_values`]) with a control entry every few, each appended
//! with a forced fdatasync. Prints `RAFT-OPEN <last index> <last term>`,
//! then per acknowledged entry `RAFT <index> <term> D <base> <next> <digest>`
//! (data, [`value::values_digest`] of its values) or
//! `RAFT <index> <term> C <base> <next>` (control).

use std::io::Write;
use std::rc::Rc;

use anyhow::Context;
use bytes::BytesMut;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchBuilder, LogConfig, PartitionLog, RaftStamp, Record};

mod value;

use value::{raft_values, record_value, values_digest};

const APPENDERS: u8 = 4;

const USAGE: &str =
    "usage: log-crash-writer DIR SEGMENT_BYTES START_SEQ | log-crash-writer --raft DIR SEGMENT_BYTES";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let raft = args.next_if_eq("--raft").is_some();
    let dir = std::path::PathBuf::from(args.next().context(USAGE)?);
    let segment_bytes: u64 = args.next().context("SEGMENT_BYTES")?.parse()?;
    let start_seq: u64 = if raft {
        0
    } else {
        args.next().context("START_SEQ")?.parse()?
    };
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            sprawl_io::warmup::warm_up_dir(&dir).await?;
            let config = LogConfig {
                segment_bytes,
                index_interval_bytes: 4096,
                ..LogConfig::default()
            };
            let log = Rc::new(PartitionLog::open(&dir, config, DmaBufPool::new(8 << 20)).await?);
            if raft {
                return lead(&log).await;
            }
            println!("OPEN {}", log.offsets().log_end);
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|appender| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let mut seq = start_seq;
                        loop {
                            let n = 1 + (seq % 7) as u32;
                            let values: Vec<Vec<u8>> = (0..n)
                                .map(|i| record_value(appender, seq + u64::from(i)))
                                .collect();
                            let batch = batch_of(&values, seq as i64);
                            seq += u64::from(n);
                            let ack = log.append(batch).await?;
                            print_line(format_args!(
                                "ACK {} {}",
                                ack.base_offset, ack.next_offset
                            ))?;
                        }
                        #[allow(unreachable_code)]
                        anyhow::Ok(())
                    })
                })
                .collect();
            for t in tasks {
                t.await?;
            }
            anyhow::Ok(())
        })
        .map_err(|e| anyhow::anyhow!("starting executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor: {e:?}"))?
}

fn batch_of(values: &[Vec<u8>], timestamp_ms: i64) -> BytesMut {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(&Record {
            timestamp_ms,
            value: v,
            ..Default::default()
        });
    }
    BytesMut::from(&b.finish()[..])
}

/// One acknowledgement line, flushed at once (the parent may kill us next).
fn print_line(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Raft mode: one leader appending entries in index order, each durable
/// (forced fdatasync) before it is acknowledged and the next is appended.
async fn lead(log: &PartitionLog) -> anyhow::Result<()> {
    let (mut index, mut term) = log.last_raft_entry().unwrap_or((0, 0));
    print_line(format_args!("RAFT-OPEN {index} {term}"))?;
    loop {
        // A new leader: a higher term, opened by a control entry.
        term += 1;
        let entries = 2 + (index * 7919 + term) % 40;
        for n in 0..entries {
            index += 1;
            let stamp = RaftStamp { term, index };
            if n == 0 || index % 6 == 0 {
                let payload = if n == 0 {
                    format!("leader {term}")
                } else {
                    format!("config {index}")
                };
                let ack = log
                    .append_raft_control(payload.as_bytes(), stamp, true)
                    .await?;
                print_line(format_args!(
                    "RAFT {index} {term} C {} {}",
                    ack.base_offset, ack.next_offset
                ))?;
            } else {
                let values = raft_values(index, term);
                let batch = batch_of(&values, index as i64);
                let ack = log.append_raft(batch, stamp, true).await?;
                let digest = values_digest(values.iter().map(Vec::as_slice));
                print_line(format_args!(
                    "RAFT {index} {term} D {} {} {digest}",
                    ack.base_offset, ack.next_offset
                ))?;
            }
        }
    }
}
