//! `log-crash-writer DIR SEGMENT_BYTES`: appends self-describing records to
//! a partition log forever from several concurrent appenders, printing
//! `ACK <base> <next>` for each acknowledged (durable) batch. The crash test
//! `kill -9`s it at random moments and checks every ack survived.
//!
//! Record value: appender id (u8) | sequence (u64 LE) | filler derived from both.

use std::io::Write;
use std::rc::Rc;

use anyhow::Context;
use bytes::BytesMut;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchBuilder, LogConfig, PartitionLog, Record};

mod value;

use value::record_value;

const APPENDERS: u8 = 4;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .context("usage: log-crash-writer DIR SEGMENT_BYTES START_SEQ")?,
    );
    let segment_bytes: u64 = args.next().context("SEGMENT_BYTES")?.parse()?;
    let start_seq: u64 = args.next().context("START_SEQ")?.parse()?;
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            sprawl_io::warmup::warm_up_dir(&dir).await?;
            let config = LogConfig {
                segment_bytes,
                index_interval_bytes: 4096,
                ..LogConfig::default()
            };
            let log = Rc::new(PartitionLog::open(&dir, config, DmaBufPool::new(8 << 20)).await?);
            println!("OPEN {}", log.offsets().log_end);
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|appender| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let mut seq = start_seq;
                        loop {
                            let mut b = BatchBuilder::new();
                            let n = 1 + (seq % 7) as u32;
                            let values: Vec<Vec<u8>> = (0..n)
                                .map(|i| record_value(appender, seq + u64::from(i)))
                                .collect();
                            for v in &values {
                                b.push(&Record {
                                    timestamp_ms: seq as i64,
                                    value: v,
                                    ..Default::default()
                                });
                            }
                            seq += u64::from(n);
                            let ack = log.append(BytesMut::from(&b.finish()[..])).await?;
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "ACK {} {}", ack.base_offset, ack.next_offset)?;
                            out.flush()?;
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
