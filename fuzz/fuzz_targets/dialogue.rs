//! The dialogue state machine fed arbitrary server bytes, as a real driver would: it must
//! never panic, always end, and never send anything but EHLO and STARTTLS before TLS
//! when TLS is required, nor show the password in its transcript.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| sendbox_proto::fuzzing::dialogue(input));
