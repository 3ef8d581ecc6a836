//! The write-ahead gate: what a replica with a store shares before and
//! after its log commits.

use crate::proto::replica::Replica;
use crate::proto::stability::{Ack, AckTable};
use crate::proto::{NodeId, OpId};
use crate::sim::{Tally, TallyOp};

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn gated(me: u8) -> Replica<Tally> {
    let mut r = Replica::new(node(me), Tally::default());
    r.hold_until_durable();
    r
}

fn own_ack(r: &mut Replica<Tally>) -> Ack {
    r.refresh(|_, _, _| {});
    r.acks().get(&r.me()).expect("its own entry")
}

#[test]
fn own_ops_leave_only_once_committed() {
    let mut r = gated(1);
    for v in 0..3 {
        r.shout(TallyOp::Add(v), |_, _, _| {});
    }
    assert_eq!(r.state().count, 3, "applied here at once");
    assert_eq!(r.pending_durable(), 3);
    assert_eq!(r.tentative_ops().count(), 0, "nothing shared yet");
    assert_eq!(r.shared_version_vector().get(&node(1)), 0);
    assert!(r.export().tentative.is_empty());
    assert_eq!(r.export_all().tentative.len(), 3, "the store gets all");
    r.committed(2);
    assert_eq!(r.tentative_ops().count(), 2);
    assert_eq!(r.shared_version_vector().get(&node(1)), 2);
    r.committed(1);
    assert_eq!(r.tentative_ops().count(), 3);
    assert_eq!(r.pending_durable(), 0);
}

#[test]
fn the_ack_says_no_more_than_the_disk() {
    let mut r = gated(1);
    // A peer, so nothing folds on this replica's word alone.
    r.merge_acks(
        &AckTable::from_acks([(node(2), Ack::default())]),
        |_, _, _| {},
    );
    let a = r.shout(TallyOp::Add(1), |_, _, _| {});
    let ack = own_ack(&mut r);
    assert!(
        ack.clock < a.lamport,
        "the clock stays below the pending op"
    );
    assert_eq!(ack.seq, 0, "no own op is durable");
    r.committed(1);
    let ack = own_ack(&mut r);
    assert_eq!((ack.clock, ack.seq), (a.lamport, 1));
    // A late op from a peer, pending: the clock may not pass below it.
    let late = OpId {
        lamport: 1,
        origin: node(2),
        seq: 1,
    };
    r.apply(late, TallyOp::Add(5), |_, _, _| {})
        .expect("applied");
    let ack = own_ack(&mut r);
    assert_eq!(ack.clock, a.lamport, "merged acks never shrink");
    assert!(
        ack.complete < late.lamport,
        "complete excludes the pending op"
    );
}

#[test]
fn a_lone_replica_folds_only_what_is_durable() {
    let mut r = gated(1);
    r.shout(TallyOp::Add(1), |_, _, _| {});
    r.shout(TallyOp::Add(2), |_, _, _| {});
    r.refresh(|_, _, _| {});
    assert_eq!(r.frontier(), None, "nothing folds before the commit");
    r.committed(1);
    r.refresh(|_, _, _| {});
    assert_eq!(r.stable_state().count, 1, "the committed op folds");
    r.committed(1);
    r.refresh(|_, _, _| {});
    assert_eq!(r.stable_state().count, 2);
}

#[test]
fn a_pending_state_holds_the_ack_until_committed() {
    let mut r = gated(1);
    r.merge_acks(
        &AckTable::from_acks([(node(2), Ack::default())]),
        |_, _, _| {},
    );
    r.shout(TallyOp::Add(1), |_, _, _| {});
    r.committed(1);
    let before = own_ack(&mut r);
    r.note_snapshot();
    r.shout(TallyOp::Add(2), |_, _, _| {});
    r.committed(1);
    assert_eq!(own_ack(&mut r), before, "the state is not on disk yet");
    r.committed(1);
    let after = own_ack(&mut r);
    assert_eq!(after.seq, 2);
    assert!(after.clock > before.clock);
}

#[test]
fn without_a_store_nothing_is_held() {
    let mut r = Replica::new(node(1), Tally::default());
    r.shout(TallyOp::Add(1), |_, _, _| {});
    assert_eq!(r.tentative_ops().count(), 1);
    assert_eq!(r.pending_durable(), 0);
    assert!(!r.holds_until_durable());
}

#[test]
fn re_stamped_own_ops_are_held_until_a_state_is_committed() {
    let mut r = gated(1);
    for v in 0..3 {
        r.shout(TallyOp::Add(v), |_, _, _| {});
    }
    r.committed(3);
    assert_eq!(r.tentative_ops().count(), 3);
    // Ops from seq 2 on got new ids (as on re-admission after eviction).
    r.hold_own_from(2);
    assert_eq!(
        r.tentative_ops().count(),
        1,
        "seq 2 and 3 wait for the disk"
    );
    assert_eq!(r.shared_version_vector().get(&node(1)), 1);
    r.note_snapshot();
    r.committed(1);
    assert_eq!(r.tentative_ops().count(), 3, "the state covers them all");
}
