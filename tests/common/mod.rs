//! A replicated type written by hand (no macros), shared by the protocol
//! tests: some ops commute, most do not.

#![allow(dead_code, unreachable_pub)]

use plexus::{Delivery, Operation, Replicated, TypeTag};
use serde::{Deserialize, Serialize};

/// A small document: a list, a mark, a total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    pub items: Vec<String>,
    pub mark: u64,
    pub total: u64,
}

/// Its ops. `Add` is the only commutative one: it touches nothing else reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocOp {
    Push(String),
    Pop,
    Mark(u8),
    Add(u32),
}

impl TypeTag for Doc {
    const TYPE_TAG: &'static str = "test.Doc";
}

impl Operation for DocOp {
    const TAGS: &'static [&'static str] = &["Push", "Pop", "Mark", "Add"];

    fn tag(&self) -> &'static str {
        match self {
            DocOp::Push(_) => "Push",
            DocOp::Pop => "Pop",
            DocOp::Mark(_) => "Mark",
            DocOp::Add(_) => "Add",
        }
    }

    fn is_commutative(&self) -> bool {
        matches!(self, DocOp::Add(_))
    }
}

/// What a test observer records.
pub trait DocObserver: Send {
    fn applied(&mut self, op: &DocOp, delivery: &Delivery);
    fn stable(&mut self, op: &DocOp, delivery: &Delivery);
}

impl Replicated for Doc {
    type Op = DocOp;
    type Observer = dyn DocObserver;

    fn apply(&mut self, op: &DocOp) {
        match op {
            DocOp::Push(s) => {
                // Order-sensitive on purpose: the pushed item records the mark.
                self.items.push(format!("{s}/{}", self.mark));
            }
            DocOp::Pop => {
                self.items.pop();
            }
            DocOp::Mark(x) => self.mark = self.mark.wrapping_mul(31).wrapping_add(u64::from(*x)),
            DocOp::Add(n) => self.total = self.total.wrapping_add(u64::from(*n)),
        }
    }

    fn notify(observer: &mut Self::Observer, _: &Doc, op: &DocOp, delivery: &Delivery) {
        observer.applied(op, delivery);
    }

    fn notify_stable(observer: &mut Self::Observer, _: &Doc, op: &DocOp, delivery: &Delivery) {
        observer.stable(op, delivery);
    }
}

/// A random op: pushes, pops, marks (order-sensitive) and adds (commutative).
pub fn random_op(rng: &mut impl rand::Rng) -> DocOp {
    match rng.random_range(0..4) {
        0 => DocOp::Push(format!("{}", rng.random_range(0..100))),
        1 => DocOp::Pop,
        2 => DocOp::Mark(rng.random()),
        _ => DocOp::Add(rng.random()),
    }
}

/// Apply `ops` in id order to the default state: what every replica must
/// reach.
pub fn reference(mut ops: Vec<(plexus::OpId, DocOp)>) -> Doc {
    ops.sort_by_key(|(id, _)| *id);
    let mut doc = Doc::default();
    for (_, op) in &ops {
        doc.apply(op);
    }
    doc
}

/// Run `h` until `problem` finds nothing wrong, for at most `limit` of
/// virtual time (checked every 100 ms); returns the time it took.
pub fn settle<T: Replicated>(
    h: &mut plexus::sim::Harness<T>,
    limit: std::time::Duration,
    what: &str,
    problem: impl Fn(&plexus::sim::Harness<T>) -> Option<String>,
) -> std::time::Duration {
    let start = h.now();
    while let Some(why) = problem(h) {
        assert!(
            h.now().since(start) < limit,
            "{what}: not sound after {limit:?}: {why} (seed {})",
            h.seed()
        );
        h.run_for(std::time::Duration::from_millis(100));
    }
    h.now().since(start)
}

/// `n` harness nodes (seeded from `PLEXUS_SEED`), each linked to the next
/// on a ring and to `extra` random others.
pub fn ring_cluster<T: Replicated>(
    n: usize,
    extra: usize,
    config: plexus::sim::HarnessConfig,
) -> plexus::sim::Harness<T> {
    let mut h = plexus::sim::Harness::from_env(n, config);
    h.link_ring(extra);
    h
}

/// The repeater of the overlay tests: HyParView on, shuffling every 2 s.
pub fn overlay_repeater() -> plexus::proto::node::RepeaterConfig {
    plexus::proto::node::RepeaterConfig {
        overlay: Some(plexus::proto::hyparview::HyParViewConfig {
            shuffle_interval: std::time::Duration::from_secs(2),
            ..plexus::proto::hyparview::HyParViewConfig::default()
        }),
        ..plexus::proto::node::RepeaterConfig::default()
    }
}

/// The UDP socket a QUIC node listens on (what a fault injector's
/// partitions name).
pub fn socket_of(node: &plexus::Node) -> std::net::SocketAddr {
    match node.local_addr() {
        plexus::PeerAddr::Socket(addr) => addr,
        other => panic!("a QUIC node listens on a socket, not {other}"),
    }
}

/// A QUIC transport's settings on 127.0.0.1 (any port), with a key and a
/// certificate `ca` issued for `name`, trusting `ca`.
pub fn loopback_quic(ca: &plexus::tls::ClusterCa, name: &str) -> plexus::QuicConfig {
    use plexus::tls::{Identity, Trust};
    let identity = ca
        .issue(Identity::generate().expect("a key"), name)
        .expect("a certificate");
    plexus::QuicConfig::new(
        "127.0.0.1:0".parse().expect("an address"),
        identity,
        Trust::ca(ca.certificate()),
    )
}
