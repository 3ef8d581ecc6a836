//! Five real processes over QUIC on 127.0.0.1, with faults injected under
//! QUIC by [`plexus::faults`]: 20% loss both ways while 1,000 shouts are
//! made from every node at once; a 2|3 partition for 10 s with shouts on
//! both sides, then heal; a node killed with SIGKILL while the others shout,
//! restarted, catching up. Every acknowledged shout is applied everywhere
//! and every snapshot is equal.
//!
//! The peers are this test binary run again (the `fault_child_entry` test,
//! which does nothing unless `PLEXUS_FAULT_CHILD` is set); they take
//! commands as lines on stdin and exit when it closes.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use plexus::faults::{Direction, Faults, Target};
use plexus::tls::{ClusterCa, Identity, Trust};
use plexus::{replicated, Leaf, Node, NodeConfig, QuicConfig, Replicated, Transport};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader};
use tokio::sync::broadcast::error::RecvError;

#[path = "common/child.rs"]
mod child;

use child::Peer;

#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.Ledger")]
pub struct Ledger {
    pub entries: Vec<(String, u32)>,
}

#[replicated]
impl Ledger {
    #[shout]
    pub fn record(&mut self, who: String, n: u32) {
        self.entries.push((who, n));
    }
}

const NODES: usize = 5;
/// The anti-entropy interval of every child.
const ROUND: Duration = Duration::from_millis(500);
/// The failure bound on anything a child waits for.
const WAIT: Duration = Duration::from_secs(90);

/// A peer process: this test binary on `fault_child_entry`.
fn spawn_peer(dir: &Path, index: usize) -> Peer {
    let index = index.to_string();
    Peer::spawn(
        "fault_child_entry",
        &[
            ("PLEXUS_FAULT_CHILD", index.as_ref()),
            ("PLEXUS_FAULT_DIR", dir.as_os_str()),
        ],
    )
}

fn all(peers: &mut [Peer], line: &str, reply: &str) -> Vec<String> {
    for p in peers.iter_mut() {
        p.say(line);
    }
    peers.iter_mut().map(|p| p.expect(reply)).collect()
}

/// Every peer reaches `total` entries; their digests are equal. Returns how
/// long the slowest took.
fn converge(peers: &mut [Peer], total: usize, what: &str) -> Duration {
    let start = Instant::now();
    let finals = all(peers, &format!("expect {total}"), "final");
    let took = start.elapsed();
    assert!(
        finals.iter().all(|f| *f == finals[0]),
        "{what}: the processes differ: {finals:?}"
    );
    assert!(
        finals[0].starts_with(&format!("{total} entries")),
        "{what}: {finals:?}"
    );
    took
}

#[test]
fn five_processes_converge_through_loss_partition_and_kill() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = ClusterCa::generate("faults").expect("a CA");
    ca.save(dir.path()).expect("saved");
    for i in 0..NODES {
        let identity = ca
            .issue(Identity::generate().expect("key"), &format!("n{i}"))
            .expect("cert");
        identity
            .save(&dir.path().join(format!("n{i}")))
            .expect("saved");
    }
    let mut peers: Vec<Peer> = (0..NODES).map(|i| spawn_peer(dir.path(), i)).collect();
    let addrs: Vec<String> = peers.iter_mut().map(|p| p.expect("listening")).collect();
    let mesh = format!("mesh {}", addrs.join(" "));
    all(&mut peers, &mesh, "meshed");
    peers[0].say("create");
    peers[0].expect("ready");
    for p in &mut peers[1..] {
        p.say("open");
        p.expect("ready");
    }

    // 1. 20% loss both ways while every node shouts 200 at once.
    all(&mut peers, "loss 0.2", "ok");
    all(&mut peers, "shout 200", "shouted");
    let took = converge(&mut peers, 1000, "20% loss");
    all(&mut peers, "loss 0", "ok");
    eprintln!("20% loss: 1,000 shouts applied on all five in {took:?}");

    // 2. A 2|3 partition for 10 s with shouts on both sides, then heal.
    let (left, right) = ([0usize, 1], [2usize, 3, 4]);
    let cut = |side: &[usize]| {
        let addrs: Vec<&str> = side.iter().map(|i| addrs[*i].as_str()).collect();
        format!("partition {}", addrs.join(" "))
    };
    let (to_left, to_right) = (cut(&left), cut(&right));
    for &i in &left {
        peers[i].say(&to_right);
        peers[i].expect("ok");
    }
    for &i in &right {
        peers[i].say(&to_left);
        peers[i].expect("ok");
    }
    peers[0].say("shout 50");
    peers[2].say("shout 50");
    peers[0].expect("shouted");
    peers[2].expect("shouted");
    peers[0].say("count");
    let during = peers[0].expect("count");
    assert_eq!(during, "1050", "the left side sees only its own new shouts");
    // The partition lasts 10 s: a scenario's length, not a wait for a result.
    std::thread::sleep(Duration::from_secs(10));
    all(&mut peers, "heal", "ok");
    let took = converge(&mut peers, 1100, "2|3 partition");
    eprintln!(
        "2|3 partition for 10 s: converged {took:?} after the heal ({:.1} anti-entropy rounds \
         of {ROUND:?})",
        took.as_secs_f64() / ROUND.as_secs_f64()
    );

    // 3. Node 4 is killed with SIGKILL while nodes 0-3 shout; it restarts
    //    from its identity and catches up.
    for p in &mut peers[..4] {
        p.say("shout 200");
    }
    peers[4].kill();
    for p in &mut peers[..4] {
        p.expect("shouted");
    }
    peers[4] = spawn_peer(dir.path(), 4);
    let reborn = peers[4].expect("listening");
    let mut addrs = addrs.clone();
    addrs[4] = reborn;
    peers[4].say(&format!("mesh {}", addrs.join(" ")));
    peers[4].expect("meshed");
    peers[4].say("open");
    peers[4].expect("ready");
    let took = converge(&mut peers, 1900, "kill and restart");
    eprintln!("SIGKILL and restart: all five at 1,900 entries {took:?} after the restart");
}

/// The child side.
#[test]
fn fault_child_entry() {
    let Ok(index) = std::env::var("PLEXUS_FAULT_CHILD") else {
        return;
    };
    let dir = std::env::var("PLEXUS_FAULT_DIR").expect("the parent gives a dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run_child(index.parse().expect("an index"), Path::new(&dir)));
}

async fn run_child(index: usize, dir: &Path) {
    let ca = plexus::tls::load_ca_certificate(&dir.join("ca.crt")).expect("the CA cert");
    let identity = Identity::load(&dir.join(format!("n{index}"))).expect("the identity");
    let faults = Faults::with_seed(index as u64);
    let mut quic = QuicConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        identity,
        Trust::ca(ca),
    );
    quic.keep_alive = Duration::from_millis(500);
    quic.idle_timeout = Duration::from_secs(3);
    quic.reconnect_max = Duration::from_millis(500);
    quic.faults = Some(faults.clone());
    let mut config = NodeConfig::default();
    config.anti_entropy.interval = ROUND;
    let node = Node::builder()
        .transport(Transport::quic(quic))
        .config(config)
        .start()
        .await
        .expect("the node starts");
    let me = node.local_addr().to_string();
    println!("listening {me}");
    let mut ledger: Option<Leaf<Ledger>> = None;
    let mut sent = 0u32;
    let mut lines = AsyncBufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        match cmd {
            "mesh" => {
                let mut events = node.events();
                let others: Vec<&str> = args.iter().copied().filter(|a| *a != me).collect();
                for addr in &others {
                    let addr: SocketAddr = addr.parse().expect("an address");
                    node.keep_linking(addr);
                }
                let want = others.len();
                tokio::time::timeout(WAIT, async {
                    while node.links().await.len() < want {
                        // Wake on the next membership change, not a timer.
                        if let Err(RecvError::Closed) = events.recv().await {
                            panic!("the node stopped");
                        }
                    }
                })
                .await
                .expect("linked to every other node");
                println!("meshed");
            }
            "create" => {
                ledger = Some(
                    node.create("ledger", Ledger::default())
                        .await
                        .expect("created"),
                );
                println!("ready");
            }
            "open" => {
                let leaf = tokio::time::timeout(WAIT, async {
                    loop {
                        match node.open::<Ledger>("ledger").await {
                            Ok(leaf) => return leaf,
                            // No linked node answered in time (links still
                            // coming up after a restart): ask again.
                            Err(e) => eprintln!("child {index}: open: {e}; again"),
                        }
                    }
                })
                .await
                .expect("opened");
                ledger = Some(leaf);
                println!("ready");
            }
            "loss" => {
                let p: f64 = args
                    .first()
                    .and_then(|a| a.parse().ok())
                    .expect("a probability");
                faults.set_loss(Target::All, Direction::Both, p);
                println!("ok");
            }
            "partition" => {
                let addrs: Vec<SocketAddr> = args
                    .iter()
                    .map(|a| a.parse().expect("an address"))
                    .collect();
                faults.partition(addrs);
                println!("ok");
            }
            "heal" => {
                faults.heal();
                println!("ok");
            }
            "shout" => {
                let n: u32 = args.first().and_then(|a| a.parse().ok()).expect("a count");
                let leaf = ledger.clone().expect("create or open first");
                for _ in 0..n {
                    leaf.shout_record(format!("n{index}"), sent)
                        .await
                        .expect("accepted");
                    sent += 1;
                }
                println!("shouted");
            }
            "count" => {
                let leaf = ledger.clone().expect("create or open first");
                println!("count {}", leaf.read(|l| l.entries.len()));
            }
            "expect" => {
                let total: usize = args.first().and_then(|a| a.parse().ok()).expect("a count");
                let leaf = ledger.clone().expect("create or open first");
                // Every entry here, none of our own awaiting admission (a
                // node's first shouts are re-stamped once a member admits
                // it, and may move in the order).
                tokio::time::timeout(WAIT, leaf.wait_until_admitted(|l| l.entries.len() >= total))
                    .await
                    .expect("every entry arrives");
                let state = leaf.read(Ledger::clone);
                let mut bytes = Vec::new();
                ciborium::into_writer(&state, &mut bytes).expect("encodes");
                let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                println!("final {} entries, digest {sum:016x}", state.entries.len());
            }
            _ => {}
        }
    }
}
