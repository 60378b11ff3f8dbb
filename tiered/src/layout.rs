//! Object keys of the archive (sans-IO):
//! `<prefix>/<topic>/<partition>/<base_offset:020>.{log,index,timeindex}` and
//! `<prefix>/<topic>/<partition>/manifest.json`, the same file names as a
//! local segment (`storage::segment`).

use std::path::{Path, PathBuf};

use crate::error::{ArchiveError, Result};

/// One of a segment's three files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentFileKind {
    Log,
    Index,
    TimeIndex,
}

impl SegmentFileKind {
    pub const ALL: [Self; 3] = [Self::Log, Self::Index, Self::TimeIndex];

    pub fn extension(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Index => "index",
            Self::TimeIndex => "timeindex",
        }
    }
}

/// Local paths of one segment's three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFiles {
    pub log: PathBuf,
    pub index: PathBuf,
    pub timeindex: PathBuf,
}

impl SegmentFiles {
    /// The files of segment `base_offset` in a partition directory, named as
    /// the storage crate names them.
    pub fn in_dir(dir: &Path, base_offset: u64) -> Self {
        let stem = format!("{base_offset:020}");
        Self {
            log: dir.join(format!("{stem}.log")),
            index: dir.join(format!("{stem}.index")),
            timeindex: dir.join(format!("{stem}.timeindex")),
        }
    }

    pub fn path(&self, kind: SegmentFileKind) -> &Path {
        match kind {
            SegmentFileKind::Log => &self.log,
            SegmentFileKind::Index => &self.index,
            SegmentFileKind::TimeIndex => &self.timeindex,
        }
    }
}

pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// Longest topic name accepted (the broker's own limit is 200 bytes).
pub const TOPIC_NAME_BYTES_MAX: usize = 255;

/// Builds every key of the archive from its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLayout {
    /// Without leading or trailing `/`; may be empty.
    prefix: String,
}

impl ObjectLayout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the topic directories start: `<prefix>/` (or `""`).
    pub fn root(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// `<prefix>/<topic>/`.
    pub fn topic_dir(&self, topic: &str) -> String {
        format!("{}{topic}/", self.root())
    }

    /// `<prefix>/<topic>/<partition>/`.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> String {
        format!("{}{partition}/", self.topic_dir(topic))
    }

    pub fn segment_key(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        kind: SegmentFileKind,
    ) -> String {
        format!(
            "{}{base_offset:020}.{}",
            self.partition_dir(topic, partition),
            kind.extension()
        )
    }

    pub fn manifest_key(&self, topic: &str, partition: u32) -> String {
        format!(
            "{}{MANIFEST_FILE_NAME}",
            self.partition_dir(topic, partition)
        )
    }

    /// The topic named by a listed directory `<prefix>/<topic>/`.
    pub fn parse_topic_dir<'a>(&self, dir: &'a str) -> Option<&'a str> {
        let topic = dir.strip_prefix(&self.root())?.strip_suffix('/')?;
        validate_topic(topic).ok().map(|()| topic)
    }

    /// The partition named by a listed directory `<prefix>/<topic>/<partition>/`.
    pub fn parse_partition_dir(&self, topic: &str, dir: &str) -> Option<u32> {
        let p = dir
            .strip_prefix(&self.topic_dir(topic))?
            .strip_suffix('/')?;
        // Canonical decimal only, so a key maps back to exactly one partition.
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        p.parse().ok()
    }
}

/// Topic names become one path component of every key.
pub fn validate_topic(topic: &str) -> Result<()> {
    let bad = |reason| {
        Err(ArchiveError::InvalidName {
            what: "topic",
            value: topic.chars().take(64).collect(),
            reason,
        })
    };
    if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX {
        return bad("must be 1 to 255 bytes");
    }
    if topic.contains('/') || topic.chars().any(char::is_control) {
        return bad("must not contain '/' or control characters");
    }
    if topic == "." || topic == ".." {
        return bad("reserved name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_local_file_names() {
        let l = ObjectLayout::new("/sprawl/");
        assert_eq!(
            l.segment_key("orders", 3, 42, SegmentFileKind::Log),
            "sprawl/orders/3/00000000000000000042.log"
        );
        assert_eq!(
            l.segment_key("orders", 3, 42, SegmentFileKind::TimeIndex),
            "sprawl/orders/3/00000000000000000042.timeindex"
        );
        assert_eq!(l.manifest_key("orders", 3), "sprawl/orders/3/manifest.json");
        let files = SegmentFiles::in_dir(Path::new("/d"), 42);
        assert_eq!(
            files.index,
            Path::new("/d/00000000000000000042.index"),
            "same names as storage::segment::SegmentPaths"
        );
        assert_eq!(
            ObjectLayout::new("").manifest_key("t", 0),
            "t/0/manifest.json"
        );
    }

    #[test]
    fn listed_directories_parse_back() {
        let l = ObjectLayout::new("p");
        assert_eq!(l.parse_topic_dir("p/orders/"), Some("orders"));
        assert_eq!(l.parse_topic_dir("q/orders/"), None);
        assert_eq!(l.parse_partition_dir("orders", "p/orders/17/"), Some(17));
        assert_eq!(l.parse_partition_dir("orders", "p/orders/017/"), None);
        assert_eq!(l.parse_partition_dir("orders", "p/orders/x/"), None);
        assert_eq!(
            l.parse_partition_dir("orders", "p/orders/99999999999/"),
            None
        );
    }

    #[test]
    fn topic_names_that_would_break_keys_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
        validate_topic("orders.v2-eu_1").unwrap();
    }
}
