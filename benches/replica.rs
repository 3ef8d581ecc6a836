//! Replica and codec costs.
//!
//! `cargo bench --bench replica` prints, per op:
//! * `apply/in_order`: a remote op that sorts after everything (the fast
//!   path), with trivial user code;
//! * `apply/replay/N`: a late op that sorts before all N tentative ops: a
//!   rollback to the stable snapshot and the replay of all N;
//! * `apply/replay_last_10/N`: a late op that sorts before the last ten of N
//!   tentative ops: a rollback to the nearest checkpoint;
//! * `apply/commutative_late/N`: a late commutative op beside N tentative ops
//!   (no replay);
//! * `apply/three_writers`: commutative ops of three writers, one of them
//!   512 Lamport ticks ahead of the other two (as under quicbench's load,
//!   where a node's own burst runs ahead of what arrives), folded as they
//!   go: most ops land hundreds of places before the end of the log;
//! * `codec/*`: CBOR encode and decode of an op frame with a 64-byte argument.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use plexus::proto::message::{encode_value, Decoder, Message, OpFrame, DEFAULT_MAX_FRAME};
use plexus::proto::replica::Replica;
use plexus::{NodeId, ObjectKey, OpId};

use common::{Doc, DocOp};

const A: NodeId = NodeId::from_u64(1);
const B: NodeId = NodeId::from_u64(2);
const C: NodeId = NodeId::from_u64(3);

fn id(lamport: u64, origin: NodeId, seq: u64) -> OpId {
    OpId {
        lamport,
        origin,
        seq,
    }
}

/// A replica holding `n` tentative ops from `A` at Lamport times 2, 3, ...
fn replica_with(n: u64) -> Replica<Doc> {
    let mut r = Replica::new(B, Doc::default());
    for k in 0..n {
        r.apply(id(k + 2, A, k + 1), DocOp::Mark(k as u8), |_, _, _| {})
            .expect("valid op");
    }
    r
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("in_order", |b| {
        let mut r = Replica::new(B, Doc::default());
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            let outcome = r.apply(id(k, A, k), DocOp::Add(1), |_, _, _| {});
            black_box(outcome).expect("in-order op applies");
        });
    });
    for n in [10u64, 100, 1000] {
        let base = replica_with(n);
        g.bench_function(format!("replay/{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut r| {
                    // Lamport 1 from B sorts before every tentative op.
                    let outcome = r.apply(id(1, B, 1), DocOp::Mark(1), |_, _, _| {});
                    black_box(outcome).expect("late op applies");
                    r
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_function(format!("replay_last_10/{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut r| {
                    // Sorts before the last ten ops only: a checkpoint bounds
                    // the replay.
                    let outcome = r.apply(id(n - 8, B, 1), DocOp::Mark(1), |_, _, _| {});
                    black_box(outcome).expect("late op applies");
                    r
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_function(format!("commutative_late/{n}"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut r| {
                    let outcome = r.apply(id(1, B, 1), DocOp::Add(1), |_, _, _| {});
                    black_box(outcome).expect("late op applies");
                    r
                },
                BatchSize::LargeInput,
            );
        });
    }
    g.bench_function("three_writers", |b| {
        const AHEAD: u64 = 512;
        let mut r = Replica::new(A, Doc::default());
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            for (lamport, origin) in [(t + AHEAD, A), (t, B), (t, C)] {
                let outcome = r.apply(id(lamport, origin, t), DocOp::Add(1), |_, _, _| {});
                black_box(outcome).expect("op applies");
            }
            if t.is_multiple_of(256) && t > 2 * AHEAD {
                r.advance_stable(id(t - AHEAD, C, u64::MAX), |_, _, _| {});
            }
        });
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let op = DocOp::Push("x".repeat(64));
    let frame = Message::Op(OpFrame {
        object: ObjectKey::new("demo.Frog", "kermit"),
        id: id(1234, A, 77),
        payload: encode_value(&op, "op").expect("op encodes").into(),
    });
    let bytes = frame.encode(DEFAULT_MAX_FRAME).expect("frame encodes");
    println!(
        "op frame with a 64-byte argument: {} bytes on the wire",
        bytes.len()
    );
    g.bench_function("op_payload_encode_decode", |b| {
        b.iter(|| {
            let payload = encode_value(black_box(&op), "op").expect("op encodes");
            let back: DocOp =
                plexus::proto::message::decode_exact(&payload, "op").expect("op decodes");
            black_box(back)
        });
    });
    g.bench_function("frame_encode", |b| {
        b.iter(|| {
            black_box(&frame)
                .encode(DEFAULT_MAX_FRAME)
                .expect("frame encodes")
        });
    });
    g.bench_function("frame_decode", |b| {
        b.iter(|| Message::decode(black_box(&bytes), DEFAULT_MAX_FRAME).expect("frame decodes"));
    });
    // As a link's reader decodes: from a shared buffer, with the key cache.
    let shared = bytes::Bytes::from(bytes.clone());
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
    g.bench_function("frame_decode_on_link", |b| {
        b.iter(|| decoder.decode(black_box(&shared)).expect("frame decodes"));
    });
    g.finish();
}

criterion_group!(benches, apply, codec);
criterion_main!(benches);
