//! The admin endpoints of the load thread and the rebalancer:
//!
//! - `GET /load?scope=&resource=&window=` — recorded series (per second).
//! - `GET /predictions?resource=cpu|memory|message_rate|network&scope=node|shard|partition&horizon=60s`
//! - `GET /rebalance/plan?strategy=predictive|reactive&moves_max=&bytes_max=`
//! - `POST /rebalance/apply?…` — plans as above and carries the plan out.
//! - `GET /rebalance/status` — moves in flight and recent, auto mode.
//! - `POST /rebalance/auto?mode=off|predictive|reactive`
//! - `POST /partitions/move?topic=&partition=&to=` — one move, by hand.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::json;
use sprawl_forecast::{MoveBudget, Resource, ScopeKind, Strategy};
use sprawl_shards::{ShardReply, ShardRequest};

use super::{rebalance, Answer, LoadHandle, Query};

/// Moves one plan makes at most unless told otherwise.
const PLAN_MOVES_DEFAULT: usize = 4;

fn params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.replace("%2F", "/").replace("%2f", "/"))
        })
        .collect()
}

fn bad(message: impl Into<String>) -> (u16, String) {
    (400, message.into())
}

/// `60`, `60s`, `5m`, `1h` → seconds.
pub fn parse_horizon_s(text: &str) -> Result<usize, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let n: usize = number
        .parse()
        .map_err(|_| format!("horizon {text:?} is not a number of seconds (60, 60s, 5m, 1h)"))?;
    let scale = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return Err(format!("horizon {text:?}: unknown unit {unit:?} (s, m, h)")),
    };
    Ok(n * scale)
}

fn strategy(p: &HashMap<String, String>) -> Result<Strategy, (u16, String)> {
    p.get("strategy").map_or(Ok(Strategy::Predictive), |s| {
        s.parse().map_err(|e| bad(format!("{e}")))
    })
}

fn budget(p: &HashMap<String, String>) -> Result<MoveBudget, (u16, String)> {
    let number = |name: &str, default: u64| -> Result<u64, (u16, String)> {
        p.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| bad(format!("{name} must be a whole number, not {v:?}")))
        })
    };
    Ok(MoveBudget {
        moves_max: number("moves_max", PLAN_MOVES_DEFAULT as u64)? as usize,
        bytes_max: number("bytes_max", u64::MAX)?,
    })
}

/// Serves a load or rebalance path; `None` when `path` is not one of them.
pub fn route(method: &str, target: &str, handle: &LoadHandle) -> Option<Answer> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let p = params(query);
    let answer = match (method, path) {
        ("GET", "/load") => load(&p, handle),
        ("GET", "/predictions") => predictions(&p, handle),
        ("GET", "/rebalance/plan") => strategy(&p).and_then(|strategy| {
            handle.ask(Query::Plan {
                strategy,
                budget: budget(&p)?,
            })
        }),
        ("POST", "/rebalance/apply") => apply(&p, handle),
        ("GET", "/rebalance/status") => status(handle),
        ("POST", "/rebalance/auto") => auto(&p, handle),
        ("POST", "/partitions/move") => move_one(&p, handle),
        (_, "/load" | "/predictions" | "/rebalance/plan" | "/rebalance/status") => {
            Err((405, format!("{path} takes GET")))
        }
        (_, "/rebalance/apply" | "/rebalance/auto" | "/partitions/move") => {
            Err((405, format!("{path} takes POST")))
        }
        _ => return None,
    };
    Some(answer)
}

/// The same paths on a node started with `--no-load-forecast`.
pub fn route_disabled(target: &str) -> Option<Answer> {
    let path = target.split('?').next().unwrap_or("");
    let ours = path == "/load"
        || path == "/predictions"
        || path == "/partitions/move"
        || path.starts_with("/rebalance/");
    ours.then(|| {
        Err((
            503,
            "this node runs without its load thread (--no-load-forecast)".to_string(),
        ))
    })
}

fn load(p: &HashMap<String, String>, handle: &LoadHandle) -> Answer {
    let scope = p
        .get("scope")
        .map(|s| {
            ScopeKind::from_query(s)
                .ok_or_else(|| bad(format!("unknown scope {s:?} (node, shard, partition)")))
        })
        .transpose()?;
    let resource = p
        .get("resource")
        .map(|r| {
            Resource::from_query(r).ok_or_else(|| {
                bad(format!(
                    "unknown resource {r:?} (cpu, memory, message_rate, network)"
                ))
            })
        })
        .transpose()?;
    let window_s = match p.get("window") {
        None => 60,
        Some(w) => parse_horizon_s(w).map_err(bad)?,
    };
    handle.ask(Query::Load {
        scope,
        resource,
        window_s,
    })
}

fn predictions(p: &HashMap<String, String>, handle: &LoadHandle) -> Answer {
    let resource = p.get("resource").map_or("message_rate", String::as_str);
    let resource = Resource::from_query(resource).ok_or_else(|| {
        bad(format!(
            "unknown resource {resource:?} (cpu, memory, message_rate, network)"
        ))
    })?;
    let scope = p.get("scope").map_or("node", String::as_str);
    let scope = ScopeKind::from_query(scope)
        .ok_or_else(|| bad(format!("unknown scope {scope:?} (node, shard, partition)")))?;
    let horizon_s = parse_horizon_s(p.get("horizon").map_or("60", String::as_str)).map_err(bad)?;
    handle.ask(Query::Predictions {
        resource,
        scope,
        horizon_s,
    })
}

fn apply(p: &HashMap<String, String>, handle: &LoadHandle) -> Answer {
    let query = Query::Plan {
        strategy: strategy(p)?,
        budget: budget(p)?,
    };
    if handle
        .applying
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err((
            409,
            "a rebalance is already being carried out; see /rebalance/status".into(),
        ));
    }
    let result = (|| {
        let plan_json = handle.ask(query)?;
        let plan: sprawl_forecast::Plan = serde_json::from_value(plan_json.clone())
            .map_err(|e| (500, format!("plan round trip: {e}")))?;
        let moves = rebalance::execute(&plan, &handle.control, &handle.status);
        Ok(json!({ "plan": plan_json, "moves": moves }))
    })();
    handle.applying.store(false, Ordering::Release);
    result
}

fn status(handle: &LoadHandle) -> Answer {
    let status = serde_json::to_value(&*handle.status.lock().expect("rebalance status lock"))
        .map_err(|e| (500, e.to_string()))?;
    let auto = handle.ask(Query::Auto)?;
    Ok(json!({
        "applying": handle.applying.load(Ordering::Acquire),
        "moves": status,
        "auto": auto,
    }))
}

fn auto(p: &HashMap<String, String>, handle: &LoadHandle) -> Answer {
    let mode = p.get("mode").map_or("", String::as_str);
    let strategy = match mode {
        "off" => None,
        other => Some(other.parse::<Strategy>().map_err(|_| {
            bad(format!(
                "mode must be off, predictive or reactive, not {other:?}"
            ))
        })?),
    };
    handle.ask(Query::SetAuto(strategy))
}

fn move_one(p: &HashMap<String, String>, handle: &LoadHandle) -> Answer {
    let topic = p
        .get("topic")
        .ok_or_else(|| bad("topic= is required"))?
        .clone();
    let number = |name: &str| -> Result<u64, (u16, String)> {
        p.get(name)
            .ok_or_else(|| bad(format!("{name}= is required")))?
            .parse()
            .map_err(|_| bad(format!("{name} must be a whole number")))
    };
    let (partition, to) = (number("partition")? as u32, number("to")? as usize);
    let started_unix_ms = sprawl_shards::shard::now_ms();
    let result = handle.control.call(ShardRequest::MovePartition {
        topic: topic.clone(),
        partition,
        to,
    });
    let mut record = rebalance::MoveRecord {
        partition: format!("{topic}/{partition}"),
        from_shard: u32::MAX,
        to_shard: to as u32,
        reason: "moved by hand".into(),
        state: "done",
        started_unix_ms,
        duration_ms: Some((sprawl_shards::shard::now_ms() - started_unix_ms).max(0) as u64),
        error: None,
    };
    match &result {
        Ok(ShardReply::Moved { from, .. }) => record.from_shard = *from as u32,
        Ok(_) | Err(_) => {
            record.state = "failed";
            record.error = Some(match &result {
                Err(e) => e.to_string(),
                Ok(other) => format!("unexpected reply {other:?}"),
            });
        }
    }
    // Refusals (already there, unknown topic) are not moves: not recorded.
    if !matches!(
        result,
        Err(sprawl_shards::ShardError::InvalidRequest(_)
            | sprawl_shards::ShardError::UnknownTopic(_))
    ) {
        rebalance::record_manual(&handle.status, record);
    }
    match result {
        Ok(ShardReply::Moved {
            from,
            to,
            log_end,
            duration_ms,
        }) => Ok(json!({
            "partition": format!("{topic}/{partition}"),
            "from_shard": from,
            "to_shard": to,
            "log_end_offset": log_end,
            "duration_ms": duration_ms,
        })),
        Ok(other) => Err((500, format!("unexpected reply {other:?}"))),
        Err(e) => Err((
            match e {
                sprawl_shards::ShardError::UnknownTopic(_) => 404,
                sprawl_shards::ShardError::InvalidRequest(_) => 400,
                sprawl_shards::ShardError::PartitionMoving(_) => 409,
                _ => 500,
            },
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_parse_with_units() {
        assert_eq!(parse_horizon_s("60"), Ok(60));
        assert_eq!(parse_horizon_s("60s"), Ok(60));
        assert_eq!(parse_horizon_s("5m"), Ok(300));
        assert_eq!(parse_horizon_s("1h"), Ok(3600));
        assert!(parse_horizon_s("soon").is_err());
        assert!(parse_horizon_s("5d").is_err());
    }

    #[test]
    fn query_strings_split_and_unescape_slashes() {
        let p = params("topic=a%2Fb&partition=3&flag");
        assert_eq!(p["topic"], "a/b");
        assert_eq!(p["partition"], "3");
        assert_eq!(p["flag"], "");
    }
}
