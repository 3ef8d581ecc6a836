//! Errors of the public API, one enum per operation.

use std::time::Duration;

use crate::proto::message::{DecodeError, EncodeError};
use crate::proto::ObjectKey;

/// Why a type could not be registered on a node. The node is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another Rust type already uses this type tag on this node.
    #[error(
        "type tag `{tag}` is already registered by `{registered}`; \
         `{attempted}` cannot use it too (give one of them another #[plexus(tag = ...)])"
    )]
    TagConflict {
        /// The contested tag.
        tag: &'static str,
        /// The type that holds it.
        registered: &'static str,
        /// The type that asked for it.
        attempted: &'static str,
    },
}

/// Why [`Node::create`](crate::Node::create) failed. No object was created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The type could not be registered.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// This node already holds an object with this type tag and name; use
    /// [`Node::open`](crate::Node::open) to get its leaf.
    #[error("object {0} already exists on this node")]
    Exists(ObjectKey),
    /// The object name is empty or longer than 1,024 bytes.
    #[error("invalid object name {0:?}: it must be 1 to 1,024 bytes")]
    InvalidName(String),
    /// The node has been shut down.
    #[error("the node has been shut down")]
    Stopped,
    /// The node's store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why [`Node::open`](crate::Node::open) failed. No object was created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The type could not be registered.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The object name is empty or longer than 1,024 bytes.
    #[error("invalid object name {0:?}: it must be 1 to 1,024 bytes")]
    InvalidName(String),
    /// No linked node answered with the object's state in time (or this
    /// node has no links).
    #[error("no linked node holds {object} (waited {waited:?})")]
    NotFound {
        /// The object asked for.
        object: ObjectKey,
        /// How long the open waited.
        waited: Duration,
    },
    /// A node answered with a state this node cannot decode as the type
    /// (a different version of the type, or a faulty peer).
    #[error("the state received for {object} does not decode: {source}")]
    Decode {
        /// The object.
        object: ObjectKey,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// The node has been shut down.
    #[error("the node has been shut down")]
    Stopped,
    /// The node's store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why a shout failed. The op was not applied anywhere.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShoutError {
    /// The op's arguments could not be encoded.
    #[error(transparent)]
    Encode(EncodeError),
    /// The encoded op would not fit in one frame.
    #[error("the encoded op is {len} bytes; frames are limited to {max} bytes")]
    TooLarge {
        /// The op's encoded size, with the frame's overhead.
        len: usize,
        /// The node's `max_frame`.
        max: usize,
    },
    /// The node has been shut down.
    #[error("the node has been shut down")]
    Stopped,
    /// The node's store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why [`Node::link`](crate::Node::link) failed. No link was added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Nothing listens at that address.
    #[error("nothing listens at {0}")]
    Unreachable(String),
    /// The address is this node's own.
    #[error("a node cannot link to itself")]
    SelfLink,
    /// The peer did not complete the handshake in time.
    #[error("the peer did not complete the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer sent something other than a valid hello.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The node has been shut down.
    #[error("the node has been shut down")]
    Stopped,
}

/// Why [`NodeBuilder::start`](crate::NodeBuilder::start) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// No transport was given: use
    /// [`NodeBuilder::listen`](crate::NodeBuilder::listen) (QUIC) or
    /// [`NodeBuilder::transport`](crate::NodeBuilder::transport).
    #[error(
        "no transport configured: call NodeBuilder::listen(addr) or NodeBuilder::transport(..)"
    )]
    NoTransport,
    /// QUIC needs to know whom to trust: there is no plaintext or
    /// trust-everyone mode.
    #[error(
        "no trust configured: call NodeBuilder::trust(Trust::ca(..)) or Trust::allow_list(..)"
    )]
    NoTrust,
    /// The node's identity could not be loaded or made.
    #[error("identity: {0}")]
    Identity(String),
    /// The listening socket could not be bound.
    #[error("could not listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node's actor could not be started.
    #[error("could not start the repeater actor: {0}")]
    Actor(String),
    /// The store in the data directory could not be opened: damaged,
    /// locked by another process, or of another layout.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<EncodeError> for ShoutError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Oversize { len, max, .. } => ShoutError::TooLarge { len, max },
            other => ShoutError::Encode(other),
        }
    }
}

/// Why [`Node::send_data`](crate::Node::send_data) failed. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The data would not fit in one frame.
    #[error("{len} bytes of data do not fit in a frame; frames are limited to {max} bytes")]
    TooLarge {
        /// The data's size with the frame's overhead.
        len: usize,
        /// The node's `max_frame`.
        max: usize,
    },
    /// No link fits the spread (no link at all, or none to the named peer).
    #[error(transparent)]
    Spread(#[from] crate::proto::data::SpreadError),
    /// The node has been shut down.
    #[error("the node has been shut down")]
    Stopped,
}
