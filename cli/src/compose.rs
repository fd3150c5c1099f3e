//! The message `sendbox send` sends: a raw RFC 5322 message as given, or a composed one
//! from --subject, --body, --html, --attach and --header, which the component builds
//! (MIME, Date, Message-ID, RFC 2047) so that every embedder gets the same messages.

use std::io::Read as _;
use std::path::Path;

use sendbox::mailer::HeaderField;
use sendbox::{Attachment, ComposedMessage, Envelope, Mailbox, Message};

use crate::args::SendArgs;
use crate::error::Error;

/// The message and its envelope. `from` is the sender after the account's default, and
/// `no_from` says where a sender could have come from, should there be none.
/// Errors name the file that could not be read.
pub fn message(
    args: &SendArgs,
    from: Option<Mailbox>,
    no_from: &str,
) -> Result<(Envelope, Message), Error> {
    let usage = |message: &str| Error::Usage(message.to_owned());
    if let Some(path) = &args.raw {
        let envelope = Envelope {
            sender: from.map(|m| m.address),
            recipients: args.to.clone(),
            recipients_from_headers: args.recipients_from_headers,
            qualify_domain: None,
        };
        if envelope.recipients.is_empty() && !envelope.recipients_from_headers {
            return Err(usage(
                "give --to, or -t to take the recipients from the message",
            ));
        }
        return Ok((envelope, Message::Raw(read_input("--raw", path)?)));
    }
    let from = from.ok_or_else(|| usage(no_from))?;
    if args.to.is_empty() && args.cc.is_empty() && args.bcc.is_empty() {
        return Err(usage("give at least one --to, --cc or --bcc"));
    }
    let text = match (&args.body, &args.body_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => Some(read_text("--body-file", path)?),
        (None, None) => None,
    };
    let mut composed = ComposedMessage::new(from);
    composed.to = mailbox_lists(&args.to)?;
    composed.cc = mailbox_lists(&args.cc)?;
    composed.bcc = mailbox_lists(&args.bcc)?;
    composed.subject = args.subject.clone().unwrap_or_default();
    composed.html = args
        .html
        .as_deref()
        .map(|path| read_text("--html", path))
        .transpose()?;
    composed.text = text;
    composed.attachments = args
        .attach
        .iter()
        .map(|path| attachment(path))
        .collect::<Result<_, _>>()?;
    composed.reply_to = mailbox_lists(&args.reply_to)?;
    for field in &args.header {
        let field = header_field(field)?;
        // The builder writes Reply-To itself, from the composed message's reply-to list.
        if field.name.eq_ignore_ascii_case("reply-to") {
            composed
                .reply_to
                .extend(mailboxes(&field.value).map_err(Error::Data)?);
        } else {
            composed.headers.push(field);
        }
    }
    // The envelope comes from the message: From, and To, Cc and Bcc.
    Ok((Envelope::from_headers(), Message::Composed(composed)))
}

/// The mailboxes of an address list (`Alice <a@x.org>, "Doe, J" <j@y.org>`), read by the
/// parser the component reads headers with; or why it is not one.
pub fn mailboxes(list: &str) -> Result<Vec<Mailbox>, String> {
    let found = sendbox_proto::parse_address_list(list)
        .map_err(|why| format!("not an address list: {why}"))?;
    Ok(found
        .into_iter()
        .map(|m| Mailbox {
            name: m.name,
            address: m.address,
        })
        .collect())
}

/// Exactly one mailbox: `alice@example.org` or `Alice Example <alice@example.org>`.
/// Its address must be one the sender can send from (RFC 5321's `Mailbox`, as proto
/// checks MAIL FROM), so that a bad sender is refused here rather than at the server.
pub fn mailbox(text: &str) -> Result<Mailbox, String> {
    let mut found = mailboxes(text)?;
    match (found.pop(), found.is_empty()) {
        (Some(mailbox), true) => {
            sendbox_proto::command::check_mailbox(sendbox_proto::Phase::Mail, &mailbox.address)
                .map_err(|why| why.message)?;
            Ok(mailbox)
        }
        _ => Err(format!("{text:?} is not one address")),
    }
}

/// The mailboxes of each list given (each --to may name several).
fn mailbox_lists(lists: &[String]) -> Result<Vec<Mailbox>, Error> {
    let mut all = Vec::new();
    for list in lists {
        all.extend(mailboxes(list).map_err(Error::Data)?);
    }
    Ok(all)
}

fn attachment(path: &Path) -> Result<Attachment, Error> {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{} is not a file name", path.display())))?;
    Ok(Attachment {
        media_type: mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
        content: read_input("--attach", path)?,
        filename,
    })
}

fn header_field(field: &str) -> Result<HeaderField, Error> {
    let (name, value) = field
        .split_once(':')
        .ok_or_else(|| Error::Usage(format!("--header {field:?} is not \"Name: value\"")))?;
    Ok(HeaderField {
        name: name.trim().to_owned(),
        value: value.trim().to_owned(),
    })
}

fn read_text(option: &str, path: &Path) -> Result<String, Error> {
    String::from_utf8(read_input(option, path)?).map_err(|_| {
        Error::Data(format!(
            "{} is not UTF-8 text; attach it, or use --raw",
            path.display()
        ))
    })
}

/// Reads a file, or stdin for `-`, that `option` names.
fn read_input(option: &str, path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    result
        .map_err(|e| Error::NoInput(format!("{option} {}: cannot read it: {e}", path.display())))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (Option<String>, String) {
        let mailbox = mailbox(text).unwrap();
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
        assert!(mailbox("a@x.org, b@y.org").is_err());
        assert!(mailbox("").is_err());
    }

    #[test]
    fn each_option_may_name_a_list() {
        let lists = ["a@x, \"Doe, J\" <j@y>".to_owned(), "k@z".to_owned()];
        let found = mailbox_lists(&lists).unwrap();
        let addresses: Vec<_> = found.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(addresses, ["a@x", "j@y", "k@z"]);
        assert_eq!(found[1].name.as_deref(), Some("Doe, J"));
        assert!(mailbox_lists(&["a@x\r\nBcc: eve@y".to_owned()]).is_err());
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
