//! `sprawlctl forecast eval`: offline, on a generated trace; no node runs
//! and the node address points nowhere, so any connection attempt fails.

mod common;

use std::fmt::Write;

use common::ctl_in;
use serde_json::Value;

/// Period 6, no noise: seasonal naive forecasts it exactly.
fn seasonal_trace() -> String {
    let shape = [10.0, 12.0, 30.0, 45.0, 20.0, 11.0];
    let mut csv = String::from("timestamp,value\n");
    for step in 0..240 {
        writeln!(csv, "{},{}", 1_700_000_000 + 300 * step, shape[step % 6]).unwrap();
    }
    csv
}

/// TEST-NET-1 (RFC 5737): never routed, so a connection would time out.
const NODE_NOWHERE: &str = "192.0.2.1:7470";

#[test]
fn forecast_eval_scores_the_baselines_without_a_node() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trace.csv"), seasonal_trace()).unwrap();

    let text = ctl_in(
        dir.path(),
        &[
            "--node",
            NODE_NOWHERE,
            "--timeout",
            "1s",
            "forecast",
            "eval",
            "--csv",
            "trace.csv",
        ],
        None,
    )
    .ok();
    assert!(text.contains("FORECASTER"), "{text}");
    assert!(text.contains("last_value"), "{text}");
    assert!(text.ends_with("selected: seasonal_naive(6)\n"), "{text}");

    let run = ctl_in(
        dir.path(),
        &[
            "--node",
            NODE_NOWHERE,
            "forecast",
            "eval",
            "--csv",
            "trace.csv",
            "--horizon",
            "3",
            "--warmup",
            "60",
            "--format",
            "json",
        ],
        None,
    );
    let json: Value = serde_json::from_str(&run.ok()).unwrap();
    assert_eq!(json["selected"], "seasonal_naive(6)");
    let forecasters = json["forecasters"].as_array().unwrap();
    let names: Vec<&str> = forecasters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "last_value",
            "seasonal_naive(6)",
            "ewma(0.3)",
            "holt(0.3,0.1)",
            "model(mlp)"
        ]
    );
    assert_eq!(forecasters[1]["mase"], 0.0);
    assert_eq!(forecasters[1]["mape"], 0.0);
    assert!(forecasters[0]["mase"].as_f64().unwrap() > 0.0);
}

#[test]
fn forecast_eval_names_a_bad_line_and_a_short_trace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "timestamp,value\n1,2\n2,lots\n").unwrap();
    let run = ctl_in(dir.path(), &["forecast", "eval", "--csv", "bad.csv"], None);
    let line = run.failed(1);
    assert!(line.contains("bad.csv: line 3: value \"lots\""), "{line}");

    std::fs::write(dir.path().join("short.csv"), "1,2\n2,3\n").unwrap();
    let run = ctl_in(
        dir.path(),
        &["forecast", "eval", "--csv", "short.csv"],
        None,
    );
    assert!(run.failed(1).contains("too few"), "{run:?}");
}
