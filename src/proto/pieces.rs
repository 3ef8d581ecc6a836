//! State transfers in pieces: no message on the wire grows with an
//! object's state.
//!
//! A state transfer ([`Message::State`], the answer to an open, and
//! [`Message::Snapshot`], anti-entropy's repair of a replica that lacks
//! folded ops) carries the object's whole snapshot and its
//! acknowledgement table, which grows with the membership (hundreds of KiB
//! at 10,000 nodes). When its frame is larger than
//! [`TransferConfig::max_piece_bytes`] the sender cuts the frame into
//! [`Message::Piece`]s; the receiver keeps the pieces of each transfer
//! until it holds them all, then decodes and handles the whole message as
//! if it had come in one frame.
//!
//! Pieces may come in any order, twice, or never (the simulator loses and
//! reorders messages; a link may drop mid-transfer). A transfer that never
//! completes costs bounded memory for a bounded time: each is at most
//! [`TransferConfig::max_transfer_bytes`], a peer has at most
//! [`MAX_PER_PEER`] in progress and the node [`MAX_IN_PROGRESS`] (the
//! oldest is dropped to make room), and one idle for
//! [`TransferConfig::timeout`] is dropped. Nothing is lost by dropping one:
//! anti-entropy sends a snapshot again next round while the peer still
//! lacks it, and an open asks again.
//!
//! Pieces are checked like any network input: a piece that contradicts
//! its transfer (another count of parts, a part out of range, a transfer
//! over the size limit) drops the transfer, and a reassembled frame that
//! does not decode, or is not a state transfer, is refused
//! ([`PieceError`]); the node's state does not change either way.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::message::{DecodeError, EncodeError, Message, DEFAULT_MAX_FRAME};
use super::time::Time;

/// Bytes of a piece's frame that are not the transfer's bytes (version
/// byte, CBOR heads, the transfer id and counts), rounded up.
const PIECE_OVERHEAD: usize = 64;

/// The most transfers one peer may have in progress here at once.
pub const MAX_PER_PEER: usize = 2;

/// The most transfers in progress here at once, over every peer.
pub const MAX_IN_PROGRESS: usize = 16;

/// How state transfers are cut and put back together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferConfig {
    /// A state transfer whose frame is larger than this goes in pieces,
    /// each frame at most this large. Default: 48 KiB, which keeps every
    /// message under 64 KiB on the wire. At least 1 KiB is used.
    pub max_piece_bytes: usize,
    /// The largest state transfer, in frame bytes, sent or put back
    /// together (the driver sets it to its frame limit, so what could go in
    /// one frame can still go in pieces). Default: 1 MiB.
    pub max_transfer_bytes: usize,
    /// A transfer that has had no new piece for this long is dropped.
    /// Default: 30 s.
    pub timeout: Duration,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            max_piece_bytes: 48 << 10,
            max_transfer_bytes: DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One piece of a state transfer's frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceFrame {
    /// The transfer (unique per sender and run).
    pub transfer: u64,
    /// The piece's number, from 0.
    pub part: u32,
    /// How many pieces the transfer has.
    pub parts: u32,
    /// The piece's bytes of the whole frame.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Why a piece, or the frame its transfer put back together, was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PieceError {
    /// The piece's numbers make no sense (no parts, a part out of range, a
    /// count that disagrees with the transfer's earlier pieces, or more
    /// parts than the size limit allows).
    #[error("piece {part} of {parts} of transfer {transfer} is malformed")]
    Malformed {
        /// The transfer.
        transfer: u64,
        /// The piece's number.
        part: u32,
        /// Its count of parts.
        parts: u32,
    },
    /// The transfer grew past [`TransferConfig::max_transfer_bytes`].
    #[error("transfer {transfer} is over the {max}-byte limit")]
    Oversize {
        /// The transfer.
        transfer: u64,
        /// The limit.
        max: usize,
    },
    /// The whole frame did not decode.
    #[error("transfer {transfer} does not decode: {error}")]
    Decode {
        /// The transfer.
        transfer: u64,
        /// Why.
        error: DecodeError,
    },
    /// The whole frame decoded to a message that is not a state transfer.
    #[error("transfer {transfer} holds a {kind} message, not a state transfer")]
    NotATransfer {
        /// The transfer.
        transfer: u64,
        /// What it held.
        kind: &'static str,
    },
}

/// Counters of the transfers this node cut and put back together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferStats {
    /// State transfers sent in pieces.
    pub sent: u64,
    /// Pieces sent.
    pub pieces_sent: u64,
    /// Transfers put back together and handled.
    pub received: u64,
    /// Transfers dropped before they were whole (timed out, pushed out by
    /// newer ones, their link gone).
    pub dropped: u64,
    /// Pieces or transfers refused as malformed.
    pub refused: u64,
}

/// Whether `msg` is a state transfer, the only kind sent in pieces.
pub fn is_transfer(msg: &Message) -> bool {
    matches!(msg, Message::State { .. } | Message::Snapshot(_))
}

/// Cuts large state transfers and puts received ones back together; `L`
/// names links.
#[derive(Debug)]
pub struct Transfers<L> {
    config: TransferConfig,
    next: u64,
    inbound: HashMap<(L, u64), Assembly>,
    stats: TransferStats,
}

/// A transfer in progress.
#[derive(Debug)]
struct Assembly {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
    /// When its first piece came, for choosing which to drop.
    started: Time,
    /// When its latest piece came.
    touched: Time,
}

impl<L: Copy + Eq + Hash> Transfers<L> {
    /// Nothing in progress. Transfer ids count from 0: they need only be
    /// unique per link, and a new run of a node comes on a new link.
    pub fn new(config: TransferConfig) -> Self {
        Self {
            config,
            next: 0,
            inbound: HashMap::new(),
            stats: TransferStats::default(),
        }
    }

    /// The counters.
    pub const fn stats(&self) -> TransferStats {
        self.stats
    }

    /// How many transfers are in progress here.
    pub fn in_progress(&self) -> usize {
        self.inbound.len()
    }

    /// The pieces to send for `msg`, or `Ok(None)` when it goes whole (it is
    /// not a state transfer, or it fits one piece).
    ///
    /// # Errors
    ///
    /// The message does not encode within
    /// [`TransferConfig::max_transfer_bytes`].
    pub fn split(&mut self, msg: &Message) -> Result<Option<Vec<Message>>, EncodeError> {
        if !is_transfer(msg) {
            return Ok(None);
        }
        let max_piece = self.config.max_piece_bytes.max(1024);
        let frame = msg.encode(self.config.max_transfer_bytes)?;
        if frame.len() <= max_piece {
            return Ok(None);
        }
        let size = max_piece - PIECE_OVERHEAD;
        let transfer = self.next;
        self.next = self.next.wrapping_add(1);
        let parts = u32::try_from(frame.len().div_ceil(size)).unwrap_or(u32::MAX);
        let pieces: Vec<Message> = frame
            .chunks(size)
            .zip(0..)
            .map(|(bytes, part)| {
                Message::Piece(PieceFrame {
                    transfer,
                    part,
                    parts,
                    bytes: bytes.to_vec(),
                })
            })
            .collect();
        self.stats.sent += 1;
        self.stats.pieces_sent += pieces.len() as u64;
        Ok(Some(pieces))
    }

    /// A piece arrived on `from` at `now`: the whole message once this was
    /// its transfer's last missing piece.
    ///
    /// # Errors
    ///
    /// The piece or its transfer is malformed (the transfer is dropped).
    pub fn receive(
        &mut self,
        now: Time,
        from: L,
        piece: PieceFrame,
    ) -> Result<Option<Message>, PieceError> {
        self.expire(now);
        let PieceFrame {
            transfer,
            part,
            parts,
            bytes,
        } = piece;
        let max = self.config.max_transfer_bytes;
        let malformed = PieceError::Malformed {
            transfer,
            part,
            parts,
        };
        // Every piece but the last carries at least one byte, so a count of
        // parts over the size limit cannot be honest.
        if parts == 0 || part >= parts || bytes.is_empty() || parts as usize > max {
            self.refuse(from, transfer);
            return Err(malformed);
        }
        let key = (from, transfer);
        if !self.inbound.contains_key(&key) {
            self.make_room(from);
            self.inbound.insert(
                key,
                Assembly {
                    parts: vec![None; parts as usize],
                    have: 0,
                    bytes: 0,
                    started: now,
                    touched: now,
                },
            );
        }
        let Some(assembly) = self.inbound.get_mut(&key) else {
            return Ok(None);
        };
        if assembly.parts.len() != parts as usize {
            self.refuse(from, transfer);
            return Err(malformed);
        }
        assembly.touched = now;
        let slot = &mut assembly.parts[part as usize];
        if slot.is_some() {
            return Ok(None);
        }
        assembly.bytes += bytes.len();
        if assembly.bytes > max {
            self.refuse(from, transfer);
            return Err(PieceError::Oversize { transfer, max });
        }
        *slot = Some(bytes);
        assembly.have += 1;
        if assembly.have < assembly.parts.len() {
            return Ok(None);
        }
        let Some(assembly) = self.inbound.remove(&key) else {
            return Ok(None);
        };
        let mut frame = Vec::with_capacity(assembly.bytes);
        for bytes in assembly.parts.into_iter().flatten() {
            frame.extend_from_slice(&bytes);
        }
        match Message::decode(&frame, max) {
            Ok(msg) if is_transfer(&msg) => {
                self.stats.received += 1;
                Ok(Some(msg))
            }
            Ok(msg) => {
                self.stats.refused += 1;
                Err(PieceError::NotATransfer {
                    transfer,
                    kind: msg.kind(),
                })
            }
            Err(error) => {
                self.stats.refused += 1;
                Err(PieceError::Decode { transfer, error })
            }
        }
    }

    /// The link `link` is down: its transfers will not complete.
    pub fn link_down(&mut self, link: L) {
        let before = self.inbound.len();
        self.inbound.retain(|(l, _), _| *l != link);
        self.stats.dropped += (before - self.inbound.len()) as u64;
    }

    fn refuse(&mut self, from: L, transfer: u64) {
        self.inbound.remove(&(from, transfer));
        self.stats.refused += 1;
    }

    /// Drop transfers idle for longer than the timeout.
    fn expire(&mut self, now: Time) {
        let timeout = self.config.timeout;
        let before = self.inbound.len();
        self.inbound.retain(|_, a| now.since(a.touched) < timeout);
        self.stats.dropped += (before - self.inbound.len()) as u64;
    }

    /// Make room for one more transfer from `from`: drop its oldest if it
    /// has [`MAX_PER_PEER`], and the node's oldest if it has
    /// [`MAX_IN_PROGRESS`].
    fn make_room(&mut self, from: L) {
        let oldest = |inbound: &HashMap<(L, u64), Assembly>, only: Option<L>| {
            inbound
                .iter()
                .filter(|((l, _), _)| only.is_none_or(|o| o == *l))
                .min_by_key(|((_, t), a)| (a.started, *t))
                .map(|(k, _)| *k)
        };
        let mine = self.inbound.keys().filter(|(l, _)| *l == from).count();
        if mine >= MAX_PER_PEER {
            if let Some(key) = oldest(&self.inbound, Some(from)) {
                self.inbound.remove(&key);
                self.stats.dropped += 1;
            }
        }
        if self.inbound.len() >= MAX_IN_PROGRESS {
            if let Some(key) = oldest(&self.inbound, None) {
                self.inbound.remove(&key);
                self.stats.dropped += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "pieces_tests.rs"]
mod tests;
