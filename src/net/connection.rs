//! The connection actor: owns one established link's lifecycle.
//!
//! One ractor actor per link, spawned linked to the node's repeater actor,
//! which supervises it: when the repeater stops (the node shuts down) it
//! stops every connection actor, and each closes its connection. The hot
//! path does not go through this actor's mailbox: its reader task hands
//! batches of decoded messages straight to the repeater, and the repeater
//! writes into the link's outbox. The actor decides what happens when the
//! input ends or goes bad (close with the reason, report the link down, tell
//! whoever waits on the link).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proto::NodeId;

use super::actor::{LinkId, RepeaterMsg};
use super::frames::{Inbound, InboundError};
use super::CloseHandle;

/// The connection actor's mailbox.
#[derive(Debug)]
pub(crate) enum ConnectionMsg {
    /// The input ended: cleanly (`None`) or with a protocol violation whose
    /// reason the peer is told.
    InputEnded(Option<String>),
}

/// What a connection actor starts with.
pub(crate) struct ConnectionArgs {
    pub(crate) link: LinkId,
    pub(crate) peer: NodeId,
    pub(crate) inbound: Inbound,
    pub(crate) close: CloseHandle,
    pub(crate) repeater: ActorRef<RepeaterMsg>,
    /// Fired when the link is gone (the reconnect loop waits on it).
    pub(crate) closed: oneshot::Sender<()>,
}

pub(crate) struct ConnectionState {
    link: LinkId,
    peer: NodeId,
    close: CloseHandle,
    repeater: ActorRef<RepeaterMsg>,
    closed: Option<oneshot::Sender<()>>,
    reader: JoinHandle<()>,
}

/// The actor (stateless; its state is [`ConnectionState`]).
pub(crate) struct ConnectionActor;

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let reader = tokio::spawn(read(
            args.inbound,
            args.close.clone(),
            args.repeater.clone(),
            args.link,
            myself,
        ));
        Ok(ConnectionState {
            link: args.link,
            peer: args.peer,
            close: args.close,
            repeater: args.repeater,
            closed: Some(args.closed),
            reader,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        msg: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectionMsg::InputEnded(Some(reason)) => {
                tracing::warn!(peer = %state.peer, %reason, "closing link");
                state.close.close(&reason);
            }
            ConnectionMsg::InputEnded(None) => {
                tracing::debug!(peer = %state.peer, "link input ended");
            }
        }
        myself.stop(None);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConnectionMsg>,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        // However the actor stops (input ended, or its supervisor stopped
        // it), the connection goes and the repeater forgets the link.
        state.reader.abort();
        state.close.close("link closed");
        let _ = state
            .repeater
            .cast(RepeaterMsg::LinkDown { link: state.link });
        if let Some(closed) = state.closed.take() {
            let _ = closed.send(());
        }
        Ok(())
    }
}

/// The reader: everything that arrived together goes to the repeater as
/// one batch (one mailbox message per read, not per frame); the end of the
/// input goes to the connection actor.
async fn read(
    mut inbound: Inbound,
    close: CloseHandle,
    repeater: ActorRef<RepeaterMsg>,
    link: LinkId,
    actor: ActorRef<ConnectionMsg>,
) {
    let mut batch = Vec::new();
    let ended = loop {
        let next = tokio::select! {
            next = inbound.next_batch(&mut batch) => next,
            () = close.closed() => Ok(false),
        };
        match next {
            Ok(true) => {
                // The next batch is likely as large: one allocation, no
                // growing.
                let size = batch.len();
                let msgs = std::mem::replace(&mut batch, Vec::with_capacity(size));
                if repeater.cast(RepeaterMsg::Inbound { link, msgs }).is_err() {
                    break None;
                }
            }
            Ok(false) => break None,
            Err(InboundError::Protocol(reason)) => break Some(reason),
            Err(error @ InboundError::Transport(_)) => {
                tracing::debug!(%error, "link input failed");
                break None;
            }
        }
    };
    inbound.close();
    let _ = actor.cast(ConnectionMsg::InputEnded(ended));
}
