//! Encoding a message for the DATA command (RFC 5321 sections 2.3.8 and 4.5.2).
//!
//! Every line ending becomes CRLF (bare CR and bare LF too, so that no end-of-data
//! look-alike such as `\n.\n` can reach the server), every line that starts with a dot
//! gets a second one, and the message ends with `CRLF.CRLF`. The server then sees
//! exactly one message whose body is what the caller meant.

use crate::error::{Error, Phase};

/// A message ready for the wire, and what the envelope must declare about it.
#[derive(Debug)]
pub struct EncodedData {
    /// Dot-stuffed, CRLF-normalised content followed by `.\r\n`.
    pub wire: Vec<u8>,
    /// The message has octets above 127 (needs `BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// Encodes `message` for transmission after a 354 reply.
pub fn encode(message: &[u8]) -> Result<EncodedData, Error> {
    if message.contains(&0) {
        return Err(Error::invalid_input(
            Phase::Data,
            "the message contains a NUL byte",
        ));
    }
    let mut wire = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' => {
                // CRLF, or a bare CR: both end the line.
                bytes.next_if_eq(&b'\n');
                wire.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            b'\n' => {
                wire.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && byte == b'.' {
                    wire.push(b'.');
                }
                wire.push(byte);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    Ok(EncodedData {
        wire,
        eight_bit: !message.is_ascii(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(message: &[u8]) -> Vec<u8> {
        encode(message).unwrap().wire
    }

    #[test]
    fn line_endings_are_normalised() {
        assert_eq!(wire(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n.\r\n");
    }

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(wire(b".\n..x\nno.dot\n"), b"..\r\n...x\r\nno.dot\r\n.\r\n");
        assert_eq!(wire(b".start"), b"..start\r\n.\r\n");
    }

    #[test]
    fn end_of_data_look_alikes_cannot_end_the_message() {
        // SMTP smuggling payloads: each must stay inside the one message.
        for body in [
            &b"x\n.\nMAIL FROM:<a@b>"[..],
            b"x\r.\r\n",
            b"x\r\n.\rMAIL",
            b"x\n.\r\n",
        ] {
            let wire = wire(body);
            let ends = wire.windows(5).filter(|w| w == b"\r\n.\r\n").count();
            assert_eq!(ends, 1, "{:?}", String::from_utf8_lossy(&wire));
            assert!(wire.ends_with(b"\r\n.\r\n"));
        }
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(wire(b""), b".\r\n");
    }

    #[test]
    fn nul_is_refused_and_8bit_is_reported() {
        assert!(encode(b"a\0b").is_err());
        assert!(encode("héllo".as_bytes()).unwrap().eight_bit);
        assert!(!encode(b"hello").unwrap().eight_bit);
    }
}
