//! Why a command stopped. Each module says what went wrong in its own type; they meet
//! here, `exit::code` gives each its sysexits code (the one place that does), and `main`
//! prints the words.

use std::fmt;

use crate::{config, connection, outbox, queue};

/// What stopped a command, by meaning.
#[derive(Debug)]
pub enum Error {
    /// The command line asks for what cannot be, or lacks what must be given.
    Usage(String),
    /// The config file is wrong, or names no usable account.
    Config(config::Error),
    /// What the options and the account say about the server cannot be used.
    Connection(Box<connection::Error>),
    /// The outbox cannot be opened, read or written.
    Outbox(outbox::Error),
    /// A queue command or a queued message's delivery failed.
    Queue(Box<queue::Error>),
    /// A send failed; its kind decides the code.
    Send(Box<sendbox::Error>),
    /// Input that is not what it must be: an address, a message, a component to confine.
    Data(String),
    /// An input file that cannot be read.
    NoInput(String),
    /// A file that does not hold what it must (a certificate, a key).
    Unusable(String),
    /// A file that cannot be written.
    CannotCreate(String),
    /// Reading the message failed midway.
    Io(String),
    /// A server name that does not resolve.
    NoHost(String),
    /// A service that cannot be offered: an address that cannot be listened on.
    Unavailable(String),
    /// sendbox itself failed: the component cannot be loaded, a server cannot start.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Connection(e) => e.fmt(f),
            Error::Outbox(e) => e.fmt(f),
            Error::Queue(e) => e.fmt(f),
            Error::Send(e) => e.fmt(f),
            Error::Usage(m)
            | Error::Data(m)
            | Error::NoInput(m)
            | Error::Unusable(m)
            | Error::CannotCreate(m)
            | Error::Io(m)
            | Error::NoHost(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => f.write_str(m),
        }
    }
}

impl From<config::Error> for Error {
    fn from(e: config::Error) -> Self {
        Error::Config(e)
    }
}

impl From<connection::Error> for Error {
    fn from(e: connection::Error) -> Self {
        Error::Connection(Box::new(e))
    }
}

impl From<outbox::Error> for Error {
    fn from(e: outbox::Error) -> Self {
        Error::Outbox(e)
    }
}

impl From<queue::Error> for Error {
    fn from(e: queue::Error) -> Self {
        Error::Queue(Box::new(e))
    }
}

impl From<sendbox::Error> for Error {
    fn from(e: sendbox::Error) -> Self {
        Error::Send(Box::new(e))
    }
}

/// The component cannot be loaded: sendbox's own failure.
pub fn component(e: anyhow::Error) -> Error {
    Error::Internal(format!("cannot load the component: {e:#}"))
}
