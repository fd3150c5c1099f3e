//! The relay's dialogue (`sendbox serve`) fed arbitrary client bytes: it must never panic,
//! never keep a message that a real CRLF.CRLF did not end, nor one holding a bare CR, LF
//! or NUL, nor an address the sender would refuse.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::relay(input));
