//! Frames on a byte stream: the outbox a link writes into, and the reader
//! that cuts and decodes what arrives.
//!
//! On every transport a frame is a 4-byte big-endian length followed by
//! that many bytes (a [`Message`] frame). The repeater appends frames to a
//! link's [`Outbox`] under a short lock and wakes the writer only when the
//! outbox was empty; the writer takes everything queued in one swap and
//! writes it in one call. So a burst of ops costs one wake-up and one write
//! per link, not one per op. The reading side, [`Inbound`], cuts frames out
//! of whatever the transport delivered and decodes them all at once, so the
//! repeater gets one batch per read, not one message per frame.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::proto::message::{DecodeError, Decoder, Message};
use crate::proto::short::OpShortener;

/// Length-prefix size.
const PREFIX: usize = 4;

/// How much a read asks the transport for at most, and how much room a
/// new read buffer has.
const READ_CHUNK: usize = 64 * 1024;

/// Below this much free room, the read buffer is replaced before a read.
const MIN_ROOM: usize = 4 * 1024;

/// The frames queued for one link, and the writer's wake-up.
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
    /// What was queued here: frames and bytes (length prefixes included).
    pub(crate) sent: Tally,
    /// Frames [`push_bounded`](Self::push_bounded) left out because the
    /// outbox was over its bound.
    shed: AtomicU64,
}

/// What became of a frame offered to an [`Outbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Left out: the outbox already held more than its bound.
    Shed,
    /// The outbox is closed (the link is gone).
    Closed,
}

/// Frames and bytes that crossed a link one way.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    fn add(&self, frame_len: usize) {
        self.add_many(1, PREFIX + frame_len);
    }

    /// Count `frames` frames of `bytes` bytes in all, prefixes included.
    fn add_many(&self, frames: usize, bytes: usize) {
        self.frames.fetch_add(frames as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `(frames, bytes)` so far.
    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

#[derive(Default)]
struct OutboxState {
    buf: Vec<u8>,
    /// The writer's last buffer, handed back so its capacity is reused.
    spare: Vec<u8>,
    /// Bytes the writer took and has not handed back yet (being written).
    writing: usize,
    closed: bool,
    /// Writes ops that repeat the last op's object and origin short.
    shortener: OpShortener,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Outbox")
            .field("queued", &s.buf.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl Outbox {
    /// An empty, open outbox.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queue one frame. `false` if the outbox is closed (the link is gone).
    pub(crate) fn push(&self, frame: &[u8]) -> bool {
        self.push_bounded(frame, None) != Pushed::Closed
    }

    /// Queue one frame, unless more than `bound` bytes are already
    /// [queued](Self::queued) (the peer, or the path to it, is slower than
    /// what is sent): then leave it out and count it. `None`: no bound.
    pub(crate) fn push_bounded(&self, frame: &[u8], bound: Option<usize>) -> Pushed {
        let Ok(len) = u32::try_from(frame.len()) else {
            return Pushed::Closed;
        };
        let mut s = self.state.lock();
        if s.closed {
            return Pushed::Closed;
        }
        if bound.is_some_and(|b| s.buf.len() + s.writing > b) {
            drop(s);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return Pushed::Shed;
        }
        let was_empty = s.buf.is_empty();
        let at = s.buf.len();
        s.buf.reserve(PREFIX + frame.len());
        s.buf.extend_from_slice(&len.to_be_bytes());
        // An op on the previous op's object and origin goes short; the
        // length prefix is then the short frame's.
        let state = &mut *s;
        let written = state.shortener.append(frame, &mut state.buf);
        if written != frame.len() {
            let short = u32::try_from(written).unwrap_or(len).to_be_bytes();
            state.buf[at..at + PREFIX].copy_from_slice(&short);
        }
        drop(s);
        self.sent.add(written);
        if was_empty {
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// Bytes queued and not written yet: waiting for the writer, or taken
    /// by it and not handed back (length prefixes included).
    pub(crate) fn queued(&self) -> usize {
        let s = self.state.lock();
        s.buf.len() + s.writing
    }

    /// How many frames [`push_bounded`](Self::push_bounded) left out.
    pub(crate) fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Wait for queued bytes and take them all; `None` once the outbox is
    /// closed and drained.
    pub(crate) async fn take(&self) -> Option<Vec<u8>> {
        loop {
            {
                let mut s = self.state.lock();
                if !s.buf.is_empty() {
                    let spare = std::mem::take(&mut s.spare);
                    let taken = std::mem::replace(&mut s.buf, spare);
                    s.writing = taken.len();
                    return Some(taken);
                }
                if s.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Hand back a buffer returned by [`take`](Self::take) once written,
    /// so the next burst does not grow a new one.
    pub(crate) fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut s = self.state.lock();
        s.writing = 0;
        if s.spare.capacity() < buf.capacity() {
            s.spare = buf;
        }
    }

    /// Close: queued frames are still taken, new ones are refused.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }
}

/// Where a connection's bytes come from.
pub(crate) enum Input {
    /// The peer's outbox, in the same process.
    Memory(Arc<Outbox>),
    /// The peer's QUIC stream.
    Quic(super::quic::QuicInput),
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Memory(_) => f.write_str("Input::Memory"),
            Input::Quic(_) => f.write_str("Input::Quic"),
        }
    }
}

/// Why a connection's input ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InboundError {
    /// The peer broke the framing or sent an undecodable frame: the
    /// connection is closed with this reason.
    #[error("{0}")]
    Protocol(String),
    /// The transport failed (reset, closed, timed out): nothing to tell.
    #[error("read failed: {0}")]
    Transport(String),
}

impl InboundError {
    fn bad_frame(e: &DecodeError) -> Self {
        InboundError::Protocol(format!("bad frame: {e}"))
    }
}

/// What the buffer holds at a frame's place (see [`Inbound::frame_at`]).
enum Cut {
    /// A whole frame of this many bytes after its prefix.
    Whole(usize),
    /// Part of a frame: this many more bytes make it whole.
    Short(usize),
}

/// The reading half of a connection: cuts frames, decodes them.
#[derive(Debug)]
pub(crate) struct Inbound {
    input: Input,
    buf: BytesMut,
    decoder: Decoder,
    max_frame: usize,
    /// An error found after frames that were delivered first.
    failed: Option<InboundError>,
    ended: bool,
    /// What arrived: whole frames and their bytes.
    received: Arc<Tally>,
    /// Scratch: where the frames of the block being cut are.
    frames: Vec<std::ops::Range<usize>>,
}

impl Inbound {
    pub(crate) fn new(input: Input, max_frame: usize) -> Self {
        Self {
            input,
            buf: BytesMut::new(),
            decoder: Decoder::new(max_frame),
            max_frame,
            failed: None,
            ended: false,
            received: Arc::default(),
            frames: Vec::new(),
        }
    }

    /// The count of what arrived, shared (the link's traffic figures).
    pub(crate) fn received(&self) -> Arc<Tally> {
        self.received.clone()
    }

    /// The frame whose length prefix starts at `at` in the buffer: whole,
    /// or short of some bytes (none counted while the prefix itself is
    /// not whole); an error if its length is over the limit.
    fn frame_at(&self, at: usize) -> Result<Cut, InboundError> {
        let have = self.buf.len() - at;
        if have < PREFIX {
            return Ok(Cut::Short(0));
        }
        let mut len = [0u8; PREFIX];
        len.copy_from_slice(&self.buf[at..at + PREFIX]);
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_frame {
            return Err(InboundError::Protocol(format!(
                "frame of {len} bytes is over the {}-byte limit",
                self.max_frame
            )));
        }
        if have < PREFIX + len {
            return Ok(Cut::Short(PREFIX + len - have));
        }
        Ok(Cut::Whole(len))
    }

    /// The next whole frame in the buffer, if there is one.
    fn cut(&mut self) -> Result<Option<Bytes>, InboundError> {
        match self.frame_at(0)? {
            Cut::Short(missing) => {
                self.buf.reserve(missing);
                Ok(None)
            }
            Cut::Whole(len) => {
                self.buf.advance(PREFIX);
                self.received.add(len);
                Ok(Some(self.buf.split_to(len).freeze()))
            }
        }
    }

    /// Read more bytes; `false` at the end of the input.
    async fn fill(&mut self) -> Result<bool, InboundError> {
        if self.ended {
            return Ok(false);
        }
        // Frames cut from the buffer keep its memory alive (the repeater
        // holds recent ones to answer grafts), so a full buffer is never
        // reused, only replaced: replace it by a large one, not one just
        // big enough for the next read, or every read allocates (and frees)
        // a block of its own.
        if self.buf.capacity() - self.buf.len() < MIN_ROOM {
            self.buf.reserve(READ_CHUNK);
        }
        // A read never outgrows the room (which would allocate again).
        let room = self.buf.capacity() - self.buf.len();
        let more = match &mut self.input {
            Input::Memory(outbox) => match outbox.take().await {
                Some(bytes) => {
                    self.buf.extend_from_slice(&bytes);
                    outbox.recycle(bytes);
                    true
                }
                None => false,
            },
            Input::Quic(recv) => {
                let n = recv
                    .read_into(&mut self.buf, room)
                    .await
                    .map_err(InboundError::Transport)?;
                n > 0
            }
        };
        if more {
            return Ok(true);
        }
        self.ended = true;
        match self.buf.len() {
            0 => Ok(false),
            n if n < PREFIX => Err(InboundError::Protocol(format!(
                "stream ended inside a frame header ({n} of {PREFIX} bytes)"
            ))),
            n => Err(InboundError::Protocol(format!(
                "stream ended inside a frame ({} bytes of it)",
                n - PREFIX
            ))),
        }
    }

    /// The next message; `None` at a clean end of the input.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, InboundError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        loop {
            if let Some(frame) = self.cut()? {
                return self
                    .decoder
                    .decode(&frame)
                    .map(Some)
                    .map_err(|e| InboundError::bad_frame(&e));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Wait for at least one message and append every message already
    /// received to `out`. `Ok(false)` at a clean end of the input. When a
    /// bad frame follows good ones, the good ones come first and the error
    /// with the next call.
    pub(crate) async fn next_batch(
        &mut self,
        out: &mut Vec<Message>,
    ) -> Result<bool, InboundError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        loop {
            let before = out.len();
            if let Err(e) = self.decode_all(out) {
                if out.len() == before {
                    return Err(e);
                }
                self.failed = Some(e);
            }
            if out.len() > before {
                return Ok(true);
            }
            if !self.fill().await? {
                return Ok(false);
            }
        }
    }

    /// Cut every whole frame in the buffer as one block and decode each
    /// into `out`, in order; stop at the first bad one. One block, not a
    /// handle per frame: a handle is a reference count shared with the
    /// repeater's thread, which drops the frames (each payload keeps a
    /// reference of its own).
    fn decode_all(&mut self, out: &mut Vec<Message>) -> Result<(), InboundError> {
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let mut end = 0;
        let mut bad = None;
        let mut short = 0;
        loop {
            match self.frame_at(end) {
                Ok(Cut::Whole(len)) => {
                    frames.push(end + PREFIX..end + PREFIX + len);
                    end += PREFIX + len;
                }
                Ok(Cut::Short(missing)) => {
                    short = missing;
                    break;
                }
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if end > 0 {
            self.received.add_many(frames.len(), end);
            let block = self.buf.split_to(end).freeze();
            for at in frames.drain(..) {
                match self.decoder.decode_in(&block, at) {
                    Ok(msg) => out.push(msg),
                    Err(e) => {
                        bad = Some(InboundError::bad_frame(&e));
                        break;
                    }
                }
            }
        }
        // Room for the rest of a frame cut short, once the whole ones are
        // out (reserving before would copy them).
        self.buf.reserve(short);
        self.frames = frames;
        bad.map_or(Ok(()), Err)
    }

    /// Stop reading: an in-memory peer's further writes are refused (also
    /// done when the reader is dropped).
    pub(crate) fn close(&mut self) {
        if let Input::Memory(outbox) = &self.input {
            outbox.close();
        }
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::DEFAULT_MAX_FRAME;
    use crate::proto::NodeId;

    fn hello(n: u64) -> Message {
        Message::Hello {
            node: NodeId::from_u64(n),
            addr: None,
            nonce: n,
            pinned: false,
        }
    }

    fn op(n: u64) -> Message {
        Message::Op(crate::proto::message::OpFrame {
            object: crate::proto::ObjectKey::new("test.Doc", "doc"),
            id: crate::proto::OpId {
                lamport: n + 1,
                origin: NodeId::from_u64(n),
                seq: n + 1,
            },
            payload: Bytes::from(vec![n as u8; 1 + n as usize]),
        })
    }

    fn pipe() -> (Arc<Outbox>, Inbound) {
        let outbox = Outbox::new();
        let inbound = Inbound::new(Input::Memory(outbox.clone()), DEFAULT_MAX_FRAME);
        (outbox, inbound)
    }

    #[tokio::test]
    async fn a_burst_arrives_as_one_batch_in_order() {
        let (outbox, mut inbound) = pipe();
        for n in 1..=5 {
            assert!(outbox.push(&hello(n).encode(DEFAULT_MAX_FRAME).expect("encodes")));
        }
        outbox.close();
        assert!(!outbox.push(b"late"), "a closed outbox refuses frames");
        let mut batch = Vec::new();
        assert!(inbound.next_batch(&mut batch).await.expect("good frames"));
        assert_eq!(batch, (1..=5).map(hello).collect::<Vec<_>>());
        assert!(!inbound.next_batch(&mut batch).await.expect("clean end"));
    }

    #[tokio::test]
    async fn a_bounded_push_sheds_while_the_writer_is_behind_and_queues_again_after() {
        let (outbox, mut inbound) = pipe();
        let frame = hello(1).encode(DEFAULT_MAX_FRAME).expect("encodes");
        let each = PREFIX + frame.len();
        let bound = Some(3 * each);
        // Up to the bound (and one frame past it), frames queue.
        for _ in 0..4 {
            assert_eq!(outbox.push_bounded(&frame, bound), Pushed::Queued);
        }
        assert_eq!(outbox.queued(), 4 * each);
        for _ in 0..10 {
            assert_eq!(outbox.push_bounded(&frame, bound), Pushed::Shed);
        }
        assert_eq!((outbox.queued(), outbox.shed()), (4 * each, 10));
        // Unbounded pushes (control messages) still queue.
        assert!(outbox.push(&frame));
        assert_eq!(outbox.sent.read().0, 5);
        // Once the writer took what waited, frames queue again.
        let mut batch = Vec::new();
        assert!(inbound.next_batch(&mut batch).await.expect("good frames"));
        assert_eq!(batch.len(), 5);
        assert_eq!(outbox.queued(), 0);
        assert_eq!(outbox.push_bounded(&frame, bound), Pushed::Queued);
        outbox.close();
        assert_eq!(outbox.push_bounded(&frame, bound), Pushed::Closed);
    }

    #[tokio::test]
    async fn good_frames_come_before_the_bad_one() {
        let (outbox, mut inbound) = pipe();
        outbox.push(&hello(1).encode(DEFAULT_MAX_FRAME).expect("encodes"));
        outbox.push(&[1, 0xff, 0x00]);
        let mut batch = Vec::new();
        assert!(inbound
            .next_batch(&mut batch)
            .await
            .expect("the good frame"));
        assert_eq!(batch, vec![hello(1)]);
        let err = inbound
            .next_batch(&mut batch)
            .await
            .expect_err("then the bad one");
        assert!(err.to_string().starts_with("bad frame"), "{err}");
    }

    #[tokio::test]
    async fn oversize_and_truncated_frames_are_protocol_errors() {
        let outbox = Outbox::new();
        let mut inbound = Inbound::new(Input::Memory(outbox.clone()), 16);
        outbox.push(&[0u8; 17]);
        let err = inbound.next().await.expect_err("oversize");
        assert!(err.to_string().contains("over the 16-byte limit"), "{err}");

        let (outbox, mut inbound) = pipe();
        {
            let mut s = outbox.state.lock();
            s.buf.extend_from_slice(&100u32.to_be_bytes());
            s.buf.extend_from_slice(&[1; 10]);
        }
        outbox.close();
        let err = inbound.next().await.expect_err("truncated");
        assert!(err.to_string().contains("ended inside a frame"), "{err}");
    }

    #[tokio::test]
    async fn good_frames_come_before_an_oversize_one() {
        let outbox = Outbox::new();
        let mut inbound = Inbound::new(Input::Memory(outbox.clone()), 200);
        outbox.push(&hello(1).encode(200).expect("encodes"));
        outbox.push(&hello(2).encode(200).expect("encodes"));
        outbox.push(&[0u8; 201]);
        let mut batch = Vec::new();
        assert!(inbound.next_batch(&mut batch).await.expect("good frames"));
        assert_eq!(batch, vec![hello(1), hello(2)]);
        let err = inbound.next_batch(&mut batch).await.expect_err("oversize");
        assert!(err.to_string().contains("over the 200-byte limit"), "{err}");
    }

    #[test]
    fn a_frame_in_a_block_decodes_within_its_own_bounds() {
        let (a, b) = (
            hello(1).encode(DEFAULT_MAX_FRAME).expect("encodes"),
            hello(2).encode(DEFAULT_MAX_FRAME).expect("encodes"),
        );
        let block = Bytes::from([a.clone(), b.clone()].concat());
        let mut decoder = Decoder::new(DEFAULT_MAX_FRAME);
        let second = a.len()..a.len() + b.len();
        assert_eq!(decoder.decode_in(&block, second).ok(), Some(hello(2)));
        assert_eq!(decoder.decode_in(&block, 0..a.len()).ok(), Some(hello(1)));
        // Cut short, a frame is truncated: it is not read on into the next.
        assert!(decoder.decode_in(&block, 0..a.len() - 1).is_err());
        // Past the block's end, or backwards: refused, no panic.
        assert!(decoder.decode_in(&block, a.len()..block.len() + 1).is_err());
        let backwards = std::ops::Range { start: 3, end: 1 };
        assert!(decoder.decode_in(&block, backwards).is_err());
    }

    /// Feed `chunks` as raw stream bytes (already length-prefixed), then
    /// end the stream; collect what the reader makes of them.
    fn read_raw(chunks: &[Vec<u8>]) -> (Vec<Message>, Option<InboundError>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let (outbox, mut inbound) = pipe();
            let mut got = Vec::new();
            for chunk in chunks {
                outbox.state.lock().buf.extend_from_slice(chunk);
                outbox.ready.notify_one();
                // Read whatever is complete so far, as a live link would
                // (a zero timeout polls the read once: tokio polls the inner
                // future before the deadline).
                loop {
                    let whole = tokio::time::timeout(
                        std::time::Duration::from_millis(0),
                        inbound.next_batch(&mut got),
                    )
                    .await;
                    match whole {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => break,
                        Ok(Err(e)) => return (got, Some(e)),
                        Err(_) => break,
                    }
                }
            }
            outbox.close();
            loop {
                match inbound.next_batch(&mut got).await {
                    Ok(true) => {}
                    Ok(false) => return (got, None),
                    Err(e) => return (got, Some(e)),
                }
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// However a stream of good frames is cut into reads, the same
        /// messages come out, in order, and the stream ends cleanly.
        #[test]
        fn any_chunking_of_good_frames_reads_back(
            n in 1usize..20,
            cuts in proptest::collection::vec(0usize..4000, 0..12),
        ) {
            let msgs: Vec<Message> = (0..n as u64).map(hello).collect();
            let mut stream = Vec::new();
            for m in &msgs {
                let frame = m.encode(DEFAULT_MAX_FRAME).expect("encodes");
                stream.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                stream.extend_from_slice(&frame);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                chunks.push(stream[at..c].to_vec());
                at = c;
            }
            let (got, error) = read_raw(&chunks);
            proptest::prop_assert!(error.is_none(), "{error:?}");
            proptest::prop_assert_eq!(got, msgs);
        }

        /// Arbitrary bytes never panic the reader: they end in messages, a
        /// clean end, or a protocol error with a reason.
        #[test]
        fn arbitrary_bytes_are_errors_not_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..300), 0..6),
        ) {
            let (_, error) = read_raw(&chunks);
            if let Some(e) = error {
                proptest::prop_assert!(matches!(e, InboundError::Protocol(_)), "{e}");
            }
        }

        /// A frame decoded in place in a block reads as the same bytes
        /// copied out and decoded alone, message or error, for any range
        /// of a block of good frames with any bytes changed.
        #[test]
        fn decoding_in_a_block_is_decoding_a_copy(
            n in 1usize..6,
            flips in proptest::collection::vec((0usize..1000, 0u8..=255), 0..4),
            aligned: bool,
            start in 0usize..1000,
            len in 0usize..400,
        ) {
            let mut block = Vec::new();
            let mut bounds = vec![0];
            for i in 0..n as u64 {
                // Op frames (read item by item within the frame's bounds)
                // and others (decoded through serde) in turn.
                let msg = if i % 2 == 0 { op(i) } else { hello(i) };
                block.extend(msg.encode(DEFAULT_MAX_FRAME).expect("encodes"));
                bounds.push(block.len());
            }
            for (at, byte) in flips {
                let at = at % block.len();
                block[at] = byte;
            }
            // One whole frame (good unless a byte of it changed), or any
            // range at all.
            let (start, end) = if aligned {
                let k = start % n;
                (bounds[k], bounds[k + 1])
            } else {
                let start = start % (block.len() + 1);
                (start, (start + len).min(block.len()))
            };
            let block = Bytes::from(block);
            let copy = Bytes::copy_from_slice(&block[start..end]);
            let in_place = Decoder::new(DEFAULT_MAX_FRAME).decode_in(&block, start..end);
            let alone = Decoder::new(DEFAULT_MAX_FRAME).decode(&copy);
            proptest::prop_assert_eq!(format!("{in_place:?}"), format!("{alone:?}"));
        }
    }
}
