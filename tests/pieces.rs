//! State transfers in pieces, in the deterministic harness.
//!
//! An object's state of about 300 KB travels two ways: as the answer to a
//! late joiner's open, and as anti-entropy's snapshot to a member that
//! comes back after the others folded ops it lacks. Both go in pieces of
//! at most 48 KiB, so no message is over 64 KiB; with 5% loss a transfer
//! that loses a piece is sent again (the snapshot next round, the open when
//! the application opens again), and every replica ends identical.
//!
//! Seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::time::Duration;

use plexus::proto::node::RepeaterConfig;
use plexus::sim::{Harness, HarnessConfig};
use rand::Rng;

use common::{settle, Doc, DocOp};

/// Each pushed item's length: 100 of them make a state of about 300 KB.
const ITEM: usize = 3_000;

/// `n` nodes on a ring plus two random links each.
fn cluster(n: usize, config: HarnessConfig) -> Harness<Doc> {
    common::ring_cluster(n, 2, config)
}

fn big_push(h: &mut Harness<Doc>) -> DocOp {
    let rng = h.rng();
    DocOp::Push((0..ITEM).map(|_| rng.random_range('a'..='z')).collect())
}

/// Why the replicas of `nodes` do not all hold `items` items and one state.
fn divergence(h: &Harness<Doc>, nodes: &[usize], items: usize) -> Option<String> {
    let first = h.state(nodes[0], "doc")?;
    if first.items.len() != items {
        return Some(format!(
            "node {} holds {} items",
            nodes[0],
            first.items.len()
        ));
    }
    for &i in &nodes[1..] {
        match h.state(i, "doc") {
            None => return Some(format!("node {i} does not hold the doc")),
            Some(s) if s != first => {
                return Some(format!("node {i} differs from node {}", nodes[0]))
            }
            Some(_) => {}
        }
    }
    None
}

fn assert_small_messages(h: &Harness<Doc>) {
    let pieces = h.traffic().get("piece").map_or(0, |t| t.messages);
    println!(
        "largest message {} bytes; {pieces} pieces sent (seed {})",
        h.largest_frame(),
        h.seed()
    );
    assert!(pieces > 0, "the state went in pieces");
    assert!(
        h.largest_frame() <= 64 << 10,
        "a message of {} bytes (seed {})",
        h.largest_frame(),
        h.seed()
    );
}

#[test]
fn late_joiners_open_a_large_state_in_pieces_under_loss() {
    let n = 16;
    let mut h = cluster(n, HarnessConfig::default());
    h.create(0, "doc", Doc::default());
    for i in 1..n / 2 {
        h.open(i, "doc");
    }
    h.drive();
    for _ in 0..100 {
        let node = h.rng().random_range(0..n / 2);
        let op = big_push(&mut h);
        h.shout(node, "doc", op);
        h.run_for(Duration::from_millis(20));
    }
    h.set_loss(0.05);
    let late: Vec<usize> = (n / 2..n).collect();
    // Open like an application does: again after a failed attempt.
    for attempt in 0.. {
        let missing: Vec<usize> = late
            .iter()
            .copied()
            .filter(|&i| h.host_of(i, "doc").is_none())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(attempt < 10, "{missing:?} never opened (seed {})", h.seed());
        for &i in &missing {
            h.open(i, "doc");
        }
        h.run_for(Duration::from_secs(6));
    }
    h.set_loss(0.0);
    let everyone: Vec<usize> = (0..n).collect();
    settle(&mut h, Duration::from_secs(30), "late joiners", |h| {
        divergence(h, &everyone, 100)
    });
    let received: u64 = late.iter().map(|&i| h.transfer_stats(i).received).sum();
    assert!(
        received >= late.len() as u64,
        "each late joiner got a whole state"
    );
    assert_small_messages(&h);
}

#[test]
fn a_member_back_after_eviction_takes_a_large_snapshot_in_pieces() {
    let n = 12;
    let config = HarnessConfig {
        repeater: RepeaterConfig {
            evict_after: Some(Duration::from_secs(3)),
            ..RepeaterConfig::default()
        },
        ..HarnessConfig::default()
    };
    let mut h = cluster(n, config);
    h.create(0, "doc", Doc::default());
    for i in 1..n {
        h.open(i, "doc");
    }
    h.drive();
    let away = 5;
    h.crash(away);
    let others: Vec<usize> = (0..n).filter(|&i| i != away).collect();
    for _ in 0..100 {
        let node = others[h.rng().random_range(0..others.len())];
        let op = big_push(&mut h);
        h.shout(node, "doc", op);
        h.run_for(Duration::from_millis(20));
    }
    // Long enough to evict the member that is away and fold every op.
    h.run_for(Duration::from_secs(20));
    let folded = h
        .host_of(0, "doc")
        .map_or(0, |host| host.lock().replica.stable_state().items.len());
    assert_eq!(
        folded,
        100,
        "the others folded every op (seed {})",
        h.seed()
    );
    h.set_loss(0.05);
    h.restart(away);
    h.run_for(Duration::from_secs(10));
    h.set_loss(0.0);
    let everyone: Vec<usize> = (0..n).collect();
    settle(
        &mut h,
        Duration::from_secs(30),
        "back after eviction",
        |h| divergence(h, &everyone, 100),
    );
    assert!(
        h.transfer_stats(away).received >= 1,
        "the snapshot came in pieces"
    );
    assert_small_messages(&h);
}
