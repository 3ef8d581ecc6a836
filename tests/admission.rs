//! Membership of a replica set by writing: only the creator and the nodes
//! that made ops are in an object's acknowledgement table. A reader does
//! not hold the stable frontier back; its first op asks a member to admit
//! it and is re-stamped above the member's clock.
//!
//! Harness seeds come from `PLEXUS_SEED` (printed), so a failure replays.

mod common;

use std::time::Duration;

use plexus::proto::replica::Replica;
use plexus::sim::{Harness, HarnessConfig};
use plexus::{MembershipEvent, NodeId, OpId};

use common::{Doc, DocOp};

fn id(n: u64) -> NodeId {
    NodeId::from_u64(n)
}

fn push(r: &mut Replica<Doc>, what: &str) -> OpId {
    r.shout(DocOp::Push(what.into()), |_, _, _| {})
}

/// Give `to` every op `from` may share, then `from`'s table; returns how
/// many ops `to` folded.
fn send(from: &Replica<Doc>, to: &mut Replica<Doc>) -> usize {
    let ops: Vec<(OpId, DocOp)> = from.tentative_ops().map(|(i, o)| (i, o.clone())).collect();
    for (op_id, op) in ops {
        let _ = to.apply(op_id, op, |_, _, _| {});
    }
    to.merge_acks(from.acks(), |_, _, _| {})
}

#[test]
fn a_reader_is_not_in_the_table_and_does_not_hold_the_frontier_back() {
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    assert!(a.is_admitted(), "the creator is a member");
    assert!(!b.is_admitted(), "a joiner that never wrote is not");
    assert!(!b.wants_admission());
    for k in 0..5 {
        push(&mut a, &format!("a{k}"));
    }
    a.refresh(|_, _, _| {});
    assert_eq!(a.tentative_len(), 0, "the only member folds alone");
    assert!(b.refresh(|_, _, _| {}) == 0);
    // B lacks the ops A folded: it takes the snapshot, as anti-entropy does.
    assert!(b.rebase(a.export()));
    send(&a, &mut b);
    b.refresh(|_, _, _| {});
    assert_eq!(b.acks().len(), 1, "B never entered the table");
    assert_eq!(a.state(), b.state());

    // Ops B gets but A did not fold yet fold at B only once A holds them.
    let late = push(&mut a, "late");
    b.apply(late, DocOp::Push("late".into()), |_, _, _| {})
        .expect("applies");
    b.refresh(|_, _, _| {});
    assert_eq!(b.tentative_len(), 1, "A's table does not cover it yet");
    a.refresh(|_, _, _| {});
    send(&a, &mut b);
    assert_eq!(b.tentative_len(), 0);
    assert_eq!(a.stable_state(), b.stable_state());
}

#[test]
fn a_readers_first_op_is_admitted_by_a_member_and_stamped_above_its_clock() {
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    let mut c = Replica::from_state(id(3), a.export());
    // A writes and folds far ahead while B hears nothing.
    for k in 0..20 {
        push(&mut a, &format!("a{k}"));
    }
    a.refresh(|_, _, _| {});
    send(&a, &mut c);
    let folded = a.frontier().expect("A folded").lamport;
    assert!(folded >= 20);

    // B, far behind, writes: the op stays provisional.
    let b1 = push(&mut b, "b1");
    assert!(b1.lamport < folded, "B's own clock is behind A's frontier");
    assert!(b.wants_admission());
    assert!(b.tentative_ops().next().is_none(), "nothing leaves B yet");
    // A reader cannot admit it: its clock bounds no frontier.
    assert_eq!(c.admit(id(2)), None);
    // A member can.
    let (origin, clock) = a.admit(id(2)).expect("A is a member");
    assert_eq!(origin, id(2));
    assert!(clock >= folded);
    assert!(b.admitted_as(origin, clock));
    assert!(!b.wants_admission());
    let restamped = b.take_restamped();
    assert_eq!(restamped.len(), 1);
    assert!(restamped[0].lamport > clock, "re-stamped above A's clock");
    // A frontier that passed while A did not know B is behind the op: A
    // takes it.
    b.rebase(a.export());
    send(&b, &mut a);
    assert!(a.state().items.iter().any(|i| i.starts_with("b1")));
    // B's entry (complete 0) holds A back until B reports.
    let more = push(&mut a, "a-more");
    a.refresh(|_, _, _| {});
    assert!(a.frontier().is_some_and(|f| f < more));
    send(&a, &mut b);
    b.refresh(|_, _, _| {});
    send(&b, &mut a);
    send(&a, &mut b);
    assert_eq!(a.tentative_len(), 0, "B reported: everything folds");
    assert_eq!(a.state(), b.state());
    assert_eq!(a.acks().len(), 2, "A and B, the writers; not C");
}

#[test]
fn an_admission_keeps_an_entry_already_there() {
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    push(&mut b, "b1");
    let (origin, clock) = a.admit(id(2)).expect("A is a member");
    assert!(b.admitted_as(origin, clock));
    for k in 0..10 {
        push(&mut a, &format!("a{k}"));
    }
    // B's answer was lost and it asks again: the entry, and the clock it
    // names, stay as they were (a raised clock would claim B's ops made
    // in between).
    assert_eq!(a.admit(id(2)), Some((origin, clock)));
    assert!(!b.admitted_as(origin, clock + 50), "already admitted");
}

#[test]
fn only_members_evict() {
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    let mut c = Replica::from_state(id(3), a.export());
    push(&mut c, "c1");
    let (origin, clock) = a.admit(id(3)).expect("A is a member");
    c.admitted_as(origin, clock);
    send(&a, &mut b);
    assert_eq!(b.evict_gone(|n| n == id(3)), 0, "B, a reader, does not");
    assert_eq!(a.evict_gone(|n| n == id(3)), 1, "A does");
}

#[test]
fn a_new_member_evicts_only_once_it_holds_what_was_folded_before_it() {
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    for k in 0..20 {
        push(&mut a, &format!("a{k}"));
    }
    a.refresh(|_, _, _| {});
    assert!(a.may_evict(), "the creator holds everything it folded");
    // B, behind A's fold, writes and is admitted above A's clock.
    push(&mut b, "b1");
    let (origin, clock) = a.admit(id(2)).expect("A is a member");
    assert!(b.admitted_as(origin, clock));
    b.refresh(|_, _, _| {});
    assert!(
        !b.may_evict(),
        "B lacks ops A folded before B was a member: its cuts could void them"
    );
    assert_eq!(b.evict_gone(|n| n == id(1)), 0);
    // Caught up (here from A's snapshot), it may.
    assert!(b.rebase(a.export()));
    send(&a, &mut b);
    b.refresh(|_, _, _| {});
    assert!(b.may_evict());
}

fn harness_config() -> HarnessConfig {
    let mut config = HarnessConfig::default();
    config.repeater.evict_after = None;
    config
}

/// `n` nodes, each linked to the next and to two random others; the doc
/// created on node 0, opened everywhere.
fn cluster(n: usize) -> Harness<Doc> {
    let mut h = common::ring_cluster(n, 2, harness_config());
    h.create(0, "doc", Doc::default());
    for i in 1..n {
        h.open(i, "doc");
    }
    h.drive();
    h
}

fn replica_stat<R>(h: &Harness<Doc>, node: usize, f: impl Fn(&Replica<Doc>) -> R) -> R {
    let host = h.host_of(node, "doc").expect("holds the doc");
    let r = f(&host.lock().replica);
    r
}

#[test]
fn writers_are_admitted_over_the_network_and_a_crashed_reader_holds_nothing_back() {
    let n = 30;
    let mut h = cluster(n);
    let writers = [3, 11, 19, 27];
    // A reader goes down for good; no eviction is configured.
    h.crash(7);
    let mut total = 0u64;
    for k in 0..40u32 {
        h.shout(writers[k as usize % 4], "doc", DocOp::Add(k));
        total += u64::from(k);
        h.run_for(Duration::from_millis(50));
    }
    h.run_for(Duration::from_secs(6));
    for i in (0..n).filter(|i| h.is_alive(*i)) {
        let (members, tentative, sum, admitted) = replica_stat(&h, i, |r| {
            (
                r.acks().len(),
                r.tentative_len(),
                r.state().total,
                r.is_admitted(),
            )
        });
        assert_eq!(sum, total, "node {i} has every op (seed {})", h.seed());
        assert_eq!(
            members,
            1 + writers.len(),
            "node {i}: the creator and the writers only (seed {})",
            h.seed()
        );
        assert_eq!(
            tentative,
            0,
            "node {i}: everything folded with node 7 down (seed {})",
            h.seed()
        );
        assert_eq!(admitted, i == 0 || writers.contains(&i));
    }
}

#[test]
fn a_reader_cut_off_while_the_others_fold_writes_after_the_heal() {
    let n = 12;
    let mut h = cluster(n);
    // Node 5 is cut off; the rest write and fold far ahead.
    let rest: Vec<usize> = (0..n).filter(|i| *i != 5).collect();
    h.partition(&[vec![5], rest]);
    for k in 0..30u32 {
        h.shout(0, "doc", DocOp::Push(format!("a{k}")));
        h.run_for(Duration::from_millis(20));
    }
    h.run_for(Duration::from_secs(4));
    assert_eq!(replica_stat(&h, 0, Replica::tentative_len), 0);
    // Node 5 writes while cut off: provisional, it cannot reach a member.
    h.shout(5, "doc", DocOp::Push("cut-off".into()));
    h.run_for(Duration::from_secs(2));
    assert!(replica_stat(&h, 5, Replica::wants_admission));
    h.heal();
    h.run_for(Duration::from_secs(15));
    let state = h.state(0, "doc").expect("node 0 holds it");
    assert_eq!(state.items.len(), 31, "seed {}", h.seed());
    for i in 0..n {
        assert_eq!(
            h.state(i, "doc").as_ref(),
            Some(&state),
            "node {i} (seed {})",
            h.seed()
        );
        assert_eq!(replica_stat(&h, i, Replica::tentative_len), 0, "node {i}");
    }
    assert!(replica_stat(&h, 5, Replica::is_admitted));
}

#[test]
fn a_writer_seen_gone_only_by_readers_is_evicted_on_their_notice() {
    // A line 0 - 1 - 2 - 3 - 4: node 4's only peer, node 3, is a reader.
    let n = 5;
    let mut config = harness_config();
    config.repeater.evict_after = Some(Duration::from_secs(10));
    let mut h: Harness<Doc> = Harness::from_env(n, config);
    for i in 0..n - 1 {
        h.link(i, i + 1);
    }
    h.create(0, "doc", Doc::default());
    for i in 1..n {
        h.open(i, "doc");
    }
    h.drive();
    h.shout(4, "doc", DocOp::Add(1));
    h.run_for(Duration::from_secs(3));
    assert!(replica_stat(&h, 4, Replica::is_admitted));
    let gone = h.id(4);
    h.crash(4);
    h.shout(0, "doc", DocOp::Add(2));
    h.run_for(Duration::from_secs(5));
    assert!(
        replica_stat(&h, 0, Replica::tentative_len) > 0,
        "node 4 holds the frontier back (seed {})",
        h.seed()
    );
    let mut waited = 0;
    while replica_stat(&h, 0, |r| r.acks().eviction(&gone).is_none()) {
        assert!(
            waited < 60,
            "node 0 never evicted node 4 (seed {})",
            h.seed()
        );
        h.run_for(Duration::from_secs(1));
        waited += 1;
    }
    h.run_for(Duration::from_secs(3));
    for i in 0..n - 1 {
        assert_eq!(replica_stat(&h, i, Replica::tentative_len), 0, "node {i}");
        assert!(!replica_stat(&h, i, Replica::is_admitted) || i == 0);
        assert_eq!(replica_stat(&h, i, |r| r.state().total), 3, "node {i}");
    }
}

#[test]
fn a_writer_whose_linked_members_vanished_asks_past_them() {
    // 0 - 1 - 2 - 3 - 0: node 2's peers are node 1, a member that vanishes
    // without its links going down, and node 3, a reader.
    let n = 4;
    let mut h: Harness<Doc> = Harness::from_env(n, harness_config());
    for i in 0..n {
        h.link(i, (i + 1) % n);
    }
    h.create(0, "doc", Doc::default());
    for i in 1..n {
        h.open(i, "doc");
    }
    h.drive();
    h.shout(1, "doc", DocOp::Add(1));
    h.run_for(Duration::from_secs(3));
    assert!(replica_stat(&h, 1, Replica::is_admitted));
    let gone = h.id(1);
    h.crash_silently(1);
    let mut waited = 0;
    while !h
        .failure_events(2)
        .iter()
        .any(|(_, e)| *e == MembershipEvent::Down(gone))
    {
        assert!(
            waited < 60,
            "node 2 never held node 1 down (seed {})",
            h.seed()
        );
        h.run_for(Duration::from_secs(1));
        waited += 1;
    }
    h.shout(2, "doc", DocOp::Add(2));
    let mut waited = 0;
    while !replica_stat(&h, 2, Replica::is_admitted) {
        assert!(
            waited < 30,
            "node 2 asked only its dead member, never the live one (seed {})",
            h.seed()
        );
        h.run_for(Duration::from_secs(1));
        waited += 1;
    }
    h.run_for(Duration::from_secs(3));
    for i in [0, 2, 3] {
        assert_eq!(replica_stat(&h, i, |r| r.state().total), 3, "node {i}");
    }
}

/// A creator alone in the table folds its ops at once, before its readers
/// have them. A reader whose digest lags only by the ops still in flight
/// to it (its count of them grew since its previous digest, or this is its
/// first digest) must get those ops, not a snapshot: a snapshot stands in
/// for the ops it folded, so the reader's observers would never see them.
/// Only once its count stops growing does it get one.
#[test]
fn a_reader_lagging_by_ops_in_flight_gets_no_snapshot() {
    use plexus::proto::host::{digest_of, repair_of, Repair};
    use plexus::proto::version::VersionVector;
    use plexus::ObjectKey;

    let key = ObjectKey::new("test.Doc", "doc");
    let mut a = Replica::new(id(1), Doc::default());
    let mut b = Replica::from_state(id(2), a.export());
    let ops: Vec<(OpId, DocOp)> = (0..10)
        .map(|i| {
            let op = DocOp::Push(format!("op {i}"));
            (a.shout(op.clone(), |_, _, _| {}), op)
        })
        .collect();
    a.refresh(|_, _, _| {});
    assert_eq!(
        a.folded_upto(&id(1)),
        10,
        "the creator alone folds its own ops"
    );
    for (op_id, op) in ops.iter().take(4) {
        b.apply(*op_id, op.clone(), |_, _, _| {}).expect("applies");
    }
    let held = digest_of(&key, &b).held;
    let repair =
        |upto: Option<&VersionVector>| repair_of(&key, &a, &held, &[], upto, None, 1 << 16);
    // A first digest: it is not known yet whether a's ops still arrive.
    assert!(
        matches!(repair(None), Ok(Repair::Ops(_))),
        "a snapshot on a first digest"
    );
    // Still arriving: the previous digest showed fewer of a's ops.
    let mut arriving = VersionVector::default();
    arriving.0.insert(id(1), held.get(&id(1)));
    assert!(
        matches!(repair(Some(&arriving)), Ok(Repair::Ops(_))),
        "a snapshot for ops in flight"
    );
    // Stopped: the previous digest showed as many; now the snapshot.
    assert!(matches!(
        repair(Some(&VersionVector::default())),
        Ok(Repair::Snapshot(_))
    ));
}
