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

/// What the envelope must declare about a message, found by one pass over it before
/// anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Survey {
    /// Octets on the wire: exactly what [`Encoder`] writes, terminator included.
    pub wire_len: u64,
    /// The message has octets above 127 (needs `BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// Checks `message` (no NUL) and measures its wire form, without writing it. It goes a
/// line at a time with memchr: a 25 MB message is scanned in milliseconds, in wasm too.
pub fn survey(message: &[u8], framing: Framing) -> Result<Survey, Error> {
    if memchr::memchr(0, message).is_some() {
        return Err(Error::invalid_input(
            Phase::Data,
            "the message contains a NUL byte",
        ));
    }
    let dot_stuffed = framing == Framing::DotStuffed;
    let mut wire_len = 0u64;
    let mut rest = message;
    let mut unterminated = false;
    // Each turn starts a line.
    while !rest.is_empty() {
        let text = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        if dot_stuffed && rest[0] == b'.' {
            wire_len += 1;
        }
        wire_len += text as u64;
        rest = &rest[text..];
        let ending = match rest {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            _ => {
                unterminated = true;
                break;
            }
        };
        rest = &rest[ending..];
        wire_len += 2;
    }
    if unterminated {
        wire_len += 2;
    }
    if dot_stuffed {
        wire_len += 3;
    }
    Ok(Survey {
        wire_len,
        eight_bit: !message.is_ascii(),
    })
}

/// Writes a message's wire form a piece at a time, so that a large message is never held
/// twice: the dialogue sends each piece as it is made.
#[derive(Clone, Debug)]
pub struct Encoder {
    framing: Framing,
    /// Octets of the message already encoded.
    position: usize,
    at_line_start: bool,
    finished: bool,
}

impl Encoder {
    /// An encoder at the start of a message.
    pub fn new(framing: Framing) -> Self {
        Encoder {
            framing,
            position: 0,
            at_line_start: true,
            finished: false,
        }
    }

    /// Whether the whole message (and for DATA its terminator) has been written.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Appends the next part of `message`'s wire form to `out`: about `max` octets (a
    /// line ending, a doubled dot or the terminator is never split, so up to 6 more). `message` must
    /// be the same every call, and [`survey`] must have accepted it.
    pub fn encode_into(&mut self, message: &[u8], out: &mut Vec<u8>, max: usize) {
        let limit = out.len() + max.max(1);
        while self.position < message.len() && out.len() < limit {
            let rest = &message[self.position..];
            if self.at_line_start && self.framing == Framing::DotStuffed && rest[0] == b'.' {
                out.extend_from_slice(b"..");
                self.position += 1;
                self.at_line_start = false;
                continue;
            }
            // The line's text up to its end, or as much of it as fits.
            let window = &rest[..rest.len().min(limit - out.len())];
            let text = memchr::memchr2(b'\r', b'\n', window).unwrap_or(window.len());
            out.extend_from_slice(&rest[..text]);
            self.position += text;
            if text > 0 {
                self.at_line_start = false;
            }
            // CRLF, a bare CR and a bare LF all end the line, as CRLF.
            match message.get(self.position) {
                Some(b'\r') => {
                    self.position += 1;
                    if message.get(self.position) == Some(&b'\n') {
                        self.position += 1;
                    }
                }
                Some(b'\n') => self.position += 1,
                _ => continue,
            }
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
        if self.position == message.len() && !self.finished {
            if !self.at_line_start {
                out.extend_from_slice(b"\r\n");
            }
            if self.framing == Framing::DotStuffed {
                out.extend_from_slice(b".\r\n");
            }
            self.finished = true;
        }
    }
}

/// A message encoded whole, and what the envelope must declare about it.
#[derive(Debug)]
pub struct EncodedData {
    /// CRLF-normalised content, framed as asked.
    pub wire: Vec<u8>,
    /// The message has octets above 127 (needs `BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// Encodes `message` whole for DATA (after a 354 reply) or BDAT: [`survey`] then
/// [`Encoder`], for callers that want it all at once.
pub fn encode(message: &[u8], framing: Framing) -> Result<EncodedData, Error> {
    let survey = survey(message, framing)?;
    let mut wire = Vec::with_capacity(usize::try_from(survey.wire_len).unwrap_or(0));
    let mut encoder = Encoder::new(framing);
    while !encoder.finished() {
        encoder.encode_into(message, &mut wire, usize::MAX / 2);
    }
    Ok(EncodedData {
        wire,
        eight_bit: survey.eight_bit,
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

    /// The wire form written in pieces of `max` octets.
    fn in_pieces(message: &[u8], framing: Framing, max: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut encoder = Encoder::new(framing);
        while !encoder.finished() {
            let before = wire.len();
            encoder.encode_into(message, &mut wire, max);
            // Only an empty BDAT message ends with nothing written.
            assert!(wire.len() > before || message.is_empty(), "no progress");
            // Over by at most a doubled dot, a line ending and the terminator.
            assert!(wire.len() - before <= max + 6, "a piece too big");
        }
        wire
    }

    proptest::proptest! {
        #[test]
        fn pieces_of_any_size_make_the_same_wire_and_the_survey_counts_it(
            message in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'.', b'\r', b'\n', 0xC3]), 0..200),
            max in 1usize..40,
        ) {
            for framing in [Framing::DotStuffed, Framing::Chunked] {
                let whole = encode(&message, framing).unwrap().wire;
                proptest::prop_assert_eq!(&in_pieces(&message, framing, max), &whole);
                let survey = survey(&message, framing).unwrap();
                proptest::prop_assert_eq!(survey.wire_len, whole.len() as u64);
                proptest::prop_assert_eq!(survey.eight_bit, message.contains(&0xC3));
            }
        }
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
