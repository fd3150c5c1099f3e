//! The sendbox component: exports `sendbox:mail/mail-sender` (see `wit/mail.wit`).
//!
//! This file only converts between the WIT types and the dialogue's own; the dialogue is
//! in `sendbox-proto`, the socket code in [`net`], TLS in [`transport`], and the loop
//! that drives the dialogue over them in [`session`].

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
        message: Vec<u8>,
    ) -> Result<wit::Delivery, wit::SendError> {
        // Refuse bad input before connecting; the dialogue checks it again per message.
        let envelope = proto::Envelope::from(envelope);
        envelope.check().map_err(to_wit_error)?;
        let mut session = session::Session::open(server.into(), credentials.map(Into::into))
            .map_err(to_wit_error)?;
        let delivery = session.send(envelope, &message).map_err(to_wit_error)?;
        // The message is delivered; a failed QUIT cannot change that.
        let _ = session.close();
        Ok(to_wit_delivery(delivery))
    }
}

/// The `session` resource: one connection, used from one caller at a time.
pub struct SessionResource(RefCell<session::Session>);

impl wit::GuestSession for SessionResource {
    fn open(
        server: wit::Server,
        credentials: Option<wit::Credentials>,
    ) -> Result<wit::Session, wit::SendError> {
        let session = session::Session::open(server.into(), credentials.map(Into::into))
            .map_err(to_wit_error)?;
        Ok(wit::Session::new(SessionResource(RefCell::new(session))))
    }

    fn send(
        &self,
        envelope: wit::Envelope,
        message: Vec<u8>,
    ) -> Result<wit::Delivery, wit::SendError> {
        let mut session = self.0.borrow_mut();
        session
            .send(envelope.into(), &message)
            .map(to_wit_delivery)
            .map_err(to_wit_error)
    }

    fn close(&self) -> Result<(), wit::SendError> {
        self.0.borrow_mut().close().map_err(to_wit_error)
    }
}

impl From<wit::Server> for session::ServerSettings {
    fn from(server: wit::Server) -> Self {
        let defaults = session::Timeouts::default();
        let pick = |given: u32, default: u32| if given == 0 { default } else { given };
        let timeouts = server.timeouts.map_or(defaults, |t| session::Timeouts {
            connect_ms: pick(t.connect_ms, defaults.connect_ms),
            command_ms: pick(t.command_ms, defaults.command_ms),
            data_end_ms: pick(t.data_end_ms, defaults.data_end_ms),
            total_ms: pick(t.total_ms, defaults.total_ms),
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
            ehlo_name: server.ehlo_name.unwrap_or_else(|| "localhost".to_owned()),
            timeouts,
            transcript: server.transcript,
        }
    }
}

impl From<wit::Credentials> for proto::Credentials {
    fn from(c: wit::Credentials) -> Self {
        proto::Credentials {
            username: c.username,
            password: c.password,
        }
    }
}

impl From<wit::Envelope> for proto::Envelope {
    fn from(e: wit::Envelope) -> Self {
        proto::Envelope {
            sender: e.sender,
            recipients: e.recipients,
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
