//! `sprawlctl status`: who the node is (from the handshake), its topics
//! with their sizes, and optionally the admin endpoint's `/health`.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use sprawl_client::{Client, NodeIdentity, TopicInfo};

use crate::admin_http::AdminEndpoint;
use crate::cli::{Format, StatusArgs};
use crate::output::{print, print_json};
use crate::table::{Align, Table};

pub async fn run(
    client: &Client,
    args: &StatusArgs,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let topics = client.list_topics(true).await?;
    let node = client
        .node()
        .context("the connection to the node closed right after the handshake")?;
    let health = match &args.admin {
        None => None,
        Some(addr) => Some(AdminEndpoint::new(addr, timeout).get("/health").await?),
    };
    match format {
        Format::Json => print_json(&json!({
            "node": node_json(&node),
            "topics": topics.iter().map(topic_summary_json).collect::<Vec<_>>(),
            "health": health,
        })),
        Format::Text => {
            let mut text = node_text(&node);
            text += &topics_text(&topics);
            if let (Some(addr), Some(health)) = (&args.admin, &health) {
                text += &format!("health (http://{addr}/health): {}\n", health_text(health));
            }
            print(&text)
        }
    }
}

fn node_text(node: &NodeIdentity) -> String {
    let cluster = if node.cluster_id.is_empty() {
        String::new()
    } else {
        format!(", cluster {}", node.cluster_id)
    };
    format!(
        "node {} at {}: sprawl {}, {} shard{}, protocol {}{cluster}\n",
        node.node_id,
        node.addr,
        node.server_version,
        node.shard_count,
        if node.shard_count == 1 { "" } else { "s" },
        node.protocol_version,
    )
}

fn node_json(node: &NodeIdentity) -> Value {
    json!({
        "node_id": node.node_id,
        "addr": node.addr.to_string(),
        "version": node.server_version,
        "cluster_id": node.cluster_id,
        "shards": node.shard_count,
        "protocol_version": node.protocol_version,
        "frame_bytes_max": node.frame_bytes_max,
    })
}

/// Messages retained (offsets are contiguous) and bytes, over partitions.
fn totals(topic: &TopicInfo) -> (u64, u64) {
    topic
        .partitions
        .iter()
        .fold((0, 0), |(messages, bytes), p| {
            (
                messages + p.high_watermark.saturating_sub(p.log_start_offset),
                bytes + p.size_bytes,
            )
        })
}

fn topics_text(topics: &[TopicInfo]) -> String {
    if topics.is_empty() {
        return "no topics\n".into();
    }
    let mut table = Table::new(&[
        ("TOPIC", Align::Left),
        ("PARTITIONS", Align::Right),
        ("MESSAGES", Align::Right),
        ("BYTES", Align::Right),
    ]);
    for topic in topics {
        let (messages, bytes) = totals(topic);
        table.row(vec![
            topic.name.clone(),
            topic.partition_count.to_string(),
            messages.to_string(),
            bytes.to_string(),
        ]);
    }
    table.render()
}

fn topic_summary_json(topic: &TopicInfo) -> Value {
    let (messages, bytes) = totals(topic);
    json!({
        "name": topic.name,
        "partition_count": topic.partition_count,
        "messages": messages,
        "size_bytes": bytes,
    })
}

fn health_text(health: &Value) -> String {
    match health.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => health.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_client::PartitionInfo;

    #[test]
    fn health_is_one_line_of_fields() {
        let health = json!({"status": "ok", "shards": 2});
        assert_eq!(health_text(&health), "shards=2 status=ok");
        assert_eq!(health_text(&json!("up")), "\"up\"");
    }

    #[test]
    fn topic_totals_add_partitions() {
        let p = |partition, start, hw, bytes| PartitionInfo {
            partition,
            error: None,
            leader_node_id: Some(1),
            leader_epoch: 0,
            log_start_offset: start,
            high_watermark: hw,
            log_end_offset: hw,
            size_bytes: bytes,
            local_log_start_offset: start,
            local_bytes: bytes,
            archive_start_offset: None,
            archive_end_offset: None,
            archive_bytes: 0,
        };
        let topic = TopicInfo {
            name: "t".into(),
            partition_count: 2,
            replication_factor: 1,
            retention_bytes: -1,
            retention_ms: -1,
            partitions: vec![p(0, 10, 25, 1000), p(1, 0, 5, 300)],
        };
        assert_eq!(totals(&topic), (20, 1300));
        assert_eq!(
            topics_text(&[topic]),
            "TOPIC  PARTITIONS  MESSAGES  BYTES\nt               2        20   1300\n"
        );
    }
}
