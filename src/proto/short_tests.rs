use bytes::Bytes;
use proptest::prelude::*;

use super::super::id::{NodeId, ObjectKey, OpId};
use super::super::message::{Decoder, Message, OpFrame, DEFAULT_MAX_FRAME};
use super::*;

fn op(object: &str, origin: u8, lamport: u64, seq: u64, payload: &[u8]) -> OpFrame {
    OpFrame {
        object: ObjectKey::new("test.Doc", object),
        id: OpId {
            lamport,
            origin: NodeId::from_bytes([origin; 32]),
            seq,
        },
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Write `msgs` through one shortener and read them back through one
/// decoder, as a link does; returns what was read and the frames' sizes.
fn through_a_stream(msgs: &[Message]) -> (Vec<Message>, Vec<usize>) {
    let mut shortener = OpShortener::new();
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
    let (mut read, mut sizes) = (Vec::new(), Vec::new());
    for msg in msgs {
        let frame = msg.encode(DEFAULT_MAX_FRAME).expect("encodes");
        let mut out = Vec::new();
        let n = shortener.append(&frame, &mut out);
        assert_eq!(n, out.len());
        sizes.push(n);
        read.push(decoder.decode(&Bytes::from(out)).expect("decodes"));
    }
    (read, sizes)
}

#[test]
fn a_run_of_ops_goes_short_after_its_first_and_reads_back_the_same() {
    let payload = [7u8; 64];
    let msgs = vec![
        Message::Op(op("doc", 1, 10, 1, &payload)),
        Message::Op(op("doc", 1, 11, 2, &payload)),
        Message::Op(op("doc", 1, 300, 3, &payload)),
        // Another origin, then back: each change goes in full once.
        Message::Op(op("doc", 2, 301, 1, &payload)),
        Message::Op(op("doc", 1, 302, 4, &payload)),
        // Another object.
        Message::Op(op("other", 1, 303, 5, &payload)),
        // A repair is a full frame and moves the reference too.
        Message::Repair(op("doc", 3, 304, 9, &payload)),
        Message::Op(op("doc", 3, 305, 10, &payload)),
        // Other messages pass through and leave the reference alone.
        Message::Welcome { peers: Vec::new() },
        Message::Op(op("doc", 3, 306, 11, &[])),
    ];
    let (read, sizes) = through_a_stream(&msgs);
    assert_eq!(read, msgs);
    let full = |i: usize| msgs[i].encode(DEFAULT_MAX_FRAME).expect("encodes").len();
    // Without the key (13 bytes of CBOR) and the origin (34).
    for i in [1, 2, 7, 9] {
        assert_eq!(sizes[i], full(i) - 47, "frame {i} short: {sizes:?}");
    }
    for i in [0, 3, 4, 5, 6, 8] {
        assert_eq!(sizes[i], full(i), "frame {i} in full: {sizes:?}");
    }
}

#[test]
fn a_short_frame_without_a_full_one_before_it_is_refused() {
    let msgs = [
        Message::Op(op("doc", 1, 10, 1, b"a")),
        Message::Op(op("doc", 1, 11, 2, b"b")),
    ];
    let mut shortener = OpShortener::new();
    let mut out = Vec::new();
    for m in &msgs {
        out.clear();
        shortener.append(&m.encode(DEFAULT_MAX_FRAME).expect("encodes"), &mut out);
    }
    // `out` holds the second, short frame: alone it cannot be read.
    assert!(Message::decode(&out, DEFAULT_MAX_FRAME).is_err());
    assert!(Decoder::new(DEFAULT_MAX_FRAME)
        .decode(&Bytes::from(out))
        .is_err());
}

#[test]
fn a_frame_that_claims_to_be_an_op_but_does_not_parse_resets_the_reference() {
    let first = Message::Op(op("doc", 1, 10, 1, b"a"))
        .encode(DEFAULT_MAX_FRAME)
        .expect("encodes");
    let mut shortener = OpShortener::new();
    let mut out = Vec::new();
    shortener.append(&first, &mut out);
    let mut broken = first.clone();
    broken.truncate(broken.len() - 1);
    out.clear();
    assert_eq!(shortener.append(&broken, &mut out), broken.len());
    assert_eq!(out, broken, "passed through as it is");
    out.clear();
    assert_eq!(
        shortener.append(&first, &mut out),
        first.len(),
        "the next op goes in full"
    );
}

fn arb_msg() -> impl Strategy<Value = Message> {
    (
        0u8..3,
        0u8..3,
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        0u8..10,
    )
        .prop_map(|(object, origin, lamport, seq, payload, kind)| {
            let frame = op(&format!("o{object}"), origin, lamport, seq, &payload);
            match kind {
                0 => Message::Repair(frame),
                1 => Message::Welcome { peers: Vec::new() },
                _ => Message::Op(frame),
            }
        })
}

proptest! {
    /// Any series of messages reads back as written, and no frame grows.
    #[test]
    fn any_series_reads_back_as_written(msgs in proptest::collection::vec(arb_msg(), 1..40)) {
        let (read, sizes) = through_a_stream(&msgs);
        prop_assert_eq!(&read, &msgs);
        for (m, n) in msgs.iter().zip(sizes) {
            prop_assert!(n <= m.encode(DEFAULT_MAX_FRAME).expect("encodes").len());
        }
    }
}
