//! Checking what the caller gives us before it goes into a command line.
//!
//! Every value that ends up on the wire passes through here first, so that a CR, LF or
//! NUL in an address or the EHLO name can never start a second command (RFC 5321
//! section 4.5.3.1 gives the length limits).

use crate::error::{Error, Phase};

/// Longest local part of an address, in octets.
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets.
pub const MAX_DOMAIN: usize = 255;
/// Longest reverse- or forward-path including the angle brackets.
pub const MAX_PATH: usize = 256;
/// Longest command line including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

/// Checks a mailbox (`local@domain`) for MAIL FROM or RCPT TO.
/// Returns whether it needs SMTPUTF8 (non-ASCII characters).
pub fn check_mailbox(phase: Phase, address: &str) -> Result<bool, Error> {
    let invalid = |why: &str| Error::invalid_input(phase, format!("address {address:?} {why}"));
    if let Some(c) = address
        .chars()
        .find(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(&format!("contains the character {c:?}")));
    }
    if address.contains(['<', '>']) {
        return Err(invalid("must be given without angle brackets"));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(invalid("has no @domain"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(invalid("has an empty local part or domain"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(invalid(&format!(
            "has a local part longer than {MAX_LOCAL_PART} octets"
        )));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(invalid(&format!(
            "has a domain longer than {MAX_DOMAIN} octets"
        )));
    }
    if address.len() + 2 > MAX_PATH {
        return Err(invalid(&format!("is longer than {MAX_PATH} octets")));
    }
    Ok(!address.is_ascii())
}

/// Checks the name given in EHLO: a domain name or an address literal such as `[192.0.2.1]`.
pub fn check_ehlo_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']');
    if name.is_empty() || name.len() > MAX_DOMAIN || !name.chars().all(ok_char) {
        return Err(Error::invalid_input(
            Phase::Ehlo,
            format!("EHLO name {name:?} is not a domain name or address literal"),
        ));
    }
    Ok(())
}
