//! [`Node`]: one peer. It holds objects, links to other nodes, and runs the
//! repeater actor that relays their ops.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{CreateError, OpenError, RegisterError, SendError, StartError};
use crate::leaf::Leaf;
use crate::net::actor::{
    LinkInfo, LocalOps, MembershipSink, ReceivedData, RepeaterActor, RepeaterArgs, RepeaterMsg,
};
use crate::net::faults::Faults;
use crate::net::{Bound, Linker, PeerAddr, QuicConfig, Transport};
use crate::object::{CellHost, ObjectCell};
use crate::proto::data::Spread;
use crate::proto::host::replica_from_frame;
use crate::proto::hyparview::HyParViewConfig;
use crate::proto::membership::{MembershipEvent, NodeState, PeerInfo};
use crate::proto::message::OpFrame;
use crate::proto::node::{GossipStats, RepeaterConfig, RepeaterStats};
use crate::proto::pieces::TransferConfig;
use crate::proto::replica::Replica;
use crate::proto::sampling::{Descriptor, SamplingConfig};
use crate::proto::{NodeId, ObjectKey, Replicated};
use crate::store::{Durability, Store, StoreError};
use crate::tls::{Identity, Trust};

mod config;
mod durable;
mod links;

pub use config::NodeConfig;

/// Bytes a data frame adds around its payload: the version byte, the
/// message header, the sender's id and counter.
const DATA_FRAME_OVERHEAD: usize = 96;

/// The largest object name, in bytes.
const MAX_NAME: usize = 1024;

/// Builds a [`Node`]: `Node::builder().transport(..).start().await`.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct NodeBuilder {
    transport: Option<Transport>,
    listen: Option<SocketAddr>,
    seeds: Vec<PeerAddr>,
    identity: Option<Identity>,
    data_dir: Option<PathBuf>,
    trust: Option<Trust>,
    config: NodeConfig,
    node_id: Option<NodeId>,
    faults: Option<Faults>,
}

impl NodeBuilder {
    /// Listen for QUIC on `addr` (`127.0.0.1:0` picks a free port). Needs
    /// [`trust`](Self::trust); the identity is [`identity`](Self::identity)
    /// or a fresh key.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Join the cluster through these nodes: the node links to each (and
    /// keeps retrying the ones that are not up), learns the peers they know,
    /// and is [`Connected`](NodeState::Connected) once any link is up. Any
    /// single live seed is enough.
    pub fn seeds<A: Into<PeerAddr>>(mut self, seeds: impl IntoIterator<Item = A>) -> Self {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// Where the node keeps what must survive a restart:
    ///
    /// * its identity (`node.key`, `node.crt`; QUIC), loaded from there or
    ///   made and saved there on first start, so the node id stays the same;
    /// * its store, `plexus.redb` ([`STORE_FILE`](crate::STORE_FILE)): every
    ///   object's state and op log, and the peers it knew.
    ///
    /// With a data directory a shout resolves once its op is on disk (see
    /// [`durability`](Self::durability)); [`create`](Node::create) and
    /// [`open`](Node::open) of an object the store holds resume it from
    /// disk, and anti-entropy brings what the node missed while down. A
    /// node restarted without seeds links to the peers it knew.
    ///
    /// **Without a data directory the node is memory-only:** a restart
    /// starts from nothing (objects come back from peers with `open`), and
    /// a QUIC node without [`identity`](Self::identity) has a new key.
    ///
    /// With a store, an observer's `on_stable` calls may run on the store's
    /// writer thread (ops fold as soon as a commit makes them stable): keep
    /// them short, as observers should be anyway.
    ///
    /// A damaged store fails [`start`](Self::start) with
    /// [`StartError::Store`](crate::StartError::Store) naming the file and
    /// what is wrong; the node never starts over silently.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// When a shout resolves relative to the disk (see [`Durability`];
    /// default [`Durability::Group`]). Needs a [`data_dir`](Self::data_dir).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.store.durability = durability;
        self
    }

    /// This node's key and certificate (QUIC). Its public key is the node id.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Which peers to accept (QUIC): a cluster CA, an allow-list, or both.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// The transport to reach peers with (required).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Replace the whole configuration.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// How many bytes may wait for one link before ops sent on it are shed
    /// (see [`NodeConfig::max_link_queue`]); `None`: no bound.
    pub fn max_link_queue(mut self, bytes: Option<usize>) -> Self {
        self.config.max_link_queue = bytes;
        self
    }

    /// The largest frame, in bytes (see [`NodeConfig::max_frame`]).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Run the HyParView overlay with these settings (see
    /// [`NodeConfig::overlay`]).
    pub fn overlay(mut self, overlay: HyParViewConfig) -> Self {
        self.config.overlay = Some(overlay);
        self
    }

    /// Run peer sampling beside the overlay with these settings (see
    /// [`NodeConfig::sampling`]; it needs [`overlay`](Self::overlay)).
    pub fn sampling(mut self, sampling: SamplingConfig) -> Self {
        self.config.sampling = Some(sampling);
        self
    }

    /// Run the overlay without peer sampling (it is on by default; see
    /// [`NodeConfig::sampling`]).
    pub fn no_sampling(mut self) -> Self {
        self.config.sampling = None;
        self
    }

    /// Inject faults under QUIC (with [`listen`](Self::listen)): the node's
    /// UDP socket loses, delays and partitions datagrams as `faults` says,
    /// for testing an application under a bad network (see
    /// [`faults`](crate::faults)). With [`transport`](Self::transport), set
    /// [`QuicConfig::faults`] instead.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Use this node id instead of a random one (in-memory transport only:
    /// over QUIC the id is the identity's public key).
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Check the configuration, start the repeater actor and listen.
    pub async fn start(self) -> Result<Node, StartError> {
        self.config.validate()?;
        let transport =
            match (self.transport, self.listen) {
                (Some(_), None) if self.faults.is_some() => return Err(StartError::Config(
                    "faults(..) goes with listen(..); with transport(..), set QuicConfig::faults"
                        .into(),
                )),
                (Some(t), None) => t,
                (None, Some(listen)) => {
                    let trust = self.trust.ok_or(StartError::NoTrust)?;
                    let identity = match (self.identity, &self.data_dir) {
                        (Some(i), _) => i,
                        (None, Some(dir)) => Identity::load_or_generate(dir)
                            .map_err(|e| StartError::Identity(e.to_string()))?,
                        (None, None) => {
                            Identity::generate().map_err(|e| StartError::Identity(e.to_string()))?
                        }
                    };
                    let mut quic = QuicConfig::new(listen, identity, trust);
                    quic.faults = self.faults;
                    Transport::quic(quic)
                }
                (Some(_), Some(_)) => {
                    return Err(StartError::Config(
                        "give either listen(..) or transport(..), not both".into(),
                    ))
                }
                (None, None) => return Err(StartError::NoTransport),
            };
        let store = match &self.data_dir {
            Some(dir) => Some(Store::open(dir, self.config.store.clone())?),
            None => None,
        };
        let saved = match &store {
            Some(store) => store.node_id()?,
            None => None,
        };
        let id = match (transport.node_id(), self.node_id.or(saved)) {
            (Some(key), Some(asked)) if key != asked => {
                let whose = if self.node_id.is_some() {
                    "node_id"
                } else {
                    "the store's node id"
                };
                return Err(StartError::Config(format!(
                    "{whose} {asked} differs from the identity's key {key}"
                )));
            }
            (Some(key), _) => key,
            (None, asked) => asked.unwrap_or_else(|| NodeId::from_bytes(rand::random())),
        };
        if let Some(store) = &store {
            if saved.is_none() {
                store.save_node_id(id)?;
            } else if saved != Some(id) {
                return Err(StartError::Config(format!(
                    "the store in {} belongs to node {}, not {id}",
                    store.path().display(),
                    saved.map_or_else(String::new, |s| s.to_string())
                )));
            }
        }
        let mut seeds = self.seeds;
        if let (true, Some(store)) = (seeds.is_empty(), &store) {
            // Rejoin through the peers known before the restart.
            for (addr, _) in store.peers()? {
                match addr.parse::<PeerAddr>() {
                    Ok(addr @ PeerAddr::Socket(_)) => seeds.push(addr),
                    _ => tracing::debug!(%addr, "a saved peer address is not a socket address"),
                }
            }
        }
        let bound = transport.bind(self.config.max_frame)?;
        let repeater_config = RepeaterConfig {
            fetch_timeout: self.config.open_timeout,
            anti_entropy: self.config.anti_entropy.clone(),
            overlay: self.config.overlay.clone(),
            sampling: self.config.sampling.clone(),
            transfers: transfer_config(self.config.max_frame),
            ..RepeaterConfig::default()
        };
        let (dials, dial_requests) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let (data, _) = broadcast::channel(4096);
        let membership = MembershipSink {
            state: Arc::new(watch::channel(NodeState::Initialized).0),
            view: Arc::new(watch::channel(Vec::new()).0),
            events,
            data,
        };
        let local = Arc::new(LocalOps::default());
        let args = RepeaterArgs {
            me: id,
            seeds: !seeds.is_empty(),
            membership: membership.clone(),
            config: repeater_config,
            max_frame: self.config.max_frame,
            max_link_queue: self.config.max_link_queue,
            local: local.clone(),
            addr: bound.addr.to_string(),
            dials,
        };
        let (actor, _handle) = Actor::spawn(None, RepeaterActor, args)
            .await
            .map_err(|e| StartError::Actor(e.to_string()))?;
        let Bound {
            addr,
            mut listener,
            link,
        } = bound;
        let inner = Arc::new(NodeInner {
            id,
            addr,
            config: self.config,
            backoff: transport.backoff(),
            linker: link,
            membership,
            actor,
            local,
            objects: DashMap::new(),
            registry: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
            store,
            boot: rand::random(),
        });
        let node = Node { inner };
        let weak = Arc::downgrade(&node.inner);
        if let Some(store) = &node.inner.store {
            durable::relay_committed(store, weak.clone());
            tokio::spawn(durable::save_peers(
                store.clone(),
                node.inner.membership.view.subscribe(),
            ));
        }
        let accepting = weak.clone();
        tokio::spawn(async move {
            while let Some(conn) = listener.accept().await {
                let Some(inner) = accepting.upgrade() else {
                    break;
                };
                let node = Node { inner };
                tokio::spawn(async move {
                    if let Err(error) = node.attach(conn, false).await {
                        tracing::warn!(%error, "inbound link refused");
                    }
                });
            }
        });
        tokio::spawn(links::run_dials(weak.clone(), dial_requests));
        if node.inner.config.overlay.is_some() {
            if !seeds.is_empty() {
                tokio::spawn(links::join_through_seeds(weak, seeds, node.inner.backoff));
            }
            return Ok(node);
        }
        for seed in seeds {
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(error) = node.link(seed.clone()).await {
                    tracing::info!(%seed, %error, "seed not reachable yet; retrying");
                    node.keep_linking(seed);
                }
            });
        }
        Ok(node)
    }
}

/// State transfers over links whose frames are at most `max_frame`: as
/// large as a frame allows (as before pieces), in pieces of at most 48 KiB.
fn transfer_config(max_frame: usize) -> TransferConfig {
    let mut transfers = TransferConfig::default();
    transfers.max_transfer_bytes = max_frame;
    transfers.max_piece_bytes = transfers.max_piece_bytes.min(max_frame);
    transfers
}

struct NodeInner {
    id: NodeId,
    addr: PeerAddr,
    config: NodeConfig,
    linker: Linker,
    backoff: Option<(Duration, Duration)>,
    membership: MembershipSink,
    actor: ActorRef<RepeaterMsg>,
    local: Arc<LocalOps>,
    objects: DashMap<ObjectKey, Arc<dyn Any + Send + Sync>>,
    registry: Mutex<HashMap<&'static str, (TypeId, &'static str)>>,
    next_link: AtomicU64,
    stopped: AtomicBool,
    store: Option<Store>,
    /// Names this run of the node in the nonces it dials with, so a peer
    /// still holding a connection from before a restart drops it.
    boot: u32,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        // The last handle is gone: stop listening and stop the repeater.
        self.linker.close(&self.addr);
        self.actor.stop(Some("node dropped".into()));
        if let Some(store) = &self.store {
            store.close();
        }
    }
}

/// One peer: holds objects, links to other nodes, relays ops.
///
/// Cloning a `Node` is cheap; clones share the node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Start building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address other nodes link to.
    pub fn local_addr(&self) -> PeerAddr {
        self.inner.addr.clone()
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Register `T` under its type tag. [`create`](Self::create) and
    /// [`open`](Self::open) do this for you; registering twice is fine, but
    /// two Rust types may not share one tag.
    pub fn register<T: Replicated>(&self) -> Result<(), RegisterError> {
        let mut registry = self.inner.registry.lock();
        let attempted = std::any::type_name::<T>();
        match registry.get(T::TYPE_TAG) {
            Some((id, _)) if *id == TypeId::of::<T>() => Ok(()),
            Some((_, registered)) => Err(RegisterError::TagConflict {
                tag: T::TYPE_TAG,
                registered,
                attempted,
            }),
            None => {
                registry.insert(T::TYPE_TAG, (TypeId::of::<T>(), attempted));
                Ok(())
            }
        }
    }

    /// Create the object `name` with `initial` as its state, held here.
    ///
    /// With a [data directory](NodeBuilder::data_dir) whose store holds
    /// `name` from an earlier run, the object is resumed from the store
    /// instead and `initial` is not used: an application calls `create`
    /// the same way on every start.
    ///
    /// Other nodes get it with [`open`](Self::open): create an object on
    /// one node and open it on the others. Two nodes that each create the
    /// same name start two histories, which the stability protocol cannot
    /// merge: once one has folded ops as the only member it knew of, the
    /// other's earlier ops are refused there
    /// ([`ApplyError::BelowStable`](crate::proto::replica::ApplyError::BelowStable))
    /// and the copies differ for good.
    pub async fn create<T: Replicated>(
        &self,
        name: &str,
        initial: T,
    ) -> Result<Leaf<T>, CreateError> {
        self.register::<T>()?;
        check_name(name).map_err(CreateError::InvalidName)?;
        if self.is_stopped() {
            return Err(CreateError::Stopped);
        }
        let key = ObjectKey::new(T::TYPE_TAG, name);
        if self.inner.objects.contains_key(&key) {
            return Err(CreateError::Exists(key));
        }
        let me = self.inner.id;
        let (cell, fresh) = durable::cell_for(self.inner.store.as_ref(), me, &key, || {
            Replica::new(me, initial)
        })?;
        match self.inner.objects.entry(key.clone()) {
            dashmap::Entry::Occupied(_) => return Err(CreateError::Exists(key)),
            dashmap::Entry::Vacant(v) => {
                v.insert(cell.clone());
            }
        }
        cell.attach_log(fresh)?;
        let host = Box::new(CellHost(cell.clone()));
        self.inner
            .actor
            .cast(RepeaterMsg::Host { object: key, host })
            .map_err(|_| CreateError::Stopped)?;
        Ok(Leaf::new(self.clone(), cell))
    }

    /// Get the leaf of object `name`: the local copy if this node holds it,
    /// otherwise the current state fetched from a linked node (then every
    /// live op from there on).
    pub async fn open<T: Replicated>(&self, name: &str) -> Result<Leaf<T>, OpenError> {
        self.register::<T>()?;
        check_name(name).map_err(OpenError::InvalidName)?;
        let key = ObjectKey::new(T::TYPE_TAG, name);
        if let Some(cell) = self.local_cell::<T>(&key) {
            return Ok(Leaf::new(self.clone(), cell));
        }
        if self.is_stopped() {
            return Err(OpenError::Stopped);
        }
        let me = self.inner.id;
        if durable::stored(self.inner.store.as_ref(), &key)? {
            // Held before a restart: resume it from disk, and let
            // anti-entropy bring what was missed.
            return self.resume::<T>(key).await;
        }
        let objects = Arc::downgrade(&self.inner);
        let build_key = key.clone();
        let build: crate::net::actor::OpenBuilder = Box::new(move |frame| {
            let replica = replica_from_frame::<T>(me, frame)?;
            let Some(inner) = objects.upgrade() else {
                return Ok(None);
            };
            let (cell, _) = durable::cell_for(inner.store.as_ref(), me, &build_key, || replica)
                .map_err(|e| crate::proto::message::DecodeError::Malformed {
                    what: "state",
                    reason: e.to_string(),
                })?;
            let hosted = match inner.objects.entry(build_key) {
                dashmap::Entry::Occupied(_) => None,
                dashmap::Entry::Vacant(v) => {
                    v.insert(cell.clone());
                    if let Err(error) = cell.attach_log(true) {
                        tracing::error!(%error, "the opened object cannot be logged");
                    }
                    Some(Box::new(CellHost(cell)) as Box<dyn crate::proto::host::Host>)
                }
            };
            Ok(hosted)
        });
        let (reply, answer) = oneshot::channel();
        self.inner
            .actor
            .cast(RepeaterMsg::Open {
                object: key.clone(),
                build,
                reply,
            })
            .map_err(|_| OpenError::Stopped)?;
        answer.await.map_err(|_| OpenError::Stopped)??;
        self.local_cell::<T>(&key)
            .map(|cell| Leaf::new(self.clone(), cell))
            .ok_or(OpenError::Stopped)
    }

    /// Resume `key` from the store and host it.
    async fn resume<T: Replicated>(&self, key: ObjectKey) -> Result<Leaf<T>, OpenError> {
        let me = self.inner.id;
        let cell = durable::resumed::<T>(self.inner.store.as_ref(), me, &key)?;
        match self.inner.objects.entry(key.clone()) {
            dashmap::Entry::Occupied(_) => {}
            dashmap::Entry::Vacant(v) => {
                v.insert(cell.clone());
                cell.attach_log(false)?;
                let host = Box::new(CellHost(cell));
                self.inner
                    .actor
                    .cast(RepeaterMsg::Host {
                        object: key.clone(),
                        host,
                    })
                    .map_err(|_| OpenError::Stopped)?;
            }
        }
        self.local_cell::<T>(&key)
            .map(|cell| Leaf::new(self.clone(), cell))
            .ok_or(OpenError::Stopped)
    }

    /// Wait until everything this node logged so far is on disk (at once
    /// without a [data directory](NodeBuilder::data_dir)). With
    /// [`Durability::None`], this is how an application makes its shouts
    /// durable at a point of its choosing.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.inner.store {
            Some(store) => store.flush().await,
            None => Ok(()),
        }
    }

    /// The size of the node's store file in bytes (0 without a
    /// [data directory](NodeBuilder::data_dir)).
    pub fn store_size(&self) -> u64 {
        self.inner.store.as_ref().map_or(0, Store::file_size)
    }

    /// The nodes this node is linked to, in link order, with the messages
    /// and bytes sent and received on each link since it came up (see
    /// [`LinkTraffic`](crate::LinkTraffic)).
    pub async fn links(&self) -> Vec<LinkInfo> {
        let (tx, rx) = oneshot::channel();
        if self.inner.actor.cast(RepeaterMsg::Links(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Where the node is in its lifecycle (INITIALIZED → JOINING →
    /// CONNECTED ⇄ DISCONNECTED → DESTROYED).
    pub fn state(&self) -> NodeState {
        *self.inner.membership.state.borrow()
    }

    /// A stream of membership events from now on: lifecycle changes, peers
    /// up, down, or heard of. A receiver that falls more than 1,024 events
    /// behind is told how many it missed.
    pub fn events(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.membership.events.subscribe()
    }

    /// Wait until the node is in `state` (or return at once if it is).
    pub async fn wait_for_state(&self, state: NodeState) {
        let mut rx = self.inner.membership.state.subscribe();
        let _ = rx.wait_for(|s| *s == state).await;
    }

    /// The active view: the neighbours this node keeps links to and
    /// gossips with, with their advertised addresses. With an overlay
    /// ([`NodeConfig::overlay`]) that is HyParView's active view plus the
    /// links made with [`link`](Self::link); without, every linked peer.
    pub fn current_view(&self) -> Vec<PeerInfo> {
        let view = self.inner.membership.view.borrow();
        view.iter().filter(|p| p.active).cloned().collect()
    }

    /// Every peer this node knows of: its neighbours and the peers it heard
    /// of (through welcomes, or the overlay's passive view), with their
    /// advertised addresses.
    pub fn known_peers(&self) -> Vec<PeerInfo> {
        self.inner.membership.view.borrow().clone()
    }

    /// Peer sampling's view (see [`NodeConfig::sampling`]): a few random
    /// live peers of the whole cluster, linked or not, with their addresses
    /// and ages in cycles, renewed every cycle. Empty without sampling, or
    /// once the node is shut down.
    pub async fn peer_sample(&self) -> Vec<Descriptor<NodeId>> {
        let (tx, rx) = oneshot::channel();
        if self.inner.actor.cast(RepeaterMsg::PeerSample(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Send raw application data (outside any object) by `spread`:
    /// `Direct(peer)` to a linked peer, `Random(k)` to `k` random linked
    /// peers, `Broadcast` to every node reachable through the links, each
    /// once. Data over the frame limit fails here, typed, never silently.
    pub async fn send_data(&self, payload: Vec<u8>, spread: Spread) -> Result<(), SendError> {
        let len = payload.len() + DATA_FRAME_OVERHEAD;
        let max = self.inner.config.max_frame;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .actor
            .cast(RepeaterMsg::SendData {
                spread,
                payload,
                reply,
            })
            .map_err(|_| SendError::Stopped)?;
        Ok(answer.await.map_err(|_| SendError::Stopped)??)
    }

    /// A stream of the data other nodes send here, each with its sender,
    /// from now on. A receiver that falls more than 4,096 items behind is
    /// told how many it missed.
    pub fn data(&self) -> broadcast::Receiver<ReceivedData> {
        self.inner.membership.data.subscribe()
    }

    /// The repeater's counters: ops seen, duplicates dropped, op messages
    /// sent. Zeroes once the node is shut down.
    pub async fn stats(&self) -> RepeaterStats {
        let (tx, rx) = oneshot::channel();
        if self.inner.actor.cast(RepeaterMsg::Stats(tx)).is_err() {
            return RepeaterStats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Every gossip counter: the repeater's, the broadcast tree's (grafts,
    /// prunes, announcements), anti-entropy's (digests, ops repaired) and
    /// the failure detector's. Zeroes once the node is shut down.
    pub async fn gossip_stats(&self) -> GossipStats {
        let (tx, rx) = oneshot::channel();
        if self.inner.actor.cast(RepeaterMsg::GossipStats(tx)).is_err() {
            return GossipStats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Stop the node: stop listening, drop every link, stop the repeater,
    /// and with a store, commit what is queued and close it (this waits for
    /// one commit). Leaves stay readable; shouts fail with `Stopped`.
    pub fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.linker.close(&self.inner.addr);
        let _ = self.inner.actor.cast(RepeaterMsg::Shutdown);
        self.inner
            .membership
            .state
            .send_replace(NodeState::Destroyed);
        self.inner.actor.stop(Some("node shut down".into()));
        if let Some(store) = &self.inner.store {
            // The peers as they are now, then commit what is queued and
            // close the file.
            durable::save_peers_now(store, &self.inner.membership.view.borrow());
            store.close();
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Relaxed)
    }

    /// Hand a local op to the repeater for fan-out.
    /// The replica of `object` made an op while not a member of the
    /// replica set: the repeater asks a member to admit it.
    pub(crate) fn request_admission(&self, object: ObjectKey) {
        if self
            .inner
            .actor
            .cast(RepeaterMsg::Admission { object })
            .is_err()
        {
            tracing::debug!("repeater stopped; admission not asked");
        }
    }

    pub(crate) fn relay_local(&self, frame: OpFrame) {
        if self.inner.local.push(frame) && self.inner.actor.cast(RepeaterMsg::LocalOps).is_err() {
            tracing::debug!("repeater stopped; local op not relayed");
        }
    }

    fn local_cell<T: Replicated>(&self, key: &ObjectKey) -> Option<Arc<ObjectCell<T>>> {
        let any = self.inner.objects.get(key)?.value().clone();
        any.downcast::<ObjectCell<T>>().ok()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(name.chars().take(64).collect());
    }
    Ok(())
}
