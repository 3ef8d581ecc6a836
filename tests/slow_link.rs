//! A peer that falls behind costs its writers bounded memory: two nodes
//! over QUIC on 127.0.0.1; the receiver's socket drops everything to and
//! from the writer (faults injected under QUIC) while the writer shouts
//! 4 MB of ops, far more than QUIC's own windows take. The ops that found
//! the link's queue over `max_link_queue` are shed, so the queue stays
//! bounded; once the path is back, anti-entropy repairs them and both
//! replicas are equal.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use plexus::faults::Faults;
use plexus::tls::ClusterCa;
use plexus::{replicated, LinkInfo, Node, NodeConfig, Replicated, Transport};
use serde::{Deserialize, Serialize};

use common::{loopback_quic, socket_of};
use serde_bytes::ByteBuf;

#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.Blobs")]
pub struct Blobs {
    pub count: u64,
    pub bytes: u64,
}

#[replicated]
impl Blobs {
    #[shout]
    pub fn put(&mut self, data: ByteBuf) {
        self.count += 1;
        self.bytes += data.len() as u64;
    }
}

/// The writer's bound on a link's queue.
const BOUND: usize = 256 << 10;
/// The largest frame (the bound must be at least this).
const MAX_FRAME: usize = 64 << 10;
/// Ops shouted while the receiver is cut off, 1 KiB each.
const OPS: u64 = 4_000;
/// The failure bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(60);

async fn start(ca: &ClusterCa, name: &str, faults: Option<Faults>) -> Node {
    let mut quic = loopback_quic(ca, name);
    quic.faults = faults;
    let mut config = NodeConfig::default();
    config.anti_entropy.interval = Duration::from_millis(200);
    Node::builder()
        .transport(Transport::quic(quic))
        .config(config)
        .max_frame(MAX_FRAME)
        .max_link_queue(Some(BOUND))
        .start()
        .await
        .expect("the node starts")
}

async fn link_to(node: &Node, peer: &Node) -> LinkInfo {
    node.links()
        .await
        .into_iter()
        .find(|l| l.peer == peer.id())
        .expect("linked to the peer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_costs_bounded_memory_and_catches_up_by_anti_entropy() {
    let ca = ClusterCa::generate("slow-link").expect("a CA");
    let faults = Faults::with_seed(1);
    let writer = start(&ca, "writer", None).await;
    let reader = start(&ca, "reader", Some(faults.clone())).await;
    writer.link(reader.local_addr()).await.expect("linked");
    let ours = writer
        .create("blobs", Blobs::default())
        .await
        .expect("created");
    let theirs = tokio::time::timeout(WAIT, reader.open::<Blobs>("blobs"))
        .await
        .expect("opened in time")
        .expect("opened");

    faults.partition([socket_of(&writer)]);
    let blob = ByteBuf::from(vec![7u8; 1024]);
    for _ in 0..OPS {
        ours.shout_put(blob.clone()).await.expect("shouted");
    }
    // Let the repeater hand every op to the link (or shed it).
    tokio::time::timeout(WAIT, async {
        loop {
            let link = link_to(&writer, &reader).await;
            if link.sent.messages + link.shed >= OPS {
                return link;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every op queued or shed");
    let link = link_to(&writer, &reader).await;
    eprintln!(
        "cut off: {} bytes queued for the reader, {} ops shed, {} messages sent",
        link.queued, link.shed, link.sent.messages
    );
    assert!(
        link.queued <= (BOUND + MAX_FRAME) as u64,
        "the queue for a stalled peer stays within its bound: {} bytes",
        link.queued
    );
    assert!(
        link.shed > 0,
        "4 MB of ops outgrew QUIC's windows and the bound"
    );

    faults.heal();
    let want = ours.read(Clone::clone);
    assert_eq!(want.count, OPS);
    tokio::time::timeout(WAIT, theirs.wait_until(|b| b.count == OPS))
        .await
        .expect("the reader catches up once the path is back");
    assert_eq!(theirs.read(Clone::clone), want);
    let gossip = reader.gossip_stats().await;
    eprintln!("caught up; the reader's anti-entropy: {gossip:?}");
}

#[tokio::test]
async fn a_link_queue_smaller_than_a_frame_is_refused_at_start() {
    let hub = plexus::MemoryHub::new();
    let err = Node::builder()
        .transport(Transport::memory(&hub))
        .max_frame(MAX_FRAME)
        .max_link_queue(Some(MAX_FRAME - 1))
        .start()
        .await
        .expect_err("a bound below one frame could never queue a large op");
    assert!(
        matches!(&err, plexus::StartError::Config(m) if m.contains("max_link_queue")),
        "{err}"
    );
    // At least one frame, or no bound at all, is fine.
    for bound in [Some(MAX_FRAME), None] {
        let node = Node::builder()
            .transport(Transport::memory(&hub))
            .max_frame(MAX_FRAME)
            .max_link_queue(bound)
            .start()
            .await
            .expect("starts");
        node.shutdown();
    }
}
