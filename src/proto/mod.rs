//! The sans-IO protocol core.
//!
//! Nothing in this module performs I/O, reads a clock or draws from an
//! ambient random number generator: time comes in as an argument, timers go
//! out as values, and the same code runs under the real driver and under the
//! deterministic harness. This is the shape of `quinn-proto` and of
//! `iroh-gossip`'s `proto` module.
//!
//! # The protocol
//!
//! * **Identity and order.** Every shout gets an [`OpId`]
//!   `(lamport, origin, seq)`. Lamport clocks (Lamport, "Time, clocks, and
//!   the ordering of events in a distributed system", CACM 1978) advance on
//!   every op seen, so the total order of ids respects causality.
//! * **Replicas** ([`replica`]) apply ops in that order with no leader. An op
//!   that arrives after a later one was applied rolls the state back to the
//!   last stable snapshot and replays the tentative log (the optimistic
//!   replication scheme of Bayou: Terry et al., "Managing update conflicts in
//!   Bayou", SOSP 1995). Duplicates are ignored by id. Ops known to be
//!   stable fold into the snapshot and leave the log.
//! * **Repeaters** ([`node`]) relay every op to every link but the one it
//!   came from, once: each op reaches every replica exactly once over chains,
//!   trees, and graphs with cycles. Late joiners fetch an object's state
//!   along the same links; the answer travels the reverse path.
//!
//! * **Anti-entropy** ([`anti_entropy`]) repairs what pushes lost: a
//!   summary of summaries per peer pair, then push-pull digests (Demers et
//!   al., "Epidemic algorithms for replicated database maintenance", PODC
//!   1987). Digests carry the acknowledgements that make ops **stable**
//!   ([`stability`]).
//! * **Dissemination** ([`dissemination`]) sends ops along an epidemic
//!   broadcast tree (PlumTree: Leitão, Pereira, Rodrigues, "Epidemic
//!   Broadcast Trees", SRDS 2007) whose announcements are runs of
//!   sequence numbers; [`plumtree`] is the paper's protocol for any
//!   message id.
//! * **Failure detection** ([`swim`]: Das, Gupta, Motivala, "SWIM", DSN
//!   2002, with Lifeguard's refinements).
//! * **Partial views**: gossip-based peer sampling ([`sampling`]: Jelasity
//!   et al., "Gossip-based peer sampling", ACM TOCS 2007) and HyParView
//!   ([`hyparview`]: Leitão, Pereira, Rodrigues, DSN 2007) are complete,
//!   tested state machines; wiring them into the node (dialing the peers
//!   they choose) comes next.

pub mod anti_entropy;
mod cbor;
pub mod data;
pub mod dissemination;
pub mod host;
pub mod hyparview;
pub mod id;
pub mod membership;
pub mod message;
pub mod node;
pub mod pieces;
pub mod plumtree;
pub mod replica;
pub mod replicated;
pub mod sampling;
pub mod short;
pub mod stability;
pub mod swim;
pub mod time;
pub mod version;

pub use id::{LamportClock, NodeId, ObjectKey, OpId};
pub use replicated::{Delivery, Operation, Replicated, TypeTag};
