//! The topic catalog: which topics exist and their configuration.
//!
//! Shard 0 owns the authoritative copy and persists it (`topics.json`,
//! written atomically); every shard keeps a replica it answers from, updated
//! by broadcast. This module is sans-IO apart from `load`/`save`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Limits on topic names and sizes (names become directory names).
pub const TOPIC_NAME_BYTES_MAX: usize = 200;
pub const PARTITIONS_MAX: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Per partition; `None` = no size limit.
    pub retention_bytes: Option<u64>,
    /// `None` = no time limit.
    pub retention_ms: Option<u64>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCatalog {
    /// Bumped on every change, so shards can ignore stale broadcasts.
    pub version: u64,
    pub topics: BTreeMap<String, TopicConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("partition count {0} is out of range 1..={PARTITIONS_MAX}")]
    InvalidPartitions(u32),
}

/// Topic names: 1..=200 bytes of `[A-Za-z0-9._-]`, not `.`/`..`, no leading `__` (internal).
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let bad = |reason| {
        Err(CatalogError::InvalidName {
            name: name.chars().take(64).collect(),
            reason,
        })
    };
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("must be 1 to 200 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    if name == "." || name == ".." || name.starts_with("__") {
        return bad("reserved name");
    }
    Ok(())
}

impl TopicCatalog {
    pub fn get(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.get(name)
    }

    /// Checks a partition exists; the error says which part is unknown.
    pub fn check_partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<&TopicConfig, PartitionLookupError> {
        let cfg = self
            .topics
            .get(topic)
            .ok_or_else(|| PartitionLookupError::UnknownTopic(topic.to_string()))?;
        if partition >= cfg.partitions {
            return Err(PartitionLookupError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: cfg.partitions,
            });
        }
        Ok(cfg)
    }

    pub fn create(&mut self, name: &str, config: TopicConfig) -> Result<(), CatalogError> {
        validate_topic_name(name)?;
        if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(config.partitions));
        }
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.to_string()));
        }
        self.topics.insert(name.to_string(), config);
        self.version += 1;
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Result<TopicConfig, CatalogError> {
        let cfg = self
            .topics
            .remove(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))?;
        self.version += 1;
        Ok(cfg)
    }

    /// Loads `path`, or an empty catalog when it does not exist.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the catalog durably: temp file, fsync, rename, fsync directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("catalog serialises"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionLookupError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(partitions: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            retention_bytes: None,
            retention_ms: None,
            created_ms: 0,
        }
    }

    #[test]
    fn create_delete_and_lookups() {
        let mut c = TopicCatalog::default();
        c.create("orders", cfg(3)).unwrap();
        assert_eq!(c.version, 1);
        assert!(matches!(
            c.create("orders", cfg(1)),
            Err(CatalogError::TopicExists(_))
        ));
        assert!(c.check_partition("orders", 2).is_ok());
        assert!(matches!(
            c.check_partition("orders", 3),
            Err(PartitionLookupError::UnknownPartition { .. })
        ));
        assert!(matches!(
            c.check_partition("nope", 0),
            Err(PartitionLookupError::UnknownTopic(_))
        ));
        c.delete("orders").unwrap();
        assert!(c.get("orders").is_none());
        assert_eq!(c.version, 2);
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", "a/b", "..", "__internal", "sp ace", &"x".repeat(201)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        for good in ["orders", "a.b-c_d", "X1"] {
            validate_topic_name(good).unwrap();
        }
        assert!(matches!(
            TopicCatalog::default().create("t", cfg(0)),
            Err(CatalogError::InvalidPartitions(0))
        ));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topics.json");
        assert_eq!(TopicCatalog::load(&path).unwrap(), TopicCatalog::default());
        let mut c = TopicCatalog::default();
        c.create("a", cfg(2)).unwrap();
        c.save(&path).unwrap();
        assert_eq!(TopicCatalog::load(&path).unwrap(), c);
    }
}
