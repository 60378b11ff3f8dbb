//! A suite's `comparison.md`: one row per workload with Sprawl, NATS
//! JetStream and their ratio, the targets checked, Sprawl's log bandwidth
//! against the device limit, and a latency plot of both brokers.
//!
//! Runs are paired by name: `sprawl-<workload>` and `nats-<workload>`
//! (workloads sort by name, so the suite numbers them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::plot::{latency_by_percentile_svg, Series};
use crate::report::{thousands, Summary, END_TO_END, PUBLISH_ACK};
use crate::stats::{fmt_ms, Percentiles};

/// Everything besides the runs that the comparison reports.
#[derive(Debug, Default, Clone)]
pub struct SuiteExtras {
    /// `device-limit` output (its "write N MB/s" is the log's limit).
    pub device_limit: Option<String>,
    /// Node facts measured by the suite: `startup_ms`, `rss_idle_kib`.
    pub node: Option<serde_json::Value>,
    /// Free text about the NATS server (version, configuration, fsync).
    pub nats_notes: Option<String>,
    /// The command that ran the suite.
    pub command: Option<String>,
    /// The machine's load average around the suite (other work on the
    /// same cores skews the numbers).
    pub load: Option<String>,
    /// Run name → CPU seconds the broker process used during that run.
    pub server_cpu_s: BTreeMap<String, f64>,
    /// The suite directory holds a hand-written `analysis.md`.
    pub has_analysis: bool,
}

/// The brokers' runs of one workload.
#[derive(Default)]
struct Pair<'a> {
    sprawl: Option<&'a Summary>,
    /// NATS as configured by default (JetStream fsyncs every 2 minutes).
    nats: Option<&'a Summary>,
    /// NATS with `sync_interval: always` (fsync per write), if the suite
    /// could run a server that has the setting.
    nats_sync: Option<&'a Summary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Sprawl,
    Nats,
    NatsSync,
}

fn workload_key(s: &Summary) -> Option<(Who, String)> {
    [
        ("sprawl-", Who::Sprawl),
        ("natssync-", Who::NatsSync),
        ("nats-", Who::Nats),
    ]
    .iter()
    .find_map(|(prefix, who)| s.name.strip_prefix(prefix).map(|w| (*who, w.to_string())))
}

/// `03-produce-b64` → `produce-b64`.
fn display_name(key: &str) -> &str {
    match key.split_once('-') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => key,
    }
}

/// The latency a workload is judged by: end-to-end when it has one.
fn main_latency(s: &Summary) -> Option<(&'static str, &Percentiles)> {
    s.latency
        .get(END_TO_END)
        .map(|p| (END_TO_END, p))
        .or_else(|| s.latency.get(PUBLISH_ACK).map(|p| (PUBLISH_ACK, p)))
}

/// "write 2119.0 MB/s" in the device-limit output → 2119.0.
pub fn device_write_mb_per_s(text: &str) -> Option<f64> {
    let rest = &text[text.find("write ")? + "write ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The `comparison.md` text.
pub fn comparison_markdown(summaries: &[Summary], extras: &SuiteExtras) -> String {
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    for s in summaries {
        if let Some((who, key)) = workload_key(s) {
            let pair = pairs.entry(key).or_default();
            match who {
                Who::Sprawl => pair.sprawl = Some(s),
                Who::Nats => pair.nats = Some(s),
                Who::NatsSync => pair.nats_sync = Some(s),
            }
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Sprawl vs NATS JetStream: suite comparison\n");
    if let Some(c) = &extras.command {
        let _ = writeln!(md, "Command: `{c}`\n");
    }
    if let Some(s) = summaries.first() {
        let _ = writeln!(
            md,
            "Machine: {} · {} cores · {:.1} GiB · {} · commit {} · loadgen on the same machine as the broker.\n",
            s.machine.cpu_model,
            s.machine.cores,
            s.machine.memory_bytes as f64 / (1u64 << 30) as f64,
            s.machine.kernel,
            s.machine.commit
        );
    }
    if let Some(load) = &extras.load {
        let _ = writeln!(
            md,
            "Load average (`/proc/loadavg`) around the suite:\n```\n{}\n```\n",
            load.trim()
        );
    }
    let version = |who: Who| {
        pairs
            .values()
            .find_map(|p| match who {
                Who::Sprawl => p.sprawl,
                Who::Nats => p.nats,
                Who::NatsSync => p.nats_sync,
            })
            .map(|s| s.target.server_version.clone())
    };
    let has_sync = pairs.values().any(|p| p.nats_sync.is_some());
    let _ = writeln!(
        md,
        "Sprawl {} vs nats-server {} (JetStream defaults){}. Same tool, same message sizes, same run; every row is one workload, ratios are Sprawl / NATS for throughput and NATS / Sprawl for latency (above 1 = Sprawl better).\n",
        version(Who::Sprawl).unwrap_or_else(|| "-".into()),
        version(Who::Nats).unwrap_or_else(|| "-".into()),
        version(Who::NatsSync).map_or(String::new(), |v| format!(
            ", and nats-server {v} with `sync_interval: always` (\"NATS sync\": fsync per write, the durability of Sprawl's acks=durable)"
        ))
    );

    let _ = writeln!(md, "## Throughput\n");
    let (sync_head, sync_rule) = if has_sync {
        (" NATS sync msgs/s | Sprawl / NATS sync |", "---:|---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| workload | Sprawl msgs/s | NATS msgs/s | Sprawl / NATS |{sync_head} Sprawl MB/s | NATS MB/s |\n|---|---:|---:|---:|{sync_rule}---:|---:|"
    );
    for (key, p) in &pairs {
        let rate = |s: Option<&Summary>| s.map_or(0.0, |s| s.results.msgs_per_s);
        let mb =
            |s: Option<&Summary>| s.map_or("-".into(), |s| format!("{:.1}", s.results.mb_per_s));
        let cell = |s: Option<&Summary>| {
            s.map_or("-".into(), |s| {
                thousands(s.results.msgs_per_s.round() as u64)
            })
        };
        let sync = if has_sync {
            format!(
                " {} | {} |",
                cell(p.nats_sync),
                if p.nats_sync.is_some() {
                    ratio(rate(p.sprawl), rate(p.nats_sync))
                } else {
                    "-".into()
                }
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |{sync} {} | {} |",
            display_name(key),
            cell(p.sprawl),
            cell(p.nats),
            ratio(rate(p.sprawl), rate(p.nats)),
            mb(p.sprawl),
            mb(p.nats)
        );
    }

    let _ = writeln!(md, "\n## Latency (ms)\n");
    let (sync_head, sync_rule) = if has_sync {
        (" NATS sync p99 | NATS sync p99.9 |", "---:|---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| workload | latency | Sprawl p50 | Sprawl p99 | Sprawl p99.9 | NATS p50 | NATS p99 | NATS p99.9 | p99 NATS / Sprawl |{sync_head}\n|---|---|---:|---:|---:|---:|---:|---:|---:|{sync_rule}"
    );
    for (key, p) in &pairs {
        let Some((kind, _)) = p.sprawl.or(p.nats).and_then(main_latency) else {
            continue;
        };
        let get = |s: Option<&Summary>| s.and_then(|s| s.latency.get(kind)).copied();
        let cells = |p: Option<Percentiles>| {
            p.map_or(["-".to_string(), "-".to_string(), "-".to_string()], |p| {
                [fmt_ms(p.p50_ms), fmt_ms(p.p99_ms), fmt_ms(p.p999_ms)]
            })
        };
        let (s, n) = (get(p.sprawl), get(p.nats));
        let open = p.sprawl.or(p.nats).is_some_and(|s| s.workload.open_loop);
        let label = match (kind, open) {
            (END_TO_END, true) => "publish→deliver (CO-corrected)",
            (END_TO_END, false) => "publish→deliver",
            (_, true) => "publish→ack (CO-corrected)",
            _ => "publish→ack",
        };
        let [s50, s99, s999] = cells(s);
        let [n50, n99, n999] = cells(n);
        let sync = if has_sync {
            let [_, y99, y999] = cells(get(p.nats_sync));
            format!(" {y99} | {y999} |")
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {label} | {s50} | {s99} | {s999} | {n50} | {n99} | {n999} | {} |{sync}",
            display_name(key),
            match (s, n) {
                (Some(s), Some(n)) => ratio(n.p99_ms, s.p99_ms),
                _ => "-".into(),
            }
        );
    }

    let _ = writeln!(md, "\n## Targets\n");
    let sprawl_runs = || {
        pairs
            .values()
            .filter_map(|p| p.sprawl.map(|s| (s, p.nats, p.nats_sync)))
    };
    let best_durable = sprawl_runs()
        .filter(|(s, _, _)| {
            s.workload.mode == "produce"
                && s.workload.acks == "durable"
                && !s.workload.open_loop
                && s.workload.batch >= 64
                && s.workload.scenario.is_none()
        })
        .max_by(|a, b| a.0.results.msgs_per_s.total_cmp(&b.0.results.msgs_per_s));
    if let Some((s, n, sync)) = best_durable {
        let r = s.results.msgs_per_s;
        let nats = n.map_or(0.0, |n| n.results.msgs_per_s);
        let _ = writeln!(
            md,
            "- Produce 1 KiB, batch ≥ 64, durable: ≥ 500,000 msgs/s and ≥ 2× NATS. Best Sprawl: {} msgs/s (batch {}), {} NATS: {} ({:.0}% of 500k), {} ({}).",
            thousands(r.round() as u64),
            s.workload.batch,
            ratio(r, nats),
            verdict(r >= 500_000.0),
            100.0 * r / 500_000.0,
            verdict(nats > 0.0 && r >= 2.0 * nats),
            if nats > 0.0 { "≥ 2× NATS" } else { "no NATS run" }
        );
        if let Some(y) = sync {
            let _ = writeln!(
                md,
                "  Against NATS with `sync_interval: always` (same durability): {} ({} msgs/s).",
                ratio(r, y.results.msgs_per_s),
                thousands(y.results.msgs_per_s.round() as u64)
            );
        }
    }
    // Targets hold at a steady rate; a shaped load is not one.
    for (s, _, _) in
        sprawl_runs().filter(|(s, _, _)| s.workload.open_loop && s.workload.scenario.is_none())
    {
        let rate = s.workload.rate_per_s.unwrap_or(0.0);
        if s.workload.mode == "produce" {
            if let Some(p) = s.latency.get(PUBLISH_ACK) {
                let _ = writeln!(
                    md,
                    "- publish→ack, acks={}, at {} msgs/s (open loop): p99 {} ms < 1 ms {}, p99.9 {} ms < 3 ms {}.",
                    s.workload.acks,
                    thousands(rate.round() as u64),
                    fmt_ms(p.p99_ms),
                    verdict(p.p99_ms < 1.0),
                    fmt_ms(p.p999_ms),
                    verdict(p.p999_ms < 3.0)
                );
            }
        } else if let Some(p) = s.latency.get(END_TO_END) {
            let _ = writeln!(
                md,
                "- pubsub publish→deliver at {} msgs/s (open loop): p99 {} ms < 2 ms {}.",
                thousands(rate.round() as u64),
                fmt_ms(p.p99_ms),
                verdict(p.p99_ms < 2.0)
            );
        }
    }
    if let Some(node) = &extras.node {
        if let Some(rss) = node.get("rss_idle_kib").and_then(|v| v.as_f64()) {
            let mb = rss / 1024.0;
            let _ = writeln!(
                md,
                "- Node RSS at idle after start: {mb:.1} MiB < 256 MiB {}.",
                verdict(mb < 256.0)
            );
        }
        if let Some(ms) = node.get("startup_ms").and_then(|v| v.as_f64()) {
            let _ = writeln!(
                md,
                "- Cold start to serving: {ms:.0} ms < 1000 ms {} (process start, fresh data dir, to its \"ready\" line: shards recovered, QUIC and admin bound).",
                verdict(ms < 1000.0)
            );
        }
    }

    let cpu_rows: Vec<String> = pairs
        .iter()
        .flat_map(|(key, p)| {
            [
                ("Sprawl", p.sprawl),
                ("NATS", p.nats),
                ("NATS sync", p.nats_sync),
            ]
            .into_iter()
            .filter_map(move |(who, s)| {
                let s = s?;
                let server = extras.server_cpu_s.get(&s.name).copied()?;
                let messages = s.results.acked_total.max(s.results.delivered_total);
                let active = s.results.active_s;
                (messages > 0 && active > 0.0).then(|| {
                    let per_msg = |cpu: f64| cpu / messages as f64 * 1e6;
                    format!(
                        "| {} | {who} | {:.2} | {:.2} | {:.2} | {:.2} |",
                        display_name(key),
                        server / active,
                        s.results.loadgen_cpu_s / active,
                        per_msg(server),
                        per_msg(s.results.loadgen_cpu_s)
                    )
                })
            })
        })
        .collect();
    if !cpu_rows.is_empty() {
        let _ = writeln!(md, "\n## Where the CPU went\n");
        let _ = writeln!(
            md,
            "Both processes share the machine's {} cores; a workload whose server and loadgen columns add up to about that is CPU-bound.\n",
            summaries.first().map_or(0, |s| s.machine.cores)
        );
        let _ = writeln!(
            md,
            "| workload | broker | server cores | loadgen cores | server µs/msg | loadgen µs/msg |\n|---|---|---:|---:|---:|---:|"
        );
        for row in cpu_rows {
            let _ = writeln!(md, "{row}");
        }
    }

    let _ = writeln!(md, "\n## Log bandwidth against the device\n");
    let device = extras
        .device_limit
        .as_deref()
        .and_then(device_write_mb_per_s);
    let _ = writeln!(
        md,
        "| Sprawl workload | log MB/s (stored bytes / run time) | of device write limit |\n|---|---:|---:|"
    );
    for (key, p) in &pairs {
        let Some(s) = p.sprawl.filter(|s| s.workload.mode == "produce") else {
            continue;
        };
        let Some(stored) = s
            .stored
            .filter(|st| st.bytes() > 0 && s.results.active_s > 0.0)
        else {
            continue;
        };
        let mb_s = stored.bytes() as f64 / s.results.active_s / 1e6;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} |",
            display_name(key),
            mb_s,
            device.map_or("-".into(), |d| format!("{:.0}%", 100.0 * mb_s / d))
        );
    }
    if let Some(text) = &extras.device_limit {
        let _ = writeln!(
            md,
            "\nDevice limit (`device-limit`, raw io_uring O_DIRECT): `{}`",
            text.trim()
        );
    }

    let _ = writeln!(md, "\n## How to read this\n");
    let _ = writeln!(
        md,
        "- Durability is not identical. Sprawl acks=durable answers after fdatasync of the partition log. NATS JetStream answers after writing to its file store; it fsyncs on its own `sync_interval` (every 2 minutes by default), so its acks=durable numbers are *not* fsync'ed per message. Where the suite could run a nats-server with `sync_interval: always` (2.10 or later), its \"NATS sync\" columns have the same durability as Sprawl's acks=durable (see the notes below)."
    );
    let _ = writeln!(
        md,
        "- Batch B: Sprawl sends B records per ProduceRequest; NATS has B publishes in flight before awaiting their PubAcks. Closed loop: each producer's window is one batch."
    );
    let _ = writeln!(
        md,
        "- Open-loop latencies are measured from each message's intended send time (corrected for coordinated omission); each broker runs at 50% of its own maximum measured earlier in the same suite."
    );
    let _ = writeln!(
        md,
        "- Both brokers and loadgen share the same 2 cores; numbers are noisy, ratios within one run are what to compare."
    );
    if let Some(notes) = &extras.nats_notes {
        let _ = writeln!(md, "\n## NATS server notes\n\n{}", notes.trim());
    }
    if extras.has_analysis {
        let _ = writeln!(
            md,
            "\nWhat limits the missed targets (profiles, CPU per message): [analysis.md](analysis.md)."
        );
    }
    let _ = writeln!(
        md,
        "\n![latency by percentile](latency-comparison.svg)\n\nEach run's own report, `summary.json` and `.hgrm` files are in the sub-directories."
    );
    md
}

/// Points of a `.hgrm` file: `(1/(1-q), value_ms)` (see
/// [`crate::stats::percentile_curve`]).
pub fn parse_hgrm(text: &str, x_max: f64) -> Vec<(f64, f64)> {
    let rows: Vec<(f64, f64, u64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let value: f64 = cols.next()?.parse().ok()?;
            let q: f64 = cols.next()?.parse().ok()?;
            let total: u64 = cols.next()?.parse().ok()?;
            Some((q, value, total))
        })
        .collect();
    let count = rows.last().map_or(0, |r| r.2);
    crate::stats::curve(rows.into_iter().map(|(q, v, _)| (q, v)), count, x_max)
}

/// Reads `<suite>/*/summary.json` and the extras, writes `comparison.md`
/// and `latency-comparison.svg`.
pub fn write_comparison(suite: &Path) -> anyhow::Result<String> {
    let mut summaries = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(suite)
        .with_context(|| format!("reading {}", suite.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)?;
        let s: Summary =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        summaries.push((dir.clone(), s));
    }
    let mut server_cpu_s = BTreeMap::new();
    for (dir, s) in &summaries {
        let cpu = std::fs::read_to_string(dir.join("server-cpu.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("cpu_s").and_then(|c| c.as_f64()));
        if let Some(cpu) = cpu {
            server_cpu_s.insert(s.name.clone(), cpu);
        }
    }
    let read = |name: &str| std::fs::read_to_string(suite.join(name)).ok();
    let extras = SuiteExtras {
        device_limit: read("device-limit.txt"),
        node: read("node.json").and_then(|t| serde_json::from_str(&t).ok()),
        nats_notes: read("nats.txt"),
        command: read("command.txt").map(|c| c.trim().to_string()),
        load: read("load.txt"),
        server_cpu_s,
        has_analysis: suite.join("analysis.md").is_file(),
    };
    let only: Vec<Summary> = summaries.iter().map(|(_, s)| s.clone()).collect();
    let md = comparison_markdown(&only, &extras);
    std::fs::write(suite.join("comparison.md"), &md)?;

    let mut series = Vec::new();
    for (dir, s) in &summaries {
        if !s.workload.open_loop {
            continue;
        }
        let Some((kind, _)) = main_latency(s) else {
            continue;
        };
        let Some(text) = std::fs::read_to_string(dir.join(format!("{kind}.hgrm"))).ok() else {
            continue;
        };
        let who = match workload_key(s).map(|w| w.0) {
            Some(Who::Sprawl) => "Sprawl",
            Some(Who::NatsSync) => "NATS sync=always",
            _ => "NATS JetStream",
        };
        let what = if kind == END_TO_END {
            "publish→deliver"
        } else {
            "publish→ack"
        };
        series.push(Series {
            label: format!(
                "{who} {what}, acks={} @ {} msgs/s",
                s.workload.acks,
                thousands(s.workload.rate_per_s.unwrap_or(0.0).round() as u64)
            ),
            points: parse_hgrm(&text, 1e6),
        });
    }
    if !series.is_empty() {
        let svg = latency_by_percentile_svg(
            "Sprawl vs NATS JetStream at 50% of max rate (CO-corrected)",
            &series,
        )?;
        std::fs::write(suite.join("latency-comparison.svg"), svg)?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MachineInfo, Results, Stored, TargetInfo, Workload};

    fn summary(
        name: &str,
        kind: &str,
        mode: &str,
        rate: Option<f64>,
        msgs: f64,
        p99: f64,
    ) -> Summary {
        let p = Percentiles {
            count: 100,
            min_ms: 0.1,
            mean_ms: 0.2,
            p50_ms: 0.2,
            p90_ms: 0.3,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            p9999_ms: p99 * 3.0,
            max_ms: p99 * 4.0,
        };
        let kind_key = if mode == "pubsub" {
            END_TO_END
        } else {
            PUBLISH_ACK
        };
        Summary {
            name: name.into(),
            command: "loadgen".into(),
            started_utc: "2026-11-28T00:00:00Z".into(),
            loadgen_version: "0.1.0".into(),
            target: TargetInfo {
                kind: kind.into(),
                address: "x".into(),
                server_version: "1".into(),
                durability: "d".into(),
            },
            workload: Workload {
                mode: mode.into(),
                producers: 4,
                consumers: 1,
                topics: 1,
                partitions: 4,
                size: "1024".into(),
                size_mean_bytes: 1024.0,
                batch: 64,
                linger_ms: 0.0,
                acks: "durable".into(),
                open_loop: rate.is_some(),
                rate_per_s: rate,
                messages: None,
                duration_s: Some(5.0),
                warmup_s: 1.0,
                max_in_flight: 1000,
                batches_in_flight: 1,
                scenario: None,
            },
            results: Results {
                msgs_per_s: msgs,
                mb_per_s: msgs * 1024.0 / 1e6,
                active_s: 6.0,
                acked_total: 100,
                loadgen_cpu_s: 1.5,
                ..Results::default()
            },
            latency: [(kind_key.to_string(), p)].into_iter().collect(),
            stored: Some(Stored {
                bytes_after: 6_000_000_000,
                ..Stored::default()
            }),
            machine: MachineInfo {
                cpu_model: "cpu".into(),
                cores: 2,
                memory_bytes: 1 << 30,
                kernel: "k".into(),
                file_system: "fs".into(),
                commit: "abc".into(),
                markdown: String::new(),
            },
        }
    }

    #[test]
    fn pairs_rows_and_judges_targets() {
        let runs = vec![
            summary(
                "sprawl-02-produce-b64",
                "sprawl",
                "produce",
                None,
                600_000.0,
                2.0,
            ),
            summary(
                "nats-02-produce-b64",
                "nats-jetstream",
                "produce",
                None,
                200_000.0,
                5.0,
            ),
            summary(
                "sprawl-08-pubsub",
                "sprawl",
                "pubsub",
                Some(300_000.0),
                300_000.0,
                1.5,
            ),
            summary(
                "nats-08-pubsub",
                "nats-jetstream",
                "pubsub",
                Some(100_000.0),
                100_000.0,
                3.0,
            ),
            summary(
                "natssync-02-produce-b64",
                "nats-jetstream",
                "produce",
                None,
                100_000.0,
                9.0,
            ),
        ];
        let extras = SuiteExtras {
            device_limit: Some("device-limit dir=x: write 2000.0 MB/s, read 1000.0 MB/s".into()),
            node: Some(serde_json::json!({"rss_idle_kib": 40960, "startup_ms": 120})),
            nats_notes: Some("nats-server 2.9.10".into()),
            command: None,
            load: Some("before: 0.10 0.20 0.30 1/100 1".into()),
            server_cpu_s: [("sprawl-02-produce-b64".to_string(), 3.0)]
                .into_iter()
                .collect(),
            has_analysis: true,
        };
        let md = comparison_markdown(&runs, &extras);
        assert!(
            md.contains("| produce-b64 | 600,000 | 200,000 | 3.00× | 100,000 | 6.00× |"),
            "{md}"
        );
        assert!(md.contains("| pubsub | publish→deliver (CO-corrected) | 0.200 | 1.500 | 3.000 | 0.200 | 3.000 | 6.000 | 2.00× | - | - |"), "{md}");
        assert!(
            md.contains("600,000 msgs/s (batch 64), 3.00× NATS: **met**"),
            "{md}"
        );
        assert!(
            md.contains("(same durability): 6.00× (100,000 msgs/s)"),
            "{md}"
        );
        assert!(md.contains("p99 1.500 ms < 2 ms **met**"), "{md}");
        assert!(
            md.contains("RSS at idle after start: 40.0 MiB < 256 MiB **met**"),
            "{md}"
        );
        assert!(md.contains("| produce-b64 | 1000 | 50% |"), "{md}");
        assert!(md.contains("nats-server 2.9.10"));
        assert!(md.contains("before: 0.10"));
        assert!(md.contains("[analysis.md](analysis.md)"));
        // 3 CPU s over 6 s active, 100 messages acked, loadgen 1.5 s.
        assert!(
            md.contains("| produce-b64 | Sprawl | 0.50 | 0.25 | 30000.00 | 15000.00 |"),
            "{md}"
        );
    }

    #[test]
    fn device_limit_and_hgrm_parse() {
        assert_eq!(
            device_write_mb_per_s("device-limit dir=d size=1MiB: write 2119.5 MB/s, read 1.0 MB/s"),
            Some(2119.5)
        );
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n       0.100 0.000000000000          1           1.00\n       0.500 0.900000000000          9          10.00\n       1.000 1.000000000000         10\n#[Mean = 1]\n";
        let pts = parse_hgrm(text, 1e6);
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[0], (1.0, 0.1));
        assert!((pts[1].0 - 10.0).abs() < 1e-9);
        assert_eq!(pts[2], (10.0, 1.0), "the last of 10 samples");
    }
}
