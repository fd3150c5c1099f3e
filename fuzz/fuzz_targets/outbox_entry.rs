//! Arbitrary bytes as a queued file and as its state, through the outbox's decoding: see
//! `check` in `cli/src/outbox/entry.rs`, which this builds as it is.
#![no_main]

// The CLI is a binary, not a library: its entry module is pure and stands alone.
#[allow(dead_code)]
#[path = "../../cli/src/outbox/entry.rs"]
mod entry;

libfuzzer_sys::fuzz_target!(|input: &[u8]| entry::check(input));
