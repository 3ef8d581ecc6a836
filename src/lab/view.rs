//! What the lab knows of the run, gathered from its peers' reports, and
//! the snapshot of it that the page, the progress bar and `lab-out/` show.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::layout::Layout;
use super::wire::{PeerStats, ToLab};

/// How the run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Peers are starting and saying hello.
    Starting,
    /// The experiment runs.
    Running,
    /// Every peer reached its targets.
    Done,
    /// `--timeout` passed first.
    TimedOut,
    /// A peer failed (its code returned an error, or its process died).
    Failed,
    /// Ctrl-C.
    Interrupted,
}

/// The whole picture at one moment: what the page draws.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// The experiment's name.
    pub experiment: String,
    /// How the run stands.
    pub state: RunState,
    /// Milliseconds since the peers were told to start.
    pub elapsed_ms: u64,
    /// When every peer was done, in milliseconds since the start.
    pub converged_ms: Option<u64>,
    /// Targets met, over all peers.
    pub targets_met: usize,
    /// Targets reported, over all peers.
    pub targets: usize,
    /// Peers done.
    pub peers_done: usize,
    /// The peers.
    pub peers: Vec<PeerSnapshot>,
    /// The links, with their traffic both ways.
    pub edges: Vec<EdgeSnapshot>,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
}

/// One peer in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct PeerSnapshot {
    /// Its number, from 1.
    pub peer: u32,
    /// Its node id, hex.
    pub id: String,
    /// Where it listens.
    pub addr: Option<SocketAddr>,
    /// `alive`, `suspected` (some peer suspects it), `down` (some peer
    /// declared it down, or its process is gone) or `starting`.
    pub status: &'static str,
    /// Whether all its targets are met.
    pub done: bool,
    /// Its position, in the unit square.
    pub x: f32,
    /// Its position, in the unit square.
    pub y: f32,
    /// Ops its node has seen.
    pub ops: u64,
    /// Its targets: name, current, goal.
    pub targets: Vec<(String, u64, u64)>,
    /// Ops seen over time: (milliseconds since the start, ops).
    pub timeline: Vec<(u64, u64)>,
}

/// One link in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct EdgeSnapshot {
    /// The smaller peer number.
    pub a: u32,
    /// The larger one.
    pub b: u32,
    /// Messages both ways.
    pub messages: u64,
    /// Bytes both ways.
    pub bytes: u64,
    /// Whether the link is up now.
    pub up: bool,
}

/// Cumulative traffic over a directed pair: link counters restart when a
/// link comes back, so earlier counts are kept as a base.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    base: (u64, u64),
    last: (u64, u64),
    up: bool,
}

impl Counted {
    fn update(&mut self, now: (u64, u64)) {
        if now.0 < self.last.0 || now.1 < self.last.1 {
            self.base = (
                self.base.0.saturating_add(self.last.0),
                self.base.1.saturating_add(self.last.1),
            );
        }
        self.last = now;
        self.up = true;
    }

    fn total(&self) -> (u64, u64) {
        (
            self.base.0.saturating_add(self.last.0),
            self.base.1.saturating_add(self.last.1),
        )
    }
}

#[derive(Debug, Default)]
struct PeerView {
    id: String,
    addr: Option<SocketAddr>,
    targets: BTreeMap<String, (u64, u64)>,
    stats: PeerStats,
    timeline: Vec<(u64, u64)>,
    finished: bool,
    /// Its code waits for the end (or returned without an error).
    waiting: bool,
    gone: bool,
    usage: Option<(Option<u64>, Option<u64>)>,
}

impl PeerView {
    fn done(&self) -> bool {
        self.waiting && self.targets.values().all(|(c, g)| c >= g)
    }
}

/// The most timeline points kept per peer; older ones are thinned.
const TIMELINE_POINTS: usize = 240;

/// The lab's picture of the run.
#[derive(Debug)]
pub(crate) struct View {
    experiment: String,
    peers: BTreeMap<u32, PeerView>,
    by_id: HashMap<String, u32>,
    traffic: BTreeMap<(u32, u32), Counted>,
    layout: Layout,
    pub(crate) state: RunState,
    pub(crate) failure: Option<String>,
    converged: Option<Duration>,
    elapsed: Duration,
    /// Set when the run ends: links are shown as they were then, not as
    /// the stopping peers close them.
    frozen: bool,
}

impl View {
    pub(crate) fn new(experiment: &str, peers: u32) -> Self {
        Self {
            experiment: experiment.to_owned(),
            peers: (1..=peers).map(|p| (p, PeerView::default())).collect(),
            by_id: HashMap::new(),
            traffic: BTreeMap::new(),
            layout: Layout::new(peers),
            state: RunState::Starting,
            failure: None,
            converged: None,
            elapsed: Duration::ZERO,
            frozen: false,
        }
    }

    /// Takes a message from peer `peer`, `at` since the start.
    pub(crate) fn apply(&mut self, peer: u32, at: Duration, msg: ToLab) {
        let Some(view) = self.peers.get_mut(&peer) else {
            return;
        };
        match msg {
            ToLab::Hello { id, addr, .. } => {
                self.by_id.insert(id.clone(), peer);
                (view.id, view.addr) = (id, Some(addr));
            }
            ToLab::Target {
                name,
                current,
                goal,
            } => {
                view.targets.insert(name, (current, goal));
            }
            ToLab::Stats(stats) => {
                let ms = millis(at);
                if view
                    .timeline
                    .last()
                    .is_none_or(|(_, ops)| *ops != stats.ops)
                {
                    view.timeline.push((ms, stats.ops));
                }
                if view.timeline.len() > TIMELINE_POINTS {
                    thin(&mut view.timeline);
                }
                view.stats = stats;
                self.count_traffic(peer);
            }
            ToLab::Waiting => view.waiting = true,
            ToLab::Finished { error } => {
                view.finished = true;
                view.waiting |= error.is_none();
                if let Some(e) = error {
                    self.fail(format!("peer {peer}'s experiment failed: {e}"));
                }
            }
            ToLab::Bye {
                cpu_ms,
                max_rss_kib,
            } => view.usage = Some((cpu_ms, max_rss_kib)),
        }
        if self.state == RunState::Running && self.converged.is_none() && self.all_done() {
            self.converged = Some(at);
        }
    }

    fn count_traffic(&mut self, peer: u32) {
        let Some(view) = self.peers.get(&peer) else {
            return;
        };
        let mut linked = BTreeSet::new();
        for link in &view.stats.links {
            if let Some(&other) = self.by_id.get(&link.peer) {
                linked.insert(other);
                let now = (link.sent_messages, link.sent_bytes);
                self.traffic.entry((peer, other)).or_default().update(now);
            }
        }
        for ((from, to), counted) in self.traffic.range_mut((peer, 0)..=(peer, u32::MAX)) {
            debug_assert_eq!(*from, peer);
            if !linked.contains(to) && !self.frozen {
                counted.up = false;
            }
        }
    }

    /// Peer `peer`'s process is gone.
    pub(crate) fn gone(&mut self, peer: u32) {
        if let Some(view) = self.peers.get_mut(&peer) {
            view.gone = true;
        }
        if self.frozen {
            return;
        }
        for ((from, _), counted) in self.traffic.iter_mut() {
            if *from == peer {
                counted.up = false;
            }
        }
    }

    /// Records the first failure; the run has failed.
    pub(crate) fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
        if matches!(self.state, RunState::Starting | RunState::Running) {
            self.state = RunState::Failed;
        }
    }

    /// The run ended: from now on the links keep the state they had.
    pub(crate) fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Whether every peer is done.
    pub(crate) fn all_done(&self) -> bool {
        self.peers.values().all(PeerView::done)
    }

    /// Whether peer `peer` has finished its experiment code.
    pub(crate) fn finished(&self, peer: u32) -> bool {
        self.peers.get(&peer).is_some_and(|v| v.finished)
    }

    /// CPU milliseconds and peak memory (KiB) the peers reported at exit,
    /// added up, with how many reported.
    pub(crate) fn usage(&self) -> (u64, u64, usize) {
        let reports = self.peers.values().filter_map(|v| v.usage);
        reports.fold((0, 0, 0), |(cpu, rss, n), (c, r)| {
            let (c, r) = (c.unwrap_or(0), r.unwrap_or(0));
            (cpu.saturating_add(c), rss.saturating_add(r), n + 1)
        })
    }

    /// When every peer was first done.
    pub(crate) fn converged(&self) -> Option<Duration> {
        self.converged
    }

    /// Steps the layout; `elapsed` is the time since the start.
    pub(crate) fn tick(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        let edges = self
            .traffic
            .iter()
            .filter(|(_, c)| c.up)
            .map(|((a, b), _)| ((*a).min(*b), (*a).max(*b)))
            .collect();
        self.layout.step(edges);
    }

    /// Lets the layout settle, for the final picture.
    pub(crate) fn settle(&mut self) {
        self.layout.settle(40);
    }

    /// The picture now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let at = self.layout.unit_positions();
        // What the live peers' failure detectors say of each node id.
        let marked = |list: fn(&PeerStats) -> &Vec<String>| -> BTreeSet<&String> {
            let live = self.peers.values().filter(|v| !v.gone);
            live.flat_map(|v| list(&v.stats).iter()).collect()
        };
        let suspected = marked(|s| &s.suspected);
        let down = marked(|s| &s.down);
        let running = matches!(self.state, RunState::Starting | RunState::Running);
        let peers = self
            .peers
            .iter()
            .map(|(&peer, v)| {
                let status = if v.addr.is_none() {
                    "starting"
                } else if down.contains(&v.id) || (v.gone && running) {
                    "down"
                } else if suspected.contains(&v.id) {
                    "suspected"
                } else {
                    "alive"
                };
                let (x, y) = at.get(&peer).copied().unwrap_or((0.5, 0.5));
                PeerSnapshot {
                    peer,
                    id: v.id.clone(),
                    addr: v.addr,
                    status,
                    done: v.done(),
                    x,
                    y,
                    ops: v.stats.ops,
                    targets: v
                        .targets
                        .iter()
                        .map(|(n, (c, g))| (n.clone(), *c, *g))
                        .collect(),
                    timeline: v.timeline.clone(),
                }
            })
            .collect();
        let mut edges: BTreeMap<(u32, u32), EdgeSnapshot> = BTreeMap::new();
        for (&(from, to), counted) in &self.traffic {
            let (a, b) = (from.min(to), from.max(to));
            let (messages, bytes) = counted.total();
            let e = edges.entry((a, b)).or_insert(EdgeSnapshot {
                a,
                b,
                messages: 0,
                bytes: 0,
                up: false,
            });
            e.messages = e.messages.saturating_add(messages);
            e.bytes = e.bytes.saturating_add(bytes);
            e.up |= counted.up;
        }
        let targets = self.peers.values().map(|v| v.targets.len()).sum();
        let targets_met = self
            .peers
            .values()
            .flat_map(|v| v.targets.values())
            .filter(|(c, g)| c >= g)
            .count();
        Snapshot {
            experiment: self.experiment.clone(),
            state: self.state,
            elapsed_ms: millis(self.elapsed),
            converged_ms: self.converged.map(millis),
            targets_met,
            targets,
            peers_done: self.peers.values().filter(|v| v.done()).count(),
            peers,
            edges: edges.into_values().collect(),
            failure: self.failure.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Halves the points, keeping the first and the last.
fn thin(points: &mut Vec<(u64, u64)>) {
    let last = points.last().copied();
    let kept: Vec<_> = points.iter().copied().step_by(2).collect();
    *points = kept;
    if let Some(last) = last {
        if points.last() != Some(&last) {
            points.push(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::LinkStats;
    use super::*;

    fn hello(view: &mut View, peer: u32) {
        let id = format!("{peer:02x}");
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000 + peer as u16));
        view.apply(peer, Duration::ZERO, ToLab::Hello { peer, id, addr });
    }

    fn stats(to: &[(u32, u64)]) -> ToLab {
        ToLab::Stats(PeerStats {
            ops: 1,
            links: to
                .iter()
                .map(|(p, n)| LinkStats {
                    peer: format!("{p:02x}"),
                    sent_messages: *n,
                    sent_bytes: n * 100,
                })
                .collect(),
            ..PeerStats::default()
        })
    }

    #[test]
    fn traffic_adds_both_ways_and_survives_a_reconnect() {
        let mut view = View::new("t", 3);
        (1..=3).for_each(|p| hello(&mut view, p));
        view.state = RunState::Running;
        let t = Duration::from_millis(10);
        view.apply(1, t, stats(&[(2, 5)]));
        view.apply(2, t, stats(&[(1, 7), (3, 1)]));
        // The 1-2 link comes back: its counters restart.
        view.apply(1, t, stats(&[(2, 2)]));
        let snap = view.snapshot();
        let e12 = snap.edges.iter().find(|e| (e.a, e.b) == (1, 2)).unwrap();
        assert_eq!((e12.messages, e12.bytes), (5 + 2 + 7, 1400));
        view.apply(2, t, stats(&[(1, 7)]));
        let snap = view.snapshot();
        let e23 = snap.edges.iter().find(|e| (e.a, e.b) == (2, 3)).unwrap();
        assert!(!e23.up, "2 no longer reports a link to 3");
    }

    #[test]
    fn done_when_every_peer_meets_every_target() {
        let mut view = View::new("t", 2);
        (1..=2).for_each(|p| hello(&mut view, p));
        view.state = RunState::Running;
        let target = |current| ToLab::Target {
            name: "ops".into(),
            current,
            goal: 3,
        };
        view.apply(1, Duration::from_millis(5), target(3));
        view.apply(2, Duration::from_millis(6), target(3));
        assert!(
            !view.all_done(),
            "targets met, but no peer waits for the end yet"
        );
        view.apply(1, Duration::from_millis(6), ToLab::Waiting);
        view.apply(2, Duration::from_millis(6), target(1));
        view.apply(2, Duration::from_millis(6), ToLab::Waiting);
        assert!(!view.all_done(), "peer 2 waits, its target unmet");
        view.apply(2, Duration::from_millis(7), target(2));
        assert!(!view.all_done());
        view.apply(2, Duration::from_millis(9), target(3));
        assert!(view.all_done());
        assert_eq!(view.converged(), Some(Duration::from_millis(9)));
        let snap = view.snapshot();
        assert_eq!((snap.targets_met, snap.targets, snap.peers_done), (2, 2, 2));
    }
}
