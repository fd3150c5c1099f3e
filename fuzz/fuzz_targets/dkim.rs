//! Arbitrary message bytes through DKIM signing (`sendbox_proto::dkim`): no panic, and a
//! clean, folded field that holds exactly what was signed.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::dkim(input));
