//! `sprawl`: the Sprawl node.
//!
//! Start-up: resolve configuration, prepare TLS (a self-signed certificate
//! in the data dir unless one is given), size glommio's io_memory to the
//! memlock limit, start one shard per core (each recovers its partitions and
//! binds the shared QUIC port), then serve the admin HTTP endpoint. SIGTERM
//! or SIGINT: stop accepting, fdatasync everything, exit 0.

mod admin;
mod budget;
mod cluster;
mod config;
mod errors;
mod forward;
mod framing;
mod gossip;
mod handlers;
mod load;
mod prometheus;
mod server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sprawl_io::quic::{generate_self_signed, CertPaths, TlsIdentity};
use sprawl_shards::{Runtime, RuntimeConfig, ShardConfig, TopicCatalog};
use sprawl_storage::LogConfig;
use sprawl_wire::FrameLimits;

use crate::config::{Flags, NodeConfig};
use crate::server::NodeInfo;

/// io_memory each shard would like (registered direct-I/O buffers).
const IO_MEMORY_WANTED_BYTES: usize = 16 << 20;

/// Adam steps per training round of the forecasting model.
const FORECAST_TRAIN_STEPS: usize = 20;

fn main() {
    // candle's CPU kernels use rayon; one thread keeps the model's training
    // to its own thread instead of fanning out over the shards' cores.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    if let Err(e) = run() {
        eprintln!("sprawl: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut config = NodeConfig::resolve(Flags::parse())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .with_context(|| format!("log filter {:?}", config.log))?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let tls_paths = tls_paths(&config)?;
    let identity = Arc::new(
        TlsIdentity::load(&tls_paths)
            .with_context(|| format!("loading TLS from {}", tls_paths.cert_path.display()))?,
    );
    if config.gossip.is_some() && !config.node_id_given {
        config.node_id = persistent_node_id(&config.data_dir)?;
    }
    let io_memory_bytes =
        sprawl_io::memlock::io_memory_for_this_process(config.shards, IO_MEMORY_WANTED_BYTES)?;
    let catalog_path = config.data_dir.join("topics.json");
    let mut catalog = TopicCatalog::load(&catalog_path)
        .with_context(|| format!("loading {}", catalog_path.display()))?;
    let tiered = match &config.tiered {
        Some(t) => Some(start_archive(t, &mut catalog, &catalog_path)?),
        None => None,
    };

    // A produce frame carries one batch: bounding frames by the batch limit
    // makes clients (which cut batches to the frame limit they are told in
    // the handshake) never send a batch the log would refuse.
    let frame_limits = FrameLimits::for_requests()
        .with_frame_bytes_max(config.batch_bytes_max.min(u32::MAX as usize) as u32);
    let cluster_handle = config
        .cluster
        .as_ref()
        .map(|c| cluster::ClusterHandle::new(u64::from(config.node_id), c.ca_cert.clone()));
    let node = Arc::new(NodeInfo {
        cluster: cluster_handle.as_ref().map(|(h, _)| h.clone()),
        node_id: config.node_id,
        listen: config.listen,
        shard_count: config.shards as u16,
        frame_limits,
        batch_bytes_max: config.batch_bytes_max,
    });
    let (load_sink, load_samples) = load::sample_channel();
    let runtime_config = RuntimeConfig {
        shard_count: config.shards,
        pin_cpus: config.pin_cpus,
        io_memory_bytes,
        shard: ShardConfig {
            data_dir: config.data_dir.clone(),
            log: LogConfig {
                segment_bytes: config.segment_bytes,
                ring_bytes: config.ring_bytes,
                batch_bytes_max: config.batch_bytes_max,
                fsync: config.fsync,
                ..LogConfig::default()
            },
            fetch_wait_ms_max: config.fetch_wait_ms_max,
            retention_check_ms: config.retention_check_ms,
            disk_free_bytes_min: config.disk_free_bytes_min,
            tiered: tiered.clone(),
            load_sink: config.load_forecast.then_some(load_sink),
            node_id: config.cluster.as_ref().map(|_| config.node_id),
            replication: cluster_handle.as_ref().map(|(h, _)| h.replication_hooks()),
        },
    };
    let service = {
        let (node, identity) = (node.clone(), identity.clone());
        move |shard| server::serve(shard, node.clone(), identity.clone())
    };
    let runtime = Runtime::start(runtime_config, catalog, service)?;
    runtime.wait_ready()?;
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = if config.load_forecast {
        let (handle, thread) = load::start(
            load::LoadConfig {
                dir: config.data_dir.join("load"),
                shard_count: config.shards,
                train_every: Duration::from_secs(config.forecast_train_every_s),
                train_steps: FORECAST_TRAIN_STEPS,
                persist_every: Duration::from_secs(60),
                auto: config
                    .rebalance_auto
                    .map(|s| (s, Duration::from_secs(config.rebalance_interval_s))),
            },
            load_samples,
            runtime.catalog.clone(),
            runtime.control.clone(),
            load_stop.clone(),
        )
        .context("starting the load thread")?;
        Some((handle, thread))
    } else {
        None
    };

    let gossip_stop = Arc::new(AtomicBool::new(false));
    let gossip = match &config.gossip {
        Some(settings) => Some(
            gossip::start(
                settings,
                u64::from(config.node_id),
                config.listen,
                config.admin,
                // Port 0 says "no cluster plane here": the metadata leader
                // admits only members that advertise a peer endpoint.
                config
                    .cluster
                    .as_ref()
                    .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.peer_listen),
                config.shards as u16,
                runtime.snapshots.clone(),
                gossip_stop.clone(),
            )
            .context("starting gossip")?,
        ),
        None => None,
    };
    let cluster_stop = Arc::new(AtomicBool::new(false));
    let cluster_thread = match (&config.cluster, cluster_handle, &gossip) {
        (Some(settings), Some((handle, inbound)), Some((view, _))) => Some(
            cluster::start(
                settings,
                &handle,
                inbound,
                config.data_dir.clone(),
                view.clone(),
                runtime.control.clone(),
                runtime.catalog.clone(),
                runtime.replica_inbound.clone(),
                cluster_stop.clone(),
            )
            .context("starting the cluster plane")?,
        ),
        _ => None,
    };
    let admin_state = Arc::new(admin::AdminState {
        archive: tiered.as_ref().map(|t| t.archive.clone()),
        node_id: config.node_id,
        shard_count: config.shards,
        started,
        listen: config.listen,
        data_dir: config.data_dir.clone(),
        snapshots: runtime.snapshots.clone(),
        catalog: runtime.catalog.clone(),
        load: load.as_ref().map(|(handle, _)| handle.clone()),
        cluster: gossip.as_ref().map(|(view, _)| view.clone()),
        routes: cluster_thread
            .as_ref()
            .and(node.cluster.as_ref())
            .map(|c| c.routes.clone()),
        control: runtime.control.clone(),
    });
    let admin_addr = admin::spawn(config.admin, admin_state)
        .with_context(|| format!("binding admin HTTP on {}", config.admin))?;
    tracing::info!(
        quic = %config.listen,
        admin = %admin_addr,
        shards = config.shards,
        data_dir = %config.data_dir.display(),
        fsync = %config.fsync,
        startup_ms = started.elapsed().as_millis() as u64,
        "sprawl node ready"
    );
    println!(
        "sprawl {} ready in {} ms: quic://{} (ALPN sprawl/1), admin http://{}, {} shards, data dir {}",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_millis(),
        config.listen,
        admin_addr,
        config.shards,
        config.data_dir.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("shutting down: draining and fdatasyncing");
    cluster_stop.store(true, Ordering::Relaxed);
    if let Some(thread) = cluster_thread {
        let _ = thread.join();
    }
    gossip_stop.store(true, Ordering::Relaxed);
    if let Some((_, thread)) = gossip {
        let _ = thread.join();
    }
    runtime.request_shutdown();
    runtime.join()?;
    load_stop.store(true, Ordering::Relaxed);
    if let Some((_, thread)) = load {
        if thread.join().is_err() {
            tracing::error!("the load thread panicked");
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts the archive thread; with an empty catalog (empty data dir), adopts
/// the topics the archive holds so their old data stays readable.
fn start_archive(
    t: &config::TieredSettings,
    catalog: &mut TopicCatalog,
    catalog_path: &Path,
) -> anyhow::Result<sprawl_shards::TieredConfig> {
    let mut archive_config =
        sprawl_tiered::ArchiveConfig::from_env(&t.endpoint, &t.bucket, &t.prefix)
            .context("tiered storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
    if let Some(region) = &t.region {
        archive_config.region = region.clone();
    }
    archive_config.upload_bytes_per_s_max = t.upload_bytes_per_s_max;
    let archive = sprawl_tiered::Archive::start(archive_config).with_context(|| {
        format!(
            "starting the archive at {} (bucket {})",
            t.endpoint, t.bucket
        )
    })?;
    if catalog.topics.is_empty() {
        let listed = futures::executor::block_on(archive.list_partitions(""))
            .context("listing the archive to recover topics")?;
        let mut partitions: std::collections::BTreeMap<String, u32> = Default::default();
        for (topic, p) in listed {
            let n = partitions.entry(topic).or_default();
            *n = (*n).max(p + 1);
        }
        for (topic, n) in partitions {
            let config = sprawl_shards::TopicConfig {
                partitions: n,
                retention_bytes: None,
                retention_ms: None,
                created_ms: sprawl_shards::shard::now_ms(),
            };
            if catalog.create(&topic, config).is_ok() {
                tracing::info!(%topic, partitions = n, "recovered topic from the archive");
            }
        }
        if !catalog.topics.is_empty() {
            catalog
                .save(catalog_path)
                .context("saving the recovered catalog")?;
        }
    }
    Ok(sprawl_shards::TieredConfig {
        archive,
        local_retention: sprawl_storage::tiering::TierRetention {
            bytes: t.local_retention_bytes,
            ms: t.local_retention_ms,
        },
        cache_bytes: t.cache_bytes,
    })
}

/// The node id kept in `<data>/node_id`, generated (random, non-zero) on
/// first start: a cluster member keeps its identity across restarts.
fn persistent_node_id(data_dir: &Path) -> anyhow::Result<u32> {
    let path = data_dir.join("node_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a node id", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    // SplitMix64 step: spreads the seed's bits; 0 is reserved.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let id = ((z ^ (z >> 31)) as u32).max(1);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The certificate to serve: given, previously generated, or generated now.
fn tls_paths(config: &NodeConfig) -> anyhow::Result<CertPaths> {
    if let Some((cert, key)) = &config.tls {
        return Ok(CertPaths {
            cert_path: cert.clone(),
            key_path: key.clone(),
        });
    }
    let dir = config.data_dir.join("tls");
    let existing = CertPaths {
        cert_path: dir.join(sprawl_io::quic::tls::CERT_FILE_NAME),
        key_path: dir.join(sprawl_io::quic::tls::KEY_FILE_NAME),
    };
    if existing.cert_path.exists() && existing.key_path.exists() {
        return Ok(existing);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths = generate_self_signed(&dir).context("generating a self-signed certificate")?;
    print_generated(&paths.cert_path);
    Ok(paths)
}

fn print_generated(cert: &Path) {
    println!(
        "generated a self-signed TLS certificate: {} (clients verify it with --ca {})",
        cert.display(),
        cert.display()
    );
}
