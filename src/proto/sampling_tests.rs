//! Tests of the peer-sampling state machine: unit checks of the view
//! selection, and a discrete-event simulation of 200 nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const N: usize = 200;
const C: usize = 30;
const PERIOD: Duration = Duration::from_secs(1);

/// The seed: `PLEXUS_SEED` if set, else a random one (printed either way).
fn seed() -> u64 {
    let seed = std::env::var("PLEXUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("PLEXUS_SEED={seed}");
    seed
}

fn addr(i: u64) -> Option<String> {
    Some(format!("10.0.{}.{}:7000", i / 256, i % 256))
}

type Node = Sampling<u64, ChaCha8Rng>;

enum Ev {
    Timer(usize),
    Deliver {
        from: usize,
        to: usize,
        msg: Message<u64>,
    },
}

/// A discrete-event network: latency 1-20 ms, optional loss, dead nodes
/// drop what they are sent.
struct Sim {
    seed: u64,
    now: Time,
    queue: BTreeMap<(Time, u64), Ev>,
    counter: u64,
    nodes: Vec<Node>,
    alive: Vec<bool>,
    armed: Vec<Option<Time>>,
    rng: ChaCha8Rng,
    loss: f64,
    trace: Option<Vec<String>>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            now: Time::ZERO,
            queue: BTreeMap::new(),
            counter: 0,
            nodes: Vec::new(),
            alive: Vec::new(),
            armed: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss: 0.0,
            trace: None,
        }
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.counter += 1;
        self.queue.insert((at, self.counter), ev);
    }

    fn add(&mut self, config: &SamplingConfig, seed_peer: Option<usize>) -> usize {
        let i = self.nodes.len();
        let rng = ChaCha8Rng::seed_from_u64(self.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9));
        let mut node = Sampling::new(i as u64, addr(i as u64), config.clone(), rng, self.now);
        if let Some(s) = seed_peer {
            node.add_seed(s as u64, addr(s as u64));
        }
        self.nodes.push(node);
        self.alive.push(true);
        self.armed.push(None);
        self.flush(i);
        i
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            assert_eq!(t.addr, addr(t.to), "wrong address for {}", t.to);
            if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                continue;
            }
            let latency = Duration::from_micros(self.rng.random_range(1_000..=20_000));
            let at = self.now + latency;
            let to = t.to as usize;
            self.push(
                at,
                Ev::Deliver {
                    from: i,
                    to,
                    msg: t.msg,
                },
            );
        }
        let t = self.nodes[i].poll_timeout();
        if let Some(at) = t.filter(|_| t != self.armed[i]) {
            self.armed[i] = t;
            self.push(at, Ev::Timer(i));
        }
    }

    fn run_until(&mut self, end: Time) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((t, _), ev) = entry.remove_entry();
            self.now = t;
            match ev {
                Ev::Timer(i) => {
                    if !self.alive[i] || self.armed[i] != Some(t) {
                        continue;
                    }
                    self.armed[i] = None;
                    self.nodes[i].handle_timeout(t);
                    self.flush(i);
                }
                Ev::Deliver { from, to, msg } => {
                    if !self.alive[to] {
                        continue;
                    }
                    if let Some(trace) = &mut self.trace {
                        trace.push(format!("{} {from}->{to} {msg:?}", t.as_micros()));
                    }
                    self.nodes[to].handle_message(t, from as u64, msg);
                    self.flush(to);
                }
            }
        }
        self.now = end;
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.alive[i])
    }

    /// Whether the live nodes' views, as a directed graph over live nodes,
    /// are strongly connected.
    fn strongly_connected(&self) -> bool {
        let mut fwd: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut back: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in self.live() {
            for d in self.nodes[i].view() {
                let j = d.peer as usize;
                if self.alive[j] {
                    fwd.entry(i).or_default().push(j);
                    back.entry(j).or_default().push(i);
                }
            }
        }
        let live: BTreeSet<usize> = self.live().collect();
        let Some(&start) = live.first() else {
            return true;
        };
        [fwd, back].iter().all(|edges| {
            let mut seen = BTreeSet::from([start]);
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                for &j in edges.get(&i).into_iter().flatten() {
                    if seen.insert(j) {
                        stack.push(j);
                    }
                }
            }
            seen == live
        })
    }

    /// Whether the live nodes' views, ignoring direction, connect them all.
    fn weakly_connected(&self) -> bool {
        let mut edges: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in self.live() {
            for d in self.nodes[i].view() {
                let j = d.peer as usize;
                if self.alive[j] {
                    edges.entry(i).or_default().push(j);
                    edges.entry(j).or_default().push(i);
                }
            }
        }
        let live: BTreeSet<usize> = self.live().collect();
        let Some(&start) = live.first() else {
            return true;
        };
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &j in edges.get(&i).into_iter().flatten() {
                if seen.insert(j) {
                    stack.push(j);
                }
            }
        }
        seen == live
    }

    /// (min, mean, max) in-degree of the live nodes, counting live views.
    fn in_degrees(&self) -> (usize, f64, usize) {
        let mut deg = vec![0usize; self.nodes.len()];
        for i in self.live() {
            for d in self.nodes[i].view() {
                deg[d.peer as usize] += 1;
            }
        }
        let live: Vec<usize> = self.live().map(|i| deg[i]).collect();
        let sum: usize = live.iter().sum();
        let min = live.iter().copied().min().unwrap_or(0);
        let max = live.iter().copied().max().unwrap_or(0);
        (min, sum as f64 / live.len() as f64, max)
    }

    /// How many descriptors of dead nodes the live views hold.
    fn dead_links(&self) -> usize {
        self.live()
            .map(|i| {
                self.nodes[i]
                    .view()
                    .iter()
                    .filter(|d| !self.alive[d.peer as usize])
                    .count()
            })
            .sum()
    }

    fn check_views(&self) {
        for i in self.live() {
            let view = self.nodes[i].view();
            let c = self.nodes[i].config().view_size;
            assert!(view.len() <= c, "node {i}: view of {} > {c}", view.len());
            let peers: BTreeSet<u64> = view.iter().map(|d| d.peer).collect();
            assert_eq!(peers.len(), view.len(), "node {i}: duplicates");
            assert!(!peers.contains(&(i as u64)), "node {i}: itself in view");
            for d in view {
                assert_eq!(d.addr, addr(d.peer), "node {i}: wrong address");
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Start {
    Star,
    Chain,
}

/// `N` nodes joining `gap` apart, each through one seed, then `cycles`
/// cycles.
fn grow(seed: u64, config: &SamplingConfig, start: Start, gap: Duration, cycles: u32) -> Sim {
    let mut sim = Sim::new(seed);
    for i in 0..N {
        let seed_peer = match (i, start) {
            (0, _) => None,
            (_, Start::Star) => Some(0),
            (_, Start::Chain) => Some(i - 1),
        };
        sim.add(config, seed_peer);
        sim.run_until(sim.now + gap);
    }
    sim.run_until(sim.now + PERIOD * cycles);
    sim
}

fn presets() -> [(&'static str, SamplingConfig); 3] {
    let with_period = |c: SamplingConfig| SamplingConfig {
        period: PERIOD,
        ..c
    };
    [
        ("blind", with_period(SamplingConfig::blind(C))),
        ("healer", with_period(SamplingConfig::healer(C))),
        ("swapper", with_period(SamplingConfig::swapper(C))),
    ]
}

#[test]
fn presets_and_clamping() {
    let h = SamplingConfig::healer(30);
    assert_eq!((h.h(), h.s()), (15, 0));
    let s = SamplingConfig::swapper(30);
    assert_eq!((s.h(), s.s()), (0, 15));
    let odd = SamplingConfig {
        healer: 10,
        swapper: 10,
        ..SamplingConfig::blind(30)
    };
    assert_eq!((odd.h(), odd.s()), (10, 5));
    let tiny = SamplingConfig {
        healer: 9,
        swapper: 9,
        view_size: 0,
        ..SamplingConfig::blind(0)
    };
    assert_eq!((tiny.c(), tiny.h(), tiny.s()), (1, 0, 0));
    assert_eq!(SamplingConfig::default(), SamplingConfig::balanced(30));
    let b = SamplingConfig::balanced(30);
    assert_eq!((b.h(), b.s()), (1, 14));
}

fn unit_node(config: SamplingConfig, ages: &[u32]) -> Node {
    let mut node = Sampling::new(0, None, config, ChaCha8Rng::seed_from_u64(1), Time::ZERO);
    node.view = ages
        .iter()
        .enumerate()
        .map(|(i, &age)| Descriptor {
            peer: i as u64 + 1,
            addr: None,
            age,
        })
        .collect();
    node
}

fn fresh(peers: &[u64]) -> Vec<Descriptor<u64>> {
    peers
        .iter()
        .map(|&peer| Descriptor {
            peer,
            addr: None,
            age: 0,
        })
        .collect()
}

fn peers_of(node: &Node) -> BTreeSet<u64> {
    node.view().iter().map(|d| d.peer).collect()
}

#[test]
fn healer_drops_the_oldest() {
    let mut node = unit_node(SamplingConfig::healer(4), &[10, 1, 1, 7]);
    node.handle_message(
        Time::ZERO,
        9,
        Message::Push {
            buffer: fresh(&[5, 6]),
        },
    );
    assert_eq!(peers_of(&node), BTreeSet::from([2, 3, 5, 6]));
    assert!(node.view().iter().all(|d| d.age == 1 || d.age == 2));
}

#[test]
fn swapper_drops_the_head() {
    let mut node = unit_node(SamplingConfig::swapper(4), &[10, 1, 1, 7]);
    node.handle_message(
        Time::ZERO,
        9,
        Message::Push {
            buffer: fresh(&[5, 6]),
        },
    );
    assert_eq!(peers_of(&node), BTreeSet::from([3, 4, 5, 6]));
}

#[test]
fn duplicates_keep_the_youngest_and_an_address() {
    let mut node = unit_node(SamplingConfig::blind(4), &[3, 4]);
    node.view[0].addr = Some("a1".into());
    let buffer = vec![
        Descriptor {
            peer: 1,
            addr: None,
            age: 1,
        },
        Descriptor {
            peer: 2,
            addr: Some("x".repeat(MAX_ADDR_LEN + 1)),
            age: 9,
        },
        Descriptor {
            peer: 0,
            addr: None,
            age: 0,
        },
    ];
    node.handle_message(Time::ZERO, 9, Message::Push { buffer });
    let view: BTreeMap<u64, (u32, Option<String>)> = node
        .view()
        .iter()
        .map(|d| (d.peer, (d.age, d.addr.clone())))
        .collect();
    assert_eq!(
        view,
        BTreeMap::from([(1, (2, Some("a1".into()))), (2, (5, None))])
    );
}

#[test]
fn push_pull_exchange_and_swap() {
    let config = SamplingConfig::swapper(4);
    let mut a = unit_node(config.clone(), &[0, 0, 0]);
    let mut b = Sampling::new(7, None, config, ChaCha8Rng::seed_from_u64(2), Time::ZERO);
    b.add_seed(0, None);
    let due = a.poll_timeout().expect("a cycle is always scheduled");
    a.handle_timeout(due);
    let req = a.poll_transmit().expect("a request");
    assert!(matches!(req.msg, Message::Request { ref buffer } if buffer.len() == 2));
    assert!(a.poll_transmit().is_none());
    assert_eq!(a.poll_timeout(), Some(due + config_period(&a)));
    // A reply from anyone else is ignored.
    a.handle_message(
        due,
        99,
        Message::Reply {
            buffer: fresh(&[50]),
        },
    );
    assert!(!peers_of(&a).contains(&50));
    b.handle_message(
        due,
        0,
        Message::Request {
            buffer: fresh(&[0, 42]),
        },
    );
    let reply = b.poll_transmit().expect("a reply");
    assert_eq!(reply.to, 0);
    assert!(peers_of(&b).contains(&42));
    // The target answers (as if it were b, with id req.to).
    let Message::Reply { buffer } = reply.msg else {
        panic!("not a reply")
    };
    let target = req.to;
    let mut buffer = buffer;
    buffer[0].peer = target;
    a.handle_message(due, target, Message::Reply { buffer });
    assert!(a.view().len() <= 4);
    assert!(a.pending.is_none());
}

fn config_period(node: &Node) -> Duration {
    node.config().period
}

#[test]
fn nonsense_is_ignored() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut node = Sampling::new(
        0,
        addr(0),
        SamplingConfig::healer(8),
        rng.clone(),
        Time::ZERO,
    );
    for round in 0..2_000u64 {
        let len = rng.random_range(0..200);
        let buffer = (0..len)
            .map(|_| Descriptor {
                peer: rng.random_range(0..20),
                addr: if rng.random_bool(0.1) {
                    Some("y".repeat(rng.random_range(0..1_000)))
                } else {
                    None
                },
                age: rng.random(),
            })
            .collect();
        let from = rng.random_range(0..20);
        let msg = match rng.random_range(0..3) {
            0 => Message::Push { buffer },
            1 => Message::Request { buffer },
            _ => Message::Reply { buffer },
        };
        let now = Time::from_micros(round * 100_000);
        node.handle_message(now, from, msg);
        node.handle_timeout(now);
        while node.poll_transmit().is_some() {}
        let view = node.view();
        assert!(view.len() <= 8);
        assert!(view.iter().all(|d| d.peer != 0));
        assert!(view
            .iter()
            .all(|d| d.addr.as_ref().is_none_or(|a| a.len() <= MAX_ADDR_LEN)));
        let peers: BTreeSet<u64> = view.iter().map(|d| d.peer).collect();
        assert_eq!(peers.len(), view.len());
    }
}

#[test]
fn messages_round_trip_through_cbor() {
    let msg = Message::Request {
        buffer: vec![Descriptor {
            peer: 3u64,
            addr: addr(3),
            age: 4,
        }],
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&msg, &mut bytes).expect("encodes");
    let back: Message<u64> = ciborium::from_reader(&bytes[..]).expect("decodes");
    assert_eq!(back, msg);
}

/// Star: every node joins through node 0, 5 ms apart (all within one
/// cycle). Chain: node `i` joins through node `i - 1`, 200 ms apart (five
/// per cycle).
#[test]
fn overlay_converges_from_star_and_chain() {
    let seed = seed();
    let starts = [(Start::Star, 5), (Start::Chain, 200)];
    for (start, gap) in starts {
        for (name, config) in presets() {
            let sim = grow(seed, &config, start, Duration::from_millis(gap), 50);
            sim.check_views();
            let full = sim
                .live()
                .filter(|&i| sim.nodes[i].view().len() == C)
                .count();
            let (min, mean, max) = sim.in_degrees();
            let strong = sim.strongly_connected();
            eprintln!(
                "{start:?} {name:8} after 50 cycles: full views {full}/{N}, strongly \
                 connected {strong}, in-degree min {min} mean {mean:.1} max {max}"
            );
            assert_eq!(full, N, "{start:?} {name}: views not full");
            assert!(sim.weakly_connected(), "{start:?} {name}: partitioned");
            // No hub: a collapse into a star would show in-degrees near N.
            // The healer keeps the freshest descriptors, so the nodes that
            // joined last are over-represented for a while; over 160 seeds
            // its largest in-degree after a chain start was 97 (3.2 C),
            // the others stayed under 2.7 C.
            let bound = if name == "healer" { 4 * C } else { 3 * C };
            assert!(max <= bound, "{start:?} {name}: in-degree {max} too skewed");
            // Blind may forget a node for a while (in-degree 0): it comes
            // back with its next push.
            if name != "blind" {
                assert!(strong, "{start:?} {name}: not strongly connected");
                assert!(min >= 1, "{start:?} {name}: a node is forgotten");
            }
            if name == "swapper" {
                assert!(max <= 2 * C, "swapper should balance in-degrees: max {max}");
            }
        }
    }
    // Known weakness, printed only: with a chain of fast joins, the healer
    // can wall off a group of nodes for good (measured over 200 seeds: 17
    // partitions with joins 50 ms apart, none 200 ms apart or with a star).
    let healer = presets()[1].1.clone();
    let sim = grow(seed, &healer, Start::Chain, Duration::from_millis(5), 50);
    eprintln!(
        "Chain (5 ms joins) healer: strongly connected {}, weakly {}",
        sim.strongly_connected(),
        sim.weakly_connected()
    );
}

#[test]
fn selection_and_propagation_variants() {
    let seed = seed();
    for selection in [PeerSelection::Rand, PeerSelection::Tail] {
        for propagation in [Propagation::Push, Propagation::PushPull] {
            let config = SamplingConfig {
                selection,
                propagation,
                period: PERIOD,
                ..SamplingConfig::healer(C)
            };
            let sim = grow(seed, &config, Start::Star, Duration::from_millis(5), 50);
            sim.check_views();
            let (min, mean, max) = sim.in_degrees();
            let connected = sim.strongly_connected();
            eprintln!(
                "{selection:?}/{propagation:?} healer, star: strongly connected {connected}, \
                 in-degree min {min} mean {mean:.1} max {max}"
            );
            if propagation == Propagation::PushPull {
                assert!(connected, "{selection:?}/{propagation:?}: not connected");
            }
        }
    }
}

#[test]
fn healing_after_half_the_nodes_die() {
    let seed = seed();
    let mut healed_in = BTreeMap::new();
    for (name, config) in presets() {
        let mut sim = grow(seed, &config, Start::Star, Duration::from_millis(5), 50);
        let mut kill_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead);
        let mut victims: Vec<usize> = (0..N).collect();
        victims.shuffle(&mut kill_rng);
        for &v in &victims[..N / 2] {
            sim.alive[v] = false;
        }
        let initial = sim.dead_links();
        let mut trail = vec![initial];
        let mut healed = None;
        for cycle in 1..=100u32 {
            sim.run_until(sim.now + PERIOD);
            let dead = sim.dead_links();
            if cycle <= 10 || cycle % 10 == 0 {
                trail.push(dead);
            }
            if dead == 0 {
                healed = Some(cycle);
                break;
            }
        }
        sim.check_views();
        let connected = sim.strongly_connected();
        let (min, mean, max) = sim.in_degrees();
        eprintln!(
            "{name:8}: dead links {trail:?}; all gone after {healed:?} cycles; \
             survivors connected {connected}, in-degree min {min} mean {mean:.1} max {max}"
        );
        healed_in.insert(name, healed.unwrap_or(u32::MAX));
    }
    assert!(
        healed_in["healer"] <= C as u32,
        "healer too slow: {healed_in:?}"
    );
    assert!(healed_in["healer"] < healed_in["blind"], "{healed_in:?}");
}

#[test]
fn lossy_network_still_converges() {
    let seed = seed();
    let config = SamplingConfig {
        period: PERIOD,
        ..SamplingConfig::healer(C)
    };
    let mut sim = Sim::new(seed);
    sim.loss = 0.1;
    for i in 0..N {
        sim.add(&config, (i > 0).then_some(0));
        sim.run_until(sim.now + Duration::from_millis(5));
    }
    sim.run_until(sim.now + PERIOD * 50);
    sim.check_views();
    let (min, mean, max) = sim.in_degrees();
    eprintln!("10% loss, healer, star: in-degree min {min} mean {mean:.1} max {max}");
    assert!(sim.strongly_connected());
}

fn traced(seed: u64) -> Vec<String> {
    let config = SamplingConfig {
        period: PERIOD,
        ..SamplingConfig::swapper(10)
    };
    let mut sim = Sim::new(seed);
    sim.trace = Some(Vec::new());
    sim.loss = 0.05;
    for i in 0..50 {
        sim.add(&config, (i > 0).then(|| i - 1));
        sim.run_until(sim.now + Duration::from_millis(5));
    }
    sim.run_until(sim.now + PERIOD * 10);
    let mut trace = sim.trace.take().expect("tracing was on");
    for node in &mut sim.nodes {
        let sample = node.sample();
        trace.push(format!("{:?} sample {sample:?}", node.view()));
    }
    trace
}

#[test]
fn same_seed_same_trace() {
    let seed = seed();
    let a = traced(seed);
    let b = traced(seed);
    assert!(a.len() > 500, "trace too short: {}", a.len());
    assert!(a == b, "same seed, different traces");
    assert!(
        traced(seed.wrapping_add(1)) != a,
        "the seed changes nothing"
    );
}
