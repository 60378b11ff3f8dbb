//! What the learned model costs a node: the time of one training call over
//! a few dozen series and of one prediction, and the share of a core they
//! take at a retraining every 30 s and a prediction per series every
//! second. Run by `scripts/forecast-bench.sh` (release, RAYON_NUM_THREADS=1).
//!
//!   model_timing [SERIES] [VALUES]        (default 36 series of 4096 values)

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use sprawl_forecast::{
    detect_period, GlobalModel, ModelConfig, OnlineSelector, SelectorConfig, LAG_MAX,
};

/// The node's cadence the budget is stated for.
const RETRAIN_INTERVAL_S: f64 = 30.0;
const PREDICT_INTERVAL_S: f64 = 1.0;
/// Adam steps per periodic training, and of the first (long) one.
const STEPS: usize = 30;
const STEPS_FIRST: usize = 300;
const HORIZONS: [usize; 4] = [1, 5, 15, 60];
const PERIOD: usize = 288;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let series_count: usize = args.next().map_or(Ok(36), |a| a.parse())?;
    let values: usize = args.next().map_or(Ok(4096), |a| a.parse())?;

    // Series of different scales and phases with the same daily shape,
    // plus deterministic noise.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0 - 0.5
    };
    let series: Vec<Vec<f64>> = (0..series_count)
        .map(|s| {
            let scale = 10f64.powi((s % 5) as i32);
            (0..values)
                .map(|t| {
                    let phase = TAU * ((t + 17 * s) % PERIOD) as f64 / PERIOD as f64;
                    scale * (100.0 + 40.0 * phase.sin() + 10.0 * noise())
                })
                .collect()
        })
        .collect();
    let slices: Vec<&[f64]> = series.iter().map(Vec::as_slice).collect();
    let periods = vec![Some(PERIOD); series_count];

    let mut model = GlobalModel::new(ModelConfig::new(HORIZONS.to_vec()))?;
    let started = Instant::now();
    model.train(&slices, &periods, STEPS_FIRST)?;
    let first = started.elapsed();

    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        model.train(&slices, &periods, STEPS)?;
    }
    let train = started.elapsed() / rounds;

    // One prediction of every horizon for every series, as a node's
    // selectors make at each new value.
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        for values in &slices {
            std::hint::black_box(model.predict_horizons(values, Some(PERIOD), &HORIZONS)?);
        }
    }
    let predict = started.elapsed() / (rounds * series_count as u32);

    // A selector's observe: scoring, baselines and the model's forecasts.
    let mut selector = OnlineSelector::new(SelectorConfig::new(HORIZONS.to_vec()))?;
    selector.set_period(Some(PERIOD));
    for &value in &series[0][..values / 2] {
        selector.observe(value, Some(&model))?;
    }
    let started = Instant::now();
    for &value in &series[0][values / 2..] {
        selector.observe(value, Some(&model))?;
        std::hint::black_box(selector.predict(1, Some(&model))?);
    }
    let observe = started.elapsed() / (values - values / 2) as u32;

    let history: Vec<f64> = series[0].iter().cycle().take(8192).copied().collect();
    let started = Instant::now();
    std::hint::black_box(detect_period(&history));
    let detect = started.elapsed();

    let share = (train.as_secs_f64() / RETRAIN_INTERVAL_S
        + series_count as f64 * observe.as_secs_f64() / PREDICT_INTERVAL_S)
        * 100.0;
    println!("series: {series_count} of {values} values, period {PERIOD}, horizons {HORIZONS:?}");
    println!(
        "model: {} hidden units, batch {}",
        model.config().hidden,
        model.config().batch
    );
    println!("first training ({STEPS_FIRST} Adam steps): {}", ms(first));
    println!("training call ({STEPS} Adam steps):        {}", ms(train));
    println!(
        "per Adam step:                        {}",
        ms(train / STEPS as u32)
    );
    println!(
        "predict ({} horizons, one series):     {}",
        HORIZONS.len(),
        us(predict)
    );
    println!("selector observe + predict:           {}", us(observe));
    println!(
        "detect_period (8192 values, lags ≤ {LAG_MAX}): {}",
        ms(detect)
    );
    println!(
        "core share at one training per {RETRAIN_INTERVAL_S} s and one observe + predict per series per {PREDICT_INTERVAL_S} s: {share:.3} %"
    );
    Ok(())
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

fn us(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}
