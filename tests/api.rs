//! The library's public types, spelled out field by field and variant by variant.
//!
//! The records that describe mail, replies and errors are the WIT's own, re-exported: one
//! definition, the contract every embedder of the component sees too. A WIT edit changes
//! them, and with them the Rust API. This file makes such an edit fail here, in CI, rather
//! than surprise an embedder: every record is built without `..` and every enum matched
//! without `_`. When it fails, the change is a breaking one: bump the WIT package's
//! version and the crate's together (the last test checks they agree).

use sendbox::mailer::{
    EnhancedStatus, ErrorKind, HeaderField, Phase, RefusedRecipient, Reply, Timeouts,
};
use sendbox::{
    Attachment, AuthMechanism, ComposedMessage, Credentials, Delivery, Dsn, DsnNotify, DsnReturn,
    Mailbox, Message, PreparedMessage, Secret, SendError, SendOptions, TlsMode,
};

#[test]
fn records_have_exactly_these_fields() {
    let mailbox = Mailbox {
        name: Some("Alice".into()),
        address: "alice@example.org".into(),
    };
    let composed = ComposedMessage {
        from: mailbox.clone(),
        to: vec![mailbox.clone()],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject: "s".into(),
        text: Some("t".into()),
        html: None,
        attachments: vec![Attachment {
            filename: "a.txt".into(),
            media_type: "text/plain".into(),
            content: b"x".to_vec(),
        }],
        headers: vec![HeaderField {
            name: "X-A".into(),
            value: "b".into(),
        }],
    };
    let options = SendOptions {
        dsn: Some(Dsn {
            notify: Some(DsnNotify::SUCCESS | DsnNotify::FAILURE | DsnNotify::DELAY),
            ret: Some(DsnReturn::Full),
            envid: None,
            original_recipients: false,
        }),
        require_tls: false,
        keep_raw_header: false,
        dkim: None,
    };
    let timeouts = Timeouts {
        connect_ms: 1,
        greeting_ms: 2,
        command_ms: 3,
        mail_ms: 4,
        rcpt_ms: 5,
        data_start_ms: 6,
        data_block_ms: 7,
        data_end_ms: 8,
        total_ms: 9,
    };
    let reply = Reply {
        code: 250,
        enhanced_status: Some(EnhancedStatus {
            class: 2,
            subject: 0,
            detail: 0,
        }),
        text: "ok".into(),
    };
    let delivery = Delivery {
        accepted: vec![mailbox.address.clone()],
        refused: vec![RefusedRecipient {
            address: "bob@example.org".into(),
            reply: reply.clone(),
        }],
        final_reply: reply.clone(),
        earlier_replies: Vec::new(),
    };
    let error = SendError {
        phase: Phase::Rcpt,
        kind: ErrorKind::Rejected,
        reply: Some(reply),
        message: "m".into(),
        transient: false,
    };
    let credentials = Credentials {
        username: "alice".into(),
        secret: Secret::Password("pw".into()),
        mechanism: Some(AuthMechanism::ScramSha256),
    };
    let prepared = PreparedMessage {
        sender: "alice@example.org".into(),
        recipients: vec!["bob@example.org".into()],
        content: b"Subject: s\r\n\r\nt\r\n".to_vec(),
    };
    // Used, so that the values are what the asserts say.
    assert!(matches!(Message::Composed(composed), Message::Composed(c) if c.subject == "s"));
    assert_eq!(options.dsn.map(|d| d.ret), Some(Some(DsnReturn::Full)));
    assert_eq!(timeouts.total_ms, 9);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(prepared.recipients.len(), 1);
    assert!(!error.transient);
    assert!(!format!("{credentials:?}").contains("pw"));
}

#[test]
fn enums_have_exactly_these_variants() {
    let tls = |mode: TlsMode| match mode {
        TlsMode::Implicit | TlsMode::Starttls | TlsMode::InsecurePlaintext => mode,
    };
    let phase = |phase: Phase| match phase {
        Phase::Connect
        | Phase::Greeting
        | Phase::Tls
        | Phase::Ehlo
        | Phase::Auth
        | Phase::Mail
        | Phase::Rcpt
        | Phase::Data
        | Phase::Quit
        | Phase::Sign => phase,
    };
    let kind = |kind: ErrorKind| match kind {
        ErrorKind::InvalidInput
        | ErrorKind::Network
        | ErrorKind::Timeout
        | ErrorKind::Tls
        | ErrorKind::Auth
        | ErrorKind::Rejected
        | ErrorKind::Protocol
        | ErrorKind::Closed => kind,
    };
    let ret = |ret: DsnReturn| match ret {
        DsnReturn::Full | DsnReturn::Headers => ret,
    };
    let message = |message: &Message| match message {
        Message::Raw(_) | Message::Composed(_) => (),
    };
    let mechanism = |mechanism: AuthMechanism| match mechanism {
        AuthMechanism::ScramSha256
        | AuthMechanism::Plain
        | AuthMechanism::Login
        | AuthMechanism::CramMd5
        | AuthMechanism::OAuthBearer
        | AuthMechanism::XOAuth2 => mechanism,
    };
    let secret = |secret: &Secret| match secret {
        Secret::Password(_) | Secret::BearerToken(_) => (),
    };
    assert_eq!(tls(TlsMode::Starttls), TlsMode::Starttls);
    assert_eq!(phase(Phase::Data), Phase::Data);
    assert_eq!(kind(ErrorKind::Closed), ErrorKind::Closed);
    assert_eq!(ret(DsnReturn::Headers), DsnReturn::Headers);
    message(&Message::Raw(Vec::new()));
    assert_eq!(mechanism(AuthMechanism::Plain), AuthMechanism::Plain);
    secret(&Secret::BearerToken("t".into()));
    assert_eq!(
        DsnNotify::SUCCESS | DsnNotify::FAILURE | DsnNotify::DELAY,
        DsnNotify::all()
    );
}

#[test]
fn the_crate_and_the_wit_package_have_one_version() {
    let wit = include_str!("../wit/mail.wit");
    let declared = wit
        .lines()
        .find_map(|line| line.trim().strip_prefix("package sendbox:mail@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/mail.wit declares `package sendbox:mail@VERSION;`");
    assert_eq!(declared, env!("CARGO_PKG_VERSION"));
}
