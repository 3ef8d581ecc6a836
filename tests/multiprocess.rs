//! Real processes on 127.0.0.1: three nodes converge on concurrent shouts,
//! and `plexus node --config` relays opaque ops between two sites.
//!
//! The peers are this test binary run again as child processes (the
//! `child_process_entry` test, which does nothing unless `PLEXUS_CHILD` is
//! set). Children talk to the parent by lines on stdin/stdout and exit when
//! their stdin closes, so none outlives a failed test.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use plexus::tls::{ClusterCa, Identity, Trust};
use plexus::{replicated, Leaf, Node, Replicated};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader};

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

const PER_NODE: u32 = 200;
const WAIT: Duration = Duration::from_secs(30);

/// A peer process: this test binary on `child_process_entry`.
fn spawn_peer(dir: &Path, index: usize) -> Peer {
    let index = index.to_string();
    Peer::spawn(
        "child_process_entry",
        &[
            ("PLEXUS_CHILD", index.as_ref()),
            ("PLEXUS_CHILD_DIR", dir.as_os_str()),
        ],
    )
}

#[test]
fn three_processes_converge_on_concurrent_shouts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = ClusterCa::generate("multiprocess").expect("a CA");
    ca.save(dir.path()).expect("saved");
    for i in 0..3 {
        let identity = ca
            .issue(Identity::generate().expect("key"), &format!("n{i}"))
            .expect("cert");
        identity
            .save(&dir.path().join(format!("n{i}")))
            .expect("saved");
    }
    let mut peers: Vec<Peer> = (0..3).map(|i| spawn_peer(dir.path(), i)).collect();
    let addrs: Vec<String> = peers.iter_mut().map(|p| p.expect("listening")).collect();
    // A triangle: two paths between any two nodes.
    peers[1].say(&format!("link {}", addrs[0]));
    peers[1].expect("linked");
    peers[2].say(&format!("link {}", addrs[0]));
    peers[2].expect("linked");
    peers[2].say(&format!("link {}", addrs[1]));
    peers[2].expect("linked");
    peers[0].say("create");
    peers[0].expect("ready");
    for p in &mut peers[1..] {
        p.say("open");
        p.expect("ready");
    }
    for p in &mut peers {
        p.say("go");
    }
    let finals: Vec<String> = peers.iter_mut().map(|p| p.expect("final")).collect();
    assert!(
        finals[0].contains(&format!("{} entries", 3 * PER_NODE)),
        "{finals:?}"
    );
    assert!(
        finals.iter().all(|f| *f == finals[0]),
        "the three processes differ: {finals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plexus_node_command_relays_opaque_ops_between_sites() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = ClusterCa::generate("relay").expect("a CA");
    ca.save(dir.path()).expect("saved");
    let relay_dir = dir.path().join("relay");
    ca.issue(Identity::generate().expect("key"), "relay")
        .expect("cert")
        .save(&relay_dir)
        .expect("saved");
    let site = dir.path().join("relay.toml");
    std::fs::write(
        &site,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"relay\"\nca = \"ca.crt\"\n",
    )
    .expect("site file");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["node", "--config"])
        .arg(&site)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("plexus node starts");
    let mut out = BufReader::new(relay.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)
        .expect("the relay prints its address");
    let relay_addr: SocketAddr = line.trim().parse().expect("an address");

    let trust = Trust::ca(ca.certificate());
    let start = |name: &str| {
        let identity = ca
            .issue(Identity::generate().expect("key"), name)
            .expect("cert");
        Node::builder()
            .listen("127.0.0.1:0".parse().expect("addr"))
            .identity(identity)
            .trust(trust.clone())
            .start()
    };
    let (a, c) = (start("a").await.expect("a"), start("c").await.expect("c"));
    a.link(relay_addr).await.expect("a links to the relay");
    c.link(relay_addr).await.expect("c links to the relay");
    let la: Leaf<Ledger> = a.create("l", Ledger::default()).await.expect("created");
    let lc: Leaf<Ledger> = c.open("l").await.expect("opened through the relay");
    la.shout_record("a".into(), 1).await.expect("accepted");
    lc.shout_record("c".into(), 2).await.expect("accepted");
    for leaf in [&la, &lc] {
        tokio::time::timeout(WAIT, leaf.wait_until(|l| l.entries.len() == 2))
            .await
            .expect("both");
    }
    assert_eq!(la.read(Ledger::clone), lc.read(Ledger::clone));
    let _ = relay.kill();
    let _ = relay.wait();
}

/// The child side of `three_processes_converge_on_concurrent_shouts`.
#[test]
fn child_process_entry() {
    let Ok(index) = std::env::var("PLEXUS_CHILD") else {
        return;
    };
    let dir = std::env::var("PLEXUS_CHILD_DIR").expect("the parent gives a dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run_child(index.parse().expect("an index"), Path::new(&dir)));
}

async fn run_child(index: usize, dir: &Path) {
    let ca = plexus::tls::load_ca_certificate(&dir.join("ca.crt")).expect("the CA cert");
    let identity = Identity::load(&dir.join(format!("n{index}"))).expect("the identity");
    let node = Node::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .identity(identity)
        .trust(Trust::ca(ca))
        .start()
        .await
        .expect("the node starts");
    println!("listening {}", node.local_addr());
    let mut ledger: Option<Leaf<Ledger>> = None;
    let mut lines = AsyncBufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "link" => {
                let addr: SocketAddr = arg.parse().expect("an address");
                node.link(addr).await.expect("linked");
                println!("linked");
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
                ledger = Some(node.open("ledger").await.expect("opened"));
                println!("ready");
            }
            "go" => {
                let leaf = ledger.clone().expect("create or open first");
                for n in 0..PER_NODE {
                    leaf.shout_record(format!("n{index}"), n)
                        .await
                        .expect("accepted");
                }
                let total = 3 * PER_NODE as usize;
                tokio::time::timeout(WAIT, leaf.wait_until_admitted(|l| l.entries.len() == total))
                    .await
                    .expect("every entry arrives");
                let state = leaf.read(Ledger::clone);
                let mut bytes = Vec::new();
                ciborium::into_writer(&state, &mut bytes).expect("encodes");
                let sum = bytes.iter().fold(0u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                println!("final {} entries, digest {sum:016x}", state.entries.len());
            }
            _ => {}
        }
    }
}
