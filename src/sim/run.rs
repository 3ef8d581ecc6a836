//! Playing a [`Scenario`] on the harness and measuring it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use super::harness::{Harness, HarnessConfig};
use super::lag::StabilityWatch;
use super::latency::LinkLatency;
use super::report::{Percentiles, Report};
use super::scenario::{Scenario, Topology};
use super::tally::{Tally, TallyOp};
use crate::proto::dissemination::DisseminationConfig;
use crate::proto::hyparview::HyParViewConfig;
use crate::proto::membership::MembershipEvent;
use crate::proto::node::RepeaterConfig;
use crate::proto::sampling::SamplingConfig;
use crate::proto::time::Time;
use crate::proto::OpId;

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file is not valid TOML of the scenario's shape.
    #[error("scenario does not parse: {0}")]
    Parse(String),
    /// The scenario parsed but asks for something impossible.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// What happens at one instant of the load.
#[derive(Clone, Debug)]
enum Action {
    Shout { writer: usize, object: usize },
    Crash(usize),
    Restart(usize),
    Partition { fraction: f64 },
    Heal,
}

/// Anti-entropy message kinds.
const ANTI_ENTROPY: [&str; 3] = ["summary", "digest", "snapshot"];

/// Run `scenario` with `seed`: build the nodes and links, let the overlay
/// settle, play the load with its faults, wait for convergence, then
/// measure an idle phase.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, SimError> {
    scenario.check()?;
    let wall = Instant::now();
    let n = scenario.nodes;
    let mut h: Harness<Tally> = Harness::new(n, seed, harness_config(scenario));
    build(&mut h, scenario);
    let names: Vec<String> = (0..scenario.objects).map(|k| format!("o{k}")).collect();
    // Each object made on one node and opened on every other (as an
    // answered open would, without the messages): the replica set is its
    // creator until the writers join it.
    for (k, name) in names.iter().enumerate() {
        let creator = k % n;
        h.create(creator, name, Tally::default());
        for i in (0..n).filter(|i| *i != creator) {
            h.open_from(i, creator, name);
        }
    }
    h.run_for(Duration::from_secs(2));
    h.trace_ops();

    let plan = plan(&mut h, scenario);
    let mut watch = StabilityWatch::new(&names, Duration::from_millis(100));
    let start = h.now();
    let ae_before = anti_entropy_bytes(&h);
    let mut crashed_at: BTreeMap<usize, Time> = BTreeMap::new();
    let mut down_spans: Vec<(usize, Time, Time)> = Vec::new();
    let mut shouted: Vec<(OpId, usize)> = Vec::new();
    // The node that shouted each op of `shouted`.
    let mut writer_of: Vec<usize> = Vec::new();
    let mut last_fault = start;
    for (at, action) in plan {
        let due = start + at;
        if due > h.now() {
            let wait = due.since(h.now());
            watch.run_for(&mut h, wait);
        }
        match action {
            Action::Shout { writer, object } => {
                // A crashed writer's shout goes to the next live node.
                let Some(node) = (0..n).map(|k| (writer + k) % n).find(|i| h.is_alive(*i)) else {
                    continue;
                };
                let value = h.rng().random_range(0..1000);
                let id = h.shout(node, &names[object], TallyOp::Add(value));
                watch.shouted(id, object, h.now());
                shouted.push((id, object));
                writer_of.push(node);
            }
            Action::Crash(node) => {
                if h.is_alive(node) {
                    h.crash_silently(node);
                    crashed_at.insert(node, h.now());
                    last_fault = h.now();
                }
            }
            Action::Restart(node) => {
                if let Some(since) = crashed_at.remove(&node) {
                    down_spans.push((node, since, h.now()));
                }
                h.restart(node);
                last_fault = h.now();
            }
            Action::Partition { fraction } => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(h.rng());
                let side = ((n as f64) * fraction).round().max(1.0) as usize;
                let (a, b) = order.split_at(side.min(n - 1));
                h.partition(&[a.to_vec(), b.to_vec()]);
                last_fault = h.now();
            }
            Action::Heal => {
                h.heal();
                last_fault = h.now();
            }
        }
    }
    let rest = Duration::from_secs_f64(scenario.load_s).saturating_sub(h.now().since(start));
    watch.run_for(&mut h, rest);
    let load_end = h.now();
    let parts_at_load_end = h.overlay_parts();
    let ae_load = anti_entropy_bytes(&h) - ae_before;
    h.set_loss(0.0);

    // Convergence: counted in anti-entropy rounds from the later of the
    // load's end and the last fault.
    let round = h_round();
    let mut converged_rounds = None;
    let mut missing_per_round = Vec::new();
    let _ = (load_end, last_fault);
    for r in 0..=scenario.max_rounds {
        let lacking = missing(&h, &names, &shouted);
        missing_per_round.push(lacking);
        if lacking == 0 {
            converged_rounds = Some(r);
            break;
        }
        watch.run_for(&mut h, round);
    }
    let missed = missing(&h, &names, &shouted);
    // Who lacks ops, and whether each ever went down (a late rejoiner) or
    // stayed up throughout (a plain miss).
    let lacking: Vec<usize> = (0..h.len())
        .filter(|i| h.is_alive(*i) && missing_at(&h, *i, &names, &shouted) > 0)
        .collect();
    let went_down = |i: &usize| down_spans.iter().any(|(d, _, _)| d == i) || !h.is_alive(*i);
    let lacking_faulty = lacking.iter().filter(|i| went_down(i)).count();
    // Ops no live node holds: lost with their writer (nothing durable yet)
    // if it went down; if it never did, lost for no reason.
    let nowhere: Vec<usize> = (0..shouted.len())
        .filter(|&j| {
            let (id, k) = &shouted[j];
            !(0..h.len()).filter(|i| h.is_alive(*i)).any(|i| {
                h.host_of(i, &names[*k])
                    .is_some_and(|host| host.lock().replica.has_seen(&id.origin, id.seq))
            })
        })
        .collect();
    let nowhere_writer_up = nowhere
        .iter()
        .filter(|&&j| !went_down(&writer_of[j]))
        .count();

    // Stability: the acks that fold the ops spread after the ops did; the
    // idle phase starts once they have (or `max_rounds` more rounds ran).
    let mut stable_rounds = None;
    for r in 0..=scenario.max_rounds {
        if watch.all_stable() {
            stable_rounds = Some(r);
            break;
        }
        watch.run_for(&mut h, round);
    }
    let (stability_lag_ms, unstable_ops) = watch.lag();

    h.run_for(Duration::from_secs_f64(scenario.settle_s));
    let ae_idle_before = anti_entropy_bytes(&h);
    h.run_for(Duration::from_secs_f64(scenario.idle_s));
    let ae_idle = anti_entropy_bytes(&h) - ae_idle_before;

    for (node, since) in crashed_at {
        down_spans.push((node, since, h.now()));
    }
    let live = (0..n).filter(|i| h.is_alive(*i)).count().max(1);
    let wall_s = wall.elapsed().as_secs_f64();
    let (events, _, _) = h.counters();
    let mut report = Report {
        scenario: scenario.name.clone(),
        seed,
        nodes: n,
        ops: shouted.len(),
        missed,
        lacking_nodes: lacking.len(),
        lacking_faulty,
        ops_nowhere: nowhere.len(),
        ops_nowhere_writer_up: nowhere_writer_up,
        anti_entropy_load_bps: ae_load as f64 / n as f64 / scenario.load_s,
        anti_entropy_idle_bps: if scenario.idle_s > 0.0 {
            ae_idle as f64 / live as f64 / scenario.idle_s
        } else {
            0.0
        },
        largest_message: h.largest_frame(),
        converged_rounds,
        missing_per_round,
        overlay_parts: [parts_at_load_end, h.overlay_parts()],
        stable_rounds,
        stability_lag_ms,
        unstable_ops,
        events,
        events_per_s: events as f64 / wall_s.max(1e-9),
        wall_s,
        virtual_s: h.now().as_micros() as f64 / 1e6,
        memory_per_node: resident_bytes() / n as u64,
        ..Report::default()
    };
    let needed = shouted.len() as u64 * live as u64;
    report.delivery_pct = if needed == 0 {
        100.0
    } else {
        100.0 * (needed - missed.min(needed)) as f64 / needed as f64
    };
    dissemination_figures(&h, &mut report);
    failure_figures(&h, &down_spans, &mut report);
    Ok(report)
}

/// The anti-entropy round the harness nodes use.
fn h_round() -> Duration {
    RepeaterConfig::default().anti_entropy.interval
}

fn harness_config(s: &Scenario) -> HarnessConfig {
    let overlay = match s.topology {
        Topology::Overlay { active } => Some(HyParViewConfig {
            active_size: active,
            passive_size: (active * 6).max(30),
            rotation: s
                .overlay
                .rotation
                .unwrap_or(HyParViewConfig::default().rotation),
            ..HyParViewConfig::default()
        }),
        _ => None,
    };
    let sampling = match s.overlay.sampling_view {
        Some(0) => None,
        Some(view) => Some(SamplingConfig::balanced(view)),
        None => RepeaterConfig::default().sampling,
    }
    .map(|mut c| {
        if let Some(ms) = s.overlay.sampling_period_ms {
            c.period = millis(ms);
        }
        c
    });
    // Closing a link waits out the longest latency, as a writer drains.
    let longest = match &s.latency {
        LinkLatency::Static { ms } => *ms,
        LinkLatency::Uniform { max_ms, .. } => *max_ms,
        LinkLatency::Geographic { base_ms, .. } => base_ms + 20_000.0 / 200.0,
    };
    let mut dissemination = DisseminationConfig::default();
    if let Some(max) = s.tree.max_trees {
        dissemination.max_trees = max;
    }
    if let Some(f) = s.tree.first_fanout {
        dissemination.first_fanout = f;
    }
    if let Some(ms) = s.tree.graft_timeout_ms {
        dissemination.graft_timeout_1 = millis(ms.max(0.0));
    }
    let mut anti_entropy = RepeaterConfig::default().anti_entropy;
    if let Some(max) = s.max_digest_bytes {
        anti_entropy.max_digest_bytes = max;
    }
    HarnessConfig {
        max_latency: millis(longest),
        loss: s.loss,
        link_latency: Some(s.latency.clone()),
        repeater: RepeaterConfig {
            overlay,
            dissemination,
            anti_entropy,
            failure_detector: s.failure_detector.config(),
            sampling,
            ..RepeaterConfig::default()
        },
        ..HarnessConfig::default()
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_micros((ms * 1000.0) as u64)
}

/// Link the nodes as the topology says.
fn build(h: &mut Harness<Tally>, s: &Scenario) {
    let n = s.nodes;
    match s.topology {
        Topology::FullMesh => {
            for a in 0..n {
                for b in a + 1..n {
                    h.link(a, b);
                }
            }
        }
        Topology::Random { extra } => h.link_ring(extra),
        Topology::Overlay { .. } => {
            for i in 1..n {
                let contact = h.rng().random_range(0..i);
                h.join(i, contact);
                h.run_for(Duration::from_millis(10));
            }
            h.run_for(Duration::from_secs(20));
        }
    }
}

/// The load's shouts and faults, in time order (offsets from its start).
fn plan(h: &mut Harness<Tally>, s: &Scenario) -> Vec<(Duration, Action)> {
    let n = s.nodes;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(h.rng());
    let writers: Vec<usize> = if s.writers == 0 {
        (0..n).collect()
    } else {
        order[..s.writers].to_vec()
    };
    let load = Duration::from_secs_f64(s.load_s);
    let mut plan: Vec<(Duration, Action)> = Vec::new();
    for k in 0..s.ops {
        let at = load.mul_f64(k as f64 / s.ops as f64);
        let writer = writers[k % writers.len()];
        let object = h.rng().random_range(0..s.objects);
        plan.push((at, Action::Shout { writer, object }));
    }
    // Faulty nodes: a fresh draw, so any node may be hit.
    order.shuffle(h.rng());
    let mut faulty = order.into_iter();
    if let Some(c) = &s.crashes {
        for k in 0..c.count {
            let Some(node) = faulty.next() else { break };
            let share = if c.count > 1 {
                k as f64 / (c.count - 1) as f64
            } else {
                0.0
            };
            let at = c.first_s + (c.last_s - c.first_s) * share;
            plan.push((Duration::from_secs_f64(at), Action::Crash(node)));
            if let Some(after) = c.restart_after_s {
                let back = Duration::from_secs_f64(at + after);
                plan.push((back, Action::Restart(node)));
            }
        }
    }
    if let Some(f) = &s.flapping {
        for _ in 0..f.count {
            let Some(node) = faulty.next() else { break };
            let mut t = f.up_s * h.rng().random_range(0.0..1.0);
            while t < s.load_s {
                plan.push((Duration::from_secs_f64(t), Action::Crash(node)));
                t += f.down_s;
                plan.push((Duration::from_secs_f64(t), Action::Restart(node)));
                t += f.up_s;
            }
        }
    }
    for p in &s.partitions {
        let fraction = p.fraction;
        plan.push((
            Duration::from_secs_f64(p.at_s),
            Action::Partition { fraction },
        ));
        plan.push((Duration::from_secs_f64(p.heal_s), Action::Heal));
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// (op, live node) pairs where the node has not got the op.
fn missing(h: &Harness<Tally>, names: &[String], shouted: &[(OpId, usize)]) -> u64 {
    (0..h.len())
        .filter(|i| h.is_alive(*i))
        .map(|i| missing_at(h, i, names, shouted))
        .sum()
}

/// The ops node `i` has not got.
fn missing_at(h: &Harness<Tally>, i: usize, names: &[String], shouted: &[(OpId, usize)]) -> u64 {
    let mut missed = 0;
    for (k, name) in names.iter().enumerate() {
        let Some(host) = h.host_of(i, name) else {
            missed += shouted.iter().filter(|(_, o)| *o == k).count() as u64;
            continue;
        };
        let host = host.lock();
        missed += shouted
            .iter()
            .filter(|(id, o)| *o == k && !host.replica.has_seen(&id.origin, id.seq))
            .count() as u64;
    }
    missed
}

fn anti_entropy_bytes(h: &Harness<Tally>) -> u64 {
    let traffic = h.traffic();
    ANTI_ENTROPY
        .iter()
        .filter_map(|k| traffic.get(k))
        .map(|t| t.bytes)
        .sum()
}

/// RMR, duplicates, LDH and latency from the op trace.
fn dissemination_figures(h: &Harness<Tally>, report: &mut Report) {
    let Some(trace) = h.trace() else { return };
    let n = h.len();
    let (mut copies, mut deliveries, mut needed) = (0u64, 0u64, 0u64);
    let (mut ldh_sum, mut ldh_max) = (0u64, 0u32);
    let mut latencies = Vec::new();
    for (_, r) in trace.ops() {
        copies += r.copies;
        deliveries += (r.reached - 1) as u64;
        needed += (n - 1) as u64;
        ldh_sum += u64::from(r.max_hop);
        ldh_max = ldh_max.max(r.max_hop);
        if r.reached == n {
            latencies.push(r.last_at.since(r.at).as_secs_f64() * 1000.0);
        }
    }
    let ops = trace.len().max(1) as f64;
    report.rmr = copies as f64 / needed.max(1) as f64 - 1.0;
    report.duplicates_per_delivery =
        copies.saturating_sub(deliveries) as f64 / deliveries.max(1) as f64;
    report.ldh_mean = ldh_sum as f64 / ops;
    report.ldh_max = ldh_max;
    report.latency_ms = Percentiles::of(latencies);
    let (mut grafts, mut moves) = (0u64, 0u64);
    for i in 0..n {
        let s = h.tree_stats(i);
        grafts += s.grafts_sent;
        moves += s.shortcuts;
    }
    report.grafts_per_op = grafts as f64 / ops;
    let repaired: u64 = (0..n).map(|i| h.anti_entropy_stats(i).ops_repaired).sum();
    report.digest_pieces = (0..n).map(|i| h.anti_entropy_stats(i).pieces).sum();
    report.bad_pieces = (0..n).map(|i| h.anti_entropy_stats(i).bad_pieces).sum();
    report.repairs_per_op = repaired as f64 / ops;
    report.traffic = h
        .traffic()
        .iter()
        .map(|(kind, t)| {
            let figures = [t.messages, t.bytes, t.dropped, t.largest];
            ((*kind).to_owned(), figures)
        })
        .collect();
    report.largest_kind = h
        .traffic()
        .iter()
        .max_by_key(|(_, t)| t.largest)
        .map(|(kind, _)| (*kind).to_owned())
        .unwrap_or_default();
    report.tree_moves_per_op = moves as f64 / ops;
}

/// Detection delays of crashes and suspicions of nodes that were up.
fn failure_figures(h: &Harness<Tally>, down: &[(usize, Time, Time)], report: &mut Report) {
    let index: BTreeMap<_, usize> = (0..h.len()).map(|i| (h.id(i), i)).collect();
    // The outage of `node` that `at` falls in, as its start.
    let outage = |node: usize, at: Time| {
        down.iter()
            .find(|(d, since, until)| *d == node && *since <= at && at <= *until)
            .map(|(_, since, _)| *since)
    };
    let mut first: BTreeMap<(usize, Time), Time> = BTreeMap::new();
    let mut downs = Vec::new();
    let mut false_suspicions = 0;
    for observer in 0..h.len() {
        let mut declared: BTreeSet<(usize, Time)> = BTreeSet::new();
        for (at, event) in h.failure_events(observer) {
            let (MembershipEvent::Suspected(id) | MembershipEvent::Down(id)) = event else {
                continue;
            };
            let Some(&node) = index.get(id) else { continue };
            let Some(since) = outage(node, *at) else {
                false_suspicions += 1;
                continue;
            };
            if outage(observer, *at).is_some() {
                continue;
            }
            let detected = first.entry((node, since)).or_insert(*at);
            *detected = (*detected).min(*at);
            if matches!(event, MembershipEvent::Down(_)) && declared.insert((node, since)) {
                downs.push(at.since(since).as_secs_f64() * 1000.0);
            }
        }
    }
    let delays = first
        .iter()
        .map(|((_, since), at)| at.since(*since).as_secs_f64() * 1000.0);
    report.detection_ms = Percentiles::of(delays.collect());
    report.down_ms = Percentiles::of(downs);
    report.outages = down.len();
    report.false_suspicions = false_suspicions;
}

/// The process's resident memory, from `/proc/self/statm` (0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
