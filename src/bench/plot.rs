//! The plot: throughput (left panel) and p99 latency (right panel) against
//! concurrency, one line per target and workload, as a small hand-written SVG.
//!
//! Concurrency is on a log2 axis because sweeps double or quadruple it; throughput
//! and p99 on log10 axes because the baselines span orders of magnitude (plain Redis
//! is ~100× a durable write), and on a linear axis everything but Redis would lie
//! flat on zero. Colour says the target, the dash says the workload.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::args::{Target, Workload};
use super::report::Measurement;

const PANEL_WIDTH: f64 = 420.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 60.0;
const GAP: f64 = 90.0;
const LEGEND_ROW: f64 = 20.0;

/// One line of the plot: (concurrency, ops/s, p99 ms) points.
type Series = Vec<(f64, f64, f64)>;

/// Renders the closed-loop runs of `runs` as an SVG document.
pub fn svg(runs: &[Measurement], title: &str) -> String {
    // Keyed by target in report order, then workload name: with the usual two
    // workloads the legend's two columns then hold one workload each.
    let mut series: BTreeMap<(usize, &'static str), (Target, Workload, Series)> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.mode == "closed") {
        let order = Target::ALL
            .iter()
            .position(|&t| t == run.target)
            .unwrap_or(0);
        let entry = series
            .entry((order, run.workload_label()))
            .or_insert_with(|| (run.target, run.workload, Vec::new()));
        entry.2.push((
            f64::from(run.concurrency),
            run.throughput,
            run.latency_us.p99 as f64 / 1000.0,
        ));
    }
    for (_, _, points) in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    let all = || series.values().flat_map(|(_, _, points)| points.iter());
    let x_min = all().map(|p| p.0).fold(f64::INFINITY, f64::min).max(1.0);
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let x_axis = Axis::log2(x_min, x_max);
    let throughput_axis = Axis::decades(all().map(|p| p.1), 1.0);
    let p99_axis = Axis::decades(all().map(|p| p.2), 0.01);

    let width = LEFT + 2.0 * PANEL_WIDTH + GAP + 30.0;
    let legend_top = TOP + PANEL_HEIGHT + 60.0;
    let height = legend_top + LEGEND_ROW * (series.len().div_ceil(2) as f64) + 20.0;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        width / 2.0,
        escape(title)
    );

    let panels = [
        (
            LEFT,
            "throughput (operations/s, log scale)",
            &throughput_axis,
            1usize,
        ),
        (
            LEFT + PANEL_WIDTH + GAP,
            "p99 latency (ms, log scale)",
            &p99_axis,
            2,
        ),
    ];
    for (left, label, y_axis, column) in panels {
        draw_frame(&mut out, left, label, &x_axis, y_axis);
        for (target, workload, points) in series.values() {
            let (colour, dash) = style(*target, *workload);
            let path: Vec<String> = points
                .iter()
                .map(|p| {
                    let y = if column == 1 { p.1 } else { p.2 };
                    format!(
                        "{:.1},{:.1}",
                        left + x_axis.position(p.0) * PANEL_WIDTH,
                        TOP + (1.0 - y_axis.position(y)) * PANEL_HEIGHT
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                path.join(" ")
            );
            for point in &path {
                let (x, y) = point.split_once(',').expect("x,y");
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
        }
    }

    for (i, (target, workload, _)) in series.values().enumerate() {
        let (colour, dash) = style(*target, *workload);
        let x = LEFT + (i % 2) as f64 * (PANEL_WIDTH + GAP);
        let y = legend_top + (i / 2) as f64 * LEGEND_ROW;
        let name = match target {
            Target::GrpcFloor => format!("{} (health check)", target.name()),
            _ => format!("{} — {}", target.name(), workload.name()),
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
            x + 30.0,
            x + 38.0,
            y + 4.0,
            escape(&name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn draw_frame(out: &mut String, left: f64, label: &str, x_axis: &Axis, y_axis: &Axis) {
    let bottom = TOP + PANEL_HEIGHT;
    let _ = writeln!(
        out,
        r#"<rect x="{left}" y="{TOP}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="black"/>"#
    );
    for (value, text) in &x_axis.ticks {
        let x = left + x_axis.position(*value) * PANEL_WIDTH;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{text}</text>"##,
            bottom + 16.0
        );
    }
    for (value, text) in &y_axis.ticks {
        let y = TOP + (1.0 - y_axis.position(*value)) * PANEL_HEIGHT;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{text}</text>"##,
            left + PANEL_WIDTH,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrency (operations in flight, log scale)</text>"#,
        left + PANEL_WIDTH / 2.0,
        bottom + 36.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
        left + PANEL_WIDTH / 2.0,
        TOP - 8.0,
        escape(label)
    );
}

/// Colour by target (onceward stands out), dash by workload.
fn style(target: Target, workload: Workload) -> (&'static str, &'static str) {
    let colour = match target {
        Target::Onceward => "#d62728",
        Target::Embedded => "#ff7f0e",
        Target::DirectPostgres => "#1f77b4",
        Target::DirectRedis => "#2ca02c",
        Target::GrpcFloor => "#7f7f7f",
    };
    let dash = match (target, workload) {
        (Target::GrpcFloor, _) => "2,3",
        (_, Workload::New) => "none",
        (_, Workload::Duplicate) => "8,4",
        (_, Workload::Mixed) => "2,2,8,2",
        (_, Workload::Batch) => "12,3,2,3",
        (_, Workload::Connect) => "4,2",
        (_, Workload::Budget) => "6,2,2,2",
    };
    (colour, dash)
}

/// Where values fall on an axis, and its labelled ticks.
struct Axis {
    scale: Scale,
    ticks: Vec<(f64, String)>,
}

enum Scale {
    Log2 { min: f64, max: f64 },
    Log10 { min: f64, max: f64 },
}

impl Axis {
    /// Whole decades around `values` (none below `floor`), at least one decade tall.
    fn decades(values: impl Iterator<Item = f64> + Clone, floor: f64) -> Self {
        let min = values.clone().fold(f64::INFINITY, f64::min).max(floor);
        let max = values.fold(floor, f64::max);
        let low = min.log10().floor();
        let high = max.log10().ceil().max(low + 1.0);
        let ticks = (low as i32..=high as i32)
            .map(|e| {
                let v = 10f64.powi(e);
                (v, format_count(v))
            })
            .collect();
        Self {
            scale: Scale::Log10 {
                min: low,
                max: high,
            },
            ticks,
        }
    }

    /// Powers of two from `min` to `max`, with half a step of room on either side.
    fn log2(min: f64, max: f64) -> Self {
        let (low, high) = (min.log2() - 0.5, max.log2() + 0.5);
        let ticks = (min.log2().floor() as i32..=max.log2().ceil() as i32)
            .map(|e| 2f64.powi(e))
            .filter(|&v| v >= min && v <= max)
            .map(|v| (v, format!("{v}")))
            .collect();
        Self {
            scale: Scale::Log2 {
                min: low,
                max: high,
            },
            ticks,
        }
    }

    /// 0 at the bottom (left) of the panel, 1 at the top (right).
    fn position(&self, value: f64) -> f64 {
        let p = match self.scale {
            Scale::Log2 { min, max } => (value.max(f64::MIN_POSITIVE).log2() - min) / (max - min),
            Scale::Log10 { min, max } => (value.max(f64::MIN_POSITIVE).log10() - min) / (max - min),
        };
        p.clamp(0.0, 1.0)
    }
}

fn format_count(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_span_whole_decades_around_the_values() {
        let axis = Axis::decades([350.0, 190_000.0].into_iter(), 1.0);
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(labels, ["100", "1k", "10k", "100k", "1M"]);
        assert_eq!(axis.position(100.0), 0.0);
        assert_eq!(axis.position(1e6), 1.0);
    }
}
