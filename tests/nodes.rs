//! Nodes over the in-memory transport: the public API end to end.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus::{
    replicated, CreateError, Delivery, Leaf, LinkError, MembershipEvent, MemoryHub, Node,
    NodeConfig, NodeId, OpId, OpenError, RegisterError, Replicated, ShoutError, Transport,
};
use serde::{Deserialize, Serialize};

/// A type whose ops do not commute: the order shows in `log`.
#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.Board")]
pub struct Board {
    pub log: Vec<String>,
    pub hits: u64,
    /// Every shout counts itself here, so tests can wait for a total.
    pub ops: u64,
}

#[replicated]
impl Board {
    #[shout]
    pub fn write(&mut self, who: String, n: u32) {
        self.log.push(format!("{who}:{n}"));
        self.ops += 1;
    }

    #[shout]
    pub fn wipe(&mut self) {
        self.log.clear();
        self.ops += 1;
    }

    #[shout(commutative)]
    pub fn hit(&mut self, by: u64) {
        self.hits += by;
        self.ops += 1;
    }

    #[shout]
    pub fn blob(&mut self, bytes: Vec<u8>) {
        self.log.push(format!("blob of {}", bytes.len()));
        self.ops += 1;
    }
}

/// Another Rust type that (wrongly) claims the same tag.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "test.Board")]
pub struct Impostor {
    pub x: u8,
}

#[replicated]
impl Impostor {
    #[shout]
    pub fn set(&mut self, x: u8) {
        self.x = x;
    }
}

/// Records what it hears.
struct Recorder(Arc<Mutex<Vec<OpId>>>);

impl BoardObserver for Recorder {
    fn write(&mut self, _: &Board, _: &String, _: &u32, d: &Delivery) {
        self.0.lock().expect("not poisoned").push(d.op);
    }
    fn wipe(&mut self, _: &Board, d: &Delivery) {
        self.0.lock().expect("not poisoned").push(d.op);
    }
    fn hit(&mut self, _: &Board, _: &u64, d: &Delivery) {
        self.0.lock().expect("not poisoned").push(d.op);
    }
    fn blob(&mut self, _: &Board, _: &Vec<u8>, d: &Delivery) {
        self.0.lock().expect("not poisoned").push(d.op);
    }
}

const WAIT: Duration = Duration::from_secs(20);

async fn nodes(hub: &MemoryHub, n: usize) -> Vec<Node> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Node::builder()
                .transport(Transport::memory(hub))
                .start()
                .await
                .expect("starts"),
        );
    }
    out
}

/// Node 0 creates the board, the others open it; each gets a recorder.
async fn boards(nodes: &[Node]) -> (Vec<Leaf<Board>>, Vec<Arc<Mutex<Vec<OpId>>>>) {
    let mut leaves = vec![nodes[0]
        .create("board", Board::default())
        .await
        .expect("created")];
    for node in &nodes[1..] {
        leaves.push(node.open("board").await.expect("opened"));
    }
    let mut heard = Vec::new();
    for leaf in &leaves {
        let log = Arc::new(Mutex::new(Vec::new()));
        leaf.observe(Recorder(log.clone()));
        heard.push(log);
    }
    (leaves, heard)
}

/// Every node shouts concurrently; then all must agree and each observer
/// must have heard every op exactly once.
async fn concurrent_shouts_converge(leaves: &[Leaf<Board>], heard: &[Arc<Mutex<Vec<OpId>>>]) {
    let per_node = 30u32;
    let mut tasks = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let leaf = leaf.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..per_node {
                let id = match n % 10 {
                    7 => leaf.shout_hit(u64::from(n)).await,
                    9 if i == 0 => leaf.shout_wipe().await,
                    _ => leaf.shout_write(format!("n{i}"), n).await,
                };
                ids.push(id.expect("shout accepted"));
                tokio::task::yield_now().await;
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task ran"));
    }
    let total = all.len() as u64;
    for leaf in leaves {
        tokio::time::timeout(WAIT, leaf.wait_until_admitted(|b| b.ops == total))
            .await
            .expect("every op arrives");
    }
    let first = leaves[0].read(Board::clone);
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(leaf.read(Board::clone), first, "node {i} differs");
    }
    // By origin and seq: a node's first ops on an object it did not create
    // are re-stamped (a later Lamport time) when a member admits it, and
    // its own observer heard them under their first stamp.
    let mut all: Vec<(NodeId, u64)> = all.iter().map(|id| (id.origin, id.seq)).collect();
    all.sort();
    for (i, log) in heard.iter().enumerate() {
        let mut got: Vec<(NodeId, u64)> = log
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|id| (id.origin, id.seq))
            .collect();
        got.sort();
        assert_eq!(
            got, all,
            "node {i}'s observer must hear every op exactly once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_converges() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    n[1].link(n[2].local_addr()).await.expect("linked");
    let (leaves, heard) = boards(&n).await;
    concurrent_shouts_converge(&leaves, &heard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_stats_count_what_the_layers_did() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    n[1].link(n[2].local_addr()).await.expect("linked");
    let (leaves, heard) = boards(&n).await;
    concurrent_shouts_converge(&leaves, &heard).await;
    let middle = n[1].gossip_stats().await;
    assert_eq!(middle.relay, n[1].stats().await);
    // 90 ops, each seen once here and pushed on to the end that lacks it.
    assert_eq!(middle.relay.ops_seen, 90);
    assert!(middle.tree.pushed >= 90, "{middle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_converges() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 5).await;
    for other in &n[1..] {
        other.link(n[0].local_addr()).await.expect("linked");
    }
    let (leaves, heard) = boards(&n).await;
    concurrent_shouts_converge(&leaves, &heard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycle_converges() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    n[1].link(n[2].local_addr()).await.expect("linked");
    n[2].link(n[0].local_addr()).await.expect("linked");
    let (leaves, heard) = boards(&n).await;
    concurrent_shouts_converge(&leaves, &heard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_after_100_shouts() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    let a = n[0]
        .create("board", Board::default())
        .await
        .expect("created");
    let b: Leaf<Board> = n[1].open("board").await.expect("opened");
    for i in 0..100u32 {
        let leaf = if i % 2 == 0 { &a } else { &b };
        leaf.shout_write(format!("w{}", i % 2), i)
            .await
            .expect("accepted");
    }
    for leaf in [&a, &b] {
        tokio::time::timeout(WAIT, leaf.wait_until(|x| x.log.len() == 100))
            .await
            .expect("all 100");
    }
    // The third node links to the second and joins late.
    n[2].link(n[1].local_addr()).await.expect("linked");
    let c: Leaf<Board> = n[2].open("board").await.expect("late open");
    assert_eq!(c.read(Board::clone), a.read(Board::clone));
    // And it takes part from now on.
    c.shout_write("late".into(), 0).await.expect("accepted");
    for leaf in [&a, &b, &c] {
        tokio::time::timeout(WAIT, leaf.wait_until(|x| x.log.len() == 101))
            .await
            .expect("101");
    }
    assert_eq!(c.read(Board::clone), a.read(Board::clone));
    assert_eq!(b.read(Board::clone), a.read(Board::clone));
}

#[tokio::test]
async fn two_types_with_one_tag_fail_at_registration_naming_both() {
    let hub = MemoryHub::new();
    let node = &nodes(&hub, 1).await[0];
    node.register::<Board>().expect("first registration");
    node.register::<Board>().expect("registering again is fine");
    let err = node
        .register::<Impostor>()
        .expect_err("a second type under one tag");
    let RegisterError::TagConflict {
        tag,
        registered,
        attempted,
    } = err.clone()
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(tag, "test.Board");
    assert!(registered.ends_with("Board") && attempted.ends_with("Impostor"));
    let message = err.to_string();
    assert!(
        message.contains("nodes::Board") && message.contains("nodes::Impostor"),
        "{message}"
    );
    assert!(matches!(
        node.create("x", Impostor::default()).await,
        Err(CreateError::Register(RegisterError::TagConflict { .. }))
    ));
}

#[tokio::test]
async fn creating_twice_fails_and_open_returns_the_local_copy() {
    let hub = MemoryHub::new();
    let node = &nodes(&hub, 1).await[0];
    let a = node.create("b", Board::default()).await.expect("created");
    assert!(matches!(
        node.create("b", Board::default()).await,
        Err(CreateError::Exists(_))
    ));
    let again: Leaf<Board> = node.open("b").await.expect("local open");
    a.shout_hit(2).await.expect("accepted");
    assert_eq!(
        again.read(|b| b.hits),
        2,
        "local shouts apply before the future resolves"
    );
    assert!(matches!(
        node.create("", Board::default()).await,
        Err(CreateError::InvalidName(_))
    ));
}

#[tokio::test]
async fn opening_what_nobody_holds_is_a_typed_error() {
    let hub = MemoryHub::new();
    let config = NodeConfig {
        open_timeout: Duration::from_millis(200),
        ..NodeConfig::default()
    };
    let start = || {
        Node::builder()
            .transport(Transport::memory(&hub))
            .config(config.clone())
            .start()
    };
    let alone = start().await.expect("starts");
    let err = alone
        .open::<Board>("ghost")
        .await
        .expect_err("no links, no answer");
    assert!(matches!(err, OpenError::NotFound { .. }), "{err:?}");

    let a = start().await.expect("starts");
    a.link(alone.local_addr()).await.expect("linked");
    let err = a.open::<Board>("ghost").await.expect_err("nobody holds it");
    assert!(matches!(err, OpenError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn oversize_shouts_fail_at_the_caller_and_change_nothing() {
    let hub = MemoryHub::new();
    let node = Node::builder()
        .transport(Transport::memory(&hub))
        .max_frame(4096)
        .start()
        .await
        .expect("starts");
    let board = node.create("b", Board::default()).await.expect("created");
    let err = board
        .shout_blob(vec![7; 8192])
        .await
        .expect_err("over the frame limit");
    assert!(
        matches!(err, ShoutError::TooLarge { max: 4096, .. }),
        "{err:?}"
    );
    assert_eq!(
        board.read(Board::clone),
        Board::default(),
        "nothing was applied"
    );
    board
        .shout_blob(vec![7; 1024])
        .await
        .expect("a blob that fits");
}

#[tokio::test]
async fn links_are_checked() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 2).await;
    assert!(matches!(
        n[0].link(n[0].local_addr()).await,
        Err(LinkError::SelfLink)
    ));
    let peer = n[0].link(n[1].local_addr()).await.expect("linked");
    assert_eq!(peer, n[1].id());
    let gone = n[1].local_addr();
    n[1].shutdown();
    assert!(matches!(
        n[0].link(gone).await,
        Err(LinkError::Unreachable(_))
    ));
    let bad = Node::builder()
        .transport(Transport::memory(&hub))
        .max_frame(10)
        .start()
        .await;
    assert!(bad.is_err(), "a 10-byte frame limit is refused");
}

/// An observer that (wrongly) reads its own object.
struct Nosy(Leaf<Board>, Arc<Mutex<u32>>);

impl BoardObserver for Nosy {
    fn hit(&mut self, _: &Board, _: &u64, _: &Delivery) {
        *self.1.lock().expect("not poisoned") += 1;
        let _ = self.0.read(|b| b.hits); // would deadlock; panics instead
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_observer_does_not_stop_replication() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 2).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    let a = n[0].create("b", Board::default()).await.expect("created");
    let b: Leaf<Board> = n[1].open("b").await.expect("opened");
    let calls = Arc::new(Mutex::new(0));
    b.observe(Nosy(b.clone(), calls.clone()));
    a.observe(Nosy(a.clone(), calls.clone()));
    for _ in 0..3 {
        a.shout_hit(1).await.expect("accepted");
    }
    a.shout_write("after".into(), 1).await.expect("accepted");
    tokio::time::timeout(WAIT, b.wait_until(|x| x.ops == 4))
        .await
        .expect("all four arrive");
    assert_eq!(b.read(|x| x.hits), 3);
    assert_eq!(
        *calls.lock().expect("not poisoned"),
        6,
        "both observers ran for each hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_data_spreads_and_the_frame_limit() {
    use plexus::{SendError, Spread};

    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    n[1].link(n[2].local_addr()).await.expect("linked");
    let (mut rx1, mut rx2) = (n[1].data(), n[2].data());
    n[0].send_data(b"hello all".to_vec(), Spread::Broadcast)
        .await
        .expect("sent");
    let mut hello = None;
    for rx in [&mut rx1, &mut rx2] {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("arrives")
            .expect("open");
        assert_eq!(
            (got.from, got.payload.as_slice()),
            (n[0].id(), &b"hello all"[..])
        );
        hello = Some(got.clock);
    }
    n[2].send_data(b"just you".to_vec(), Spread::Direct(n[1].id()))
        .await
        .expect("linked");
    let got = tokio::time::timeout(WAIT, rx1.recv())
        .await
        .expect("arrives")
        .expect("open");
    assert_eq!(got.payload, b"just you");
    // Node 2 sent after it received the broadcast: the vector clocks say so.
    let hello = hello.expect("the broadcast arrived");
    assert!(
        hello.happened_before(&got.clock),
        "{hello:?} before {:?}",
        got.clock
    );
    let err = n[2]
        .send_data(vec![], Spread::Direct(n[0].id()))
        .await
        .expect_err("not linked");
    assert!(matches!(err, SendError::Spread(_)), "{err:?}");
    let err = n[0]
        .send_data(vec![0; 2 << 20], Spread::Broadcast)
        .await
        .expect_err("too big");
    assert!(matches!(err, SendError::TooLarge { .. }), "{err:?}");
}

/// Stopping a node stops its connection actors (the repeater supervises
/// them): every peer sees the link go down, and the node holds no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_closes_every_link() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 3).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    n[0].link(n[2].local_addr()).await.expect("linked");
    let mut watchers: Vec<_> = n[1..].iter().map(|p| p.events()).collect();
    let gone = n[0].id();
    n[0].shutdown();
    for events in &mut watchers {
        tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await.expect("the peer is running") {
                    MembershipEvent::PeerDown(p) if p == gone => break,
                    _ => {}
                }
            }
        })
        .await
        .expect("the peer sees the link go down");
    }
    for peer in &n[1..] {
        assert!(peer.links().await.is_empty());
    }
    assert!(n[0].links().await.is_empty());
}

#[tokio::test]
async fn links_report_the_traffic_each_way() {
    let hub = MemoryHub::new();
    let n = nodes(&hub, 2).await;
    n[0].link(n[1].local_addr()).await.expect("linked");
    let (leaves, _) = boards(&n).await;
    let before = n[0].links().await;
    for i in 0..20 {
        leaves[0].shout_write("a".into(), i).await.expect("shouted");
    }
    leaves[1].wait_until(|b| b.log.len() == 20).await;
    let (a, b) = (n[0].links().await, n[1].links().await);
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!((a[0].peer, b[0].peer), (n[1].id(), n[0].id()));
    // At least one message per op went from a to b (ops may share none).
    assert!(a[0].sent.messages >= before[0].sent.messages + 20, "{a:?}");
    // Each op's frame: a 4-byte prefix, then at least its version, kind,
    // ids and payload (a run's later ops leave out the object and origin).
    assert!(a[0].sent.bytes >= before[0].sent.bytes + 20 * 10, "{a:?}");
    // What b received came from a: it cannot be more than a sent.
    assert!(b[0].received.messages >= 20 && b[0].received.messages <= a[0].sent.messages);
    assert!(b[0].received.bytes <= a[0].sent.bytes);
}
