//! sendbox: send mail through an SMTP client that runs as a confined WebAssembly component.
//!
//! The SMTP dialogue and TLS run inside the component (`guest/`); this crate loads it with
//! wasmtime and lets it reach exactly one server:
//!
//! - [`component`]: the embedded component, compiled once into a [`Sandbox`];
//! - [`policy`]: the sandbox policy (network grant, memory cap, run-time bound);
//! - [`mailer`]: the API to embed: [`Mailer`] for one server, [`Session`] for several messages;
//! - [`batch`]: many messages over concurrent sessions;
//! - [`loopback`] (feature `loopback`, on by default with `cli`): an in-process SMTP server
//!   on loopback for the demo and the tests.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sendbox::{ComposedMessage, Credentials, Envelope, Mailbox, Mailer, Sandbox, Server, TlsMode};
//!
//! let sandbox = Sandbox::new()?;
//! let server = Server::new("smtp.example.org", 587, TlsMode::Starttls);
//! let credentials = Credentials::password("alice", std::env::var("SMTP_PASSWORD")?);
//! let mailer = Mailer::new(sandbox, server, Some(credentials)).await?;
//!
//! // A message the component builds (MIME, Date, Message-ID), envelope from its fields.
//! let mut message = ComposedMessage::new(Mailbox::new("alice@example.org"));
//! message.to.push(Mailbox::new("bob@example.net"));
//! message.subject = "hello".into();
//! message.text = Some("Hi Bob".into());
//! let delivery = mailer.send(&Envelope::from_headers(), message).await?;
//! println!("queued: {}", delivery.final_reply.text);
//!
//! // Or a raw RFC 5322 message with the envelope given.
//! let envelope = Envelope::new("alice@example.org", vec!["bob@example.net".into()]);
//! mailer.send(&envelope, b"Subject: hello\r\n\r\nHi Bob\r\n".as_slice()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod component;
#[cfg(feature = "loopback")]
pub mod loopback;
pub mod mailer;
pub mod policy;

pub use component::{Sandbox, SandboxOptions};
pub use mailer::{
    Attachment, AuthMechanism, ComposedMessage, Credentials, Delivery, Dsn, DsnNotify, DsnReturn,
    Envelope, Error, Mailbox, Mailer, Message, Secret, SendError, SendOptions, Server, Session,
    TlsMode,
};
pub use policy::{Limits, NetworkGrant, Transcript, TranscriptBuffer};
