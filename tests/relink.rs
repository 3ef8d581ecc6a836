//! A node cut off long enough that every one of its connections times out
//! gets back in once the path heals: three nodes over QUIC on 127.0.0.1
//! with short idle timeouts; node C's socket drops everything to and from
//! the others (faults injected under QUIC) until C is `Disconnected`, while
//! both sides shout; then the path heals. C must be `Connected` again and
//! every replica equal, both where C dialed its link (C redials) and where
//! it accepted one (its peer redials), and over an overlay joined through
//! seeds (C joins again).
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use plexus::faults::Faults;
use plexus::tls::ClusterCa;
use plexus::{
    replicated, HyParViewConfig, Leaf, MembershipEvent, Node, NodeConfig, NodeState, QuicConfig,
    Replicated, Transport,
};
use serde::{Deserialize, Serialize};

use common::{loopback_quic, socket_of};
use tokio::sync::broadcast::error::RecvError;

#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.Tally")]
pub struct Tally {
    pub total: u64,
}

#[replicated]
impl Tally {
    #[shout]
    pub fn add(&mut self, n: u64) {
        self.total += n;
    }
}

/// The failure bound on anything the test waits for.
const WAIT: Duration = Duration::from_secs(60);

fn quic(ca: &ClusterCa, name: &str, faults: Option<Faults>, idle: Duration) -> QuicConfig {
    let mut quic = loopback_quic(ca, name);
    // Reconnects are tried at least every second.
    quic.keep_alive = idle / 4;
    quic.idle_timeout = idle;
    quic.reconnect_initial = Duration::from_millis(50);
    quic.reconnect_max = Duration::from_secs(1);
    quic.faults = faults;
    quic
}

fn config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.anti_entropy.interval = Duration::from_millis(200);
    config.handshake_timeout = Duration::from_secs(1);
    config
}

async fn start(ca: &ClusterCa, name: &str, faults: Option<Faults>) -> Node {
    Node::builder()
        // Connections die a second into the cut.
        .transport(Transport::quic(quic(
            ca,
            name,
            faults,
            Duration::from_secs(1),
        )))
        .config(config())
        .start()
        .await
        .expect("the node starts")
}

async fn reach(node: &Node, state: NodeState) {
    let mut events = node.events();
    let reached = async {
        while node.state() != state {
            match events.recv().await {
                Ok(MembershipEvent::State(s)) if s == state => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the node stopped"),
            }
        }
    };
    tokio::time::timeout(WAIT, reached)
        .await
        .unwrap_or_else(|_| panic!("never {state:?}: still {:?}", node.state()));
}

/// Cut `cut` off from `others` until it is `Disconnected`, shouting on both
/// sides, then heal and wait for it to be back and for every copy to agree.
async fn cut_and_heal(faults: &Faults, cut: &Node, others: &[&Node], leaves: &[Leaf<Tally>]) {
    faults.partition(others.iter().map(|n| socket_of(n)));
    for leaf in leaves {
        leaf.shout_add(1).await.expect("shouted");
    }
    let started = std::time::Instant::now();
    reach(cut, NodeState::Disconnected).await;
    eprintln!("cut off from every peer after {:?}", started.elapsed());
    for leaf in leaves {
        leaf.shout_add(10).await.expect("shouted");
    }
    faults.heal();
    let healed = std::time::Instant::now();
    reach(cut, NodeState::Connected).await;
    eprintln!("linked again {:?} after the heal", healed.elapsed());
    let want = 11 * leaves.len() as u64;
    for leaf in leaves {
        tokio::time::timeout(WAIT, leaf.wait_until(|t| t.total == want))
            .await
            .unwrap_or_else(|_| panic!("every copy gets every op: {:?}", leaf.read(Clone::clone)));
    }
    eprintln!("every copy equal {:?} after the heal", healed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_links_all_timed_out_links_again_after_the_heal() {
    let ca = ClusterCa::generate("relink").expect("a CA");
    let faults = Faults::with_seed(1);
    let a = start(&ca, "a", None).await;
    let b = start(&ca, "b", None).await;
    let c = start(&ca, "c", Some(faults.clone())).await;
    a.link(b.local_addr()).await.expect("a-b");
    // C dials A (C keeps that link) and B dials C (B keeps this one).
    c.link(a.local_addr()).await.expect("c-a");
    b.link(c.local_addr()).await.expect("b-c");
    let leaves = open_everywhere(&[&a, &b, &c]).await;
    cut_and_heal(&faults, &c, &[&a, &b], &leaves).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_node_cut_off_joins_again_through_its_seeds() {
    let ca = ClusterCa::generate("rejoin").expect("a CA");
    let faults = Faults::with_seed(2);
    // C's links die with their connections, three seconds into the cut
    // (SWIM, which would close them too, waits longer for a lone node:
    // its failed probes lower its own health score).
    const IDLE: Duration = Duration::from_secs(3);
    let overlay = || {
        let mut config = config();
        config.overlay = Some(HyParViewConfig::default());
        config
    };
    let a = Node::builder()
        .transport(Transport::quic(quic(&ca, "a", None, IDLE)))
        .config(overlay())
        .start()
        .await
        .expect("a starts");
    let b = Node::builder()
        .transport(Transport::quic(quic(&ca, "b", None, IDLE)))
        .config(overlay())
        .seeds([a.local_addr()])
        .start()
        .await
        .expect("b starts");
    let c = Node::builder()
        .transport(Transport::quic(quic(&ca, "c", Some(faults.clone()), IDLE)))
        .config(overlay())
        .seeds([a.local_addr(), b.local_addr()])
        .start()
        .await
        .expect("c starts");
    for node in [&b, &c] {
        reach(node, NodeState::Connected).await;
    }
    let leaves = open_everywhere(&[&a, &b, &c]).await;
    cut_and_heal(&faults, &c, &[&a, &b], &leaves).await;
}

/// Create the object on the first node, open it on the others, and have
/// every copy join the replica set (its first op admitted).
async fn open_everywhere(nodes: &[&Node]) -> Vec<Leaf<Tally>> {
    let mut leaves = vec![nodes[0]
        .create("tally", Tally::default())
        .await
        .expect("created")];
    for node in &nodes[1..] {
        let leaf = tokio::time::timeout(WAIT, node.open::<Tally>("tally"))
            .await
            .expect("opened in time")
            .expect("opened");
        leaves.push(leaf);
    }
    for leaf in &leaves {
        leaf.shout_add(0).await.expect("shouted");
    }
    for leaf in &leaves {
        tokio::time::timeout(WAIT, leaf.wait_until_admitted(|_| true))
            .await
            .expect("admitted");
    }
    leaves
}
