//! raft-rs logs through `slog`; Sprawl logs through `tracing`. This drain
//! forwards raft's records as `tracing` events (target `raft`), so one
//! filter (`RUST_LOG=raft=debug`) covers both. (The metadata group has its
//! own copy; this one also names the partition group.)

use std::fmt::{self, Write as _};

use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

use super::GroupId;

struct TracingDrain;

fn tracing_level(level: Level) -> tracing::Level {
    match level {
        Level::Critical | Level::Error => tracing::Level::ERROR,
        Level::Warning => tracing::Level::WARN,
        Level::Info => tracing::Level::INFO,
        Level::Debug => tracing::Level::DEBUG,
        Level::Trace => tracing::Level::TRACE,
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // raft-rs logs at debug on every message: format nothing unless the
        // event would be recorded.
        let enabled = match tracing_level(record.level()) {
            tracing::Level::ERROR => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            tracing::Level::WARN => tracing::enabled!(target: "raft", tracing::Level::WARN),
            tracing::Level::INFO => tracing::enabled!(target: "raft", tracing::Level::INFO),
            tracing::Level::DEBUG => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            _ => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut fields = Fields(String::new());
        // A field that fails to format is left out; the message still goes.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let (msg, fields) = (record.msg(), fields.0);
        match tracing_level(record.level()) {
            tracing::Level::ERROR => tracing::error!(target: "raft", "{msg}{fields}"),
            tracing::Level::WARN => tracing::warn!(target: "raft", "{msg}{fields}"),
            tracing::Level::INFO => tracing::info!(target: "raft", "{msg}{fields}"),
            tracing::Level::DEBUG => tracing::debug!(target: "raft", "{msg}{fields}"),
            _ => tracing::trace!(target: "raft", "{msg}{fields}"),
        }
        Ok(())
    }
}

struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        write!(self.0, " {key}={val}").map_err(|_| slog::Error::Fmt(fmt::Error))
    }
}

/// A logger for one replica's `RawNode`.
pub(crate) fn raft_logger(node_id: u64, group: GroupId) -> slog::Logger {
    slog::Logger::root(
        TracingDrain,
        slog::o!("raft_id" => node_id, "group" => group.0),
    )
}
