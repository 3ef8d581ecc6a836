//! What an experiment's code gets: [`LabContext`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use super::wire::{RosterEntry, ToLab};
use crate::faults::Faults;
use crate::{Leaf, Node, OpenError, Replicated};

/// How long [`LabContext::object`] keeps trying to open the shared object.
const OPEN_WITHIN: Duration = Duration::from_secs(60);

/// One peer's handle on the lab run, given to its experiment code.
///
/// Cheap to clone: clones share the peer's targets and its link to the lab.
#[derive(Clone, Debug)]
pub struct LabContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    peer: u32,
    peers: u32,
    messages: u64,
    budgets: Vec<u64>,
    interval: Duration,
    node: Node,
    faults: Faults,
    roster: Vec<RosterEntry>,
    to_lab: mpsc::UnboundedSender<ToLab>,
    ended: watch::Receiver<bool>,
    targets: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// What the peer process knows when it starts the experiment.
pub(crate) struct Setup {
    pub peer: u32,
    pub budgets: Vec<u64>,
    pub interval: Duration,
    pub node: Node,
    pub faults: Faults,
    pub roster: Vec<RosterEntry>,
    pub to_lab: mpsc::UnboundedSender<ToLab>,
    pub ended: watch::Receiver<bool>,
}

impl LabContext {
    pub(crate) fn new(setup: Setup) -> Self {
        let index = setup.peer.saturating_sub(1) as usize;
        Self {
            inner: Arc::new(Inner {
                peer: setup.peer,
                peers: u32::try_from(setup.budgets.len()).unwrap_or(u32::MAX),
                messages: setup.budgets.get(index).copied().unwrap_or(0),
                budgets: setup.budgets,
                interval: setup.interval,
                node: setup.node,
                faults: setup.faults,
                roster: setup.roster,
                to_lab: setup.to_lab,
                ended: setup.ended,
                targets: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// This peer's number, from 1 to [`peers`](Self::peers).
    pub fn peer(&self) -> u32 {
        self.inner.peer
    }

    /// How many peers the run has.
    pub fn peers(&self) -> u32 {
        self.inner.peers
    }

    /// This peer's message budget: `--messages` evaluated for its number.
    pub fn messages(&self) -> u64 {
        self.inner.messages
    }

    /// The budget of peer `peer` (0 for a number out of range).
    pub fn messages_of(&self, peer: u32) -> u64 {
        let index = peer.saturating_sub(1) as usize;
        self.inner.budgets.get(index).copied().unwrap_or(0)
    }

    /// Every peer's budget added up: what a replica should see in the end
    /// when each message is one op.
    pub fn total_messages(&self) -> u64 {
        self.inner
            .budgets
            .iter()
            .fold(0, |a, b| a.saturating_add(*b))
    }

    /// The pause between two messages of one peer (`--interval`), so that
    /// a run can be watched; zero means as fast as possible.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Waits [`interval`](Self::interval) (nothing when it is zero).
    pub async fn pace(&self) {
        if !self.inner.interval.is_zero() {
            tokio::time::sleep(self.inner.interval).await;
        }
    }

    /// This peer's node: QUIC on 127.0.0.1, linked into the run's cluster.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The fault injector under this node's socket: partitions, loss and
    /// delay toward other peers' addresses (see [`roster`](Self::roster)).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Every peer of the run: number, node id and address.
    pub fn roster(&self) -> &[RosterEntry] {
        &self.inner.roster
    }

    /// The address of peer `peer`, if there is one.
    pub fn addr_of(&self, peer: u32) -> Option<SocketAddr> {
        let entry = self.inner.roster.iter().find(|e| e.peer == peer);
        entry.map(|e| e.addr)
    }

    /// This peer's copy of the run's shared object `name`: peer 1 creates
    /// it with `initial()`, every other peer opens it from the cluster,
    /// trying again (every 100 ms, for up to a minute) until a linked
    /// peer holds it. One creator, so every copy shares one history.
    pub async fn object<T: Replicated>(
        &self,
        name: &str,
        initial: impl FnOnce() -> T,
    ) -> Result<Leaf<T>, Box<dyn std::error::Error + Send + Sync>> {
        if self.peer() == 1 {
            return Ok(self.node().create(name, initial()).await?);
        }
        let deadline = tokio::time::Instant::now() + OPEN_WITHIN;
        loop {
            match self.node().open::<T>(name).await {
                Ok(leaf) => return Ok(leaf),
                Err(OpenError::NotFound { .. }) if tokio::time::Instant::now() < deadline => {
                    // Peer 1, or the peers between, may not hold it yet.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reports progress toward a target. The lab shows it. A peer is done
    /// once its code waits for the end
    /// ([`wait_for_experiment_end`](Self::wait_for_experiment_end), or
    /// returns) with every target it reported at `current >= goal`; the
    /// run ends when every peer is done. Reports of an unchanged value are
    /// not sent again.
    pub fn report_target(&self, name: &str, current: u64, goal: u64) {
        let mut targets = self.inner.targets.lock();
        if targets.get(name) == Some(&(current, goal)) {
            return;
        }
        targets.insert(name.to_owned(), (current, goal));
        // The lab may be gone; the lifeline then stops this process.
        let _ = self.inner.to_lab.send(ToLab::Target {
            name: name.to_owned(),
            current,
            goal,
        });
    }

    /// Whether every target this peer reported is met (and it reported one).
    pub fn targets_met(&self) -> bool {
        let targets = self.inner.targets.lock();
        !targets.is_empty() && targets.values().all(|(c, g)| c >= g)
    }

    /// Says this peer's part is over, and waits until the lab says the
    /// experiment is over: every peer is done, or the run timed out. Only this task waits: the node
    /// keeps relaying, repairing and answering for the others meanwhile.
    pub async fn wait_for_experiment_end(&self) {
        let _ = self.inner.to_lab.send(ToLab::Waiting);
        let mut ended = self.inner.ended.clone();
        // An error means the peer's control task is gone, which also ends it.
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Whether the lab has said the experiment is over.
    pub fn experiment_ended(&self) -> bool {
        *self.inner.ended.borrow()
    }
}
