//! Exit codes from sysexits.h, so that scripts and MTAs can tell a retry from a failure.
//! Every failure's code is decided here, from its type.

use sendbox::Delivery;
use sendbox::mailer::{ErrorKind, Phase};

use crate::error::Error;
use crate::{connection, outbox, queue};

pub const OK: u8 = 0;
/// The command line was wrong.
pub const USAGE: u8 = 64;
/// The input data was wrong (an address, the message).
pub const DATAERR: u8 = 65;
/// An input file did not exist or was not readable.
pub const NOINPUT: u8 = 66;
/// A recipient was refused.
pub const NOUSER: u8 = 67;
/// The server's name could not be resolved.
pub const NOHOST: u8 = 68;
/// The server could not be used: no connection, TLS failure, permanent refusal.
pub const UNAVAILABLE: u8 = 69;
/// An internal error (the component failed).
pub const SOFTWARE: u8 = 70;
/// An output file could not be created.
pub const CANTCREAT: u8 = 73;
/// Reading the input failed.
pub const IOERR: u8 = 74;
/// A temporary failure: try again later.
pub const TEMPFAIL: u8 = 75;
/// The server broke the protocol.
pub const PROTOCOL: u8 = 76;
/// Authentication failed.
pub const NOPERM: u8 = 77;
/// The config file is wrong or names no usable account.
pub const CONFIG: u8 = 78;

/// The exit code for what stopped a command.
pub fn code(error: &Error) -> u8 {
    match error {
        Error::Usage(_) => USAGE,
        Error::Config(_) => CONFIG,
        Error::Connection(e) => for_connection(e),
        Error::Outbox(e) => for_outbox(e),
        Error::Queue(e) => for_queue(e),
        Error::Send(e) => for_send(e),
        Error::Data(_) => DATAERR,
        Error::NoInput(_) => NOINPUT,
        Error::Unusable(_) => CONFIG,
        Error::CannotCreate(_) => CANTCREAT,
        Error::Io(_) => IOERR,
        Error::NoHost(_) => NOHOST,
        Error::Unavailable(_) => UNAVAILABLE,
        Error::Internal(_) => SOFTWARE,
    }
}

fn for_connection(error: &connection::Error) -> u8 {
    use connection::Error as E;
    match error {
        E::NoServer | E::Options(_) | E::Prompt(_) => USAGE,
        E::Unreadable { .. } => NOINPUT,
        E::NotCa { .. } | E::Account(_) => CONFIG,
        E::Component(_) => SOFTWARE,
        E::ResolveTimeout { .. } => TEMPFAIL,
        E::Send(e) => for_send(e),
    }
}

fn for_outbox(error: &outbox::Error) -> u8 {
    match error {
        outbox::Error::CannotCreate(_) => CANTCREAT,
        outbox::Error::CannotWrite(_) | outbox::Error::Io(_) => IOERR,
        outbox::Error::TooLarge(_) => DATAERR,
    }
}

fn for_queue(error: &queue::Error) -> u8 {
    match error {
        queue::Error::BadId(_) => USAGE,
        queue::Error::NoSuchMessage(_) => NOINPUT,
        queue::Error::Unreadable { .. } => IOERR,
        queue::Error::CannotRemove { .. } => TEMPFAIL,
        queue::Error::NotDelivered { failure, .. } => for_failure(failure),
    }
}

/// The code of a queued message's failed attempt: the send's, or what kept it from one.
pub fn for_failure(failure: &queue::Failure) -> u8 {
    match failure {
        queue::Failure::Send(e) => for_send(e),
        queue::Failure::Connection(e) => for_connection(e),
        queue::Failure::Unsendable(queue::Unsendable::Envelope(_)) => DATAERR,
        queue::Failure::Unsendable(queue::Unsendable::Unqualified(_))
        | queue::Failure::Unsendable(queue::Unsendable::Dkim(_)) => CONFIG,
        queue::Failure::NotTried(_) | queue::Failure::GaveUp(_) => TEMPFAIL,
    }
}

/// The exit code of `queue run` that delivered what it could: 0, or 65 when it found a
/// damaged file, else 74 when it found one it cannot read.
pub fn for_run(trouble: queue::Trouble) -> u8 {
    match trouble {
        queue::Trouble::None => OK,
        queue::Trouble::Unreadable => IOERR,
        queue::Trouble::Damaged => DATAERR,
    }
}

/// The exit code for a failed send. Whatever failed, a temporary failure (a 4xx reply, a
/// timeout, a lost or refused connection) is 75, so that a retry is tried.
pub fn for_send(error: &sendbox::Error) -> u8 {
    use sendbox::Error;
    let smtp = match error {
        Error::Resolve { .. } => return NOHOST,
        Error::RunTime(_) => return TEMPFAIL,
        Error::Component(_) => return SOFTWARE,
        Error::Smtp(smtp) => smtp,
    };
    match smtp.kind {
        // A DKIM key or setting that cannot sign: the configuration's, not the message's.
        ErrorKind::InvalidInput if smtp.phase == Phase::Sign => CONFIG,
        ErrorKind::InvalidInput => DATAERR,
        ErrorKind::Closed => SOFTWARE,
        _ if smtp.transient => TEMPFAIL,
        ErrorKind::Auth => NOPERM,
        ErrorKind::Protocol => PROTOCOL,
        ErrorKind::Tls => UNAVAILABLE,
        ErrorKind::Network | ErrorKind::Timeout => UNAVAILABLE,
        ErrorKind::Rejected if smtp.phase == Phase::Rcpt => NOUSER,
        ErrorKind::Rejected => UNAVAILABLE,
    }
}

/// The exit code for a delivery that reached at least one recipient: 0 when none was
/// refused; 75 when a refusal was temporary (4xx), since those recipients may still get
/// it by a retry; 67 when every refusal was permanent (5xx).
pub fn for_delivery(delivery: &Delivery) -> u8 {
    if delivery.refused.is_empty() {
        OK
    } else if delivery.refused.iter().any(|r| r.reply.is_transient()) {
        TEMPFAIL
    } else {
        NOUSER
    }
}

/// The exit code for several outcomes (a batch): 0 when all are, 75 when any is 75 (a
/// retry can help), else the lowest of the others, so that it does not depend on the
/// order in which concurrent sessions finish.
pub fn combine(codes: impl IntoIterator<Item = u8>) -> u8 {
    let failed: Vec<u8> = codes.into_iter().filter(|&c| c != OK).collect();
    if failed.contains(&TEMPFAIL) {
        TEMPFAIL
    } else {
        failed.into_iter().min().unwrap_or(OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_codes() {
        assert_eq!(combine([]), OK);
        assert_eq!(combine([OK, OK]), OK);
        assert_eq!(combine([OK, NOUSER, NOPERM]), NOUSER);
        assert_eq!(combine([NOPERM, TEMPFAIL, NOUSER]), TEMPFAIL);
    }
}
