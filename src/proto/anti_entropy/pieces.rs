//! Splitting one object's digest into pieces by origin range, and putting
//! the acks of the pieces back together.
//!
//! A digest carries one version-vector entry per writer and one ack per
//! member: at a few thousand members it is larger than a message should be.
//! [`split`] cuts it into pieces of at most about `budget` bytes, each
//! covering a contiguous range of origins ([`Span`]); [`Assembly`] collects
//! the acks of one round's pieces and hands them over only once every piece
//! is in (see [`Span`] for why).

use std::collections::{BTreeSet, HashMap};

use super::estimate;
use crate::proto::id::{NodeId, ObjectKey};
use crate::proto::message::{ObjectDigest, Span};
use crate::proto::stability::AckTable;
use crate::proto::version::VersionVector;

/// `digest` as it is if it fits `budget` (estimated bytes), else in
/// pieces of about `budget` each (at most [`Span::MAX_PARTS`]; a digest
/// too large for that many is cut into the most pieces, each larger).
pub(super) fn split(digest: ObjectDigest, budget: usize, round: u32) -> Vec<ObjectDigest> {
    let total = estimate(&digest);
    if total <= budget {
        return vec![digest];
    }
    // The cost of each origin in the digest, in key order.
    let mut cost: std::collections::BTreeMap<NodeId, usize> = Default::default();
    for origin in digest.held.0.keys() {
        *cost.entry(*origin).or_default() += 44;
    }
    for run in &digest.above {
        *cost.entry(run.origin).or_default() += 56;
    }
    for (member, _) in digest.acks.iter() {
        *cost.entry(member).or_default() += 64;
    }
    for (origin, _) in digest.acks.evictions() {
        *cost.entry(origin).or_default() += 48;
    }
    for (origin, _) in digest.acks.epochs() {
        *cost.entry(origin).or_default() += 72;
    }
    let most = usize::from(Span::MAX_PARTS);
    let budget = budget.max(total.div_ceil(most)).max(1);
    // The first origin of every piece after the first.
    let mut starts = Vec::new();
    let mut bytes = 0;
    for (origin, c) in &cost {
        if bytes + c > budget && bytes > 0 && starts.len() + 1 < most {
            starts.push(*origin);
            bytes = 0;
        }
        bytes += c;
    }
    let parts = (starts.len() + 1) as u16;
    let bounds: Vec<(NodeId, Option<NodeId>)> = std::iter::once(NodeId::MIN)
        .chain(starts.iter().copied())
        .zip(
            starts
                .iter()
                .copied()
                .map(Some)
                .chain(std::iter::once(None)),
        )
        .collect();
    bounds
        .into_iter()
        .enumerate()
        .map(|(part, (from, to))| {
            let span = Span {
                from,
                to,
                round,
                part: part as u16,
                parts,
            };
            ObjectDigest {
                object: digest.object.clone(),
                held: VersionVector(
                    digest
                        .held
                        .0
                        .iter()
                        .filter(|(o, _)| span.contains(o))
                        .map(|(o, n)| (*o, *n))
                        .collect(),
                ),
                above: digest
                    .above
                    .iter()
                    .filter(|r| span.contains(&r.origin))
                    .copied()
                    .collect(),
                acks: digest.acks.restricted(|o| span.contains(o)),
                span: Some(span),
            }
        })
        .collect()
}

/// The acks of the pieces of one round, per object, from one peer.
#[derive(Debug, Default)]
pub(super) struct Assembly {
    objects: HashMap<ObjectKey, Pieces>,
}

#[derive(Debug)]
struct Pieces {
    round: u32,
    parts: u16,
    got: BTreeSet<u16>,
    acks: AckTable,
}

impl Assembly {
    /// Take the acks of a piece (its span valid); returns the whole table
    /// once every piece of its round is in. A piece of another round than
    /// the one being collected starts over.
    pub(super) fn add(
        &mut self,
        object: &ObjectKey,
        span: &Span,
        acks: &AckTable,
    ) -> Option<AckTable> {
        let pieces = self
            .objects
            .entry(object.clone())
            .or_insert_with(|| Pieces {
                round: span.round,
                parts: span.parts,
                got: BTreeSet::new(),
                acks: AckTable::default(),
            });
        if pieces.round != span.round || pieces.parts != span.parts {
            *pieces = Pieces {
                round: span.round,
                parts: span.parts,
                got: BTreeSet::new(),
                acks: AckTable::default(),
            };
        }
        if pieces.got.insert(span.part) {
            pieces.acks.merge(acks);
        }
        if pieces.got.len() < usize::from(pieces.parts) {
            return None;
        }
        self.objects.remove(object).map(|p| p.acks)
    }
}

/// The peer's version vector after a piece: its entries in the piece's
/// span replaced by the piece's.
pub(super) fn update_held(before: &mut VersionVector, piece: &ObjectDigest) {
    match &piece.span {
        None => *before = piece.held.clone(),
        Some(span) => {
            before.0.retain(|o, _| !span.contains(o));
            before.0.extend(piece.held.0.iter().map(|(o, n)| (*o, *n)));
        }
    }
}
