//! Every decoder of network input returns errors, never panics: arbitrary
//! bytes, truncations and bit flips of valid frames. (The `fuzz/` targets
//! run the same decoders under libFuzzer.)

mod common;

use bytes::Bytes;
use plexus::proto::dissemination::{ObjectRuns, SeqRun, TreeMsg};
use plexus::proto::host::{deliver_frame, rebase_onto, repair_of, replica_from_frame};
use plexus::proto::hyparview;
use plexus::proto::message::{
    encode_value, Decoder, FetchId, Message, ObjectDigest, OpFrame, Span, StateFrame, TentativeOp,
    DEFAULT_MAX_FRAME,
};
use plexus::proto::replica::Replica;
use plexus::proto::stability::{Ack, AckTable};
use plexus::proto::version::VersionVector;
use plexus::{NodeId, ObjectKey, OpId};
use proptest::prelude::*;

use common::{Doc, DocOp};

fn valid_frames() -> Vec<Vec<u8>> {
    let object = ObjectKey::new("test.Doc", "d");
    let id = OpId {
        lamport: 9,
        origin: NodeId::from_u64(4),
        seq: 3,
    };
    let payload = encode_value(&DocOp::Push("hello".into()), "op").expect("encodes");
    let state = StateFrame {
        object: object.clone(),
        stable: encode_value(&Doc::default(), "state").expect("encodes"),
        frontier: Some(id),
        folded: VersionVector::default(),
        tentative: vec![TentativeOp {
            id,
            payload: payload.clone(),
        }],
        lamport: 9,
        acks: AckTable::from_acks([(NodeId::from_u64(4), Ack::from((9, 3, 9)))]),
    };
    let fetch = FetchId {
        requester: NodeId::from_u64(2),
        n: 1,
    };
    [
        Message::Hello {
            node: NodeId::from_u64(1),
            addr: Some("127.0.0.1:7001".into()),
            nonce: 7,
            pinned: true,
        },
        Message::Welcome {
            peers: vec![(NodeId::from_u64(2), None)],
        },
        Message::Op(OpFrame {
            object: object.clone(),
            id,
            payload: payload.clone().into(),
        }),
        Message::Repair(OpFrame {
            object: object.clone(),
            id,
            payload: payload.into(),
        }),
        Message::Fetch {
            fetch,
            object: object.clone(),
        },
        Message::State {
            fetch,
            state: Box::new(state.clone()),
        },
        Message::Summary {
            set: u64::MAX,
            root: 7,
        },
        Message::Digest {
            objects: vec![
                ObjectDigest {
                    object: object.clone(),
                    held: VersionVector([(NodeId::from_u64(4), 3)].into_iter().collect()),
                    above: vec![SeqRun {
                        origin: NodeId::from_u64(4),
                        first: 5,
                        last: 9,
                    }],
                    acks: state.acks.clone(),
                    span: None,
                },
                ObjectDigest {
                    object,
                    held: VersionVector([(NodeId::from_u64(9), 1)].into_iter().collect()),
                    above: Vec::new(),
                    acks: state.acks.clone(),
                    span: Some(Span {
                        from: NodeId::from_u64(8),
                        to: None,
                        round: 3,
                        part: 1,
                        parts: 2,
                    }),
                },
            ],
            reply: true,
            first: true,
            last: true,
        },
        Message::Snapshot(Box::new(state)),
        Message::Tree(TreeMsg::IHave(vec![ObjectRuns {
            object: ObjectKey::new("test.Doc", "d"),
            runs: vec![SeqRun {
                origin: NodeId::from_u64(4),
                first: 1,
                last: 300,
            }],
        }])),
        Message::Tree(TreeMsg::Graft(vec![ObjectRuns {
            object: ObjectKey::new("test.Doc", "d"),
            runs: vec![SeqRun {
                origin: NodeId::from_u64(4),
                first: 7,
                last: 7,
            }],
        }])),
        Message::Tree(TreeMsg::Prune(vec![NodeId::from_u64(4)])),
        Message::Tree(TreeMsg::Eager(vec![NodeId::from_u64(4)])),
        Message::Tree(TreeMsg::Lazy(vec![
            NodeId::from_u64(4),
            NodeId::from_u64(5),
        ])),
        Message::Overlay(hyparview::Message::Shuffle {
            origin: hyparview::Contact {
                id: NodeId::from_u64(5),
                addr: Some("127.0.0.1:7001".into()),
            },
            ttl: 6,
            nodes: vec![hyparview::Contact {
                id: NodeId::from_u64(6),
                addr: None,
            }],
        }),
        Message::Overlay(hyparview::Message::NeighborReply { accepted: true }),
    ]
    .iter()
    .map(|m| m.encode(DEFAULT_MAX_FRAME).expect("encodes"))
    .collect()
}

/// Decode as every layer would: the frame, then the op or the state inside.
fn decode_all_layers(frame: &[u8]) {
    let Ok(msg) = Message::decode(frame, DEFAULT_MAX_FRAME) else {
        return;
    };
    let me = NodeId::from_u64(99);
    match msg {
        Message::Op(op) | Message::Repair(op) => {
            let mut replica = Replica::new(me, Doc::default());
            let before = replica.state().clone();
            if deliver_frame(&mut replica, &op, |_, _, _| {}).is_err() {
                assert_eq!(replica.state(), &before, "a refused op changes nothing");
            }
        }
        Message::State { state, .. } => {
            let _ = replica_from_frame::<Doc>(me, &state);
        }
        Message::Snapshot(state) => {
            let mut replica = Replica::new(me, Doc::default());
            let before = replica.state().clone();
            if rebase_onto(&mut replica, &state).is_err() {
                assert_eq!(
                    replica.state(),
                    &before,
                    "a refused snapshot changes nothing"
                );
            }
        }
        Message::Digest { objects, .. } => {
            let mut replica = Replica::new(me, Doc::default());
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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all_layers(&bytes);
        let mut versioned = vec![plexus::proto::message::WIRE_VERSION];
        versioned.extend_from_slice(&bytes);
        decode_all_layers(&versioned);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..8,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_frames()[which].clone();
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] ^= byte;
        }
        decode_all_layers(&frame);
        let keep = cut.index(frame.len() + 1);
        decode_all_layers(&frame[..keep]);
    }
}

#[test]
fn valid_frames_decode_through_every_layer() {
    for frame in valid_frames() {
        Message::decode(&frame, DEFAULT_MAX_FRAME).expect("valid frame");
        decode_all_layers(&frame);
    }
}

/// An op frame whose object key is not UTF-8 is refused, also right after
/// a good frame on the same object, whose key the decoder reuses when the
/// bytes match.
#[test]
fn an_op_key_that_is_not_utf8_is_refused() {
    let frame = |name: &str| {
        Message::Op(OpFrame {
            object: ObjectKey::new("test.Doc", name),
            id: OpId {
                lamport: 1,
                origin: NodeId::from_u64(4),
                seq: 1,
            },
            payload: encode_value(&DocOp::Push("x".into()), "op")
                .expect("encodes")
                .into(),
        })
        .encode(DEFAULT_MAX_FRAME)
        .expect("encodes")
    };
    let good = frame("ab");
    let mut bad = frame("ab");
    let at = bad
        .windows(2)
        .position(|w| w == b"ab")
        .expect("the name is in the frame");
    bad[at + 1] = 0xff;
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
    assert!(decoder.decode(&Bytes::from(good.clone())).is_ok());
    assert!(decoder.decode(&Bytes::from(bad.clone())).is_err());
    assert!(Message::decode(&bad, DEFAULT_MAX_FRAME).is_err());
    assert!(
        decoder.decode(&Bytes::from(good)).is_ok(),
        "the decoder goes on"
    );
}
