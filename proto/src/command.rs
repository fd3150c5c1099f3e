//! Checking what the caller gives us before it goes into a command line.
//!
//! Every value that ends up on the wire passes through here first, so that a CR, LF or
//! NUL in an address or the EHLO name can never start a second command (RFC 5321
//! section 4.5.3.1 gives the length limits).

use crate::error::{Error, Phase};

/// Longest local part of an address, in octets.
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets.
pub const MAX_DOMAIN: usize = 255;
/// Longest reverse- or forward-path including the angle brackets.
pub const MAX_PATH: usize = 256;
/// Longest command line including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

/// Checks a mailbox (`local@domain`) for MAIL FROM or RCPT TO against RFC 5321's
/// `Mailbox` (section 4.1.2), with RFC 6531's UTF-8 where it allows it: a dot-string or
/// quoted local part, and a domain of letter-digit-hyphen labels or an address literal.
/// Returns whether it needs SMTPUTF8 (non-ASCII characters).
pub fn check_mailbox(phase: Phase, address: &str) -> Result<bool, Error> {
    let invalid = |why: &str| Error::invalid_input(phase, format!("address {address:?} {why}"));
    if let Some(c) = address
        .chars()
        .find(|&c| c.is_control() || is_hidden_or_reordering(c))
    {
        return Err(invalid(&format!("contains the character {c:?}")));
    }
    if address.contains(['<', '>']) {
        return Err(invalid("must be given without angle brackets"));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(invalid("has no @domain"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(invalid("has an empty local part or domain"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(invalid(&format!(
            "has a local part longer than {MAX_LOCAL_PART} octets"
        )));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(invalid(&format!(
            "has a domain longer than {MAX_DOMAIN} octets"
        )));
    }
    if address.len() + 2 > MAX_PATH {
        return Err(invalid(&format!("is longer than {MAX_PATH} octets")));
    }
    if !is_local_part(local) {
        return Err(invalid(
            "has a local part that is neither dot-separated words of letters, digits and \
             !#$%&'*+-/=?^_`{|}~ nor a quoted string",
        ));
    }
    if !is_domain(domain) && !is_address_literal(domain) {
        return Err(invalid(
            "has a domain that is neither dot-separated labels of letters, digits and \
             hyphens nor an address literal such as [192.0.2.1]",
        ));
    }
    Ok(!address.is_ascii())
}

/// Characters that do not show, or that change how the text around them is shown: bidi
/// controls (U+202E turns `a@\u{202e}tset.elpmaxe` into what looks like `a@example.test`),
/// zero-width and other default-ignorable characters, and the line and paragraph
/// separators (Unicode's Cf, Zl and Zp, and the default-ignorable code points). In an
/// address they make one look like another; in output they are shown escaped.
pub fn is_hidden_or_reordering(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{08E2}'
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether `c` must not reach a terminal or a log as it is: a control character (an
/// escape sequence's start, a line break) or one of [`is_hidden_or_reordering`].
pub fn is_unshowable(c: char) -> bool {
    c.is_control() || is_hidden_or_reordering(c)
}

/// `text` fit for a terminal: each [`is_unshowable`] character written as a `\u{..}`
/// escape, the rest as it is.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unshowable) {
        return text.into();
    }
    text.chars()
        .map(|c| match is_unshowable(c) {
            true => format!("\\u{{{:x}}}", u32::from(c)),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// RFC 5321 `Local-part`: `Dot-string` or `Quoted-string` (RFC 6531: UTF-8 in either).
fn is_local_part(local: &str) -> bool {
    match local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(quoted) => is_quoted_content(quoted),
        None => local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext)),
    }
}

/// RFC 5321 `atext` (from RFC 5322), and the UTF-8 letters RFC 6531 lets in.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_letter(c)
}

/// The UTF-8 RFC 6531 lets in, as sendbox takes it: letters and digits of any script.
/// Not spaces that look like none (U+00A0, U+3000), marks drawn over other characters
/// (U+0336), private-use characters or noncharacters, which make one address look like
/// another.
fn is_utf8_letter(c: char) -> bool {
    !c.is_ascii() && c.is_alphanumeric()
}

/// The inside of RFC 5321 `Quoted-string`: `qtextSMTP` and `quoted-pairSMTP`.
fn is_quoted_content(quoted: &str) -> bool {
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        let fits = match c {
            '\\' => chars
                .next()
                .is_some_and(|escaped| matches!(escaped, ' '..='~')),
            '"' => false,
            c => matches!(c, ' '..='~') || is_utf8_letter(c),
        };
        if !fits {
            return false;
        }
    }
    true
}

/// RFC 5321 `Domain`: labels of letters, digits and inner hyphens (RFC 6531: U-labels).
fn is_domain(domain: &str) -> bool {
    domain.split('.').all(|label| {
        let fits = |c: char| c.is_ascii_alphanumeric() || c == '-' || is_utf8_letter(c);
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(fits)
    })
}

/// RFC 5321 `address-literal`: `[IPv4]`, `[IPv6:...]` or a tagged `[tag:text]`.
fn is_address_literal(domain: &str) -> bool {
    let Some(inner) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return false;
    };
    if let Some(v6) = inner.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if inner.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent.
    inner.split_once(':').is_some_and(|(tag, content)| {
        is_domain(tag)
            && !content.is_empty()
            && content.chars().all(|c| matches!(c, '!'..='Z' | '^'..='~'))
    })
}

/// Checks the name given in EHLO: a domain name or an address literal such as `[192.0.2.1]`.
pub fn check_ehlo_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']');
    if name.is_empty() || name.len() > MAX_DOMAIN || !name.chars().all(ok_char) {
        return Err(Error::invalid_input(
            Phase::Ehlo,
            format!("EHLO name {name:?} is not a domain name or address literal"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_that_could_end_a_command_line_are_refused() {
        for bad in [
            "a@b.org\r\nRCPT TO:<evil@x.org>",
            "a@b.org\nDATA",
            "a\r@b.org",
            "a@b.org\0",
            "a b@c.org",
            "a\t@b.org",
            "a\x1b[31m@b.org",
            "a@\u{202e}tset.elpmaxe",
            "a\u{200b}b@x.org",
            "a@b\u{2028}.org",
            "\u{feff}a@b.org",
            "bob\u{a0}x@b.org",
            "bob\u{3000}x@b.org",
            "bo\u{336}b@b.org",
            "bob@\u{e000}.org",
            "\"bob\u{a0}x\"@b.org",
            "<a@b.org>",
            "a@b.org>",
        ] {
            let error = check_mailbox(Phase::Rcpt, bad).expect_err(bad);
            assert_eq!(
                (error.phase, error.kind),
                (Phase::Rcpt, crate::ErrorKind::InvalidInput)
            );
            assert!(!error.transient);
        }
    }

    #[test]
    fn a_mailbox_needs_both_sides_of_its_at() {
        for bad in ["ab.org", "@b.org", "a@", ""] {
            assert!(check_mailbox(Phase::Mail, bad).is_err(), "{bad:?}");
        }
        // The last @ splits: a quoted local part may hold one.
        assert_eq!(
            check_mailbox(Phase::Mail, "\"a@b\"@c.org").ok(),
            Some(false)
        );
    }

    #[test]
    fn shown_text_has_no_raw_control_or_reordering_character() {
        assert_eq!(shown("250 ok"), "250 ok");
        assert_eq!(
            shown("451 \u{1b}[31mEVIL\u{7}\u{9b}2J \u{202e}x"),
            r"451 \u{1b}[31mEVIL\u{7}\u{9b}2J \u{202e}x"
        );
    }

    #[test]
    fn only_rfc_5321_mailboxes_pass() {
        for good in [
            "bob@example.net",
            "first.last+tag@sub.example-domain.org",
            "!#$%&'*+-/=?^_`{|}~@x.org",
            "\"quoted local\"@example.org",
            "\"a\\\"b\"@example.org",
            "bob@[192.0.2.1]",
            "bob@[IPv6:2001:db8::1]",
            "zoë@exämple.org",
        ] {
            assert!(check_mailbox(Phase::Rcpt, good).is_ok(), "{good}");
        }
        for bad in [
            "bob@@example.net",
            "bob@example..net",
            "bob.@example.net",
            ".bob@example.net",
            "b..ob@example.net",
            "a,b@example.net",
            "a;b@example.net",
            "a(b)@example.net",
            "bob@-example.net",
            "bob@example-.net",
            "bob@exa_mple.net",
            "bob@example.net.",
            "bob@[300.1.1.1]",
            "bob@[IPv6:zz::1]",
            "\"unterminated@example.net",
            "\"a\"b\"@example.net",
        ] {
            assert!(check_mailbox(Phase::Rcpt, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn length_limits_hold_exactly_at_their_edges() {
        let local = |n: usize| "l".repeat(n);
        assert!(check_mailbox(Phase::Mail, &format!("{}@x.org", local(64))).is_ok());
        assert!(check_mailbox(Phase::Mail, &format!("{}@x.org", local(65))).is_err());
        // A path of 256 octets with its angle brackets is the longest.
        // Labels of 50 letters and a dot, so that only the length decides.
        let domain = |n: usize| {
            let labels = "d".repeat(50) + ".";
            let mut domain = labels.repeat(n / labels.len() + 1);
            domain.truncate(n);
            domain.replace_range(n - 1.., "d");
            domain
        };
        assert!(check_mailbox(Phase::Mail, &format!("a@{}", domain(252))).is_ok());
        assert!(check_mailbox(Phase::Mail, &format!("a@{}", domain(253))).is_err());
        assert!(check_mailbox(Phase::Mail, &format!("a@{}", domain(256))).is_err());
    }

    #[test]
    fn non_ascii_addresses_are_reported_as_needing_smtputf8() {
        assert_eq!(
            check_mailbox(Phase::Rcpt, "zoë@example.org").ok(),
            Some(true)
        );
        assert_eq!(
            check_mailbox(Phase::Rcpt, "zoe@example.org").ok(),
            Some(false)
        );
    }

    #[test]
    fn ehlo_names_are_domains_or_address_literals() {
        for good in [
            "client.example.org",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "localhost",
        ] {
            assert!(check_ehlo_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "host\r\nMAIL FROM:<x@y>",
            "h_st",
            &"a".repeat(256),
        ] {
            let error = check_ehlo_name(bad).expect_err(bad);
            assert_eq!(error.phase, Phase::Ehlo);
        }
    }
}
