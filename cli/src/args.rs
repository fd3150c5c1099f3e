//! The command line, as scripts may rely on it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use sendbox::{AuthMechanism, DsnNotify, DsnReturn, TlsMode};
use serde::Deserialize;

use crate::dsn;

/// Where `--config` looks when it is not given, in every subcommand's help.
const CONFIG_HELP: &str = "The config file [default: $SENDBOX_CONFIG, else \
    ~/.config/sendbox/config.toml if it exists, else /etc/sendbox/config.toml]";

/// Send mail through a sandboxed SMTP client that can reach one server and nothing else:
/// send, batch, sendmail, queue, serve, grant, generate and demo.
#[derive(Parser, Debug)]
#[command(name = "sendbox", version)]
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
    /// Send a message read from stdin, with the command line of sendmail(1), for cron,
    /// git send-email, mutt and mailx. The server comes from the config file's account.
    /// A link to sendbox named `sendmail` does the same.
    // `sendbox help sendmail` prints what `sendbox sendmail --help` does: its own parser's
    // usage, since clap does not parse sendmail's command line.
    #[command(disable_help_flag = true, override_help = crate::sendmail::USAGE)]
    Sendmail {
        /// sendmail's options and recipients, such as `-t -i` or `-f ADDR -- ADDR...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Send a sample message to an SMTP server started on loopback, and show the dialogue
    /// and what the server received. Needs no account and no network.
    Demo,
    /// Make a granted sender: one component, the sender behind a grant that lets it reach
    /// only this server (its addresses, resolved now, on this port), in any WASI host,
    /// even one that grants all of the network.
    Grant(GrantArgs),
    /// The outbox: messages that sendmail, `send --queue` and serve accepted and that are
    /// not delivered yet.
    Queue(QueueArgs),
    /// A local relay: an SMTP listener on loopback whose messages go into the outbox (250
    /// only once on disk) and on through the account, for programs that only speak SMTP.
    Serve(ServeArgs),
    /// Write the man pages or print a shell's completions, made from these very options.
    Generate(GenerateArgs),
    /// DKIM keys: make one, or print the DNS record of one.
    Dkim(DkimCommand),
}

#[derive(Args, Debug)]
pub struct DkimCommand {
    #[command(subcommand)]
    pub action: DkimAction,
}

#[derive(Subcommand, Debug)]
pub enum DkimAction {
    /// Make a DKIM private key (mode 600, refusing to overwrite a file) and print the DNS
    /// TXT record to publish at SELECTOR._domainkey.DOMAIN.
    Keygen {
        #[command(flatten)]
        name: DkimName,
        /// The key's algorithm: rsa (RSA, 2048 bits by default: what every verifier
        /// reads; made by `openssl genpkey`) or ed25519 (RFC 8463: small and 64 times
        /// cheaper to sign with, but not yet verified everywhere).
        #[arg(long, value_name = "ALG", default_value = "rsa", value_parser = ["rsa", "ed25519"])]
        algorithm: String,
        /// RSA key size: 2048 to 4096 (ring, which signs in the component, takes no
        /// larger key).
        #[arg(long, value_name = "BITS", default_value_t = 2048, value_parser = clap::value_parser!(u16).range(2048..=4096))]
        bits: u16,
        /// Where to write the key.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Print the DNS TXT record of an existing private key.
    Record {
        #[command(flatten)]
        name: DkimName,
        /// The private key, PEM or DER (PKCS#8 RSA or Ed25519, or PKCS#1 RSA), read as
        /// signing reads it.
        #[arg(value_name = "KEY")]
        key: PathBuf,
    },
}

/// Where a DKIM public key is published.
#[derive(Args, Debug)]
pub struct DkimName {
    /// The selector: the record's name is SELECTOR._domainkey.DOMAIN.
    #[arg(long, value_name = "SELECTOR")]
    pub selector: String,
    /// The signing domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: String,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generated,
}

#[derive(Subcommand, Debug)]
pub enum Generated {
    /// Write sendbox(1), a page per subcommand, sendbox-sendmail(8) and sendbox.toml(5)
    /// into DIR (made if missing), for `man -l` or MANPATH.
    Man {
        /// The folder to write the pages to.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL, such as
    /// `sendbox generate completions bash > /etc/bash_completion.d/sendbox`.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: a loopback address and port. Any other address needs --tls-cert,
    /// --tls-key and --require-auth.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2525")]
    pub listen: std::net::SocketAddr,
    /// The account to relay through (default: the config file's default account).
    #[arg(short, long, value_name = "NAME")]
    pub account: Option<String>,
    #[arg(long, value_name = "FILE", help = CONFIG_HELP)]
    pub config: Option<PathBuf>,
    /// Clients must log in (AUTH PLAIN or LOGIN) as this user, with the password in the
    /// environment variable --password-env names.
    #[arg(long, value_name = "USER", requires = "password_env", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub require_auth: Option<String>,
    /// The environment variable holding the password for --require-auth.
    #[arg(long, value_name = "VAR", requires = "require_auth")]
    pub password_env: Option<String>,
    /// Offer STARTTLS with this certificate chain (PEM, the server's certificate first);
    /// clients must then STARTTLS before they may log in or send.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or SEC1, not encrypted).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Clients served at once. When all are taken, a new client replaces the oldest one
    /// that has not logged in (or, without --require-auth, not begun a message); if
    /// there is none, it is told to come back later (421). A client address beyond
    /// loopback may hold at most half of them.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,
    /// The largest message accepted, in bytes; larger ones get 552.
    #[arg(long, value_name = "BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_size: usize,
    /// Seconds a client may take to send one line; a slower one is cut off.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub idle_timeout: u32,
    /// With --require-auth, seconds a client may take from connecting to logging in.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub login_timeout: u32,
}

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[arg(long, value_name = "FILE", help = CONFIG_HELP, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// The queued messages, when they are next tried and why they wait; then those given
    /// up on.
    List,
    /// Deliver what is due (for cron or a systemd timer), one session per account.
    Run,
    /// Deliver everything queued now, due or not.
    Flush,
    /// Print a queued or failed message: what is wrong with it, if anything, its
    /// attempts, its envelope line, then the message.
    Show {
        /// The message's id, as `sendbox queue list` shows it.
        id: String,
    },
    /// Take a message out of the outbox (queued or failed) without sending it, or with
    /// --failed every message given up on.
    Remove {
        /// The message's id, as `sendbox queue list` shows it.
        #[arg(required_unless_present = "failed")]
        id: Option<String>,
        /// Every message in failed/ (those `queue list` shows as FAILED).
        #[arg(long, conflicts_with = "id")]
        failed: bool,
    },
}

#[derive(Args, Debug)]
pub struct GrantArgs {
    /// The server, `HOST:PORT`; the name is resolved now and its addresses are granted.
    #[arg(long, value_name = "HOST:PORT", value_parser = ServerAddress::parse)]
    pub server: ServerAddress,
    /// Where to write the granted component.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The component to confine instead of the built-in sender: its `wasi:sockets` imports
    /// are served by the grant (the tests grant the nosy probe this way).
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// An application component that imports `sendbox:mail/mail-sender`: plug the granted
    /// sender into it and write the whole. The application itself must not import the
    /// network (`wasi:sockets`, `wasi:http/outgoing-handler`).
    #[arg(long, value_name = "APP.wasm")]
    pub into: Option<PathBuf>,
}

#[derive(ValueEnum, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsArg {
    /// TLS from the first byte (default port 465).
    Implicit,
    /// STARTTLS, required (default port 587).
    #[default]
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

/// A SASL mechanism for AUTH.
#[derive(ValueEnum, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthArg {
    /// SCRAM-SHA-256 (RFC 7677): the password never crosses the wire.
    #[value(name = "scram-sha256")]
    #[serde(rename = "scram-sha256", alias = "scram-sha-256")]
    ScramSha256,
    /// PLAIN (RFC 4616).
    #[value(name = "plain")]
    #[serde(rename = "plain")]
    Plain,
    /// LOGIN.
    #[value(name = "login")]
    #[serde(rename = "login")]
    Login,
    /// CRAM-MD5 (RFC 2195); weak, only for servers that need it.
    #[value(name = "cram-md5")]
    #[serde(rename = "cram-md5")]
    CramMd5,
    /// OAUTHBEARER (RFC 7628), with a bearer token.
    #[value(name = "oauthbearer")]
    #[serde(rename = "oauthbearer")]
    OAuthBearer,
    /// XOAUTH2, with a bearer token.
    #[value(name = "xoauth2")]
    #[serde(rename = "xoauth2")]
    XOAuth2,
}

impl AuthArg {
    /// Its name, as the options and the config file write it.
    pub fn name(self) -> &'static str {
        match self {
            AuthArg::ScramSha256 => "scram-sha256",
            AuthArg::Plain => "plain",
            AuthArg::Login => "login",
            AuthArg::CramMd5 => "cram-md5",
            AuthArg::OAuthBearer => "oauthbearer",
            AuthArg::XOAuth2 => "xoauth2",
        }
    }

    /// Why the secret (a token when `token`, else a password) cannot serve this mechanism,
    /// or `None` when it can. The rule is proto's; `source` names the secret, `named`
    /// how the mechanism was named, and `quote` how to write mechanisms in the advice.
    pub fn refuses(
        self,
        token: bool,
        source: &str,
        named: &str,
        quote: fn(&str) -> String,
    ) -> Option<String> {
        if AuthMechanism::from(self).takes_token() == token {
            return None;
        }
        let gives = if token {
            "an OAuth token"
        } else {
            "a password"
        };
        let fitting: Vec<String> = AuthArg::value_variants()
            .iter()
            .filter(|fit| AuthMechanism::from(**fit).takes_token() == token)
            .map(|fit| quote(fit.name()))
            .collect();
        let (last, others) = fitting
            .split_last()
            .expect("each secret fits some mechanism");
        Some(format!(
            "{source} gives {gives}, which {named} cannot use; use {} or {last}",
            others.join(", ")
        ))
    }
}

impl From<AuthArg> for AuthMechanism {
    fn from(auth: AuthArg) -> Self {
        match auth {
            AuthArg::ScramSha256 => AuthMechanism::ScramSha256,
            AuthArg::Plain => AuthMechanism::Plain,
            AuthArg::Login => AuthMechanism::Login,
            AuthArg::CramMd5 => AuthMechanism::CramMd5,
            AuthArg::OAuthBearer => AuthMechanism::OAuthBearer,
            AuthArg::XOAuth2 => AuthMechanism::XOAuth2,
        }
    }
}

/// Which server, how to secure the connection, and how to log in. Each option overrides
/// the account's setting in the config file.
#[derive(Args, Debug, Default)]
pub struct ConnectionArgs {
    /// The account to use from the config file (default: its `default` account).
    #[arg(long, short = 'a', value_name = "NAME")]
    pub account: Option<String>,
    #[arg(long, value_name = "FILE", help = CONFIG_HELP)]
    pub config: Option<PathBuf>,
    /// The server, HOST or HOST:PORT ([IPv6]:PORT). The port defaults by TLS mode.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = ServerAddress::parse)]
    pub server: Option<ServerAddress>,
    /// How to secure the connection [default: starttls].
    #[arg(long, value_enum)]
    pub tls: Option<TlsArg>,
    /// Trust anchors (PEM) to use instead of the public web PKI, for a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The name to give in EHLO.
    #[arg(long, value_name = "NAME")]
    pub ehlo: Option<String>,
    /// A time limit in seconds for the whole send: connecting, each stage of the dialogue
    /// and all of them together. Stages keep RFC 5321's limit when it is shorter
    /// [default: RFC 5321's per stage (5 minutes for most replies, 10 for the end of the
    /// message) and 15 minutes in all]. In `batch`, for each message and each connection.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub timeout: Option<u32>,
    /// User name for AUTH [default: the account's `user`]. The password comes from
    /// --password-env, --password-file, the account or a prompt; a token from --token-env
    /// or the account.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The SASL mechanism [default: the account's `auth`, else the strongest both sides
    /// allow].
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Read an OAuth 2.0 bearer token from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["password_env", "password_file"])]
    pub token_env: Option<String>,
    /// Print the SMTP dialogue to stderr (AUTH data redacted).
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("compose").multiple(true).conflicts_with("raw")))]
pub struct SendArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The sender, `ADDR` or `"Name <ADDR>"`: envelope MAIL FROM and, unless --raw, the
    /// From header [default: the account's `from`; with --raw and neither, the message's
    /// Sender or From].
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// A recipient (repeatable): RCPT TO and, unless --raw, the To header.
    #[arg(long, value_name = "ADDR")]
    pub to: Vec<String>,
    /// A Cc recipient (repeatable).
    #[arg(long, value_name = "ADDR", group = "compose")]
    pub cc: Vec<String>,
    /// A Bcc recipient (repeatable): in the envelope, never in the header.
    #[arg(long, value_name = "ADDR", group = "compose")]
    pub bcc: Vec<String>,
    /// The subject.
    #[arg(long, value_name = "TEXT", group = "compose")]
    pub subject: Option<String>,
    /// The body text.
    #[arg(
        long,
        value_name = "TEXT",
        conflicts_with = "body_file",
        group = "compose"
    )]
    pub body: Option<String>,
    /// Read the body text from a file (`-` for stdin).
    #[arg(long, value_name = "FILE", group = "compose")]
    pub body_file: Option<PathBuf>,
    /// An HTML body from a file; with a text body, the two form multipart/alternative.
    #[arg(long, value_name = "FILE", group = "compose")]
    pub html: Option<PathBuf>,
    /// Attach a file (repeatable); its media type is guessed from its name.
    #[arg(long, value_name = "FILE", group = "compose")]
    pub attach: Vec<PathBuf>,
    /// A Reply-To address, `ADDR` or `"Name <ADDR>"` (repeatable).
    #[arg(long, value_name = "ADDR", group = "compose")]
    pub reply_to: Vec<String>,
    /// An extra header field, `"Name: value"` (repeatable). `Reply-To: ADDR, ...` is the
    /// same as --reply-to; fields the builder writes itself (From, To, Date, ...) are refused.
    #[arg(long, value_name = "FIELD", group = "compose")]
    pub header: Vec<String>,
    /// Send this complete RFC 5322 message (`-` for stdin) instead of composing one. A
    /// missing Date, Message-ID or From is added unless --keep-header.
    #[arg(long, value_name = "FILE")]
    pub raw: Option<PathBuf>,
    /// With --raw: also send to the To, Cc and Bcc of the message, and remove its Bcc.
    // `requires` alone is not enough: clap drops a requirement when an argument that
    // conflicts with it (here a composing one) is given.
    #[arg(short = 't', long, requires = "raw", conflicts_with = "compose")]
    pub recipients_from_headers: bool,
    /// Keep the message in the outbox until it is delivered, as `sendbox sendmail` does:
    /// it is built now, tried at once, and retried by `sendbox queue run` after a
    /// temporary failure (exit 0 once delivered or safely queued). The connection is the
    /// account's, so the options that would change it are refused.
    #[arg(long, conflicts_with_all = [
        "server", "tls", "ca", "ehlo", "timeout", "user", "auth",
        "password_env", "password_file", "token_env",
    ])]
    pub queue: bool,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub dkim: DkimArgs,
}

/// DKIM signing, in the component, with the key of a file (instead of the account's
/// `dkim_*` settings).
#[derive(Args, Debug, Default, Clone)]
pub struct DkimArgs {
    /// Sign with DKIM using this private key (PEM or DER: PKCS#8 RSA or Ed25519, or
    /// PKCS#1 RSA; mode 600). `sendbox dkim keygen` makes one.
    #[arg(long, value_name = "FILE", requires_all = ["dkim_selector", "dkim_domain"])]
    pub dkim_key: Option<PathBuf>,
    /// The DKIM selector (s=): the public key is at SELECTOR._domainkey.DOMAIN.
    #[arg(long, value_name = "SELECTOR", requires = "dkim_key")]
    pub dkim_selector: Option<String>,
    /// The DKIM signing domain (d=).
    #[arg(long, value_name = "DOMAIN", requires = "dkim_key")]
    pub dkim_domain: Option<String>,
    /// The algorithm the key must be for: rsa-sha256 or ed25519-sha256 [default: the
    /// key's].
    #[arg(long, value_name = "ALG", requires = "dkim_key", value_parser = crate::dkim::algorithm)]
    pub dkim_algorithm: Option<sendbox::DkimAlgorithm>,
    /// Canonicalization, HEADER/BODY: relaxed/relaxed (the default), simple/simple, ...
    #[arg(long, value_name = "C", requires = "dkim_key", value_parser = crate::dkim::canonicalization)]
    pub dkim_canonicalization:
        Option<(sendbox::DkimCanonicalization, sendbox::DkimCanonicalization)>,
    /// A header field to sign (repeatable) instead of the default list; From is always
    /// signed.
    #[arg(long = "dkim-header", value_name = "NAME", requires = "dkim_key")]
    pub dkim_headers: Vec<String>,
    /// Days the signature stays valid (x=), 1 to 36500.
    #[arg(long, value_name = "DAYS", requires = "dkim_key", value_parser = clap::value_parser!(u32).range(1..=crate::dkim::MAX_EXPIRE_DAYS as i64))]
    pub dkim_expire_days: Option<u32>,
    /// The signing identity (i=), `[local]@DOMAIN` or a subdomain of it.
    #[arg(long, value_name = "ID", requires = "dkim_key")]
    pub dkim_identity: Option<String>,
}

/// Delivery status notifications and REQUIRETLS.
#[derive(Args, Debug, Default)]
pub struct DeliveryArgs {
    /// Ask for delivery status notifications (RFC 3461): a comma list of success,
    /// failure, delay, or never. The server must offer DSN.
    #[arg(long, value_name = "WHEN", value_parser = dsn::notify)]
    pub dsn_notify: Option<DsnNotify>,
    /// What a failure notification returns: full or hdrs.
    #[arg(long, value_name = "WHAT", value_parser = dsn::ret)]
    pub dsn_ret: Option<DsnReturn>,
    /// An envelope id that notifications quote back: printable ASCII, at most 100
    /// characters once xtext-encoded (RFC 3461).
    #[arg(long, value_name = "ID", value_parser = dsn::envid)]
    pub dsn_envid: Option<String>,
    /// The message may only travel over TLS (RFC 8689); the server must offer REQUIRETLS.
    #[arg(long)]
    pub require_tls: bool,
    /// With --raw: send the message's header exactly as it is. By default a missing Date,
    /// Message-ID or From is added (From: the envelope sender), as msmtp and sendmail do.
    #[arg(long, requires = "raw", conflicts_with = "compose")]
    pub keep_header: bool,
}

/// The messages: one of --raw, --dir or --mbox.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true)))]
pub struct BatchArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub dkim: DkimArgs,
    /// The envelope sender of every message [default: the account's `from`, else each
    /// message's Sender or From].
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// The envelope recipients of every message (repeatable).
    #[arg(long, value_name = "ADDR", required = true)]
    pub to: Vec<String>,
    /// Send this RFC 5322 message (see --count).
    #[arg(long, value_name = "FILE", group = "source")]
    pub raw: Option<PathBuf>,
    /// How many copies of the --raw message to send (for load tests).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "raw", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Send every file in this directory, each a complete RFC 5322 message.
    #[arg(long, value_name = "DIR", group = "source")]
    pub dir: Option<PathBuf>,
    /// Send every message of this mbox file (RFC 4155; `>From ` quoting is undone).
    #[arg(long, value_name = "FILE", group = "source")]
    pub mbox: Option<PathBuf>,
    /// How many sessions (connections) run at once.
    #[arg(long, value_name = "K", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A server as `--server` and an account's `server` name it: a host, and a port unless
/// the TLS mode's default is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: Option<u16>,
}

impl ServerAddress {
    /// Splits `HOST[:PORT]`, `[IPv6]` or `[IPv6]:PORT`.
    pub fn parse(server: &str) -> Result<ServerAddress, String> {
        let (host, port) = split_server(server)?;
        Ok(ServerAddress { host, port })
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.host),
            (true, None) => write!(f, "[{}]", self.host),
            (false, Some(port)) => write!(f, "{}:{port}", self.host),
            (false, None) => f.write_str(&self.host),
        }
    }
}

fn split_server(server: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("{server:?} is not HOST, HOST:PORT or [IPv6]:PORT");
    // A name, an IPv4 address or an IPv6 one: letters, digits, `-`, `.`, `_` and `:`.
    let host_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']');
    if !server.chars().all(host_char) {
        return Err(bad());
    }
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
            split_server("mx.example.org"),
            Ok(("mx.example.org".into(), None))
        );
        assert_eq!(
            split_server("mx.example.org:2525"),
            Ok(("mx.example.org".into(), Some(2525)))
        );
        assert_eq!(split_server("[::1]:465"), Ok(("::1".into(), Some(465))));
        assert_eq!(split_server("[::1]"), Ok(("::1".into(), None)));
        for bad in [
            "",
            ":25",
            "host:0",
            "host:99999",
            "host:x",
            "::1",
            "[::1]x",
            "[::1",
            "host name:25",
            "host\u{1b}:25",
        ] {
            assert!(split_server(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dsn_options_read_as_sendmail_reads_them() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["sendbox", "send", "--server", "h", "--to", "b@x"];
            args.extend(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Send(send) => send.delivery,
                other => panic!("parsed as {other:?}"),
            })
        };
        let delivery = parse(&["--dsn-notify", "success,DELAY", "--dsn-ret", "hdrs"]).unwrap();
        assert_eq!(
            delivery.dsn_notify,
            Some(DsnNotify::SUCCESS | DsnNotify::DELAY)
        );
        assert_eq!(delivery.dsn_ret, Some(DsnReturn::Headers));
        assert_eq!(
            parse(&["--dsn-notify", "never"]).unwrap().dsn_notify,
            Some(DsnNotify::empty())
        );
        for bad in [
            &["--dsn-notify", "never,success"][..],
            &["--dsn-notify", "sometimes"],
            &["--dsn-ret", "partial"],
            &["--dsn-envid", ""],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
