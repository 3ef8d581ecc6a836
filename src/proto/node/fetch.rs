//! Opening an object: a late joiner's fetch, flooded over the mesh, and
//! the state that travels back along the reverse path.

use std::fmt;
use std::hash::Hash;

use super::super::id::ObjectKey;
use super::super::message::{FetchId, Message, StateFrame};
use super::super::time::Time;
use super::{FetchRoute, OutEvent, PendingOpen, RepeaterNode};

impl<L: Copy + Ord + Hash + fmt::Debug> RepeaterNode<L> {
    /// Stop waiting for an open whose answer the driver could not use.
    pub fn abandon(&mut self, fetch: FetchId) {
        if let Some(open) = self.opens.remove(&fetch) {
            self.opening.remove(&open.object);
        }
    }

    /// Ask the network for `object`'s state. The answer comes as
    /// [`OutEvent::Opened`] or, if no node answers within the fetch timeout,
    /// [`OutEvent::OpenFailed`], with the returned id. Links that come up
    /// while the open waits are asked too.
    pub fn open(&mut self, now: Time, object: ObjectKey) -> FetchId {
        let fetch = FetchId {
            requester: self.me,
            n: self.next_fetch,
        };
        self.next_fetch += 1;
        let deadline = now + self.config.fetch_timeout;
        for to in self.mesh.keys() {
            self.out.push_back(OutEvent::Send {
                to: *to,
                msg: Message::Fetch {
                    fetch,
                    object: object.clone(),
                },
            });
        }
        self.opening.insert(object.clone(), fetch);
        self.opens.insert(
            fetch,
            PendingOpen {
                object,
                deadline: Some(deadline),
                buffered: Vec::new(),
            },
        );
        fetch
    }

    pub(super) fn handle_fetch(&mut self, now: Time, from: L, fetch: FetchId, object: ObjectKey) {
        if fetch.requester == self.me || self.routes.contains_key(&fetch) {
            return;
        }
        let deadline = now + self.config.fetch_timeout;
        if let Some(host) = self
            .objects
            .get_mut(&object)
            .and_then(|r| r.host.as_deref_mut())
        {
            self.routes.insert(
                fetch,
                FetchRoute {
                    back: None,
                    deadline,
                },
            );
            match host.export() {
                Ok(state) => self.out.push_back(OutEvent::Send {
                    to: from,
                    msg: Message::State {
                        fetch,
                        state: Box::new(state),
                    },
                }),
                Err(error) => self.out.push_back(OutEvent::Rejected {
                    from,
                    op: None,
                    error,
                }),
            }
            return;
        }
        self.routes.insert(
            fetch,
            FetchRoute {
                back: Some(from),
                deadline,
            },
        );
        for to in self.mesh.keys().filter(|l| **l != from) {
            self.out.push_back(OutEvent::Send {
                to: *to,
                msg: Message::Fetch {
                    fetch,
                    object: object.clone(),
                },
            });
        }
    }

    pub(super) fn handle_state(&mut self, fetch: FetchId, state: StateFrame) {
        if fetch.requester == self.me {
            if let Some(open) = self.opens.get_mut(&fetch) {
                if open.deadline.is_some() && open.object == state.object {
                    // Answered: keep buffering until the driver hosts it.
                    open.deadline = None;
                    self.out.push_back(OutEvent::Opened {
                        fetch,
                        state: Box::new(state),
                    });
                }
            }
            return;
        }
        let Some(route) = self.routes.get_mut(&fetch) else {
            return;
        };
        if let Some(back) = route.back.take() {
            if self.links.contains_key(&back) {
                self.out.push_back(OutEvent::Send {
                    to: back,
                    msg: Message::State {
                        fetch,
                        state: Box::new(state),
                    },
                });
            }
        }
    }
}
