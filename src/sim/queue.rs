//! The harness's event queue: a binary heap in virtual time, first in
//! first out among events due at the same instant.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::proto::time::Time;

/// Where an event sits in the queue: its time, then the order it was
/// pushed in. Unique per event.
pub(super) type Key = (Time, u64);

/// Events in virtual time. A heap: pushing and popping cost O(log n) with
/// no per-event allocation (a `BTreeMap` keyed by [`Key`] cost about a
/// tenth of the simulator's time at 10,000 nodes, in its inserts alone).
/// There is no removal: a timer the harness cancels stays queued and is
/// skipped when it comes up (the harness compares its key).
pub(super) struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    pushed: u64,
}

struct Entry<E> {
    key: Key,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: the heap's greatest is the earliest key.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            pushed: 0,
        }
    }

    /// Queue `event` at `at`, after every event already queued there.
    pub(super) fn push(&mut self, at: Time, event: E) -> Key {
        self.pushed += 1;
        let key = (at, self.pushed);
        self.heap.push(Entry { key, event });
        key
    }

    /// The earliest event.
    pub(super) fn pop(&mut self) -> Option<(Key, E)> {
        self.heap.pop().map(|e| (e.key, e.event))
    }

    /// The earliest event, left in place.
    pub(super) fn peek(&self) -> Option<(Key, &E)> {
        self.heap.peek().map(|e| (e.key, &e.event))
    }

    /// How many events are queued (cancelled timers included).
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Every queued event, in no particular order.
    pub(super) fn events(&self) -> impl Iterator<Item = &E> {
        self.heap.iter().map(|e| &e.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_by_time_then_by_push_order() {
        let mut q = EventQueue::new();
        let t = |ms| Time::ZERO + Duration::from_millis(ms);
        q.push(t(5), "late");
        q.push(t(1), "first");
        q.push(t(1), "second");
        q.push(t(3), "middle");
        assert_eq!(q.peek().map(|(k, e)| (k.0, *e)), Some((t(1), "first")));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first", "second", "middle", "late"]);
        assert_eq!(q.len(), 0);
    }
}
