//! The message `sendbox send` sends: a raw RFC 5322 message as given, or a composed one
//! from --subject, --body, --html, --attach and --header, which the component builds
//! (MIME, Date, Message-ID, RFC 2047) so that every embedder gets the same messages.

use std::io::Read as _;
use std::path::Path;

use sendbox::mailer::HeaderField;
use sendbox::{Attachment, ComposedMessage, Envelope, Mailbox, Message};

use crate::args::SendArgs;
use crate::{Stop, exit};

/// The message and its envelope. `from` is the sender after the account's default.
/// Errors name the file that could not be read.
pub fn message(args: &SendArgs, from: Option<&str>) -> Result<(Envelope, Message), Stop> {
    let usage = |message: &str| Stop(exit::USAGE, message.to_owned());
    if let Some(path) = &args.raw {
        let envelope = Envelope {
            sender: from.map(|f| mailbox(f).address),
            recipients: args.to.clone(),
            recipients_from_headers: args.recipients_from_headers,
            qualify_domain: None,
        };
        if envelope.recipients.is_empty() && !envelope.recipients_from_headers {
            return Err(usage(
                "give --to, or -t to take the recipients from the message",
            ));
        }
        return Ok((envelope, Message::Raw(read_input(path)?)));
    }
    let from = from.ok_or_else(|| usage("give --from, or a `from` in the account"))?;
    if args.to.is_empty() && args.cc.is_empty() && args.bcc.is_empty() {
        return Err(usage("give at least one --to, --cc or --bcc"));
    }
    let text = match (&args.body, &args.body_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => Some(read_text(path)?),
        (None, None) => None,
    };
    let mut composed = ComposedMessage::new(mailbox(from));
    composed.to = args.to.iter().map(|a| mailbox(a)).collect();
    composed.cc = args.cc.iter().map(|a| mailbox(a)).collect();
    composed.bcc = args.bcc.iter().map(|a| mailbox(a)).collect();
    composed.subject = args.subject.clone().unwrap_or_default();
    composed.html = args.html.as_deref().map(read_text).transpose()?;
    composed.text = text;
    composed.attachments = args
        .attach
        .iter()
        .map(|path| attachment(path))
        .collect::<Result<_, _>>()?;
    composed.reply_to = args.reply_to.iter().map(|a| mailbox(a)).collect();
    for field in &args.header {
        let field = header_field(field)?;
        // The builder writes Reply-To itself, from the composed message's reply-to list.
        if field.name.eq_ignore_ascii_case("reply-to") {
            composed
                .reply_to
                .extend(split_list(&field.value).iter().map(|a| mailbox(a)));
        } else {
            composed.headers.push(field);
        }
    }
    // The envelope comes from the message: From, and To, Cc and Bcc.
    Ok((Envelope::from_headers(), Message::Composed(composed)))
}

/// `alice@example.org` or `Alice Example <alice@example.org>`.
pub fn mailbox(text: &str) -> Mailbox {
    let text = text.trim();
    match text.strip_suffix('>').and_then(|t| t.rsplit_once('<')) {
        Some((name, address)) => {
            let name = name.trim().trim_matches('"').trim();
            Mailbox {
                name: (!name.is_empty()).then(|| name.to_owned()),
                address: address.trim().to_owned(),
            }
        }
        None => Mailbox::new(text),
    }
}

/// The entries of an address list (`A <a@x>, "B, C" <b@y>`): split at the commas outside
/// quoted strings and angle brackets, each trimmed; empty entries dropped.
fn split_list(list: &str) -> Vec<String> {
    let mut entries = vec![String::new()];
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for c in list.chars() {
        let entry = entries.last_mut().expect("never empty");
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                entries.push(String::new());
                continue;
            }
            _ => {}
        }
        entry.push(c);
    }
    entries
        .into_iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

fn attachment(path: &Path) -> Result<Attachment, Stop> {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            Stop(
                exit::USAGE,
                format!("{} is not a file name", path.display()),
            )
        })?;
    Ok(Attachment {
        media_type: mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
        content: read_input(path)?,
        filename,
    })
}

fn header_field(field: &str) -> Result<HeaderField, Stop> {
    let (name, value) = field.split_once(':').ok_or_else(|| {
        Stop(
            exit::USAGE,
            format!("--header {field:?} is not \"Name: value\""),
        )
    })?;
    Ok(HeaderField {
        name: name.trim().to_owned(),
        value: value.trim().to_owned(),
    })
}

fn read_text(path: &Path) -> Result<String, Stop> {
    String::from_utf8(read_input(path)?).map_err(|_| {
        Stop(
            exit::DATAERR,
            format!(
                "{} is not UTF-8 text; attach it, or use --raw",
                path.display()
            ),
        )
    })
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, Stop> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    result.map_err(|e| {
        Stop(
            exit::NOINPUT,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (Option<String>, String) {
        let mailbox = mailbox(text);
        (mailbox.name, mailbox.address)
    }

    #[test]
    fn mailbox_forms() {
        assert_eq!(parts("a@example.org"), (None, "a@example.org".into()));
        assert_eq!(
            parts("\"Alice Ex\" <a@example.org>"),
            (Some("Alice Ex".into()), "a@example.org".into())
        );
        assert_eq!(parts(" <a@example.org>"), (None, "a@example.org".into()));
    }

    #[test]
    fn address_lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#"a@x, "Doe, J" <j@y>,, <k@z> "#),
            ["a@x", r#""Doe, J" <j@y>"#, "<k@z>"]
        );
        assert_eq!(
            parts(r#""Doe, J" <j@y>"#),
            (Some("Doe, J".into()), "j@y".into())
        );
    }

    #[test]
    fn header_fields_need_a_colon() {
        let Ok(field) = header_field("X-Tag: a: b") else {
            panic!("a valid field was refused")
        };
        assert_eq!(
            (field.name.as_str(), field.value.as_str()),
            ("X-Tag", "a: b")
        );
        assert!(header_field("no colon").is_err());
    }
}
