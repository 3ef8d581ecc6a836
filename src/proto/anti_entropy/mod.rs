//! Anti-entropy: repair what eager pushes lost, and spread the acks that
//! make ops stable.
//!
//! Repeaters push every op eagerly, but a push can be lost (a lossy link, a
//! partition, a crashed or late peer). Every `interval`, a node picks
//! `fanout` of its links at random and sends each a [`Message::Summary`]:
//! two 64-bit hashes, one of the set of objects it holds, one over its
//! digests of the objects both ends hold ("a summary of summaries"). When
//! nothing changed the receiver computes the same root and the exchange ends
//! there: an idle round costs a few dozen bytes per pair, however many
//! objects there are.
//!
//! When the summaries differ, the receiver answers with its digests
//! ([`Message::Digest`], chunked under `max_digest_bytes`): per object, the
//! version vector it holds (`origin -> highest seq with no gap below`) and
//! its acknowledgement table (see [`stability`](super::stability)). The
//! first node merges the acks, pushes the ops the peer lacks (at most
//! `repair_budget` bytes per object and exchange, the rest next round), or
//! the object's snapshot when the peer lacks ops already folded, and answers
//! with its own digests, so the peer can do the same the other way. Ops of
//! an origin are pushed only when the peer's count of them did not grow
//! since its previous digest: under load a peer always lacks the ops still
//! in flight to it, and those need no repair. A digest also names the runs
//! a peer holds above a gap (ops that came by another path first), and
//! those are not pushed again. This is
//! the push-pull anti-entropy of Demers et al. ("Epidemic algorithms for
//! replicated database maintenance", PODC 1987), with the per-peer
//! summary-of-summaries of Tribler's gossip made exact.
//!
//! Repaired ops are relayed like any op, so one repaired node at the edge of
//! a healed partition spreads them to its side at once.
//!
//! An object's digest larger than `max_digest_bytes` (thousands of members)
//! is split into pieces by origin range (see [`Span`](super::message::Span)), so no message
//! grows with the membership: the default keeps every digest message
//! under 64 KiB.

mod pieces;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use rand::seq::IteratorRandom;
use rand::Rng;
use ring::digest::{Context, SHA256};

use super::host::{Host, Repair};
use super::id::ObjectKey;
use super::message::{Message, ObjectDigest};
use super::time::Time;
use super::version::VersionVector;

/// Settings of anti-entropy.
#[derive(Clone, Debug)]
pub struct AntiEntropyConfig {
    /// The mean time between two rounds (each round is jittered by ±25%).
    /// Default: 1 s.
    pub interval: Duration,
    /// How many links a round sends a summary to. Default: 2.
    pub fanout: usize,
    /// The largest digest message, in (estimated) bytes: digests of many
    /// objects go in several messages, and one object's digest larger than
    /// this is split by origin range. Default: 48 KiB, which keeps every
    /// digest message under 64 KiB on the wire.
    pub max_digest_bytes: usize,
    /// The most op bytes pushed per object in one exchange; a peer that
    /// lacks more gets the rest in later rounds. Default: 1 MiB.
    pub repair_budget: usize,
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            fanout: 2,
            max_digest_bytes: 48 << 10,
            repair_budget: 1 << 20,
        }
    }
}

/// Counters of anti-entropy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyStats {
    /// Rounds run.
    pub rounds: u64,
    /// Summaries sent.
    pub summaries: u64,
    /// Summaries received that matched: nothing to exchange.
    pub in_sync: u64,
    /// Digest messages sent.
    pub digests: u64,
    /// Ops pushed to peers that lacked them.
    pub ops_repaired: u64,
    /// Snapshots sent to peers that lacked folded ops.
    pub snapshots: u64,
    /// Snapshots received that moved a replica forward.
    pub rebased: u64,
    /// Pieces of split digests sent (an object's digest larger than
    /// `max_digest_bytes` goes in several).
    pub pieces: u64,
    /// Digest pieces dropped for a malformed span.
    pub bad_pieces: u64,
}

/// What this node knows of a peer's objects.
#[derive(Debug, Default)]
struct PeerObjects {
    objects: BTreeSet<ObjectKey>,
    set: Option<u64>,
    /// Keys of a digest being received in parts.
    pending: Option<BTreeSet<ObjectKey>>,
    /// Per object, what the peer held at its last digest.
    held: HashMap<ObjectKey, VersionVector>,
    /// The acks of split digests being received.
    assembly: pieces::Assembly,
    /// Per object, the round of the peer's split digest a snapshot was
    /// last sent for: one snapshot per round, not one per piece.
    snapshot_round: HashMap<ObjectKey, u32>,
}

/// One hosted object: its key and its replica.
pub(crate) type HostRef<'a> = (&'a ObjectKey, &'a mut (dyn Host + 'static));

/// The hosts of a node, sorted by key.
pub(crate) type Hosts<'a> = [HostRef<'a>];

/// The anti-entropy state of one node: the round timer, what it knows of
/// each peer's objects, and cached digest hashes.
#[derive(Debug)]
pub(crate) struct AntiEntropy<L> {
    config: AntiEntropyConfig,
    peers: HashMap<L, PeerObjects>,
    /// Per object: the replica revision a hash was computed at, and it.
    hashes: HashMap<ObjectKey, (u64, u64)>,
    next_round: Time,
    /// Numbers this node's split digests (see [`Span::round`](super::message::Span::round)).
    split_round: u32,
    stats: AntiEntropyStats,
}

impl<L: Copy + Eq + Hash> AntiEntropy<L> {
    /// The first round is due one jittered interval after the epoch.
    pub(crate) fn new(config: AntiEntropyConfig, rng: &mut impl Rng) -> Self {
        let next_round = Time::ZERO + jitter(config.interval, rng);
        Self {
            config,
            peers: HashMap::new(),
            hashes: HashMap::new(),
            next_round,
            split_round: 0,
            stats: AntiEntropyStats::default(),
        }
    }

    pub(crate) const fn stats(&self) -> AntiEntropyStats {
        self.stats
    }

    pub(crate) const fn next_round(&self) -> Time {
        self.next_round
    }

    /// Forget a peer whose link went down.
    pub(crate) fn handle_link_down(&mut self, link: L) {
        self.peers.remove(&link);
    }

    /// Run a round if one is due: a summary to each of up to `fanout`
    /// random links.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Time,
        links: impl Iterator<Item = L>,
        hosts: &mut Hosts<'_>,
        rng: &mut impl Rng,
    ) -> Vec<(L, Message)> {
        if now < self.next_round {
            return Vec::new();
        }
        self.next_round = now + jitter(self.config.interval, rng);
        if hosts.is_empty() {
            return Vec::new();
        }
        self.stats.rounds += 1;
        let set = set_hash(hosts.iter().map(|(k, _)| *k));
        let chosen = links.choose_multiple(rng, self.config.fanout);
        let mut out = Vec::with_capacity(chosen.len());
        for link in chosen {
            // A peer whose objects are not known yet is assumed to hold the
            // same ones: if it does, the first exchange ends at the summary.
            let common = self
                .peers
                .get(&link)
                .filter(|p| p.set.is_some())
                .map(|p| &p.objects);
            let root = root_hash(&mut self.hashes, common, hosts);
            self.stats.summaries += 1;
            out.push((link, Message::Summary { set, root }));
        }
        out
    }

    /// A summary arrived from `from`: answer with digests unless both ends
    /// agree.
    pub(crate) fn handle_summary(
        &mut self,
        from: L,
        set: u64,
        root: u64,
        hosts: &mut Hosts<'_>,
    ) -> Vec<Message> {
        // The objects the sender hashed: those it learned we hold, or, if it
        // holds the same set as we do, all of ours.
        let mine = set_hash(hosts.iter().map(|(k, _)| *k));
        let common = match self.peers.get(&from).filter(|p| p.set == Some(set)) {
            Some(peer) => Some(Some(&peer.objects)),
            None if set == mine => Some(None),
            None => None,
        };
        if let Some(common) = common {
            if root_hash(&mut self.hashes, common, hosts) == root {
                self.stats.in_sync += 1;
                return Vec::new();
            }
        }
        self.digests(hosts, true)
    }

    /// Digests arrived from `from`: merge acks, push what the peer lacks,
    /// and answer with ours if asked.
    pub(crate) fn handle_digest(
        &mut self,
        from: L,
        objects: Vec<ObjectDigest>,
        (reply, first, last): (bool, bool, bool),
        hosts: &mut Hosts<'_>,
    ) -> Vec<Message> {
        let peer = self.peers.entry(from).or_default();
        if first || peer.pending.is_none() {
            peer.pending = Some(BTreeSet::new());
        }
        let mut out = Vec::new();
        for digest in objects {
            if let Some(pending) = peer.pending.as_mut() {
                pending.insert(digest.object.clone());
            }
            let Ok(at) = hosts.binary_search_by(|(k, _)| (*k).cmp(&digest.object)) else {
                continue;
            };
            if digest.span.as_ref().is_some_and(|s| !s.is_valid()) {
                self.stats.bad_pieces += 1;
                continue;
            }
            let host = &mut *hosts[at].1;
            match &digest.span {
                None => host.merge_acks(&digest.acks),
                Some(span) => {
                    if let Some(acks) = peer.assembly.add(&digest.object, span, &digest.acks) {
                        host.merge_acks(&acks);
                    }
                }
            }
            // Under load a peer always lacks the ops still in flight to it.
            // Only an origin whose ops stopped arriving there since its
            // previous digest (a loss, a partition, a late join) is
            // repaired; the first digest from a peer repairs every op, but
            // gets no snapshot (see `repair_of`).
            let upto = peer.held.get(&digest.object).map(|before| {
                let grew = digest
                    .held
                    .0
                    .iter()
                    .filter(|(o, held)| **held > before.get(o));
                VersionVector(grew.map(|(o, held)| (*o, *held)).collect())
            });
            let result = host.repair(
                &digest.held,
                &digest.above,
                upto.as_ref(),
                digest.span.as_ref(),
                self.config.repair_budget,
            );
            pieces::update_held(peer.held.entry(digest.object.clone()).or_default(), &digest);
            match result {
                Ok(Repair::Ops(ops)) => {
                    self.stats.ops_repaired += ops.len() as u64;
                    out.extend(ops.into_iter().map(Message::Repair));
                }
                Ok(Repair::Snapshot(state)) => {
                    // One snapshot per split digest, however many of its
                    // pieces show folded ops missing.
                    let round = digest.span.map(|s| s.round);
                    let again = round.is_some_and(|r| {
                        peer.snapshot_round.insert(digest.object.clone(), r) == Some(r)
                    });
                    if !again {
                        self.stats.snapshots += 1;
                        out.push(Message::Snapshot(Box::new(state)));
                    }
                }
                // The object's state cannot be encoded here: nothing to send.
                Err(_) => {}
            }
        }
        if last {
            if let Some(objects) = peer.pending.take() {
                peer.set = Some(set_hash(objects.iter()));
                peer.objects = objects;
            }
            if reply {
                out.extend(self.digests(hosts, false));
            }
        }
        out
    }

    /// A snapshot arrived: move the replica onto it if it is ahead.
    pub(crate) fn handle_snapshot(
        &mut self,
        state: &super::message::StateFrame,
        hosts: &mut Hosts<'_>,
    ) {
        let Ok(at) = hosts.binary_search_by(|(k, _)| (*k).cmp(&state.object)) else {
            return;
        };
        if let Ok(true) = hosts[at].1.rebase(state) {
            self.stats.rebased += 1;
        }
    }

    /// Our digests of every object held, split into messages.
    fn digests(&mut self, hosts: &mut Hosts<'_>, reply: bool) -> Vec<Message> {
        let mut parts: Vec<Vec<ObjectDigest>> = vec![Vec::new()];
        let mut bytes = 0;
        for (key, host) in hosts.iter_mut() {
            host.refresh();
            let digest = host.digest(key);
            let budget = self.config.max_digest_bytes;
            let round = self.split_round.wrapping_add(1);
            let pieces = pieces::split(digest, budget, round);
            if pieces.first().is_some_and(|p| p.span.is_some()) {
                self.split_round = round;
                self.stats.pieces += pieces.len() as u64;
            }
            for piece in pieces {
                let size = estimate(&piece);
                if bytes + size > budget && bytes > 0 {
                    parts.push(Vec::new());
                    bytes = 0;
                }
                bytes += size;
                if let Some(part) = parts.last_mut() {
                    part.push(piece);
                }
            }
        }
        let n = parts.len();
        self.stats.digests += n as u64;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, objects)| Message::Digest {
                objects,
                reply,
                first: i == 0,
                last: i + 1 == n,
            })
            .collect()
    }
}

/// The hash over our digests of the objects in `common` that we hold; each
/// object's hash is cached in `hashes` by the replica's revision.
fn root_hash(
    hashes: &mut HashMap<ObjectKey, (u64, u64)>,
    common: Option<&BTreeSet<ObjectKey>>,
    hosts: &mut Hosts<'_>,
) -> u64 {
    let mut ctx = Context::new(&SHA256);
    for (key, host) in hosts.iter_mut() {
        if common.is_some_and(|c| !c.contains(*key)) {
            continue;
        }
        let revision = host.refresh();
        let hash = match hashes.get(*key) {
            Some((at, hash)) if *at == revision => *hash,
            _ => {
                // A replica whose new origin awaits admission never
                // matches a peer: digests flow until a peer's table,
                // showing the origin, comes back.
                let salt = if host.awaits_admission() { u64::MAX } else { 0 };
                let hash = host.digest_hash(key) ^ salt;
                hashes.insert((*key).clone(), (revision, hash));
                hash
            }
        };
        ctx.update(&hash.to_be_bytes());
    }
    first_u64(ctx.finish().as_ref())
}

/// `interval`, jittered by up to ±25%.
fn jitter(interval: Duration, rng: &mut impl Rng) -> Duration {
    interval.mul_f64(rng.random_range(0.75..1.25))
}

/// A hash of a set of object keys.
fn set_hash<'a>(keys: impl Iterator<Item = &'a ObjectKey>) -> u64 {
    let mut ctx = Context::new(&SHA256);
    for key in keys {
        for part in [key.tag.as_bytes(), key.name.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    first_u64(ctx.finish().as_ref())
}

fn first_u64(bytes: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(first)
}

/// About how many bytes a digest takes on the wire (a little more than
/// it does: entries are costed at their largest encoding).
fn estimate(digest: &ObjectDigest) -> usize {
    16 + 80 * usize::from(digest.span.is_some())
        + digest.object.tag.len()
        + digest.object.name.len()
        + 44 * digest.held.0.len()
        + 56 * digest.above.len()
        + 64 * digest.acks.len()
        + 48 * digest.acks.evictions().count()
        + 72 * digest.acks.epochs().count()
}
