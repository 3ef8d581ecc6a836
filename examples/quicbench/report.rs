//! Figures: latency summaries, rates, the op codec, and the final table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use plexus::proto::message::{
    decode_exact, encode_value, Decoder, Message, OpFrame, DEFAULT_MAX_FRAME,
};
use plexus::proto::short::OpShortener;
use plexus::proto::{NodeId, ObjectKey, OpId, TypeTag};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::peer::{Sink, SinkOp};

/// Percentiles of a set of latency samples, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Summary {
    pub(crate) n: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) mean: u64,
    pub(crate) max: u64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples`.
    pub(crate) fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            n: n as u64,
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            mean: samples.iter().sum::<u64>() / n as u64,
            max: samples[n - 1],
        }
    }

    /// The wire form between child and parent.
    pub(crate) fn to_line(self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.n, self.p50, self.p99, self.p999, self.mean, self.max
        )
    }

    /// Parse [`to_line`](Self::to_line)'s output.
    pub(crate) fn parse(line: &str) -> anyhow::Result<Self> {
        let v: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("bad summary {line:?}"))?;
        let [n, p50, p99, p999, mean, max] = v[..] else {
            anyhow::bail!("bad summary {line:?}");
        };
        Ok(Self {
            n,
            p50,
            p99,
            p999,
            mean,
            max,
        })
    }
}

/// Messages that reached all three receivers, over the wall time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rate {
    pub(crate) messages: u64,
    pub(crate) wall: Duration,
    /// CPU time (user + system) every process of the phase spent in it.
    pub(crate) cpu: Duration,
}

impl Rate {
    pub(crate) fn per_sec(self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// CPU time per message, in µs.
    pub(crate) fn cpu_us(self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

/// The op shaped like a plain serde derive with a `Vec<u8>` argument would
/// make it (the bytes become a CBOR array of integers), for comparison.
#[derive(Debug, Serialize, Deserialize)]
enum VecOp {
    #[serde(rename = "blast")]
    Blast(Vec<u8>),
}

/// The cost and size of one op frame, measured in this process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Codec {
    /// The whole frame: version byte + CBOR `Message::Op`.
    pub(crate) frame_len: usize,
    /// The same op as a link writes it when the op before it on the link
    /// had the same object and origin (the short form).
    pub(crate) short_len: usize,
    /// The op payload inside it (CBOR of `SinkOp::Blast(64-byte ByteBuf)`).
    pub(crate) payload_len: usize,
    /// The same payload with a `Vec<u8>` argument (a CBOR array of ints).
    pub(crate) vec_payload_len: usize,
    /// Encode the op payload (what a shout does).
    pub(crate) op_encode_ns: f64,
    /// Encode the frame (what the repeater does once per multicast).
    pub(crate) frame_encode_ns: f64,
    /// Decode the frame (what a link's reader does per frame received).
    pub(crate) frame_decode_ns: f64,
    /// Decode the op payload (what the replica host does per new op).
    pub(crate) op_decode_ns: f64,
    /// Encode + decode of the `Vec<u8>`-shaped payload, for comparison.
    pub(crate) vec_op_ns: f64,
}

fn per_op(iterations: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// Measure the op frame a 64-byte blast shout becomes on the wire.
pub(crate) fn codec(iterations: u32) -> anyhow::Result<Codec> {
    let op = SinkOp::Blast(ByteBuf::from(crate::payload()));
    let payload = encode_value(&op, "op")?;
    let vec_op = VecOp::Blast(crate::payload());
    let vec_payload = encode_value(&vec_op, "op")?;
    let msg = Message::Op(OpFrame {
        object: ObjectKey::new(Sink::TYPE_TAG, "sink"),
        id: OpId {
            lamport: 1_234_567,
            origin: NodeId::from_bytes([0xa5; 32]),
            seq: 1_234_567,
        },
        payload: payload.clone().into(),
    });
    let frame = msg.encode(DEFAULT_MAX_FRAME)?;
    Message::decode(&frame, DEFAULT_MAX_FRAME)?;
    let mut shortener = OpShortener::new();
    shortener.append(&frame, &mut Vec::new());
    let short_len = shortener.append(&frame, &mut Vec::new());
    let op_encode_ns = per_op(iterations, || {
        black_box(encode_value(black_box(&op), "op").expect("a small op encodes"));
    });
    let frame_encode_ns = per_op(iterations, || {
        black_box(black_box(&msg).encode(DEFAULT_MAX_FRAME).expect("fits"));
    });
    // As a link's reader decodes: from the shared receive buffer, with the
    // link's object-key cache.
    let shared = bytes::Bytes::from(frame.clone());
    let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
    let frame_decode_ns = per_op(iterations, || {
        black_box(decoder.decode(black_box(&shared)).expect("valid"));
    });
    let op_decode_ns = per_op(iterations, || {
        black_box(decode_exact::<SinkOp>(black_box(&payload), "op").expect("valid"));
    });
    let vec_op_ns = per_op(iterations, || {
        let bytes = encode_value(black_box(&vec_op), "op").expect("encodes");
        black_box(decode_exact::<VecOp>(&bytes, "op").expect("valid"));
    });
    Ok(Codec {
        frame_len: frame.len(),
        short_len,
        payload_len: payload.len(),
        vec_payload_len: vec_payload.len(),
        op_encode_ns,
        frame_encode_ns,
        frame_decode_ns,
        op_decode_ns,
        vec_op_ns,
    })
}

/// Everything measured in one run.
#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) raw_rtt: Summary,
    pub(crate) raw_rtt_both: Summary,
    /// Shout → applied on both receivers, one way (shared monotonic clock).
    pub(crate) shout_to_all: Summary,
    /// Shout → both acks applied back (peer 0's clock alone).
    pub(crate) ping: Summary,
    pub(crate) fan_batched: Rate,
    pub(crate) fan_single: Rate,
    pub(crate) blast: Rate,
    pub(crate) ordered: Rate,
    /// Rollbacks and ops replayed over the three peers in the ordered run.
    /// Op copies sent, duplicates received, ops grafted and ops repaired
    /// during the commutative phase.
    pub(crate) blast_relay: [u64; 4],
    pub(crate) ordered_replays: (u64, u64),
    pub(crate) codec: Codec,
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

fn rate(r: Rate) -> String {
    let per_sec = r.per_sec();
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else {
        format!("{:.1} k/s", per_sec / 1e3)
    }
}

/// Print the comparison table and the reference figures.
pub(crate) fn print(r: &Results) {
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!();
    println!(
        "{:<34} {:>13} {:>15} {:>8} {:>7}",
        "", "plexus", "raw quinn", "ratio", "goal"
    );
    let (o, p, q) = (&r.shout_to_all, &r.ping, &r.raw_rtt);
    for (name, a, b, goal) in [
        ("shout → applied on all p50", o.p50, q.p50, "≤ 1.5×"),
        ("shout → applied on all p99", o.p99, q.p99, ""),
        ("shout → applied on all p99.9", o.p999, q.p999, ""),
        ("full round trip p50 (shout → acks)", p.p50, q.p50, ""),
        ("full round trip p99", p.p99, q.p99, ""),
        ("full round trip p99.9", p.p999, q.p999, ""),
    ] {
        println!(
            "{name:<34} {:>13} {:>15} {:>7.2}× {goal:>7}",
            us(a),
            us(b),
            ratio(a, b)
        );
    }
    println!(
        "{:<34} {:>13} {:>15} {:>7.1}% {:>7}",
        "throughput, applied on all 3",
        rate(r.blast),
        rate(r.fan_batched),
        100.0 * r.blast.per_sec() / r.fan_batched.per_sec().max(1e-9),
        "≥ 25%"
    );
    println!(
        "{:<34} {:>10.2} µs {:>12.2} µs {:>7.2}×",
        "CPU per op applied on all 3",
        r.blast.cpu_us(),
        r.fan_batched.cpu_us(),
        r.blast.cpu_us() / r.fan_batched.cpu_us().max(1e-9)
    );
    println!();
    println!("reference figures");
    println!(
        "  CPU time is user + system of every process in the phase (the three peers; for the raw \
         fan-out also the sender), from /proc: unlike wall-clock rates it does not count time \
         the machine gave to others"
    );
    println!(
        "  the raw quinn column is a round trip (peer 0 → peer 1 → peer 0) in every latency row: \
         shout → applied on all is one way to both receivers, timed with the shared monotonic clock"
    );
    let both = &r.raw_rtt_both;
    println!(
        "  raw round trip to both receivers at once: p50 {}  p99 {}  p99.9 {}  (plexus p50 is {:.2}× this)",
        us(both.p50),
        us(both.p99),
        us(both.p999),
        ratio(p.p50, both.p50)
    );
    println!(
        "  samples: plexus {} (one way mean {}, max {}; round trip mean {}, max {}), raw {} (mean {}, max {})",
        p.n,
        us(o.mean),
        us(o.max),
        us(p.mean),
        us(p.max),
        q.n,
        us(q.mean),
        us(q.max)
    );
    println!(
        "  raw fan-out, one write per frame: {}  (batched is {:.1}× faster)",
        rate(r.fan_single),
        r.fan_batched.per_sec() / r.fan_single.per_sec().max(1e-9)
    );
    let ops = r.blast.messages.max(1) as f64;
    let [sent, duplicates, grafted, repaired] = r.blast_relay;
    println!(
        "  relay during the commutative phase: {:.2} op copies sent per op (2 = a perfect tree of 3), {:.3} duplicates, {:.3} grafted, {:.3} repaired per op",
        sent as f64 / ops,
        duplicates as f64 / ops,
        grafted as f64 / ops,
        repaired as f64 / ops
    );
    println!(
        "  plexus ordered (non-commutative) shouts from all 3: {}  ({} rollbacks, {} ops replayed)",
        rate(r.ordered),
        r.ordered_replays.0,
        r.ordered_replays.1
    );
    let c = &r.codec;
    println!(
        "  op frame: {} bytes on the wire (+4-byte prefix) for a {}-byte argument, {} in a run (same object and origin as the op before it on the link); op payload {} bytes ({} as Vec<u8>)",
        c.frame_len,
        crate::PAYLOAD,
        c.short_len,
        c.payload_len,
        c.vec_payload_len
    );
    println!(
        "  codec per op: payload encode {:.0} ns, frame encode {:.0} ns, frame decode {:.0} ns, payload decode {:.0} ns (Vec<u8> payload enc+dec {:.0} ns)",
        c.op_encode_ns, c.frame_encode_ns, c.frame_decode_ns, c.op_decode_ns, c.vec_op_ns
    );
}
