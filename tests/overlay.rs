//! The HyParView overlay driving a node's links, in the deterministic
//! harness at 100 nodes: every node joins through one contact; the active
//! views end small, symmetric and connected (no hub at the seed); links
//! nobody needs are closed; ops reach every replica over the overlay; and
//! after 10% of the nodes crash, the survivors repair their views and the
//! restarted nodes join again.
//!
//! Seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use plexus::proto::time::Time;
use plexus::sim::{Harness, HarnessConfig};
use plexus::{MembershipEvent, OpId};
use rand::Rng;

use common::{overlay_repeater, random_op, reference, settle, Doc, DocOp};

const N: usize = 100;
const ACTIVE: usize = 5;

fn config() -> HarnessConfig {
    HarnessConfig {
        repeater: overlay_repeater(),
        ..HarnessConfig::default()
    }
}

/// `n` nodes, each joining through a random earlier node (node 0 first),
/// then 30 s of shuffles.
fn overlay(n: usize) -> Harness<Doc> {
    let mut h = Harness::from_env(n, config());
    for i in 1..n {
        let contact = h.rng().random_range(0..i);
        h.join(i, contact);
        h.run_for(Duration::from_millis(50));
    }
    h.run_for(Duration::from_secs(30));
    h
}

/// Why the live nodes' active views are not a small, symmetric, connected
/// graph among live nodes, if they are not.
fn view_problem(h: &Harness<Doc>) -> Option<String> {
    let live: Vec<usize> = (0..h.len()).filter(|i| h.is_alive(*i)).collect();
    for &i in &live {
        let view = h.neighbors(i);
        if view.is_empty() {
            return Some(format!("node {i} has no neighbour"));
        }
        if view.len() > ACTIVE {
            return Some(format!("node {i} has {} neighbours", view.len()));
        }
        for &j in &view {
            if !h.is_alive(j) {
                return Some(format!("node {i} keeps dead node {j} as a neighbour"));
            }
            if !h.neighbors(j).contains(&i) {
                return Some(format!("{i} -> {j} is not symmetric"));
            }
            if !h.links_of(i).any(|l| l == j) {
                return Some(format!("node {i} has no link to its neighbour {j}"));
            }
        }
    }
    let mut seen = BTreeSet::from([live[0]]);
    let mut queue = VecDeque::from([live[0]]);
    while let Some(i) = queue.pop_front() {
        for j in h.neighbors(i) {
            if seen.insert(j) {
                queue.push_back(j);
            }
        }
    }
    (seen.len() != live.len())
        .then(|| format!("{} of {} live nodes reachable", seen.len(), live.len()))
}

fn describe(h: &Harness<Doc>, what: &str) {
    let live: Vec<usize> = (0..h.len()).filter(|i| h.is_alive(*i)).collect();
    let degrees: Vec<usize> = live.iter().map(|i| h.neighbors(*i).len()).collect();
    let links: usize = live.iter().map(|i| h.links_of(*i).count()).sum();
    let extra = links - degrees.iter().sum::<usize>();
    let t = h.traffic();
    let overlay = t.get("overlay").copied().unwrap_or_default();
    let (dials, closes) = live.iter().fold((0, 0), |(d, c), i| {
        let s = h.overlay_stats(*i);
        (d + s.dials, c + s.closes)
    });
    eprintln!(
        "{what}: degree min {} mean {:.2} max {} {extra} link ends outside the \
         active views, node 0's degree {}, overlay {} msgs {} B, {dials} dials, {closes} closes",
        degrees.iter().min().unwrap_or(&0),
        degrees.iter().sum::<usize>() as f64 / degrees.len() as f64,
        degrees.iter().max().unwrap_or(&0),
        h.neighbors(0).len(),
        overlay.messages,
        overlay.bytes,
    );
}

fn converged(h: &Harness<Doc>, ops: &[(OpId, DocOp)]) -> Option<String> {
    let expected =
        plexus::proto::message::encode_value(&reference(h.with_final_ids("doc", ops)), "state")
            .expect("states encode");
    for i in (0..h.len()).filter(|i| h.is_alive(*i)) {
        let Some(host) = h.host_of(i, "doc") else {
            return Some(format!("node {i} does not hold the doc"));
        };
        let bytes = plexus::proto::message::encode_value(host.lock().replica.state(), "state")
            .expect("states encode");
        if bytes != expected {
            return Some(format!("node {i}'s state differs from the reference"));
        }
    }
    None
}

/// Shout `count` ops from random live nodes, 10 ms apart, then run until
/// every live replica has them (at most 3 anti-entropy rounds after the
/// last shout).
fn shout_and_converge(h: &mut Harness<Doc>, count: usize, ops: &mut Vec<(OpId, DocOp)>) {
    for _ in 0..count {
        let live: Vec<usize> = (0..h.len()).filter(|i| h.is_alive(*i)).collect();
        let node = live[h.rng().random_range(0..live.len())];
        let op = random_op(h.rng());
        ops.push((h.shout(node, "doc", op.clone()), op));
        h.run_for(Duration::from_millis(10));
    }
    let mut rounds = 0;
    while let Some(why) = converged(h, ops) {
        assert!(rounds < 3, "not converged: {why} (seed {})", h.seed());
        h.run_for(Duration::from_secs(1));
        rounds += 1;
    }
}

#[test]
fn joins_through_one_contact_make_a_small_symmetric_connected_overlay() {
    let mut h = overlay(N);
    let took = settle(
        &mut h,
        Duration::from_secs(30),
        "after the joins",
        view_problem,
    );
    describe(&h, &format!("100 joins, sound {took:?} after 30 s"));
    // No hub: the first node, which everyone's walks started from, holds
    // no more neighbours than anyone.
    assert!(h.neighbors(0).len() <= ACTIVE);
    // Links outside the active views are transient (a shuffle's answer, a
    // refused request): each is closed within a second. A pair may link
    // again in that second (another shuffle): that is a new link, told
    // apart by when it opened.
    let stray = |h: &Harness<Doc>| -> BTreeSet<(usize, usize, Time)> {
        (0..N)
            .flat_map(|i| h.links_of(i).map(move |j| (i, j)).collect::<Vec<_>>())
            .filter(|(i, j)| i < j && !h.neighbors(*i).contains(j))
            .filter_map(|(i, j)| Some((i, j, h.linked_since(i, j)?)))
            .collect()
    };
    let before = stray(&h);
    h.run_for(Duration::from_secs(1));
    let after = stray(&h);
    let kept: Vec<_> = before.intersection(&after).collect();
    assert!(
        kept.is_empty(),
        "{} of {} stray links stayed open a second: {kept:?} (seed {})",
        kept.len(),
        before.len(),
        h.seed()
    );
    // Nobody was declared down: closing links on purpose is no failure.
    for i in 0..N {
        let downs = h
            .failure_events(i)
            .iter()
            .filter(|(_, e)| matches!(e, MembershipEvent::Down(_)))
            .count();
        assert_eq!(
            downs,
            0,
            "node {i} saw a live peer down (seed {})",
            h.seed()
        );
    }
}

/// [`overlay`] settled, the doc created on node 0 and opened everywhere.
fn overlay_with_doc() -> Harness<Doc> {
    let mut h = overlay(N);
    settle(
        &mut h,
        Duration::from_secs(30),
        "after the joins",
        view_problem,
    );
    h.create(0, "doc", Doc::default());
    for i in 1..N {
        h.open(i, "doc");
    }
    // Not `drive`: peer sampling's exchanges never stop.
    settle(&mut h, Duration::from_secs(10), "opening the doc", |h| {
        (0..N)
            .find(|i| h.host_of(*i, "doc").is_none())
            .map(|i| format!("node {i} has not opened the doc"))
    });
    h
}

#[test]
fn ops_reach_every_replica_over_the_overlay() {
    let mut h = overlay_with_doc();
    let mut ops = Vec::new();
    shout_and_converge(&mut h, 300, &mut ops);
    let t = h.traffic();
    let op = t.get("op").copied().unwrap_or_default();
    eprintln!(
        "300 shouts over the overlay: {} op messages ({:.2} per op per node)",
        op.messages,
        op.messages as f64 / (300 * N) as f64
    );
}

#[test]
fn crashed_neighbours_are_replaced_and_restarted_nodes_rejoin() {
    let mut h = overlay_with_doc();
    let mut ops = Vec::new();
    shout_and_converge(&mut h, 50, &mut ops);

    let mut crashed = BTreeSet::new();
    while crashed.len() < N / 10 {
        let i = h.rng().random_range(1..N);
        if crashed.insert(i) {
            h.crash(i);
        }
    }
    let took = settle(
        &mut h,
        Duration::from_secs(30),
        "after 10 crashes",
        view_problem,
    );
    describe(&h, &format!("10 crashed, views sound after {took:?}"));
    shout_and_converge(&mut h, 100, &mut ops);

    for &i in &crashed {
        h.restart(i);
    }
    let took = settle(
        &mut h,
        Duration::from_secs(30),
        "after the restarts",
        view_problem,
    );
    describe(&h, &format!("10 restarted, views sound after {took:?}"));
    shout_and_converge(&mut h, 100, &mut ops);
}

#[test]
fn a_node_whose_contact_is_down_joins_once_it_is_back() {
    let mut h: Harness<Doc> = Harness::from_env(12, config());
    for i in 1..11 {
        let contact = h.rng().random_range(0..i);
        h.join(i, contact);
        h.run_for(Duration::from_millis(50));
    }
    h.run_for(Duration::from_secs(5));
    // Node 11's only contact is down when it starts: it stays alone (a
    // driver keeps retrying its seeds)...
    h.crash_silently(10);
    h.join(11, 10);
    h.run_for(Duration::from_secs(5));
    assert!(h.neighbors(11).is_empty(), "{:?}", h.neighbors(11));
    // ...and joins once the contact is back.
    h.restart(10);
    let took = settle(
        &mut h,
        Duration::from_secs(10),
        "after the contact came back",
        |h| {
            (h.neighbors(11).is_empty() || h.overlay_parts() != 1).then(|| {
                format!(
                    "node 11 has {:?}; {} part(s)",
                    h.neighbors(11),
                    h.overlay_parts()
                )
            })
        },
    );
    eprintln!("joined {took:?} after the contact restarted");
}
