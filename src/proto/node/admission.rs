//! Entering a replica set: a node that made ops on an object it only read
//! (or whose origin was evicted) asks a member to admit it.
//!
//! Only members (the object's creator and the nodes that wrote) are in an
//! object's acknowledgement table (see [`stability`](super::super::stability)),
//! so only a member may enter a new one. The request, [`Message::Admit`],
//! goes to the linked peers that are members, or is flooded over the mesh
//! like a fetch when none is; the first member it reaches enters the
//! requester's origin and answers with [`Message::Admitted`] along the
//! reverse path. The requester then re-stamps its provisional ops above the
//! member's clock and relays them. A request unanswered within the fetch
//! timeout is sent again, and sooner (after [`ASK_AGAIN`]) when an
//! anti-entropy exchange shows the node is in touch again (a healed
//! partition); an answer that is lost is harmless, since the member's
//! table, spread by anti-entropy, admits the requester too.
//!
//! Eviction is the members' too (their cut is safe; see
//! [`stability`](super::super::stability)), but a member gone for good is
//! seen go by its linked peers, which may all be readers: a reader that saw
//! it gone for the eviction period sends the members a
//! [`Message::Evict`] notice the same way, and each member that gets it
//! evicts with its own cut.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use super::super::id::{NodeId, ObjectKey};
use super::super::message::{FetchId, Message};
use super::super::swim::MemberState;
use super::super::time::Time;
use super::{FetchRoute, OutEvent, RepeaterNode};

/// How long after a request an anti-entropy exchange may send it again
/// (before the fetch timeout): the request may have been lost in a
/// partition the exchange shows healed.
pub(super) const ASK_AGAIN: Duration = Duration::from_secs(2);

/// An admission request of ours in flight.
#[derive(Clone, Copy, Debug)]
pub(super) struct Asking {
    fetch: FetchId,
    sent: Time,
    deadline: Time,
}

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// The replica of `object` made ops while not a member: ask a member
    /// to admit it, unless a request is already in flight. Harmless when
    /// the replica does not want admission (or is not hosted here).
    pub fn request_admission(&mut self, now: Time, object: &ObjectKey) {
        self.ask_admission(now, object, self.config.fetch_timeout);
    }

    /// [`request_admission`](Self::request_admission), sending again a
    /// request in flight for at least `again`.
    pub(super) fn ask_admission(&mut self, now: Time, object: &ObjectKey, again: Duration) {
        self.clock = now;
        let wants = self
            .objects
            .get(object)
            .and_then(|r| r.host.as_deref())
            .is_some_and(|h| h.wants_admission());
        if !wants {
            self.admitting.remove(object);
            return;
        }
        if self
            .admitting
            .get(object)
            .is_some_and(|a| a.deadline > now && a.sent + again > now)
        {
            return;
        }
        let fetch = FetchId {
            requester: self.me,
            n: self.next_fetch,
        };
        self.next_fetch += 1;
        let msg = Message::Admit {
            fetch,
            object: object.clone(),
        };
        let asking = if self.send_to_members(None, object, msg) {
            self.stats.admissions_asked += 1;
            Asking {
                fetch,
                sent: now,
                deadline: now + self.config.fetch_timeout,
            }
        } else {
            // No link yet (a restart): ask again soon, or at the next
            // shout or exchange.
            Asking {
                fetch,
                sent: Time::from_micros(0),
                deadline: now + ASK_AGAIN,
            }
        };
        self.admitting.insert(object.clone(), asking);
    }

    /// Ask again for the replicas whose request went unanswered, and stop
    /// tracking those that no longer want admission.
    pub(super) fn retry_admissions(&mut self, now: Time) {
        let due: Vec<ObjectKey> = self
            .admitting
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(object, _)| object.clone())
            .collect();
        for object in due {
            self.admitting.remove(&object);
            self.request_admission(now, &object);
        }
    }

    /// The earliest deadline of an admission request in flight.
    pub(super) fn next_admission_retry(&self) -> Option<Time> {
        self.admitting.values().map(|a| a.deadline).min()
    }

    /// Tell the members of `object`'s replica set that `origin`, a member,
    /// is gone for good (see the module docs).
    pub(super) fn send_evict_notice(&mut self, object: &ObjectKey, origin: NodeId) {
        let fetch = FetchId {
            requester: self.me,
            n: self.next_fetch,
        };
        self.next_fetch += 1;
        self.stats.evict_notices += 1;
        let msg = Message::Evict {
            fetch,
            object: object.clone(),
            origin,
        };
        self.send_to_members(None, object, msg);
    }

    pub(super) fn handle_evict(
        &mut self,
        now: Time,
        from: L,
        fetch: FetchId,
        object: ObjectKey,
        origin: NodeId,
    ) {
        if fetch.requester == self.me || self.routes.contains_key(&fetch) {
            return;
        }
        let deadline = now + self.config.fetch_timeout;
        self.routes.insert(
            fetch,
            FetchRoute {
                back: None,
                deadline,
            },
        );
        let host = self
            .objects
            .get_mut(&object)
            .and_then(|r| r.host.as_deref_mut());
        if let Some(host) = host.filter(|h| h.may_evict()) {
            let evicted = host.evict_gone(&|o| o == origin);
            if evicted > 0 {
                tracing::info!(%origin, %object, "evicted a member gone for good, on a peer's notice");
            }
            self.stats.evicted += evicted as u64;
            return;
        }
        let msg = Message::Evict {
            fetch,
            object: object.clone(),
            origin,
        };
        self.send_to_members(Some(from), &object, msg);
    }

    /// Send `msg` (about `object`) on: to the linked members of `object`'s
    /// replica set if there are any (but `from`) that the failure detector
    /// does not hold down, else over the mesh (but `from`). Returns whether
    /// it went to anyone.
    ///
    /// A member that vanished keeps its links until something closes them
    /// (without an overlay, nothing may): sending only to it would ask the
    /// dead for ever.
    fn send_to_members(&mut self, from: Option<L>, object: &ObjectKey, msg: Message) -> bool {
        let host = self.objects.get(object).and_then(|r| r.host.as_deref());
        let others = || self.mesh.iter().filter(|(l, _)| Some(**l) != from);
        let down = |peer: NodeId| self.swim.state_of(peer) == Some(MemberState::Down);
        let members: Vec<L> = match host {
            Some(h) => others()
                .filter(|(_, peer)| !down(**peer) && !h.origins_of(**peer).is_empty())
                .map(|(l, _)| *l)
                .collect(),
            None => Vec::new(),
        };
        let to: Vec<L> = if members.is_empty() {
            others().map(|(l, _)| *l).collect()
        } else {
            members
        };
        if to.is_empty() {
            return false;
        }
        self.out.push_back(OutEvent::Multicast { to, msg });
        true
    }

    pub(super) fn handle_admit(&mut self, now: Time, from: L, fetch: FetchId, object: ObjectKey) {
        if fetch.requester == self.me || self.routes.contains_key(&fetch) {
            return;
        }
        let deadline = now + self.config.fetch_timeout;
        let host = self
            .objects
            .get_mut(&object)
            .and_then(|r| r.host.as_deref_mut());
        match host.map(|h| h.admit(fetch.requester)) {
            Some(Ok(Some((origin, clock)))) => {
                self.stats.admitted += 1;
                self.routes.insert(
                    fetch,
                    FetchRoute {
                        back: None,
                        deadline,
                    },
                );
                self.out.push_back(OutEvent::Send {
                    to: from,
                    msg: Message::Admitted {
                        fetch,
                        object,
                        origin,
                        clock,
                    },
                });
            }
            Some(Err(error)) => {
                // This member could not make the admission durable: the
                // requester asks again.
                self.out.push_back(OutEvent::Rejected {
                    from,
                    op: None,
                    error,
                });
            }
            // Not a member, or not hosted here: pass it on.
            Some(Ok(None)) | None => {
                self.routes.insert(
                    fetch,
                    FetchRoute {
                        back: Some(from),
                        deadline,
                    },
                );
                let msg = Message::Admit {
                    fetch,
                    object: object.clone(),
                };
                self.send_to_members(Some(from), &object, msg);
            }
        }
    }

    pub(super) fn handle_admitted(
        &mut self,
        now: Time,
        fetch: FetchId,
        object: ObjectKey,
        origin: NodeId,
        clock: u64,
    ) {
        if fetch.requester == self.me {
            if self
                .admitting
                .get(&object)
                .is_some_and(|a| a.fetch == fetch)
            {
                self.admitting.remove(&object);
            }
            let admitted = self
                .objects
                .get_mut(&object)
                .and_then(|r| r.host.as_deref_mut())
                .is_some_and(|h| h.admitted_as(origin, clock));
            if admitted {
                self.relay_restamped(now, [&object]);
            }
            return;
        }
        let Some(back) = self.routes.get_mut(&fetch).and_then(|r| r.back.take()) else {
            return;
        };
        if self.links.contains_key(&back) {
            self.out.push_back(OutEvent::Send {
                to: back,
                msg: Message::Admitted {
                    fetch,
                    object,
                    origin,
                    clock,
                },
            });
        }
    }
}
