//! Exit codes from sysexits.h, so that scripts and MTAs can tell a retry from a failure.

use sendbox::mailer::{ErrorKind, Phase};
use sendbox::{Delivery, Error};

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

/// The exit code for a failed send.
pub fn for_error(error: &Error) -> u8 {
    let smtp = match error {
        Error::Resolve { .. } => return NOHOST,
        Error::RunTime(_) => return TEMPFAIL,
        Error::Component(_) => return SOFTWARE,
        Error::Smtp(smtp) => smtp,
    };
    match smtp.kind {
        ErrorKind::InvalidInput => DATAERR,
        ErrorKind::Auth => NOPERM,
        ErrorKind::Protocol => PROTOCOL,
        ErrorKind::Closed => SOFTWARE,
        ErrorKind::Tls => UNAVAILABLE,
        _ if smtp.transient => TEMPFAIL,
        ErrorKind::Network | ErrorKind::Timeout => UNAVAILABLE,
        ErrorKind::Rejected if smtp.phase == Phase::Rcpt => NOUSER,
        ErrorKind::Rejected => UNAVAILABLE,
    }
}

/// The exit code for a delivery: some recipients refused is not full success.
pub fn for_delivery(delivery: &Delivery) -> u8 {
    if delivery.refused.is_empty() {
        OK
    } else {
        NOUSER
    }
}
