use std::time::Duration;

use proptest::prelude::*;

use super::super::id::{NodeId, ObjectKey};
use super::super::message::{FetchId, Message, StateFrame};
use super::super::stability::AckTable;
use super::super::time::Time;
use super::super::version::VersionVector;
use super::*;

/// A snapshot message whose state is `len` bytes.
fn snapshot(len: usize) -> Message {
    Message::Snapshot(Box::new(StateFrame {
        object: ObjectKey::new("test.Doc", "doc"),
        stable: (0..len).map(|i| (i * 7 % 251) as u8).collect(),
        frontier: None,
        folded: VersionVector::default(),
        tentative: Vec::new(),
        lamport: 7,
        acks: AckTable::default(),
    }))
}

fn config(piece: usize) -> TransferConfig {
    TransferConfig {
        max_piece_bytes: piece,
        ..TransferConfig::default()
    }
}

fn pieces(msgs: Vec<Message>) -> Vec<PieceFrame> {
    msgs.into_iter()
        .map(|m| match m {
            Message::Piece(p) => p,
            other => panic!("expected a piece, got {}", other.kind()),
        })
        .collect()
}

const T0: Time = Time::ZERO;

#[test]
fn a_small_transfer_and_other_messages_go_whole() {
    let mut t = Transfers::<u8>::new(config(4096));
    assert!(t.split(&snapshot(100)).expect("encodes").is_none());
    let fetch = Message::Fetch {
        fetch: FetchId {
            requester: NodeId::from_bytes([1; 32]),
            n: 1,
        },
        object: ObjectKey::new("t", "x"),
    };
    assert!(t.split(&fetch).expect("encodes").is_none());
    assert_eq!(t.stats().sent, 0);
}

#[test]
fn a_large_transfer_goes_in_pieces_none_over_the_limit_and_comes_back_whole() {
    let msg = snapshot(200_000);
    let mut sender = Transfers::<u8>::new(config(48 << 10));
    let out = sender.split(&msg).expect("encodes").expect("in pieces");
    assert_eq!(out.len(), 5, "200 KB in 48 KiB pieces");
    for piece in &out {
        let frame = piece.encode(DEFAULT_MAX_FRAME).expect("encodes");
        assert!(frame.len() <= 48 << 10, "a piece of {} bytes", frame.len());
    }
    let mut receiver = Transfers::<u8>::new(TransferConfig::default());
    let mut whole = None;
    // Backwards, with a duplicate: order and repeats do not matter.
    let mut ps = pieces(out);
    ps.reverse();
    ps.insert(2, ps[1].clone());
    for p in ps {
        assert!(whole.is_none(), "whole before the last piece");
        whole = receiver.receive(T0, 1, p).expect("valid");
    }
    assert_eq!(whole, Some(msg));
    assert_eq!(receiver.in_progress(), 0);
    assert_eq!(receiver.stats().received, 1);
}

#[test]
fn transfers_from_two_links_with_one_id_do_not_mix() {
    let (a, b) = (snapshot(10_000), snapshot(14_000));
    let pa = pieces(
        Transfers::<u8>::new(config(4096))
            .split(&a)
            .expect("a test snapshot encodes")
            .expect("over one piece, so it is split"),
    );
    let pb = pieces(
        Transfers::<u8>::new(config(4096))
            .split(&b)
            .expect("a test snapshot encodes")
            .expect("over one piece, so it is split"),
    );
    assert_eq!(pa[0].transfer, pb[0].transfer);
    let mut r = Transfers::<u8>::new(TransferConfig::default());
    let mut got = Vec::new();
    for (x, y) in pa.into_iter().zip(pb) {
        got.extend(r.receive(T0, 1, x).expect("valid"));
        got.extend(r.receive(T0, 2, y).expect("valid"));
    }
    assert_eq!(got.len(), 1, "a is whole, b has one more piece");
    assert_eq!(got[0], a);
}

#[test]
fn malformed_pieces_are_refused_and_drop_their_transfer() {
    let mut r = Transfers::<u8>::new(TransferConfig::default());
    let piece = |part, parts, bytes: &[u8]| PieceFrame {
        transfer: 9,
        part,
        parts,
        bytes: bytes.to_vec(),
    };
    for bad in [piece(0, 0, b"x"), piece(3, 3, b"x"), piece(0, 2, b"")] {
        assert!(matches!(
            r.receive(T0, 1, bad),
            Err(PieceError::Malformed { .. })
        ));
    }
    assert!(r
        .receive(T0, 1, piece(0, 3, b"abc"))
        .expect("a well-formed piece after refused ones is taken")
        .is_none());
    assert_eq!(r.in_progress(), 1);
    // Another count of parts for the same transfer.
    assert!(matches!(
        r.receive(T0, 1, piece(1, 4, b"abc")),
        Err(PieceError::Malformed { .. })
    ));
    assert_eq!(r.in_progress(), 0);
    // More parts than the byte limit could ever fill.
    let mut small = Transfers::<u8>::new(TransferConfig {
        max_transfer_bytes: 10,
        ..TransferConfig::default()
    });
    assert!(small.receive(T0, 1, piece(0, 11, b"a")).is_err());
    // Over the byte limit as the pieces come.
    assert!(small
        .receive(T0, 1, piece(0, 2, b"abcdef"))
        .expect("the first piece is within the limit")
        .is_none());
    assert!(matches!(
        small.receive(T0, 1, piece(1, 2, b"ghijk")),
        Err(PieceError::Oversize { .. })
    ));
    assert_eq!(small.in_progress(), 0);
}

#[test]
fn a_whole_that_is_garbage_or_not_a_state_transfer_is_refused() {
    let mut r = Transfers::<u8>::new(TransferConfig::default());
    let garbage = PieceFrame {
        transfer: 1,
        part: 0,
        parts: 1,
        bytes: vec![0xff; 40],
    };
    assert!(matches!(
        r.receive(T0, 1, garbage),
        Err(PieceError::Decode { .. })
    ));
    let hello = Message::Welcome { peers: Vec::new() }
        .encode(DEFAULT_MAX_FRAME)
        .expect("encodes");
    let smuggled = PieceFrame {
        transfer: 2,
        part: 0,
        parts: 1,
        bytes: hello,
    };
    assert!(matches!(
        r.receive(T0, 1, smuggled),
        Err(PieceError::NotATransfer {
            kind: "welcome",
            ..
        })
    ));
    assert_eq!(r.stats().refused, 2);
}

#[test]
fn unfinished_transfers_cost_bounded_memory_for_a_bounded_time() {
    let mut r = Transfers::<u8>::new(TransferConfig {
        timeout: Duration::from_secs(5),
        ..TransferConfig::default()
    });
    let first = |transfer| PieceFrame {
        transfer,
        part: 0,
        parts: 2,
        bytes: vec![1; 100],
    };
    for transfer in 0..10 {
        r.receive(T0, 1, first(transfer)).expect("valid");
    }
    assert_eq!(r.in_progress(), MAX_PER_PEER, "one peer's share");
    for link in 2..40 {
        r.receive(T0, link, first(0)).expect("valid");
    }
    assert_eq!(r.in_progress(), MAX_IN_PROGRESS, "the node's share");
    r.receive(T0 + Duration::from_secs(6), 99, first(0))
        .expect("valid");
    assert_eq!(r.in_progress(), 1, "the idle ones timed out");
    r.link_down(99);
    assert_eq!(r.in_progress(), 0);
}

proptest! {
    /// Whatever the state's size and the piece size, the pieces come back
    /// to the same message in any order.
    #[test]
    fn pieces_in_any_order_make_the_message(
        len in 0usize..60_000,
        piece in 1024usize..8192,
        order in any::<u64>(),
    ) {
        let msg = snapshot(len);
        let mut s = Transfers::<u8>::new(config(piece));
        let Some(out) = s.split(&msg).expect("encodes") else {
            prop_assert!(msg.encode(DEFAULT_MAX_FRAME).expect("encodes").len() <= piece);
            return Ok(());
        };
        let mut ps = pieces(out);
        let n = ps.len();
        for i in 0..n {
            ps.swap(i, (order as usize).wrapping_mul(i + 7) % n);
        }
        let mut r = Transfers::<u8>::new(TransferConfig::default());
        let mut whole = None;
        for p in ps {
            prop_assert!(p.bytes.len() + PIECE_OVERHEAD <= piece);
            whole = r.receive(T0, 0, p).expect("valid");
        }
        prop_assert_eq!(whole, Some(msg));
    }
}
