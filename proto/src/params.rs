//! Per-message options and the ESMTP parameters they put on MAIL FROM and RCPT TO:
//! SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET, ENVID, NOTIFY and ORCPT
//! (DSN, RFC 3461) and REQUIRETLS (RFC 8689).

use crate::message::RawHeader;
use std::fmt::Write as _;

use crate::error::{Error, Phase};

/// When a delivery status notification is wanted. All false means NEVER.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// Notify on delivery.
    pub success: bool,
    /// Notify on failure.
    pub failure: bool,
    /// Notify on delay.
    pub delay: bool,
}

/// How much of the message a failure notification returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnReturn {
    /// The whole message.
    Full,
    /// Its header only.
    Headers,
}

/// Delivery status notification requests (RFC 3461).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dsn {
    /// NOTIFY for every recipient; `None` leaves it to the server.
    pub notify: Option<Notify>,
    /// RET: what a failure notification returns.
    pub ret: Option<DsnReturn>,
    /// ENVID: an identifier that notifications quote back.
    pub envid: Option<String>,
    /// Send ORCPT with each recipient's address.
    pub original_recipients: bool,
}

/// Options for one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Delivery status notifications (RFC 3461) to ask for.
    pub dsn: Option<Dsn>,
    /// REQUIRETLS: the message may only travel over TLS.
    pub require_tls: bool,
    /// Whether a raw message's missing Date, Message-ID and From are added.
    pub raw_header: RawHeader,
}

/// RFC 3461 section 4.4: ENVID is at most 100 characters of xtext-encoded text.
const MAX_ENVID: usize = 100;

/// Why `envid` cannot be a DSN envelope id, if it cannot: it must be printable ASCII, and
/// at most [`MAX_ENVID`] characters once xtext-encoded (RFC 3461 section 4.4).
pub fn check_envid(envid: &str) -> Result<(), String> {
    if envid.is_empty() || !envid.bytes().all(|b| (32..=126).contains(&b)) {
        return Err("the DSN envelope id must be printable ASCII".to_owned());
    }
    if xtext(envid).len() > MAX_ENVID {
        return Err(format!(
            "the DSN envelope id is longer than {MAX_ENVID} characters encoded"
        ));
    }
    Ok(())
}

impl SendOptions {
    /// Refuses values that cannot go on a command line.
    pub fn check(&self) -> Result<(), Error> {
        match self.dsn.as_ref().and_then(|d| d.envid.as_deref()) {
            Some(envid) => check_envid(envid).map_err(|why| Error::invalid_input(Phase::Mail, why)),
            None => Ok(()),
        }
    }
}

/// What the MAIL FROM line declares about the message.
#[derive(Clone, Copy, Debug, Default)]
pub struct MailDeclarations {
    /// SIZE=, when the server offers SIZE.
    pub size: Option<u64>,
    /// BODY=8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8: an address needs UTF-8.
    pub smtputf8: bool,
}

/// `MAIL FROM:<sender>` with its parameters.
pub fn mail_command(sender: &str, declared: MailDeclarations, options: &SendOptions) -> String {
    let mut line = format!("MAIL FROM:<{sender}>");
    if let Some(size) = declared.size {
        let _ = write!(line, " SIZE={size}");
    }
    if declared.eight_bit {
        line.push_str(" BODY=8BITMIME");
    }
    if declared.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if let Some(dsn) = &options.dsn {
        match dsn.ret {
            Some(DsnReturn::Full) => line.push_str(" RET=FULL"),
            Some(DsnReturn::Headers) => line.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &dsn.envid {
            let _ = write!(line, " ENVID={}", xtext(envid));
        }
    }
    if options.require_tls {
        line.push_str(" REQUIRETLS");
    }
    line
}

/// `RCPT TO:<recipient>` with its DSN parameters.
pub fn rcpt_command(recipient: &str, options: &SendOptions) -> String {
    let mut line = format!("RCPT TO:<{recipient}>");
    let Some(dsn) = &options.dsn else {
        return line;
    };
    if let Some(notify) = dsn.notify {
        let events: Vec<&str> = [
            (notify.success, "SUCCESS"),
            (notify.failure, "FAILURE"),
            (notify.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(wanted, name)| wanted.then_some(name))
        .collect();
        let value = if events.is_empty() {
            "NEVER".to_owned()
        } else {
            events.join(",")
        };
        let _ = write!(line, " NOTIFY={value}");
    }
    // RFC 3461 takes `rfc822` addresses only; a UTF-8 one would need RFC 6533's type.
    if dsn.original_recipients && recipient.is_ascii() {
        let _ = write!(line, " ORCPT=rfc822;{}", xtext(recipient));
    }
    line
}

/// RFC 3461 section 4: `+`, `=` and anything outside printable ASCII become `+HH`.
pub fn xtext(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (33..=126).contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "+{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsn_options() -> SendOptions {
        SendOptions {
            dsn: Some(Dsn {
                notify: Some(Notify {
                    success: true,
                    failure: true,
                    delay: false,
                }),
                ret: Some(DsnReturn::Headers),
                envid: Some("QQ 314+1=2".into()),
                original_recipients: true,
            }),
            require_tls: true,
            raw_header: Default::default(),
        }
    }

    #[test]
    fn xtext_encodes_plus_equals_and_non_printables() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("bob@example.org"), "bob@example.org");
    }

    #[test]
    fn mail_carries_every_declaration_in_order() {
        let declared = MailDeclarations {
            size: Some(1234),
            eight_bit: true,
            smtputf8: false,
        };
        assert_eq!(
            mail_command("a@example.org", declared, &dsn_options()),
            "MAIL FROM:<a@example.org> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ+20314+2B1+3D2 REQUIRETLS"
        );
        assert_eq!(
            mail_command("", MailDeclarations::default(), &SendOptions::default()),
            "MAIL FROM:<>"
        );
    }

    #[test]
    fn rcpt_carries_notify_and_orcpt() {
        assert_eq!(
            rcpt_command("b+x@example.org", &dsn_options()),
            "RCPT TO:<b+x@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org"
        );
        let never = SendOptions {
            dsn: Some(Dsn {
                notify: Some(Notify::default()),
                ..Dsn::default()
            }),
            require_tls: false,
            raw_header: Default::default(),
        };
        assert_eq!(
            rcpt_command("b@example.org", &never),
            "RCPT TO:<b@example.org> NOTIFY=NEVER"
        );
        assert_eq!(
            rcpt_command("b@example.org", &SendOptions::default()),
            "RCPT TO:<b@example.org>"
        );
    }

    #[test]
    fn envid_must_be_printable_and_short() {
        let with_envid = |envid: &str| SendOptions {
            dsn: Some(Dsn {
                envid: Some(envid.into()),
                ..Dsn::default()
            }),
            require_tls: false,
            raw_header: Default::default(),
        };
        assert!(with_envid("ok-123").check().is_ok());
        assert!(with_envid("a\r\nRSET").check().is_err());
        assert!(with_envid("é").check().is_err());
        assert!(with_envid(&"+".repeat(40)).check().is_err());
    }
}
