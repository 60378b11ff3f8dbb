//! `sprawlctl topic create | list | describe | delete`.

use anyhow::Context;
use serde_json::{json, Value};
use sprawl_client::{Client, ErrorCode, PartitionInfo, RemoteError, TopicInfo};

use crate::cli::{Format, TopicCommand};

/// Bound of each admin request of the replication view.
const REPLICATION_VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::output::{print, print_json};
use crate::table::{retention, Align, Table};

pub async fn run(client: &Client, command: &TopicCommand, format: Format) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            retention_bytes,
            retention_ms,
            if_not_exists,
        } => {
            let created = client
                .create_topic_replicated(
                    name,
                    partitions.unwrap_or(0),
                    *replication_factor,
                    *retention_bytes,
                    *retention_ms,
                )
                .await;
            let (created, topic) = match created {
                Ok(topic) => (true, topic),
                Err(e) if *if_not_exists && e.remote_code() == Some(ErrorCode::TopicExists) => {
                    (false, describe(client, name).await?)
                }
                Err(e) => return Err(e.into()),
            };
            match format {
                Format::Json => print_json(&json!({
                    "created": created,
                    "topic": topic_json(&topic),
                })),
                Format::Text if created => {
                    print(&format!("created topic {name}: {}\n", settings(&topic)))
                }
                Format::Text => print(&format!(
                    "topic {name} exists already: {}\n",
                    settings(&topic)
                )),
            }
        }
        TopicCommand::List => {
            let topics = client.list_topics(false).await?;
            match format {
                Format::Json => print_json(&json!({
                    "topics": topics.iter().map(topic_json).collect::<Vec<_>>(),
                })),
                Format::Text => print(&list_table(&topics)),
            }
        }
        TopicCommand::Describe { name, admin } => {
            let topic = describe(client, name).await?;
            let replication = match admin {
                Some(admin) => {
                    Some(crate::cluster::leader_views(admin, name, REPLICATION_VIEW_TIMEOUT).await?)
                }
                None => None,
            };
            match format {
                Format::Json => {
                    let mut value = topic_json(&topic);
                    if let Some(views) = &replication {
                        value["replication"] = Value::Array(
                            views
                                .iter()
                                .map(|(node, p)| json!({ "leader": node, "partition": p }))
                                .collect(),
                        );
                    }
                    print_json(&value)
                }
                Format::Text => {
                    let mut text = format!(
                        "topic {name}: {}\n\n{}",
                        settings(&topic),
                        partition_table(&topic.partitions)
                    );
                    if let Some(views) = &replication {
                        text.push('\n');
                        text.push_str(&crate::cluster::replication_table(views));
                    }
                    print(&text)
                }
            }
        }
        TopicCommand::Delete { name, if_exists } => {
            let deleted = match client.delete_topic(name).await {
                Ok(()) => true,
                Err(e) if *if_exists && e.remote_code() == Some(ErrorCode::UnknownTopic) => false,
                Err(e) => return Err(e.into()),
            };
            match format {
                Format::Json => print_json(&json!({ "topic": name, "deleted": deleted })),
                Format::Text if deleted => print(&format!("deleted topic {name}\n")),
                Format::Text => print(&format!("topic {name} does not exist\n")),
            }
        }
    }
}

/// DescribeTopic, with a hint when the topic does not exist.
pub async fn describe(client: &Client, name: &str) -> anyhow::Result<TopicInfo> {
    match client.describe_topic(name).await {
        Err(e) if e.remote_code() == Some(ErrorCode::UnknownTopic) => Err(anyhow::anyhow!(
            "topic {name:?} does not exist (create it with: sprawlctl topic create {name})"
        )),
        other => other.with_context(|| format!("describe topic {name:?}")),
    }
}

fn settings(topic: &TopicInfo) -> String {
    format!(
        "{} partition{}, replication factor {}, retention-bytes {}, retention-ms {}",
        topic.partition_count,
        if topic.partition_count == 1 { "" } else { "s" },
        topic.replication_factor,
        retention(topic.retention_bytes, false),
        retention(topic.retention_ms, true),
    )
}

fn list_table(topics: &[TopicInfo]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("PARTITIONS", Align::Right),
        ("RETENTION_BYTES", Align::Right),
        ("RETENTION_MS", Align::Right),
    ]);
    let limit = |v: i64| {
        if v < 0 {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    for topic in topics {
        table.row(vec![
            topic.name.clone(),
            topic.partition_count.to_string(),
            limit(topic.retention_bytes),
            limit(topic.retention_ms),
        ]);
    }
    table.render()
}

fn partition_table(partitions: &[PartitionInfo]) -> String {
    let with_errors = partitions.iter().any(|p| p.error.is_some());
    let mut columns = vec![
        ("PARTITION", Align::Right),
        ("LEADER", Align::Right),
        ("LOG_START", Align::Right),
        ("HIGH_WATERMARK", Align::Right),
        ("LOG_END", Align::Right),
        ("BYTES", Align::Right),
        ("LOCAL_START", Align::Right),
        ("LOCAL_BYTES", Align::Right),
        ("ARCHIVE", Align::Right),
        ("ARCHIVE_BYTES", Align::Right),
    ];
    if with_errors {
        columns.push(("ERROR", Align::Left));
    }
    let mut table = Table::new(&columns);
    for p in partitions {
        let mut row = vec![
            p.partition.to_string(),
            p.leader_node_id.map_or("-".into(), |id| id.to_string()),
            p.log_start_offset.to_string(),
            p.high_watermark.to_string(),
            p.log_end_offset.to_string(),
            p.size_bytes.to_string(),
            p.local_log_start_offset.to_string(),
            p.local_bytes.to_string(),
            archive_range(p),
            p.archive_bytes.to_string(),
        ];
        if with_errors {
            row.push(p.error.as_ref().map_or(String::new(), |e| e.to_string()));
        }
        table.row(row);
    }
    table.render()
}

/// `start..end` of what the archive holds, `-` when it holds nothing.
fn archive_range(p: &PartitionInfo) -> String {
    match (p.archive_start_offset, p.archive_end_offset) {
        (Some(start), Some(end)) => format!("{start}..{end}"),
        _ => "-".to_owned(),
    }
}

pub fn topic_json(topic: &TopicInfo) -> Value {
    let mut value = json!({
        "name": topic.name,
        "partition_count": topic.partition_count,
        "replication_factor": topic.replication_factor,
        "retention_bytes": topic.retention_bytes,
        "retention_ms": topic.retention_ms,
    });
    if !topic.partitions.is_empty() {
        value["partitions"] = topic.partitions.iter().map(partition_json).collect();
    }
    value
}

fn partition_json(p: &PartitionInfo) -> Value {
    json!({
        "partition": p.partition,
        "error": p.error.as_ref().map(error_json),
        "leader_node_id": p.leader_node_id,
        "leader_epoch": p.leader_epoch,
        "log_start_offset": p.log_start_offset,
        "high_watermark": p.high_watermark,
        "log_end_offset": p.log_end_offset,
        "size_bytes": p.size_bytes,
        "local_log_start_offset": p.local_log_start_offset,
        "local_bytes": p.local_bytes,
        "archive_start_offset": p.archive_start_offset,
        "archive_end_offset": p.archive_end_offset,
        "archive_bytes": p.archive_bytes,
    })
}

fn error_json(e: &RemoteError) -> Value {
    json!({ "code": e.code.name(), "message": e.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: u32, hw: u64) -> PartitionInfo {
        PartitionInfo {
            partition,
            error: None,
            leader_node_id: Some(1),
            leader_epoch: 0,
            log_start_offset: 0,
            high_watermark: hw,
            log_end_offset: hw,
            size_bytes: hw * 100,
            local_log_start_offset: 0,
            local_bytes: hw * 100,
            archive_start_offset: None,
            archive_end_offset: None,
            archive_bytes: 0,
        }
    }

    /// Offsets `0..8` archived, `6..hw` local.
    fn tiered(partition_index: u32, hw: u64) -> PartitionInfo {
        PartitionInfo {
            local_log_start_offset: 6,
            local_bytes: (hw - 6) * 100,
            size_bytes: (hw - 6) * 100,
            archive_start_offset: Some(0),
            archive_end_offset: Some(8),
            archive_bytes: 800,
            ..partition(partition_index, hw)
        }
    }

    #[test]
    fn partitions_table_has_the_offsets_per_tier() {
        let text = partition_table(&[partition(0, 5), tiered(1, 12)]);
        assert_eq!(
            text,
            "PARTITION  LEADER  LOG_START  HIGH_WATERMARK  LOG_END  BYTES  LOCAL_START  LOCAL_BYTES  ARCHIVE  ARCHIVE_BYTES\n\
             \x20       0       1          0               5        5    500            0          500        -              0\n\
             \x20       1       1          0              12       12    600            6          600     0..8            800\n"
        );
    }

    #[test]
    fn topic_json_names_its_fields() {
        let topic = TopicInfo {
            name: "orders".into(),
            partition_count: 2,
            replication_factor: 1,
            retention_bytes: -1,
            retention_ms: 3_600_000,
            partitions: vec![partition(0, 5), tiered(1, 12)],
        };
        let v = topic_json(&topic);
        assert_eq!(v["partitions"][1]["high_watermark"], 12);
        assert_eq!(v["partitions"][1]["local_log_start_offset"], 6);
        assert_eq!(v["partitions"][1]["local_bytes"], 600);
        assert_eq!(v["partitions"][1]["archive_start_offset"], 0);
        assert_eq!(v["partitions"][1]["archive_end_offset"], 8);
        assert_eq!(v["partitions"][1]["archive_bytes"], 800);
        assert!(v["partitions"][0]["archive_start_offset"].is_null());
        assert!(v["partitions"][0]["archive_end_offset"].is_null());
        assert_eq!(v["retention_bytes"], -1);
        assert!(v["partitions"][0]["error"].is_null());
        assert_eq!(
            settings(&topic),
            "2 partitions, replication factor 1, retention-bytes unlimited, \
             retention-ms 3600000 (1h)"
        );
    }
}
