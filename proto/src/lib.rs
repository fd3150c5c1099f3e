//! The SMTP client dialogue of sendbox, free of I/O.
//!
//! Everything here is plain data in, plain data out: the component drives it over WASI
//! sockets and rustls, and the tests drive it with scripted server bytes.
//!
//! - [`reply`]: the strict, bounded reply parser (RFC 5321 section 4.2, RFC 2034).
//! - [`client`]: the dialogue state machine (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT).
//! - [`data`]: CRLF normalisation and dot-stuffing of the message (or BDAT framing).
//! - [`params`]: per-message options and the MAIL/RCPT parameters (SIZE, BODY, DSN...).
//! - [`message`]: raw messages and composed ones (mail-builder), and the envelope from
//!   their header.
//! - `server` (feature `server`): the relay's side of SMTP for `sendbox serve`, with the
//!   framing that closes SMTP smuggling and the limits on clients that have not logged in.
//! - [`sasl`]: SASL mechanisms for AUTH: SCRAM-SHA-256, PLAIN, LOGIN, CRAM-MD5, OAUTHBEARER, XOAUTH2.
//! - [`connect`]: the order of the addresses to try and each attempt's share of the time
//!   (RFC 8305).
//! - [`time`]: time as an input: the clock's instants and the limits per stage and call.
//! - [`address`]: address lists as people type them (mail-parser).
//! - `tls` (feature `tls`): the component's rustls settings, shared with the benchmark.
//! - [`command`]: checks on addresses and names before they reach a command line.
//! - [`dkim`]: DKIM signatures (RFC 6376, RFC 8463) up to the private-key operation,
//!   which the caller does.
//! - `dkim_key` (feature `dkim-key`): the private key that does it (ring), read from PEM or
//!   DER, and its public record.
//! - [`error`]: errors with phase, server reply and whether a retry can help.

#![warn(missing_docs)]

pub mod address;
pub mod client;
pub mod command;
pub mod connect;
pub mod data;
pub mod dkim;
#[cfg(any(test, feature = "dkim-key"))]
pub mod dkim_key;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod message;
pub mod params;
pub mod reply;
pub mod sasl;
#[cfg(any(test, feature = "server"))]
pub mod server;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;

pub use address::parse_address_list;
pub use client::{
    Client, ClientConfig, Delivery, Extension, Handshake, Ready, RefusedRecipient, Step, Timer,
    TlsMode, Wait,
};
pub use error::{Error, ErrorKind, Phase};
pub use message::{
    Attachment, Composed, Envelope, EnvelopeRequest, Mailbox, Message, RawHeader, Stamp,
};
pub use params::{Dsn, DsnReturn, Notify, SendOptions, check_envid};
pub use reply::{EnhancedStatus, Reply};
pub use sasl::{Credentials, Mechanism, Secret};
pub use time::{Instant, Timeouts};
