//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::{Error, Phase};

/// A user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Refuses values that cannot be encoded: PLAIN separates fields with NUL.
    pub fn check(&self) -> Result<(), Error> {
        if self.username.is_empty() {
            return Err(Error::invalid_input(Phase::Auth, "the user name is empty"));
        }
        if self.username.contains('\0') || self.password.contains('\0') {
            return Err(Error::invalid_input(
                Phase::Auth,
                "the user name or password contains a NUL character",
            ));
        }
        Ok(())
    }
}

/// Passwords at least this long are masked wherever a server echoes them.
pub const MIN_REDACTED_LEN: usize = 4;

/// A SASL mechanism we can use, strongest preferred first when several are offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// One round trip, credentials in the initial response.
    Plain,
    /// Two challenges; same strength as PLAIN, offered by older servers.
    Login,
}

impl Mechanism {
    pub const PREFERENCE: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// Picks the first mechanism in our preference order that the server offers.
    pub fn choose(offered: &[String]) -> Option<Mechanism> {
        Self::PREFERENCE
            .into_iter()
            .find(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())))
    }
}

/// The PLAIN initial response: base64 of `\0user\0password`.
pub fn plain_response(credentials: &Credentials) -> String {
    let mut raw = Vec::with_capacity(credentials.username.len() + credentials.password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(credentials.username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(credentials.password.as_bytes());
    BASE64.encode(raw)
}

/// A LOGIN response: base64 of one field.
pub fn login_response(field: &str) -> String {
    BASE64.encode(field.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            username: "tim".into(),
            password: "tanstaaftanstaaf".into(),
        }
    }

    #[test]
    fn plain_matches_rfc_4616_example() {
        assert_eq!(plain_response(&creds()), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", creds());
        assert!(shown.contains("tim"));
        assert!(!shown.contains("tanstaaf"), "{shown}");
    }

    #[test]
    fn choice_follows_our_preference_not_the_servers_order() {
        let offered = [
            "LOGIN".to_string(),
            "plain".to_string(),
            "CRAM-MD5".to_string(),
        ];
        assert_eq!(Mechanism::choose(&offered), Some(Mechanism::Plain));
        assert_eq!(Mechanism::choose(&["LOGIN".into()]), Some(Mechanism::Login));
        assert_eq!(Mechanism::choose(&["GSSAPI".into()]), None);
    }

    #[test]
    fn nul_in_credentials_is_refused() {
        let bad = Credentials {
            username: "a\0b".into(),
            password: "x".into(),
        };
        assert!(bad.check().is_err());
        assert!(creds().check().is_ok());
    }
}
