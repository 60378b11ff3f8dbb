//! `sprawlctl load` and `sprawlctl predict`: the load series the node
//! recorded and its forecasts of them, from the admin endpoint's `/load`
//! and `/predictions`.
//!
//! `--format json` prints the node's answer as it is; the text forms are
//! built from it here.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::admin_http::{query, AdminEndpoint};
use crate::cli::{Format, LoadArgs, PredictArgs};
use crate::output::{print, print_json};
use crate::table::{exact_duration_ms, Align, Table};

pub async fn load(args: &LoadArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let mut pairs = vec![("window", format!("{}s", args.window))];
    if let Some(scope) = args.scope {
        pairs.push(("scope", scope.name().to_owned()));
    }
    if let Some(resource) = args.resource {
        pairs.push(("resource", resource.name().to_owned()));
    }
    let endpoint = AdminEndpoint::new(&args.admin.admin, timeout);
    let answer = endpoint.get(&format!("/load{}", query(&pairs))).await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&load_text(&answer, args.window)),
    }
}

pub async fn predict(args: &PredictArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let pairs = [
        ("resource", args.resource.name().to_owned()),
        ("scope", args.scope.name().to_owned()),
        ("horizon", format!("{}s", args.horizon)),
    ];
    let endpoint = AdminEndpoint::new(&args.admin.admin, timeout);
    let answer = endpoint
        .get(&format!("/predictions{}", query(&pairs)))
        .await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&predictions_text(&answer)),
    }
}

/// A load or forecast value: rates and levels of any size, cores busy
/// below one. `-` for none (JSON null: no value, or not finite).
fn quantity(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Rolling errors: NaN and missing print as `-`.
fn error_number(value: &Value, decimals: usize) -> String {
    value
        .as_f64()
        .filter(|v| v.is_finite())
        .map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

fn seconds(s: u64) -> String {
    exact_duration_ms(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
}

/// A series' values in the window: (newest, mean, maximum, how many).
fn summary(series: &Value) -> (Option<f64>, Option<f64>, Option<f64>, usize) {
    let values: Vec<f64> = series["values"]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let max = values.iter().copied().reduce(f64::max);
    (series["latest"].as_f64(), mean, max, values.len())
}

fn load_text(answer: &Value, window_s: u64) -> String {
    let series = answer["series"].as_array().map_or(&[][..], Vec::as_slice);
    let mut text = String::new();
    if series.is_empty() {
        text += "no load recorded yet for these series (the node records one value a second)\n";
    } else {
        let _ = writeln!(
            text,
            "{} over the last {}:",
            if series.len() == 1 {
                "1 series".to_owned()
            } else {
                format!("{} series", series.len())
            },
            seconds(window_s)
        );
        let mut table = Table::new(&[
            ("RESOURCE", Align::Left),
            ("SCOPE", Align::Left),
            ("LATEST", Align::Right),
            ("MEAN", Align::Right),
            ("MAX", Align::Right),
            ("VALUES", Align::Right),
        ]);
        for s in series {
            let (latest, mean, max, values) = summary(s);
            table.row(vec![
                s["resource"].as_str().unwrap_or("?").to_owned(),
                s["scope"].as_str().unwrap_or("?").to_owned(),
                quantity(latest),
                quantity(mean),
                quantity(max),
                values.to_string(),
            ]);
        }
        text += &table.render();
    }
    let cost = &answer["forecaster"];
    if let Some(share) = cost["cpu_share_of_one_core"].as_f64() {
        let _ = write!(text, "forecasting costs {:.2}% of one core", 100.0 * share);
        match cost["trainings"].as_u64() {
            Some(0) => text += "; the model has not trained yet",
            Some(n) => {
                let _ = write!(text, "; model trained {n} times");
                if let Some(steps) = cost["model_steps_trained"].as_u64() {
                    let _ = write!(text, ", {steps} steps");
                }
                if let Some(loss) = cost["last_training_loss"].as_f64() {
                    let _ = write!(text, ", last loss {loss:.4}");
                }
            }
            None => {}
        }
        text.push('\n');
    }
    text
}

fn predictions_text(answer: &Value) -> String {
    let resource = answer["resource"].as_str().unwrap_or("?");
    let scope = answer["scope"].as_str().unwrap_or("?");
    let horizon = answer["horizon_s"].as_u64().map_or("?".into(), seconds);
    let predictions = answer["predictions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut text = format!("{resource}, {scope} scope, {horizon} ahead\n");
    if predictions.is_empty() {
        text += "no forecasts yet (a series gets them once it has some history)\n";
        return text;
    }
    let mut forecasts = Table::new(&[
        ("SCOPE", Align::Left),
        ("FORECAST", Align::Right),
        ("INTERVAL", Align::Left),
        ("FORECASTER", Align::Left),
    ]);
    let mut errors = Table::new(&[
        ("SCOPE", Align::Left),
        ("FORECASTER", Align::Left),
        ("MAPE_%", Align::Right),
        ("MASE", Align::Right),
        ("SCORED", Align::Right),
        ("USED", Align::Left),
    ]);
    let mut scored = false;
    for p in predictions {
        let scope = p["scope"].as_str().unwrap_or("?");
        let used = p["forecaster"].as_str().unwrap_or("?");
        let interval = match (p["interval"][0].as_f64(), p["interval"][1].as_f64()) {
            (Some(low), Some(high)) => {
                format!("{} .. {}", quantity(Some(low)), quantity(Some(high)))
            }
            // Too few errors yet to bound the forecast.
            _ => "-".into(),
        };
        forecasts.row(vec![
            scope.to_owned(),
            quantity(p["forecast"].as_f64()),
            interval,
            used.to_owned(),
        ]);
        for score in p["rolling_errors"].as_array().into_iter().flatten() {
            let name = score["name"].as_str().unwrap_or("?");
            scored = true;
            errors.row(vec![
                scope.to_owned(),
                name.to_owned(),
                error_number(&score["mape"], 2),
                error_number(&score["mase"], 3),
                score["scored"]
                    .as_u64()
                    .map_or("-".into(), |n| n.to_string()),
                if name == used { "*" } else { "" }.to_owned(),
            ]);
        }
    }
    text += &forecasts.render();
    if scored {
        text += "rolling errors of each forecaster at this horizon (MAPE skips zero actuals):\n";
        text += &errors.render();
    } else {
        text += "rolling errors: none yet (a forecaster is scored once its forecasts come due)\n";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn load_series_summarise_their_window() {
        let answer = json!({
            "unix_s": 1_700_000_060,
            "step_s": 1,
            "series": [
                {
                    "series": "messages_in_per_s@node", "resource": "messages_in_per_s",
                    "scope": "node", "newest_unix_s": 1_700_000_059, "latest": 250.0,
                    "values": [100.0, null, 200.0, 250.0],
                },
                {
                    "series": "cpu_busy_cores@shard:1", "resource": "cpu_busy_cores",
                    "scope": "shard:1", "newest_unix_s": 1_700_000_059, "latest": 0.125,
                    "values": [0.1, 0.125],
                },
                {
                    "series": "memory_bytes@node", "resource": "memory_bytes",
                    "scope": "node", "newest_unix_s": null, "latest": null, "values": [],
                },
            ],
            "forecaster": {
                "cpu_share_of_one_core": 0.0123, "train_ms_total": 5.0,
                "observe_ms_total": 1.0, "trainings": 3, "model_steps_trained": 600,
                "last_training_loss": 0.04567,
            },
        });
        assert_eq!(
            load_text(&answer, 60),
            "3 series over the last 1m:\n\
             RESOURCE           SCOPE    LATEST   MEAN    MAX  VALUES\n\
             messages_in_per_s  node        250    183    250       3\n\
             cpu_busy_cores     shard:1   0.125  0.113  0.125       2\n\
             memory_bytes       node          -      -      -       0\n\
             forecasting costs 1.23% of one core; model trained 3 times, 600 steps, last loss 0.0457\n"
        );
        let untrained = json!({
            "series": [],
            "forecaster": {"cpu_share_of_one_core": 0.004, "trainings": 0, "last_training_loss": 0.0},
        });
        assert_eq!(
            load_text(&untrained, 60),
            "no load recorded yet for these series (the node records one value a second)\n\
             forecasting costs 0.40% of one core; the model has not trained yet\n"
        );
    }

    #[test]
    fn predictions_show_the_forecaster_used_and_every_rolling_error() {
        let answer = json!({
            "resource": "messages_in_per_s", "scope": "partition", "horizon_s": 60,
            "unix_s": 1_700_000_000,
            "predictions": [
                {
                    "series": "messages_in_per_s@partition:orders/0",
                    "scope": "partition:orders/0", "forecast": 1234.4,
                    "interval": [1100.2, 1400.9], "forecaster": "seasonal_naive(6)",
                    "rolling_errors": [
                        {"name": "last_value", "mape": 12.345, "mase": 1.2, "scored": 60},
                        {"name": "seasonal_naive(6)", "mape": 3.21, "mase": 0.4567, "scored": 60},
                    ],
                },
                {
                    "series": "messages_in_per_s@partition:orders/1",
                    "scope": "partition:orders/1", "forecast": 0.0,
                    "interval": [null, null], "forecaster": "last_value",
                    "rolling_errors": [
                        {"name": "last_value", "mape": null, "mase": 0.5, "scored": 8},
                    ],
                },
            ],
        });
        assert_eq!(
            predictions_text(&answer),
            "messages_in_per_s, partition scope, 1m ahead\n\
             SCOPE               FORECAST  INTERVAL      FORECASTER\n\
             partition:orders/0      1234  1100 .. 1401  seasonal_naive(6)\n\
             partition:orders/1         0  -             last_value\n\
             rolling errors of each forecaster at this horizon (MAPE skips zero actuals):\n\
             SCOPE               FORECASTER         MAPE_%   MASE  SCORED  USED\n\
             partition:orders/0  last_value          12.35  1.200      60\n\
             partition:orders/0  seasonal_naive(6)    3.21  0.457      60  *\n\
             partition:orders/1  last_value              -  0.500       8  *\n"
        );
        let unscored = json!({
            "resource": "cpu_busy_cores", "scope": "shard", "horizon_s": 10,
            "predictions": [{
                "scope": "shard:0", "forecast": 0.5, "interval": [null, null],
                "forecaster": "last_value", "rolling_errors": [],
            }],
        });
        assert_eq!(
            predictions_text(&unscored),
            "cpu_busy_cores, shard scope, 10s ahead\n\
             SCOPE    FORECAST  INTERVAL  FORECASTER\n\
             shard:0     0.500  -         last_value\n\
             rolling errors: none yet (a forecaster is scored once its forecasts come due)\n"
        );
        let none = json!({"resource": "cpu_busy_cores", "scope": "node", "horizon_s": 3600, "predictions": []});
        assert_eq!(
            predictions_text(&none),
            "cpu_busy_cores, node scope, 1h ahead\n\
             no forecasts yet (a series gets them once it has some history)\n"
        );
    }

    #[test]
    fn quantities_keep_their_significant_digits() {
        assert_eq!(quantity(None), "-");
        assert_eq!(quantity(Some(0.0)), "0");
        assert_eq!(quantity(Some(0.1234)), "0.123");
        assert_eq!(quantity(Some(12.345)), "12.35");
        assert_eq!(quantity(Some(123_456_789.4)), "123456789");
    }
}
