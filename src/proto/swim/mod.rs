//! SWIM failure detection, with the Lifeguard refinements.
//!
//! The failure detector of SWIM (Das, Gupta and Motivala, "SWIM: Scalable
//! Weakly-consistent Infection-style Process Group Membership Protocol",
//! DSN 2002) as a sans-IO state machine, with the local health and dynamic
//! suspicion timeout of Lifeguard (Dadgar, Phillips and Currey, "Lifeguard:
//! Local Health Awareness for More Accurate Failure Detection", 2018).
//!
//! # The protocol
//!
//! * **Probing.** Once per protocol period a node pings one member: the
//!   one it has had no word of for the longest (no message, no ack, no
//!   probe begun). With no other traffic this is a fixed round-robin, so
//!   a failure is found within one round, where the paper's list
//!   reshuffled each round allows almost two (its section 4.3); members
//!   that talk anyway need no probe, so the probes go to the silent ones,
//!   and a crashed member is reached sooner. The ping is
//!   repeated [`SwimConfig::direct_pings`] times over the probe timeout,
//!   until acked; then it pings once more and asks `k` other members to
//!   ping the target for it (`PingReq`); they relay the ack. Any ack by the
//!   end of the period clears the probe, and so does any other message
//!   from the target that the driver reports ([`Swim::heard_from`]): it is
//!   proof of life.
//! * **Suspicion.** A target that did not answer is *suspected*, not declared
//!   down. The suspicion is gossiped; every member that hears it starts a
//!   timer and declares the target down (gossiping `Dead`) when it runs out.
//! * **Incarnations.** Each member owns an incarnation number that only it
//!   raises. Hearing itself suspected or declared dead, a member raises it
//!   and gossips `Alive`, which overrides the suspicion. `Alive` at `i`
//!   beats `Suspect` only below `i`; `Suspect` at `i` beats `Alive` at `i`;
//!   `Dead` holds until `Alive` at a higher incarnation (a restart).
//! * **Dissemination.** Updates ride on every message, infection-style: each
//!   is sent `λ·⌈log₁₀(n+1)⌉` times, least-sent and newest first, at most
//!   [`SwimConfig::max_piggyback`] per message.
//! * **Local health** (Lifeguard). Missed acks and nacks more likely mean
//!   that this node is slow than that its peers failed. A score goes up on
//!   a failed probe, each missing nack and each refutation, down on a
//!   successful probe, and stretches the probe interval and timeout by
//!   `score + 1`. Relays answer `Nack` when the target is silent (or at
//!   once, when they cannot reach it). A node that heard from other members
//!   during a failed probe is not deaf, so its silent helpers count once,
//!   not each: under uniform heavy loss nacks are lost on the network, and
//!   counting each would stretch the period ninefold on every crash.
//!   For the same reason a failed probe of a member already suspected
//!   counts nothing while others are heard from: a crashed member is
//!   probed every round until declared down, and must not slow the
//!   detection of the next crash.
//! * **Dynamic suspicion timeout** (Lifeguard). A suspicion starts at the
//!   maximum timeout and shrinks logarithmically to the minimum as
//!   independent members confirm it.
//!
//! Gossip is probabilistic: a node can miss a refutation and then declare a
//! live member down. Under loss that happens, so a few repairs are added,
//! each through a message that is sent anyway:
//!
//! * every message carries its sender's incarnation, so direct contact
//!   refreshes what the receiver believes about the sender;
//! * a message to a suspected or dead member carries that news, so it can
//!   refute at once (Lifeguard's "buddy system"; a member restarted with no
//!   memory of its incarnation learns this way that it must raise it), and a
//!   member that hears a stale suspicion of itself gossips `Alive` again;
//! * a member heard suspected is probed at the next period, ahead of the
//!   round, and once more if that fails: the ping carries the suspicion,
//!   the ack the refutation, and a failure is an independent confirmation;
//! * `PingReq` carries the requester's view of the target, and a relayed
//!   ack or nack the relay's.
//!
//! # Driving it
//!
//! Inputs are [`Swim::handle_timeout`], [`Swim::handle_message`],
//! [`Swim::add_member`] and [`Swim::remove_member`], each given the current
//! time; outputs are drained with [`Swim::poll_transmit`] and
//! [`Swim::poll_event`]; [`Swim::poll_timeout`] says when the next timer is
//! due. The random number generator is the caller's, seeded: the same
//! inputs give the same outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use super::time::Time;

mod order;
mod piggyback;
mod types;

use order::QuietOrder;

pub use types::{
    FailureEvent, MemberState, SwimConfig, SwimConfigError, SwimKind, SwimMessage, SwimPeer,
    SwimStats, Update,
};

/// The SWIM failure detector of one node, generic over the peer id and the
/// random number generator.
#[derive(Debug)]
pub struct Swim<P, R = StdRng> {
    me: P,
    incarnation: u64,
    config: SwimConfig,
    rng: R,
    members: BTreeMap<P, Member<P>>,
    /// Members that may be probed, the quietest first.
    order: QuietOrder<P>,
    /// Members heard suspected, or doubted, probed ahead of the round.
    urgent: VecDeque<P>,
    /// Alive members whose last probe failed: probed again at once, and
    /// suspected only if that fails too (not gossiped, no event).
    doubted: BTreeSet<P>,
    probe: Option<Probe<P>>,
    next_probe_at: Option<Time>,
    /// Indirect probes run for others, by our own `seq`.
    relays: BTreeMap<u64, Relay<P>>,
    last_seq: u64,
    /// The newest update about each member still to disseminate, with how
    /// often it was sent and a counter ordering updates by age.
    gossip: BTreeMap<P, (Update<P>, u32, u64)>,
    gossip_counter: u64,
    local_health: u32,
    transmits: VecDeque<(P, SwimMessage<P>)>,
    events: VecDeque<FailureEvent<P>>,
    stats: SwimStats,
}

#[derive(Debug)]
struct Member<P> {
    state: MemberState,
    incarnation: u64,
    suspicion: Option<Suspicion<P>>,
}

/// A suspicion timer, shortened by confirmations (Lifeguard).
#[derive(Debug)]
struct Suspicion<P> {
    /// Who raised it; named when we pass it on.
    origin: P,
    start: Time,
    /// The minimum and maximum timeout and the confirmations expected.
    bounds: (Duration, Duration, u32),
    /// Distinct suspecters, the origin included.
    confirmations: BTreeSet<P>,
    deadline: Time,
    /// Whether a failed probe of the suspect was already retried.
    retried: bool,
}

/// The probe of the current protocol period.
#[derive(Debug)]
struct Probe<P> {
    target: P,
    seq: u64,
    /// When to probe indirectly; `None` once done or acked.
    indirect_at: Option<Time>,
    /// When to ping the target directly again; `None` once done or acked.
    retry_at: Option<Time>,
    /// Direct pings still to send before the indirect phase.
    pings_left: u32,
    /// The time between them.
    spacing: Duration,
    /// 2 for a confirmation probe (twice the pings and helpers), else 1.
    width: u32,
    relays: Vec<P>,
    nacks: usize,
    acked: bool,
    /// Whether another member was heard from since the probe began.
    heard_others: bool,
    /// Whether the target was already suspected when the probe began.
    of_suspect: bool,
}

/// An indirect probe run for `requester`.
#[derive(Debug)]
struct Relay<P> {
    requester: P,
    seq: u64,
    target: P,
    /// When to ping the target again; `None` once done.
    retry_at: Option<Time>,
    /// When to give up and answer `Nack`.
    nack_at: Time,
}

impl<P> Suspicion<P> {
    /// `max - (max - min)·log(c + 1)/log(K + 1)` after `c` confirmations,
    /// never below `min`; due at once if that is already past.
    fn recompute(&mut self, now: Time) {
        let (min, max, expected) = self.bounds;
        let c = self.confirmations.len().saturating_sub(1) as f64;
        let timeout = if expected == 0 {
            min
        } else {
            let frac = (c + 1.0).ln() / (f64::from(expected) + 1.0).ln();
            max.saturating_sub(max.saturating_sub(min).mul_f64(frac.min(1.0)))
        };
        self.deadline = (self.start + timeout.max(min)).max(now);
    }
}

impl<P: SwimPeer, R: RngCore> Swim<P, R> {
    /// A detector for node `me`, with no members yet, drawing from `rng`.
    pub fn new(me: P, config: SwimConfig, rng: R) -> Result<Self, SwimConfigError> {
        config.validate()?;
        let mut swim = Self {
            me,
            incarnation: 0,
            config,
            rng,
            members: BTreeMap::new(),
            order: QuietOrder::new(),
            urgent: VecDeque::new(),
            doubted: BTreeSet::new(),
            probe: None,
            next_probe_at: None,
            relays: BTreeMap::new(),
            last_seq: 0,
            gossip: BTreeMap::new(),
            gossip_counter: 0,
            local_health: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SwimStats::default(),
        };
        swim.announce();
        Ok(swim)
    }

    /// This node's id.
    pub fn id(&self) -> P {
        self.me
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Raises this node's incarnation (a restarted node that remembers its
    /// last one passes it plus one) and announces it. Lower values are
    /// ignored.
    pub fn set_incarnation(&mut self, incarnation: u64) {
        if incarnation > self.incarnation {
            self.incarnation = incarnation;
            self.announce();
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    /// Lifeguard's local health score; 0 is healthy.
    pub fn local_health(&self) -> u32 {
        self.local_health
    }

    /// The counters.
    pub fn stats(&self) -> &SwimStats {
        &self.stats
    }

    /// What this node believes about `id`, if it is a member.
    pub fn state_of(&self, id: P) -> Option<MemberState> {
        self.members.get(&id).map(|m| m.state)
    }

    /// The incarnation of member `id` as this node knows it.
    pub fn incarnation_of(&self, id: P) -> Option<u64> {
        self.members.get(&id).map(|m| m.incarnation)
    }

    /// Every member (this node excluded) with its state, in id order.
    pub fn members(&self) -> impl Iterator<Item = (P, MemberState)> + '_ {
        self.members.iter().map(|(id, m)| (*id, m.state))
    }

    /// Adds `id` as a member, alive at incarnation 0. Returns `false`, and
    /// changes nothing, if it is this node or already a member.
    pub fn add_member(&mut self, now: Time, id: P) -> bool {
        if id == self.me || self.members.contains_key(&id) {
            return false;
        }
        self.insert_member(now, id, 0);
        true
    }

    /// Forgets member `id`. Returns whether it was one.
    pub fn remove_member(&mut self, id: P) -> bool {
        if self.members.remove(&id).is_none() {
            return false;
        }
        self.gossip.remove(&id);
        self.order.remove(id);
        self.urgent.retain(|p| *p != id);
        self.doubted.remove(&id);
        if self.probe.as_ref().is_some_and(|p| p.target == id) {
            self.probe = None;
        }
        true
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if any
    /// timer is pending.
    pub fn poll_timeout(&self) -> Option<Time> {
        let indirect = self.probe.as_ref().and_then(|p| p.indirect_at);
        let retry = self.probe.as_ref().and_then(|p| p.retry_at);
        let relays = self
            .relays
            .values()
            .flat_map(|r| [Some(r.nack_at), r.retry_at]);
        let relays = relays.flatten();
        let suspicions = self.members.values().filter_map(|m| m.suspicion.as_ref());
        let suspicions = suspicions.map(|s| s.deadline);
        let timers = [self.next_probe_at, indirect, retry].into_iter().flatten();
        timers.chain(relays).chain(suspicions).min()
    }

    /// The next message to send, with its destination.
    pub fn poll_transmit(&mut self) -> Option<(P, SwimMessage<P>)> {
        self.transmits.pop_front()
    }

    /// The next failure event.
    pub fn poll_event(&mut self) -> Option<FailureEvent<P>> {
        self.events.pop_front()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let due = |t: Option<Time>| t.is_some_and(|t| t <= now);
        let relays = std::mem::take(&mut self.relays);
        let (silent, waiting) = relays.into_iter().partition(|(_, r)| r.nack_at <= now);
        self.relays = waiting;
        for relay in BTreeMap::into_values(silent) {
            let kind = SwimKind::Nack { seq: relay.seq };
            self.send(relay.requester, Some(relay.target), kind);
        }
        let retries: Vec<(u64, P)> = self
            .relays
            .iter_mut()
            .filter(|(_, r)| due(r.retry_at))
            .map(|(own, r)| {
                r.retry_at = None;
                (*own, r.target)
            })
            .collect();
        for (own, target) in retries {
            self.send(target, None, SwimKind::Ping { seq: own });
        }
        if due(self.probe.as_ref().and_then(|p| p.retry_at)) {
            if let Some(probe) = self.probe.as_mut() {
                probe.pings_left = probe.pings_left.saturating_sub(1);
                probe.retry_at = (probe.pings_left > 0).then(|| now + probe.spacing);
                let (target, seq) = (probe.target, probe.seq);
                self.send(target, None, SwimKind::Ping { seq });
            }
        }
        if due(self.probe.as_ref().and_then(|p| p.indirect_at)) {
            self.probe_indirectly();
        }
        if due(self.next_probe_at) {
            self.finish_probe(now);
            self.start_probe(now);
        }
        // Last: a failed probe may just have confirmed a suspicion.
        let expired: Vec<(P, u64)> = self
            .members
            .iter()
            .filter(|(_, m)| m.suspicion.as_ref().is_some_and(|s| s.deadline <= now))
            .map(|(id, m)| (*id, m.incarnation))
            .collect();
        for (id, incarnation) in expired {
            self.apply(now, Update::Dead { id, incarnation });
        }
    }

    /// Takes a message from `from`. Nothing in it can make this panic;
    /// updates about unknown ids are ignored.
    pub fn handle_message(&mut self, now: Time, from: P, msg: SwimMessage<P>) {
        if from == self.me {
            return;
        }
        self.order.touch(from, now);
        // The sender's own word first.
        let sender = Update::Alive {
            id: from,
            incarnation: msg.incarnation,
        };
        for update in std::iter::once(sender).chain(msg.updates) {
            self.apply(now, update);
        }
        match msg.kind {
            SwimKind::Ping { seq } => self.send(from, None, SwimKind::Ack { seq }),
            SwimKind::PingReq { seq, target } => self.relay(now, from, seq, target),
            SwimKind::Ack { seq } => self.take_ack(now, from, seq),
            SwimKind::Nack { seq } => {
                if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    if probe.relays.contains(&from) {
                        probe.nacks = (probe.nacks + 1).min(probe.relays.len());
                    }
                }
            }
        }
    }

    /// Proof of life: any message from a member, whatever it says, clears
    /// a probe of it (ours, or one we run for another member). The driver
    /// calls this for every message it gets from a member over the path
    /// its probes take, the detector's own included: under loss, traffic
    /// that flows anyway answers for pings and acks that were lost. Only
    /// that path: a message over another one (a second connection to the
    /// same peer) says nothing of whether the probed path still works,
    /// and a dead path must still be found.
    /// It also sends `from` to the back of the probe order.
    pub fn heard_from(&mut self, now: Time, from: P) {
        self.order.touch(from, now);
        if let Some(probe) = self.probe.as_mut() {
            if probe.target != from && self.members.contains_key(&from) {
                probe.heard_others = true;
            }
        }
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.target == from && !p.acked)
        {
            let seq = self.probe.as_ref().map_or(0, |p| p.seq);
            self.take_ack(now, from, seq);
        }
        let relayed: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.target == from)
            .map(|(own, _)| *own)
            .collect();
        for own in relayed {
            self.take_ack(now, from, own);
        }
    }

    fn relay(&mut self, now: Time, requester: P, seq: u64, target: P) {
        if target == self.me {
            self.send(requester, None, SwimKind::Ack { seq });
        } else if !self.members.contains_key(&target) {
            // We cannot reach it; a nack at once still tells a member asking
            // that its own messages get through (Lifeguard's point), so it
            // does not blame itself for our silence. Strangers get nothing.
            if self.members.contains_key(&requester) {
                self.send(requester, None, SwimKind::Nack { seq });
            }
        } else {
            let own = self.take_seq();
            // Lifeguard: nack in time for the requester's period to count it.
            let nack_at = now + self.config.probe_timeout.mul_f64(0.8);
            // As the requester does, the helper pings again halfway.
            let retry_at = Some(now + self.config.probe_timeout.mul_f64(0.4));
            self.relays.insert(
                own,
                Relay {
                    requester,
                    seq,
                    target,
                    retry_at,
                    nack_at,
                },
            );
            self.send(target, None, SwimKind::Ping { seq: own });
        }
    }

    fn take_ack(&mut self, now: Time, from: P, seq: u64) {
        if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if !probe.acked && (probe.target == from || probe.relays.contains(&from)) {
                probe.acked = true;
                probe.indirect_at = None;
                probe.retry_at = None;
                let target = probe.target;
                self.order.touch(target, now);
                self.doubted.remove(&target);
                self.adjust_health(-1);
            }
        } else if self.relays.get(&seq).is_some_and(|r| r.target == from) {
            if let Some(relay) = self.relays.remove(&seq) {
                let kind = SwimKind::Ack { seq: relay.seq };
                self.send(relay.requester, Some(relay.target), kind);
            }
        }
    }

    /// Ends the period's probe: no ack means suspicion.
    fn finish_probe(&mut self, now: Time) {
        let Some(probe) = self.probe.take().filter(|p| !p.acked) else {
            return;
        };
        self.stats.probes_failed += 1;
        // Lifeguard: missing nacks say we, not the target, are in trouble.
        // A node that heard from other members during the probe is not
        // the deaf or stalled one: its nacks were lost on the network, so
        // the failure counts once, not once per silent helper.
        // A suspect is expected to fail its probe: that says nothing of
        // us unless we heard no one at all. Counting it would let one
        // crashed member, probed every round until declared down, stretch
        // the period and slow the detection of the next crash.
        let missed = match probe.relays.len() {
            _ if probe.of_suspect && probe.heard_others => 0,
            0 => 1,
            asked if probe.heard_others => asked.saturating_sub(probe.nacks).min(1),
            asked => asked.saturating_sub(probe.nacks),
        };
        self.adjust_health(i64::try_from(missed).unwrap_or(i64::MAX));
        let alive = self.state_of(probe.target) == Some(MemberState::Alive);
        if alive && self.config.confirm_probe && self.doubted.insert(probe.target) {
            // One failed probe under loss is common; two in a row of a
            // live member, each with its retries and helpers, are not.
            self.stats.doubts += 1;
            self.urgent.retain(|p| *p != probe.target);
            self.urgent.push_front(probe.target);
            return;
        }
        self.doubted.remove(&probe.target);
        if let Some(member) = self.members.get(&probe.target) {
            if member.state == MemberState::Alive {
                self.stats.suspicions_raised += 1;
            }
            let (id, incarnation, from) = (probe.target, member.incarnation, self.me);
            self.apply(
                now,
                Update::Suspect {
                    id,
                    incarnation,
                    from,
                },
            );
            // A suspect whose probe failed is probed once more, promptly.
            let suspicion = self.members.get_mut(&id).and_then(|m| m.suspicion.as_mut());
            if let Some(s) = suspicion.filter(|s| !s.retried) {
                s.retried = true;
                if !self.urgent.contains(&id) {
                    self.urgent.push_back(id);
                }
            }
        }
    }

    fn start_probe(&mut self, now: Time) {
        let Some(target) = self.next_target() else {
            self.next_probe_at = None;
            return;
        };
        let seq = self.take_seq();
        let timeout = self.scaled(self.config.probe_timeout);
        let indirect_at = Some(now + timeout);
        // A confirmation probe is the last word before a suspicion, and it
        // is rare (one failed probe comes first), so it is twice as wide.
        let width = if self.doubted.contains(&target) { 2 } else { 1 };
        // The direct ping is sent again, evenly, until the indirect phase.
        let pings = self.config.direct_pings.saturating_mul(width);
        let pings_left = pings.saturating_sub(1);
        let spacing = self.ping_spacing(pings);
        let retry_at = (pings_left > 0).then(|| now + spacing);
        let (relays, nacks, acked) = (Vec::new(), 0, false);
        self.probe = Some(Probe {
            target,
            seq,
            indirect_at,
            retry_at,
            pings_left,
            spacing,
            width,
            heard_others: false,
            of_suspect: self.state_of(target) == Some(MemberState::Suspect),
            relays,
            nacks,
            acked,
        });
        self.next_probe_at = Some(now + self.scaled(self.config.probe_interval));
        self.order.touch(target, now);
        self.stats.probes_sent += 1;
        self.send(target, None, SwimKind::Ping { seq });
    }

    /// Suspects and doubted members first, then the member quiet the
    /// longest. Down members are not in the order.
    fn next_target(&mut self) -> Option<P> {
        while let Some(id) = self.urgent.pop_front() {
            if self.state_of(id) == Some(MemberState::Suspect) || self.doubted.contains(&id) {
                return Some(id);
            }
        }
        self.order.first()
    }

    /// Pings the target again and asks `k` alive members to ping it too.
    fn probe_indirectly(&mut self) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        probe.indirect_at = None;
        let (target, seq, width) = (probe.target, probe.seq, probe.width);
        let mut helpers = self.members_where(|s| s == MemberState::Alive);
        helpers.retain(|id| *id != target);
        helpers.shuffle(&mut self.rng);
        helpers.truncate(self.config.indirect_probes.saturating_mul(width as usize));
        self.send(target, None, SwimKind::Ping { seq });
        for helper in &helpers {
            self.send(*helper, Some(target), SwimKind::PingReq { seq, target });
        }
        self.stats.indirect_probes_sent += helpers.len() as u64;
        if let Some(probe) = self.probe.as_mut() {
            probe.relays = helpers;
        }
    }

    /// Applies one update: events for what changed, gossip for what is news.
    fn apply(&mut self, now: Time, update: Update<P>) {
        let id = update.id();
        if id == self.me {
            self.apply_about_me(update);
            return;
        }
        let bounds = self.suspicion_bounds();
        let Some(member) = self.members.get_mut(&id) else {
            if let Update::Alive { incarnation, .. } = update {
                if self.config.learn_from_gossip {
                    self.insert_member(now, id, incarnation);
                    self.events.push_back(FailureEvent::Joined(id));
                    self.enqueue(update);
                }
            }
            return;
        };
        match update {
            Update::Alive { incarnation, .. } => {
                if incarnation <= member.incarnation {
                    return;
                }
                let was = member.state;
                (member.state, member.incarnation, member.suspicion) =
                    (MemberState::Alive, incarnation, None);
                if was == MemberState::Suspect {
                    self.stats.suspicions_refuted += 1;
                } else if was == MemberState::Down {
                    self.join_round(now, id);
                }
                if was != MemberState::Alive {
                    self.events.push_back(FailureEvent::Alive(id));
                }
            }
            Update::Suspect {
                incarnation, from, ..
            } => {
                if incarnation < member.incarnation || member.state == MemberState::Down {
                    return;
                }
                let same =
                    member.state == MemberState::Suspect && incarnation == member.incarnation;
                match member.suspicion.as_mut() {
                    // A confirmation from another member shortens the timer.
                    Some(s) if same => {
                        if !s.confirmations.insert(from) {
                            return;
                        }
                        s.recompute(now);
                    }
                    // A new suspicion. At a higher incarnation the member
                    // refuted the old one, so the timer starts over.
                    _ => {
                        let (origin, start, confirmations) = (from, now, BTreeSet::from([from]));
                        let mut s = Suspicion {
                            origin,
                            start,
                            bounds,
                            confirmations,
                            deadline: now,
                            retried: false,
                        };
                        s.recompute(now);
                        (member.suspicion, member.incarnation) = (Some(s), incarnation);
                        if member.state == MemberState::Alive {
                            member.state = MemberState::Suspect;
                            self.events.push_back(FailureEvent::Suspected(id));
                        }
                        if !self.urgent.contains(&id) {
                            self.urgent.push_back(id);
                        }
                    }
                }
            }
            Update::Dead { incarnation, .. } => {
                if incarnation < member.incarnation || member.state == MemberState::Down {
                    return;
                }
                (member.state, member.incarnation, member.suspicion) =
                    (MemberState::Down, incarnation, None);
                self.order.remove(id);
                self.stats.members_down += 1;
                self.events.push_back(FailureEvent::Down(id));
            }
        }
        self.enqueue(update);
    }

    /// Refutes a suspicion or death of this node at or above its
    /// incarnation; re-announces on a stale one, which the sender holds
    /// because it missed the refutation.
    fn apply_about_me(&mut self, update: Update<P>) {
        match update {
            // A node restarted with fresh state learns its incarnation back.
            Update::Alive { incarnation, .. } => {
                self.incarnation = self.incarnation.max(incarnation)
            }
            Update::Suspect { incarnation, .. } | Update::Dead { incarnation, .. } => {
                if incarnation >= self.incarnation {
                    self.incarnation = incarnation.saturating_add(1);
                    self.stats.refutations += 1;
                    self.adjust_health(1);
                }
                self.announce();
            }
        }
    }

    fn insert_member(&mut self, now: Time, id: P, incarnation: u64) {
        let (state, suspicion) = (MemberState::Alive, None);
        self.members.insert(
            id,
            Member {
                state,
                incarnation,
                suspicion,
            },
        );
        self.join_round(now, id);
    }

    /// Puts a newcomer (or a member back from the dead) in the probe
    /// order, as quiet since now, and schedules the first probe if none
    /// is: at a random offset, so that nodes started together are not in
    /// lockstep.
    fn join_round(&mut self, now: Time, id: P) {
        let tiebreak = self.rng.next_u64();
        self.order.insert(id, now, tiebreak);
        if self.next_probe_at.is_none() {
            let period = u64::try_from(self.config.probe_interval.as_micros()).unwrap_or(u64::MAX);
            let offset = self.rng.random_range(0..period.max(1));
            self.next_probe_at = Some(now + Duration::from_micros(offset));
        }
    }

    /// Members whose state passes `keep`, in id order.
    fn members_where(&self, keep: impl Fn(MemberState) -> bool) -> Vec<P> {
        let kept = self.members.iter().filter(|(_, m)| keep(m.state));
        kept.map(|(id, _)| *id).collect()
    }

    /// Lifeguard's minimum and maximum timeout, and `K`, for a suspicion.
    fn suspicion_bounds(&self) -> (Duration, Duration, u32) {
        let n = self.members.len() + 1;
        let periods = f64::from(self.config.suspicion_multiplier) * (n as f64).log10().max(1.0);
        let min = self.config.probe_interval.as_secs_f64() * periods;
        let min = Duration::try_from_secs_f64(min).unwrap_or(Duration::MAX);
        let max = min.saturating_mul(self.config.suspicion_max_multiplier);
        let others = u32::try_from(n.saturating_sub(2)).unwrap_or(u32::MAX);
        (min, max, self.config.suspicion_confirmations.min(others))
    }

    /// The time between `pings` direct pings of one probe.
    fn ping_spacing(&self, pings: u32) -> Duration {
        self.scaled(self.config.probe_timeout) / pings.max(1)
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.saturating_mul(self.local_health + 1)
    }

    fn adjust_health(&mut self, delta: i64) {
        let score = i64::from(self.local_health).saturating_add(delta);
        let score = score.clamp(0, i64::from(self.config.max_local_health));
        self.local_health = u32::try_from(score).unwrap_or(0);
    }

    fn take_seq(&mut self) -> u64 {
        self.last_seq = self.last_seq.wrapping_add(1);
        self.last_seq
    }
}

#[cfg(test)]
mod tests;
