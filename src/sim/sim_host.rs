//! The harness's hosts: a typed replica behind each object a node holds,
//! with a record of what its observer was told.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::proto::dissemination::SeqRun;
use crate::proto::host::{
    deliver_frame, digest_hash_of, digest_of, export_frame, ops_in, rebase_onto, repair_of,
    restamped_frames, Host, HostError, Repair,
};
use crate::proto::message::{ObjectDigest, OpFrame, Span, StateFrame};
use crate::proto::replica::{Applied, Replica};
use crate::proto::stability::AckTable;
use crate::proto::version::VersionVector;
use crate::proto::{NodeId, ObjectKey, OpId, Replicated};

/// A replica hosted by a harness node, with a record of what its observer
/// was told.
#[derive(Debug)]
pub struct SimHost<T: Replicated> {
    /// The replica.
    pub replica: Replica<T>,
    /// Every op the observer heard of, in the order it heard.
    pub fired: Vec<OpId>,
    /// Every op the observer heard became stable, in order.
    pub stable: Vec<OpId>,
    /// The new ids of this node's own ops re-stamped when a member
    /// admitted it, in order (see [`Harness::final_ids`](super::Harness::final_ids)).
    pub restamps: Vec<OpId>,
}

/// The repeater's handle on a [`SimHost`].
pub(super) struct SharedHost<T: Replicated>(
    pub(super) ObjectKey,
    pub(super) Arc<Mutex<SimHost<T>>>,
);

impl<T: Replicated> Host for SharedHost<T> {
    fn deliver(&mut self, frame: &OpFrame) -> Result<Applied, HostError> {
        let mut host = self.1.lock();
        let SimHost { replica, fired, .. } = &mut *host;
        deliver_frame(replica, frame, |_, _, id| fired.push(id))
    }

    fn export(&mut self) -> Result<StateFrame, HostError> {
        export_frame(&self.0, &self.1.lock().replica)
    }

    fn admit(&mut self, node: NodeId) -> Result<Option<(NodeId, u64)>, HostError> {
        Ok(self.1.lock().replica.admit(node))
    }

    fn wants_admission(&self) -> bool {
        self.1.lock().replica.wants_admission()
    }

    fn may_evict(&self) -> bool {
        self.1.lock().replica.may_evict()
    }

    fn admitted_as(&mut self, origin: NodeId, clock: u64) -> bool {
        let mut host = self.1.lock();
        let SimHost {
            replica, restamps, ..
        } = &mut *host;
        let waited = replica.has_restamped();
        let admitted = replica.admitted_as(origin, clock);
        if admitted && !waited {
            restamps.extend_from_slice(replica.restamped_ids());
        }
        admitted
    }

    fn refresh(&mut self) -> u64 {
        let mut host = self.1.lock();
        let SimHost {
            replica, stable, ..
        } = &mut *host;
        replica.refresh(|_, _, id| stable.push(id));
        replica.revision()
    }

    fn digest(&self, object: &ObjectKey) -> ObjectDigest {
        digest_of(object, &self.1.lock().replica)
    }

    fn digest_hash(&self, _: &ObjectKey) -> u64 {
        digest_hash_of(&self.1.lock().replica)
    }

    fn merge_acks(&mut self, acks: &AckTable) {
        let mut host = self.1.lock();
        let SimHost {
            replica,
            stable,
            restamps,
            ..
        } = &mut *host;
        let waited = replica.has_restamped();
        replica.merge_acks(acks, |_, _, id| stable.push(id));
        if !waited {
            restamps.extend_from_slice(replica.restamped_ids());
        }
    }

    fn repair(
        &self,
        held: &VersionVector,
        above: &[SeqRun],
        upto: Option<&VersionVector>,
        span: Option<&Span>,
        budget: usize,
    ) -> Result<Repair, HostError> {
        repair_of(
            &self.0,
            &self.1.lock().replica,
            held,
            above,
            upto,
            span,
            budget,
        )
    }

    fn ops_in(&self, runs: &[SeqRun], budget: usize) -> Result<Vec<OpFrame>, HostError> {
        ops_in(&self.0, &self.1.lock().replica, runs, budget)
    }

    fn rebase(&mut self, state: &StateFrame) -> Result<bool, HostError> {
        rebase_onto(&mut self.1.lock().replica, state)
    }

    fn awaits_admission(&self) -> bool {
        self.1.lock().replica.awaits_readmission()
    }

    fn origins_of(&self, node: NodeId) -> Vec<NodeId> {
        self.1.lock().replica.origins_of(node)
    }

    fn evict_gone(&mut self, gone: &dyn Fn(NodeId) -> bool) -> usize {
        self.1.lock().replica.evict_gone(gone)
    }

    fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError> {
        restamped_frames(&self.0, &mut self.1.lock().replica)
    }
}
