use mail_parser::{MessageParser, MimeHeaders};

use super::*;

fn stamp() -> Stamp {
    Stamp {
        unix_time: 1_700_000_000,
        unique: "abc123".into(),
    }
}

fn mailbox(address: &str) -> Mailbox {
    Mailbox {
        name: None,
        address: address.into(),
    }
}

fn composed() -> Composed {
    Composed {
        from: Some(Mailbox {
            name: Some("Zoë Ålander".into()),
            address: "zoe@example.org".into(),
        }),
        to: vec![mailbox("bob@example.org")],
        cc: vec![mailbox("carol@example.org")],
        bcc: vec![mailbox("hidden@example.org")],
        subject: "Grüße aus Köln".into(),
        text: Some("Hallo, schöne Grüße!\n".into()),
        ..Composed::default()
    }
}

fn from_header() -> EnvelopeRequest {
    EnvelopeRequest {
        recipients_from_headers: true,
        ..EnvelopeRequest::default()
    }
}

fn header_of(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.split_once("\r\n\r\n").unwrap().0.to_owned()
}

#[test]
fn composed_bcc_goes_to_the_envelope_and_never_the_header() {
    let (envelope, bytes) = Message::Composed(Box::new(composed()))
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "zoe@example.org");
    assert_eq!(
        envelope.recipients,
        ["bob@example.org", "carol@example.org", "hidden@example.org"]
    );
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("hidden@example.org"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "{text}");
}

#[test]
fn composed_header_is_complete_encoded_and_seven_bit() {
    let (_, bytes) = Message::Composed(Box::new(composed()))
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    assert!(
        bytes.is_ascii(),
        "not 7-bit: {}",
        String::from_utf8_lossy(&bytes)
    );
    let header = header_of(&bytes);
    assert!(
        header.contains("Message-ID: <abc123@example.org>"),
        "{header}"
    );
    assert!(
        header.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"),
        "{header}"
    );
    assert!(header.contains("MIME-Version: 1.0"), "{header}");
    assert!(
        header.contains("=?utf-8?"),
        "subject not RFC 2047 encoded: {header}"
    );

    let parsed = MessageParser::new().parse(&bytes).unwrap();
    assert_eq!(parsed.subject(), Some("Grüße aus Köln"));
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name.as_deref(),
        Some("Zoë Ålander")
    );
    assert_eq!(
        parsed.body_text(0).as_deref(),
        Some("Hallo, schöne Grüße!\n")
    );
}

#[test]
fn long_lines_are_encoded_within_998_octets() {
    let mut message = composed();
    message.text = Some(format!("{}\n", "x".repeat(5000)));
    message.html = Some(format!("<p>{}</p>", "é".repeat(3000)));
    let (_, bytes) = Message::Composed(Box::new(message))
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    let longest = bytes.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
    assert!(longest <= 1000, "a line of {longest} octets");
    let parsed = MessageParser::new().parse(&bytes).unwrap();
    assert_eq!(parsed.body_text(0).unwrap().trim_end(), "x".repeat(5000));
    assert!(header_of(&bytes).contains("multipart/alternative"));
}

#[test]
fn attachments_round_trip() {
    let mut message = composed();
    let content: Vec<u8> = (0..=255).cycle().take(10_000).collect();
    message.attachments.push(Attachment {
        filename: "données.bin".into(),
        media_type: "application/octet-stream".into(),
        content: content.clone(),
    });
    let (_, bytes) = Message::Composed(Box::new(message))
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    assert!(bytes.is_ascii());
    let parsed = MessageParser::new().parse(&bytes).unwrap();
    let attachment = parsed.attachment(0).unwrap();
    assert_eq!(attachment.attachment_name(), Some("données.bin"));
    assert_eq!(attachment.contents(), content.as_slice());
}

#[test]
fn extra_headers_cannot_inject_or_replace_fields() {
    let mut message = composed();
    message
        .headers
        .push(("X-Tag".into(), "a\r\nBcc: eve@example.org".into()));
    message.subject = "hi\r\nX-Evil: 1\nBcc: eve@example.org".into();
    let (_, bytes) = Message::Composed(Box::new(message))
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    let header = header_of(&bytes);
    assert!(header.contains("X-Tag: "), "{header}");
    assert!(
        !header
            .lines()
            .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Evil:")),
        "injected: {header}"
    );

    for name in ["Subject", "bcc", "Message-ID", "X Bad", "X:Bad", ""] {
        let mut message = composed();
        message.headers.push((name.into(), "v".into()));
        let error = Message::Composed(Box::new(message))
            .build(from_header(), RawHeader::AsIs, stamp)
            .unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::InvalidInput, "{name:?}");
    }
}

#[test]
fn bad_attachment_and_addresses_are_refused() {
    let bad_type = Attachment {
        filename: "a.txt".into(),
        media_type: "text/plain\r\nX-Evil: 1".into(),
        content: vec![],
    };
    let bad_name = Attachment {
        filename: "a\nb".into(),
        media_type: "text/plain".into(),
        content: vec![],
    };
    for attachment in [bad_type, bad_name] {
        let mut message = composed();
        message.attachments.push(attachment);
        assert!(
            Message::Composed(Box::new(message))
                .build(from_header(), RawHeader::AsIs, stamp)
                .is_err()
        );
    }
    let mut message = composed();
    message
        .to
        .push(mailbox("bob@example.org>\r\nRCPT TO:<eve@example.org"));
    assert!(
        Message::Composed(Box::new(message))
            .build(from_header(), RawHeader::AsIs, stamp)
            .is_err()
    );
}

const RAW: &str = "From: Alice <alice@example.org>\r\n\
To: bob@example.org, \"Carol C\" <carol@example.org>\r\n\
Cc: team: dave@example.org, erin@example.org;\r\n\
Bcc: secret@example.org,\r\n  other@example.org\r\n\
Subject: hi\r\n\
\r\n\
Bcc: this line is body, not header\r\n";

#[test]
fn raw_recipients_from_headers_strip_bcc() {
    let request = EnvelopeRequest {
        recipients: vec!["BOB@example.org".into(), "extra@example.org".into()],
        ..from_header()
    };
    let (envelope, bytes) = Message::Raw(RAW.into())
        .build(request, RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "alice@example.org");
    assert_eq!(
        envelope.recipients,
        [
            "BOB@example.org",
            "extra@example.org",
            "carol@example.org",
            "dave@example.org",
            "erin@example.org",
            "secret@example.org",
            "other@example.org",
        ]
    );
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(
        text,
        RAW.replace("Bcc: secret@example.org,\r\n  other@example.org\r\n", "")
    );
}

#[test]
fn raw_without_from_headers_is_untouched() {
    let request = EnvelopeRequest {
        sender: Some(String::new()),
        recipients: vec!["bob@example.org".into()],
        recipients_from_headers: false,
        qualify_domain: None,
    };
    let (envelope, bytes) = Message::Raw(RAW.into())
        .build(request, RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "");
    assert_eq!(envelope.recipients, ["bob@example.org"]);
    assert_eq!(bytes, RAW.as_bytes());
}

#[test]
fn sender_header_wins_over_from_and_a_missing_one_is_an_error() {
    let raw = "From: a@example.org\r\nSender: s@example.org\r\nTo: b@example.org\r\n\r\nx\r\n";
    let (envelope, _) = Message::Raw(raw.into())
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "s@example.org");

    let error = Message::Raw(b"To: b@example.org\r\n\r\nx\r\n".to_vec())
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap_err();
    assert!(error.message.contains("no sender"), "{error:?}");
}

#[test]
fn bare_names_get_the_qualify_domain() {
    let cron = "From: root (Cron Daemon)\r\nTo: root\r\nSubject: x\r\n\r\nout\r\n";
    let request = EnvelopeRequest {
        recipients: vec!["admin".into(), "ops@example.net".into()],
        qualify_domain: Some("host.example.org".into()),
        ..from_header()
    };
    let (envelope, _) = Message::Raw(cron.into())
        .build(request, RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "root@host.example.org");
    assert_eq!(
        envelope.recipients,
        [
            "admin@host.example.org",
            "ops@example.net",
            "root@host.example.org"
        ]
    );
    // The null sender stays null; without a domain, bare names stay bare (and are refused).
    let request = EnvelopeRequest {
        sender: Some(String::new()),
        qualify_domain: Some("host.example.org".into()),
        ..from_header()
    };
    let (envelope, _) = Message::Raw(cron.into())
        .build(request, RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(envelope.sender, "");
    let (envelope, _) = Message::Raw(cron.into())
        .build(from_header(), RawHeader::AsIs, stamp)
        .unwrap();
    assert!(envelope.check().is_err());
}

fn to_bob() -> EnvelopeRequest {
    EnvelopeRequest {
        sender: Some("cron@example.org".into()),
        recipients: vec!["bob@example.org".into()],
        ..EnvelopeRequest::default()
    }
}

fn completed(raw: &str, request: EnvelopeRequest) -> String {
    let (_, bytes) = Message::Raw(raw.into())
        .build(request, RawHeader::Complete, stamp)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_raw_message_gets_the_date_message_id_and_from_it_lacks() {
    let sent = completed("Subject: cron\nTo: bob@example.org\n\nall done\n", to_bob());
    assert_eq!(
        sent,
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <abc123@example.org>\r\n\
         From: <cron@example.org>\r\n\
         Subject: cron\nTo: bob@example.org\n\nall done\n"
    );
    let parsed = MessageParser::new().parse(sent.as_bytes()).unwrap();
    assert_eq!(parsed.message_id(), Some("abc123@example.org"));
    assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_700_000_000));
}

#[test]
fn fields_already_there_are_kept_and_not_added_twice() {
    let raw = "from: Cron <cron@example.org>\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
               Subject: x\r\n\r\nbody\r\n";
    let sent = completed(raw, to_bob());
    assert_eq!(sent, format!("Message-ID: <abc123@example.org>\r\n{raw}"));
    let whole = format!("Message-ID: <given@example.org>\r\n{raw}");
    assert_eq!(completed(&whole, to_bob()), whole);
}

#[test]
fn a_field_name_in_the_body_does_not_count() {
    let raw = "Subject: x\r\n\r\nDate: not a field here\r\nMessage-ID: nor this\r\n";
    let sent = completed(raw, to_bob());
    assert!(sent.starts_with("Date: Tue, 14 Nov 2023"), "{sent}");
    assert!(
        sent.contains("Message-ID: <abc123@example.org>\r\nFrom: <cron@example.org>\r\nSubject: x")
    );
}

#[test]
fn a_message_without_a_header_gets_one_before_its_body() {
    let sent = completed("just a line of text\n", to_bob());
    assert!(
        sent.ends_with("From: <cron@example.org>\r\n\r\njust a line of text\n"),
        "{sent}"
    );
    // An empty header (the message starts with its blank line) keeps its one blank line.
    let sent = completed("\r\nbody only\r\n", to_bob());
    assert!(
        sent.ends_with("From: <cron@example.org>\r\n\r\nbody only\r\n"),
        "{sent}"
    );
}

#[test]
fn the_null_sender_adds_no_from_and_as_is_adds_nothing() {
    let null_sender = EnvelopeRequest {
        sender: Some(String::new()),
        ..to_bob()
    };
    let sent = completed("Subject: bounce\r\n\r\nx\r\n", null_sender);
    assert!(!sent.contains("From:"), "{sent}");
    assert!(sent.contains("Message-ID: <abc123@localhost>"), "{sent}");
    let raw = "Subject: as is\r\n\r\nx\r\n";
    let (_, bytes) = Message::Raw(raw.into())
        .build(to_bob(), RawHeader::AsIs, stamp)
        .unwrap();
    assert_eq!(bytes, raw.as_bytes());
}

#[test]
fn a_complete_raw_message_never_reads_the_clock() {
    let raw = "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
               Message-ID: <m@example.org>\r\n\r\nx\r\n";
    let (_, bytes) = Message::Raw(raw.into())
        .build(to_bob(), RawHeader::Complete, || -> Stamp {
            panic!("the stamp was read")
        })
        .unwrap();
    assert_eq!(bytes, raw.as_bytes());
}
