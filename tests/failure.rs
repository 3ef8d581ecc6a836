//! The failure detector (SWIM over the links) in the deterministic harness:
//! no suspicion and no `Down` of a live node in 60 s of 20% loss; a crashed node is declared down by
//! every node linked to it; it is seen back after a restart. Detection times
//! are printed. Seeds come from `PLEXUS_SEED`.
//!
//! The detector probes the peers a node is linked to, directly and through
//! other linked peers, so it assumes SWIM's model: members reach each other.
//! The cluster here is a full mesh of 30 nodes.

mod common;

use std::time::Duration;

use plexus::proto::time::Time;
use plexus::sim::{Harness, HarnessConfig};
use plexus::MembershipEvent;
use rand::Rng;

use common::Doc;

const N: usize = 30;

fn graph(config: HarnessConfig) -> Harness<Doc> {
    let mut h = Harness::from_env(N, config);
    for i in 0..N {
        for j in i + 1..N {
            h.link(i, j);
        }
    }
    h
}

fn downs(h: &Harness<Doc>) -> Vec<(usize, Time, plexus::NodeId)> {
    (0..N)
        .flat_map(|i| {
            h.failure_events(i)
                .iter()
                .filter_map(move |(t, e)| match e {
                    MembershipEvent::Down(p) => Some((i, *t, *p)),
                    _ => None,
                })
        })
        .collect()
}

#[test]
fn no_false_suspicion_in_sixty_seconds_of_twenty_percent_loss() {
    let mut h = graph(HarnessConfig {
        loss: 0.2,
        ..HarnessConfig::default()
    });
    h.run_for(Duration::from_secs(60));
    let suspected: usize = (0..N)
        .map(|i| {
            h.failure_events(i)
                .iter()
                .filter(|(_, e)| matches!(e, MembershipEvent::Suspected(_)))
                .count()
        })
        .sum();
    let probes = h.traffic().get("probe").copied().unwrap_or_default();
    eprintln!(
        "60 s of 20% loss, {N} nodes: {suspected} suspicion events, {} probe messages \
         delivered, {} lost",
        probes.messages, probes.dropped
    );
    assert_eq!(
        suspected,
        0,
        "a live node was suspected (seed {}): {:?}",
        h.seed(),
        (0..N)
            .flat_map(|i| h.failure_events(i).iter().map(move |e| (i, e)))
            .filter(|(_, (_, e))| matches!(e, MembershipEvent::Suspected(_)))
            .take(5)
            .collect::<Vec<_>>()
    );
    let false_downs = downs(&h);
    assert!(
        false_downs.is_empty(),
        "live nodes declared down: {false_downs:?} (seed {})",
        h.seed()
    );
}

#[test]
fn a_crashed_node_is_declared_down_by_its_peers_and_back_after_restart() {
    let mut h = graph(HarnessConfig::default());
    h.run_for(Duration::from_secs(5));
    let victim = h.rng().random_range(0..N);
    let id = h.id(victim);
    let peers: Vec<usize> = h.links_of(victim).collect();
    let crashed_at = h.now();
    h.crash(victim);
    h.run_for(Duration::from_secs(60));
    let mut times: Vec<Duration> = Vec::new();
    for &p in &peers {
        let down = h
            .failure_events(p)
            .iter()
            .find(|(_, e)| *e == MembershipEvent::Down(id));
        let (at, _) = down.unwrap_or_else(|| {
            panic!(
                "node {p}, linked to the crashed node {victim}, never declared it down (seed {})",
                h.seed()
            )
        });
        times.push(at.since(crashed_at));
    }
    times.sort();
    eprintln!(
        "crash detected by all {} linked peers: first {:?}, median {:?}, last {:?}",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    h.restart(victim);
    h.run_for(Duration::from_secs(30));
    for &p in &peers {
        let back = h
            .failure_events(p)
            .iter()
            .any(|(t, e)| *t > crashed_at && *e == MembershipEvent::Back(id));
        assert!(back, "node {p} saw {victim} back (seed {})", h.seed());
    }
    let others: Vec<_> = downs(&h).into_iter().filter(|(_, _, p)| *p != id).collect();
    assert!(
        others.is_empty(),
        "only the crashed node was down: {others:?}"
    );
}
