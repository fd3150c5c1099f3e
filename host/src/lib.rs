//! sendbox: send mail through an SMTP client that runs as a confined WebAssembly component.
//!
//! The SMTP dialogue and TLS run inside the component (`guest/`); this crate loads it with
//! wasmtime and lets it reach exactly one server:
//!
//! - [`component`]: the embedded component, compiled once into a [`Sandbox`];
//! - [`policy`]: the sandbox policy (network grant, memory cap, run-time bound);
//! - [`mailer`]: the API to embed: [`Mailer`] for one server, [`Session`] for several messages;
//! - [`batch`]: many messages over concurrent sessions;
//! - [`loopback`]: an in-process SMTP server on loopback for the demo and the tests.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sendbox::{Credentials, Envelope, Mailer, Sandbox, Server, TlsMode};
//!
//! let sandbox = Sandbox::new()?;
//! let server = Server::new("smtp.example.org", 587, TlsMode::Starttls);
//! let credentials = Credentials { username: "alice".into(), password: std::env::var("SMTP_PASSWORD")? };
//! let mailer = Mailer::new(sandbox, server, Some(credentials)).await?;
//! let envelope = Envelope { sender: "alice@example.org".into(), recipients: vec!["bob@example.net".into()] };
//! let delivery = mailer.send(&envelope, b"Subject: hello\r\n\r\nHi Bob\r\n").await?;
//! println!("queued: {}", delivery.final_reply.text);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod component;
pub mod loopback;
pub mod mailer;
pub mod policy;

pub use component::{Sandbox, SandboxOptions};
pub use mailer::{
    Credentials, Delivery, Envelope, Error, Mailer, SendError, Server, Session, TlsMode,
};
pub use policy::{Limits, NetworkGrant, Transcript, TranscriptBuffer};
