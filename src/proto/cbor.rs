//! The few CBOR items the op frame is made of, written and read by hand.
//!
//! The hot path of the wire (one op frame per shout per link) is a fixed
//! CBOR array of unsigned integers, text and byte strings. Going through
//! serde costs about a microsecond per frame (it allocates every string
//! and walks a map of field names); these functions cost tens of
//! nanoseconds and borrow byte strings from the received buffer. What they
//! write is plain definite-length CBOR (RFC 8949), so any CBOR tool reads
//! the frames. The reader treats its input as untrusted: every length is
//! checked against what is left, and every malformation is an error.

use bytes::Bytes;

/// Major type 0: an unsigned integer.
pub(crate) const UINT: u8 = 0;
/// Major type 2: a byte string.
pub(crate) const BYTES: u8 = 2;
/// Major type 3: a UTF-8 text string.
pub(crate) const TEXT: u8 = 3;
/// Major type 4: an array.
pub(crate) const ARRAY: u8 = 4;

/// What was wrong with a CBOR item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CborError {
    /// The input ended inside an item.
    #[error("input ends inside an item")]
    Truncated,
    /// An item of another type than expected.
    #[error("expected {expected}, found major type {found}")]
    Type {
        /// What was expected.
        expected: &'static str,
        /// The major type found.
        found: u8,
    },
    /// Indefinite lengths and reserved encodings are not used here.
    #[error("unsupported encoding (additional info {0})")]
    Encoding(u8),
    /// A text string that is not UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// Containers nested deeper than the limit.
    #[error("items nest deeper than {0} levels")]
    Nesting(usize),
    /// A byte string of the wrong fixed length.
    #[error("expected {expected} bytes, found {found}")]
    Length {
        /// The length expected.
        expected: usize,
        /// The length found.
        found: u64,
    },
}

/// Append an item head: `major` and its argument, in the shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    if value < 24 {
        out.push(m | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[m | 24, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(m | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(m | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Append a byte string.
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, BYTES, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Append a text string.
pub(crate) fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Reads items from a buffer, front to back.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// Where the input ends: `buf.len()`, or the end of one frame among
    /// several in `buf`.
    end: usize,
}

/// The bytes of a text string as a `str`, if they are UTF-8.
pub(crate) fn utf8(raw: &[u8]) -> Result<&str, CborError> {
    std::str::from_utf8(raw).map_err(|_| CborError::Utf8)
}

impl<'a> Reader<'a> {
    /// Read `buf` from `pos`.
    #[cfg(test)]
    pub(crate) fn new(buf: &'a Bytes, pos: usize) -> Self {
        Self::within(buf, pos, buf.len())
    }

    /// Read `buf` from `pos` up to `end` (at most `buf.len()`): one frame
    /// of a block of frames, whose byte strings still slice `buf`.
    pub(crate) fn within(buf: &'a Bytes, pos: usize, end: usize) -> Self {
        Self {
            buf,
            pos,
            end: end.min(buf.len()),
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// The read position.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        let buf: &'a Bytes = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next item head: `(major type, argument)`.
    pub(crate) fn head(&mut self) -> Result<(u8, u64), CborError> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let value = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(fixed(self.take(2)?))),
            26 => u64::from(u32::from_be_bytes(fixed(self.take(4)?))),
            27 => u64::from_be_bytes(fixed(self.take(8)?)),
            _ => return Err(CborError::Encoding(info)),
        };
        Ok((major, value))
    }

    fn expect(&mut self, major: u8, expected: &'static str) -> Result<u64, CborError> {
        match self.head()? {
            (m, v) if m == major => Ok(v),
            (found, _) => Err(CborError::Type { expected, found }),
        }
    }

    /// An array head: its length.
    pub(crate) fn array(&mut self) -> Result<u64, CborError> {
        self.expect(ARRAY, "an array")
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self) -> Result<u64, CborError> {
        self.expect(UINT, "an unsigned integer")
    }

    fn string(&mut self, major: u8, expected: &'static str) -> Result<&'a [u8], CborError> {
        let len = self.expect(major, expected)?;
        let len = usize::try_from(len).map_err(|_| CborError::Truncated)?;
        self.take(len)
    }

    /// A text string's bytes, not yet checked to be UTF-8 (for a caller
    /// that compares them with a known string first; see [`utf8`]).
    pub(crate) fn text_raw(&mut self) -> Result<&'a [u8], CborError> {
        self.string(TEXT, "a text string")
    }

    /// A text string, borrowed.
    #[cfg(test)]
    pub(crate) fn text(&mut self) -> Result<&'a str, CborError> {
        self.text_raw().and_then(utf8)
    }

    /// A byte string, as a slice of the buffer (no copy).
    pub(crate) fn bytes(&mut self) -> Result<Bytes, CborError> {
        let len = self.string(BYTES, "a byte string")?.len();
        Ok(self.buf.slice(self.pos - len..self.pos))
    }

    /// A byte string of exactly `N` bytes.
    pub(crate) fn bytes_n<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let raw = self.string(BYTES, "a byte string")?;
        raw.try_into().map_err(|_| CborError::Length {
            expected: N,
            found: raw.len() as u64,
        })
    }
}

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    out
}

/// Walk the first CBOR item of `input` and fail if containers (arrays,
/// maps, tags, indefinite strings) nest deeper than `limit`: the serde
/// decoder recurses once per level, so this bounds its stack on untrusted
/// input. Iterative, and linear in the bytes walked. Other malformations
/// are left to the decoder, except where the walk cannot go on.
pub(crate) fn check_nesting(input: &[u8], limit: usize) -> Result<(), CborError> {
    // Per open container: items still expected (`None`: indefinite, until
    // a break). Values nest a few levels deep: the stack starts on the
    // stack, so a decode allocates nothing here.
    let mut open: Stack = Stack::default();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<u64, CborError> {
        let end = pos.checked_add(n).ok_or(CborError::Truncated)?;
        let raw = input.get(*pos..end).ok_or(CborError::Truncated)?;
        *pos = end;
        Ok(raw.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)))
    };
    loop {
        let first = take(&mut pos, 1)? as u8;
        let (major, info) = (first >> 5, first & 0x1f);
        if first == 0xff {
            // A break closes the innermost indefinite container.
            match open.pop() {
                Some(None) => {}
                _ => return Err(CborError::Encoding(info)),
            }
        } else {
            let arg = match info {
                0..=23 => u64::from(info),
                24 => take(&mut pos, 1)?,
                25 => take(&mut pos, 2)?,
                26 => take(&mut pos, 4)?,
                27 => take(&mut pos, 8)?,
                31 if matches!(major, 2..=5) => u64::MAX,
                _ => return Err(CborError::Encoding(info)),
            };
            let indefinite = info == 31;
            let items = match major {
                2 | 3 if !indefinite => {
                    let len = usize::try_from(arg).map_err(|_| CborError::Truncated)?;
                    take_bytes(&mut pos, len, input.len())?;
                    None
                }
                2..=5 if indefinite => Some(None),
                4 => Some(Some(arg)),
                5 => Some(Some(arg.saturating_mul(2))),
                6 => Some(Some(1)),
                _ => None,
            };
            if let Some(items) = items {
                if open.len() >= limit {
                    return Err(CborError::Nesting(limit));
                }
                if items != Some(0) {
                    open.push(items);
                    continue;
                }
            }
        }
        // One item done: count it against the containers it completes.
        loop {
            match open.last_mut() {
                None => return Ok(()),
                Some(Some(n)) => {
                    *n -= 1;
                    if *n > 0 {
                        break;
                    }
                    open.pop();
                }
                Some(None) => break,
            }
        }
    }
}

/// The walk's stack of open containers: the first levels inline, deeper
/// ones on the heap.
#[derive(Default)]
struct Stack {
    inline: [Option<u64>; INLINE],
    len: usize,
    spill: Vec<Option<u64>>,
}

const INLINE: usize = 16;

impl Stack {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, items: Option<u64>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = items,
            None => self.spill.push(items),
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Option<u64>> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get(self.len) {
            Some(items) => Some(*items),
            None => self.spill.pop(),
        }
    }

    fn last_mut(&mut self) -> Option<&mut Option<u64>> {
        let top = self.len.checked_sub(1)?;
        match top.checked_sub(INLINE) {
            None => self.inline.get_mut(top),
            Some(_) => self.spill.last_mut(),
        }
    }
}

fn take_bytes(pos: &mut usize, len: usize, total: usize) -> Result<(), CborError> {
    let end = pos.checked_add(len).filter(|e| *e <= total);
    *pos = end.ok_or(CborError::Truncated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_through_ciborium() {
        for v in [
            0,
            1,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            write_head(&mut ours, UINT, v);
            let mut theirs = Vec::new();
            ciborium::into_writer(&v, &mut theirs).expect("encodes");
            assert_eq!(ours, theirs, "{v}");
            let buf = Bytes::from(ours);
            assert_eq!(Reader::new(&buf, 0).uint(), Ok(v));
        }
    }

    #[test]
    fn strings_match_ciborium_and_borrow() {
        let mut ours = Vec::new();
        write_text(&mut ours, "héllo");
        write_bytes(&mut ours, &[1, 2, 3]);
        let mut theirs = Vec::new();
        ciborium::into_writer("héllo", &mut theirs).expect("encodes");
        ciborium::into_writer(&serde_bytes::Bytes::new(&[1, 2, 3]), &mut theirs).expect("encodes");
        assert_eq!(ours, theirs);
        let buf = Bytes::from(ours);
        let mut r = Reader::new(&buf, 0);
        assert_eq!(r.text(), Ok("héllo"));
        assert_eq!(r.bytes().as_deref(), Ok(&[1u8, 2, 3][..]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn malformed_items_are_errors() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x18],             // uint with a missing byte
            &[0x1c],             // reserved additional info
            &[0x1f],             // indefinite
            &[0x45, 1, 2],       // bytes(5) with 2 bytes
            &[0x62, 0xff, 0xfe], // invalid UTF-8
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // huge length
        ];
        for case in cases {
            let buf = Bytes::copy_from_slice(case);
            let mut r = Reader::new(&buf, 0);
            let any_ok = r.uint().is_ok()
                || {
                    let mut r = Reader::new(&buf, 0);
                    r.text().is_ok()
                }
                || {
                    let mut r = Reader::new(&buf, 0);
                    r.bytes().is_ok()
                };
            assert!(!any_ok, "{case:?}");
        }
        let buf = Bytes::from_static(&[0x42, 1, 2]);
        assert_eq!(
            Reader::new(&buf, 0).bytes_n::<3>(),
            Err(CborError::Length {
                expected: 3,
                found: 2
            })
        );
    }

    #[test]
    fn nesting_is_bounded_and_walked_without_recursion() {
        // A million nested arrays: refused at the limit, no stack overflow.
        let deep = vec![0x81u8; 1_000_000];
        assert_eq!(check_nesting(&deep, 256), Err(CborError::Nesting(256)));
        // Exactly at the limit, closed by a uint: accepted.
        let mut ok = vec![0x81u8; 256];
        ok.push(0x01);
        assert_eq!(check_nesting(&ok, 256), Ok(()));
        // Maps, tags and indefinite containers count as levels too.
        let mixed = [0xa1, 0x61, b'k', 0xc6, 0x9f, 0x5f, 0x41, 1, 0xff, 0xff];
        assert_eq!(check_nesting(&mixed, 4), Ok(()));
        assert_eq!(check_nesting(&mixed, 3), Err(CborError::Nesting(3)));
        // Only the first item is walked; truncation and stray breaks fail.
        assert_eq!(check_nesting(&[0x80, 0xff, 0xff], 4), Ok(()));
        assert_eq!(check_nesting(&[0x82, 0x01], 4), Err(CborError::Truncated));
        assert!(check_nesting(&[0xff], 4).is_err());
        assert!(check_nesting(&[0x5a, 0, 0, 1, 0], 4).is_err());
    }

    proptest::proptest! {
        /// Whatever serde values encode to passes the walk, and arbitrary
        /// bytes never panic it.
        #[test]
        fn the_walk_accepts_encoded_values_and_survives_garbage(
            words in proptest::collection::vec(
                proptest::collection::vec(".{0,8}", 0..4), 0..6),
            nested in proptest::collection::btree_map(0u64..100, proptest::option::of(-5i64..5), 0..5),
            garbage in proptest::collection::vec(0u8..=255, 0..64),
        ) {
            let value = (words, nested, 1.5f64, (), Some(vec![true]));
            let bytes = crate::proto::message::encode_value(&value, "test").expect("encodes");
            proptest::prop_assert_eq!(check_nesting(&bytes, 8), Ok(()));
            let _ = check_nesting(&garbage, 8);
        }
    }
}
