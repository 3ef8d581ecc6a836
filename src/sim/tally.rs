//! The replicated type the simulator's scenarios shout at: a count and a
//! sum of added numbers (its op commutes, as most gossip payloads do, so
//! the figures measure dissemination, not rollback).

use serde::{Deserialize, Serialize};

use crate::proto::{Delivery, Operation, Replicated, TypeTag};

/// A count of ops and the sum of their values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Ops applied.
    pub count: u64,
    /// The sum of their values.
    pub sum: u64,
}

/// [`Tally`]'s one op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TallyOp {
    /// Count one op of this value.
    Add(u32),
}

impl TypeTag for Tally {
    const TYPE_TAG: &'static str = "sim.Tally";
}

impl Operation for TallyOp {
    const TAGS: &'static [&'static str] = &["Add"];

    fn tag(&self) -> &'static str {
        "Add"
    }

    fn is_commutative(&self) -> bool {
        true
    }
}

/// Tally observers (the simulator binds none).
pub trait TallyObserver: Send {
    /// An op was applied.
    fn added(&mut self, value: u32, delivery: &Delivery);
}

impl Replicated for Tally {
    type Op = TallyOp;
    type Observer = dyn TallyObserver;

    fn apply(&mut self, op: &TallyOp) {
        let TallyOp::Add(v) = op;
        self.count = self.count.wrapping_add(1);
        self.sum = self.sum.wrapping_add(u64::from(*v));
    }

    fn notify(observer: &mut Self::Observer, _: &Tally, op: &TallyOp, delivery: &Delivery) {
        let TallyOp::Add(v) = op;
        observer.added(*v, delivery);
    }

    fn notify_stable(_: &mut Self::Observer, _: &Tally, _: &TallyOp, _: &Delivery) {}
}
