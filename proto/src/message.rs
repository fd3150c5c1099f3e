//! The message to send and the envelope that goes with it.
//!
//! A [`Message`] is either raw (an RFC 5322 message sent as it is) or composed (built here
//! with mail-builder, which writes MIME, encodes non-ASCII header text per RFC 2047 and
//! encodes bodies as 7bit, quoted-printable or base64, so no line exceeds 998 octets).
//! Reading a raw message's header, for `sendmail -t`, is mail-parser's job.
//!
//! A raw message that lacks `Date`, `Message-ID` or `From` (cron's, a script's) gets them
//! unless the caller asks for [`RawHeader::AsIs`], as msmtp and sendmail do.
//!
//! Nothing here reads a clock or a random source: the caller passes a [`Stamp`].

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::text::Text;
use mail_parser::{HeaderName, HeaderValue, MessageParser};

use crate::command;
use crate::error::{Error, Phase};

/// Who the message is from and to (RFC 5321 envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path; empty for the null sender `<>`.
    pub sender: String,
    /// RCPT TO addresses, in order.
    pub recipients: Vec<String>,
}

impl Envelope {
    /// Checks every address, without connecting to anything. Returns whether an address
    /// needs SMTPUTF8.
    pub fn check(&self) -> Result<bool, Error> {
        if self.recipients.is_empty() {
            return Err(Error::invalid_input(Phase::Rcpt, "no recipients"));
        }
        let mut needs_utf8 =
            !self.sender.is_empty() && command::check_mailbox(Phase::Mail, &self.sender)?;
        for recipient in &self.recipients {
            needs_utf8 |= command::check_mailbox(Phase::Rcpt, recipient)?;
        }
        Ok(needs_utf8)
    }
}

/// A display name and an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, if any.
    pub name: Option<String>,
    /// The address, `local@domain`.
    pub address: String,
}

/// A file attached to a composed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file name shown to the recipient.
    pub filename: String,
    /// Its media type, such as `application/pdf`.
    pub media_type: String,
    /// The file's bytes.
    pub content: Vec<u8>,
}

/// A message for [`Message::build`] to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Composed {
    /// The author: From, and the envelope sender unless one is given.
    pub from: Option<Mailbox>,
    /// To recipients.
    pub to: Vec<Mailbox>,
    /// Cc recipients.
    pub cc: Vec<Mailbox>,
    /// Envelope recipients only: never written to the header.
    pub bcc: Vec<Mailbox>,
    /// Reply-To addresses.
    pub reply_to: Vec<Mailbox>,
    /// The subject.
    pub subject: String,
    /// A text/plain body.
    pub text: Option<String>,
    /// A text/html body; with `text`, the two form multipart/alternative.
    pub html: Option<String>,
    /// Files attached.
    pub attachments: Vec<Attachment>,
    /// Extra header fields as (name, value).
    pub headers: Vec<(String, String)>,
}

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// An RFC 5322 message, sent as it is but for the fields [`RawHeader`] may add.
    Raw(Vec<u8>),
    /// A message to build with mail-builder.
    Composed(Box<Composed>),
}

/// What the caller asked of the envelope; [`Message::build`] completes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvelopeRequest {
    /// MAIL FROM; `None` takes the message's Sender or From address.
    pub sender: Option<String>,
    /// RCPT TO addresses given by the caller.
    pub recipients: Vec<String>,
    /// Also send to the message's To, Cc and Bcc addresses (`sendmail -t`).
    pub recipients_from_headers: bool,
    /// The domain for addresses without one (`root` becomes `root@domain`).
    pub qualify_domain: Option<String>,
}

/// What happens to a raw message's header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RawHeader {
    /// Add `Date`, `Message-ID` and `From` where they are missing (`From` is the envelope
    /// sender, and is not added for the null sender).
    #[default]
    Complete,
    /// Send the header exactly as given.
    AsIs,
}

/// The time and a unique token for a message's Date and Message-ID.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// Seconds since the Unix epoch.
    pub unix_time: i64,
    /// Printable, unique per message: the left side of the Message-ID.
    pub unique: String,
}

/// Header fields the builder writes itself, which `headers` may not add again.
const BUILDER_FIELDS: [&str; 13] = [
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "sender",
    "content-disposition",
];

impl Message {
    /// The message as it goes to the server, and the envelope completed from its header
    /// as `request` asks. A raw message's Bcc fields are removed when recipients come from
    /// the header, as `sendmail -t` does, and its missing fields added as `raw_header` says.
    /// `stamp` is called only when a Date or Message-ID has to be written.
    pub fn build(
        self,
        request: EnvelopeRequest,
        raw_header: RawHeader,
        stamp: impl FnOnce() -> Stamp,
    ) -> Result<(Envelope, Vec<u8>), Error> {
        // The stamp stays unused until a raw message's header is completed.
        let (bytes, found, raw_stamp) = match self {
            // A raw message with its envelope given in full is not parsed.
            Message::Raw(bytes) if request.sender.is_some() && !request.recipients_from_headers => {
                (bytes, HeaderAddresses::default(), Some(stamp))
            }
            Message::Raw(bytes) => {
                let (bytes, found) = raw(bytes, request.recipients_from_headers)?;
                (bytes, found, Some(stamp))
            }
            Message::Composed(composed) => {
                let (bytes, found) = composed.build(&stamp())?;
                (bytes, found, None)
            }
        };
        let sender = match request.sender {
            Some(sender) => sender,
            None => found.sender.ok_or_else(|| {
                Error::invalid_input(
                    Phase::Mail,
                    "no sender: give one, or put a From header in the message",
                )
            })?,
        };
        let qualify = |address: String| match &request.qualify_domain {
            Some(domain) if !address.is_empty() && !address.contains('@') => {
                format!("{address}@{domain}")
            }
            _ => address,
        };
        let mut recipients: Vec<String> = Vec::new();
        let header_recipients = if request.recipients_from_headers {
            found.recipients
        } else {
            Vec::new()
        };
        for address in request
            .recipients
            .into_iter()
            .chain(header_recipients)
            .map(qualify)
        {
            if !recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
                recipients.push(address);
            }
        }
        let sender = qualify(sender);
        let bytes = match (raw_stamp, raw_header) {
            (Some(stamp), RawHeader::Complete) => complete_header(bytes, &sender, stamp),
            _ => bytes,
        };
        Ok((Envelope { sender, recipients }, bytes))
    }
}

/// `bytes` with the `Date`, `Message-ID` and `From` it lacks put before its header (and a
/// header made for a message that has none). Unchanged, and not copied, when none lacks.
fn complete_header(bytes: Vec<u8>, sender: &str, stamp: impl FnOnce() -> Stamp) -> Vec<u8> {
    let present = FieldsPresent::scan(&bytes);
    let add_from = !present.from && !sender.is_empty();
    if present.date && present.message_id && !add_from {
        return bytes;
    }
    let mut fields = String::new();
    if !present.date || !present.message_id {
        let stamp = stamp();
        if !present.date {
            fields.push_str(&format!(
                "Date: {}\r\n",
                Date::new(stamp.unix_time).to_rfc822()
            ));
        }
        if !present.message_id {
            let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
            fields.push_str(&format!("Message-ID: <{}@{domain}>\r\n", stamp.unique));
        }
    }
    if add_from {
        fields.push_str(&format!("From: <{sender}>\r\n"));
    }
    if !present.header {
        fields.push_str("\r\n");
    }
    let mut completed = Vec::with_capacity(fields.len() + bytes.len());
    completed.extend_from_slice(fields.as_bytes());
    completed.extend_from_slice(&bytes);
    completed
}

/// Which of the fields [`complete_header`] adds a header already has.
#[derive(Debug, Default, PartialEq, Eq)]
struct FieldsPresent {
    /// Whether the message starts with a header at all (a field, or the empty line
    /// that ends an empty header), rather than with body text.
    header: bool,
    date: bool,
    message_id: bool,
    from: bool,
}

impl FieldsPresent {
    /// Reads the field names of the header: every line up to the first that is empty or
    /// is neither a field (`name:`) nor the folded continuation of one.
    fn scan(bytes: &[u8]) -> FieldsPresent {
        let mut present = FieldsPresent::default();
        for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                present.header |= index == 0;
                break;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                if index == 0 {
                    break;
                }
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                break;
            };
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
                break;
            }
            present.header = true;
            let is = |field: &str| name.eq_ignore_ascii_case(field.as_bytes());
            present.date |= is("date");
            present.message_id |= is("message-id");
            present.from |= is("from");
        }
        present
    }
}

/// The envelope addresses found in a message's header.
#[derive(Default)]
struct HeaderAddresses {
    sender: Option<String>,
    recipients: Vec<String>,
}

/// A raw message: its header's addresses, and with `strip_bcc` the message without Bcc.
fn raw(bytes: Vec<u8>, strip_bcc: bool) -> Result<(Vec<u8>, HeaderAddresses), Error> {
    let unreadable = || Error::invalid_input(Phase::Data, "the message has no readable header");
    let parsed = MessageParser::new()
        .parse_headers(&bytes)
        .ok_or_else(unreadable)?;
    let mut found = HeaderAddresses::default();
    let mut from = None;
    let mut bcc_spans = Vec::new();
    for header in parsed.headers() {
        let HeaderValue::Address(list) = &header.value else {
            if header.name == HeaderName::Bcc {
                // An empty or unparsable Bcc is still a Bcc to hide.
                bcc_spans.push(header.offset_field as usize..header.offset_end as usize);
            }
            continue;
        };
        // A bare local part (`To: root`, as cron writes it) comes back as a name alone.
        let addresses = list.iter().filter_map(|a| {
            a.address.as_deref().or_else(|| {
                a.name
                    .as_deref()
                    .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
            })
        });
        match header.name {
            HeaderName::Sender => {
                found.sender = found
                    .sender
                    .or(addresses.into_iter().next().map(str::to_owned))
            }
            HeaderName::From => from = from.or(addresses.into_iter().next().map(str::to_owned)),
            HeaderName::To | HeaderName::Cc => {
                found.recipients.extend(addresses.map(str::to_owned))
            }
            HeaderName::Bcc => {
                found.recipients.extend(addresses.map(str::to_owned));
                bcc_spans.push(header.offset_field as usize..header.offset_end as usize);
            }
            _ => {}
        }
    }
    found.sender = found.sender.or(from);
    drop(parsed);
    if !strip_bcc || bcc_spans.is_empty() {
        return Ok((bytes, found));
    }
    let mut kept = Vec::with_capacity(bytes.len());
    let mut at = 0;
    // The parser gives the fields in order; anything else would be its bug, not a reason to panic.
    for span in bcc_spans.into_iter().filter(|s| s.start <= s.end) {
        if span.start < at || span.end > bytes.len() {
            continue;
        }
        kept.extend_from_slice(&bytes[at..span.start]);
        at = span.end;
    }
    kept.extend_from_slice(&bytes[at..]);
    Ok((kept, found))
}

impl Composed {
    fn build(self, stamp: &Stamp) -> Result<(Vec<u8>, HeaderAddresses), Error> {
        let from = self
            .from
            .ok_or_else(|| Error::invalid_input(Phase::Data, "the message has no From"))?;
        for mailbox in [&from]
            .into_iter()
            .chain(&self.to)
            .chain(&self.cc)
            .chain(&self.bcc)
            .chain(&self.reply_to)
        {
            check_mailbox(mailbox)?;
        }
        for (name, _) in &self.headers {
            check_field_name(name)?;
        }
        for attachment in &self.attachments {
            check_attachment(attachment)?;
        }
        let domain = from
            .address
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let message_id = format!("{}@{domain}", stamp.unique);
        let found = HeaderAddresses {
            sender: Some(from.address.clone()),
            recipients: [&self.to, &self.cc, &self.bcc]
                .into_iter()
                .flatten()
                .map(|m| m.address.clone())
                .collect(),
        };

        let mut builder = MessageBuilder::new()
            .from(address(from))
            .subject(Text::new(self.subject))
            .date(stamp.unix_time)
            .message_id(message_id);
        if !self.to.is_empty() {
            builder = builder.to(address_list(self.to));
        }
        if !self.cc.is_empty() {
            builder = builder.cc(address_list(self.cc));
        }
        if !self.reply_to.is_empty() {
            builder = builder.reply_to(address_list(self.reply_to));
        }
        for (name, value) in self.headers {
            builder = builder.header(name, Text::new(value));
        }
        match (self.text, &self.html) {
            (Some(text), _) => builder = builder.text_body(text),
            // A message needs a body; an empty text one is what the sender meant.
            (None, None) => builder = builder.text_body(""),
            (None, Some(_)) => {}
        }
        if let Some(html) = self.html {
            builder = builder.html_body(html);
        }
        for attachment in self.attachments {
            builder = builder.attachment(
                attachment.media_type,
                attachment.filename,
                attachment.content,
            );
        }
        let bytes = builder.write_to_vec().map_err(|e| {
            Error::invalid_input(Phase::Data, format!("cannot build the message: {e}"))
        })?;
        Ok((bytes, found))
    }
}

fn address(mailbox: Mailbox) -> Address<'static> {
    Address::new_address(mailbox.name, mailbox.address)
}

fn address_list(mailboxes: Vec<Mailbox>) -> Address<'static> {
    Address::new_list(mailboxes.into_iter().map(address).collect())
}

fn check_mailbox(mailbox: &Mailbox) -> Result<(), Error> {
    command::check_mailbox(Phase::Data, &mailbox.address)?;
    if mailbox
        .name
        .as_deref()
        .is_some_and(|n| n.chars().any(char::is_control))
    {
        return Err(Error::invalid_input(
            Phase::Data,
            format!("the name for <{}> has a control character", mailbox.address),
        ));
    }
    Ok(())
}

/// RFC 5322 section 3.6.8: printable ASCII but the colon; and none the builder writes.
fn check_field_name(name: &str) -> Result<(), Error> {
    let printable = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !printable {
        return Err(Error::invalid_input(
            Phase::Data,
            format!("{name:?} is not a header field name"),
        ));
    }
    if BUILDER_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
        return Err(Error::invalid_input(
            Phase::Data,
            format!("the {name} header is written from the message's own fields"),
        ));
    }
    Ok(())
}

/// A media type goes into the header as it is, so it must be `type/subtype` tokens
/// (RFC 2045 section 5.1); a file name is encoded, but may not hide control characters.
fn check_attachment(attachment: &Attachment) -> Result<(), Error> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    let valid_type = attachment
        .media_type
        .split_once('/')
        .is_some_and(|(kind, subtype)| token(kind) && token(subtype));
    if !valid_type {
        return Err(Error::invalid_input(
            Phase::Data,
            format!(
                "{:?} is not a media type such as application/pdf",
                attachment.media_type
            ),
        ));
    }
    if attachment.filename.is_empty() || attachment.filename.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            Phase::Data,
            format!("{:?} is not a usable file name", attachment.filename),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
