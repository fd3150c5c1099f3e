//! How a command reaches the server. The options and the account are resolved once, here,
//! into a [`Connection`] (server, trust anchors, credentials, time limits, transcript),
//! which makes the mailer; `send`, `batch`, `sendmail`, the outbox and `serve` only read
//! the result.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use sendbox::mailer::Timeouts;
use sendbox::{Credentials, Limits, Mailer, Sandbox, SandboxOptions, Secret, Server, Transcript};

use crate::args::ConnectionArgs;
use crate::config::{self, Account, Config, SecretSource};

/// Why the options and the account do not make a usable connection.
#[derive(Debug)]
pub enum Error {
    /// Neither `--server` nor an account names a server.
    NoServer,
    /// Options that lack or contradict each other, or an environment variable they name
    /// that holds no secret.
    Options(String),
    /// The password prompt failed.
    Prompt(io::Error),
    /// A file the options or the account name cannot be read; `what` names it.
    Unreadable { what: String, error: io::Error },
    /// A `--ca` or `ca` that holds no CA certificate in PEM; `what` names it.
    NotCa { what: String },
    /// The account's secret cannot be fetched.
    Account(config::Error),
    /// The component cannot be loaded.
    Component(anyhow::Error),
    /// Resolving the server's name took longer than `--timeout`.
    ResolveTimeout { host: String, seconds: u32 },
    /// The server's name does not resolve.
    Send(sendbox::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoServer => f.write_str("give --server, or an account in the config file"),
            Error::Options(problem) => f.write_str(problem),
            Error::Prompt(e) => write!(
                f,
                "cannot prompt for the password ({e}); use --password-env or --password-file"
            ),
            Error::Unreadable { what, error } => write!(f, "{what}: cannot read it: {error}"),
            Error::NotCa { what } => write!(
                f,
                "{what}: not a CA certificate in PEM (-----BEGIN CERTIFICATE-----); give the \
                 CA's certificate, not the server's key or a DER file"
            ),
            Error::Account(e) => e.fmt(f),
            Error::Component(e) => write!(f, "cannot load the component: {e:#}"),
            Error::ResolveTimeout { host, seconds } => {
                write!(f, "resolving {host} took longer than --timeout {seconds} s")
            }
            Error::Send(e) => e.fmt(f),
        }
    }
}

/// A server to reach and how: resolved from the options over the account, field by field
/// (options win), as msmtp merges its command line with its account.
pub struct Connection {
    server: Server,
    credentials: Option<Credentials>,
    /// `--timeout`: the limit for the whole call, and for each stage when RFC 5321's is
    /// longer.
    timeout: Option<u32>,
    verbose: bool,
}

/// The account `send` and `batch` use: the one named with --account, else the default
/// one, but none when --server names a server without --account, so that an account's
/// login never goes to a server other than its own.
pub fn account<'c>(
    config: &'c Config,
    options: &ConnectionArgs,
) -> Result<Option<&'c Account>, config::Error> {
    if options.server.is_some() && options.account.is_none() {
        return Ok(None);
    }
    config.account(options.account.as_deref())
}

impl Connection {
    /// The account's own connection, as sendmail, the outbox and serve use it.
    pub fn of_account(account: &Account, verbose: bool) -> Result<Connection, Error> {
        let options = ConnectionArgs {
            verbose,
            ..ConnectionArgs::default()
        };
        Connection::resolve(&options, Some(account))
    }

    /// The options over the account. Reads the trust anchors and the secret now, so that a
    /// missing file or password stops us before we connect.
    pub fn resolve(options: &ConnectionArgs, account: Option<&Account>) -> Result<Self, Error> {
        let address = options
            .server
            .as_ref()
            .or(account.map(|a| &a.server))
            .ok_or(Error::NoServer)?;
        let tls = options
            .tls
            .or(account.map(|a| a.tls))
            .unwrap_or_default()
            .into();
        let port = address.port.unwrap_or(Server::default_port(tls));
        let mut server = Server::new(address.host.clone(), port, tls);
        server.timeouts = options.timeout.map(timeouts);
        server.ehlo_name = options
            .ehlo
            .clone()
            .or_else(|| account.and_then(|a| a.ehlo.clone()));
        let ca = match (
            &options.ca,
            account.and_then(|a| Some((a, a.ca.as_deref()?))),
        ) {
            (Some(path), _) => Some(("--ca".to_owned(), path.as_path())),
            (None, Some((account, path))) => {
                Some((format!("account {:?}: ca", account.name), path))
            }
            (None, None) => None,
        };
        if let Some((given_by, path)) = ca {
            server.ca_pem = Some(read_ca(&given_by, path)?);
        }
        Ok(Connection {
            server,
            credentials: credentials(options, account)?,
            timeout: options.timeout,
            verbose: options.verbose,
        })
    }

    /// The mailer: loads the component and resolves the server's name, within --timeout.
    pub async fn mailer(self, sandbox: &SandboxOptions) -> Result<Mailer, Error> {
        let sandbox = Sandbox::with_options(sandbox).map_err(Error::Component)?;
        let host = self.server.host.clone();
        let resolved = Mailer::new(sandbox, self.server, self.credentials);
        let mailer = match self.timeout {
            // The name is resolved here, in the host: --timeout bounds that too.
            Some(seconds) => tokio::time::timeout(Duration::from_secs(seconds.into()), resolved)
                .await
                .map_err(|_| Error::ResolveTimeout { host, seconds })?,
            None => resolved.await,
        }
        .map_err(Error::Send)?;
        let mailer = match self.timeout {
            Some(seconds) => mailer.with_limits(Limits {
                run_time: Duration::from_secs(u64::from(seconds) + RUN_TIME_GRACE_SECS),
                ..Limits::default()
            }),
            None => mailer,
        };
        Ok(if self.verbose {
            mailer.with_transcript(Transcript::Stderr)
        } else {
            mailer
        })
    }
}

/// How much longer than --timeout the host lets a call run before it stops it, so that
/// the component reports its own timeout (with the stage it was in) first.
const RUN_TIME_GRACE_SECS: u64 = 5;

/// The time limits for `--timeout SECONDS`: the whole call is `seconds`, and connecting
/// and every stage keep their RFC 5321 limit (proto's defaults), or `seconds` when that is
/// shorter.
fn timeouts(seconds: u32) -> Timeouts {
    let limit = seconds.saturating_mul(1000);
    let rfc = sendbox_proto::Timeouts::default();
    let stage = |rfc_ms: u32| rfc_ms.min(limit);
    Timeouts {
        connect_ms: stage(rfc.connect_ms),
        greeting_ms: stage(rfc.greeting_ms),
        command_ms: stage(rfc.command_ms),
        mail_ms: stage(rfc.mail_ms),
        rcpt_ms: stage(rfc.rcpt_ms),
        data_start_ms: stage(rfc.data_start_ms),
        data_block_ms: stage(rfc.data_block_ms),
        data_end_ms: stage(rfc.data_end_ms),
        total_ms: limit,
    }
}

/// The PEM trust anchors at `path`, checked here so that an error names the file and
/// where it was given.
fn read_ca(given_by: &str, path: &Path) -> Result<String, Error> {
    let what = format!("{given_by} {}", path.display());
    let pem = std::fs::read_to_string(path).map_err(|error| Error::Unreadable {
        what: what.clone(),
        error,
    })?;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>();
    if !certificates.is_ok_and(|found| !found.is_empty()) {
        return Err(Error::NotCa { what });
    }
    Ok(pem)
}

/// The user, secret and mechanism, each from the options when given, else from the
/// account. A password is prompted for when neither says where the secret comes from.
fn credentials(
    options: &ConnectionArgs,
    account: Option<&Account>,
) -> Result<Option<Credentials>, Error> {
    let secret_option = [
        ("--password-env", options.password_env.is_some()),
        ("--password-file", options.password_file.is_some()),
        ("--token-env", options.token_env.is_some()),
        ("--auth", options.auth.is_some()),
    ]
    .into_iter()
    .find_map(|(name, given)| given.then_some(name));
    let Some(username) = options
        .user
        .clone()
        .or_else(|| account.and_then(|a| a.user.clone()))
    else {
        if let Some(option) = secret_option {
            return Err(Error::Options(format!(
                "{option} needs a user name: give --user, or a `user` in the account"
            )));
        }
        return Ok(None);
    };
    let from_options = options.password_env.is_some()
        || options.password_file.is_some()
        || options.token_env.is_some();
    let account_secret = account
        .filter(|a| !from_options && a.secret != SecretSource::None)
        .map(|a| (a, &a.secret));
    // Whether the secret will be a token, known before it is fetched or prompted for.
    let (gives_token, source) = match account_secret {
        Some((_, secret)) => (secret.is_token(), format!("the account's {}", secret.key())),
        None if options.token_env.is_some() => (true, "--token-env".to_owned()),
        None if options.password_env.is_some() => (false, "--password-env".to_owned()),
        None if options.password_file.is_some() => (false, "--password-file".to_owned()),
        None => (false, "the password prompt".to_owned()),
    };
    let auth = match (options.auth, account.and_then(|a| a.auth)) {
        (Some(auth), _) => Some((auth, "--auth")),
        (None, Some(auth)) => Some((auth, "the account's auth")),
        (None, None) => None,
    };
    if let Some((auth, named_by)) = auth
        && let Some(problem) = auth.refuses(
            gives_token,
            &source,
            &format!("{named_by} {}", auth.name()),
            |name| format!("--auth {name}"),
        )
    {
        return Err(Error::Options(problem));
    }
    let secret = match account_secret {
        Some((account, secret)) => {
            let in_account = |problem| {
                Error::Account(config::Error::from(format!(
                    "account {:?}: {problem}",
                    account.name
                )))
            };
            secret
                .fetch()
                .map_err(|e| in_account(e.to_string()))?
                .ok_or_else(|| in_account("no secret".to_owned()))?
        }
        None => secret_from_options(options)?,
    };
    Ok(Some(Credentials {
        username,
        secret,
        mechanism: auth.map(|(auth, _)| auth.into()),
    }))
}

/// The secret from the options: a token or password from the environment, a password
/// from a file, or from the terminal; never from the command line itself.
fn secret_from_options(options: &ConnectionArgs) -> Result<Secret, Error> {
    let from_env = |option: &str, var: &str| {
        config::secret_from_env(var).map_err(|e| Error::Options(format!("{option}: {e}")))
    };
    if let Some(var) = &options.token_env {
        return from_env("--token-env", var).map(Secret::BearerToken);
    }
    if let Some(var) = &options.password_env {
        return from_env("--password-env", var).map(Secret::Password);
    }
    if let Some(path) = &options.password_file {
        return read_password_file(path).map(Secret::Password);
    }
    rpassword::prompt_password("SMTP password: ")
        .map(Secret::Password)
        .map_err(Error::Prompt)
}

/// The first line of the file; an empty one is refused, as an empty variable is (it would
/// only fail later, at AUTH).
fn read_password_file(path: &Path) -> Result<String, Error> {
    let what = format!("--password-file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|error| Error::Unreadable {
        what: what.clone(),
        error,
    })?;
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => Err(Error::Options(format!(
            "{what}: its first line, the password, is empty"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_caps_every_stage_and_the_whole() {
        let short = timeouts(10);
        assert_eq!((short.connect_ms, short.total_ms), (10_000, 10_000));
        assert_eq!(short.data_end_ms, 10_000);
        let long = timeouts(3600);
        let rfc = sendbox_proto::Timeouts::default();
        assert_eq!(long.data_end_ms, rfc.data_end_ms);
        assert_eq!(long.connect_ms, rfc.connect_ms);
        assert_eq!(long.total_ms, 3_600_000);
    }
}
