//! The traits the macros implement: what a replicated type and its ops are.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::id::{NodeId, OpId};

/// The wire type tag of a replicated type.
///
/// Implemented by `#[derive(Replicated)]` from `#[plexus(tag = "...")]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no Plexus type tag",
    label = "not a replicated type",
    note = "add `#[derive(Replicated)]` and `#[plexus(tag = \"...\")]` to the struct"
)]
pub trait TypeTag {
    /// The type tag, for example `demo.Frog`. It names the type on the wire:
    /// every peer must use the same tag for the same type.
    const TYPE_TAG: &'static str;
}

/// A replicated type: its ops, how they apply, how observers hear of them.
///
/// Implemented by `#[replicated]` on the type's `impl` block; the supertrait
/// [`TypeTag`] by `#[derive(Replicated)]`. The state must be `Clone` (the
/// replica keeps a stable snapshot to roll back to) and serde-able (late
/// joiners receive it).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a replicated type",
    note = "add `#[derive(Replicated)]` to the struct and `#[replicated]` to its impl block"
)]
pub trait Replicated:
    TypeTag + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The op enum: one variant per `#[shout]` method.
    type Op: Operation;

    /// The observer trait object (`dyn FrogObserver` for `Frog`).
    type Observer: ?Sized + Send + 'static;

    /// Run the op's method on `self`. Must be deterministic: every replica
    /// runs it and must reach the same state.
    fn apply(&mut self, op: &Self::Op);

    /// Tell `observer` that `op` was applied; `state` is the state right after.
    fn notify(observer: &mut Self::Observer, state: &Self, op: &Self::Op, delivery: &Delivery);

    /// Tell `observer` that `op` became stable: it can never be rolled back.
    fn notify_stable(
        observer: &mut Self::Observer,
        state: &Self,
        op: &Self::Op,
        delivery: &Delivery,
    );
}

/// An op of a replicated type: a call of one `#[shout]` method with its
/// arguments.
pub trait Operation: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The wire tags of every variant, in declaration order.
    const TAGS: &'static [&'static str];

    /// This op's wire tag (the method name unless `#[shout(tag = "...")]`
    /// pins another).
    fn tag(&self) -> &'static str;

    /// Whether this op was declared `#[shout(commutative)]`: it commutes with
    /// every op of the type, so it is applied on arrival and never forces a
    /// rollback.
    fn is_commutative(&self) -> bool;
}

/// What an observer is told with each op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The op's id.
    pub op: OpId,
    /// The node that shouted it.
    pub origin: NodeId,
    /// `true` in `on_stable` (the op can never be rolled back); `false` when
    /// the op is first applied.
    pub stable: bool,
    /// Whether this node shouted the op.
    pub local: bool,
}

impl Delivery {
    /// A delivery record; `local` is whether `op` was made by `me`.
    pub fn new(op: OpId, me: NodeId, stable: bool) -> Self {
        Self {
            op,
            origin: op.origin,
            stable,
            local: op.origin == me,
        }
    }
}
