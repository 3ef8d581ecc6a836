//! Ops announced to this node that it has not received: runs of sequence
//! numbers of one origin on one object, each with its own graft timer.

use std::collections::VecDeque;

use super::super::time::Time;

/// A run of missing seqs `first..=last` and when it may next be grafted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) first: u64,
    pub(super) last: u64,
    /// When this run may be grafted (again).
    pub(super) next: Time,
    /// Grafts sent for it so far.
    pub(super) grafts: u32,
}

/// What one group (object, origin) misses, and who announced it.
#[derive(Debug)]
pub(super) struct Missing<L> {
    /// Disjoint, in seq order.
    runs: Vec<Run>,
    /// Links that announced ops of this group, the next to graft first.
    pub(super) announcers: VecDeque<L>,
}

impl<L: Copy + PartialEq> Missing<L> {
    pub(super) fn new() -> Self {
        Self {
            runs: Vec::new(),
            announcers: VecDeque::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// When the earliest run may be grafted.
    pub(super) fn due(&self) -> Option<Time> {
        self.runs.iter().map(|r| r.next).min()
    }

    /// `from` announced `first..=last` (not held here); parts already
    /// tracked keep their timers, new parts are grafted from `due` on.
    /// At most `cap` runs are kept.
    pub(super) fn add(&mut self, from: L, first: u64, last: u64, due: Time, cap: usize) {
        if !self.announcers.contains(&from) {
            self.announcers.push_back(from);
        }
        let mut pieces = Vec::new();
        let mut next = Some(first);
        for run in &self.runs {
            let Some(from) = next else { break };
            if run.last < from {
                continue;
            }
            if run.first > last {
                break;
            }
            if run.first > from {
                pieces.push((from, run.first - 1));
            }
            next = run.last.checked_add(1);
            if next.is_none_or(|n| n > last) {
                break;
            }
        }
        if let Some(from) = next.filter(|n| *n <= last) {
            pieces.push((from, last));
        }
        for (first, last) in pieces {
            if self.runs.len() >= cap {
                return;
            }
            let at = self.runs.partition_point(|r| r.first < first);
            self.runs.insert(
                at,
                Run {
                    first,
                    last,
                    next: due,
                    grafts: 0,
                },
            );
        }
    }

    /// `seq` arrived: it is no longer missing. Returns how many times it
    /// was grafted, if it was missing.
    pub(super) fn remove(&mut self, seq: u64) -> Option<u32> {
        let at = self.runs.partition_point(|r| r.last < seq);
        let run = self.runs.get_mut(at)?;
        if run.first > seq {
            return None;
        }
        let grafts = run.grafts;
        match (run.first == seq, run.last == seq) {
            (true, true) => {
                self.runs.remove(at);
            }
            (true, false) => run.first = seq + 1,
            (false, true) => run.last = seq - 1,
            (false, false) => {
                let mut upper = *run;
                upper.first = seq + 1;
                run.last = seq - 1;
                self.runs.insert(at + 1, upper);
            }
        }
        Some(grafts)
    }

    /// A link went away: it is no longer asked.
    pub(super) fn forget(&mut self, link: L) {
        self.announcers.retain(|l| *l != link);
    }

    /// The runs due at `now`, marked as grafted (next try at `retry`); runs
    /// grafted `max` times already are dropped. `None` when nothing is due
    /// or nobody is left to ask.
    pub(super) fn take_due(
        &mut self,
        now: Time,
        retry: Time,
        max: u32,
    ) -> Option<(L, Vec<(u64, u64)>)> {
        self.runs.retain(|r| r.next > now || r.grafts < max);
        let peer = self.announcers.pop_front()?;
        self.announcers.push_back(peer);
        let mut due = Vec::new();
        for run in self.runs.iter_mut().filter(|r| r.next <= now) {
            run.grafts += 1;
            run.next = retry;
            due.push((run.first, run.last));
        }
        (!due.is_empty()).then_some((peer, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(m: &Missing<u8>) -> Vec<(u64, u64)> {
        m.runs.iter().map(|r| (r.first, r.last)).collect()
    }

    #[test]
    fn runs_merge_split_and_expire() {
        let t = Time::from_micros;
        let mut m = Missing::new();
        m.add(1, 5, 9, t(100), 64);
        m.add(2, 1, 12, t(200), 64);
        assert_eq!(runs(&m), vec![(1, 4), (5, 9), (10, 12)]);
        assert_eq!(m.announcers, [1, 2]);
        assert_eq!(m.due(), Some(t(100)));
        assert_eq!(m.remove(7), Some(0));
        assert_eq!(m.remove(7), None);
        assert!(m.remove(1).is_some());
        assert!(m.remove(12).is_some());
        assert_eq!(runs(&m), vec![(2, 4), (5, 6), (8, 9), (10, 11)]);
        // At 150 only the runs announced first (due 100) are grafted.
        let (peer, due) = m.take_due(t(150), t(400), 2).expect("due");
        assert_eq!((peer, due), (1, vec![(5, 6), (8, 9)]));
        assert_eq!(m.due(), Some(t(200)));
        let (peer, due) = m.take_due(t(400), t(600), 2).expect("due");
        assert_eq!(peer, 2, "the next announcer is asked");
        assert_eq!(due.len(), 4);
        // Grafted twice: given up at the next expiry.
        assert_eq!(
            m.take_due(t(600), t(800), 2).map(|(_, d)| d),
            Some(vec![(2, 4), (10, 11)])
        );
        assert_eq!(m.take_due(t(800), t(900), 2), None);
        assert!(m.is_empty());
    }

    #[test]
    fn extreme_runs_do_not_overflow() {
        let t = Time::from_micros;
        let mut m = Missing::new();
        m.add(1, u64::MAX - 3, u64::MAX, t(1), 64);
        m.add(1, 1, u64::MAX, t(2), 64);
        assert_eq!(runs(&m), vec![(1, u64::MAX - 4), (u64::MAX - 3, u64::MAX)]);
        assert!(m.remove(u64::MAX).is_some());
        assert!(m.remove(1).is_some());
        assert_eq!(
            runs(&m),
            vec![(2, u64::MAX - 4), (u64::MAX - 3, u64::MAX - 1)]
        );
        let mut capped = Missing::new();
        for seq in (1..100).step_by(2) {
            capped.add(1, seq, seq, t(1), 8);
        }
        assert_eq!(
            runs(&capped).len(),
            8,
            "the cap bounds a flood of announcements"
        );
        m.forget(1);
        assert_eq!(m.take_due(t(5), t(6), 3), None, "nobody left to ask");
    }
}
