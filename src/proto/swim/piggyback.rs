//! Dissemination: the updates that ride on every message, infection-style
//! (least-sent and newest first, each sent `λ·⌈log₁₀(n+1)⌉` times).

use std::cmp::Reverse;

use rand::RngCore;

use super::{MemberState, Swim, SwimKind, SwimMessage, SwimPeer, Update};

impl<P: SwimPeer, R: RngCore> Swim<P, R> {
    pub(super) fn announce(&mut self) {
        let (id, incarnation) = (self.me, self.incarnation);
        self.enqueue(Update::Alive { id, incarnation });
    }

    /// Queues `update` for dissemination, replacing older news of the member.
    pub(super) fn enqueue(&mut self, update: Update<P>) {
        self.gossip_counter += 1;
        let order = self.gossip_counter;
        self.gossip.insert(update.id(), (update, 0, order));
    }

    /// Queues a message to `to`. First ride what we believe of `to` if it
    /// is suspected or down, and of `about`, the member the message
    /// concerns; then the least-sent, newest updates.
    pub(super) fn send(&mut self, to: P, about: Option<P>, kind: SwimKind<P>) {
        let mut updates = Vec::with_capacity(self.config.max_piggyback);
        updates.extend(self.news_of(to, false));
        updates.extend(about.and_then(|id| self.news_of(id, true)));
        updates.truncate(self.config.max_piggyback);
        let room = self.config.max_piggyback - updates.len();
        let mut picks: Vec<(u32, Reverse<u64>, P)> = self
            .gossip
            .iter()
            .filter(|(id, _)| !updates.iter().any(|u| u.id() == **id))
            .map(|(id, (_, sent, order))| (*sent, Reverse(*order), *id))
            .collect();
        if picks.len() > room {
            picks.select_nth_unstable(room);
            picks.truncate(room);
        }
        picks.sort_unstable();
        let limit = self.retransmit_limit();
        for (_, _, id) in picks {
            if let Some((update, sent, _)) = self.gossip.get_mut(&id) {
                updates.push(*update);
                *sent += 1;
                if *sent >= limit {
                    self.gossip.remove(&id);
                }
            }
        }
        let incarnation = self.incarnation;
        self.transmits.push_back((
            to,
            SwimMessage {
                incarnation,
                kind,
                updates,
            },
        ));
    }

    /// What we believe of member `id` as an update: only bad news unless
    /// `always`.
    fn news_of(&self, id: P, always: bool) -> Option<Update<P>> {
        let m = self.members.get(&id)?;
        let incarnation = m.incarnation;
        match m.state {
            MemberState::Alive => always.then_some(Update::Alive { id, incarnation }),
            MemberState::Suspect => {
                let from = m.suspicion.as_ref().map_or(self.me, |s| s.origin);
                Some(Update::Suspect {
                    id,
                    incarnation,
                    from,
                })
            }
            MemberState::Down => Some(Update::Dead { id, incarnation }),
        }
    }

    /// `λ·⌈log₁₀(n+1)⌉`, at least `λ`, with `n` counting this node.
    fn retransmit_limit(&self) -> u32 {
        let scale = ((self.members.len() + 2) as f64).log10().ceil().max(1.0);
        (f64::from(self.config.retransmit_multiplier) * scale) as u32
    }
}
