//! [`NodeConfig`]: a node's settings, and their checks.

use std::time::Duration;

use crate::error::StartError;
use crate::proto::anti_entropy::AntiEntropyConfig;
use crate::proto::hyparview::HyParViewConfig;
use crate::proto::message::DEFAULT_MAX_FRAME;
use crate::proto::sampling::SamplingConfig;
use crate::store::StoreConfig;

/// A node's settings. Every field has a default; [`NodeBuilder::start`](crate::NodeBuilder::start)
/// checks them once.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The largest frame sent or accepted, in bytes. A shout whose encoded
    /// op would not fit fails with [`ShoutError::TooLarge`](crate::ShoutError::TooLarge).
    /// Default: 1 MiB. At least 1 KiB.
    pub max_frame: usize,
    /// How many bytes may wait for one link, not yet handed to the
    /// transport, before ops are **shed** on it: an op frame (a tree push
    /// or a repair) offered to a link with more queued is not sent there,
    /// and is counted in [`LinkInfo::shed`](crate::LinkInfo::shed). The
    /// peer, or the path to it, is slower than the ops; anti-entropy
    /// repairs what it missed once it keeps up, at its own pace. So a slow
    /// or stalled peer costs a bounded amount of memory, and never slows
    /// the writers or the other links. Other messages (gossip, membership,
    /// [`send_data`](crate::Node::send_data)) are small and always queued.
    /// `None`: no bound (memory then grows with the backlog). Default:
    /// 16 MiB. At least [`max_frame`](Self::max_frame).
    pub max_link_queue: Option<usize>,
    /// How long [`Node::open`](crate::Node::open) waits for a linked node to send the object's
    /// state. Default: 5 s.
    pub open_timeout: Duration,
    /// How long [`Node::link`](crate::Node::link) waits for the peer's hello. Default: 5 s.
    pub handshake_timeout: Duration,
    /// Anti-entropy: how often and with how many peers a node compares
    /// what it holds, and how much it repairs at once (see
    /// [`AntiEntropyConfig`]).
    pub anti_entropy: AntiEntropyConfig,
    /// The overlay. `None` (the default): the node's links are its seeds
    /// and the ones made with [`Node::link`](crate::Node::link), as for a small cluster or
    /// chained sites. `Some`: HyParView keeps a small symmetric active view
    /// (5 peers by default) and a passive view of backups; the node joins
    /// through any one live seed, dials and closes links as the active view
    /// changes, and repairs it when a neighbour fails, so a large cluster
    /// needs neither a full mesh nor a hand-made topology. Explicit
    /// [`Node::link`](crate::Node::link)s still stay up. Every node of a cluster must make the
    /// same choice.
    pub overlay: Option<HyParViewConfig>,
    /// Peer sampling beside the overlay (Jelasity et al.; see
    /// [`SamplingConfig`] for the view size `c`, the healer `H`, the
    /// swapper `S`, peer selection and propagation). `Some` (it needs
    /// [`overlay`](Self::overlay)): every cycle the node swaps part of its
    /// sample with a sampled peer, dialing it if not linked, so
    /// [`Node::peer_sample`](crate::Node::peer_sample) is a small, ever-changing random view of the
    /// live cluster, and the overlay replaces a lost neighbour from it and
    /// heals an island that split off from it (see
    /// [`RepeaterConfig::sampling`](crate::proto::node::RepeaterConfig::sampling)).
    /// Ignored without an overlay. Default: on, [`SamplingConfig::default`]
    /// (a view of 30, a 5 s cycle); `None` turns it off.
    pub sampling: Option<SamplingConfig>,
    /// The store, with a [data directory](crate::NodeBuilder::data_dir): when a
    /// shout resolves ([`Durability::Group`](crate::Durability::Group) by default: once on disk) and
    /// how often an object's log is compacted. Ignored without one.
    pub store: StoreConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_link_queue: Some(16 << 20),
            open_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            anti_entropy: AntiEntropyConfig::default(),
            overlay: None,
            sampling: Some(SamplingConfig::default()),
            store: StoreConfig::default(),
        }
    }
}

impl NodeConfig {
    pub(super) fn validate(&self) -> Result<(), StartError> {
        if self.max_frame < 1024 {
            return Err(StartError::Config(format!(
                "max_frame is {} bytes; it must be at least 1024",
                self.max_frame
            )));
        }
        if self.max_frame > 64 << 20 {
            return Err(StartError::Config(format!(
                "max_frame is {} bytes; it must be at most 64 MiB",
                self.max_frame
            )));
        }
        if let Some(bound) = self.max_link_queue.filter(|b| *b < self.max_frame) {
            return Err(StartError::Config(format!(
                "max_link_queue is {bound} bytes; it must be at least max_frame ({} bytes)",
                self.max_frame
            )));
        }
        if self.open_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return Err(StartError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        if self.anti_entropy.interval < Duration::from_millis(10) {
            return Err(StartError::Config(format!(
                "anti_entropy.interval is {:?}; it must be at least 10 ms",
                self.anti_entropy.interval
            )));
        }
        if let Some(overlay) = &self.overlay {
            if overlay.active_size == 0 || overlay.neighbor_timeout.is_zero() {
                return Err(StartError::Config(
                    "overlay: active_size and neighbor_timeout must be greater than zero".into(),
                ));
            }
            if overlay.shuffle_interval < Duration::from_millis(10) {
                return Err(StartError::Config(format!(
                    "overlay.shuffle_interval is {:?}; it must be at least 10 ms",
                    overlay.shuffle_interval
                )));
            }
        }
        if self.store.snapshot_every == 0 || self.store.max_batch == 0 {
            return Err(StartError::Config(
                "store: snapshot_every and max_batch must be at least 1".into(),
            ));
        }
        if let Some(sampling) = self.sampling.as_ref().filter(|_| self.overlay.is_some()) {
            if sampling.view_size == 0 || sampling.period < Duration::from_millis(10) {
                return Err(StartError::Config(format!(
                    "sampling: view_size is {} and period {:?}; they must be at least 1 and 10 ms",
                    sampling.view_size, sampling.period
                )));
            }
        }
        Ok(())
    }
}
