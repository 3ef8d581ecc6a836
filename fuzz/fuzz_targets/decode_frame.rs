//! Every decoder of network input, on arbitrary bytes: the frame, then the
//! op or state inside it, applied to a replica. Errors are fine; panics,
//! hangs and state changes on refusal are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus::proto::host::{deliver_frame, rebase_onto, repair_of, replica_from_frame};
use plexus::proto::message::{Decoder, Message, DEFAULT_MAX_FRAME};
use plexus::proto::replica::Replica;
use plexus::proto::version::VersionVector;
use plexus::{Delivery, NodeId, Operation, Replicated, TypeTag};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Doc {
    items: Vec<String>,
    n: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum DocOp {
    Push(String),
    Add(u64),
}

impl TypeTag for Doc {
    const TYPE_TAG: &'static str = "fuzz.Doc";
}

impl Operation for DocOp {
    const TAGS: &'static [&'static str] = &["Push", "Add"];
    fn tag(&self) -> &'static str {
        match self {
            DocOp::Push(_) => "Push",
            DocOp::Add(_) => "Add",
        }
    }
    fn is_commutative(&self) -> bool {
        matches!(self, DocOp::Add(_))
    }
}

trait DocObserver: Send {}

impl Replicated for Doc {
    type Op = DocOp;
    type Observer = dyn DocObserver;
    fn apply(&mut self, op: &DocOp) {
        match op {
            DocOp::Push(s) => self.items.push(s.clone()),
            DocOp::Add(n) => self.n = self.n.wrapping_add(*n),
        }
    }
    fn notify(_: &mut Self::Observer, _: &Self, _: &DocOp, _: &Delivery) {}
    fn notify_stable(_: &mut Self::Observer, _: &Self, _: &DocOp, _: &Delivery) {}
}

fuzz_target!(|data: &[u8]| {
    // A stream's decoder, which reads short op frames against the last op
    // frame: the input twice, so a short frame may find a reference.
    let mut stream = Decoder::new(DEFAULT_MAX_FRAME);
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = stream.decode(&bytes);
    let _ = stream.decode(&bytes);
    // A link's reader decodes frames in place in a block of several: the
    // input cut in two where its first byte says, each part on its own,
    // and a range that runs past the end.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let _ = stream.decode_in(&bytes, 1.min(cut)..cut);
    let _ = stream.decode_in(&bytes, cut..data.len());
    let _ = stream.decode_in(&bytes, cut..data.len() + 1);
    let Ok(msg) = Message::decode(data, DEFAULT_MAX_FRAME) else { return };
    let me = NodeId::from_u64(7);
    match msg {
        Message::Op(frame) | Message::Repair(frame) => {
            let mut replica = Replica::new(me, Doc::default());
            replica.shout(DocOp::Add(1), |_, _, _| {});
            let before = replica.state().clone();
            if deliver_frame(&mut replica, &frame, |_, _, _| {}).is_err() {
                assert_eq!(replica.state(), &before, "a refused op must change nothing");
            }
        }
        Message::State { state, .. } => {
            if let Ok(mut replica) = replica_from_frame::<Doc>(me, &state) {
                replica.shout(DocOp::Push("after".into()), |_, _, _| {});
            }
        }
        Message::Snapshot(state) => {
            let mut replica = Replica::new(me, Doc::default());
            replica.shout(DocOp::Add(1), |_, _, _| {});
            let before = replica.state().clone();
            if rebase_onto(&mut replica, &state).is_err() {
                assert_eq!(replica.state(), &before, "a refused snapshot must change nothing");
            }
        }
        Message::Digest { objects, .. } => {
            let mut replica = Replica::new(me, Doc::default());
            replica.shout(DocOp::Add(1), |_, _, _| {});
            for digest in objects {
                replica.merge_acks(&digest.acks, |_, _, _| {});
                let _ = repair_of(
                    &digest.object,
                    &replica,
                    &digest.held,
                    &digest.above,
                    Some(&VersionVector::default()),
                    digest.span.as_ref().filter(|s| s.is_valid()),
                    1 << 16,
                );
            }
        }
        _ => {}
    }
});
