//! Node configuration: embedded defaults, then a TOML file, then `SPRAWL_*`
//! environment variables, then flags (flags win; clap reads the env vars as
//! fallbacks for the flags, so the two merge in one place).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;
use sprawl_storage::FsyncPolicy;

/// The Sprawl node.
#[derive(Parser, Debug, Default)]
#[command(
    name = "sprawl",
    version,
    about = "Sprawl node: a thread-per-core pub/sub and streaming broker"
)]
pub struct Flags {
    /// TOML configuration file (flags and SPRAWL_* variables override it).
    #[arg(long, env = "SPRAWL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (logs, catalog, TLS material). Default ./data
    #[arg(long, env = "SPRAWL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// QUIC address for clients. Default 127.0.0.1:7470
    #[arg(long, env = "SPRAWL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP address (/health, /metrics, /topics). Default 127.0.0.1:7480
    #[arg(long, env = "SPRAWL_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Shards (executors, one per core). Default: number of cores.
    #[arg(long, env = "SPRAWL_SHARDS")]
    pub shards: Option<usize>,
    /// TLS certificate (PEM). Default: a self-signed one generated into <data-dir>/tls.
    #[arg(long, env = "SPRAWL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SPRAWL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// fdatasync policy of partition logs: always | never | <N>ms. Default always
    #[arg(long, env = "SPRAWL_FSYNC")]
    pub fsync: Option<FsyncPolicy>,
    /// Largest record batch a producer may send, in bytes. Default 8 MiB
    #[arg(long, env = "SPRAWL_BATCH_BYTES_MAX")]
    pub batch_bytes_max: Option<usize>,
    /// Segment size in bytes. Default 256 MiB
    #[arg(long, env = "SPRAWL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Free bytes on the data disk below which producers are throttled
    /// (retryable error) and /health reports degraded. Default 128 MiB
    #[arg(long, env = "SPRAWL_DISK_FREE_BYTES_MIN")]
    pub disk_free_bytes_min: Option<u64>,
    /// S3 endpoint for tiered storage (e.g. http://127.0.0.1:8333); turns
    /// tiering on. Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "SPRAWL_TIERED_ENDPOINT")]
    pub tiered_endpoint: Option<String>,
    /// Bucket of the archive. Default sprawl
    #[arg(long, env = "SPRAWL_TIERED_BUCKET")]
    pub tiered_bucket: Option<String>,
    /// Key prefix of this node's objects in the bucket. Default sprawl
    #[arg(long, env = "SPRAWL_TIERED_PREFIX")]
    pub tiered_prefix: Option<String>,
    /// Keep at most this many bytes of archived segments locally per partition.
    #[arg(long, env = "SPRAWL_TIERED_LOCAL_RETENTION_BYTES")]
    pub tiered_local_retention_bytes: Option<u64>,
    /// Cap on upload bandwidth to the archive (bytes/s): archiving then
    /// takes less CPU and disk from producers at a time. Default: no cap
    #[arg(long, env = "SPRAWL_TIERED_UPLOAD_BYTES_PER_S_MAX")]
    pub tiered_upload_bytes_per_s_max: Option<u64>,
    /// Per-shard cache of archived chunks, bytes. Default 64 MiB
    #[arg(long, env = "SPRAWL_TIERED_CACHE_BYTES")]
    pub tiered_cache_bytes: Option<u64>,
    /// Auto rebalancing of partitions between shards: off | predictive |
    /// reactive. Default off (plan and apply by hand with `sprawlctl rebalance`)
    #[arg(long, env = "SPRAWL_REBALANCE_AUTO")]
    pub rebalance_auto: Option<String>,
    /// How often auto rebalancing considers a plan, seconds. Default 30
    #[arg(long, env = "SPRAWL_REBALANCE_INTERVAL_S")]
    pub rebalance_interval_s: Option<u64>,
    /// Run no load thread: no load history, forecasts or rebalancing (for
    /// measuring what they cost).
    #[arg(long, env = "SPRAWL_NO_LOAD_FORECAST")]
    pub no_load_forecast: bool,
    /// How often the load forecasting model trains, seconds. Default 30
    #[arg(long, env = "SPRAWL_FORECAST_TRAIN_EVERY_S")]
    pub forecast_train_every_s: Option<u64>,
    /// Gossip (SWIM membership) UDP address; turns clustering on. E.g.
    /// 127.0.0.2:7946
    #[arg(long, env = "SPRAWL_GOSSIP")]
    pub gossip: Option<SocketAddr>,
    /// Gossip addresses of seed nodes, comma separated (retried until one
    /// answers; a node's own address is skipped).
    #[arg(long, env = "SPRAWL_JOIN", value_delimiter = ',')]
    pub join: Vec<SocketAddr>,
    /// Shared cluster keys (64 hex digits each, comma separated): the first
    /// seals gossip, every one opens it (rotate by adding, promoting, retiring).
    #[arg(long, env = "SPRAWL_CLUSTER_KEY", value_delimiter = ',')]
    pub cluster_key: Vec<String>,
    /// The cluster CA certificate (PEM, from `sprawlctl cert ca`). With
    /// --gossip, turns on node-to-node QUIC with mutual TLS and the metadata
    /// Raft group; --tls-cert/--tls-key must then be this node's certificate
    /// from `sprawlctl cert node` (it serves clients and peers alike).
    #[arg(long, env = "SPRAWL_CLUSTER_CA", requires = "gossip")]
    pub cluster_ca: Option<PathBuf>,
    /// Node-to-node QUIC address (mutual TLS). Default: the --listen IP, port 7490
    #[arg(long, env = "SPRAWL_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// Found the cluster's metadata Raft group if the data dir holds none
    /// (exactly one node of a new cluster; the others join it).
    #[arg(long, env = "SPRAWL_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Replication factor of topics created without one. Default: 3 on a
    /// cluster of 3 or more live members, else 1.
    #[arg(long, env = "SPRAWL_REPLICATION_FACTOR")]
    pub replication_factor: Option<u16>,
    /// This node's rack (replicas avoid sharing one).
    #[arg(long, env = "SPRAWL_RACK")]
    pub rack: Option<String>,
    /// Node id reported to clients. Default 1; with --gossip, a random id
    /// kept in <data-dir>/node_id
    #[arg(long, env = "SPRAWL_NODE_ID")]
    pub node_id: Option<u32>,
    /// Do not pin shards to cores (e.g. when several nodes share a machine).
    #[arg(long, env = "SPRAWL_NO_PIN")]
    pub no_pin: bool,
    /// Log filter (tracing EnvFilter syntax). Default info
    #[arg(long, env = "SPRAWL_LOG")]
    pub log: Option<String>,
}

/// The `sprawl.toml` file; every field optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub shards: Option<usize>,
    pub node_id: Option<u32>,
    pub pin_cpus: Option<bool>,
    pub log: Option<String>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub tiered: TieredSection,
}

/// `[tiered]`: S3-compatible archive of sealed segments.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TieredSection {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub region: Option<String>,
    /// Per partition, local copies of archived segments beyond these go.
    pub local_retention_bytes: Option<u64>,
    pub local_retention_ms: Option<u64>,
    /// Per-shard read-through cache of archived chunks.
    pub cache_bytes: Option<u64>,
    /// Cap on upload bandwidth to the archive.
    pub upload_bytes_per_s_max: Option<u64>,
}

/// Resolved tiered-storage settings.
#[derive(Debug, Clone)]
pub struct TieredSettings {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub local_retention_bytes: Option<u64>,
    pub local_retention_ms: Option<u64>,
    pub cache_bytes: u64,
    pub upload_bytes_per_s_max: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub fsync: Option<String>,
    pub segment_bytes: Option<u64>,
    pub batch_bytes_max: Option<usize>,
    pub ring_bytes: Option<usize>,
    pub retention_check_ms: Option<u64>,
    pub fetch_wait_ms_max: Option<u32>,
    pub disk_free_bytes_min: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub shards: usize,
    pub node_id: u32,
    pub pin_cpus: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    pub batch_bytes_max: usize,
    pub ring_bytes: usize,
    pub retention_check_ms: u64,
    pub fetch_wait_ms_max: u32,
    pub disk_free_bytes_min: u64,
    pub tiered: Option<TieredSettings>,
    pub log: String,
    /// Auto rebalancing strategy (None: off) and its interval.
    pub rebalance_auto: Option<sprawl_forecast::Strategy>,
    pub rebalance_interval_s: u64,
    pub forecast_train_every_s: u64,
    pub load_forecast: bool,
    /// Whether the node id was given (else, with gossip, one is generated).
    pub node_id_given: bool,
    pub gossip: Option<crate::gossip::GossipSettings>,
    /// Node-to-node QUIC and metadata Raft (with --gossip and --cluster-ca).
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

impl NodeConfig {
    pub fn resolve(flags: Flags) -> anyhow::Result<Self> {
        let file = match &flags.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let fsync = match (flags.fsync, file.storage.fsync.as_deref()) {
            (Some(f), _) => f,
            (None, Some(s)) => s
                .parse()
                .map_err(|e: String| anyhow::anyhow!("[storage] fsync: {e}"))?,
            (None, None) => FsyncPolicy::Always,
        };
        let tls = match (flags.tls_cert, flags.tls_key, file.tls.cert, file.tls.key) {
            (Some(c), Some(k), _, _) => Some((c, k)),
            (None, None, Some(c), Some(k)) => Some((c, k)),
            (None, None, None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate and a key"),
        };
        let shards = flags
            .shards
            .or(file.shards)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        anyhow::ensure!(
            (1..=256).contains(&shards),
            "shards must be between 1 and 256, got {shards}"
        );
        let segment_bytes = flags
            .segment_bytes
            .or(file.storage.segment_bytes)
            .unwrap_or(256 << 20);
        anyhow::ensure!(
            (1 << 20..=u64::from(u32::MAX)).contains(&segment_bytes),
            "segment_bytes must be between 1 MiB and 4 GiB"
        );
        let batch_bytes_max = flags
            .batch_bytes_max
            .or(file.storage.batch_bytes_max)
            .unwrap_or(8 << 20);
        anyhow::ensure!(
            batch_bytes_max as u64 <= segment_bytes / 2 && batch_bytes_max <= 64 << 20,
            "batch_bytes_max must be at most half a segment and 64 MiB"
        );
        let tiered = flags
            .tiered_endpoint
            .or(file.tiered.endpoint)
            .map(|endpoint| TieredSettings {
                endpoint,
                bucket: flags
                    .tiered_bucket
                    .or(file.tiered.bucket)
                    .unwrap_or_else(|| "sprawl".into()),
                prefix: flags
                    .tiered_prefix
                    .or(file.tiered.prefix)
                    .unwrap_or_else(|| "sprawl".into()),
                region: file.tiered.region,
                local_retention_bytes: flags
                    .tiered_local_retention_bytes
                    .or(file.tiered.local_retention_bytes),
                local_retention_ms: file.tiered.local_retention_ms,
                upload_bytes_per_s_max: flags
                    .tiered_upload_bytes_per_s_max
                    .or(file.tiered.upload_bytes_per_s_max),
                cache_bytes: flags
                    .tiered_cache_bytes
                    .or(file.tiered.cache_bytes)
                    .unwrap_or(64 << 20),
            });
        let rebalance_auto = match flags.rebalance_auto.as_deref().unwrap_or("off") {
            "off" => None,
            mode => Some(mode.parse::<sprawl_forecast::Strategy>().map_err(|_| {
                anyhow::anyhow!(
                    "--rebalance-auto must be off, predictive or reactive, not {mode:?}"
                )
            })?),
        };
        let node_id_given = flags.node_id.or(file.node_id).is_some();
        let gossip = flags.gossip.map(|bind| crate::gossip::GossipSettings {
            bind,
            seeds: flags.join.clone(),
            keys: flags.cluster_key.clone(),
            rack: flags.rack.clone(),
        });
        let listen: SocketAddr = flags
            .listen
            .or(file.listen)
            .unwrap_or(([127, 0, 0, 1], 7470).into());
        let peer_listen = flags
            .peer_listen
            .unwrap_or(SocketAddr::new(listen.ip(), 7490));
        let cluster = match flags.cluster_ca.clone() {
            None => None,
            Some(ca_cert) => {
                let Some((cert_path, key_path)) = tls.clone() else {
                    anyhow::bail!(
                        "--cluster-ca needs this node's certificate: --tls-cert node-N.pem \
                         --tls-key node-N-key.pem (from `sprawlctl cert node`)"
                    );
                };
                Some(crate::cluster::ClusterSettings {
                    peer_listen,
                    ca_cert,
                    node_cert: sprawl_io::quic::CertPaths {
                        cert_path,
                        key_path,
                    },
                    bootstrap: flags.bootstrap,
                    default_replication_factor: flags.replication_factor.unwrap_or(0),
                })
            }
        };
        Ok(Self {
            node_id_given,
            gossip,
            cluster,
            rebalance_auto,
            rebalance_interval_s: flags.rebalance_interval_s.unwrap_or(30).max(1),
            forecast_train_every_s: flags.forecast_train_every_s.unwrap_or(30).max(1),
            load_forecast: !flags.no_load_forecast,
            tiered,
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            listen,
            admin: flags
                .admin
                .or(file.admin)
                .unwrap_or(([127, 0, 0, 1], 7480).into()),
            shards,
            node_id: flags.node_id.or(file.node_id).unwrap_or(1),
            pin_cpus: !flags.no_pin && file.pin_cpus.unwrap_or(true),
            tls,
            fsync,
            segment_bytes,
            batch_bytes_max,
            ring_bytes: file.storage.ring_bytes.unwrap_or(8 << 20),
            retention_check_ms: file.storage.retention_check_ms.unwrap_or(10_000),
            fetch_wait_ms_max: file.storage.fetch_wait_ms_max.unwrap_or(30_000),
            disk_free_bytes_min: flags
                .disk_free_bytes_min
                .or(file.storage.disk_free_bytes_min)
                .unwrap_or(128 << 20),
            log: flags.log.or(file.log).unwrap_or_else(|| "info".into()),
        })
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = NodeConfig::resolve(Flags::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7470".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.fsync, FsyncPolicy::Always);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sprawl.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nshards = 3\n[storage]\nfsync = \"5ms\"\n",
        )
        .unwrap();
        let c = NodeConfig::resolve(Flags {
            config: Some(path.clone()),
            shards: Some(1),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9000, "from the file");
        assert_eq!(c.shards, 1, "flags win");
        assert_eq!(c.fsync, FsyncPolicy::IntervalMs(5));

        std::fs::write(&path, "bogus = 1\n").unwrap();
        let err = NodeConfig::resolve(Flags {
            config: Some(path),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }
}
