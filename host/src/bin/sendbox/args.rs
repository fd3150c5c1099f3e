//! The command line, as scripts may rely on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sendbox::TlsMode;

/// Send mail through a sandboxed SMTP client that can reach one server and nothing else.
#[derive(Parser, Debug)]
#[command(name = "sendbox", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send one message.
    Send(Box<SendArgs>),
    /// Send many messages over several concurrent sessions, with a progress bar and a summary.
    Batch(Box<BatchArgs>),
    /// Send a sample message to an SMTP server started on loopback, and show the dialogue
    /// and what the server received. Needs no account and no network.
    Demo,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsArg {
    /// TLS from the first byte (default port 465).
    Implicit,
    /// STARTTLS, required (default port 587).
    Starttls,
    /// No TLS, no AUTH (default port 25). Insecure.
    None,
}

impl From<TlsArg> for TlsMode {
    fn from(tls: TlsArg) -> Self {
        match tls {
            TlsArg::Implicit => TlsMode::Implicit,
            TlsArg::Starttls => TlsMode::Starttls,
            TlsArg::None => TlsMode::InsecurePlaintext,
        }
    }
}

/// Which server, how to secure the connection, and how to log in.
#[derive(Args, Debug)]
pub struct ConnectionArgs {
    /// The server, HOST or HOST:PORT ([IPv6]:PORT). The port defaults by TLS mode.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: String,
    /// How to secure the connection.
    #[arg(long, value_enum, default_value = "starttls")]
    pub tls: TlsArg,
    /// Trust anchors (PEM) to use instead of the public web PKI, for a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The name to give in EHLO.
    #[arg(long, value_name = "NAME")]
    pub ehlo: Option<String>,
    /// User name for AUTH. The password comes from --password-env, --password-file or a prompt.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        conflicts_with = "password_file",
        requires = "user"
    )]
    pub password_env: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// Print the SMTP dialogue to stderr (AUTH data redacted).
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The sender: envelope MAIL FROM and, unless --raw, the From header.
    #[arg(long, value_name = "ADDR")]
    pub from: String,
    /// A recipient (repeatable): envelope RCPT TO and, unless --raw, the To header.
    #[arg(long, value_name = "ADDR", required = true)]
    pub to: Vec<String>,
    /// The subject.
    #[arg(long, value_name = "TEXT", conflicts_with = "raw")]
    pub subject: Option<String>,
    /// The body text.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["body_file", "raw"])]
    pub body: Option<String>,
    /// Read the body text from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub body_file: Option<PathBuf>,
    /// Send this complete RFC 5322 message as it is (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub raw: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The envelope sender of every message.
    #[arg(long, value_name = "ADDR")]
    pub from: String,
    /// The envelope recipients of every message (repeatable).
    #[arg(long, value_name = "ADDR", required = true)]
    pub to: Vec<String>,
    /// Send this RFC 5322 message (see --count).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["dir", "mbox"],
        conflicts_with_all = ["dir", "mbox"]
    )]
    pub raw: Option<PathBuf>,
    /// How many copies of the --raw message to send (for load tests).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "raw")]
    pub count: usize,
    /// Send every file in this directory, each a complete RFC 5322 message.
    #[arg(long, value_name = "DIR", conflicts_with = "mbox")]
    pub dir: Option<PathBuf>,
    /// Send every message of this mbox file (RFC 4155; `>From ` quoting is undone).
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,
    /// How many sessions (connections) run at once.
    #[arg(long, value_name = "K", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Splits `HOST[:PORT]`, `[IPv6]` or `[IPv6]:PORT`.
pub fn parse_server(server: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("--server {server:?} is not HOST, HOST:PORT or [IPv6]:PORT");
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match server.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            Some(_) => return Err(format!("{}; write an IPv6 address in brackets", bad())),
            None => (server, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad))
        .transpose()?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        assert_eq!(
            parse_server("mx.example.org"),
            Ok(("mx.example.org".into(), None))
        );
        assert_eq!(
            parse_server("mx.example.org:2525"),
            Ok(("mx.example.org".into(), Some(2525)))
        );
        assert_eq!(parse_server("[::1]:465"), Ok(("::1".into(), Some(465))));
        assert_eq!(parse_server("[::1]"), Ok(("::1".into(), None)));
        for bad in [
            "",
            ":25",
            "host:0",
            "host:99999",
            "host:x",
            "::1",
            "[::1]x",
            "[::1",
        ] {
            assert!(parse_server(bad).is_err(), "{bad:?} accepted");
        }
    }
}
