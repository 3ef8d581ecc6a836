//! A small discrete-event simulation of whole clusters: false suspicions
//! under loss, detection of killed nodes, restarts, determinism.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

enum Ev {
    Deliver {
        from: u64,
        to: u64,
        msg: SwimMessage<u64>,
    },
    Timer(u64),
}

/// Nodes in a Vec, a timed event queue, latency of 1–20 ms and random loss.
struct Sim {
    seed: u64,
    nodes: Vec<Node>,
    up: Vec<bool>,
    /// Nodes cut off from everyone (messages to and from them are lost).
    cut: BTreeSet<u64>,
    queue: BTreeMap<(Time, u64), Ev>,
    timers: Vec<Option<Time>>,
    counter: u64,
    restarts: u64,
    rng: ChaCha8Rng,
    loss: f64,
    now: Time,
    trace: Vec<(Time, u64, FailureEvent<u64>)>,
    sent: u64,
    config: SwimConfig,
}

impl Sim {
    fn new(n: u64, seed: u64, loss: f64) -> Self {
        Self::with_config(n, seed, loss, SwimConfig::default())
    }

    fn with_config(n: u64, seed: u64, loss: f64, config: SwimConfig) -> Self {
        let mut sim = Sim {
            seed,
            nodes: Vec::new(),
            up: vec![true; n as usize],
            cut: BTreeSet::new(),
            queue: BTreeMap::new(),
            timers: vec![None; n as usize],
            counter: 0,
            restarts: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss,
            now: Time::ZERO,
            trace: Vec::new(),
            sent: 0,
            config,
        };
        sim.nodes = (0..n).map(|i| sim.fresh_node(i)).collect();
        for i in 0..n {
            sim.flush(i);
        }
        sim
    }

    fn fresh_node(&mut self, i: u64) -> Node {
        let seed = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i << 32) ^ self.restarts;
        self.restarts += 1;
        let config = self.config.clone();
        let mut node = Swim::new(i, config, ChaCha8Rng::seed_from_u64(seed)).expect("valid");
        for j in 0..self.up.len() as u64 {
            node.add_member(self.now, j);
        }
        node
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.counter += 1;
        self.queue.insert((at, self.counter), ev);
    }

    /// Moves node `i`'s output into the network and the trace, and
    /// (re)schedules its timer exactly where it asks.
    fn flush(&mut self, i: u64) {
        let idx = i as usize;
        while let Some((to, msg)) = self.nodes[idx].poll_transmit() {
            self.sent += 1;
            let lost =
                self.cut.contains(&i) || self.cut.contains(&to) || self.rng.random_bool(self.loss);
            if !lost {
                let at = self.now + ms(self.rng.random_range(1..=20));
                self.push(at, Ev::Deliver { from: i, to, msg });
            }
        }
        while let Some(e) = self.nodes[idx].poll_event() {
            self.trace.push((self.now, i, e));
        }
        let next = self.nodes[idx].poll_timeout().map(|t| t.max(self.now));
        if next != self.timers[idx] {
            self.timers[idx] = next;
            if let Some(t) = next {
                self.push(t, Ev::Timer(i));
            }
        }
    }

    fn step(&mut self, end: Time) -> bool {
        let Some(entry) = self.queue.first_entry() else {
            return false;
        };
        if entry.key().0 > end {
            return false;
        }
        let ((t, _), ev) = entry.remove_entry();
        self.now = t;
        match ev {
            Ev::Deliver { from, to, msg } => {
                if self.up[to as usize] {
                    let node = &mut self.nodes[to as usize];
                    // As a driver does: every message is proof of life.
                    node.heard_from(t, from);
                    node.handle_message(t, from, msg);
                    self.flush(to);
                }
            }
            Ev::Timer(i) => {
                let idx = i as usize;
                if self.timers[idx] == Some(t) && self.up[idx] {
                    self.timers[idx] = None;
                    self.nodes[idx].handle_timeout(t);
                    let next = self.nodes[idx].poll_timeout();
                    assert!(
                        next.is_none_or(|n| n > t),
                        "node {i} left a timer due at {t:?}"
                    );
                    self.flush(i);
                }
            }
        }
        true
    }

    fn run_until(&mut self, end: Time) {
        while self.step(end) {}
        self.now = end;
    }

    /// Runs until `done` holds (checked after every step) or `end`.
    fn run_until_trace(
        &mut self,
        end: Time,
        done: impl Fn(&(Time, u64, FailureEvent<u64>)) -> bool,
    ) -> bool {
        let mut seen = self.trace.len();
        while self.step(end) {
            if self.trace[seen..].iter().any(&done) {
                return true;
            }
            seen = self.trace.len();
        }
        false
    }

    fn kill(&mut self, i: u64) {
        self.up[i as usize] = false;
        self.timers[i as usize] = None;
    }

    fn restart(&mut self, i: u64, incarnation: u64) {
        let mut node = self.fresh_node(i);
        node.set_incarnation(incarnation);
        self.nodes[i as usize] = node;
        self.up[i as usize] = true;
        self.flush(i);
    }

    fn live(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.nodes.len() as u64).filter(|i| self.up[*i as usize])
    }

    fn count(&self, pred: impl Fn(&FailureEvent<u64>) -> bool) -> usize {
        self.trace.iter().filter(|(_, _, e)| pred(e)).count()
    }

    fn total(&self, f: impl Fn(&SwimStats) -> u64) -> u64 {
        self.live().map(|i| f(self.nodes[i as usize].stats())).sum()
    }

    fn downs(&self) -> Vec<&(Time, u64, FailureEvent<u64>)> {
        self.trace
            .iter()
            .filter(|(_, _, e)| matches!(e, FailureEvent::Down(_)))
            .collect()
    }

    /// `Down` events of any node but `killed`.
    fn false_downs(&self, killed: u64) -> Vec<&(Time, u64, FailureEvent<u64>)> {
        let mut downs = self.downs();
        downs.retain(|(_, _, e)| *e != FailureEvent::Down(killed));
        downs
    }
}

fn distribution(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let secs = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    format!(
        "min {} median {} max {} (n={})",
        secs(xs[0]),
        secs(xs[xs.len() / 2]),
        secs(xs[xs.len() - 1]),
        xs.len()
    )
}

/// 50 live nodes, 20% loss each way, 60 s: no node is ever declared down.
#[test]
fn no_false_down_under_loss() {
    let seed = test_seed("no_false_down_under_loss");
    let mut sim = Sim::new(50, seed, 0.2);
    sim.run_until(at_secs(60));
    let suspected = sim.count(|e| matches!(e, FailureEvent::Suspected(_)));
    let worst_health = sim
        .live()
        .map(|i| sim.nodes[i as usize].local_health())
        .max()
        .unwrap_or(0);
    println!(
        "seed {seed}: {} messages; {} probes, {} failed, {} suspicions raised, {} Suspected events, \
         {} refutations, {} suspicions seen refuted; max local health at end {worst_health}",
        sim.sent,
        sim.total(|s| s.probes_sent),
        sim.total(|s| s.probes_failed),
        sim.total(|s| s.suspicions_raised),
        suspected,
        sim.total(|s| s.refutations),
        sim.total(|s| s.suspicions_refuted),
    );
    assert!(
        sim.total(|s| s.probes_sent) > 50 * 30,
        "seed {seed}: probing stalled"
    );
    assert!(
        sim.downs().is_empty(),
        "seed {seed}: false down: {:?}",
        sim.downs()
    );
    for i in sim.live() {
        assert!(sim.nodes[i as usize]
            .members()
            .all(|(_, s)| s != MemberState::Down));
    }
}

fn kill_is_detected(name: &str, loss: f64) {
    let seed = test_seed(name);
    let mut sim = Sim::new(50, seed, loss);
    sim.run_until(at_secs(5));
    let killed_at = sim.now;
    sim.kill(0);
    sim.run_until(at_secs(40));
    let mut times = Vec::new();
    for i in sim.live() {
        let found = sim
            .trace
            .iter()
            .find(|(_, at, e)| *at == i && *e == FailureEvent::Down(0));
        let (t, _, _) =
            found.unwrap_or_else(|| panic!("seed {seed}: node {i} never saw node 0 down"));
        times.push(t.since(killed_at));
        assert_eq!(sim.nodes[i as usize].state_of(0), Some(MemberState::Down));
    }
    let wrong = sim.false_downs(0);
    assert!(wrong.is_empty(), "seed {seed}: false down: {wrong:?}");
    assert!(
        times.iter().all(|t| *t <= Duration::from_secs(30)),
        "seed {seed}: {times:?}"
    );
    let first_suspect = sim
        .trace
        .iter()
        .find(|(t, _, e)| *t >= killed_at && *e == FailureEvent::Suspected(0))
        .map(|(t, _, _)| t.since(killed_at));
    println!(
        "seed {seed} loss {loss}: kill→first suspicion {first_suspect:?}; kill→Down {}",
        distribution(times)
    );
}

/// Half of all messages lost: with many pings per probe no live node is
/// declared down, and a killed one is still suspected and declared down.
#[test]
fn half_loss_with_many_pings_suspects_only_the_killed() {
    let seed = test_seed("half_loss_with_many_pings_suspects_only_the_killed");
    let config = SwimConfig {
        probe_interval: ms(300),
        probe_timeout: ms(220),
        direct_pings: 30,
        confirm_probe: false,
        ..SwimConfig::default()
    };
    let mut sim = Sim::with_config(30, seed, 0.5, config);
    sim.run_until(at_secs(20));
    let early = sim.count(|e| matches!(e, FailureEvent::Suspected(_)));
    assert!(sim.downs().is_empty(), "seed {seed}: {:?}", sim.downs());
    let killed_at = sim.now;
    sim.kill(0);
    sim.run_until(at_secs(60));
    let first = sim
        .trace
        .iter()
        .find(|(t, _, e)| *t >= killed_at && *e == FailureEvent::Suspected(0))
        .map(|(t, _, _)| t.since(killed_at));
    let first = first.unwrap_or_else(|| panic!("seed {seed}: node 0 never suspected"));
    let wrong = sim.false_downs(0);
    assert!(wrong.is_empty(), "seed {seed}: false down: {wrong:?}");
    for i in sim.live() {
        assert_eq!(
            sim.nodes[i as usize].state_of(0),
            Some(MemberState::Down),
            "seed {seed}: node {i}"
        );
    }
    println!(
        "seed {seed}: {early} suspicions of live nodes in 20 s; kill→first suspicion {first:?}; \
         {} messages",
        sim.sent
    );
}

#[test]
fn killed_node_is_detected_by_all() {
    kill_is_detected("killed_node_is_detected_by_all", 0.0);
}

#[test]
fn killed_node_is_detected_by_all_under_loss() {
    kill_is_detected("killed_node_is_detected_by_all_under_loss", 0.2);
}

fn restart_is_seen(name: &str, remembers_incarnation: bool) {
    let seed = test_seed(name);
    let mut sim = Sim::new(50, seed, 0.05);
    sim.run_until(at_secs(5));
    sim.kill(0);
    sim.run_until(at_secs(45));
    assert!(
        sim.live()
            .all(|i| sim.nodes[i as usize].state_of(0) == Some(MemberState::Down)),
        "seed {seed}"
    );
    let old = sim
        .live()
        .filter_map(|i| sim.nodes[i as usize].incarnation_of(0))
        .max()
        .unwrap_or(0);
    let restarted_at = sim.now;
    sim.restart(0, if remembers_incarnation { old + 1 } else { 0 });
    // Gossip reaches nearly everyone in seconds; a node it misses hears from
    // node 0 itself within one of its probe rounds (49 s).
    sim.run_until(at_secs(105));
    let mut times = Vec::new();
    for i in sim.live().filter(|i| *i != 0) {
        let n = &sim.nodes[i as usize];
        assert_eq!(
            n.state_of(0),
            Some(MemberState::Alive),
            "seed {seed}: node {i}"
        );
        assert!(n.incarnation_of(0) > Some(old), "seed {seed}: node {i}");
        let back = sim
            .trace
            .iter()
            .find(|(t, at, e)| *t >= restarted_at && *at == i && *e == FailureEvent::Alive(0));
        let (t, _, _) =
            back.unwrap_or_else(|| panic!("seed {seed}: node {i} never saw node 0 back"));
        times.push(t.since(restarted_at));
    }
    assert!(
        sim.nodes[0].members().all(|(_, s)| s == MemberState::Alive),
        "seed {seed}"
    );
    println!(
        "seed {seed}: incarnation {old} → {}; restart→Alive {}",
        sim.nodes[0].incarnation(),
        distribution(times)
    );
}

#[test]
fn restarted_node_with_higher_incarnation_is_alive_again() {
    restart_is_seen(
        "restarted_node_with_higher_incarnation_is_alive_again",
        true,
    );
}

/// A node restarted with no memory of its incarnation hears itself dead in
/// the acks to its pings, refutes, and is back.
#[test]
fn restarted_node_with_fresh_state_is_alive_again() {
    restart_is_seen("restarted_node_with_fresh_state_is_alive_again", false);
}

/// Node 2 is cut off until someone suspects it, then healed: it hears the
/// suspicion, raises its incarnation, and the suspicion clears everywhere.
#[test]
fn suspicion_is_refuted() {
    let seed = test_seed("suspicion_is_refuted");
    let mut sim = Sim::new(5, seed, 0.0);
    sim.run_until(at_secs(2));
    sim.cut.insert(2);
    let suspected = sim.run_until_trace(at_secs(10), |(_, _, e)| *e == FailureEvent::Suspected(2));
    assert!(suspected, "seed {seed}: nobody suspected the cut-off node");
    sim.cut.clear();
    let healed_at = sim.now;
    sim.run_until(at_secs(30));
    assert!(sim.nodes[2].incarnation() >= 1, "seed {seed}");
    assert!(sim.nodes[2].stats().refutations >= 1, "seed {seed}");
    assert!(sim.downs().is_empty(), "seed {seed}: {:?}", sim.downs());
    for i in [0, 1, 3, 4] {
        let n = &sim.nodes[i as usize];
        assert_eq!(
            n.state_of(2),
            Some(MemberState::Alive),
            "seed {seed}: node {i}"
        );
        let had = sim
            .trace
            .iter()
            .any(|(_, at, e)| *at == i && *e == FailureEvent::Suspected(2));
        let back = sim
            .trace
            .iter()
            .any(|(t, at, e)| *t >= healed_at && *at == i && *e == FailureEvent::Alive(2));
        assert_eq!(
            had, back,
            "seed {seed}: node {i} suspected 2 but never saw it refute"
        );
    }
    println!(
        "seed {seed}: node 2 at incarnation {}, {} suspicions refuted",
        sim.nodes[2].incarnation(),
        sim.total(|s| s.suspicions_refuted)
    );
}

/// Same seed, same trace: events, their times and every message count.
#[test]
fn same_seed_same_trace() {
    let seed = test_seed("same_seed_same_trace");
    let run = || {
        let mut sim = Sim::new(20, seed, 0.2);
        sim.run_until(at_secs(5));
        sim.kill(3);
        sim.run_until(at_secs(30));
        let stats: Vec<SwimStats> = sim.nodes.iter().map(|n| *n.stats()).collect();
        (sim.trace, sim.sent, stats)
    };
    let (a, b) = (run(), run());
    assert!(
        !a.0.is_empty(),
        "seed {seed}: the scenario produced no events"
    );
    assert_eq!(a, b, "seed {seed}: two runs diverged");
}
