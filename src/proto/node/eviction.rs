//! Departed peers: which nodes this node saw go, since when, and the
//! eviction of their origins from the replica sets once they stayed gone
//! for [`RepeaterConfig::evict_after`](super::RepeaterConfig::evict_after).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::Hash;

use super::super::id::{NodeId, ObjectKey};
use super::super::time::Time;
use super::RepeaterNode;

/// A peer seen gone.
#[derive(Debug)]
struct Departure {
    since: Time,
    /// The origins it had in the replica sets hosted here when it went:
    /// what is evicted. An origin it takes later (a new restart epoch,
    /// after someone else evicted it) proves it alive, so is not.
    origins: BTreeSet<NodeId>,
    evicted: bool,
}

/// Peers seen gone, and whether they were evicted already.
#[derive(Debug, Default)]
pub(super) struct Departures {
    gone: BTreeMap<NodeId, Departure>,
}

impl Departures {
    /// `peer`, with `origins`, went (down, or its last link lost without a
    /// goodbye); the first time counts.
    fn gone(&mut self, peer: NodeId, now: Time, origins: BTreeSet<NodeId>) {
        self.gone.entry(peer).or_insert(Departure {
            since: now,
            origins,
            evicted: false,
        });
    }

    /// `peer` was heard from again.
    pub(super) fn back(&mut self, peer: NodeId) {
        self.gone.remove(&peer);
    }

    /// Forget every peer seen gone.
    fn forget_all(&mut self) {
        self.gone.clear();
    }

    /// This node heard from a peer at `now`, and before that from nobody
    /// since `silent_since`: the peers it saw go in that silence went while
    /// it heard from no one at all, which is what a node cut off from the
    /// rest sees. Their period starts again now, so that those that are
    /// back have time to show it (a link, an op, SWIM's word) before they
    /// are evicted.
    fn restart_silent(&mut self, silent_since: Time, now: Time) {
        for d in self.gone.values_mut() {
            if !d.evicted && d.since > silent_since {
                d.since = now;
            }
        }
    }

    /// Whether `peer` is gone.
    fn is_gone(&self, peer: &NodeId) -> bool {
        self.gone.contains_key(peer)
    }

    /// How many peers are gone and not evicted yet.
    fn pending(&self) -> usize {
        self.gone.values().filter(|d| !d.evicted).count()
    }

    /// Whether no peer is gone.
    pub(super) fn is_empty(&self) -> bool {
        self.gone.is_empty()
    }

    /// The origins of the peers gone at least `period` by `now` and not
    /// evicted yet (now marked evicted), and how many peers they are.
    fn due(&mut self, now: Time, period: std::time::Duration) -> (BTreeSet<NodeId>, usize) {
        let mut origins = BTreeSet::new();
        let mut peers = 0;
        for d in self.gone.values_mut() {
            if !d.evicted && d.since + period <= now {
                d.evicted = true;
                peers += 1;
                origins.extend(d.origins.iter().copied());
            }
        }
        (origins, peers)
    }

    /// When the next peer becomes due.
    fn next_due(&self, period: std::time::Duration) -> Option<Time> {
        self.gone
            .values()
            .filter(|d| !d.evicted)
            .map(|d| d.since + period)
            .min()
    }
}

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// Evict, from every hosted object, the origins of peers gone for the
    /// eviction period.
    pub(super) fn evict_departed(&mut self, now: Time) {
        let Some(period) = self.config.evict_after else {
            return;
        };
        if self.departed.is_empty() || !self.may_evict() {
            return;
        }
        let (due, peers) = self.departed.due(now, period);
        if due.is_empty() {
            return;
        }
        let gone = |origin: NodeId| due.contains(&origin);
        let mut evicted = 0;
        let mut notices = Vec::new();
        for (object, route) in &mut self.objects {
            let Some(host) = route.host.as_deref_mut() else {
                continue;
            };
            if host.may_evict() {
                evicted += host.evict_gone(&gone);
            } else if !host.awaits_admission() {
                // Only members caught up with what was folded evict (their
                // cut is safe): tell them. (A node whose own origin was
                // evicted tells no one: see `forget_departures_if_evicted`.)
                notices.extend(due.iter().map(|o| (object.clone(), *o)));
            }
        }
        for (object, origin) in notices {
            self.send_evict_notice(&object, origin);
        }
        if evicted > 0 {
            tracing::info!(
                peers,
                members = evicted,
                "evicted members gone longer than {period:?} from the replica sets"
            );
        }
        self.stats.evicted += evicted as u64;
    }

    /// Whether this node may evict: only while it hears from at least as
    /// many linked peers as it saw go (and has not evicted yet), and from
    /// one at least. The side of a
    /// partition that is cut off from most of its peers waits for the heal
    /// instead of evicting the rest (which would be safe, but would make
    /// every node on the other side re-stamp its ops).
    ///
    /// "Hears from" means a message within the eviction period: a link can
    /// stay up through a partition (until its idle timeout), and a node cut
    /// off from every peer sees them declared down one by one. Counting the
    /// ones not declared yet as live let such a node evict the first, with
    /// a cut of what it held of that peer's ops: too low, since the others
    /// had folded ops it never got, and the cut merges to the lowest.
    fn may_evict(&self) -> bool {
        let Some(period) = self.config.evict_after else {
            return false;
        };
        let mut live: Vec<NodeId> = self.links.values().copied().collect();
        live.sort_unstable();
        live.dedup();
        let live = live
            .iter()
            .filter(|p| !self.departed.is_gone(p))
            .filter(|p| {
                self.heard
                    .get(p)
                    .is_some_and(|at| self.clock.since(*at) <= period)
            })
            .count();
        live > 0 && live >= self.departed.pending()
    }

    /// A message came from `from`'s peer.
    pub(super) fn note_heard(&mut self, now: Time, from: L) {
        if let Some(peer) = self.links.get(&from) {
            self.heard.insert(*peer, now);
            if !self.departed.is_empty() {
                self.departed.restart_silent(self.heard_any, now);
            }
            self.heard_any = now;
        }
    }

    /// If this node learned from the exchange about `objects` that it was
    /// evicted itself, it was the one cut off (or down): the departures it
    /// saw in that time say nothing of who is gone, so forget them.
    /// Evicting on them would be worse than wrong: its cut for a peer is
    /// what it holds of that peer's ops, and while it was out of the
    /// replica sets the others folded ops it never got, so that cut could
    /// void ops already stable elsewhere. A peer that really is gone is
    /// evicted by the nodes that stayed, or seen to go again.
    pub(super) fn forget_departures_if_evicted<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a ObjectKey>,
    ) {
        if self.departed.is_empty() {
            return;
        }
        let evicted = objects.into_iter().any(|object| {
            self.objects
                .get(object)
                .and_then(|r| r.host.as_deref())
                .is_some_and(|h| h.awaits_admission())
        });
        if evicted {
            tracing::info!("this node was evicted while away: forgetting the departures it saw");
            self.departed.forget_all();
        }
    }

    /// `peer` went: remember since when, and its origins in the hosted
    /// replica sets.
    pub(super) fn note_departure(&mut self, peer: NodeId, now: Time) {
        if self.config.evict_after.is_none() || self.departed.is_gone(&peer) {
            return;
        }
        let origins = self
            .objects
            .values()
            .filter_map(|r| r.host.as_deref())
            .flat_map(|h| h.origins_of(peer))
            .collect();
        self.departed.gone(peer, now, origins);
    }

    /// When the next departed peer becomes due for eviction.
    pub(super) fn next_eviction(&self) -> Option<Time> {
        let period = self.config.evict_after?;
        if self.departed.is_empty() || !self.may_evict() {
            // Checked again at the next anti-entropy round.
            return None;
        }
        self.departed.next_due(period)
    }

    /// Relay, as local ops, what the hosts of `objects` re-stamped (their
    /// origin was just admitted), and ask for the admission of those whose
    /// origin was just evicted with ops of theirs to re-stamp.
    pub(super) fn relay_restamped<'a>(
        &mut self,
        now: Time,
        objects: impl IntoIterator<Item = &'a ObjectKey>,
    ) {
        let mut frames = Vec::new();
        let mut admit = Vec::new();
        for object in objects {
            let Some(host) = self
                .objects
                .get_mut(object)
                .and_then(|r| r.host.as_deref_mut())
            else {
                continue;
            };
            if host.wants_admission() {
                admit.push(object.clone());
            }
            match host.take_restamped() {
                Ok(f) => frames.extend(f),
                Err(e) => tracing::error!("re-stamped ops of {object} cannot be relayed: {e}"),
            }
        }
        for frame in frames {
            self.stats.restamped += 1;
            self.handle_local_op(now, frame);
        }
        for object in admit {
            self.ask_admission(now, &object, super::admission::ASK_AGAIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(s: u64) -> Time {
        Time::from_micros(s * 1_000_000)
    }

    #[test]
    fn departures_seen_in_silence_start_again_when_a_peer_is_heard() {
        let period = Duration::from_secs(10);
        let (a, b) = (NodeId::from_u64(1), NodeId::from_u64(2));
        let mut d = Departures::default();
        // Last heard from anyone at 1 s; `a` went at 3 s, in the silence.
        d.gone(a, t(3), BTreeSet::new());
        d.restart_silent(t(1), t(20));
        assert_eq!(d.next_due(period), Some(t(30)), "a's period starts again");
        // `b` went at 25 s, while peers were still heard (last at 26 s).
        d.gone(b, t(25), BTreeSet::new());
        d.restart_silent(t(26), t(27));
        assert_eq!(d.next_due(period), Some(t(30)));
        assert_eq!(
            d.due(t(29), period).1,
            0,
            "a is not due before 30 s (13 s without the restart)"
        );
        assert_eq!(d.due(t(30), period).1, 1, "a, at 30 s");
        assert_eq!(
            d.next_due(period),
            Some(t(35)),
            "b's period was not restarted"
        );
        d.forget_all();
        assert!(d.is_empty());
    }
}
