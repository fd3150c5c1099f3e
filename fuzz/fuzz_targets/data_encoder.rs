//! Arbitrary message bytes through the DATA encoder: exactly one end-of-data marker, at
//! the end, and no bare CR or LF on the wire.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::data_encoder(input));
