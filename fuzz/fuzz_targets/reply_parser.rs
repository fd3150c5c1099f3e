//! Arbitrary server bytes, in arbitrary chunks, into the reply parser: it must never
//! panic, and every reply it returns must be well formed.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::reply_parser(input));
