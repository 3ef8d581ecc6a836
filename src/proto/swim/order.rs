//! The probe order: the member this node has known least about for the
//! longest comes first.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::time::Time;

/// Members that may be probed (alive or suspected), each keyed by when
/// this node last had word of it: proof of life (any message from it, an
/// ack, a relayed ack) or a probe of it begun.
///
/// SWIM's round-robin over a list shuffled each round probes every member
/// once a round, but two probes of one member can be almost two rounds
/// apart. Probing the quietest member first bounds the gap by one round
/// with no traffic, and shortens it with traffic: a member that keeps
/// talking needs no probe to show it is up, so the probes go to the ones
/// that fell silent, a crashed one first among them.
#[derive(Debug)]
pub(super) struct QuietOrder<P> {
    /// Each member's key: since when it has been quiet, and a tiebreak
    /// drawn at random when it was added, so nodes do not agree on an
    /// order among members added at the same instant.
    keys: BTreeMap<P, (Time, u64)>,
    queue: BTreeSet<(Time, u64, P)>,
}

impl<P: Copy + Ord> QuietOrder<P> {
    pub(super) fn new() -> Self {
        Self {
            keys: BTreeMap::new(),
            queue: BTreeSet::new(),
        }
    }

    /// Adds `id`, quiet since `now`, or resets it if present.
    pub(super) fn insert(&mut self, id: P, now: Time, tiebreak: u64) {
        self.remove(id);
        self.keys.insert(id, (now, tiebreak));
        self.queue.insert((now, tiebreak, id));
    }

    /// Word of `id` at `now`: it goes to the back. Nothing if it is not in
    /// the order (a stranger, or a member held down).
    pub(super) fn touch(&mut self, id: P, now: Time) {
        let Some(key) = self.keys.get_mut(&id) else {
            return;
        };
        if key.0 >= now {
            return;
        }
        self.queue.remove(&(key.0, key.1, id));
        key.0 = now;
        self.queue.insert((now, key.1, id));
    }

    /// Takes `id` out of the order.
    pub(super) fn remove(&mut self, id: P) {
        if let Some((since, tiebreak)) = self.keys.remove(&id) {
            self.queue.remove(&(since, tiebreak, id));
        }
    }

    /// The member quiet the longest, if any.
    pub(super) fn first(&self) -> Option<P> {
        self.queue.first().map(|(_, _, id)| *id)
    }

    /// How many members are in the order.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn the_quietest_member_comes_first_and_word_of_it_sends_it_back() {
        let mut order = QuietOrder::new();
        order.insert(1u32, at(0), 5);
        order.insert(2, at(0), 3);
        order.insert(3, at(10), 0);
        // Same instant: the tiebreak decides.
        assert_eq!(order.first(), Some(2));
        order.touch(2, at(20));
        assert_eq!(order.first(), Some(1));
        order.touch(1, at(30));
        assert_eq!(order.first(), Some(3));
        // Older word changes nothing.
        order.touch(3, at(5));
        assert_eq!(order.first(), Some(3));
        // Strangers are ignored.
        order.touch(9, at(40));
        assert_eq!(order.len(), 3);
        order.remove(3);
        assert_eq!(order.first(), Some(2));
        order.remove(2);
        order.remove(1);
        assert_eq!(order.first(), None);
    }
}
