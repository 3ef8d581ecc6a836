//! Peer sampling (Jelasity et al.) beside the HyParView overlay, in the
//! deterministic harness at 100 nodes: every node's sample fills up with
//! live peers well beyond its neighbours, every node is in someone's
//! sample (no one forgotten, no hub), crashed nodes leave every sample
//! within a few cycles, and restarted ones come back into them.
//!
//! Seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use plexus::proto::node::RepeaterConfig;
use plexus::proto::sampling::SamplingConfig;
use plexus::sim::{Harness, HarnessConfig};
use rand::Rng;

use common::{overlay_repeater, settle, Doc};

const N: usize = 100;
const VIEW: usize = 12;
const PERIOD: Duration = Duration::from_secs(1);

fn config() -> HarnessConfig {
    HarnessConfig {
        repeater: RepeaterConfig {
            sampling: Some(SamplingConfig {
                period: PERIOD,
                ..SamplingConfig::balanced(VIEW)
            }),
            ..overlay_repeater()
        },
        ..HarnessConfig::default()
    }
}

/// How many live nodes' samples hold each node.
fn in_degrees(h: &Harness<Doc>) -> Vec<usize> {
    let mut degree = vec![0; h.len()];
    for i in (0..h.len()).filter(|i| h.is_alive(*i)) {
        for j in h.peer_sample(i) {
            degree[j] += 1;
        }
    }
    degree
}

/// Why the live nodes' samples are not sound, if they are not: a sample
/// short of the view size or holding itself, a dead peer, or a live node
/// in nobody's sample.
fn sample_problem(h: &Harness<Doc>) -> Option<String> {
    let live: Vec<usize> = (0..h.len()).filter(|i| h.is_alive(*i)).collect();
    for &i in &live {
        let sample = h.peer_sample(i);
        if sample.len() != VIEW {
            return Some(format!("node {i}'s sample holds {} peers", sample.len()));
        }
        if let Some(j) = sample.iter().find(|j| !h.is_alive(**j) || **j == i) {
            return Some(format!("node {i}'s sample holds node {j} (dead or itself)"));
        }
    }
    let degree = in_degrees(h);
    live.iter()
        .find(|i| degree[**i] == 0)
        .map(|i| format!("live node {i} is in nobody's sample"))
}

fn describe(h: &Harness<Doc>, what: &str) {
    let live: Vec<usize> = (0..h.len()).filter(|i| h.is_alive(*i)).collect();
    let degree = in_degrees(h);
    let degrees: Vec<usize> = live.iter().map(|i| degree[*i]).collect();
    let beyond: usize = live
        .iter()
        .map(|i| {
            let neighbors: BTreeSet<usize> = h.neighbors(*i).into_iter().collect();
            let sample = h.peer_sample(*i);
            sample.iter().filter(|j| !neighbors.contains(j)).count()
        })
        .sum();
    let t = h.traffic();
    let sampling = t.get("sampling").copied().unwrap_or_default();
    let cycles: u64 = live
        .iter()
        .map(|i| h.overlay_stats(*i).sampling_cycles)
        .sum();
    eprintln!(
        "{what}: in-degree min {} mean {:.1} max {}, {:.0}% of sampled peers are not \
         neighbours, {} sampling msgs {} B in {cycles} cycles",
        degrees.iter().min().unwrap_or(&0),
        degrees.iter().sum::<usize>() as f64 / degrees.len() as f64,
        degrees.iter().max().unwrap_or(&0),
        100.0 * beyond as f64 / (live.len() * VIEW) as f64,
        sampling.messages,
        sampling.bytes,
    );
}

#[test]
fn samples_fill_with_live_peers_beyond_the_neighbours_and_heal_after_crashes() {
    let mut h = Harness::from_env(N, config());
    for i in 1..N {
        let contact = h.rng().random_range(0..i);
        h.join(i, contact);
        h.run_for(Duration::from_millis(50));
    }
    let took = settle(
        &mut h,
        Duration::from_secs(60),
        "after the joins",
        sample_problem,
    );
    describe(
        &h,
        &format!("100 joins, samples sound {took:?} after the last"),
    );
    h.run_for(PERIOD * 20);
    assert_eq!(sample_problem(&h), None, "seed {}", h.seed());
    describe(&h, "20 cycles later");
    // The sample reaches past the links: most sampled peers are not
    // neighbours (5 of 99 peers are).
    let live: Vec<usize> = (0..N).collect();
    let beyond = live
        .iter()
        .map(|i| {
            let neighbors = h.neighbors(*i);
            let sample = h.peer_sample(*i);
            sample.iter().filter(|j| !neighbors.contains(j)).count()
        })
        .sum::<usize>();
    assert!(
        beyond * 2 > N * VIEW,
        "only {beyond} of {} sampled peers are not neighbours (seed {})",
        N * VIEW,
        h.seed()
    );
    // No hub: nobody is in more than a third of the samples.
    let max = in_degrees(&h).into_iter().max().unwrap_or(0);
    assert!(
        max <= N / 3,
        "a node is in {max} samples (seed {})",
        h.seed()
    );

    let mut crashed = BTreeSet::new();
    while crashed.len() < N / 10 {
        let i = h.rng().random_range(1..N);
        if crashed.insert(i) {
            h.crash(i);
        }
    }
    let took = settle(&mut h, PERIOD * 30, "after 10 crashes", sample_problem);
    describe(
        &h,
        &format!("10 crashed, dead peers gone from every sample in {took:?}"),
    );

    for &i in &crashed {
        h.restart(i);
    }
    let took = settle(&mut h, PERIOD * 30, "after the restarts", sample_problem);
    describe(&h, &format!("10 restarted, back in samples in {took:?}"));
}
