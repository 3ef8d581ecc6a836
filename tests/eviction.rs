//! Eviction of members gone for good, and restart epochs.
//!
//! A member that stays gone holds every object's stable frontier back.
//! After the eviction period its peers evict it: the frontier moves on,
//! its later ops are void everywhere, and when it comes back it takes a new
//! restart epoch and re-stamps its own void ops, so nothing it acknowledged
//! is lost and every replica ends identical.
//!
//! Harness seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::time::Duration;

use plexus::proto::replica::{ApplyError, Replica};
use plexus::proto::stability::epoch_origin;
use plexus::sim::{Harness, HarnessConfig};
use plexus::{NodeId, OpId};

use common::{Doc, DocOp};

fn id(n: u64) -> NodeId {
    NodeId::from_u64(n)
}

/// Deliver every op each replica holds to every other, then exchange acks
/// both ways until nothing changes (a few anti-entropy rounds).
fn sync(replicas: &mut [&mut Replica<Doc>]) {
    for _ in 0..4 {
        let ops: Vec<Vec<(OpId, DocOp)>> = replicas
            .iter()
            .map(|r| r.tentative_ops().map(|(i, o)| (i, o.clone())).collect())
            .collect();
        for (i, r) in replicas.iter_mut().enumerate() {
            for (j, theirs) in ops.iter().enumerate() {
                if i != j {
                    for (op_id, op) in theirs {
                        let _ = r.apply(*op_id, op.clone(), |_, _, _| {});
                    }
                }
            }
        }
        // A replica lacking ops another already folded takes its snapshot.
        let states: Vec<_> = replicas.iter().map(|r| r.export()).collect();
        for (i, r) in replicas.iter_mut().enumerate() {
            for (j, state) in states.iter().enumerate() {
                if i != j
                    && state
                        .folded
                        .0
                        .iter()
                        .any(|(o, n)| r.version_vector().get(o) < *n)
                {
                    r.rebase(state.clone());
                }
            }
        }
        for r in replicas.iter_mut() {
            r.refresh(|_, _, _| {});
        }
        let tables: Vec<_> = replicas.iter().map(|r| r.acks().clone()).collect();
        for (i, r) in replicas.iter_mut().enumerate() {
            for (j, t) in tables.iter().enumerate() {
                if i != j {
                    r.merge_acks(t, |_, _, _| {});
                }
            }
        }
    }
}

#[test]
fn an_evicted_member_stops_holding_the_frontier_and_comes_back_in_a_new_epoch() {
    let mut a = Replica::new(id(1), Doc::default());
    // B and C are members: they wrote (here, admitted up front).
    a.admit(id(2));
    a.admit(id(3));
    let mut b = Replica::from_state(id(2), a.export());
    let mut c = Replica::from_state(id(3), a.export());
    assert!(b.is_admitted() && c.is_admitted());
    let c1 = c.shout(DocOp::Push("c1".into()), |_, _, _| {});
    a.apply(c1, DocOp::Push("c1".into()), |_, _, _| {})
        .expect("applies");
    b.apply(c1, DocOp::Push("c1".into()), |_, _, _| {})
        .expect("applies");
    sync(&mut [&mut a, &mut b, &mut c]);
    // C goes away with an op nobody got.
    let c2 = c.shout(DocOp::Push("c2".into()), |_, _, _| {});
    a.shout(DocOp::Add(5), |_, _, _| {});
    b.shout(DocOp::Mark(7), |_, _, _| {});
    sync(&mut [&mut a, &mut b]);
    assert!(a.tentative_len() >= 2, "C holds the frontier back");

    assert_eq!(a.evict_gone(|n| n == id(3)), 1);
    sync(&mut [&mut a, &mut b]);
    assert_eq!(a.tentative_len(), 0, "without C, everything folds");
    assert_eq!(b.tentative_len(), 0);
    assert_eq!(a.state(), b.state());
    let late = b.apply(c2, DocOp::Push("c2".into()), |_, _, _| {});
    assert!(
        matches!(late, Err(ApplyError::Evicted { cut: 1, .. })),
        "C's op after the cut is void: {late:?}"
    );

    // C comes back and learns it was evicted: its op after the cut becomes
    // provisional under its next epoch; so does one it makes now.
    c.merge_acks(a.acks(), |_, _, _| {});
    assert_eq!(c.me(), epoch_origin(id(3), 1));
    assert!(!c.is_admitted());
    c.shout(DocOp::Push("c3".into()), |_, _, _| {});
    assert!(c.tentative_ops().next().is_none(), "provisional ops stay");
    assert!(c.state().items.iter().any(|i| i.starts_with("c2")));
    // C asks a member to admit its new origin; A does.
    assert!(c.wants_admission());
    let (origin, clock) = a.admit(id(3)).expect("A is a member");
    assert_eq!(origin, c.me());
    assert!(c.admitted_as(origin, clock));
    assert!(c.is_admitted());
    let restamped = c.take_restamped();
    assert_eq!(restamped.len(), 2, "c2 and c3, re-stamped");
    assert!(restamped
        .iter()
        .all(|r| r.origin == c.me() && r.lamport > c2.lamport));
    sync(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(a.state(), b.state());
    assert_eq!(a.state(), c.state());
    let items = &a.state().items;
    for name in ["c1", "c2", "c3"] {
        let n = items
            .iter()
            .filter(|i| i.split('/').next() == Some(name))
            .count();
        assert_eq!(n, 1, "{name} applied once: {items:?}");
    }
    assert_eq!(a.state().total, 5);
    assert_eq!(a.tentative_len(), 0, "stability resumed with C's new epoch");
}

/// Every live replica holds the same bytes.
fn identical(h: &Harness<Doc>) -> Result<Vec<u8>, String> {
    let mut first: Option<(usize, Vec<u8>)> = None;
    for i in (0..h.len()).filter(|i| h.is_alive(*i)) {
        let bytes = h
            .snapshot_bytes(i, "doc")
            .ok_or(format!("node {i} lacks it"))?;
        match &first {
            None => first = Some((i, bytes)),
            Some((j, b)) if *b != bytes => return Err(format!("nodes {j} and {i} differ")),
            Some(_) => {}
        }
    }
    first.map(|(_, b)| b).ok_or_else(|| "no live node".into())
}

fn config(evict_after: Duration) -> HarnessConfig {
    let mut config = HarnessConfig::default();
    config.repeater.evict_after = Some(evict_after);
    config
}

/// `n` nodes, each linked to the next and to two random others; the doc
/// created on node 0, opened everywhere.
fn cluster(n: usize, config: HarnessConfig) -> Harness<Doc> {
    let mut h = common::ring_cluster(n, 2, config);
    h.create(0, "doc", Doc::default());
    for i in 1..n {
        h.open(i, "doc");
    }
    h.drive();
    h
}

/// Node `node` writes (an op that changes nothing) and waits until a
/// member admitted it: only members hold the frontier back and can be
/// evicted.
fn make_member(h: &mut Harness<Doc>, node: usize) {
    h.shout(node, "doc", DocOp::Add(0));
    for _ in 0..50 {
        let host = h.host_of(node, "doc").expect("holds the doc");
        let admitted = host.lock().replica.is_admitted();
        if admitted {
            h.run_for(Duration::from_secs(2));
            return;
        }
        h.run_for(Duration::from_millis(100));
    }
    panic!("node {node} not admitted within 5 s (seed {})", h.seed());
}

fn tentative(h: &Harness<Doc>, node: usize) -> usize {
    let host = h.host_of(node, "doc").expect("holds the doc");
    let n = host.lock().replica.tentative_len();
    n
}

#[test]
fn a_node_down_past_the_period_is_evicted_and_stability_resumes() {
    let n = 20;
    let mut h = cluster(n, config(Duration::from_secs(10)));
    make_member(&mut h, 7);
    h.crash(7);
    let mut total = 0u64;
    for k in 0..40u32 {
        let node = [0, 3, 11, 19][k as usize % 4];
        h.shout(node, "doc", DocOp::Add(k));
        total += u64::from(k);
        h.run_for(Duration::from_millis(100));
    }
    h.run_for(Duration::from_secs(3));
    assert!(
        tentative(&h, 0) > 0,
        "before the period, the crashed node holds the frontier back (seed {})",
        h.seed()
    );
    h.run_for(Duration::from_secs(10));
    let mut rounds = 0;
    while (0..n)
        .filter(|i| h.is_alive(*i))
        .any(|i| tentative(&h, i) > 0)
    {
        assert!(rounds < 3, "stability did not resume (seed {})", h.seed());
        h.run_for(Duration::from_secs(1));
        rounds += 1;
    }
    identical(&h).unwrap_or_else(|e| panic!("{e} (seed {})", h.seed()));
    assert_eq!(h.state(0, "doc").expect("holds it").total, total);
    eprintln!("evicted, every log folded, {rounds} rounds after the period");
}

#[test]
fn a_node_cut_off_past_the_period_comes_back_in_a_new_epoch_and_loses_nothing() {
    let n = 12;
    let mut h = cluster(n, config(Duration::from_secs(10)));
    let cut_off = 5;
    make_member(&mut h, cut_off);
    let rest: Vec<usize> = (0..n).filter(|i| *i != cut_off).collect();
    h.partition(&[vec![cut_off], rest.clone()]);
    let mut names = Vec::new();
    for k in 0..30 {
        let node = if k % 3 == 0 {
            cut_off
        } else {
            rest[k % rest.len()]
        };
        let name = format!("p{k}");
        h.shout(node, "doc", DocOp::Push(name.clone()));
        names.push(name);
        h.run_for(Duration::from_millis(500));
    }
    // Past the period, the rest evict the cut-off node: SWIM must declare
    // it down first, and Lifeguard stretches that under doubt, so wait for
    // the condition (bounded) rather than a fixed time.
    let origin = h.id(cut_off);
    let mut waited = 0;
    while !rest.iter().all(|i| {
        let host = h.host_of(*i, "doc").expect("holds the doc");
        let evicted = host.lock().replica.acks().eviction(&origin).is_some();
        evicted
    }) {
        assert!(
            waited < 90,
            "the rest did not evict the cut-off node within {waited} s (seed {})",
            h.seed()
        );
        h.run_for(Duration::from_secs(1));
        waited += 1;
    }
    eprintln!("every other node evicted the cut-off node {waited} s after the shouts");
    h.heal();
    let mut rounds = 0;
    loop {
        let settled = identical(&h).is_ok()
            && (0..n).all(|i| tentative(&h, i) == 0)
            && h.state(0, "doc")
                .is_some_and(|d| d.items.len() == names.len());
        if settled {
            break;
        }
        assert!(
            rounds < 8,
            "not settled {rounds} rounds after the heal: {:?} (seed {})",
            identical(&h).err(),
            h.seed()
        );
        h.run_for(Duration::from_secs(1));
        rounds += 1;
    }
    let host = h.host_of(cut_off, "doc").expect("holds it");
    let me = host.lock().replica.me();
    assert_eq!(
        me,
        plexus::proto::stability::epoch_origin(h.id(cut_off), 1),
        "the cut-off node moved to its next epoch (seed {})",
        h.seed()
    );
    let items = h.state(0, "doc").expect("holds it").items;
    for name in &names {
        let count = items
            .iter()
            .filter(|i| i.split('/').next() == Some(name))
            .count();
        assert_eq!(count, 1, "{name} applied once (seed {})", h.seed());
    }
    // Nobody but the cut-off node was evicted: not by the rest, which all
    // stayed linked, and not by the cut-off node itself, which heard from
    // no one while away and learned on its return that it was the one gone.
    for i in 0..n {
        let host = h.host_of(i, "doc").expect("holds it");
        let evicted: Vec<NodeId> = host
            .lock()
            .replica
            .acks()
            .evictions()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(
            evicted,
            vec![origin],
            "node {i}'s evictions (seed {})",
            h.seed()
        );
    }
    eprintln!("healed, re-stamped, settled in {rounds} rounds");
}
