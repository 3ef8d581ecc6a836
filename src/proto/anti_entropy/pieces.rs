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
use std::ops::Bound;

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
    // The cost of each origin in the digest, in key order: gathered in a
    // vector and sorted (every source is sorted already, and a map entry
    // per member would cost a tree search each).
    let mut costs: Vec<(NodeId, usize)> = Vec::with_capacity(digest.acks.len() + 64);
    costs.extend(digest.held.0.keys().map(|o| (*o, 44)));
    costs.extend(digest.above.iter().map(|r| (r.origin, 56)));
    costs.extend(digest.acks.iter().map(|(m, _)| (m, 64)));
    costs.extend(digest.acks.evictions().map(|(o, _)| (o, 48)));
    costs.extend(digest.acks.epochs().map(|(o, _)| (o, 72)));
    costs.sort_by_key(|(o, _)| *o);
    let mut cost: Vec<(NodeId, usize)> = Vec::with_capacity(costs.len());
    for (origin, c) in costs {
        match cost.last_mut() {
            Some((last, sum)) if *last == origin => *sum += c,
            _ => cost.push((origin, c)),
        }
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
                acks: digest.acks.range((
                    Bound::Included(span.from),
                    span.to.map_or(Bound::Unbounded, Bound::Excluded),
                )),
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
