//! # Plexus: replicated objects for Rust
//!
//! Derive [`Replicated`] on a struct, mark methods `#[shout]` in its
//! `#[replicated]` impl block, and every peer holding the object gets a
//! [`Leaf`] whose `shout_<method>(..)` runs the method on *every* copy. Each
//! peer binds its own observer to the same type tag — one plays a sound,
//! another prints a line — and the state still converges, with no leader.
//!
//! ```
//! use plexus::{replicated, Leaf, MemoryHub, Node, Replicated, Transport};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Replicated, Clone, Default, Serialize, Deserialize)]
//! #[plexus(tag = "demo.Frog")]
//! pub struct Frog {
//!     pub croaks: u32,
//!     pub last: Option<String>,
//! }
//!
//! #[replicated]
//! impl Frog {
//!     #[shout]
//!     pub fn croak(&mut self, by: String) {
//!         self.croaks += 1;
//!         self.last = Some(by);
//!     }
//!
//!     pub fn summary(&self) -> String {
//!         format!("{} croaks", self.croaks)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = MemoryHub::new();
//! let amy = Node::builder().transport(Transport::memory(&hub)).start().await?;
//! let bob = Node::builder().transport(Transport::memory(&hub)).start().await?;
//! amy.link(bob.local_addr()).await?;
//!
//! let kermit: Leaf<Frog> = amy.create("kermit", Frog::default()).await?;
//! let bobs_kermit: Leaf<Frog> = bob.open("kermit").await?;
//! kermit.shout_croak("amy".into()).await?;
//! bobs_kermit.wait_until(|f| f.croaks == 1).await;
//! assert_eq!(bobs_kermit.read(|f| f.summary()), "1 croaks");
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! Shouts on one object are not assumed to commute. Each gets an [`OpId`]
//! `(lamport, origin, seq)`; every replica applies the ops in that total
//! order, rolling back to the last stable snapshot and replaying when an op
//! arrives late (`#[shout(commutative)]` ops skip that). Duplicates are
//! ignored, so any topology of links is safe. Observers fire once per op per
//! replica. See the [`proto`] module for the protocol and its sources.
//!
//! # Layers
//!
//! * [`proto`]: the sans-IO protocol core (replica, repeater, wire format).
//! * the driver: a ractor repeater actor per node, transports under it
//!   ([`Transport::memory`] today; QUIC next).
//! * [`Node`], [`Leaf`]: the API.

#![warn(missing_docs)]

mod error;
#[cfg(feature = "lab")]
pub mod lab;
mod leaf;
mod net;
mod node;
mod object;
pub mod proto;
#[cfg(feature = "sim")]
pub mod sim;
pub mod site;
mod store;
pub mod tls;

pub use error::{
    CreateError, LinkError, OpenError, RegisterError, SendError, ShoutError, StartError,
};
pub use leaf::Leaf;
pub use net::actor::{LinkInfo, LinkTraffic, ReceivedData};
pub use net::faults;
pub use net::memory::{MemoryAddr, MemoryHub};
pub use net::{PeerAddr, QuicConfig, Transport};
pub use node::{Node, NodeBuilder, NodeConfig};
pub use object::ObserverId;
pub use plexus_derive::{replicated, shout, Replicated};
pub use proto::anti_entropy::{AntiEntropyConfig, AntiEntropyStats};
pub use proto::data::{Spread, SpreadError, VectorClock};
pub use proto::dissemination::TreeStats;
pub use proto::hyparview::HyParViewConfig;
pub use proto::membership::{MembershipEvent, NodeState, PeerInfo};
pub use proto::node::{GossipStats, OverlayStats, RepeaterStats};
pub use proto::replica::ReplicaStats;
pub use proto::sampling::{Descriptor, PeerSelection, Propagation, SamplingConfig};
pub use proto::{Delivery, NodeId, ObjectKey, OpId, Operation, Replicated, TypeTag};
pub use store::{Durability, StoreConfig, StoreError, STORE_FILE};

/// Items the macros' generated code uses. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use std::boxed::Box;
    pub use std::future::Future;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
