//! `sprawlctl cluster status`: the members a node's gossip sees (state,
//! rack, addresses, load), from the admin endpoint's `/cluster`.

use std::time::Duration;

use serde_json::Value;

use crate::admin_http::{query, AdminEndpoint, Method};
use crate::cli::{AdminArgs, Format};
use crate::output::{print, print_json};
use crate::table::{Align, Table};

pub async fn status(args: &AdminArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let answer = AdminEndpoint::new(&args.admin, timeout)
        .get("/cluster")
        .await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&status_text(&answer)),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The text form: one row per member, this node first.
pub fn status_text(answer: &Value) -> String {
    if answer["enabled"] == Value::Bool(false) {
        return "clustering is off on this node (start it with --gossip and --cluster-key)\n"
            .into();
    }
    let mut table = Table::new(&[
        ("NODE_ID", Align::Right),
        ("STATE", Align::Left),
        ("RACK", Align::Left),
        ("QUIC", Align::Left),
        ("ADMIN", Align::Left),
        ("SHARDS", Align::Right),
        ("MSGS_IN/S", Align::Right),
    ]);
    let mut row = |m: &Value, me: bool| {
        let state = cell(&m["state"]);
        table.row(vec![
            cell(&m["node_id"]),
            if me {
                format!("{state} (this node)")
            } else {
                state
            },
            cell(&m["rack"]),
            cell(&m["quic"]),
            cell(&m["admin"]),
            cell(&m["shards"]),
            cell(&m["load"]["messages_in_per_sec"]),
        ]);
    };
    row(&answer["local"], true);
    let members = answer["members"].as_array().cloned().unwrap_or_default();
    for m in &members {
        row(m, false);
    }
    let alive = members.iter().filter(|m| m["state"] == "alive").count() + 1;
    let g = &answer["gossip"];
    let meta = &answer["metadata"];
    let metadata = if meta.is_object() {
        format!(
            "metadata Raft: leader {}, term {}, voters {}, learners {}; this node is {} (applied index {})\n",
            cell(&meta["leader"]),
            cell(&meta["term"]),
            cell(&meta["voters"]),
            cell(&meta["learners"]),
            cell(&meta["role"]),
            cell(&meta["applied_index"]),
        )
    } else {
        "metadata Raft: off on this node (start it with --cluster-ca)\n".to_string()
    };
    format!(
        "{alive} of {} members alive; {}\n{}gossip: {} datagrams in, {} out, {} rejected ({} failed authentication, {} under an unknown key)\n{metadata}",
        members.len() + 1,
        if answer["joined"] == Value::Bool(true) { "joined" } else { "not joined yet (retrying the seeds)" },
        table.render(),
        cell(&g["datagrams_received"]),
        cell(&g["datagrams_sent"]),
        cell(&g["rejected_total"]),
        cell(&g["rejected_auth_failed"]),
        cell(&g["rejected_unknown_key"]),
    )
}

/// `1,2,3` from a JSON array of node ids; `-` when empty or absent.
fn id_list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(","))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// `node:lag,…` from a replica view's followers; `-` when it has none.
fn follower_lags(replica: &Value) -> String {
    replica["followers"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| format!("{}:{}", cell(&f["node"]), cell(&f["lag_entries"])))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// Every member's admin address (this node's first), from `/cluster`.
async fn member_admins(args: &AdminArgs, timeout: Duration) -> anyhow::Result<Vec<(u64, String)>> {
    let answer = AdminEndpoint::new(&args.admin, timeout)
        .get("/cluster")
        .await?;
    let mut out = Vec::new();
    for m in
        std::iter::once(&answer["local"]).chain(answer["members"].as_array().into_iter().flatten())
    {
        if let (Some(id), Some(admin)) = (m["node_id"].as_u64(), m["admin"].as_str()) {
            if m["state"] == "alive" || m == &answer["local"] {
                out.push((id, admin.to_string()));
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "{} knows no cluster members", args.admin);
    Ok(out)
}

/// `(node, partition state)` of every replica of `topic` the members hold.
async fn replica_states(
    args: &AdminArgs,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(u64, Value)>> {
    let mut out = Vec::new();
    for (node, admin) in member_admins(args, timeout).await? {
        let Ok(answer) = AdminEndpoint::new(&admin, timeout).get("/topics").await else {
            continue;
        };
        let topics = answer["topics"].as_array().cloned().unwrap_or_default();
        for t in topics.iter().filter(|t| t["name"] == topic) {
            for p in t["partition_state"].as_array().into_iter().flatten() {
                if !p["replica"].is_null() {
                    out.push((node, p.clone()));
                }
            }
        }
    }
    Ok(out)
}

pub async fn replicas(
    args: &AdminArgs,
    topic: &str,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let states = replica_states(args, topic, timeout).await?;
    anyhow::ensure!(
        !states.is_empty(),
        "no node holds a replica of {topic:?} (not replicated, or unknown)"
    );
    if let Format::Json = format {
        let rows: Vec<Value> = states
            .iter()
            .map(|(node, p)| serde_json::json!({ "node": node, "partition": p }))
            .collect();
        return print_json(&Value::Array(rows));
    }
    let mut table = Table::new(&[
        ("PARTITION", Align::Right),
        ("NODE", Align::Right),
        ("ROLE", Align::Left),
        ("TERM", Align::Right),
        ("COMMIT", Align::Right),
        ("HIGH_WATERMARK", Align::Right),
        ("LOG_END", Align::Right),
        ("VOTERS", Align::Left),
        ("IN_SYNC", Align::Left),
        ("FOLLOWER_LAG", Align::Left),
    ]);
    let mut states = states;
    states.sort_by_key(|(node, p)| (p["partition"].as_u64(), *node));
    for (node, p) in &states {
        let r = &p["replica"];
        let leader = r["leader"].as_u64();
        let role = match leader {
            Some(l) if l == *node => "leader",
            Some(_) => "follower",
            None => "no leader",
        };
        table.row(vec![
            cell(&p["partition"]),
            node.to_string(),
            role.to_string(),
            cell(&r["term"]),
            cell(&r["commit_index"]),
            cell(&p["high_watermark"]),
            cell(&p["log_end_offset"]),
            id_list(&r["voters"]),
            id_list(&r["in_sync"]),
            follower_lags(r),
        ]);
    }
    print(&table.render())
}

/// Each replicated partition of `topic` as its leader sees it:
/// `(leader node, partition state)`, by partition.
pub async fn leader_views(
    admin: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(u64, Value)>> {
    let args = AdminArgs {
        admin: admin.to_string(),
    };
    let mut views: Vec<(u64, Value)> = replica_states(&args, topic, timeout)
        .await?
        .into_iter()
        .filter(|(node, p)| p["replica"]["leader"].as_u64() == Some(*node))
        .collect();
    views.sort_by_key(|(_, p)| p["partition"].as_u64());
    Ok(views)
}

/// The leaders' views as a table: replicas, in-sync replicas, lag per
/// follower.
pub fn replication_table(views: &[(u64, Value)]) -> String {
    if views.is_empty() {
        return "replication: no replicated partition with a leader (not replicated, or an \
                election is running)\n"
            .to_string();
    }
    let mut table = Table::new(&[
        ("PARTITION", Align::Right),
        ("LEADER", Align::Right),
        ("TERM", Align::Right),
        ("REPLICAS", Align::Left),
        ("IN_SYNC", Align::Left),
        ("HIGH_WATERMARK", Align::Right),
        ("FOLLOWER_LAG", Align::Left),
    ]);
    for (node, p) in views {
        let r = &p["replica"];
        table.row(vec![
            cell(&p["partition"]),
            node.to_string(),
            cell(&r["term"]),
            id_list(&r["voters"]),
            id_list(&r["in_sync"]),
            cell(&p["high_watermark"]),
            follower_lags(r),
        ]);
    }
    table.render()
}

pub async fn move_replica(
    args: &AdminArgs,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let admins = member_admins(args, timeout).await?;
    // Moving the leader's own replica hands leadership on first (the node
    // answers 409 "retry there"): find the leader again and retry.
    let mut attempt = 0;
    let (leader, answer) = loop {
        attempt += 1;
        let states = replica_states(args, topic, timeout).await?;
        let leader = states
            .iter()
            .find(|(node, p)| {
                p["partition"].as_u64() == Some(u64::from(partition))
                    && p["replica"]["leader"].as_u64() == Some(*node)
            })
            .map(|(node, _)| *node);
        let Some(leader) = leader else {
            anyhow::ensure!(
                attempt < 20,
                "{topic}/{partition}: no replica reports itself leader"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let admin = admins
            .iter()
            .find(|(node, _)| *node == leader)
            .map(|(_, a)| a.clone())
            .expect("the leader answered through its admin address");
        match send_move(&admin, topic, partition, from, to, timeout).await {
            Ok(answer) => break (leader, answer),
            Err(e) if attempt < 20 && format!("{e:#}").contains("retry there") => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    };
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&format!(
            "moved {topic}/{partition} from node {from} to node {to} through leader {leader} in {} ms \
             (caught up after {} ms); replicas now {}\n",
            cell(&answer["duration_ms"]),
            cell(&answer["caught_up_ms"]),
            cell(&answer["replicas"])
        )),
    }
}

async fn send_move(
    admin: &str,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let target = format!(
        "/partitions/move-replica{}",
        query(&[
            ("topic", topic.to_string()),
            ("partition", partition.to_string()),
            ("from", from.to_string()),
            ("to", to.to_string()),
        ])
    );
    // A move waits for the new replica to catch up: give it minutes.
    AdminEndpoint::new(admin, timeout)
        .request(Method::Post, &target, Duration::from_secs(300).max(timeout))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_render_with_this_node_first() {
        let answer = serde_json::json!({
            "joined": true,
            "local": {"node_id": 7, "state": "alive", "rack": "r1", "quic": "127.0.0.2:7470",
                      "admin": "127.0.0.2:7480", "shards": 2, "load": {"messages_in_per_sec": 10}},
            "members": [{"node_id": 9, "state": "down", "rack": null, "quic": "127.0.0.3:7470",
                         "admin": "127.0.0.3:7480", "shards": 1, "load": null}],
            "gossip": {"datagrams_received": 5, "datagrams_sent": 6, "rejected_total": 1,
                       "rejected_auth_failed": 1, "rejected_unknown_key": 0},
        });
        let text = status_text(&answer);
        assert!(text.starts_with("1 of 2 members alive; joined\n"), "{text}");
        let seven = text.find("alive (this node)").unwrap();
        let nine = text.find("down").unwrap();
        assert!(seven < nine, "{text}");
        assert!(
            text.contains("1 rejected (1 failed authentication"),
            "{text}"
        );
        let off = status_text(&serde_json::json!({"enabled": false, "members": []}));
        assert!(off.contains("clustering is off"), "{off}");
    }
}
