//! Text from outside (an SMTP client's addresses, a server's reply, a damaged queue file)
//! on its way to a terminal or a log. A raw ESC could recolour the terminal, move its
//! cursor or rewrite what it shows; a raw newline could forge a log line. So every output
//! path writes such text through [`escaped`] or [`quoted`], which share one rule.

use sendbox_proto::command::is_unshowable;

/// `text` with each control character (and each invisible or reordering one, such as
/// U+202E) written as an escape (`\n`, `\r`, `\t`, `\x1b`,
/// `\u{9b}`) and each byte that is not UTF-8 as `\xNN` (always 80 or more, so never
/// mistaken for a character). Backslashes are left as they are: this is for people to
/// read, and keeps JSON and addresses legible.
pub fn escaped(text: impl AsRef<[u8]>) -> String {
    escape(text.as_ref(), &[], false)
}

/// A path as [`escaped`] shows text: a file name may hold any byte but `/` and NUL.
pub fn path(path: &std::path::Path) -> String {
    escaped(path.as_os_str().as_encoded_bytes())
}

/// `text` escaped as [`escaped`] does, but for its line breaks, which stay: a message of
/// several lines for a person, such as an error with a hint under it.
pub fn escaped_lines(text: &str) -> String {
    escape(text.as_bytes(), &[], true)
}

/// `text` in double quotes for a `key="value"` log field: escaped as [`escaped`] does,
/// and with its quotes and backslashes escaped too, so that the value ends where it seems
/// to and one attempt is always one line.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escape(text.as_bytes(), &['"', '\\'], false))
}

/// The one rule: controls and bytes that are not UTF-8 become escapes, and so does each
/// character of `also`; with `lines`, a line break stays one.
fn escape(bytes: &[u8], also: &[char], lines: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' if lines => out.push('\n'),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if also.contains(&c) => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                c if is_unshowable(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_never_come_out_raw() {
        assert_eq!(
            escaped("bob\u{1b}[2J@x\r\n\t\u{7f}\u{9b}é\\"),
            r"bob\x1b[2J@x\r\n\t\x7f\u{9b}é\"
        );
        assert_eq!(escaped(b"ok\xff\xc3"), r"ok\xff\xc3");
        assert_eq!(
            escaped("a@\u{202e}tset.xobdnes\u{200b}"),
            r"a@\u{202e}tset.xobdnes\u{200b}"
        );
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let out = escaped(c.to_string());
            assert!(!out.chars().any(char::is_control), "{c:?} came out raw");
        }
    }

    #[test]
    fn lines_keep_their_breaks_and_nothing_else() {
        assert_eq!(
            escaped_lines("451 \u{1b}]0;title\u{7}\n  hint\r"),
            "451 \\x1b]0;title\\x07\n  hint\\r"
        );
    }

    #[test]
    fn a_quoted_field_stays_one_field_on_one_line() {
        assert_eq!(
            quoted("550 5.1.1 \"no\"\nsecond"),
            r#""550 5.1.1 \"no\"\nsecond""#
        );
        assert_eq!(quoted("a\u{1b}b\\"), r#""a\x1bb\\""#);
    }
}
