//! The handler's settings, from its environment.

use std::env;
use std::net::IpAddr;

use crate::mail;

/// Where and as whom notifications are sent.
pub struct Config {
    pub server: mail::Server,
    pub credentials: Option<mail::Credentials>,
    pub from: String,
    pub from_name: Option<String>,
}

impl Config {
    /// Reads:
    /// - `NOTIFY_SERVER`: `HOST:PORT` of the SMTP server (required);
    /// - `NOTIFY_ADDRESSES`: its IP addresses, comma-separated, as granted (`sendbox grant`
    ///   prints them); may be left out when HOST is an IP address;
    /// - `NOTIFY_TLS`: `starttls` (default), `implicit` or `insecure-plaintext`;
    /// - `NOTIFY_CA_PEM`: trust anchors in PEM instead of the web PKI roots (optional);
    /// - `NOTIFY_FROM`: the sender's address (required), `NOTIFY_FROM_NAME` (optional);
    /// - `NOTIFY_USER` and `NOTIFY_PASSWORD`: SMTP AUTH (optional; pass the password with
    ///   `--env NOTIFY_PASSWORD`, without a value, so that it is not on a command line).
    pub fn from_env() -> Result<Config, String> {
        let required = |name: &str| {
            env::var(name).map_err(|_| format!("the handler is not configured: {name} is not set"))
        };
        let server = required("NOTIFY_SERVER")?;
        let (host, port) = server
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("NOTIFY_SERVER {server:?} is not HOST:PORT"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addresses = match env::var("NOTIFY_ADDRESSES") {
            Ok(list) => list.split(',').map(|a| a.trim().to_owned()).collect(),
            Err(_) if host.parse::<IpAddr>().is_ok() => vec![host.clone()],
            Err(_) => {
                return Err(format!(
                    "NOTIFY_ADDRESSES is not set, and {host:?} is not an IP address"
                ));
            }
        };
        let tls = match env::var("NOTIFY_TLS").as_deref() {
            Err(_) | Ok("starttls") => mail::TlsMode::Starttls,
            Ok("implicit") => mail::TlsMode::Implicit,
            Ok("insecure-plaintext") => mail::TlsMode::InsecurePlaintext,
            Ok(other) => {
                return Err(format!(
                    "NOTIFY_TLS {other:?} is not starttls, implicit or insecure-plaintext"
                ));
            }
        };
        let credentials = match (env::var("NOTIFY_USER"), env::var("NOTIFY_PASSWORD")) {
            (Ok(username), Ok(password)) => Some(mail::Credentials {
                username,
                secret: mail::Secret::Password(password),
                mechanism: None,
            }),
            (Err(_), Err(_)) => None,
            _ => return Err("NOTIFY_USER and NOTIFY_PASSWORD go together".to_owned()),
        };
        Ok(Config {
            server: mail::Server {
                host,
                port,
                addresses,
                tls,
                ca_pem: env::var("NOTIFY_CA_PEM").ok(),
                ehlo_name: None,
                timeouts: None,
                transcript: false,
            },
            credentials,
            from: required("NOTIFY_FROM")?,
            from_name: env::var("NOTIFY_FROM_NAME").ok(),
        })
    }
}
