//! The embedded store: acknowledged shouts survive a restart, objects
//! resume with their clocks, compaction keeps the log short, committed ops
//! still reach peers, and a damaged store is refused with a clear error.
#![allow(missing_docs)]

use std::path::Path;

use plexus::{
    replicated, Durability, Leaf, MemoryHub, Node, NodeConfig, Replicated, StartError, StoreConfig,
    StoreError, Transport, STORE_FILE,
};
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.Journal")]
pub struct Journal {
    pub lines: Vec<(String, u32)>,
}

#[replicated]
impl Journal {
    #[shout]
    pub fn write(&mut self, who: String, n: u32) {
        self.lines.push((who, n));
    }
}

async fn node(hub: &MemoryHub, dir: &Path, config: NodeConfig) -> Result<Node, StartError> {
    Node::builder()
        .transport(Transport::memory(hub))
        .data_dir(dir)
        .config(config)
        .start()
        .await
}

fn every(n: u64) -> NodeConfig {
    NodeConfig {
        store: StoreConfig {
            snapshot_every: n,
            ..StoreConfig::default()
        },
        ..NodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_shouts_survive_a_restart_at_every_durability() {
    for durability in [Durability::Sync, Durability::Group, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let hub = MemoryHub::new();
        let mut config = every(50);
        config.store.durability = durability;
        let amy = node(&hub, dir.path(), config.clone()).await.unwrap();
        let id = amy.id();
        let journal: Leaf<Journal> = amy.create("j", Journal::default()).await.unwrap();
        for n in 0..120 {
            journal.shout_write("amy".into(), n).await.unwrap();
        }
        amy.flush().await.unwrap();
        let before = journal.read(|j| j.clone());
        amy.shutdown();
        drop((journal, amy));

        let amy = node(&hub, dir.path(), config).await.unwrap();
        assert_eq!(amy.id(), id, "the node id is kept ({durability:?})");
        // `initial` is ignored: the store holds the object.
        let journal: Leaf<Journal> = amy.create("j", Journal::default()).await.unwrap();
        assert_eq!(journal.read(|j| j.clone()), before, "{durability:?}");
        // Its seqs and clock go on where they were: a new op sorts last.
        let next = journal.shout_write("amy".into(), 999).await.unwrap();
        assert_eq!(next.seq, 121, "{durability:?}");
        assert_eq!(
            journal.read(|j| j.lines.last().cloned()),
            Some(("amy".into(), 999))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_resumes_from_disk_and_committed_ops_reach_peers() {
    let hub = MemoryHub::new();
    let dir = tempfile::tempdir().unwrap();
    let amy = node(&hub, dir.path(), every(10)).await.unwrap();
    let bob = Node::builder()
        .transport(Transport::memory(&hub))
        .start()
        .await
        .unwrap();
    amy.link(bob.local_addr()).await.unwrap();
    let j: Leaf<Journal> = amy.create("j", Journal::default()).await.unwrap();
    let bobs: Leaf<Journal> = bob.open("j").await.unwrap();
    for n in 0..40 {
        j.shout_write("amy".into(), n).await.unwrap();
        bobs.shout_write("bob".into(), n).await.unwrap();
    }
    bobs.wait_until(|j| j.lines.len() == 80).await;
    j.wait_until(|j| j.lines.len() == 80).await;
    amy.flush().await.unwrap();
    amy.shutdown();
    drop((j, amy));

    // Bob goes on while Amy is down.
    for n in 40..60 {
        bobs.shout_write("bob".into(), n).await.unwrap();
    }
    let amy = node(&hub, dir.path(), every(10)).await.unwrap();
    let j: Leaf<Journal> = amy.open("j").await.unwrap();
    assert_eq!(
        j.read(|j| j.lines.len()),
        80,
        "resumed from disk, not fetched"
    );
    amy.link(bob.local_addr()).await.unwrap();
    // Anti-entropy brings the 20 ops missed while down.
    j.wait_until(|j| j.lines.len() == 100).await;
    j.shout_write("amy".into(), 100).await.unwrap();
    bobs.wait_until(|j| j.lines.len() == 101).await;
    assert_eq!(j.read(|j| j.clone()), bobs.read(|j| j.clone()));
}

#[tokio::test]
async fn a_damaged_store_is_refused_naming_the_file() {
    let hub = MemoryHub::new();
    for damage in ["garbage", "truncated", "zeroed middle"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let amy = node(&hub, dir.path(), every(1_000)).await.unwrap();
            let j: Leaf<Journal> = amy.create("j", Journal::default()).await.unwrap();
            for n in 0..200 {
                j.shout_write("amy".into(), n).await.unwrap();
            }
            amy.shutdown();
        }
        let file = dir.path().join(STORE_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        match damage {
            "garbage" => bytes = b"this is not a store at all".repeat(100),
            "truncated" => bytes.truncate(bytes.len() / 3),
            _ => {
                let mid = bytes.len() / 2;
                let end = (mid + 4096).min(bytes.len());
                bytes[mid..end].fill(0xA5);
            }
        }
        std::fs::write(&file, &bytes).unwrap();
        let result = node(&hub, dir.path(), every(1_000)).await;
        let reopened = match result {
            Err(StartError::Store(StoreError::Corrupt { path, what })) => {
                assert_eq!(path, file, "{damage}: names the file");
                assert!(!what.is_empty(), "{damage}: says what is wrong");
                eprintln!("{damage}: refused: {what}");
                continue;
            }
            Err(other) => panic!("{damage}: a damaged store gave {other}"),
            Ok(node) => node,
        };
        // A change that missed every page in use may open; then nothing
        // acknowledged may be missing.
        let j: Leaf<Journal> = reopened.create("j", Journal::default()).await.unwrap();
        assert_eq!(
            j.read(|j| j.lines.len()),
            200,
            "{damage}: opened, but lost data"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_seeds_rejoins_through_the_peers_it_knew() {
    use plexus::tls::{ClusterCa, Identity, Trust};
    let ca = ClusterCa::generate("store").unwrap();
    let trust = Trust::ca(ca.certificate());
    let quic = |identity: Option<Identity>, dir: Option<&Path>| {
        let mut builder = Node::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .trust(trust.clone());
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        if let Some(dir) = dir {
            builder = builder.data_dir(dir);
        }
        builder.start()
    };
    let bob = quic(
        Some(ca.issue(Identity::generate().unwrap(), "bob").unwrap()),
        None,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.issue(Identity::generate().unwrap(), "amy")
        .unwrap()
        .save(dir.path())
        .unwrap();
    let amy = quic(None, Some(dir.path())).await.unwrap();
    let id = amy.id();
    amy.link(bob.local_addr()).await.unwrap();
    let j: Leaf<Journal> = amy.create("j", Journal::default()).await.unwrap();
    let bobs: Leaf<Journal> = bob.open("j").await.unwrap();
    j.shout_write("amy".into(), 1).await.unwrap();
    bobs.wait_until(|j| j.lines.len() == 1).await;
    // Shutting down saves the peers known then.
    amy.shutdown();
    drop((j, amy));

    bobs.shout_write("bob".into(), 2).await.unwrap();
    // No seeds: the saved peers are the way back.
    let amy = quic(None, Some(dir.path())).await.unwrap();
    assert_eq!(amy.id(), id, "the identity is kept in the data dir");
    let j: Leaf<Journal> = amy.open("j").await.unwrap();
    j.wait_until(|j| j.lines.len() == 2).await;
    assert_eq!(j.read(|j| j.clone()), bobs.read(|j| j.clone()));
}

#[tokio::test]
async fn a_store_in_use_is_refused() {
    let hub = MemoryHub::new();
    let dir = tempfile::tempdir().unwrap();
    let _amy = node(&hub, dir.path(), every(10)).await.unwrap();
    match node(&hub, dir.path(), every(10)).await {
        Err(StartError::Store(StoreError::Locked { .. })) => {}
        other => panic!("a second node on one store: {other:?}"),
    }
}
