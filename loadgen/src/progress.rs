//! The live progress line: rate over the last second, totals, and p99 so
//! far of the run's main latency, once a second on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::recorder::{new_histogram, LatencyRecorder};
use crate::report::thousands;

/// Counters every task bumps, and the recorders whose p99 is shown.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub delivered: AtomicU64,
    recorders: Mutex<Vec<Arc<Mutex<LatencyRecorder>>>>,
}

/// Locks a mutex whose holders never panic while holding it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    /// Registers a task's recorder for the p99 shown.
    pub fn watch(&self, recorder: Arc<Mutex<LatencyRecorder>>) {
        lock(&self.recorders).push(recorder);
    }

    /// p99 in ms over everything recorded so far, if anything was.
    fn p99_ms(&self) -> Option<f64> {
        let mut h = new_histogram();
        for r in lock(&self.recorders).iter() {
            h.add(&lock(r).corrected).ok()?;
        }
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

/// Prints the progress line every second until `stop` is set. `counts`
/// picks the counter whose rate is shown (acked for producers, delivered
/// for consumers).
pub async fn report_progress(
    live: Arc<Live>,
    clock: Clock,
    measure_from_ns: u64,
    delivered_rate: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now = clock.now_ns();
        let counter = if delivered_rate {
            &live.delivered
        } else {
            &live.acked
        };
        let total = counter.load(Ordering::Relaxed);
        let phase = if now < measure_from_ns {
            "warm-up"
        } else {
            "measure"
        };
        let p99 = live
            .p99_ms()
            .map_or("-".to_string(), |p| format!("{p:.3} ms"));
        let line = format!(
            "[{:6.1}s {phase}] {} msgs/s · sent {} · acked {} · delivered {} · failed {} · p99 {p99}",
            now as f64 / 1e9,
            thousands(total - last),
            thousands(live.sent.load(Ordering::Relaxed)),
            thousands(live.acked.load(Ordering::Relaxed)),
            thousands(live.delivered.load(Ordering::Relaxed)),
            thousands(live.failed.load(Ordering::Relaxed)),
        );
        last = total;
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
    if tty {
        eprintln!();
    }
}
