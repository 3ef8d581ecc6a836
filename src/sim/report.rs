//! What a simulation run measured: printed as a table, written as JSON.

use std::fmt;

use serde::Serialize;

/// A distribution's median and 99th percentile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub count: usize,
}

impl Percentiles {
    /// The percentiles of `values` (sorted here); all zero if empty.
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: values[values.len() - 1],
            count: values.len(),
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Ops shouted.
    pub ops: usize,
    /// Of every (op, node up at the end) pair, the share delivered at the
    /// end, in percent.
    pub delivery_pct: f64,
    /// (op, node up at the end) pairs still missing at the end.
    pub missed: u64,
    /// Nodes up at the end that lack at least one op.
    pub lacking_nodes: usize,
    /// Of them, those that were down at some point (crashed or flapping).
    pub lacking_faulty: usize,
    /// Ops that no node up at the end holds: lost with a writer that
    /// crashed before they left it (a node keeps nothing durable yet).
    pub ops_nowhere: usize,
    /// Of them, those whose writer never went down: lost for no reason
    /// (a bug; always 0 in a correct run).
    pub ops_nowhere_writer_up: usize,
    /// Relative message redundancy: op copies that crossed links over the
    /// deliveries needed (every other node, per op), minus one.
    pub rmr: f64,
    /// Duplicate copies per delivery made over a link.
    pub duplicates_per_delivery: f64,
    /// Last-delivery hop: the most hops an op's last first copy took, mean
    /// over ops.
    pub ldh_mean: f64,
    /// The largest last-delivery hop of any op.
    pub ldh_max: u32,
    /// From a shout to its first copy at the last node, in milliseconds
    /// (ops that reached every node over links).
    pub latency_ms: Percentiles,
    /// Anti-entropy bytes (summaries, digests, snapshots) per node per
    /// second during the load.
    pub anti_entropy_load_bps: f64,
    /// The same once converged, settled (`settle_s`) and idle.
    pub anti_entropy_idle_bps: f64,
    /// Grafts sent per op (announced ops the tree did not bring in time).
    pub grafts_per_op: f64,
    /// Broadcast tree changes per op: shortcuts to an origin's own link
    /// plus moves to a faster announcer.
    pub tree_moves_per_op: f64,
    /// Ops anti-entropy sent per op shouted.
    pub repairs_per_op: f64,
    /// Messages, bytes, messages lost and the largest frame in bytes, by
    /// message kind.
    pub traffic: std::collections::BTreeMap<String, [u64; 4]>,
    /// The largest frame sent, in bytes.
    pub largest_message: usize,
    /// Its kind (see [`Message::kind`](crate::proto::message::Message::kind)).
    pub largest_kind: String,
    /// Pieces of split digests sent (digests over `max_digest_bytes`).
    pub digest_pieces: u64,
    /// Digest pieces refused for a malformed span.
    pub bad_pieces: u64,
    /// Anti-entropy rounds from the end of the load and of the last fault
    /// until every live node held every op; `None` if it did not within
    /// the scenario's `max_rounds`.
    pub converged_rounds: Option<u32>,
    /// (op, live node) pairs missing at the start of each of those rounds.
    pub missing_per_round: Vec<u64>,
    /// The parts the live nodes' overlay was in (connected components of
    /// the active views) at the end of the load and at the end of the run;
    /// 1 for any topology other than an overlay that stays connected.
    pub overlay_parts: [usize; 2],
    /// Anti-entropy rounds from convergence until every op was stable
    /// (folded) at every live node; `None` if not within `max_rounds`.
    pub stable_rounds: Option<u32>,
    /// From a shout to the op being stable at every live node, in
    /// milliseconds (to the 100 ms sampling interval; ops stable everywhere
    /// by the end of the stability phase).
    pub stability_lag_ms: Percentiles,
    /// Ops not stable at every live node by the end of the stability phase.
    pub unstable_ops: u64,
    /// Crash detection as SWIM defines it: from a crash to its first
    /// detection (`Suspected` or `Down`) by a node that is up, in
    /// milliseconds, one sample per crash.
    pub detection_ms: Percentiles,
    /// From a crash to each live watcher's `Down` of it, in milliseconds,
    /// one sample per watcher and crash.
    pub down_ms: Percentiles,
    /// Outages (crashes and flaps) in the run; those never detected are
    /// `outages - detection_ms.count`.
    pub outages: usize,
    /// `Suspected` or `Down` of a node that was up, at any node (each
    /// observer counts).
    pub false_suspicions: u64,
    /// Events the simulator processed.
    pub events: u64,
    /// Of them, per second of wall time.
    pub events_per_s: f64,
    /// Wall time of the run, in seconds.
    pub wall_s: f64,
    /// Virtual time simulated, in seconds.
    pub virtual_s: f64,
    /// Resident memory of the process after the run over the nodes, in
    /// bytes (0 where `/proc` is missing).
    pub memory_per_node: u64,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounds = self
            .converged_rounds
            .map_or_else(|| "not converged".to_owned(), |r| format!("{r} round(s)"));
        let rows: Vec<(&str, String)> = vec![
            ("nodes / ops", format!("{} / {}", self.nodes, self.ops)),
            ("delivery", format!("{:.3}%", self.delivery_pct)),
            (
                "missed ops",
                if self.missed == 0 {
                    "0".to_owned()
                } else {
                    format!(
                        "{} (at {} node(s), {} of them crashed or flapped; {} op(s) held nowhere, \
                         {} of them by a writer that never went down)",
                        self.missed,
                        self.lacking_nodes,
                        self.lacking_faulty,
                        self.ops_nowhere,
                        self.ops_nowhere_writer_up
                    )
                },
            ),
            ("RMR", format!("{:.3}", self.rmr)),
            (
                "duplicates per delivery",
                format!("{:.3}", self.duplicates_per_delivery),
            ),
            (
                "LDH mean / max",
                format!("{:.2} / {}", self.ldh_mean, self.ldh_max),
            ),
            (
                "latency to all p50 / p99",
                format!("{:.1} / {:.1} ms", self.latency_ms.p50, self.latency_ms.p99),
            ),
            (
                "anti-entropy per node, load / idle",
                format!(
                    "{:.0} / {:.0} B/s",
                    self.anti_entropy_load_bps, self.anti_entropy_idle_bps
                ),
            ),
            (
                "grafts / tree moves / repairs per op",
                format!(
                    "{:.3} / {:.3} / {:.3}",
                    self.grafts_per_op, self.tree_moves_per_op, self.repairs_per_op
                ),
            ),
            (
                "largest message / digest pieces",
                format!(
                    "{} B ({}) / {} ({} refused)",
                    self.largest_message, self.largest_kind, self.digest_pieces, self.bad_pieces
                ),
            ),
            ("converged after faults", rounds),
            (
                "missing per round / overlay parts",
                format!(
                    "{:?} / {} at load end, {} at the end",
                    self.missing_per_round, self.overlay_parts[0], self.overlay_parts[1]
                ),
            ),
            (
                "stability lag p50 / p99",
                format!(
                    "{:.0} / {:.0} ms, {} op(s) not stable, {}",
                    self.stability_lag_ms.p50,
                    self.stability_lag_ms.p99,
                    self.unstable_ops,
                    self.stable_rounds.map_or_else(
                        || "not all stable".to_owned(),
                        |r| format!("all stable {r} round(s) after convergence")
                    )
                ),
            ),
            (
                "crash detection p50 / p99",
                if self.detection_ms.count == 0 {
                    "no crash".to_owned()
                } else {
                    format!(
                        "{:.0} / {:.0} ms ({} of {} outages detected)",
                        self.detection_ms.p50,
                        self.detection_ms.p99,
                        self.detection_ms.count,
                        self.outages
                    )
                },
            ),
            (
                "declared down p50 / p99",
                if self.down_ms.count == 0 {
                    "none".to_owned()
                } else {
                    format!(
                        "{:.0} / {:.0} ms ({} watchers)",
                        self.down_ms.p50, self.down_ms.p99, self.down_ms.count
                    )
                },
            ),
            ("false suspicions", self.false_suspicions.to_string()),
            (
                "simulator",
                format!(
                    "{} events in {:.1} s wall ({:.0}/s), {:.0} s virtual",
                    self.events, self.wall_s, self.events_per_s, self.virtual_s
                ),
            ),
            (
                "memory per node",
                format!("{:.1} KiB", self.memory_per_node as f64 / 1024.0),
            ),
        ];
        writeln!(f, "{} (seed {})", self.scenario, self.seed)?;
        for (what, value) in rows {
            writeln!(f, "  {what:<36} {value}")?;
        }
        Ok(())
    }
}
