//! The cost curve: how delivery latency, messages per op and memory per
//! node grow with the number of nodes, drawn from simulator reports as an
//! SVG image (`plexus plot`).

use plotters::prelude::*;
use serde_json::Value;

/// One point of the cost curve: the figures of one report.
#[derive(Clone, Debug, PartialEq)]
pub struct CostPoint {
    /// How many nodes.
    pub nodes: f64,
    /// Latency to full replication, p50 and p99, in milliseconds.
    pub latency_ms: (f64, f64),
    /// Op messages per op per node (RMR + 1).
    pub messages_per_op: f64,
    /// Memory per node, in KiB.
    pub memory_kib: f64,
}

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// A report lacks a figure, or holds one of the wrong type.
    #[error("report {index}: no number at `{field}`")]
    Field {
        /// The report's place in the input, from 0.
        index: usize,
        /// The field missing.
        field: &'static str,
    },
    /// No report to plot.
    #[error("no report to plot")]
    Empty,
    /// The drawing failed.
    #[error("drawing failed: {0}")]
    Draw(String),
}

impl CostPoint {
    /// The point of report `index`, a JSON object as `plexus sim --json`
    /// writes them.
    pub fn from_report(index: usize, report: &Value) -> Result<Self, PlotError> {
        let number = |field: &'static str| {
            let mut value = report;
            for key in field.split('.') {
                value = value.get(key).ok_or(PlotError::Field { index, field })?;
            }
            value.as_f64().ok_or(PlotError::Field { index, field })
        };
        Ok(Self {
            nodes: number("nodes")?,
            latency_ms: (number("latency_ms.p50")?, number("latency_ms.p99")?),
            messages_per_op: number("rmr")? + 1.0,
            memory_kib: number("memory_per_node")? / 1024.0,
        })
    }
}

/// The cost curve of `points` as an SVG document: three panels over a
/// logarithmic axis of nodes. Several points with the same node count
/// (seeds) are averaged.
pub fn cost_curve_svg(points: &[CostPoint]) -> Result<String, PlotError> {
    if points.is_empty() {
        return Err(PlotError::Empty);
    }
    let mut sorted: Vec<CostPoint> = Vec::new();
    let mut ordered = points.to_vec();
    ordered.sort_by(|a, b| a.nodes.total_cmp(&b.nodes));
    for group in ordered.chunk_by(|a, b| a.nodes == b.nodes) {
        let n = group.len() as f64;
        let mean = |f: fn(&CostPoint) -> f64| group.iter().map(f).sum::<f64>() / n;
        sorted.push(CostPoint {
            nodes: group[0].nodes,
            latency_ms: (mean(|p| p.latency_ms.0), mean(|p| p.latency_ms.1)),
            messages_per_op: mean(|p| p.messages_per_op),
            memory_kib: mean(|p| p.memory_kib),
        });
    }
    let mut svg = String::new();
    draw(&sorted, &mut svg).map_err(PlotError::Draw)?;
    Ok(svg)
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn draw(points: &[CostPoint], out: &mut String) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = SVGBackend::with_string(out, (1200, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((1, 3));
    let xy = |f: fn(&CostPoint) -> f64| points.iter().map(|p| (p.nodes, f(p))).collect();
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let latency: Vec<Series<'_>> = vec![
        ("p50", blue, xy(|p| p.latency_ms.0)),
        ("p99", orange, xy(|p| p.latency_ms.1)),
    ];
    let messages: Vec<Series<'_>> = vec![("RMR + 1", blue, xy(|p| p.messages_per_op))];
    let memory: Vec<Series<'_>> = vec![("per node", blue, xy(|p| p.memory_kib))];
    let charts = [
        ("Latency to all nodes", "ms", latency),
        ("Op messages per op per node", "messages", messages),
        ("Memory per node", "KiB", memory),
    ];
    for (area, (title, unit, series)) in panels.iter().zip(charts) {
        panel(area, points, title, unit, &series)?;
    }
    root.present().map_err(e)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    points: &[CostPoint],
    title: &str,
    unit: &str,
    series: &[Series<'_>],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let lo = points.first().map_or(1.0, |p| p.nodes) / 1.5;
    let hi = points.last().map_or(10.0, |p| p.nodes) * 1.5;
    let top = series
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..top.max(1.0))
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("nodes (log scale)")
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if top > 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(e)?;
    for (label, color, data) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(e)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(data.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(nodes: u64, p50: f64, rmr: f64, memory: u64) -> Value {
        serde_json::json!({
            "nodes": nodes,
            "latency_ms": { "p50": p50, "p99": p50 * 3.0 },
            "rmr": rmr,
            "memory_per_node": memory,
        })
    }

    #[test]
    fn reports_become_points_and_an_svg() {
        let reports = [
            report(100, 130.0, 0.22, 250 * 1024),
            report(1000, 180.0, 0.21, 340 * 1024),
            report(1000, 190.0, 0.21, 340 * 1024),
        ];
        let points: Vec<CostPoint> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| CostPoint::from_report(i, r))
            .collect::<Result<_, _>>()
            .expect("points");
        assert_eq!(points[0].messages_per_op, 1.22);
        assert_eq!(points[0].memory_kib, 250.0);
        let svg = cost_curve_svg(&points).expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("Memory per node"));
    }

    #[test]
    fn a_report_without_a_figure_is_refused_by_name() {
        let bad = serde_json::json!({ "nodes": 10, "rmr": 0.1 });
        let err = CostPoint::from_report(3, &bad).expect_err("no latency");
        assert_eq!(err.to_string(), "report 3: no number at `latency_ms.p50`");
        assert!(matches!(cost_curve_svg(&[]), Err(PlotError::Empty)));
    }
}
