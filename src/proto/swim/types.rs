//! The failure detector's settings, messages, events and counters.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a peer id must be: small, ordered, hashable and serializable.
/// Implemented for every type that qualifies.
pub trait SwimPeer: Copy + Ord + Hash + fmt::Debug + Serialize + DeserializeOwned {}

impl<T: Copy + Ord + Hash + fmt::Debug + Serialize + DeserializeOwned> SwimPeer for T {}

/// Tuning of the failure detector, checked once by [`Swim::new`](super::Swim::new).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimConfig {
    /// The protocol period: one probe per period, stretched by the local
    /// health score. Default: 1 s.
    pub probe_interval: Duration,
    /// How long to wait for an ack before probing indirectly, stretched by
    /// the local health score; shorter than `probe_interval`. Default: 500 ms.
    pub probe_timeout: Duration,
    /// How often the direct ping is sent before the indirect phase, evenly
    /// spaced over `probe_timeout` and stopped by the first ack; at least 1.
    /// A round trip through a link that drops a fraction `p` of messages
    /// fails with chance `1 - (1 - p)²`, so under heavy loss many attempts
    /// are what keeps a live member from being suspected: at 50% loss,
    /// 2 attempts fail together 56% of the time, 24 attempts 0.1%. With no
    /// loss only the first is sent, if the ack is back before the second
    /// is due. Default: 2 (at 0 and halfway).
    pub direct_pings: u32,
    /// How many members probe indirectly (`k` in the paper). Default: 5
    /// (the paper's examples use 3; under 20% loss, 5 helpers make a
    /// failed probe of a live member about five times rarer).
    pub indirect_probes: usize,
    /// Whether an alive member whose probe failed is probed again, at once,
    /// before it is suspected: a suspicion then needs two failed probes in
    /// a row, which keeps false suspicions away under heavy loss at the
    /// cost of one probe interval more to detect a crash. The second probe
    /// sends twice [`direct_pings`](Self::direct_pings) and asks twice
    /// [`indirect_probes`](Self::indirect_probes) helpers: it is rare, and
    /// in the simulator (30 nodes, a minute, 35% loss, 10 runs) that
    /// brought false suspicions from 78 to none. Default: on.
    pub confirm_probe: bool,
    /// The minimum suspicion timeout, in probe intervals, per
    /// `max(1, log₁₀ n)` (`α` in Lifeguard). Default: 4.
    pub suspicion_multiplier: u32,
    /// The maximum suspicion timeout as a multiple of the minimum (`β` in
    /// Lifeguard); 1 turns the dynamic timeout off. Default: 6.
    pub suspicion_max_multiplier: u32,
    /// Independent confirmations that bring a suspicion down to the minimum
    /// timeout (`K` in Lifeguard), capped at `n - 2`. Default: 3.
    pub suspicion_confirmations: u32,
    /// The most updates one message carries. Default: 8.
    pub max_piggyback: usize,
    /// Each update is sent `λ·⌈log₁₀(n+1)⌉` times (`λ` in the paper).
    /// Default: 4.
    pub retransmit_multiplier: u32,
    /// The ceiling of the local health score; 0 turns it off. Default: 8.
    pub max_local_health: u32,
    /// Whether word of an unknown id (an `Alive` update, or a message from
    /// it) adds it as a member, with [`FailureEvent::Joined`]. Default: off,
    /// members come from [`Swim::add_member`](super::Swim::add_member) and unknown ids are ignored.
    pub learn_from_gossip: bool,
}

impl Default for SwimConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            direct_pings: 2,
            indirect_probes: 5,
            confirm_probe: true,
            suspicion_multiplier: 4,
            suspicion_max_multiplier: 6,
            suspicion_confirmations: 3,
            max_piggyback: 8,
            retransmit_multiplier: 4,
            max_local_health: 8,
            learn_from_gossip: false,
        }
    }
}

impl SwimConfig {
    /// Checks the configuration ([`Swim::new`](super::Swim::new) does).
    pub fn validate(&self) -> Result<(), SwimConfigError> {
        let multipliers = [
            self.suspicion_multiplier,
            self.suspicion_max_multiplier,
            self.retransmit_multiplier,
        ];
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            Err(SwimConfigError::ProbeTimeout)
        } else if self.direct_pings == 0 {
            Err(SwimConfigError::ZeroPings)
        } else if self.max_piggyback == 0 {
            Err(SwimConfigError::ZeroPiggyback)
        } else if multipliers.contains(&0) {
            Err(SwimConfigError::ZeroMultiplier)
        } else {
            Ok(())
        }
    }
}

/// Why a [`SwimConfig`] was refused. Nothing was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwimConfigError {
    /// `probe_timeout` is zero or not below `probe_interval`.
    ProbeTimeout,
    /// `direct_pings` is zero: a probe would send no ping.
    ZeroPings,
    /// `max_piggyback` is zero: updates could never spread.
    ZeroPiggyback,
    /// A suspicion or retransmit multiplier is zero.
    ZeroMultiplier,
}

impl fmt::Display for SwimConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ProbeTimeout => "probe timeout must be non-zero and below the probe interval",
            Self::ZeroPings => "direct_pings must be at least 1",
            Self::ZeroPiggyback => "max_piggyback must be at least 1",
            Self::ZeroMultiplier => "suspicion and retransmit multipliers must be at least 1",
        })
    }
}

impl std::error::Error for SwimConfigError {}

/// A membership update, piggybacked on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update<P> {
    /// `id` is alive at `incarnation`.
    Alive {
        /// The member.
        id: P,
        /// Its incarnation.
        incarnation: u64,
    },
    /// `from` suspects `id` at `incarnation`.
    Suspect {
        /// The member suspected.
        id: P,
        /// Its incarnation as the suspecter knew it.
        incarnation: u64,
        /// Who suspects it; distinct suspecters shorten the timeout.
        from: P,
    },
    /// `id` was declared down at `incarnation`.
    Dead {
        /// The member declared down.
        id: P,
        /// Its incarnation as the declarer knew it.
        incarnation: u64,
    },
}

impl<P: Copy> Update<P> {
    /// The member the update is about.
    pub fn id(&self) -> P {
        match *self {
            Self::Alive { id, .. } | Self::Suspect { id, .. } | Self::Dead { id, .. } => id,
        }
    }
}

/// A message between two failure detectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwimMessage<P> {
    /// The sender's incarnation: its own word that it is alive.
    pub incarnation: u64,
    /// What the message asks or answers.
    pub kind: SwimKind<P>,
    /// Piggybacked updates.
    pub updates: Vec<Update<P>>,
}

/// What a [`SwimMessage`] asks or answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwimKind<P> {
    /// Are you there? Answered with an [`Ack`](Self::Ack) of the same `seq`.
    Ping {
        /// The sender's probe number.
        seq: u64,
    },
    /// Please ping `target` and relay its ack, or a nack if it is silent.
    PingReq {
        /// The requester's probe number, echoed in the answer.
        seq: u64,
        /// The member to probe.
        target: P,
    },
    /// I am here (or, relayed: the target is).
    Ack {
        /// The probe number answered.
        seq: u64,
    },
    /// I am here, but the target of your `PingReq` did not answer me.
    Nack {
        /// The probe number answered.
        seq: u64,
    },
}

/// What this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Answering, as far as this node knows.
    Alive,
    /// Missed a probe; declared down unless it refutes in time.
    Suspect,
    /// Declared down; back only with a higher incarnation. Not probed, but
    /// remembered until [`Swim::remove_member`](super::Swim::remove_member), so stale news cannot
    /// revive it.
    Down,
}

/// A change in what this node believes about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureEvent<P> {
    /// The member missed a probe, here or elsewhere, and is suspected.
    Suspected(P),
    /// The member is declared down.
    Down(P),
    /// A suspected member refuted the suspicion, or a down one came back
    /// with a higher incarnation.
    Alive(P),
    /// A member was learned of (only with [`SwimConfig::learn_from_gossip`]).
    Joined(P),
}

/// Counters since the detector was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwimStats {
    /// Probes started (each a direct ping).
    pub probes_sent: u64,
    /// Indirect probe requests (`PingReq`) sent.
    pub indirect_probes_sent: u64,
    /// Probes that ended with no ack at all.
    pub probes_failed: u64,
    /// Alive members whose probe failed once and were probed again before
    /// any suspicion (see [`SwimConfig::confirm_probe`]).
    pub doubts: u64,
    /// Alive members this node began to suspect after its own probe failed.
    pub suspicions_raised: u64,
    /// Suspected members seen refuting (false suspicions, seen here).
    pub suspicions_refuted: u64,
    /// Times this node refuted a suspicion or death of itself.
    pub refutations: u64,
    /// Members seen going down.
    pub members_down: u64,
}
