//! `loadgen`: the benchmarking tool of Sprawl.
//!
//! It drives a Sprawl node over QUIC (the `sprawl-client` crate) or, for a
//! side-by-side baseline, a NATS JetStream server (`async-nats`), with the
//! same workloads, message sizes and durability, and reports throughput and
//! HdrHistogram latency percentiles (`summary.json`, `.hgrm`, `report.md`,
//! an SVG plot).
//!
//! The measurement core is sans-IO and tested without a runtime:
//! * [`schedule`]: open-loop send times (following a rate curve) and
//!   message sizes;
//! * [`shape`], [`placement`]: load shapes (recorded traces, periodic
//!   bursts) and skewed partition choice, for scenarios that exercise
//!   rebalancing;
//! * [`payload`]: the timestamp header every message carries;
//! * [`recorder`]: latency histograms with coordinated-omission correction
//!   (open loop measures from the *intended* send time);
//! * [`stats`], [`report`], [`plot`], [`compare`], [`timeline`]:
//!   percentiles, `.hgrm` files, report and comparison building, the SVG,
//!   per-second load over time.
//!
//! [`driver`] is the one small trait both brokers implement; [`run`] drives
//! workloads through it on tokio.
//!
//! Architecture invariant: a message's latency is measured from the time it
//! was meant to be sent in open loop (never from when the sender got around
//! to it), and no message sent during warm-up is counted.

pub mod cli;
pub mod clock;
pub mod compare;
pub mod driver;
pub mod payload;
pub mod placement;
pub mod plot;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod schedule;
pub mod shape;
pub mod stats;
pub mod timeline;
