//! `forecast eval`: the baseline forecasters and the learned model scored on
//! a CSV trace. Runs offline: no node, no connection.

use anyhow::Context;
use serde_json::json;
use sprawl_forecast::{evaluate, read_csv, select};

use crate::cli::{ForecastCommand, ForecastEvalArgs, Format};
use crate::output::{print, print_json};
use crate::table::{Align, Table};

pub fn run(command: &ForecastCommand, format: Format) -> anyhow::Result<()> {
    match command {
        ForecastCommand::Eval(args) => eval(args, format),
    }
}

fn eval(args: &ForecastEvalArgs, format: Format) -> anyhow::Result<()> {
    let rows = read_csv(&args.csv).context("forecast eval")?;
    let series: Vec<f64> = rows.iter().map(|(_, value)| *value).collect();
    let horizon = usize::try_from(args.horizon).context("--horizon")?;
    let warmup = args.warmup.unwrap_or(series.len() / 4).max(2);
    let scores = evaluate(&series, horizon, warmup);
    let Some(selected) = select(&scores) else {
        anyhow::bail!(
            "forecast eval: {} has {} values: too few for a warm-up of {warmup} and a horizon of {horizon}",
            args.csv.display(),
            series.len()
        );
    };
    match format {
        Format::Json => print_json(&json!({
            "forecasters": scores
                .iter()
                .map(|s| json!({"name": s.name, "mape": s.mape, "mase": s.mase}))
                .collect::<Vec<_>>(),
            "selected": selected,
            "horizon": horizon,
            "warmup": warmup,
            "values": series.len(),
        })),
        Format::Text => {
            let mut table = Table::new(&[
                ("FORECASTER", Align::Left),
                ("MAPE_%", Align::Right),
                ("MASE", Align::Right),
                ("SELECTED", Align::Left),
            ]);
            for score in &scores {
                table.row(vec![
                    score.name.clone(),
                    number(score.mape, 2),
                    number(score.mase, 3),
                    if score.name == selected { "*" } else { "" }.to_string(),
                ]);
            }
            print(&format!(
                "{}: {} values, horizon {horizon}, warm-up {warmup} (MAPE skips zero actuals)\n{}selected: {selected}\n",
                args.csv.display(),
                series.len(),
                table.render(),
            ))
        }
    }
}

/// NaN (no non-zero actual) prints as `-`.
fn number(value: f64, decimals: usize) -> String {
    if value.is_nan() {
        "-".to_string()
    } else {
        format!("{value:.decimals$}")
    }
}
