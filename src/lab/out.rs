//! What a run leaves in `lab-out/<run>/`: the graph as DOT, SVG and JSON,
//! and a metrics summary.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::view::{EdgeSnapshot, RunState, Snapshot};
use super::LabError;

/// The figures of a finished run (`metrics.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// The experiment.
    pub experiment: String,
    /// How many peers.
    pub peers: u32,
    /// How the run ended.
    pub state: RunState,
    /// The `--messages` expression.
    pub messages_expr: String,
    /// Every peer's budget added up.
    pub messages_budget: u64,
    /// Milliseconds from the start until every peer was done, if they were.
    pub converged_ms: Option<u64>,
    /// Milliseconds from the start until the end was called.
    pub elapsed_ms: u64,
    /// Ops seen, added over the peers (each op counts once per peer).
    pub ops_seen: u64,
    /// Messages over all links, both ways.
    pub link_messages: u64,
    /// Frame bytes over all links, both ways.
    pub link_bytes: u64,
    /// CPU time of the peers (as they reported at exit) and the lab, in ms.
    pub cpu_ms: u64,
    /// Peak resident memory of the peers and the lab, added up, in KiB.
    pub max_rss_kib: u64,
    /// How many peers reported their usage at exit.
    pub usage_reports: usize,
    /// Per link: messages and bytes both ways.
    pub links: Vec<EdgeSnapshot>,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), LabError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| LabError::Output {
        path: path.display().to_string(),
        error: e.to_string(),
    })
}

/// Writes `graph.json`, `graph.dot`, `graph.svg` and `metrics.json`.
pub(crate) fn write_all(dir: &Path, snap: &Snapshot, metrics: &Metrics) -> Result<(), LabError> {
    write(dir, "graph.json", &pretty(snap))?;
    write(dir, "metrics.json", &pretty(metrics))?;
    write(dir, "graph.dot", &dot(snap))?;
    write(dir, "graph.svg", &svg(snap))?;
    Ok(())
}

fn pretty<T: Serialize>(value: &T) -> String {
    // The snapshot and the metrics are plain structs: they always serialize.
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// The graph in Graphviz's DOT: peers with their status and position,
/// links with their traffic (`neato -n` keeps the lab's layout).
pub fn dot(snap: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph \"{}\" {{", snap.experiment.replace('"', "'"));
    let _ = writeln!(
        out,
        "  node [shape=circle style=filled fontname=Helvetica];"
    );
    for p in &snap.peers {
        let _ = writeln!(
            out,
            "  p{} [label=\"{}\" fillcolor=\"{}\" pos=\"{:.1},{:.1}!\" status=\"{}\" ops={} done={}];",
            p.peer,
            p.peer,
            colour(p.status),
            p.x * 1000.0,
            (1.0 - p.y) * 1000.0,
            p.status,
            p.ops,
            p.done
        );
    }
    for e in &snap.edges {
        let _ = writeln!(
            out,
            "  p{} -- p{} [messages={} bytes={} penwidth={:.2}{}];",
            e.a,
            e.b,
            e.messages,
            e.bytes,
            1.0 + (e.messages as f64).ln_1p() / 2.0,
            if e.up { "" } else { " style=dashed" }
        );
    }
    out.push_str("}\n");
    out
}

fn colour(status: &str) -> &'static str {
    match status {
        "alive" => "#3fb68b",
        "suspected" => "#f0a030",
        "down" => "#e5484d",
        _ => "#56606b",
    }
}

/// The graph as a standalone SVG picture, laid out as on the page.
pub fn svg(snap: &Snapshot) -> String {
    let size = 1000.0_f32;
    let at = |x: f32, y: f32| (40.0 + x * (size - 80.0), 40.0 + y * (size - 80.0));
    let n = snap.peers.len().max(1) as f32;
    let r = (120.0 / n.sqrt()).clamp(8.0, 24.0);
    let most = snap
        .edges
        .iter()
        .map(|e| e.messages)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"{size}\" height=\"{size}\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"#0f1419\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"20\" y=\"28\" fill=\"#d8dee6\" font-family=\"sans-serif\" font-size=\"20\">{} · {} peers · {:?}</text>",
        escape(&snap.experiment),
        snap.peers.len(),
        snap.state
    );
    let pos = |peer: u32| {
        snap.peers
            .iter()
            .find(|p| p.peer == peer)
            .map(|p| at(p.x, p.y))
    };
    for e in &snap.edges {
        let (Some((x1, y1)), Some((x2, y2))) = (pos(e.a), pos(e.b)) else {
            continue;
        };
        let weight = (e.messages as f64).ln_1p() / most.ln_1p();
        let _ = writeln!(
            out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#5b8bd9\" stroke-width=\"{:.2}\" stroke-opacity=\"{:.2}\"{}><title>{} - {}: {} messages, {} bytes</title></line>",
            1.0 + 7.0 * weight,
            0.35 + 0.6 * weight,
            if e.up { "" } else { " stroke-dasharray=\"3 4\"" },
            e.a,
            e.b,
            e.messages,
            e.bytes
        );
    }
    for p in &snap.peers {
        let (x, y) = at(p.x, p.y);
        let ring = if p.done { "#c8f5e4" } else { "#0f1419" };
        let _ = writeln!(
            out,
            "<g><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r:.1}\" fill=\"{}\" stroke=\"{ring}\" stroke-width=\"3\"/><text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" dominant-baseline=\"central\" font-family=\"sans-serif\" font-size=\"11\" font-weight=\"600\" fill=\"#0b0f14\">{}</text><title>peer {} ({}): {} ops</title></g>",
            colour(p.status),
            p.peer,
            p.peer,
            p.status,
            p.ops
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
