//! Property: whatever the caller's bytes, the DATA encoding gives the server exactly one
//! message, and undoing it as a server does yields the caller's text with CRLF endings.

use proptest::prelude::*;
use sendbox_proto::data::{Framing, encode};

/// What a server does (RFC 5321 section 4.5.2): read lines up to the lone dot, unstuff.
/// Returns the message and how many bytes were left after the end of data.
fn server_reads(wire: &[u8]) -> (Vec<u8>, usize) {
    let mut message = Vec::new();
    let mut rest = wire;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("every line ends with CRLF");
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if line == b"." {
            return (message, rest.len());
        }
        message.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        message.extend_from_slice(b"\r\n");
    }
}

/// The caller's message with every line ending (CRLF, CR, LF) made CRLF, and a final one.
fn normalised(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Bytes weighted towards the ones that matter here; never NUL, which is refused.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'.'),
        4 => Just(b'\r'),
        4 => Just(b'\n'),
        4 => b'a'..=b'z',
        1 => 1u8..=255,
    ];
    proptest::collection::vec(byte, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_server_gets_exactly_the_callers_message(message in message()) {
        let wire = encode(&message, Framing::DotStuffed).unwrap().wire;
        let (received, left_over) = server_reads(&wire);
        prop_assert_eq!(left_over, 0, "bytes after the end of data: a second message could hide there");
        prop_assert_eq!(received, normalised(&message));
        // No bare CR or LF reaches the server.
        for (i, &byte) in wire.iter().enumerate() {
            match byte {
                b'\r' => prop_assert_eq!(wire.get(i + 1), Some(&b'\n')),
                b'\n' => prop_assert!(i > 0 && wire[i - 1] == b'\r'),
                _ => {}
            }
        }
    }
}
