//! Addresses as people type them on a command line or in a header field, read by
//! mail-parser, the parser the component reads message headers with.

use mail_parser::{Addr, MessageParser};

use crate::message::Mailbox;

/// The mailboxes of an RFC 5322 address list, such as
/// `"Doe, John" <john@example.org>, kay@example.org (Kay)`: groups flattened, quoted
/// names and RFC 2047 words decoded, a comment taken as the name when there is none.
///
/// A bare word (`root`) is an address without a domain, for the caller to qualify or
/// refuse; other text that is not an address is kept as the address too, so that the
/// envelope check names it. Refused: line breaks (the text is one field's value), and a
/// quoted local part (`"john doe"@example.org`), which mail-parser cannot read back
/// exactly, so that no address is ever changed into another.
pub fn parse_address_list(text: &str) -> Result<Vec<Mailbox>, String> {
    if text.contains(['\r', '\n']) {
        return Err(format!("{text:?} has a line break"));
    }
    let field = format!("To: {text}\r\n\r\n");
    let Some(header) = MessageParser::new().parse_headers(field.as_bytes()) else {
        return Ok(Vec::new());
    };
    let mailboxes: Vec<Mailbox> = header
        .to()
        .map(|list| list.iter().filter_map(mailbox).collect())
        .unwrap_or_default();
    // mail-parser reads `"a b"@x` as the name `a b` and the address `@x`.
    if let Some(bad) = mailboxes
        .iter()
        .find(|m| m.address.starts_with('@') || m.address.contains('"'))
    {
        return Err(format!(
            "{text:?}: {:?} has a quoted or empty local part, which is not supported",
            bad.address
        ));
    }
    Ok(mailboxes)
}

fn mailbox(addr: &Addr<'_>) -> Option<Mailbox> {
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match addr.address.as_deref().map(str::trim) {
        Some(address) if !address.is_empty() => Some(Mailbox {
            name: name.map(str::to_owned),
            address: address.to_owned(),
        }),
        // mail-parser reads a lone word as a display name.
        _ => name.map(|word| Mailbox {
            name: None,
            address: word.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(Option<String>, String)> {
        parse_address_list(text)
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.address))
            .collect()
    }

    fn entry(name: Option<&str>, address: &str) -> (Option<String>, String) {
        (name.map(str::to_owned), address.to_owned())
    }

    #[test]
    fn names_quotes_comments_and_groups() {
        assert_eq!(parsed("a@example.org"), [entry(None, "a@example.org")]);
        assert_eq!(
            parsed(r#""Doe, John" <john@example.org>, kay@example.org (Kay)"#),
            [
                entry(Some("Doe, John"), "john@example.org"),
                entry(Some("Kay"), "kay@example.org")
            ]
        );
        assert_eq!(
            parsed("Alice Ex <a@example.org>"),
            [entry(Some("Alice Ex"), "a@example.org")]
        );
        assert_eq!(parsed(" <a@example.org>"), [entry(None, "a@example.org")]);
        assert_eq!(
            parsed(r#"a@x, "Doe, J" <j@y>,, <k@z> "#),
            [
                entry(None, "a@x"),
                entry(Some("Doe, J"), "j@y"),
                entry(None, "k@z")
            ]
        );
        assert_eq!(
            parsed("Team: a@x, b@y;, c@z"),
            [entry(None, "a@x"), entry(None, "b@y"), entry(None, "c@z")]
        );
        assert_eq!(
            parsed("=?utf-8?q?J=C3=BCrgen?= <j@x.org>"),
            [entry(Some("Jürgen"), "j@x.org")]
        );
    }

    #[test]
    fn bare_words_are_addresses_for_the_caller_to_judge() {
        assert_eq!(
            parsed("root, cron"),
            [entry(None, "root"), entry(None, "cron")]
        );
        assert_eq!(parsed("Bob Smith"), [entry(None, "Bob Smith")]);
        assert!(parsed("").is_empty());
        assert!(parsed("<>").is_empty());
    }

    #[test]
    fn quoted_or_empty_local_parts_are_refused_not_changed() {
        for text in [
            r#""john doe"@x.org"#,
            r#"<"john doe"@x.org>"#,
            r#"J <"john \"j, d\" doe"@x>"#,
            "Name <@x.org>",
        ] {
            assert!(parse_address_list(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_line_break_is_refused_not_cut_off() {
        assert!(parse_address_list("bob@x.org\r\nRCPT TO:<eve@x.org>").is_err());
        assert!(parse_address_list("bob@x.org\nBcc: eve@x.org").is_err());
    }
}
