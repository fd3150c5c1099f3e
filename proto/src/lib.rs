//! The SMTP client dialogue of sendbox, free of I/O.
//!
//! Everything here is plain data in, plain data out: the component drives it over WASI
//! sockets and rustls, and the tests drive it with scripted server bytes.
//!
//! - [`reply`]: the strict, bounded reply parser (RFC 5321 section 4.2, RFC 2034).
//! - [`client`]: the dialogue state machine (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT).
//! - [`data`]: CRLF normalisation and dot-stuffing of the message.
//! - [`auth`]: SASL PLAIN and LOGIN.
//! - [`command`]: checks on addresses and names before they reach a command line.
//! - [`error`]: errors with phase, server reply and whether a retry can help.

pub mod auth;
pub mod client;
pub mod command;
pub mod data;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod reply;

pub use auth::Credentials;
pub use client::{
    Client, ClientConfig, Delivery, Envelope, RefusedRecipient, Step, Timer, TlsMode, Wait,
};
pub use error::{Error, ErrorKind, Phase};
pub use reply::{EnhancedStatus, Reply};
