//! `sprawlctl cluster status`: the members a node's gossip sees (state,
//! rack, addresses, load), from the admin endpoint's `/cluster`.

use std::time::Duration;

use serde_json::Value;

use crate::admin_http::AdminEndpoint;
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
