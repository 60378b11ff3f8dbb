//! The baselines on a real load trace, when one is present (traces are
//! not committed: `/work/shared/data/load-traces/`, or the directory in
//! `SPRAWL_LOAD_TRACES`).

use std::path::PathBuf;

use sprawl_forecast::{evaluate, read_csv, select};

fn trace_dir() -> PathBuf {
    std::env::var_os("SPRAWL_LOAD_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data/load-traces"))
}

#[test]
fn baselines_on_a_real_trace() {
    let dir = trace_dir();
    let mut traces: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "csv"))
            .collect(),
        Err(error) => {
            eprintln!("skipped: no load traces in {}: {error}", dir.display());
            return;
        }
    };
    traces.sort();
    let Some(trace) = traces.first() else {
        eprintln!("skipped: {} has no .csv trace", dir.display());
        return;
    };
    let rows = read_csv(trace).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rows.len() > 100,
        "{}: only {} rows",
        trace.display(),
        rows.len()
    );
    let series: Vec<f64> = rows.iter().map(|(_, value)| *value).collect();
    let warmup = series.len() / 4;
    let scores = evaluate(&series, 1, warmup);
    assert!(scores.len() >= 3, "{scores:?}");
    for score in &scores {
        eprintln!(
            "{}: {} mape {:.2}% mase {:.3}",
            trace.display(),
            score.name,
            score.mape,
            score.mase
        );
        assert_eq!(score.predictions.len(), series.len() - warmup);
        assert!(score.mase.is_finite() && score.mase > 0.0, "{score:?}");
        assert!(score.predictions.iter().all(|p| p.is_finite()));
    }
    let selected = select(&scores).expect("scores");
    eprintln!("{}: selected {selected}", trace.display());
}
