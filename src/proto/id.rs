//! Identities: nodes, operations, objects, and the Lamport clock.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The identity of a node.
///
/// 32 bytes, so that a later release can derive it from the node's Ed25519
/// public key; tests build small ids with [`NodeId::from_u64`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "bytes32")] [u8; 32]);

/// Ids order as their bytes do (lexicographically), compared two 16-byte
/// words at a time: op ids compare their origins on every step of a search
/// of the replica's log, and a `memcmp` call per step showed in profiles.
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let halves = |id: &Self| {
            let (hi, lo) = id.0.split_at(16);
            let word = |b: &[u8]| u128::from_be_bytes(b.try_into().unwrap_or([0; 16]));
            (word(hi), word(lo))
        };
        halves(self).cmp(&halves(other))
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeId {
    /// The largest id (all bytes `0xff`): no real node has it; it bounds
    /// ranges of op ids.
    pub const MAX: NodeId = NodeId([0xff; 32]);

    /// The smallest id (all bytes zero): it bounds ranges of ids.
    pub const MIN: NodeId = NodeId([0; 32]);

    /// A node id from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A node id whose last eight bytes hold `n` (big-endian) and the rest zero.
    ///
    /// Ids made this way order like the integers they came from; the
    /// deterministic harness uses them.
    pub const fn from_u64(n: u64) -> Self {
        let b = n.to_be_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 8 {
            out[24 + i] = b[i];
            i += 1;
        }
        Self(out)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// The first eight bytes in hex: enough to tell nodes apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let small = self.0[..24].iter().all(|b| *b == 0);
        let shown = if small { &self.0[24..] } else { &self.0[..8] };
        for b in shown {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The id of one shout: its place in the total order of an object's ops.
///
/// Ops are ordered by `(lamport, origin, seq)`. `seq` counts the ops that
/// `origin` made on this object, from 1, with no gaps; `lamport` is the
/// object's Lamport clock at the origin when the op was made.
///
/// On the wire: the array `[lamport, origin, seq]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(u64, NodeId, u64)", into = "(u64, NodeId, u64)")]
pub struct OpId {
    /// Lamport time of the op.
    pub lamport: u64,
    /// The node that made the op.
    pub origin: NodeId,
    /// The origin's per-object sequence number, from 1.
    pub seq: u64,
}

impl From<(u64, NodeId, u64)> for OpId {
    fn from((lamport, origin, seq): (u64, NodeId, u64)) -> Self {
        Self {
            lamport,
            origin,
            seq,
        }
    }
}

impl From<OpId> for (u64, NodeId, u64) {
    fn from(id: OpId) -> Self {
        (id.lamport, id.origin, id.seq)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.lamport, self.origin, self.seq)
    }
}

/// A Lamport clock (Lamport, "Time, clocks, and the ordering of events in a
/// distributed system", CACM 1978).
///
/// It moves past every time it witnesses and ticks for every local event, so
/// an op made after another was seen is ordered after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LamportClock(u64);

impl LamportClock {
    /// The current value.
    pub const fn now(&self) -> u64 {
        self.0
    }

    /// Advance for a local event and return the new time.
    pub fn tick(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Move past a time seen on a remote event.
    pub fn witness(&mut self, seen: u64) {
        self.0 = self.0.max(seen);
    }
}

/// The name of a replicated object: its type tag and its name.
///
/// On the wire: the array `[tag, name]`.
#[derive(Clone, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "(Arc<str>, Arc<str>)", into = "(Arc<str>, Arc<str>)")]
pub struct ObjectKey {
    /// The type tag (for example `demo.Frog`).
    pub tag: Arc<str>,
    /// The object's name, unique within its type (for example `kermit`).
    pub name: Arc<str>,
}

/// Keys compare by content; the same strings (a run of ops decoded from
/// one link shares its key's) compare without reading them.
impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        same(&self.tag, &other.tag) && same(&self.name, &other.name)
    }
}

impl Eq for ObjectKey {}

impl std::hash::Hash for ObjectKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tag.hash(state);
        self.name.hash(state);
    }
}

impl From<(Arc<str>, Arc<str>)> for ObjectKey {
    fn from((tag, name): (Arc<str>, Arc<str>)) -> Self {
        Self { tag, name }
    }
}

impl From<ObjectKey> for (Arc<str>, Arc<str>) {
    fn from(key: ObjectKey) -> Self {
        (key.tag, key.name)
    }
}

impl ObjectKey {
    /// An object key from a tag and a name.
    pub fn new(tag: &str, name: &str) -> Self {
        Self {
            tag: tag.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tag, self.name)
    }
}

/// Serde for `[u8; 32]` as a CBOR byte string (not an array of 32 integers).
mod bytes32 {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 32];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; 32];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = a
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                if a.next_element::<u8>()?.is_some() {
                    return Err(A::Error::invalid_length(33, &self));
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_order_by_lamport_then_origin_then_seq() {
        let a = NodeId::from_u64(1);
        let b = NodeId::from_u64(2);
        let id = |lamport, origin, seq| OpId {
            lamport,
            origin,
            seq,
        };
        assert!(id(1, b, 9) < id(2, a, 1));
        assert!(id(2, a, 9) < id(2, b, 1));
        assert!(id(2, a, 1) < id(2, a, 2));
    }

    #[test]
    fn lamport_clock_moves_past_what_it_witnesses() {
        let mut c = LamportClock::default();
        assert_eq!(c.tick(), 1);
        c.witness(10);
        assert_eq!(c.tick(), 11);
        c.witness(3);
        assert_eq!(c.now(), 11);
    }

    #[test]
    fn node_id_round_trips_through_cbor_as_bytes() {
        let id = NodeId::from_u64(0xdead_beef);
        let mut buf = Vec::new();
        ciborium::into_writer(&id, &mut buf).expect("encoding to a Vec cannot fail");
        assert_eq!(buf.len(), 2 + 32, "a 32-byte CBOR byte string");
        let back: NodeId = ciborium::from_reader(&buf[..]).expect("valid CBOR");
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "00000000deadbeef");
    }

    #[test]
    fn keys_compare_and_hash_by_content() {
        use std::hash::BuildHasher;
        let a = ObjectKey::new("demo.Frog", "kermit");
        let b = ObjectKey::new("demo.Frog", "kermit");
        assert!(!Arc::ptr_eq(&a.name, &b.name));
        assert_eq!(a, b);
        assert_eq!(a, a.clone());
        assert_ne!(a, ObjectKey::new("demo.Frog", "piggy"));
        assert_ne!(a, ObjectKey::new("demo.Toad", "kermit"));
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
    }

    proptest::proptest! {
        /// Ids order exactly as their bytes do.
        #[test]
        fn node_ids_order_as_their_bytes(
            a in proptest::array::uniform32(0u8..=255),
            b in proptest::array::uniform32(0u8..=255),
            cut in 0usize..32,
        ) {
            let mut c = a;
            c[cut..].copy_from_slice(&b[cut..]);
            for (x, y) in [(a, b), (a, c), (c, b), (a, a)] {
                proptest::prop_assert_eq!(NodeId(x).cmp(&NodeId(y)), x.cmp(&y));
            }
        }
    }
}
