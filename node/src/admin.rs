//! The admin HTTP endpoint: `GET /health`, `/metrics`, `/topics`, `/tiers`,
//! and the load thread's `/load`, `/predictions`, `/rebalance/*` (see
//! `load::http`). A plain
//! blocking thread off the shards: it reads the snapshots each shard
//! publishes twice a second and never touches the data path.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sprawl_shards::{ShardSnapshot, TopicCatalog};

pub struct AdminState {
    pub archive: Option<sprawl_tiered::ArchiveHandle>,
    pub node_id: u32,
    pub shard_count: usize,
    pub started: Instant,
    pub listen: SocketAddr,
    pub data_dir: std::path::PathBuf,
    pub snapshots: Vec<Arc<Mutex<ShardSnapshot>>>,
    pub catalog: Arc<Mutex<TopicCatalog>>,
    /// None when the node runs without its load thread.
    pub load: Option<crate::load::LoadHandle>,
    /// The cluster view, when gossip is on.
    pub cluster: Option<crate::gossip::SharedView>,
    /// The metadata Raft view, when the cluster plane runs.
    pub routes: Option<crate::cluster::meta::SharedRoutes>,
    /// Requests into the shards (replica moves).
    pub control: sprawl_shards::ControlHandle,
}

/// Binds `addr` and serves on a background thread.
pub fn spawn(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("admin-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                // One short-lived thread per request: admin traffic is tiny.
                let _ = std::thread::Builder::new()
                    .name("admin-req".into())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &state) {
                            tracing::debug!(error = %e, "admin request failed");
                        }
                    });
            }
        })?;
    Ok(bound)
}

fn serve(stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain headers (bounded) so clients see a clean close.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let routed = match &state.load {
        Some(load) => crate::load::http::route(method, path, load),
        None => crate::load::http::route_disabled(path),
    };
    let routed = routed.or_else(|| {
        (method == "POST" && path.split('?').next() == Some("/partitions/move-replica"))
            .then(|| move_replica(state, path))
    });
    let (status, content_type, body) = if let Some(answer) = routed {
        match answer {
            Ok(value) => ("200 OK", "application/json", value.to_string() + "\n"),
            Err((code, message)) => (
                match code {
                    400 => "400 Bad Request",
                    404 => "404 Not Found",
                    405 => "405 Method Not Allowed",
                    409 => "409 Conflict",
                    503 => "503 Service Unavailable",
                    _ => "500 Internal Server Error",
                },
                "application/json",
                json!({ "error": message }).to_string() + "\n",
            ),
        }
    } else if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is supported\n".to_string(),
        )
    } else {
        match path.split('?').next().unwrap_or("") {
            "/health" => ("200 OK", "application/json", health(state)),
            "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics(state)),
            "/topics" => ("200 OK", "application/json", topics(state)),
            "/tiers" => ("200 OK", "application/json", tiers(state)),
            "/cluster" => match &state.cluster {
                Some(view) => {
                    let mut answer = view.lock().expect("cluster view lock").to_json();
                    answer["metadata"] = match &state.routes {
                        Some(r) => r.read().expect("routes lock").to_json(),
                        None => Value::Null,
                    };
                    ("200 OK", "application/json", answer.to_string() + "\n")
                }
                None => (
                    "200 OK",
                    "application/json",
                    json!({ "enabled": false, "members": [] }).to_string() + "\n",
                ),
            },
            _ => (
                "404 Not Found",
                "text/plain",
                "try /health, /metrics, /topics, /tiers, /load, /predictions or /rebalance/status\n".to_string(),
            ),
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// `POST /partitions/move-replica?topic=T&partition=P&from=N&to=M`, on the
/// partition's leader: moves the replica on node N to node M, live, and
/// answers when the move is done (it blocks this request's thread only).
fn move_replica(state: &AdminState, path: &str) -> Result<Value, (u16, String)> {
    let query: std::collections::HashMap<&str, &str> = path
        .split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    let field = |k: &str| {
        query
            .get(k)
            .copied()
            .ok_or_else(|| (400, format!("missing query parameter {k}")))
    };
    let number = |k: &str| {
        field(k)?
            .parse::<u64>()
            .map_err(|e| (400, format!("{k}: {e}")))
    };
    let request = sprawl_shards::ShardRequest::MoveReplica {
        topic: field("topic")?.to_string(),
        partition: number("partition")? as u32,
        from: number("from")?,
        to: number("to")?,
    };
    match state.control.call(request) {
        Ok(sprawl_shards::ShardReply::ReplicaMoved(r)) => Ok(json!({
            "replicas": r.replicas,
            "caught_up_ms": r.caught_up_ms,
            "duration_ms": r.duration_ms,
        })),
        Ok(other) => Err((500, format!("unexpected answer {other:?}"))),
        Err(e) => {
            let code = match &e {
                sprawl_shards::ShardError::UnknownTopic(_)
                | sprawl_shards::ShardError::UnknownPartition { .. } => 404,
                sprawl_shards::ShardError::InvalidRequest(_) => 400,
                sprawl_shards::ShardError::NotLeader(_) => 409,
                _ => 503,
            };
            Err((code, e.to_string()))
        }
    }
}

fn snapshots(state: &AdminState) -> Vec<ShardSnapshot> {
    state
        .snapshots
        .iter()
        .map(|s| s.lock().expect("snapshot lock").clone())
        .collect()
}

fn health(state: &AdminState) -> String {
    let snaps = snapshots(state);
    let disk_alarm = snaps.iter().any(|s| s.disk_alarm);
    let disk_free = snaps
        .iter()
        .map(|s| s.disk_free_bytes)
        .min()
        .unwrap_or(u64::MAX);
    json!({
        "status": if disk_alarm { "degraded" } else { "ok" },
        "alarms": if disk_alarm { vec!["data disk nearly full: producers are throttled"] } else { Vec::new() },
        "disk_free_bytes": disk_free,
        "node_id": state.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "shards": state.shard_count,
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "listen": state.listen.to_string(),
        "data_dir": state.data_dir.display().to_string(),
    })
    .to_string()
        + "\n"
}

fn metrics(state: &AdminState) -> String {
    let snaps = snapshots(state);
    let s3 = state
        .archive
        .as_ref()
        .map(sprawl_tiered::ArchiveHandle::stats);
    let mut text = crate::prometheus::render(&snaps, state.started.elapsed().as_secs_f64());
    if state.archive.is_some() {
        text.push_str(&crate::prometheus::render_tiers(&snaps, s3.as_ref()));
    }
    if let Some(view) = &state.cluster {
        text.push_str(&view.lock().expect("cluster view lock").render_prometheus());
    }
    if let Some(routes) = &state.routes {
        text.push_str(&routes.read().expect("routes lock").render_prometheus());
    }
    text
}

fn topics(state: &AdminState) -> String {
    let catalog = state.catalog.lock().expect("catalog lock").clone();
    let snaps = snapshots(state);
    let topics: Vec<_> = catalog
        .topics
        .iter()
        .map(|(name, cfg)| {
            let mut partitions: Vec<_> = snaps
                .iter()
                .flat_map(|s| {
                    s.partitions
                        .iter()
                        .filter(|p| &p.topic == name)
                        .map(move |p| (s.shard, p))
                })
                .map(|(shard, p)| {
                    json!({
                        "partition": p.partition,
                        "shard": shard,
                        "log_start_offset": p.offsets.log_start,
                        "high_watermark": p.offsets.high_watermark,
                        "log_end_offset": p.offsets.log_end,
                        "size_bytes": p.offsets.size_bytes,
                        "segments": p.segments,
                        "replica": p.replica.as_ref().map(|r| json!({
                            "leader": r.leader,
                            "term": r.term,
                            "commit_index": r.commit_index,
                            "voters": r.voters,
                            "learners": r.learners,
                            "in_sync": r.in_sync(),
                            "followers": r.followers.iter().map(|(node, lag, active)| json!({
                                "node": node, "lag_entries": lag, "active": active,
                            })).collect::<Vec<_>>(),
                        })),
                    })
                })
                .collect();
            partitions.sort_by_key(|p| p["partition"].as_u64());
            json!({
                "name": name,
                "partitions": cfg.partitions,
                "retention_bytes": cfg.retention_bytes,
                "retention_ms": cfg.retention_ms,
                "partition_state": partitions,
            })
        })
        .collect();
    json!({ "topics": topics }).to_string() + "\n"
}

/// Per partition and tier: offset ranges and bytes, upload lag; S3 stats.
fn tiers(state: &AdminState) -> String {
    let snaps = snapshots(state);
    let partitions: Vec<_> = snaps
        .iter()
        .flat_map(|s| s.partitions.iter())
        .map(|p| {
            let cold = p.cold.clone().unwrap_or_default();
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "local": {
                    "start_offset": p.local_log_start,
                    "end_offset": p.offsets.log_end,
                    "bytes": p.offsets.size_bytes,
                },
                "archive": {
                    "start_offset": cold.archive_start,
                    "end_offset": cold.archive_end,
                    "segments": cold.archived_segments,
                    "bytes": cold.archived_bytes,
                },
                "upload_lag": { "segments": cold.upload_lag_segments, "bytes": cold.upload_lag_bytes },
                "uploads": cold.uploads,
                "upload_failures": cold.upload_failures,
            })
        })
        .collect();
    let s3 = state.archive.as_ref().map(|a| format!("{:?}", a.stats()));
    json!({ "enabled": state.archive.is_some(), "partitions": partitions, "s3": s3 }).to_string()
        + "\n"
}
