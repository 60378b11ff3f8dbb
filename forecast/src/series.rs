//! Bounded load history for one node: which series exist ([`SeriesKey`]),
//! the per-series multi-resolution ring ([`LoadRing`]), the capped set of
//! series ([`LoadHistory`]) and its checksummed file encoding.
//!
//! Sans-IO: callers pass the Unix second of every sample; writing the
//! encoding to disk (atomically) is the node's job.

mod codec;
mod history;
mod ring;

use std::fmt;
use std::str::FromStr;

pub use codec::HistoryError;
pub use history::LoadHistory;
pub use ring::{LoadRing, SampleError, COARSE_SLOTS, COARSE_STEP_S, FINE_SLOTS};

/// What is measured. Names, with the unit last (they appear in files, logs
/// and the admin API):
///
/// | resource              | unit                  | kind  | admin `resource=` |
/// |-----------------------|-----------------------|-------|-------------------|
/// | `messages_in_per_s`   | messages per second   | rate  | `message_rate`    |
/// | `bytes_in_per_s`      | produced bytes/s      | rate  |                   |
/// | `bytes_out_per_s`     | fetched bytes/s       | rate  |                   |
/// | `log_bytes`           | bytes on disk         | level |                   |
/// | `cpu_busy_cores`      | cores busy            | rate  | `cpu`             |
/// | `memory_bytes`        | bytes resident        | level | `memory`          |
/// | `network_bytes_per_s` | socket bytes/s in+out | rate  | `network`         |
///
/// `cpu_busy_cores` is the fraction of one core that was busy (0..1) for a
/// shard or a partition; for the node it is the sum over its shards, so the
/// value adds up across scopes like every other rate (the planner relies on
/// partition loads summing to shard loads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Messages produced per second.
    MessagesIn,
    /// Bytes produced per second.
    BytesIn,
    /// Bytes fetched by consumers per second.
    BytesOut,
    /// Bytes of log on disk (a level).
    LogBytes,
    /// Cores busy: 0..1 for a shard or partition, summed for the node.
    CpuBusy,
    /// Resident bytes (a level).
    Memory,
    /// Socket bytes per second, in plus out.
    Network,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::MessagesIn,
        Resource::BytesIn,
        Resource::BytesOut,
        Resource::LogBytes,
        Resource::CpuBusy,
        Resource::Memory,
        Resource::Network,
    ];

    /// The stable name, unit last (see the module doc).
    pub fn name(self) -> &'static str {
        match self {
            Resource::MessagesIn => "messages_in_per_s",
            Resource::BytesIn => "bytes_in_per_s",
            Resource::BytesOut => "bytes_out_per_s",
            Resource::LogBytes => "log_bytes",
            Resource::CpuBusy => "cpu_busy_cores",
            Resource::Memory => "memory_bytes",
            Resource::Network => "network_bytes_per_s",
        }
    }

    /// A level (a quantity held) rather than a rate (a flow per second):
    /// a level's minute mean is still a level, and a missing level is not
    /// zero.
    pub fn is_level(self) -> bool {
        matches!(self, Resource::LogBytes | Resource::Memory)
    }

    /// The resource an admin API `resource=` word names: `cpu`, `memory`,
    /// `message_rate` or `network`, or any full name from [`Self::name`].
    pub fn from_query(word: &str) -> Option<Resource> {
        match word {
            "cpu" => Some(Resource::CpuBusy),
            "memory" => Some(Resource::Memory),
            "message_rate" => Some(Resource::MessagesIn),
            "network" => Some(Resource::Network),
            _ => word.parse().ok(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resource {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|resource| resource.name() == text)
            .ok_or_else(|| KeyParseError::new(text, "unknown resource"))
    }
}

/// Where it is measured; printed as `node`, `shard:3` or
/// `partition:orders/3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Node,
    Shard(u32),
    Partition { topic: String, partition: u32 },
}

impl Scope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Node => ScopeKind::Node,
            Scope::Shard(_) => ScopeKind::Shard,
            Scope::Partition { .. } => ScopeKind::Partition,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Node => f.write_str("node"),
            Scope::Shard(shard) => write!(f, "shard:{shard}"),
            Scope::Partition { topic, partition } => write!(f, "partition:{topic}/{partition}"),
        }
    }
}

impl FromStr for Scope {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| KeyParseError::new(text, reason);
        if text == "node" {
            return Ok(Scope::Node);
        }
        if let Some(shard) = text.strip_prefix("shard:") {
            return shard
                .parse()
                .map(Scope::Shard)
                .map_err(|_| bad("shard is not a u32"));
        }
        let Some(rest) = text.strip_prefix("partition:") else {
            return Err(bad("scope is not node, shard:N or partition:TOPIC/N"));
        };
        let (topic, partition) = rest
            .rsplit_once('/')
            .ok_or_else(|| bad("partition scope has no /N"))?;
        if topic.is_empty() || topic.contains(['/', '@']) {
            return Err(bad("topic is empty or contains / or @"));
        }
        let partition = partition
            .parse()
            .map_err(|_| bad("partition is not a u32"))?;
        Ok(Scope::Partition {
            topic: topic.to_string(),
            partition,
        })
    }
}

/// The kind of a [`Scope`], as the admin API's `scope=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Node,
    Shard,
    Partition,
}

impl ScopeKind {
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::Node => "node",
            ScopeKind::Shard => "shard",
            ScopeKind::Partition => "partition",
        }
    }

    /// The kind a `scope=` word (`node`, `shard`, `partition`) names.
    pub fn from_query(word: &str) -> Option<ScopeKind> {
        [ScopeKind::Node, ScopeKind::Shard, ScopeKind::Partition]
            .into_iter()
            .find(|kind| kind.name() == word)
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One series: a resource at a scope, printed `resource@scope`
/// (`cpu_busy_cores@shard:3`). Topic names cannot contain `/` or `@`, so
/// the printed form parses back unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub resource: Resource,
    pub scope: Scope,
}

impl SeriesKey {
    pub fn new(resource: Resource, scope: Scope) -> Self {
        Self { resource, scope }
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.resource, self.scope)
    }
}

impl FromStr for SeriesKey {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (resource, scope) = text
            .split_once('@')
            .ok_or_else(|| KeyParseError::new(text, "expected resource@scope"))?;
        Ok(SeriesKey {
            resource: resource.parse()?,
            scope: scope.parse()?,
        })
    }
}

/// A series key, resource or scope that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid series name {text:?}: {reason}")]
pub struct KeyParseError {
    pub text: String,
    pub reason: &'static str,
}

impl KeyParseError {
    fn new(text: &str, reason: &'static str) -> Self {
        // Bounded: the text may come from an HTTP query.
        Self {
            text: text.chars().take(128).collect(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(topic: &str, partition: u32) -> Scope {
        Scope::Partition {
            topic: topic.to_string(),
            partition,
        }
    }

    #[test]
    fn every_name_parses_back() {
        for resource in Resource::ALL {
            for scope in [Scope::Node, Scope::Shard(7), partition("orders.v2", 11)] {
                let key = SeriesKey::new(resource, scope);
                let text = key.to_string();
                assert_eq!(text.parse::<SeriesKey>(), Ok(key), "{text}");
            }
        }
        assert_eq!(
            SeriesKey::new(Resource::CpuBusy, Scope::Shard(3)).to_string(),
            "cpu_busy_cores@shard:3"
        );
        assert_eq!(partition("a", 3).to_string(), "partition:a/3");
    }

    #[test]
    fn admin_query_words_map_to_resources_and_scope_kinds() {
        assert_eq!(Resource::from_query("cpu"), Some(Resource::CpuBusy));
        assert_eq!(Resource::from_query("memory"), Some(Resource::Memory));
        assert_eq!(
            Resource::from_query("message_rate"),
            Some(Resource::MessagesIn)
        );
        assert_eq!(Resource::from_query("network"), Some(Resource::Network));
        assert_eq!(Resource::from_query("log_bytes"), Some(Resource::LogBytes));
        assert_eq!(Resource::from_query("disk"), None);
        assert_eq!(ScopeKind::from_query("shard"), Some(ScopeKind::Shard));
        assert_eq!(
            ScopeKind::from_query("partition"),
            Some(partition("t", 0).kind())
        );
        assert_eq!(ScopeKind::from_query("cluster"), None);
    }

    #[test]
    fn malformed_names_are_rejected_with_a_reason() {
        for text in [
            "cpu_busy_cores",
            "cpu@node",
            "cpu_busy_cores@shard:-1",
            "cpu_busy_cores@partition:orders",
            "cpu_busy_cores@partition:/3",
            "cpu_busy_cores@partition:a@b/3",
            "cpu_busy_cores@cluster",
        ] {
            let error = text.parse::<SeriesKey>().unwrap_err();
            assert!(!error.reason.is_empty(), "{text}");
        }
        assert!(Resource::Memory.is_level() && !Resource::BytesOut.is_level());
    }
}
