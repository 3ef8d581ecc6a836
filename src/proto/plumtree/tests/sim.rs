//! A discrete-event simulation of a 100-node cluster: tree formation,
//! loss, node removal, determinism.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

// The simulation: the harness plays the plexus node (keeps payloads,
// deduplicates, reports receipts) over a lossy network with latency.

/// The seed from `PLEXUS_SEED`, else a random one; printed either way.
fn seed() -> u64 {
    let seed = std::env::var("PLEXUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("PLEXUS_SEED={seed}");
    seed
}

/// The seed of the `round`th run of a test (the first is `base` itself).
fn sub_seed(base: u64, round: u64) -> u64 {
    base.wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Wire {
    Payload { id: u64, hops: u32 },
    Control(Vec<u8>),
}

#[derive(Debug)]
enum Ev {
    Deliver { from: u32, to: u32, wire: Wire },
    Wake(u32),
}

#[derive(Debug)]
struct Sched {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sched {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct SimNode {
    tree: Tree,
    have: BTreeSet<u64>,
    alive: bool,
    wake: Option<Time>,
}

struct Sim {
    rng: ChaCha8Rng,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Sched>>,
    nodes: Vec<SimNode>,
    /// Symmetric links with their one-way latency in µs.
    links: BTreeMap<(u32, u32), u64>,
    loss: f64,
    /// Every transmission: (time, from, to, wire, lost).
    trace: Vec<(u64, u32, u32, Wire, bool)>,
    payloads: BTreeMap<u64, u64>,
    dups: BTreeMap<u64, u64>,
    /// When each id was broadcast.
    sent_at: BTreeMap<u64, Time>,
    /// Per id: (sum of delivery delays in µs, the largest, sum of hops).
    delays: BTreeMap<u64, (u64, u64, u64)>,
}

impl Sim {
    fn new(seed: u64, n: u32, loss: f64, config: &Config) -> Self {
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: (0..n)
                .map(|_| SimNode {
                    tree: Tree::new(config.clone()),
                    have: BTreeSet::new(),
                    alive: true,
                    wake: None,
                })
                .collect(),
            links: BTreeMap::new(),
            loss,
            trace: Vec::new(),
            payloads: BTreeMap::new(),
            dups: BTreeMap::new(),
            sent_at: BTreeMap::new(),
            delays: BTreeMap::new(),
        };
        // A random ring keeps the graph connected; random chords bring each
        // node to degree 5 (6 at most), like HyParView's active views.
        let mut ring: Vec<u32> = (0..n).collect();
        for i in (1..ring.len()).rev() {
            ring.swap(i, sim.rng.random_range(0..=i));
        }
        for i in 0..ring.len() {
            sim.link(ring[i], ring[(i + 1) % ring.len()]);
        }
        for a in 0..n {
            for _ in 0..100 {
                if sim.degree(a) >= 5 {
                    break;
                }
                let b = sim.rng.random_range(0..n);
                if b != a && sim.degree(b) < 6 && !sim.linked(a, b) {
                    sim.link(a, b);
                }
            }
        }
        sim
    }

    fn key(a: u32, b: u32) -> (u32, u32) {
        (a.min(b), a.max(b))
    }

    fn linked(&self, a: u32, b: u32) -> bool {
        self.links.contains_key(&Self::key(a, b))
    }

    fn neighbors(&self, a: u32) -> Vec<u32> {
        let ends = self.links.keys();
        ends.filter_map(|&(x, y)| (x == a).then_some(y).or((y == a).then_some(x)))
            .collect()
    }

    fn degree(&self, a: u32) -> usize {
        self.neighbors(a).len()
    }

    fn link(&mut self, a: u32, b: u32) {
        let latency = self.rng.random_range(1_000..=20_000);
        self.links.insert(Self::key(a, b), latency);
        self.nodes[a as usize].tree.handle_neighbor_up(b);
        self.nodes[b as usize].tree.handle_neighbor_up(a);
    }

    fn alive(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].alive)
            .collect()
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Reverse(Sched { at, seq, ev }));
    }

    fn transmit(&mut self, from: u32, to: u32, wire: Wire) {
        let lost = self.loss > 0.0 && self.rng.random_bool(self.loss);
        let base = self.links.get(&Self::key(from, to)).copied();
        self.trace
            .push((self.now.as_micros(), from, to, wire.clone(), lost));
        if let (false, Some(base)) = (lost, base) {
            let jitter = self.rng.random_range(0..=500);
            let at = self.now + Duration::from_micros(base + jitter);
            self.schedule(at, Ev::Deliver { from, to, wire });
        }
    }

    /// Carry out what node `i`'s tree asks for, then arm its timer.
    fn drain(&mut self, i: u32) {
        while let Some(ev) = self.nodes[i as usize].tree.poll_event() {
            match ev {
                Event::Send { to, msg } => {
                    let mut bytes = Vec::new();
                    ciborium::into_writer(&msg, &mut bytes).expect("encode");
                    self.transmit(i, to, Wire::Control(bytes));
                }
                Event::Push { to, id, hops } => {
                    if !self.nodes[i as usize].have.contains(&id) {
                        continue;
                    }
                    for peer in to {
                        *self.payloads.entry(id).or_default() += 1;
                        self.transmit(i, peer, Wire::Payload { id, hops });
                    }
                }
            }
        }
        let node = &mut self.nodes[i as usize];
        if let Some(due) = node.tree.poll_timeout() {
            if node.wake.is_none_or(|w| due < w) {
                node.wake = Some(due);
                self.schedule(due, Ev::Wake(i));
            }
        }
    }

    fn broadcast(&mut self, origin: u32, id: u64) {
        let now = self.now;
        let node = &mut self.nodes[origin as usize];
        node.have.insert(id);
        node.tree.broadcast(now, id);
        self.sent_at.insert(id, now);
        self.drain(origin);
    }

    /// Run every event due up to `until`, then set the clock to it.
    fn run_until(&mut self, until: Time) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            let Some(Reverse(Sched { at, ev, .. })) = self.queue.pop() else {
                break;
            };
            self.now = at;
            match ev {
                Ev::Wake(i) => {
                    let node = &mut self.nodes[i as usize];
                    if node.wake == Some(at) {
                        node.wake = None;
                    }
                    if node.alive && node.tree.poll_timeout().is_some_and(|d| d <= at) {
                        node.tree.handle_timeout(at);
                    }
                    if node.alive {
                        self.drain(i);
                    }
                }
                Ev::Deliver { from, to, wire } => {
                    let node = &mut self.nodes[to as usize];
                    if !node.alive {
                        continue;
                    }
                    match wire {
                        Wire::Payload { id, hops } => {
                            let first = node.have.insert(id);
                            node.tree.handle_received(at, from, id, hops, first);
                            if first {
                                let sent = self.sent_at.get(&id).copied().unwrap_or(at);
                                let delay = at.since(sent).as_micros() as u64;
                                let d = self.delays.entry(id).or_default();
                                *d = (d.0 + delay, d.1.max(delay), d.2 + u64::from(hops));
                            } else {
                                *self.dups.entry(id).or_default() += 1;
                            }
                        }
                        Wire::Control(bytes) => {
                            let msg = ciborium::from_reader(&bytes[..]).expect("decode");
                            node.tree.handle_message(at, from, msg);
                        }
                    }
                    self.drain(to);
                }
            }
        }
        self.now = until;
    }

    /// Remove `victims`: their neighbours are told, and survivors left with
    /// fewer than three links get new ones, as HyParView would give them.
    fn remove(&mut self, victims: &[u32]) {
        let now = self.now;
        for &v in victims {
            self.nodes[v as usize].alive = false;
            for peer in self.neighbors(v) {
                self.links.remove(&Self::key(v, peer));
                self.nodes[peer as usize].tree.handle_neighbor_down(now, v);
                self.drain(peer);
            }
        }
        let alive = self.alive();
        for &a in &alive {
            while self.degree(a) < 3 {
                let b = alive[self.rng.random_range(0..alive.len())];
                if b != a && !self.linked(a, b) {
                    self.link(a, b);
                }
            }
        }
        // Join any components left apart.
        loop {
            let reached = self.component(alive[0]);
            let Some(&stray) = alive.iter().find(|a| !reached.contains(a)) else {
                break;
            };
            self.link(alive[0], stray);
        }
    }

    fn component(&self, start: u32) -> BTreeSet<u32> {
        let mut seen = BTreeSet::from([start]);
        let mut todo = VecDeque::from([start]);
        while let Some(a) = todo.pop_front() {
            for b in self.neighbors(a) {
                if seen.insert(b) {
                    todo.push_back(b);
                }
            }
        }
        seen
    }

    fn totals(&self) -> Stats {
        let mut sum = Stats::default();
        for n in &self.nodes {
            let s = n.tree.stats();
            sum.payloads_pushed += s.payloads_pushed;
            sum.duplicates += s.duplicates;
            sum.prunes_sent += s.prunes_sent;
            sum.ihaves_sent += s.ihaves_sent;
            sum.ids_announced += s.ids_announced;
            sum.grafts_sent += s.grafts_sent;
            sum.ids_grafted += s.ids_grafted;
            sum.tree_swaps += s.tree_swaps;
        }
        sum
    }

    /// Broadcast `ids` one a second from random live origins, then let the
    /// network settle.
    fn broadcasts(&mut self, ids: std::ops::Range<u64>) {
        self.broadcasts_every(ids, Duration::from_secs(1));
    }

    /// Broadcast `ids` one per `gap` from random live origins, then let the
    /// network settle.
    fn broadcasts_every(&mut self, ids: std::ops::Range<u64>, gap: Duration) {
        for id in ids {
            let alive = self.alive();
            let origin = alive[self.rng.random_range(0..alive.len())];
            self.broadcast(origin, id);
            self.run_until(self.now + gap);
        }
        self.run_until(self.now + Duration::from_secs(5));
    }

    /// The ids some live node lacks, with how many lack each.
    fn undelivered(&self, ids: std::ops::Range<u64>) -> Vec<(u64, usize)> {
        ids.filter_map(|id| {
            let lacking = self
                .nodes
                .iter()
                .filter(|n| n.alive && !n.have.contains(&id))
                .count();
            (lacking > 0).then_some((id, lacking))
        })
        .collect()
    }

    fn mean<F: Fn(u64) -> u64>(ids: std::ops::Range<u64>, f: F) -> f64 {
        let len = ids.end - ids.start;
        ids.map(f).sum::<u64>() as f64 / len as f64
    }

    fn payloads(&self, id: u64) -> u64 {
        self.payloads.get(&id).copied().unwrap_or(0)
    }

    /// Mean delivery delay (ms), the largest (ms) and mean hops over `ids`.
    fn delay(&self, ids: std::ops::Range<u64>) -> (f64, f64, f64) {
        let (mut sum, mut max, mut hops, mut count) = (0, 0, 0, 0);
        for id in ids {
            let receivers = self.nodes.iter().filter(|n| n.alive).count() as u64 - 1;
            let d = self.delays.get(&id).copied().unwrap_or_default();
            sum += d.0;
            max = max.max(d.1);
            hops += d.2;
            count += receivers;
        }
        let count = count.max(1) as f64;
        (
            sum as f64 / count / 1e3,
            max as f64 / 1e3,
            hops as f64 / count,
        )
    }

    fn dups(&self, id: u64) -> u64 {
        self.dups.get(&id).copied().unwrap_or(0)
    }
}

const N: u32 = 100;

#[test]
fn the_tree_forms_and_every_node_gets_every_message() {
    let base = seed();
    for round in 0..3 {
        let mut sim = Sim::new(sub_seed(base, round), N, 0.0, &Config::default());
        let edges = sim.links.len() as u64;
        sim.broadcasts(0..100);
        assert_eq!(
            sim.undelivered(0..100),
            vec![],
            "seed {}",
            sub_seed(base, round)
        );
        let first = sim.payloads(0);
        let early = Sim::mean(0..5, |id| sim.payloads(id));
        let steady = Sim::mean(50..100, |id| sim.payloads(id));
        let steady_dups = Sim::mean(50..100, |id| sim.dups(id));
        let s = sim.totals();
        let (d0, m0, h0) = sim.delay(0..5);
        let (d1, m1, h1) = sim.delay(50..100);
        println!(
            "{edges} edges, flooding sends 2E-(n-1) = {} payloads/broadcast; plumtree: \
             first {first}, mean of first 5 {early:.1}, of last 50 {steady:.1} (n-1 = {}); \
             duplicates/broadcast first {}, last 50 {steady_dups:.2}; grafts {}, IHaves {}",
            2 * edges - u64::from(N - 1),
            N - 1,
            sim.dups(0),
            s.grafts_sent,
            s.ihaves_sent,
        );
        println!(
            "  delay first 5: mean {d0:.1} ms, max {m0:.1} ms, {h0:.2} hops; \
             last 50: mean {d1:.1} ms, max {m1:.1} ms, {h1:.2} hops"
        );
        assert!(first as f64 > 1.5 * f64::from(N - 1));
        assert!(steady < 1.1 * f64::from(N - 1), "steady {steady}");
        assert!(steady_dups < 5.0, "duplicates {steady_dups}");

        // A burst: one broadcast every 2 ms, so announcements share IHaves.
        let before = sim.totals();
        sim.broadcasts_every(100..300, Duration::from_millis(2));
        assert_eq!(
            sim.undelivered(100..300),
            vec![],
            "seed {}",
            sub_seed(base, round)
        );
        let after = sim.totals();
        let ids = after.ids_announced - before.ids_announced;
        let ihaves = after.ihaves_sent - before.ihaves_sent;
        println!(
            "  burst of 200: payloads/broadcast {:.1}, duplicates/broadcast {:.2}, \
             {:.1} ids per IHave",
            Sim::mean(100..300, |id| sim.payloads(id)),
            Sim::mean(100..300, |id| sim.dups(id)),
            ids as f64 / ihaves.max(1) as f64,
        );
    }
}

#[test]
fn the_optional_tree_optimisation_keeps_delivery() {
    let base = seed();
    for threshold in [None, Some(3), Some(6)] {
        let config = Config {
            optimization_threshold: threshold,
            ..Config::default()
        };
        let mut sim = Sim::new(base, N, 0.0, &config);
        sim.broadcasts(0..100);
        assert_eq!(sim.undelivered(0..100), vec![], "seed {base}");
        let (d, m, h) = sim.delay(50..100);
        println!(
            "optimisation {threshold:?}: last 50 broadcasts: payloads {:.1}, duplicates {:.2}, \
             delay mean {d:.1} ms max {m:.1} ms, {h:.2} hops; swaps {}, grafts {}",
            Sim::mean(50..100, |id| sim.payloads(id)),
            Sim::mean(50..100, |id| sim.dups(id)),
            sim.totals().tree_swaps,
            sim.totals().grafts_sent,
        );
    }
}

/// What a lossy transport needs: announcements repeated once, and grafts
/// retried long enough that 20% loss each way cannot exhaust them.
fn lossy_config() -> Config {
    Config {
        ihave_repeats: 1,
        max_graft_attempts: 20,
        ..Config::default()
    }
}

#[test]
fn lazy_repair_delivers_everything_despite_loss() {
    let base = seed();
    for round in 0..3 {
        let mut sim = Sim::new(sub_seed(base, round), N, 0.2, &lossy_config());
        sim.broadcasts(0..100);
        assert_eq!(
            sim.undelivered(0..100),
            vec![],
            "seed {}",
            sub_seed(base, round)
        );
        let s = sim.totals();
        let steady = Sim::mean(50..100, |id| sim.payloads(id));
        let (d, m, _) = sim.delay(50..100);
        println!(
            "20% loss: grafts {} ({:.1} per broadcast), payloads/broadcast last 50 \
             {steady:.1}, duplicates/broadcast last 50 {:.2}, ids announced {}, \
             delay mean {d:.1} ms max {m:.1} ms",
            s.grafts_sent,
            s.grafts_sent as f64 / 100.0,
            Sim::mean(50..100, |id| sim.dups(id)),
            s.ids_announced,
        );
    }
}

#[test]
fn the_tree_repairs_after_a_fifth_of_the_nodes_leave() {
    let base = seed();
    for round in 0..3 {
        let mut sim = Sim::new(sub_seed(base, round), N, 0.0, &Config::default());
        sim.broadcasts(0..30);
        let mut victims = sim.alive();
        for i in (1..victims.len()).rev() {
            victims.swap(i, sim.rng.random_range(0..=i));
        }
        victims.truncate(N as usize / 5);
        let before = sim.totals();
        sim.remove(&victims);
        sim.broadcasts(30..80);
        assert_eq!(
            sim.undelivered(30..80),
            vec![],
            "seed {}",
            sub_seed(base, round)
        );
        let after = sim.totals();
        let (d0, m0, _) = sim.delay(25..30);
        let (d1, m1, _) = sim.delay(30..35);
        let (d2, m2, _) = sim.delay(55..80);
        println!(
            "after removing {}: payloads/broadcast first 5 {:.1}, last 25 {:.1} \
             (survivors-1 = {}), duplicates/broadcast first 5 {:.2}, last 25 {:.2}; \
             grafts during repair {}; delay mean/max before {d0:.1}/{m0:.1} ms, \
             first 5 after {d1:.1}/{m1:.1} ms, last 25 {d2:.1}/{m2:.1} ms",
            victims.len(),
            Sim::mean(30..35, |id| sim.payloads(id)),
            Sim::mean(55..80, |id| sim.payloads(id)),
            sim.alive().len() - 1,
            Sim::mean(30..35, |id| sim.dups(id)),
            Sim::mean(55..80, |id| sim.dups(id)),
            after.grafts_sent - before.grafts_sent,
        );
        assert!(Sim::mean(55..80, |id| sim.payloads(id)) < 1.1 * (N as f64 * 0.8));
    }
}

#[test]
fn same_seed_same_trace() {
    let seed = seed();
    let run = |seed| {
        let mut sim = Sim::new(seed, 40, 0.2, &lossy_config());
        sim.broadcasts(0..20);
        sim.trace
    };
    let a = run(seed);
    assert!(!a.is_empty());
    assert!(a == run(seed), "same seed gave another trace");
    assert!(a != run(seed.wrapping_add(1)));
}
