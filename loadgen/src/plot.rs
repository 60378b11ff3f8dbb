//! The latency-by-percentile SVG: latency (ms) against percentile on a
//! log axis of 1/(1-percentile), as HdrHistogram plots are drawn, so the
//! tail (99.9%, 99.99%) gets as much room as the median.

use plotters::prelude::*;

/// One curve: a label and `(1/(1-q), latency_ms)` points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// x-axis tick label: 1 → "0%", 10 → "90%", 100 → "99%", 1000 → "99.9%".
fn percentile_label(x: f64) -> String {
    let nines = x.log10().round() as i32;
    match nines {
        i32::MIN..=0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat((n - 2) as usize)),
    }
}

/// Renders the series as an SVG document.
pub fn latency_by_percentile_svg(title: &str, series: &[Series]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let x_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(10.0f64, f64::max);
        // A whole number of decades, so the last tick is labelled.
        let x_max = 10f64.powf(x_max.log10().ceil());
        // Log y too: brokers differ by orders of magnitude, and a linear
        // axis flattens the faster one against zero.
        // Whole decades from the smallest to the largest value (1 µs floor);
        // without any points, 0.01..10 ms.
        let ys = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (low, high) = ys().fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (low, high) = if low <= high {
            (low.max(0.001), high.max(0.001))
        } else {
            (0.01, 10.0)
        };
        let y_min = 10f64.powf(low.log10().floor());
        let y_max = 10f64.powf(high.log10().ceil()).max(y_min * 10.0);
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .margin_right(48)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((1f64..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| {
                if *y >= 1.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y}")
                }
            })
            .draw()?;
        let colors = [
            RGBColor(31, 119, 180),
            RGBColor(214, 39, 40),
            RGBColor(44, 160, 44),
            RGBColor(255, 127, 14),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(127, 127, 127),
        ];
        for (i, s) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_a_well_formed_svg() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
        let svg = latency_by_percentile_svg(
            "test",
            &[Series {
                label: "publish→ack".into(),
                points: vec![(1.0, 0.1), (10.0, 0.2), (100.0, 0.5), (1000.0, 2.0)],
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("99.9%"));
        assert!(svg.contains("publish→ack"));
        // No points at all (a consume run) still renders, and terminates.
        let empty = latency_by_percentile_svg("empty", &[]).unwrap();
        assert!(empty.trim_end().ends_with("</svg>"));
        let flat = latency_by_percentile_svg(
            "one value",
            &[Series {
                label: "x".into(),
                points: vec![(1.0, 0.5), (10.0, 0.5)],
            }],
        )
        .unwrap();
        assert!(flat.trim_end().ends_with("</svg>"));
    }
}
