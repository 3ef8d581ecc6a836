//! State-transfer reassembly on arbitrary input: each input is a series of
//! frames from a few links; every frame that decodes to a piece goes to
//! the reassembler. Refusals are fine; panics, and memory past the limits,
//! are bugs.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plexus::proto::message::{Message, DEFAULT_MAX_FRAME};
use plexus::proto::pieces::{is_transfer, Transfers, TransferConfig, MAX_IN_PROGRESS};
use plexus::proto::time::Time;

fuzz_target!(|data: &[u8]| {
    let mut config = TransferConfig::default();
    config.max_transfer_bytes = 64 << 10;
    let mut transfers = Transfers::<u8>::new(config);
    let mut now = Time::ZERO;
    // Records: [link, step in ms, length (2 bytes LE), frame...].
    let mut rest = data;
    while let [link, step, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now = now + Duration::from_millis(u64::from(*step) * 100);
        if *link == 0xff {
            transfers.link_down(0);
            continue;
        }
        if let Ok(Message::Piece(piece)) = Message::decode(frame, DEFAULT_MAX_FRAME) {
            if let Ok(Some(whole)) = transfers.receive(now, *link % 4, piece) {
                assert!(is_transfer(&whole));
            }
        }
        assert!(transfers.in_progress() <= MAX_IN_PROGRESS);
    }
});
