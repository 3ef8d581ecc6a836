//! The repeater in the deterministic harness: every op reaches every
//! replica exactly once over chains, stars and cycles; concurrent shouts
//! converge; late joiners catch up. Seeds come from `PLEXUS_SEED`.

mod common;

use std::collections::BTreeSet;

use plexus::sim::{Harness, HarnessConfig};
use plexus::OpId;
use rand::Rng;

use common::{random_op, reference, Doc, DocOp};

fn harness(n: usize) -> Harness<Doc> {
    let config = HarnessConfig {
        duplicate: 0.05,
        ..HarnessConfig::default()
    };
    Harness::from_env(n, config)
}

fn chain(h: &mut Harness<Doc>) {
    for i in 1..h.len() {
        h.link(i - 1, i);
    }
}

fn star(h: &mut Harness<Doc>) {
    for i in 1..h.len() {
        h.link(0, i);
    }
}

fn cycle(h: &mut Harness<Doc>) {
    chain(h);
    let last = h.len() - 1;
    h.link(last, 0);
}

/// Create `doc` everywhere, shout `rounds` ops from random nodes with
/// deliveries interleaved, then check exactly-once and convergence.
fn shouts_reach_everyone_once(mut h: Harness<Doc>, rounds: usize) {
    for i in 0..h.len() {
        h.create(i, "doc", Doc::default());
    }
    let mut ops: Vec<(OpId, DocOp)> = Vec::new();
    for _ in 0..rounds {
        let n = h.len();
        let node = h.rng().random_range(0..n);
        let op = random_op(h.rng());
        ops.push((h.shout(node, "doc", op.clone()), op));
        // Let some traffic through, but not all: shouts stay concurrent.
        let steps = h.rng().random_range(0..4);
        h.drive_bounded(steps);
    }
    h.drive();
    assert_converged(&h, "doc", ops);
}

fn assert_converged(h: &Harness<Doc>, name: &str, ops: Vec<(OpId, DocOp)>) {
    let ids: BTreeSet<OpId> = ops.iter().map(|(id, _)| *id).collect();
    let expected = reference(ops);
    for i in 0..h.len() {
        let host = h.host_of(i, name).expect("every node holds the object");
        let host = host.lock();
        assert_eq!(
            host.replica.state(),
            &expected,
            "node {i} (seed {})",
            h.seed()
        );
        let fired: BTreeSet<OpId> = host.fired.iter().copied().collect();
        assert_eq!(
            host.fired.len(),
            fired.len(),
            "node {i}: an observer fired twice"
        );
        assert_eq!(
            fired,
            ids,
            "node {i}: every op fires once (seed {})",
            h.seed()
        );
    }
}

#[test]
fn chain_delivers_every_shout_once() {
    let mut h = harness(5);
    chain(&mut h);
    shouts_reach_everyone_once(h, 60);
}

#[test]
fn star_delivers_every_shout_once() {
    let mut h = harness(6);
    star(&mut h);
    shouts_reach_everyone_once(h, 60);
}

#[test]
fn cycle_delivers_every_shout_once() {
    let mut h = harness(3);
    cycle(&mut h);
    shouts_reach_everyone_once(h, 60);
}

#[test]
fn dense_graph_with_many_cycles_delivers_every_shout_once() {
    let mut h = harness(8);
    for a in 0..8 {
        for b in (a + 1)..8 {
            if (a + b) % 3 != 0 {
                h.link(a, b);
            }
        }
    }
    shouts_reach_everyone_once(h, 80);
}

/// Among peers linked to each other, each origin's ops take its own tree:
/// once every peer has shouted once, an op reaches every other peer over
/// its direct link (one latency, one message per peer), whoever shouts.
#[test]
fn a_full_mesh_gives_every_origin_a_one_hop_tree() {
    let latency = std::time::Duration::from_millis(10);
    let config = HarnessConfig {
        min_latency: latency,
        max_latency: latency,
        ..HarnessConfig::default()
    };
    let n = 4;
    let mut h: Harness<Doc> = Harness::from_env(n, config);
    for a in 0..n {
        for b in a + 1..n {
            h.link(a, b);
        }
    }
    for i in 0..n {
        h.create(i, "doc", Doc::default());
    }
    h.drive();
    let mut ops = Vec::new();
    // One shout per origin: the trees settle.
    for i in 0..n {
        let op = random_op(h.rng());
        ops.push((h.shout(i, "doc", op.clone()), op));
        h.drive();
    }
    let sent = |h: &Harness<Doc>| h.traffic().get("op").map_or(0, |t| t.messages);
    let before = sent(&h);
    let rounds = 5;
    for _ in 0..rounds {
        for i in 0..n {
            let op = random_op(h.rng());
            let id = h.shout(i, "doc", op.clone());
            ops.push((id, op));
            // Just over one link's latency: the far peers have it already.
            h.run_for(latency + std::time::Duration::from_micros(100));
            for j in (0..n).filter(|j| *j != i) {
                let host = h.host_of(j, "doc").expect("held");
                assert!(
                    host.lock().fired.contains(&id),
                    "node {j} lacks node {i}'s op after one hop (seed {})",
                    h.seed()
                );
            }
            h.drive();
        }
    }
    assert_eq!(
        sent(&h) - before,
        (rounds * n * (n - 1)) as u64,
        "one op message per peer, no relays (seed {})",
        h.seed()
    );
    assert_converged(&h, "doc", ops);
}

#[test]
fn relays_forward_ops_of_objects_they_do_not_hold() {
    // A - B - C, and only A and C hold the object: B relays it opaquely.
    let mut h = harness(3);
    chain(&mut h);
    h.create(0, "doc", Doc::default());
    h.create(2, "doc", Doc::default());
    let a = h.shout(0, "doc", DocOp::Push("a".into()));
    let c = h.shout(2, "doc", DocOp::Mark(7));
    h.drive();
    assert!(h.host_of(1, "doc").is_none());
    let expected = reference(vec![(a, DocOp::Push("a".into())), (c, DocOp::Mark(7))]);
    assert_eq!(h.state(0, "doc"), Some(expected.clone()));
    assert_eq!(h.state(2, "doc"), Some(expected));
}

#[test]
fn late_joiner_reaches_the_same_state() {
    let mut h = harness(4);
    chain(&mut h);
    for i in 0..3 {
        h.create(i, "doc", Doc::default());
    }
    let mut ops = Vec::new();
    for k in 0..100 {
        let node = k % 3;
        let op = random_op(h.rng());
        ops.push((h.shout(node, "doc", op.clone()), op));
        h.drive_bounded(2);
    }
    h.drive();
    // Node 3 (at the far end of the chain) joins late, while shouts go on.
    h.open(3, "doc");
    for k in 0..10 {
        let op = DocOp::Push(format!("during-{k}"));
        ops.push((h.shout(k % 3, "doc", op.clone()), op));
    }
    h.drive();
    assert!(!h.open_failed(3, "doc"));
    let joined = h.state(3, "doc").expect("the open succeeded");
    assert_eq!(joined, reference(ops.clone()), "seed {}", h.seed());
    // And it takes part from now on.
    let op = DocOp::Pop;
    ops.push((h.shout(3, "doc", op.clone()), op));
    h.drive();
    for i in 0..4 {
        assert_eq!(h.state(i, "doc"), Some(reference(ops.clone())), "node {i}");
    }
}

#[test]
fn opening_an_object_nobody_holds_fails_after_the_timeout() {
    let mut h = harness(3);
    chain(&mut h);
    h.create(0, "doc", Doc::default());
    h.open(2, "nothing");
    h.drive();
    assert!(h.open_failed(2, "nothing"));
    assert!(h.host_of(2, "nothing").is_none());
}

#[test]
fn opening_with_no_links_fails_after_the_timeout() {
    let mut h = harness(1);
    h.open(0, "doc");
    assert!(!h.open_failed(0, "doc"), "it waits for a link first");
    h.drive();
    assert!(h.open_failed(0, "doc"));
}

#[test]
fn an_open_made_before_any_link_is_answered_once_a_link_comes_up() {
    let mut h = harness(2);
    h.create(0, "doc", Doc::default());
    let id = h.shout(0, "doc", DocOp::Mark(3));
    h.open(1, "doc");
    h.link(0, 1);
    h.drive();
    assert!(!h.open_failed(1, "doc"));
    assert_eq!(
        h.state(1, "doc"),
        Some(reference(vec![(id, DocOp::Mark(3))]))
    );
}

#[test]
fn data_spreads_reach_who_they_name_once() {
    use plexus::{Spread, SpreadError};

    let mut h = harness(5);
    cycle(&mut h);
    h.link(0, 2);
    // Broadcast: everyone else, once, over a graph with cycles.
    h.send_data(0, Spread::Broadcast, b"all".to_vec())
        .expect("links");
    h.drive();
    for i in 1..5 {
        assert_eq!(h.received(i), &[(h.id(0), b"all".to_vec())], "node {i}");
    }
    assert!(
        h.received(0).is_empty(),
        "the sender does not hear its own broadcast"
    );
    // Direct: only the named peer, and only a linked one.
    h.send_data(0, Spread::Direct(h.id(1)), b"one".to_vec())
        .expect("linked");
    let far = h.id(3);
    assert_eq!(
        h.send_data(0, Spread::Direct(far), vec![]),
        Err(SpreadError::NotLinked(far))
    );
    h.drive();
    assert_eq!(h.received(1).len(), 2);
    assert!((2..5).all(|i| h.received(i).len() == 1));
    // Random(2): two of node 0's three links, not relayed further.
    h.send_data(0, Spread::Random(2), b"some".to_vec())
        .expect("links");
    h.drive();
    let got: usize = (1..5)
        .map(|i| h.received(i).iter().filter(|(_, p)| p == b"some").count())
        .sum();
    assert_eq!(got, 2);
}
