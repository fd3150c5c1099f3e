//! A raw message's header read for `sendmail -t`: see `sendbox_proto::fuzzing::raw_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::raw_message(input));
