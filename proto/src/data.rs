//! Encoding a message for DATA (RFC 5321 sections 2.3.8 and 4.5.2) or BDAT (RFC 3030).
//!
//! Every line ending becomes CRLF (bare CR and bare LF too, so that no end-of-data
//! look-alike such as `\n.\n` can reach the server). For DATA, every line that starts
//! with a dot gets a second one, and the message ends with `CRLF.CRLF`; BDAT counts
//! octets instead, so the content goes as it is. Either way the server sees exactly one
//! message whose body is what the caller meant.

use crate::error::{Error, Phase};

/// How the end of the message is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// DATA: dot-stuffed, ended by a line with a single dot.
    DotStuffed,
    /// BDAT: the length is given in the command; no stuffing, no terminator.
    Chunked,
}

/// A message ready for the wire, and what the envelope must declare about it.
#[derive(Debug)]
pub struct EncodedData {
    /// CRLF-normalised content, framed as asked.
    pub wire: Vec<u8>,
    /// The message has octets above 127 (needs `BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// Encodes `message` for DATA (after a 354 reply) or BDAT.
pub fn encode(message: &[u8], framing: Framing) -> Result<EncodedData, Error> {
    let dot_stuffed = framing == Framing::DotStuffed;
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
                if dot_stuffed && at_line_start && byte == b'.' {
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
    if dot_stuffed {
        wire.extend_from_slice(b".\r\n");
    }
    Ok(EncodedData {
        wire,
        eight_bit: !message.is_ascii(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(message: &[u8]) -> Vec<u8> {
        encode(message, Framing::DotStuffed).unwrap().wire
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
        assert!(encode(b"a\0b", Framing::Chunked).is_err());
        assert!(
            encode("héllo".as_bytes(), Framing::DotStuffed)
                .unwrap()
                .eight_bit
        );
        assert!(!encode(b"hello", Framing::DotStuffed).unwrap().eight_bit);
    }

    #[test]
    fn chunked_content_is_normalised_but_not_stuffed() {
        let wire = encode(
            b".a
.
b",
            Framing::Chunked,
        )
        .unwrap()
        .wire;
        assert_eq!(wire, b".a\r\n.\r\nb\r\n");
    }
}
