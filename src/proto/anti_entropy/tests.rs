//! Digests split into pieces: the pieces cover the digest exactly, every
//! message stays under 64 KiB at thousands of members, acks are merged only
//! once every piece is in, and a malformed span is refused.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::pieces::{split, update_held, Assembly};
use super::*;
use crate::proto::dissemination::SeqRun;
use crate::proto::host::HostError;
use crate::proto::id::NodeId;
use crate::proto::message::{OpFrame, Span, StateFrame};
use crate::proto::replica::Applied;
use crate::proto::stability::{Ack, AckTable};

fn key() -> ObjectKey {
    ObjectKey::new("test.Doc", "d")
}

/// A node id spread over the whole id space (ids from `from_u64` share
/// their first bytes, which would make every range test trivial).
fn member(i: u64) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    bytes[8..16].copy_from_slice(&i.to_be_bytes());
    NodeId::from_bytes(bytes)
}

/// The digest of an object with `members` members, every one a writer
/// with seqs and acks near `u64::MAX` (their largest encoding), and a few
/// runs above gaps.
fn digest(members: u64) -> ObjectDigest {
    let ids: Vec<NodeId> = (0..members).map(member).collect();
    let big = u64::MAX - 1;
    let mut acks = AckTable::from_acks(ids.iter().map(|m| {
        (
            *m,
            Ack {
                clock: big,
                seq: big,
                complete: big,
            },
        )
    }));
    for gone in ids.iter().take(3) {
        acks.evict(*gone, big);
    }
    ObjectDigest {
        object: key(),
        held: VersionVector(ids.iter().map(|m| (*m, big)).collect()),
        above: ids
            .iter()
            .take(ObjectDigest::MAX_ABOVE)
            .map(|m| SeqRun {
                origin: *m,
                first: big - 5,
                last: big - 1,
            })
            .collect(),
        acks,
        span: None,
    }
}

#[test]
fn a_digest_under_the_budget_is_not_split() {
    let whole = digest(20);
    let pieces = split(whole.clone(), 48 << 10, 1);
    assert_eq!(pieces, vec![whole]);
}

#[test]
fn pieces_cover_the_digest_exactly_and_each_message_is_under_64_kib() {
    let whole = digest(3000);
    let budget = AntiEntropyConfig::default().max_digest_bytes;
    let pieces = split(whole.clone(), budget, 7);
    assert!(pieces.len() > 1, "{} piece(s)", pieces.len());
    let parts = pieces.len() as u16;
    let mut held = VersionVector::default();
    let mut above = Vec::new();
    let mut acks = AckTable::default();
    let mut from = NodeId::MIN;
    for (i, piece) in pieces.iter().enumerate() {
        let span = piece.span.expect("a piece has a span");
        assert!(span.is_valid(), "{span:?}");
        assert_eq!((span.round, span.part, span.parts), (7, i as u16, parts));
        assert_eq!(span.from, from, "spans are contiguous");
        from = span.to.unwrap_or(NodeId::MAX);
        assert_eq!(span.to.is_none(), i + 1 == pieces.len());
        assert!(piece.held.0.keys().all(|o| span.contains(o)));
        held.0.extend(piece.held.0.iter().map(|(o, n)| (*o, *n)));
        above.extend(piece.above.iter().copied());
        acks.merge(&piece.acks);
        // Each piece goes alone in a message at worst.
        let message = Message::Digest {
            objects: vec![piece.clone()],
            reply: true,
            first: true,
            last: true,
        };
        let bytes = message.encode(usize::MAX).expect("encodes").len();
        assert!(bytes < 64 << 10, "piece {i}: {bytes} B");
        assert!(bytes <= estimate(piece), "the estimate is an upper bound");
    }
    above.sort_by_key(|r| r.origin);
    let mut expected = whole.above.clone();
    expected.sort_by_key(|r| r.origin);
    assert_eq!(held, whole.held);
    assert_eq!(above, expected);
    assert_eq!(acks, whole.acks);
}

#[test]
fn a_digest_too_large_for_the_most_pieces_is_cut_into_the_most() {
    let whole = digest(2000);
    let pieces = split(whole.clone(), 100, 1);
    assert_eq!(pieces.len(), usize::from(Span::MAX_PARTS));
    assert!(pieces.iter().all(|p| p.span.is_some_and(|s| s.is_valid())));
    let held: usize = pieces.iter().map(|p| p.held.0.len()).sum();
    assert_eq!(held, whole.held.0.len(), "no origin left out");
}

#[test]
fn acks_are_handed_over_only_once_every_piece_of_the_round_is_in() {
    let whole = digest(1000);
    let pieces = split(whole.clone(), 8 << 10, 3);
    assert!(pieces.len() >= 3);
    let mut assembly = Assembly::default();
    let (last, rest) = pieces.split_last().expect("pieces");
    for piece in rest.iter().rev() {
        let span = piece.span.expect("span");
        assert_eq!(assembly.add(&key(), &span, &piece.acks), None);
        // The same piece again counts once.
        assert_eq!(assembly.add(&key(), &span, &piece.acks), None);
    }
    let span = last.span.expect("span");
    assert_eq!(
        assembly.add(&key(), &span, &last.acks),
        Some(whole.acks.clone())
    );

    // A piece of a newer round drops the older round's partial table.
    let older = &pieces[0];
    assert_eq!(
        assembly.add(&key(), &older.span.expect("span"), &older.acks),
        None
    );
    let newer = split(whole.clone(), 8 << 10, 4);
    let mut out = None;
    for piece in &newer {
        out = assembly.add(&key(), &piece.span.expect("span"), &piece.acks);
    }
    assert_eq!(out, Some(whole.acks));
}

#[test]
fn a_piece_replaces_only_the_entries_of_its_span() {
    let whole = digest(500);
    let pieces = split(whole.clone(), 4 << 10, 1);
    let mut held = whole.held.clone();
    let mut piece = pieces[1].clone();
    let span = piece.span.expect("span");
    // The sender now holds nothing of one origin of the span, and more of
    // another.
    let (first, _) = piece.held.0.pop_first().expect("an entry");
    let (second, n) = piece.held.0.pop_first().expect("another");
    piece.held.0.insert(second, n + 1);
    update_held(&mut held, &piece);
    assert_eq!(held.get(&first), 0);
    assert_eq!(held.get(&second), n + 1);
    for (origin, n) in &whole.held.0 {
        if !span.contains(origin) {
            assert_eq!(held.get(origin), *n);
        }
    }
}

/// What the probe host was asked.
#[derive(Debug, Default)]
struct Asked {
    merged: Vec<AckTable>,
    repairs: Vec<Option<Span>>,
}

/// A host that records the acks merged and the spans repaired, and
/// whose digest is a given one.
struct Probe(Arc<Mutex<Asked>>, ObjectDigest);

impl Probe {
    fn holding(digest: ObjectDigest) -> Self {
        Self(Arc::default(), digest)
    }
}

impl Host for Probe {
    fn deliver(&mut self, _: &OpFrame) -> Result<Applied, HostError> {
        Ok(Applied::Duplicate)
    }
    fn export(&mut self) -> Result<StateFrame, HostError> {
        unreachable!("not asked in these tests")
    }
    fn admit(&mut self, _: NodeId) -> Result<Option<(NodeId, u64)>, HostError> {
        unreachable!("not asked in these tests")
    }
    fn wants_admission(&self) -> bool {
        false
    }
    fn may_evict(&self) -> bool {
        true
    }
    fn admitted_as(&mut self, _: NodeId, _: u64) -> bool {
        false
    }
    fn refresh(&mut self) -> u64 {
        0
    }
    fn digest(&self, object: &ObjectKey) -> ObjectDigest {
        ObjectDigest {
            object: object.clone(),
            ..self.1.clone()
        }
    }
    fn merge_acks(&mut self, acks: &AckTable) {
        self.0.lock().expect("lock").merged.push(acks.clone());
    }
    fn repair(
        &self,
        _: &VersionVector,
        _: &[SeqRun],
        _: Option<&VersionVector>,
        span: Option<&Span>,
        _: usize,
    ) -> Result<Repair, HostError> {
        self.0.lock().expect("lock").repairs.push(span.copied());
        Ok(Repair::Ops(Vec::new()))
    }
    fn ops_in(&self, _: &[SeqRun], _: usize) -> Result<Vec<OpFrame>, HostError> {
        Ok(Vec::new())
    }
    fn rebase(&mut self, _: &StateFrame) -> Result<bool, HostError> {
        Ok(false)
    }
    fn awaits_admission(&self) -> bool {
        false
    }
    fn origins_of(&self, node: NodeId) -> Vec<NodeId> {
        vec![node]
    }
    fn evict_gone(&mut self, _: &dyn Fn(NodeId) -> bool) -> usize {
        0
    }
    fn take_restamped(&mut self) -> Result<Vec<OpFrame>, HostError> {
        Ok(Vec::new())
    }
}

#[test]
fn split_digests_are_repaired_piece_by_piece_and_merged_whole() {
    let asked = Arc::new(Mutex::new(Asked::default()));
    let mut probe = Probe(asked.clone(), digest(0));
    let k = key();
    let mut rng = StdRng::seed_from_u64(1);
    let mut ae: AntiEntropy<u8> = AntiEntropy::new(AntiEntropyConfig::default(), &mut rng);
    let whole = digest(1000);
    let pieces = split(whole.clone(), 8 << 10, 9);
    let n = pieces.len();
    // A malformed piece: counted, nothing asked of the host.
    let mut bad = pieces[0].clone();
    if let Some(span) = bad.span.as_mut() {
        span.part = span.parts;
    }
    {
        let mut hosts: Vec<HostRef<'_>> = vec![(&k, &mut probe)];
        let out = ae.handle_digest(1, vec![bad], (false, true, true), &mut hosts);
        assert!(out.is_empty());
    }
    assert_eq!(ae.stats().bad_pieces, 1);
    assert!(asked.lock().expect("lock").repairs.is_empty());
    // The pieces, one message each.
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut hosts: Vec<HostRef<'_>> = vec![(&k, &mut probe)];
        let flags = (false, i == 0, i + 1 == n);
        ae.handle_digest(1, vec![piece], flags, &mut hosts);
        let merged = asked.lock().expect("lock").merged.len();
        assert_eq!(merged, usize::from(i + 1 == n), "after piece {i}");
    }
    let asked = asked.lock().expect("lock");
    assert_eq!(asked.merged, vec![whole.acks]);
    assert_eq!(asked.repairs.len(), n);
    assert!(asked.repairs.iter().all(|s| s.is_some()));
}

#[test]
fn a_node_sends_a_large_digest_in_pieces_under_the_cap() {
    let keys = [
        ObjectKey::new("test.Doc", "a"),
        ObjectKey::new("test.Doc", "b"),
    ];
    let mut a = Probe::holding(digest(3000));
    let mut b = Probe::holding(digest(10));
    let mut rng = StdRng::seed_from_u64(2);
    let mut ae: AntiEntropy<u8> = AntiEntropy::new(AntiEntropyConfig::default(), &mut rng);
    let mut hosts: Vec<HostRef<'_>> = vec![(&keys[0], &mut a), (&keys[1], &mut b)];
    let out = ae.handle_summary(1, 0, 0, &mut hosts);
    assert!(out.len() > 1);
    for (i, message) in out.iter().enumerate() {
        let bytes = message.encode(usize::MAX).expect("encodes").len();
        assert!(bytes < 64 << 10, "message {i}: {bytes} B");
        let Message::Digest { first, last, .. } = message else {
            panic!("a digest message, not {message:?}");
        };
        assert_eq!((*first, *last), (i == 0, i + 1 == out.len()));
    }
    assert!(ae.stats().pieces > 1);
}
