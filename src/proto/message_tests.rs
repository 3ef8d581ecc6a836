//! Tests of the wire messages.

use super::*;

fn op() -> Message {
    Message::Op(OpFrame {
        object: ObjectKey::new("demo.Frog", "kermit"),
        id: OpId {
            lamport: 7,
            origin: NodeId::from_u64(3),
            seq: 2,
        },
        payload: Bytes::from_static(&[0x61, 0x61]),
    })
}

#[test]
fn messages_round_trip() {
    let frame = op()
        .encode(DEFAULT_MAX_FRAME)
        .expect("small message encodes");
    assert_eq!(frame[0], WIRE_VERSION);
    assert_eq!(
        Message::decode(&frame, DEFAULT_MAX_FRAME).expect("valid frame"),
        op()
    );
}

#[test]
fn bad_frames_are_errors_not_panics() {
    let frame = op()
        .encode(DEFAULT_MAX_FRAME)
        .expect("small message encodes");
    assert!(matches!(Message::decode(&[], 100), Err(DecodeError::Empty)));
    assert!(matches!(
        Message::decode(&frame, 4),
        Err(DecodeError::Oversize { max: 4, .. })
    ));
    let mut wrong_version = frame.clone();
    wrong_version[0] = 99;
    assert!(matches!(
        Message::decode(&wrong_version, DEFAULT_MAX_FRAME),
        Err(DecodeError::UnknownVersion { found: 99 })
    ));
    for cut in 1..frame.len() {
        assert!(
            Message::decode(&frame[..cut], DEFAULT_MAX_FRAME).is_err(),
            "cut at {cut}"
        );
    }
    let mut trailing = frame;
    trailing.push(0);
    assert!(matches!(
        Message::decode(&trailing, DEFAULT_MAX_FRAME),
        Err(DecodeError::Trailing { .. })
    ));
}

#[test]
fn op_frames_are_array_shaped_and_within_the_overhead() {
    let mut frame = match op() {
        Message::Op(f) => f,
        _ => unreachable!(),
    };
    frame.id.lamport = u64::MAX;
    frame.id.seq = u64::MAX;
    frame.payload = Bytes::from(vec![7u8; 70_000]);
    let bytes = Message::Op(frame.clone())
        .encode(DEFAULT_MAX_FRAME)
        .expect("encodes");
    let key = frame.object.tag.len() + frame.object.name.len();
    assert!(bytes.len() <= frame.payload.len() + key + OpFrame::MAX_OVERHEAD);
    // Plain CBOR: any CBOR reader sees a 7-item array starting with 2.
    let value: ciborium::Value = ciborium::from_reader(&bytes[1..]).expect("valid CBOR");
    let items = value.as_array().expect("an array");
    assert_eq!(items.len(), 7);
    assert_eq!(items[0], ciborium::Value::Integer(2.into()));
    let back = Message::decode(&bytes, DEFAULT_MAX_FRAME).expect("decodes");
    assert_eq!(back, Message::Op(frame));
}

#[test]
fn a_decoder_shares_the_key_of_consecutive_ops() {
    let frame = Bytes::from(op().encode(DEFAULT_MAX_FRAME).expect("encodes"));
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
    let key = |m: Message| match m {
        Message::Op(f) => f.object,
        _ => unreachable!(),
    };
    let a = key(decoder.decode(&frame).expect("decodes"));
    let b = key(decoder.decode(&frame).expect("decodes"));
    assert!(std::sync::Arc::ptr_eq(&a.tag, &b.tag));
    assert!(std::sync::Arc::ptr_eq(&a.name, &b.name));
}

#[test]
fn other_messages_travel_as_serde_cbor() {
    let hello = Message::Hello {
        node: NodeId::from_u64(1),
        addr: Some("127.0.0.1:9".into()),
        nonce: 5,
        pinned: false,
    };
    let bytes = hello.encode(DEFAULT_MAX_FRAME).expect("encodes");
    assert_eq!(&bytes[..3], &[WIRE_VERSION, 0x82, 0x01]);
    assert_eq!(
        Message::decode(&bytes, DEFAULT_MAX_FRAME).expect("decodes"),
        hello
    );
    let mut unknown = bytes;
    unknown[2] = 0x09;
    assert!(matches!(
        Message::decode(&unknown, DEFAULT_MAX_FRAME),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn oversize_messages_fail_to_encode() {
    assert!(matches!(
        op().encode(8),
        Err(EncodeError::Oversize { max: 8, .. })
    ));
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    // A recursive type decodes as deep as its input nests.
    #[derive(Debug, Deserialize)]
    struct Tree(#[allow(dead_code)] Vec<Tree>);
    let mut deep = vec![0x81u8; 100_000];
    deep.push(0x80);
    let err = decode_exact::<Tree>(&deep, "op").expect_err("too deep");
    assert!(err.to_string().contains("deeper than 256"), "{err}");
    let mut fine = vec![0x81u8; 100];
    fine.push(0x80);
    assert!(decode_exact::<Tree>(&fine, "op").is_ok());
    let err = decode_exact::<u8>(&[0x01, 0x02], "op").expect_err("trailing");
    assert!(
        matches!(err, DecodeError::Trailing { extra: 1, .. }),
        "{err}"
    );
}
