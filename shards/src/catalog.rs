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
    /// Partitions a move put on another shard than the hash would
    /// (topic → partition → shard). Only moves write it, so a catalog
    /// without moves is exactly the hash placement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, BTreeMap<u32, u32>>,
    /// Moves begun and not finished (topic → partition → move). Persisted
    /// before the source is fenced, so a node that dies in the middle finds
    /// it at start-up and rolls it back (see [`TopicCatalog::abort_moves`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moving: BTreeMap<String, BTreeMap<u32, PartitionMove>>,
    /// In a cluster: the node that leads each partition (index = partition)
    /// as the metadata Raft group committed it; a request for a partition
    /// led by another node is forwarded there. Empty on a single node, where
    /// this node leads everything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leaders: BTreeMap<String, Vec<u32>>,
    /// In a cluster: each partition's replica set (index = partition) for
    /// topics replicated to more than one node; such a partition is one
    /// Raft group, open on every node of its set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, Vec<Vec<u32>>>,
    /// The replica sets a replicated topic was created with: they found
    /// each partition's Raft group (bootstrap voters); a node added later
    /// joins it as a learner instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub initial_replicas: BTreeMap<String, Vec<Vec<u32>>>,
    /// In a cluster: the metadata log index this catalog reflects. Raft
    /// replays the log after its last snapshot at every start; entries
    /// below this index were applied already and must not be again (a
    /// replayed delete would destroy the topic created after it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cluster_index: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A partition on its way from one shard to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    pub from: u32,
    pub to: u32,
    pub started_ms: i64,
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
    #[error("{topic}/{partition} is already being moved")]
    MoveInProgress { topic: String, partition: u32 },
    #[error("{topic}/{partition} is not being moved")]
    NoSuchMove { topic: String, partition: u32 },
    #[error("{topic}/{partition} cannot move to shard {to}: {reason}")]
    InvalidMove {
        topic: String,
        partition: u32,
        to: u32,
        reason: &'static str,
    },
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
        // A topic created later with the same name starts on the hash placement.
        self.placement.remove(name);
        self.moving.remove(name);
        self.leaders.remove(name);
        self.replicas.remove(name);
        self.initial_replicas.remove(name);
        self.version += 1;
        Ok(cfg)
    }

    /// The node leading `partition` of `topic` in a cluster; `None` on a
    /// single node (or for a topic the metadata group placed no leader for).
    pub fn leader_of(&self, topic: &str, partition: u32) -> Option<u32> {
        self.leaders
            .get(topic)
            .and_then(|nodes| nodes.get(partition as usize))
            .copied()
    }

    /// The replica set of a replicated partition (more than one node);
    /// `None` for a partition kept by one node.
    pub fn replicas_of(&self, topic: &str, partition: u32) -> Option<&[u32]> {
        self.replicas
            .get(topic)
            .and_then(|sets| sets.get(partition as usize))
            .map(Vec::as_slice)
            .filter(|set| set.len() > 1)
    }

    /// Whether `node` founded the Raft group of a replicated partition
    /// (it was in the replica set the topic was created with).
    pub fn founded_by(&self, topic: &str, partition: u32, node: u32) -> bool {
        self.initial_replicas
            .get(topic)
            .and_then(|sets| sets.get(partition as usize))
            .is_some_and(|set| set.contains(&node))
    }

    /// Whether the committed topic `config` is another topic than the one
    /// of that name here (deleted and recreated while this node was away,
    /// or a topic this node had before it joined): it must be deleted
    /// first, in a version of its own, so its partitions close and go.
    pub fn is_other_topic(&self, name: &str, config: &TopicConfig) -> bool {
        self.topics
            .get(name)
            .is_some_and(|e| e.created_ms != config.created_ms || e.partitions != config.partitions)
    }

    /// Adopts a topic as the cluster's metadata group committed it: created
    /// if missing, its partition leaders replaced either way (the caller
    /// deleted an [`Self::is_other_topic`] first).
    pub fn apply_cluster_topic(
        &mut self,
        name: &str,
        config: TopicConfig,
        leaders: Vec<u32>,
        replicas: Vec<Vec<u32>>,
    ) -> Result<(), CatalogError> {
        if leaders.len() != config.partitions as usize {
            return Err(CatalogError::InvalidPartitions(leaders.len() as u32));
        }
        if !replicas.is_empty() && replicas.len() != config.partitions as usize {
            return Err(CatalogError::InvalidPartitions(replicas.len() as u32));
        }
        if !self.topics.contains_key(name) {
            self.create(name, config)?;
            if replicas.iter().any(|set| set.len() > 1) {
                self.initial_replicas
                    .insert(name.to_string(), replicas.clone());
            }
        }
        self.leaders.insert(name.to_string(), leaders);
        if replicas.iter().any(|set| set.len() > 1) {
            self.replicas.insert(name.to_string(), replicas);
        } else {
            self.replicas.remove(name);
        }
        self.version += 1;
        Ok(())
    }

    /// The shard that owns `partition` of `topic` among `shard_count`: where
    /// a move put it, else the stable hash. A placement naming a shard this
    /// node no longer has (restarted with fewer cores) falls back to the hash.
    pub fn owner(&self, topic: &str, partition: u32, shard_count: usize) -> usize {
        self.placement
            .get(topic)
            .and_then(|parts| parts.get(&partition))
            .map(|&shard| shard as usize)
            .filter(|&shard| shard < shard_count)
            .unwrap_or_else(|| crate::routing::owner_shard(topic, partition, shard_count))
    }

    /// The move of `partition` of `topic` in progress, if any.
    pub fn move_of(&self, topic: &str, partition: u32) -> Option<PartitionMove> {
        self.moving.get(topic)?.get(&partition).copied()
    }

    /// Every move in progress, as (topic, partition, move).
    pub fn moves(&self) -> Vec<(String, u32, PartitionMove)> {
        self.moving
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, m)| (t.clone(), *p, *m)))
            .collect()
    }

    /// Records the intent to move a partition to shard `to`.
    pub fn begin_move(
        &mut self,
        topic: &str,
        partition: u32,
        to: usize,
        shard_count: usize,
        now_ms: i64,
    ) -> Result<PartitionMove, CatalogError> {
        self.check_partition(topic, partition)
            .map_err(|e| match e {
                PartitionLookupError::UnknownTopic(t) => CatalogError::UnknownTopic(t),
                PartitionLookupError::UnknownPartition { .. } => CatalogError::InvalidMove {
                    topic: topic.to_string(),
                    partition,
                    to: to as u32,
                    reason: "no such partition",
                },
            })?;
        if self.move_of(topic, partition).is_some() {
            return Err(CatalogError::MoveInProgress {
                topic: topic.to_string(),
                partition,
            });
        }
        let invalid = |reason| CatalogError::InvalidMove {
            topic: topic.to_string(),
            partition,
            to: to as u32,
            reason,
        };
        if to >= shard_count {
            return Err(invalid("no such shard"));
        }
        let from = self.owner(topic, partition, shard_count);
        if from == to {
            return Err(invalid("it is already there"));
        }
        let m = PartitionMove {
            from: from as u32,
            to: to as u32,
            started_ms: now_ms,
        };
        self.moving
            .entry(topic.to_string())
            .or_default()
            .insert(partition, m);
        self.version += 1;
        Ok(m)
    }

    fn take_move(&mut self, topic: &str, partition: u32) -> Result<PartitionMove, CatalogError> {
        let parts = self.moving.get_mut(topic);
        let m = parts
            .and_then(|parts| parts.remove(&partition))
            .ok_or_else(|| CatalogError::NoSuchMove {
                topic: topic.to_string(),
                partition,
            })?;
        if self.moving.get(topic).is_some_and(BTreeMap::is_empty) {
            self.moving.remove(topic);
        }
        Ok(m)
    }

    /// Completes a move: the partition now lives on the move's `to` shard.
    pub fn finish_move(
        &mut self,
        topic: &str,
        partition: u32,
        shard_count: usize,
    ) -> Result<PartitionMove, CatalogError> {
        let m = self.take_move(topic, partition)?;
        let parts = self.placement.entry(topic.to_string()).or_default();
        if crate::routing::owner_shard(topic, partition, shard_count) == m.to as usize {
            // Back on its hash shard: no override needed.
            parts.remove(&partition);
        } else {
            parts.insert(partition, m.to);
        }
        if parts.is_empty() {
            self.placement.remove(topic);
        }
        self.version += 1;
        Ok(m)
    }

    /// Forgets a move that will not complete; the partition stays where it was.
    pub fn abort_move(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionMove, CatalogError> {
        let m = self.take_move(topic, partition)?;
        self.version += 1;
        Ok(m)
    }

    /// Rolls back every move in progress (start-up after a crash): the
    /// source still holds every byte — it only synced and closed the log —
    /// so the partition simply stays on its source shard.
    pub fn abort_moves(&mut self) -> Vec<(String, u32, PartitionMove)> {
        let moves = self.moves();
        if !moves.is_empty() {
            self.moving.clear();
            self.version += 1;
        }
        moves
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
    fn moves_change_the_owner_only_when_finished() {
        let mut c = TopicCatalog::default();
        c.create("t", cfg(4)).unwrap();
        let hash = crate::routing::owner_shard("t", 1, 2);
        let other = 1 - hash;
        assert_eq!(c.owner("t", 1, 2), hash);
        assert!(matches!(
            c.begin_move("t", 1, hash, 2, 0),
            Err(CatalogError::InvalidMove { .. })
        ));
        assert!(matches!(
            c.begin_move("t", 1, 2, 2, 0),
            Err(CatalogError::InvalidMove { .. })
        ));
        assert!(matches!(
            c.begin_move("t", 9, other, 2, 0),
            Err(CatalogError::InvalidMove { .. })
        ));
        let m = c.begin_move("t", 1, other, 2, 5).unwrap();
        assert_eq!((m.from as usize, m.to as usize), (hash, other));
        assert_eq!(
            c.owner("t", 1, 2),
            hash,
            "the owner changes only at the finish"
        );
        assert!(matches!(
            c.begin_move("t", 1, other, 2, 0),
            Err(CatalogError::MoveInProgress { .. })
        ));
        c.finish_move("t", 1, 2).unwrap();
        assert_eq!(c.owner("t", 1, 2), other);
        assert!(c.moves().is_empty());
        // Fewer shards after a restart: the hash takes over again.
        assert_eq!(c.owner("t", 1, 1), 0);
        // Moving back home leaves no override behind.
        c.begin_move("t", 1, hash, 2, 0).unwrap();
        c.finish_move("t", 1, 2).unwrap();
        assert!(c.placement.is_empty());
    }

    #[test]
    fn unfinished_moves_roll_back_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topics.json");
        let mut c = TopicCatalog::default();
        c.create("t", cfg(2)).unwrap();
        let to = 1 - crate::routing::owner_shard("t", 0, 2);
        c.begin_move("t", 0, to, 2, 0).unwrap();
        c.save(&path).unwrap();
        let mut loaded = TopicCatalog::load(&path).unwrap();
        assert_eq!(loaded, c);
        let version = loaded.version;
        assert_eq!(loaded.abort_moves().len(), 1);
        assert!(loaded.version > version);
        assert_eq!(
            loaded.owner("t", 0, 2),
            crate::routing::owner_shard("t", 0, 2)
        );
        assert!(loaded.abort_moves().is_empty());
        // Deleting a topic forgets its placement.
        c.finish_move("t", 0, 2).unwrap();
        c.delete("t").unwrap();
        assert!(c.placement.is_empty() && c.moving.is_empty());
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
