//! The sendbox component: exports `sendbox:mail/mail-sender` (see `wit/mail.wit`).
//!
//! This file only converts between the WIT types and the dialogue's own; the dialogue is
//! in `sendbox-proto`, the socket code in [`net`], TLS in [`transport`], and the loop
//! that drives the dialogue over them in [`session`].

mod dkim;
mod net;
mod session;
mod transport;

use std::cell::RefCell;

use sendbox_proto as proto;

wit_bindgen::generate!({
    path: "../wit",
    world: "sender",
});

use exports::sendbox::mail::mail_sender as wit;

struct Component;

export!(Component);

impl wit::Guest for Component {
    type Session = SessionResource;

    fn send(
        server: wit::Server,
        credentials: Option<wit::Credentials>,
        envelope: wit::Envelope,
        message: wit::Message,
        options: wit::SendOptions,
    ) -> Result<wit::Delivery, wit::SendError> {
        // Refuse bad input before connecting; the dialogue checks it again.
        let (prepared, options) = prepared(envelope, message, options)?;
        // One call: its time limit covers connecting and sending together.
        let call_start = session::now();
        let mut session =
            session::Session::open(server.into(), credentials.map(Into::into), call_start)
                .map_err(to_wit_error)?;
        let result = session.send(call_start, &prepared, options);
        // QUIT whether or not the message went (RFC 5321 section 4.1.1.10); a failed QUIT
        // cannot change the result.
        let _ = session.close();
        result.map(to_wit_delivery).map_err(to_wit_error)
    }

    fn prepare(
        envelope: wit::Envelope,
        message: wit::Message,
        mut options: wit::SendOptions,
    ) -> Result<wit::PreparedMessage, wit::SendError> {
        // Checked, not used: a message kept to send later is signed when it is sent, so
        // that each attempt carries a fresh signature.
        if let Some(signing) = options.dkim.take() {
            dkim::Signer::new(signing).map_err(to_wit_error)?;
        }
        let prepared = session::prepare(envelope.into(), message.into(), &options.into(), None)
            .map_err(to_wit_error)?;
        let (envelope, content) = prepared.into_parts();
        Ok(wit::PreparedMessage {
            sender: envelope.sender,
            recipients: envelope.recipients,
            content,
        })
    }
}

/// The message built and checked, with its options, before anything is sent.
fn prepared(
    envelope: wit::Envelope,
    message: wit::Message,
    mut options: wit::SendOptions,
) -> Result<(session::Prepared, proto::SendOptions), wit::SendError> {
    let signer = options
        .dkim
        .take()
        .map(dkim::Signer::new)
        .transpose()
        .map_err(to_wit_error)?;
    let options = options.into();
    let prepared = session::prepare(envelope.into(), message.into(), &options, signer.as_ref())
        .map_err(to_wit_error)?;
    Ok((prepared, options))
}

/// The `session` resource: one connection, used from one caller at a time.
pub struct SessionResource(RefCell<session::Session>);

impl wit::GuestSession for SessionResource {
    fn open(
        server: wit::Server,
        credentials: Option<wit::Credentials>,
    ) -> Result<wit::Session, wit::SendError> {
        let session =
            session::Session::open(server.into(), credentials.map(Into::into), session::now())
                .map_err(to_wit_error)?;
        Ok(wit::Session::new(SessionResource(RefCell::new(session))))
    }

    fn send(
        &self,
        envelope: wit::Envelope,
        message: wit::Message,
        options: wit::SendOptions,
    ) -> Result<wit::Delivery, wit::SendError> {
        let (prepared, options) = prepared(envelope, message, options)?;
        self.0
            .borrow_mut()
            .send(session::now(), &prepared, options)
            .map(to_wit_delivery)
            .map_err(to_wit_error)
    }

    fn is_open(&self) -> bool {
        self.0.borrow().is_open()
    }

    fn close(&self) -> Result<(), wit::SendError> {
        self.0.borrow_mut().close().map_err(to_wit_error)
    }
}

impl From<wit::Server> for session::ServerSettings {
    fn from(server: wit::Server) -> Self {
        let timeouts = server.timeouts.map_or_else(proto::Timeouts::default, |t| {
            proto::Timeouts {
                connect_ms: t.connect_ms,
                greeting_ms: t.greeting_ms,
                command_ms: t.command_ms,
                mail_ms: t.mail_ms,
                rcpt_ms: t.rcpt_ms,
                data_start_ms: t.data_start_ms,
                data_block_ms: t.data_block_ms,
                data_end_ms: t.data_end_ms,
                total_ms: t.total_ms,
            }
            .or_defaults()
        });
        session::ServerSettings {
            host: server.host,
            port: server.port,
            addresses: server.addresses,
            tls: match server.tls {
                wit::TlsMode::Implicit => proto::TlsMode::Implicit,
                wit::TlsMode::Starttls => proto::TlsMode::StartTls,
                wit::TlsMode::InsecurePlaintext => proto::TlsMode::InsecurePlaintext,
            },
            ca_pem: server.ca_pem,
            ehlo_name: server.ehlo_name,
            timeouts,
            transcript: server.transcript,
        }
    }
}

impl From<wit::Credentials> for proto::Credentials {
    fn from(c: wit::Credentials) -> Self {
        use proto::Mechanism as M;
        use wit::AuthMechanism as W;
        proto::Credentials {
            username: c.username,
            secret: match c.secret {
                wit::Secret::Password(password) => proto::Secret::Password(password),
                wit::Secret::BearerToken(token) => proto::Secret::BearerToken(token),
            },
            mechanism: c.mechanism.map(|m| match m {
                W::ScramSha256 => M::ScramSha256,
                W::Plain => M::Plain,
                W::Login => M::Login,
                W::CramMd5 => M::CramMd5,
                W::Oauthbearer => M::OAuthBearer,
                W::Xoauth2 => M::XOAuth2,
            }),
        }
    }
}

impl From<wit::Envelope> for proto::EnvelopeRequest {
    fn from(e: wit::Envelope) -> Self {
        proto::EnvelopeRequest {
            sender: e.sender,
            recipients: e.recipients,
            recipients_from_headers: e.recipients_from_headers,
            qualify_domain: e.qualify_domain,
        }
    }
}

impl From<wit::Message> for proto::Message {
    fn from(message: wit::Message) -> Self {
        let mailbox = |m: wit::Mailbox| proto::Mailbox {
            name: m.name,
            address: m.address,
        };
        let mailboxes = |list: Vec<wit::Mailbox>| list.into_iter().map(mailbox).collect();
        match message {
            wit::Message::Raw(bytes) => proto::Message::Raw(bytes),
            wit::Message::Composed(c) => proto::Message::Composed(Box::new(proto::Composed {
                from: Some(mailbox(c.from)),
                to: mailboxes(c.to),
                cc: mailboxes(c.cc),
                bcc: mailboxes(c.bcc),
                reply_to: mailboxes(c.reply_to),
                subject: c.subject,
                text: c.text,
                html: c.html,
                attachments: c
                    .attachments
                    .into_iter()
                    .map(|a| proto::Attachment {
                        filename: a.filename,
                        media_type: a.media_type,
                        content: a.content,
                    })
                    .collect(),
                headers: c.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            })),
        }
    }
}

impl From<wit::SendOptions> for proto::SendOptions {
    fn from(options: wit::SendOptions) -> Self {
        proto::SendOptions {
            dsn: options.dsn.map(|dsn| proto::Dsn {
                notify: dsn.notify.map(|n| proto::Notify {
                    success: n.contains(wit::DsnNotify::SUCCESS),
                    failure: n.contains(wit::DsnNotify::FAILURE),
                    delay: n.contains(wit::DsnNotify::DELAY),
                }),
                ret: dsn.ret.map(|r| match r {
                    wit::DsnReturn::Full => proto::DsnReturn::Full,
                    wit::DsnReturn::Headers => proto::DsnReturn::Headers,
                }),
                envid: dsn.envid,
                original_recipients: dsn.original_recipients,
            }),
            require_tls: options.require_tls,
            raw_header: if options.keep_raw_header {
                proto::RawHeader::AsIs
            } else {
                proto::RawHeader::Complete
            },
        }
    }
}

fn to_wit_reply(reply: proto::Reply) -> wit::Reply {
    wit::Reply {
        code: reply.code,
        enhanced_status: reply.enhanced.map(|s| wit::EnhancedStatus {
            class: s.class,
            subject: s.subject,
            detail: s.detail,
        }),
        text: reply.text(),
    }
}

fn to_wit_delivery(delivery: proto::Delivery) -> wit::Delivery {
    wit::Delivery {
        accepted: delivery.accepted,
        refused: delivery
            .refused
            .into_iter()
            .map(|r| wit::RefusedRecipient {
                address: r.address,
                reply: to_wit_reply(r.reply),
            })
            .collect(),
        final_reply: to_wit_reply(delivery.reply),
        earlier_replies: delivery
            .earlier_replies
            .into_iter()
            .map(to_wit_reply)
            .collect(),
    }
}

fn to_wit_error(error: proto::Error) -> wit::SendError {
    use proto::{ErrorKind as K, Phase as P};
    wit::SendError {
        phase: match error.phase {
            P::Connect => wit::Phase::Connect,
            P::Greeting => wit::Phase::Greeting,
            P::Tls => wit::Phase::Tls,
            P::Ehlo => wit::Phase::Ehlo,
            P::Auth => wit::Phase::Auth,
            P::Mail => wit::Phase::Mail,
            P::Rcpt => wit::Phase::Rcpt,
            P::Data => wit::Phase::Data,
            P::Quit => wit::Phase::Quit,
            P::Sign => wit::Phase::Sign,
        },
        kind: match error.kind {
            K::InvalidInput => wit::ErrorKind::InvalidInput,
            K::Network => wit::ErrorKind::Network,
            K::Timeout => wit::ErrorKind::Timeout,
            K::Tls => wit::ErrorKind::Tls,
            K::Auth => wit::ErrorKind::Auth,
            K::Rejected => wit::ErrorKind::Rejected,
            K::Protocol => wit::ErrorKind::Protocol,
            K::Closed => wit::ErrorKind::Closed,
        },
        reply: error.reply.map(to_wit_reply),
        message: error.message,
        transient: error.transient,
    }
}
