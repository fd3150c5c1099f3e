//! The message to send: a raw RFC 5322 message as given, or one built from
//! --subject and --body with mail-builder (which adds Date, Message-ID and MIME headers and
//! encodes non-ASCII text).

use std::io::Read as _;
use std::path::Path;

use mail_builder::MessageBuilder;

use crate::args::SendArgs;

/// Reads or builds the message. Errors name the file that could not be read.
pub fn message(args: &SendArgs) -> Result<Vec<u8>, String> {
    if let Some(path) = &args.raw {
        return read_input(path);
    }
    let body = match (&args.body, &args.body_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => String::from_utf8(read_input(path)?).map_err(|_| {
            format!(
                "{} is not UTF-8 text; use --raw for other content",
                path.display()
            )
        })?,
        (None, None) => String::new(),
    };
    build(
        &args.from,
        &args.to,
        args.subject.as_deref().unwrap_or(""),
        body,
    )
}

/// A text/plain message from `from` to `to`.
pub fn build(from: &str, to: &[String], subject: &str, body: String) -> Result<Vec<u8>, String> {
    MessageBuilder::new()
        .from(from)
        .to(to.iter().map(String::as_str).collect::<Vec<_>>())
        .subject(subject)
        .text_body(body)
        .write_to_vec()
        .map_err(|e| format!("cannot build the message: {e}"))
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    result.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_in_fields_cannot_add_headers() {
        let to = ["bob@example.org".to_owned()];
        let message = build(
            "alice@example.org",
            &to,
            "hi\r\nBcc: eve@example.org\nX-Evil: 1",
            "body".into(),
        )
        .unwrap();
        let text = String::from_utf8(message).unwrap();
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        for line in head.split("\r\n") {
            assert!(
                !line.starts_with("Bcc:") && !line.starts_with("X-Evil:"),
                "injected header in:\n{text}"
            );
        }
    }
}
