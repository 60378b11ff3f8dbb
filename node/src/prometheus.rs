//! Shard snapshots in the Prometheus text exposition format.

use std::fmt::Write;

use sprawl_shards::{PartitionSnapshot, ShardSnapshot};

/// `(metric name, help, value of one shard)`.
type ShardMetric = (&'static str, &'static str, fn(&ShardSnapshot) -> u64);
/// `(metric name, help, value of one partition's cold tier)`.
type TierMetric = (
    &'static str,
    &'static str,
    fn(&sprawl_shards::cold::ColdSnapshot) -> u64,
);
/// `(metric name, help, value of one partition)`.
type PartitionMetric = (&'static str, &'static str, fn(&PartitionSnapshot) -> u64);

/// Renders every shard's counters, latency summaries and partition gauges.
pub fn render(snapshots: &[ShardSnapshot], uptime_s: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sprawl_uptime_seconds Seconds since the node started."
    );
    let _ = writeln!(out, "# TYPE sprawl_uptime_seconds gauge");
    let _ = writeln!(out, "sprawl_uptime_seconds {uptime_s:.3}");
    let counters: [ShardMetric; 17] = [
        ("sprawl_messages_in_total", "Records appended.", |s| {
            s.messages_in
        }),
        ("sprawl_bytes_in_total", "Batch bytes appended.", |s| {
            s.bytes_in
        }),
        (
            "sprawl_messages_out_total",
            "Records served to fetches and subscriptions.",
            |s| s.messages_out,
        ),
        ("sprawl_bytes_out_total", "Batch bytes served.", |s| {
            s.bytes_out
        }),
        (
            "sprawl_produce_requests_total",
            "Produce requests handled by the owner shard.",
            |s| s.produce_requests,
        ),
        (
            "sprawl_fetch_requests_total",
            "Fetches handled by the owner shard.",
            |s| s.fetch_requests,
        ),
        (
            "sprawl_forwarded_requests_total",
            "Requests forwarded to another shard.",
            |s| s.forwarded_requests,
        ),
        (
            "sprawl_request_errors_total",
            "Requests answered with an error.",
            |s| s.errors,
        ),
        ("sprawl_connections_total", "Connections accepted.", |s| {
            s.connections_total
        }),
        (
            "sprawl_fdatasyncs_total",
            "fdatasync calls of partition logs.",
            |s| s.fdatasyncs,
        ),
        (
            "sprawl_load_samples_dropped_total",
            "Per-second load samples the load thread was too far behind to take.",
            |s| s.load_samples_dropped,
        ),
        (
            "sprawl_replica_elections_won_total",
            "Partition Raft elections this shard's replicas won.",
            |s| s.replication.elections_won,
        ),
        (
            "sprawl_replica_leader_changes_total",
            "Partition leadership or role changes this shard's replicas saw.",
            |s| s.replication.leader_changes,
        ),
        (
            "sprawl_replica_proposals_total",
            "Batches proposed to partition Raft groups.",
            |s| s.replication.proposals,
        ),
        (
            "sprawl_replica_acked_total",
            "Proposals acknowledged (committed, or on the leader's disk for acks=leader).",
            |s| s.replication.acked,
        ),
        (
            "sprawl_replica_failed_total",
            "Proposals that failed (leadership lost or superseded).",
            |s| s.replication.failed,
        ),
        (
            "sprawl_replica_flushes_total",
            "Replicated group-commit rounds (writes plus one fdatasync).",
            |s| s.replication.flushes,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in snapshots {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
    let gauges: [ShardMetric; 4] = [
        ("sprawl_connections_open", "Open connections.", |s| {
            s.connections_open
        }),
        (
            "sprawl_log_bytes",
            "Bytes in the shard's partition logs.",
            |s| s.log_bytes,
        ),
        (
            "sprawl_disk_free_bytes",
            "Free bytes on the data disk, as last measured.",
            |s| s.disk_free_bytes,
        ),
        (
            "sprawl_disk_alarm",
            "1 while producers are throttled for lack of disk space.",
            |s| u64::from(s.disk_alarm),
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in snapshots {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
    for (name, help, pick) in [
        (
            "sprawl_produce_latency_seconds",
            "Owner-shard time from produce request to durable ack.",
            (|s: &ShardSnapshot| s.produce_latency_us.clone()) as fn(&ShardSnapshot) -> _,
        ),
        (
            "sprawl_fetch_latency_seconds",
            "Owner-shard time to answer a fetch (long polls included).",
            |s: &ShardSnapshot| s.fetch_latency_us.clone(),
        ),
        (
            "sprawl_reactor_lag_seconds",
            "How late a 10 ms timer fires on the shard's reactor: stalls show here.",
            |s: &ShardSnapshot| s.reactor_lag_us.clone(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for s in snapshots {
            let Some(h) = pick(s) else { continue };
            for q in [0.5, 0.9, 0.99, 0.999] {
                let v = h.value_at_quantile(q) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\",quantile=\"{q}\"}} {v:.6}",
                    s.shard
                );
            }
            let sum: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum();
            let _ = writeln!(out, "{name}_sum{{shard=\"{}\"}} {:.6}", s.shard, sum / 1e6);
            let _ = writeln!(out, "{name}_count{{shard=\"{}\"}} {}", s.shard, h.len());
        }
    }
    let partition_gauges: [PartitionMetric; 4] = [
        (
            "sprawl_partition_log_start_offset",
            "First retained offset.",
            |p| p.offsets.log_start,
        ),
        (
            "sprawl_partition_high_watermark",
            "Offset after the last acknowledged record.",
            |p| p.offsets.high_watermark,
        ),
        (
            "sprawl_partition_log_end_offset",
            "Offset the next record gets.",
            |p| p.offsets.log_end,
        ),
        (
            "sprawl_partition_log_bytes",
            "Bytes in the partition's segments.",
            |p| p.offsets.size_bytes,
        ),
    ];
    for (name, help, get) in partition_gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in snapshots {
            for p in &s.partitions {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\",shard=\"{}\"}} {}",
                    p.topic,
                    p.partition,
                    s.shard,
                    get(p)
                );
            }
        }
    }
    render_replicas(&mut out, snapshots);
    out
}

/// Replicated partitions: each replica's Raft view, and on the leader the
/// lag of every follower (replication lag, in entries).
fn render_replicas(out: &mut String, snapshots: &[ShardSnapshot]) {
    let replicas: Vec<_> = snapshots
        .iter()
        .flat_map(|s| s.partitions.iter())
        .filter_map(|p| p.replica.as_ref().map(|r| (p, r)))
        .collect();
    if replicas.is_empty() {
        return;
    }
    type ReplicaGauge = (
        &'static str,
        &'static str,
        fn(&sprawl_shards::replication::GroupStatus) -> u64,
    );
    let gauges: [ReplicaGauge; 4] = [
        (
            "sprawl_partition_raft_term",
            "Raft term of the partition's group as this replica knows it.",
            |r| r.term,
        ),
        (
            "sprawl_partition_raft_commit_index",
            "Raft commit index (the high watermark's entry).",
            |r| r.commit_index,
        ),
        (
            "sprawl_partition_raft_leader",
            "Node the replica follows (0: none known).",
            |r| r.leader.unwrap_or(0),
        ),
        (
            "sprawl_partition_in_sync_replicas",
            "In-sync replicas (on the leader; 0 elsewhere).",
            |r| r.in_sync().len() as u64,
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (p, r) in &replicas {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic,
                p.partition,
                get(r)
            );
        }
    }
    let name = "sprawl_partition_follower_lag_entries";
    let _ = writeln!(
        out,
        "# HELP {name} Entries a follower is behind the leader (on the leader).\n# TYPE {name} gauge"
    );
    for (p, r) in &replicas {
        for (follower, lag, _) in &r.followers {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\",follower=\"{follower}\"}} {lag}",
                p.topic, p.partition
            );
        }
    }
}

/// Tiered storage: per partition what is archived and what waits for
/// upload; for the node, the S3 client's requests, errors, bytes and
/// latency summaries.
pub fn render_tiers(
    snapshots: &[ShardSnapshot],
    s3: Option<&sprawl_tiered::ArchiveStats>,
) -> String {
    let mut out = String::new();
    let gauges: [TierMetric; 5] = [
        (
            "sprawl_tier_archived_bytes",
            "Log bytes in the archive.",
            |c| c.archived_bytes,
        ),
        (
            "sprawl_tier_archived_segments",
            "Segments in the archive.",
            |c| c.archived_segments as u64,
        ),
        (
            "sprawl_tier_upload_lag_segments",
            "Sealed segments waiting for upload.",
            |c| c.upload_lag_segments as u64,
        ),
        (
            "sprawl_tier_upload_lag_bytes",
            "Bytes of sealed segments waiting for upload.",
            |c| c.upload_lag_bytes,
        ),
        (
            "sprawl_tier_upload_failures_total",
            "Failed segment uploads (retried).",
            |c| c.upload_failures,
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in snapshots {
            for p in &s.partitions {
                if let Some(c) = &p.cold {
                    let _ = writeln!(
                        out,
                        "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                        p.topic,
                        p.partition,
                        get(c)
                    );
                }
            }
        }
    }
    let local = "sprawl_tier_local_bytes";
    let _ = writeln!(
        out,
        "# HELP {local} Log bytes on local disk.\n# TYPE {local} gauge"
    );
    for s in snapshots {
        for p in &s.partitions {
            let _ = writeln!(
                out,
                "{local}{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic, p.partition, p.offsets.size_bytes
            );
        }
    }
    let Some(s3) = s3 else { return out };
    let _ = writeln!(out, "# HELP sprawl_s3_requests_total S3 operations by kind.\n# TYPE sprawl_s3_requests_total counter");
    for op in sprawl_tiered::Op::ALL {
        let _ = writeln!(
            out,
            "sprawl_s3_requests_total{{op=\"{}\"}} {}",
            op.name(),
            s3.op(op).requests
        );
    }
    let _ = writeln!(out, "# HELP sprawl_s3_errors_total Failed S3 operations by kind.\n# TYPE sprawl_s3_errors_total counter");
    for op in sprawl_tiered::Op::ALL {
        let _ = writeln!(
            out,
            "sprawl_s3_errors_total{{op=\"{}\"}} {}",
            op.name(),
            s3.op(op).errors
        );
    }
    for (name, help, v) in [
        (
            "sprawl_s3_retries_total",
            "S3 attempts retried after a retryable error.",
            s3.s3_retries,
        ),
        ("sprawl_s3_bytes_up_total", "Bytes sent to S3.", s3.bytes_up),
        (
            "sprawl_s3_bytes_down_total",
            "Bytes read from S3.",
            s3.bytes_down,
        ),
        (
            "sprawl_s3_queue_depth",
            "Requests waiting for the archive thread.",
            s3.queue_depth as u64,
        ),
    ] {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    for (name, h) in [
        ("sprawl_s3_upload_latency_seconds", &s3.upload_latency_us),
        ("sprawl_s3_get_latency_seconds", &s3.get_latency_us),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} Latency of successful S3 operations.\n# TYPE {name} summary"
        );
        for q in [0.5, 0.9, 0.99, 0.999] {
            let _ = writeln!(
                out,
                "{name}{{quantile=\"{q}\"}} {:.6}",
                h.value_at_quantile(q) as f64 / 1e6
            );
        }
        let _ = writeln!(out, "{name}_count {}", h.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_summaries() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        h.record(1500).unwrap();
        let s = ShardSnapshot {
            shard: 1,
            messages_in: 42,
            produce_latency_us: Some(h),
            partitions: vec![sprawl_shards::PartitionSnapshot {
                topic: "t".into(),
                partition: 0,
                offsets: sprawl_shards::PartitionOffsets {
                    log_start: 0,
                    high_watermark: 42,
                    log_end: 42,
                    size_bytes: 4096,
                    ..Default::default()
                },
                local_log_start: 0,
                segments: 1,
                cold: None,
                replica: Some(sprawl_shards::replication::GroupStatus {
                    leader: Some(1),
                    term: 4,
                    commit_index: 17,
                    voters: vec![1, 2, 3],
                    learners: vec![],
                    followers: vec![(2, 0, true), (3, 5, true)],
                }),
            }],
            ..Default::default()
        };
        let text = render(&[s], 1.0);
        assert!(
            text.contains("sprawl_messages_in_total{shard=\"1\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("sprawl_produce_latency_seconds{shard=\"1\",quantile=\"0.99\"} 0.0015"),
            "{text}"
        );
        assert!(text.contains(
            "sprawl_partition_high_watermark{topic=\"t\",partition=\"0\",shard=\"1\"} 42"
        ));
        assert!(text.contains("# TYPE sprawl_messages_in_total counter"));
        assert!(
            text.contains("sprawl_partition_raft_commit_index{topic=\"t\",partition=\"0\"} 17"),
            "{text}"
        );
        assert!(
            text.contains(
                "sprawl_partition_follower_lag_entries{topic=\"t\",partition=\"0\",follower=\"3\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("sprawl_partition_in_sync_replicas{topic=\"t\",partition=\"0\"} 3"),
            "{text}"
        );
    }
}
