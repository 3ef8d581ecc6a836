//! The lab's control lines (JSON, one a line, between the lab and its peer
//! processes), on arbitrary bytes: decoded and applied to the lab's view.
//! Errors are fine; panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plexus::lab::fuzzing::control_line(data);
});
