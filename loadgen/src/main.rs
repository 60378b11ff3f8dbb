//! `loadgen`: see the library docs (`src/lib.rs`) and `--help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sprawl_loadgen::cli::{Cli, Command, WorkloadArgs};
use sprawl_loadgen::clock::{unix_now_secs, utc_date, utc_timestamp};
use sprawl_loadgen::driver::nats::NatsBroker;
use sprawl_loadgen::driver::sprawl::SprawlBroker;
use sprawl_loadgen::driver::Broker;
use sprawl_loadgen::report::{
    BurstScenario, HotScenario, MachineInfo, Scenario, Summary, TraceScenario, Workload,
};
use sprawl_loadgen::run::{execute, Mode, Outcome, Plan};
use sprawl_loadgen::shape::Trace;
use sprawl_loadgen::stats::Percentiles;

/// Without --messages and --duration.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

fn main() {
    if let Err(e) = run_cli() {
        eprintln!("loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (mode, args) = match cli.command {
        Command::Produce(a) => (Mode::Produce, a),
        Command::Consume(a) => (Mode::Consume, a),
        Command::Pubsub(a) => (Mode::Pubsub, a),
        Command::Compare(a) => {
            let md = sprawl_loadgen::compare::write_comparison(&a.suite)?;
            println!("{md}");
            eprintln!("wrote {}", a.suite.join("comparison.md").display());
            return Ok(());
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = args.threads {
        runtime.worker_threads(n);
    }
    args.validate(mode).map_err(anyhow::Error::msg)?;
    let trace = match &args.rate_trace {
        Some(path) => {
            // As a message: the error's Display already says what its
            // source does, and `{:#}` would say it twice.
            let rows = sprawl_forecast::read_csv(path)
                .map_err(|e| anyhow::anyhow!("--rate-trace: {e}"))?;
            let peak = args
                .trace_peak_rate
                .context("--rate-trace needs --trace-peak-rate")?;
            Some(
                Trace::new(&rows, args.trace_speedup, peak)
                    .with_context(|| format!("--rate-trace {}", path.display()))?,
            )
        }
        None => None,
    };
    let scenario = scenario(&args, trace.as_ref())?;
    let plan = plan(mode, &args, trace)?;
    let runtime = runtime.build().context("starting the tokio runtime")?;
    runtime.block_on(workload(mode, args, plan, scenario))
}

/// What summary.json and report.md record of the load shape.
fn scenario(a: &WorkloadArgs, trace: Option<&Trace>) -> anyhow::Result<Option<Scenario>> {
    let topics = a.topic_names();
    let placements = a.placements().map_err(anyhow::Error::msg)?;
    let scenario = Scenario {
        rate_trace: a
            .rate_trace
            .as_ref()
            .zip(trace)
            .map(|(path, t)| TraceScenario {
                path: path.display().to_string(),
                samples: t.samples(),
                speedup: a.trace_speedup,
                peak_rate_per_s: a.trace_peak_rate.unwrap_or_default(),
                mean_rate_per_s: t.mean_rate_per_s(),
                pass_s: t.span_s(),
            }),
        bursts: a.burst_period.zip(a.burst_duration).zip(a.burst_rate).map(
            |((period, duration), rate)| BurstScenario {
                period_s: period.as_secs_f64(),
                duration_s: duration.as_secs_f64(),
                rate_per_s: rate,
                topics: topics[..a.burst_topics.unwrap_or(a.topics)].to_vec(),
            },
        ),
        hot_partitions: a.hot_share.map(|share| HotScenario {
            share,
            partitions: topics
                .iter()
                .zip(&placements)
                .map(|(t, p)| (t.clone(), p.hot().unwrap_or_default().to_vec()))
                .collect(),
            on_shard: a.hot_on_shard.zip(a.node_shards),
        }),
    };
    Ok((scenario != Scenario::default()).then_some(scenario))
}

fn plan(mode: Mode, a: &WorkloadArgs, trace: Option<Trace>) -> anyhow::Result<Plan> {
    let open_loop = a.open_loop();
    Ok(Plan {
        mode,
        producers: if mode == Mode::Consume {
            0
        } else {
            a.producers
        },
        consumers: if mode == Mode::Produce {
            0
        } else {
            a.consumers
        },
        topics: a.topic_names(),
        partitions: a.partitions,
        sizes: a.size.clone(),
        batch: a.batch,
        linger: a.linger.unwrap_or(if open_loop {
            Duration::ZERO
        } else {
            Duration::from_millis(5)
        }),
        acks: a.acks,
        messages: a.messages,
        duration: a
            .duration
            .or(a.messages.is_none().then_some(DEFAULT_DURATION)),
        warmup: a.warmup,
        shape: a.load_shape(trace).map_err(anyhow::Error::msg)?,
        placements: a.placements().map_err(anyhow::Error::msg)?,
        max_in_flight: a.max_in_flight.max(1),
        batches_in_flight: a.batches_in_flight.max(1),
        seed: a.seed,
        progress: !a.quiet,
    })
}

async fn workload(
    mode: Mode,
    a: WorkloadArgs,
    plan: Plan,
    scenario: Option<Scenario>,
) -> anyhow::Result<()> {
    match &a.target {
        Some(url) if url.starts_with("nats://") => {
            let broker = Arc::new(NatsBroker::connect(url).await?);
            finish(broker, mode, a.clone(), plan, scenario).await
        }
        Some(other) => anyhow::bail!("--target {other:?}: expected nats://HOST:PORT"),
        None => {
            anyhow::ensure!(
                a.ca.is_some() || a.insecure,
                "give the node's CA certificate with --ca (a node's own is <data-dir>/tls/cert.pem), or --insecure"
            );
            let broker = Arc::new(
                SprawlBroker::connect(&a.node, a.ca.clone(), a.via_node, a.replication_factor)
                    .await?,
            );
            finish(broker, mode, a.clone(), plan, scenario).await
        }
    }
}

async fn finish<B: Broker>(
    broker: Arc<B>,
    mode: Mode,
    a: WorkloadArgs,
    plan: Plan,
    scenario: Option<Scenario>,
) -> anyhow::Result<()> {
    let started = unix_now_secs();
    let target = broker.target();
    let short = if target.kind == "sprawl" {
        "sprawl"
    } else {
        "nats"
    };
    let name = a.name.clone().unwrap_or_else(|| format!("{short}-{mode}"));
    let workload = Workload {
        mode: mode.to_string(),
        producers: plan.producers,
        consumers: plan.consumers,
        topics: plan.topics.len(),
        partitions: plan.partitions,
        size: plan.sizes.to_string(),
        size_mean_bytes: plan.sizes.mean(),
        batch: plan.batch,
        linger_ms: plan.linger.as_secs_f64() * 1e3,
        acks: plan.acks.to_string(),
        open_loop: plan.shape.is_some(),
        rate_per_s: a.rate,
        messages: plan.messages,
        duration_s: plan.duration.map(|d| d.as_secs_f64()),
        warmup_s: plan.warmup.as_secs_f64(),
        max_in_flight: plan.max_in_flight,
        batches_in_flight: plan.batches_in_flight,
        scenario,
    };
    let topics = plan.topics.clone();
    let partitions = plan.partitions;
    let Outcome {
        results,
        histograms,
        stored,
        timeline,
    } = execute(broker.clone(), plan).await?;
    if a.delete_topics {
        broker.delete(&topics, partitions).await?;
    }
    let report_dir = a
        .report
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-{name}", utc_date(started))));
    let summary = Summary {
        name,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_utc: utc_timestamp(started),
        loadgen_version: env!("CARGO_PKG_VERSION").into(),
        target,
        workload,
        results,
        latency: histograms
            .iter()
            .map(|(k, h)| (k.clone(), Percentiles::of(h)))
            .collect(),
        stored: Some(stored),
        machine: MachineInfo::from(sprawl_io::machine::Machine::collect(std::path::Path::new(
            ".",
        ))),
    };
    println!("{}", summary.tables());
    if mode != Mode::Consume && stored.messages() != summary.results.acked_total {
        eprintln!(
            "loadgen: note: the broker stored {} messages in these topics during the run, {} were acknowledged{}",
            stored.messages(),
            summary.results.acked_total,
            if summary.workload.acks == "none" {
                " (acks=none: nothing confirms delivery)"
            } else {
                " (retries after lost connections or timeouts may store a batch twice)"
            }
        );
    }
    if let Some(e) = &summary.results.first_error {
        eprintln!(
            "loadgen: {} failed; first: {e}",
            summary.results.failed_total
        );
    }
    if !a.no_report {
        let csv = timeline.map(|t| t.csv(&topics));
        summary.write(&report_dir, &histograms, csv.as_deref())?;
        eprintln!("wrote {}", report_dir.display());
    }
    Ok(())
}
