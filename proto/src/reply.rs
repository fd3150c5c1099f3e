//! SMTP replies (RFC 5321 section 4.2) and a strict, bounded parser for them.
//!
//! A reply is one or more lines `ddd-text` ended by a line `ddd text` (or a bare `ddd`),
//! every line ended by CRLF and every line carrying the same code. Anything else is a
//! protocol error: a client that guesses at malformed replies can be steered by them.

use std::fmt;

/// Longest reply line we accept, CRLF included. RFC 5321 allows 512; real servers
/// sometimes exceed it, so we allow more while still bounding memory.
pub const MAX_LINE: usize = 4096;
/// Most lines one reply may have (an EHLO reply with every extension has about 20).
pub const MAX_LINES: usize = 128;

/// An enhanced mail system status code (RFC 3463), such as `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedStatus {
    /// The class: 2 success, 4 transient failure, 5 permanent failure.
    pub class: u8,
    /// The subject (RFC 3463 section 4).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete server reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code (RFC 2034) from the first line, if it carried one.
    pub enhanced: Option<EnhancedStatus>,
    /// The text of each line, without code, separator or enhanced status.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }
    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }
    /// 4xx: failed now, may succeed later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }
    /// All lines' text joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = self.enhanced {
            write!(f, " {status}")?;
        }
        let text = self.lines.join(" / ");
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why bytes from the server are not a valid reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
    /// More than [`MAX_LINES`] lines in one reply.
    TooManyLines,
    /// A line that is not `ddd`, `ddd text` or `ddd-text` with a valid code.
    Malformed(String),
    /// A continuation line whose code differs from the first line's.
    CodeMismatch {
        /// The first line's code.
        first: u16,
        /// The code of the line that differs.
        line: u16,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
            ReplyError::TooManyLines => write!(f, "reply with more than {MAX_LINES} lines"),
            ReplyError::Malformed(line) => write!(f, "malformed reply line {line:?}"),
            ReplyError::CodeMismatch { first, line } => {
                write!(f, "multi-line reply mixes codes {first} and {line}")
            }
        }
    }
}

/// Incremental reply parser: feed it bytes as they arrive, take replies as they complete.
#[derive(Default, Debug)]
pub struct ReplyParser {
    buf: Vec<u8>,
    partial: Option<Reply>,
}

impl ReplyParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete reply.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                // No complete line yet: refuse to buffer more than one line's worth.
                if self.buf.len() >= MAX_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if end + 2 > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
            let (code, last, text) = parse_line(&line)?;
            let reply = self.partial.get_or_insert_with(|| Reply {
                code,
                enhanced: None,
                lines: Vec::new(),
            });
            if reply.code != code {
                return Err(ReplyError::CodeMismatch {
                    first: reply.code,
                    line: code,
                });
            }
            if reply.lines.len() == MAX_LINES {
                return Err(ReplyError::TooManyLines);
            }
            reply.lines.push(text);
            if last {
                let mut reply = self.partial.take().expect("partial reply was just filled");
                reply.enhanced = take_enhanced_status(reply.code, &mut reply.lines);
                return Ok(Some(reply));
            }
        }
    }
}

/// Splits one line (without CRLF) into code, "is last line" and text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    let digits = line.get(..3).ok_or_else(malformed)?;
    // RFC 5321 section 4.2: first digit 2-5, second 0-5, third 0-9.
    let valid = matches!(digits[0], b'2'..=b'5')
        && matches!(digits[1], b'0'..=b'5')
        && digits[2].is_ascii_digit();
    if !valid {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, rest) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    if rest.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(malformed());
    }
    Ok((code, last, String::from_utf8_lossy(rest).into_owned()))
}

/// Removes a leading `class.subject.detail` from every line and returns the first one found.
/// Only a status whose class matches the reply code's class counts (RFC 2034 section 4).
fn take_enhanced_status(code: u16, lines: &mut [String]) -> Option<EnhancedStatus> {
    let mut found = None;
    for line in lines.iter_mut() {
        let Some((status, rest)) = split_enhanced_status(line) else {
            continue;
        };
        if u16::from(status.class) != code / 100 {
            continue;
        }
        found.get_or_insert(status);
        *line = rest.to_owned();
    }
    found
}

fn split_enhanced_status(text: &str) -> Option<(EnhancedStatus, &str)> {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut parts = token.split('.');
    let number = |s: Option<&str>, max_digits: usize| -> Option<u16> {
        let s = s?;
        if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let class = number(parts.next(), 1)?;
    let subject = number(parts.next(), 3)?;
    let detail = number(parts.next(), 3)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    let status = EnhancedStatus {
        class: class as u8,
        subject,
        detail,
    };
    Some((status, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut parser = ReplyParser::new();
        parser.push(bytes);
        let mut replies = Vec::new();
        while let Some(reply) = parser.next_reply()? {
            replies.push(reply);
        }
        Ok(replies)
    }

    #[test]
    fn single_line_reply() {
        let replies = parse_all(b"220 mx.example.org ESMTP ready\r\n").unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code, 220);
        assert_eq!(replies[0].lines, ["mx.example.org ESMTP ready"]);
        assert_eq!(replies[0].enhanced, None);
    }

    #[test]
    fn multi_line_reply_and_bare_code() {
        let replies =
            parse_all(b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n354\r\n").unwrap();
        assert_eq!(
            replies[0].lines,
            ["mx.example.org", "PIPELINING", "8BITMIME"]
        );
        assert_eq!(replies[1].code, 354);
        assert_eq!(replies[1].lines, [""]);
    }

    #[test]
    fn enhanced_status_is_parsed_and_stripped() {
        let replies =
            parse_all(b"550-5.1.1 <bob@example.org>: Recipient\r\n550 5.1.1 address rejected\r\n")
                .unwrap();
        let reply = &replies[0];
        assert_eq!(
            reply.enhanced,
            Some(EnhancedStatus {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(
            reply.lines,
            ["<bob@example.org>: Recipient", "address rejected"]
        );
        assert_eq!(
            reply.to_string(),
            "550 5.1.1 <bob@example.org>: Recipient / address rejected"
        );
    }

    #[test]
    fn enhanced_status_with_wrong_class_is_text() {
        let replies = parse_all(b"250 5.0.0 odd\r\n").unwrap();
        assert_eq!(replies[0].enhanced, None);
        assert_eq!(replies[0].lines, ["5.0.0 odd"]);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_reply() {
        let wire = b"250-first\r\n250 2.0.0 last\r\n";
        let mut parser = ReplyParser::new();
        let mut got = None;
        for (i, byte) in wire.iter().enumerate() {
            parser.push(std::slice::from_ref(byte));
            if let Some(reply) = parser.next_reply().unwrap() {
                assert_eq!(i, wire.len() - 1, "reply completed early");
                got = Some(reply);
            }
        }
        let reply = got.expect("reply never completed");
        assert_eq!(reply.lines, ["first", "last"]);
        assert_eq!(
            reply.enhanced.map(|s| s.to_string()).as_deref(),
            Some("2.0.0")
        );
    }

    #[test]
    fn mismatched_codes_are_refused() {
        assert_eq!(
            parse_all(b"250-one\r\n251 two\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                line: 251
            })
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        for wire in [
            &b"25 short\r\n"[..],
            b"abc text\r\n",
            b"199 too low\r\n",
            b"600 too high\r\n",
            b"260 second digit\r\n",
            b"250_bad separator\r\n",
            b"250 bare\rcarriage return\r\n",
            b"250 lf\ninside\r\n",
        ] {
            assert!(
                matches!(parse_all(wire), Err(ReplyError::Malformed(_))),
                "{:?} was accepted",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn incomplete_reply_waits_for_more() {
        let mut parser = ReplyParser::new();
        parser.push(b"250-one\r\n250 tw");
        assert_eq!(parser.next_reply(), Ok(None));
        parser.push(b"o\r\n");
        assert_eq!(parser.next_reply().unwrap().unwrap().lines, ["one", "two"]);
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut parser = ReplyParser::new();
        parser.push(b"250 ");
        parser.push(&vec![b'x'; MAX_LINE]);
        assert_eq!(parser.next_reply(), Err(ReplyError::LineTooLong));

        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_all(&many), Err(ReplyError::TooManyLines));
    }
}
