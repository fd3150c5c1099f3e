//! The configuration file: named accounts, like msmtp's `~/.msmtprc` but in TOML.
//!
//! ```toml
//! default = "work"                    # used when no account is named
//! [accounts.work]
//! server = "smtp.example.org:587"     # HOST[:PORT], [IPv6]:PORT
//! tls = "starttls"                    # implicit | starttls | none
//! ca = "~/certs/private-ca.pem"       # relative paths are from the file's directory
//! ehlo = "laptop.example.org"
//! from = "alice@example.org"
//! user = "alice"
//! auth = "scram-sha256"               # plain | login | scram-sha256 | cram-md5 | oauthbearer | xoauth2
//! password_command = "pass show mail/work"
//! keep_header = false                 # true: send raw messages' headers exactly as given
//! dkim_key_file = "~/.config/sendbox/dkim.pem"  # sign with DKIM (with selector and domain)
//! dkim_selector = "mail2026"
//! dkim_domain = "example.org"
//!
//! aliases = "/etc/aliases"            # local names (root, cron) to addresses, for sendmail
//!
//! [log]                               # a line per delivery attempt (all optional)
//! file = "~/.local/state/sendbox/log"
//! syslog = true                       # to syslog's mail facility; journald reads it too
//!
//! [queue]                             # the outbox of `sendbox sendmail` (all optional)
//! enabled = true                      # false: sendmail fails at once when it cannot deliver
//! dir = "~/.local/share/sendbox/outbox"
//! retry_minutes = 30                  # the first retry; doubled after each failure, up to 4 h
//! give_up_days = 5                    # then the message moves to failed/
//! ```
//!
//! The secret comes from at most one of `password_env`, `password_command`, `token_env`,
//! `token_command` or `password`. A cleartext `password` needs `allow_cleartext_password =
//! true` and a file that only its owner can access.
//!
//! The file is `--config FILE`, else `$SENDBOX_CONFIG`, else `sendbox/config.toml` in the
//! user's configuration directory (`$XDG_CONFIG_HOME` on Linux) when it exists, else the
//! system's `/etc/sendbox/config.toml` (for daemons without a home). One file is read,
//! never a merge: the user's own wins whole. Only the default files may be missing: a file
//! the user named must exist.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sendbox::{Mailbox, Secret};
use serde::Deserialize;

use crate::aliases::Aliases;
use crate::args::{AuthArg, ServerAddress, TlsArg};
use crate::dkim::{self, Dkim};
use crate::log::LogSettings;

/// The config file is wrong, or names no usable account: what is wrong, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

/// Names the configuration file when `--config` is not given.
const PATH_VAR: &str = "SENDBOX_CONFIG";

/// One account: a server and how to log in to it, checked when the file is read.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its name in the file (`[accounts.NAME]`).
    pub name: String,
    /// `HOST[:PORT]` or `[IPv6]:PORT`, as `--server` takes it.
    pub server: ServerAddress,
    /// How to secure the connection.
    pub tls: TlsArg,
    /// Trust anchors (PEM) instead of the web PKI; `~` expanded, relative to the file.
    pub ca: Option<PathBuf>,
    /// The name to give in EHLO.
    pub ehlo: Option<String>,
    /// The default sender, `ADDR` or `Name <ADDR>`.
    pub from: Option<Mailbox>,
    /// The user name for AUTH.
    pub user: Option<String>,
    /// The SASL mechanism; when absent, the strongest both sides allow.
    pub auth: Option<AuthArg>,
    /// Where the password or token comes from.
    pub secret: SecretSource,
    /// Send a raw message's header as it is, without adding a missing Date, Message-ID or
    /// From.
    pub keep_header: bool,
    /// Sign what goes through the account with DKIM.
    pub dkim: Option<Dkim>,
}

impl Account {
    /// The address of its `from`.
    pub fn address(&self) -> Option<&str> {
        self.from.as_ref().map(|from| from.address.as_str())
    }

    /// The domain of its `from`, which bare names such as cron's `root` are given.
    pub fn domain(&self) -> Option<&str> {
        let (_, domain) = self.address()?.rsplit_once('@')?;
        Some(domain)
    }
}

/// Where an account's secret comes from. Read it with [`SecretSource::fetch`] only when it
/// is needed.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// None configured: prompt for a password, or do not log in.
    None,
    /// A password in this environment variable.
    PasswordEnv(String),
    /// A password on the first line this `sh -c` command prints.
    PasswordCommand(String),
    /// A password written in the file.
    Password(String),
    /// An OAuth bearer token in this environment variable.
    TokenEnv(String),
    /// An OAuth bearer token on the first line this `sh -c` command prints.
    TokenCommand(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::PasswordEnv(var) => f.debug_tuple("PasswordEnv").field(var).finish(),
            Self::PasswordCommand(cmd) => f.debug_tuple("PasswordCommand").field(cmd).finish(),
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::TokenEnv(var) => f.debug_tuple("TokenEnv").field(var).finish(),
            Self::TokenCommand(cmd) => f.debug_tuple("TokenCommand").field(cmd).finish(),
        }
    }
}

impl SecretSource {
    /// The key that sets it in the file, for messages.
    pub fn key(&self) -> &'static str {
        match self {
            Self::None => "no secret",
            Self::PasswordEnv(_) => "password_env",
            Self::PasswordCommand(_) => "password_command",
            Self::Password(_) => "password",
            Self::TokenEnv(_) => "token_env",
            Self::TokenCommand(_) => "token_command",
        }
    }

    /// Whether it gives an OAuth token rather than a password.
    pub fn is_token(&self) -> bool {
        matches!(self, Self::TokenEnv(_) | Self::TokenCommand(_))
    }

    /// Reads the secret: `Ok(None)` when no source is configured. Errors never contain the
    /// secret or a command's output.
    pub fn fetch(&self) -> Result<Option<Secret>, Error> {
        Ok(Some(match self {
            Self::None => return Ok(None),
            Self::Password(password) => Secret::Password(password.clone()),
            Self::PasswordEnv(var) => {
                Secret::Password(secret_from_env(var).map_err(|e| format!("{}: {e}", self.key()))?)
            }
            Self::TokenEnv(var) => Secret::BearerToken(
                secret_from_env(var).map_err(|e| format!("{}: {e}", self.key()))?,
            ),
            Self::PasswordCommand(command) => Secret::Password(run(self.key(), command)?),
            Self::TokenCommand(command) => Secret::BearerToken(run(self.key(), command)?),
        }))
    }
}

/// A secret from the environment variable `var`, for the account's `password_env` and
/// `token_env` and the `--password-env` and `--token-env` options alike: unset, empty and
/// non-UTF-8 values are errors (an empty password would only fail later, at AUTH).
pub fn secret_from_env(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(value) if value.is_empty() => Err(format!("environment variable {var} is empty")),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable {var} is not valid UTF-8"))
        }
    }
}

/// The first line `sh -c command` prints, as msmtp's `passwordeval` does it.
fn run(key: &str, command: &str) -> Result<String, String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        // In sendmail mode stdin is the message: the command must not read it. Its stderr
        // stays visible so that its own complaints reach the user.
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {key} {command:?}: {e}"))?;
    if !output.status.success() {
        // Not the output: a failing command may still have printed part of a secret.
        return Err(format!("{key} {command:?} failed ({})", output.status));
    }
    let line = output
        .stdout
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(format!("{key} {command:?} printed nothing"));
    }
    String::from_utf8(line.to_vec())
        .map_err(|_| format!("{key} {command:?} printed something that is not UTF-8"))
}

/// The configuration: the accounts of the file, if there is one.
#[derive(Debug)]
pub struct Config {
    source: Source,
    default: Option<String>,
    accounts: BTreeMap<String, Account>,
    pub queue: QueueSettings,
    pub log: LogSettings,
    /// The aliases file (`aliases`), read only by what uses it ([`Config::aliases`]): a
    /// missing one must not stop `mailq` or a queue run.
    aliases: Option<PathBuf>,
}

/// The outbox's settings (`[queue]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Whether sendmail queues what it cannot deliver at once (default true).
    pub enabled: bool,
    /// The outbox directory: `dir`, else in the user's data directory, else (no home)
    /// `/var/spool/sendbox/UID`.
    pub dir: PathBuf,
    /// The wait before the first retry, in seconds (RFC 5321 4.5.4.1: at least 30 minutes).
    pub retry_secs: u64,
    /// How long a message stays queued before it is given up on (RFC 5321: 4 to 5 days).
    pub give_up_secs: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            dir: default_outbox(
                dirs::home_dir(),
                dirs::data_local_dir(),
                rustix::process::geteuid().as_raw(),
            ),
            retry_secs: 30 * 60,
            give_up_secs: 5 * 24 * 60 * 60,
        }
    }
}

/// Where the configuration came from, for messages.
#[derive(Debug)]
enum Source {
    /// No configuration directory is known (no home directory).
    Nowhere,
    /// The default file, which does not exist.
    Missing(PathBuf),
    File(PathBuf),
}

impl Config {
    /// Reads the file named by `explicit` (`--config`), else by `$SENDBOX_CONFIG`, else the
    /// default file, which alone may be missing. Errors name the file.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let from_env = std::env::var_os(PATH_VAR);
        match locate(
            explicit,
            from_env,
            dirs::config_dir(),
            Path::new(SYSTEM_FILE),
        ) {
            Some((path, required)) => Self::read(path, required),
            None => Ok(Self::empty(Source::Nowhere)),
        }
    }

    /// The file it was read from, if any.
    pub fn file(&self) -> Option<&Path> {
        match &self.source {
            Source::File(path) => Some(path),
            Source::Nowhere | Source::Missing(_) => None,
        }
    }

    /// The aliases file the config names, read and checked now (its errors name the file
    /// and the line); `None` when it names none.
    pub fn aliases(&self) -> Result<Option<Aliases>, Error> {
        self.aliases
            .as_deref()
            .map(|path| Aliases::load(path).map_err(Error))
            .transpose()
    }

    /// The account called `name`, which must exist; without a name, the `default` account,
    /// or the only one, or `None`.
    pub fn account(&self, name: Option<&str>) -> Result<Option<&Account>, Error> {
        let Some(name) = name else {
            return Ok(match &self.default {
                Some(default) => self.accounts.get(default),
                None if self.accounts.len() == 1 => self.accounts.values().next(),
                None => None,
            });
        };
        let account = self.accounts.get(name);
        account
            .map(Some)
            .ok_or_else(|| Error(self.no_account(name)))
    }

    /// `what` (the need for an account, or for one with a `from`), then why there is no
    /// default account here and what to do: it names the file it looked at.
    pub fn no_default_account(&self, what: &str) -> String {
        let why = match &self.source {
            Source::Nowhere => {
                format!("there is no config file (no home directory, and no {SYSTEM_FILE})")
            }
            Source::Missing(path) => format!(
                "there is no config file: neither {} nor {SYSTEM_FILE} exists",
                path.display()
            ),
            Source::File(path) if self.accounts.is_empty() => {
                format!("{} has no accounts", path.display())
            }
            Source::File(path) => format!(
                "{} names no default (`default = \"NAME\"`; it has {})",
                path.display(),
                names(&self.accounts)
            ),
        };
        let fix = match self.source {
            Source::File(_) => "name one with --account",
            Source::Nowhere | Source::Missing(_) => "give --config FILE",
        };
        format!("{what}, and {why}: write one (README, \"Accounts\"), or {fix}")
    }

    /// Why there is no account called `name`.
    fn no_account(&self, name: &str) -> String {
        match &self.source {
            Source::Nowhere => format!("no account {name:?}: there is no configuration file"),
            Source::Missing(path) => {
                format!("no account {name:?}: {} does not exist", path.display())
            }
            Source::File(path) if self.accounts.is_empty() => {
                format!("no account {name:?}: {} has no accounts", path.display())
            }
            Source::File(path) => format!(
                "no account {name:?} in {} (it has {})",
                path.display(),
                names(&self.accounts)
            ),
        }
    }

    fn empty(source: Source) -> Config {
        Config {
            source,
            default: None,
            accounts: BTreeMap::new(),
            queue: QueueSettings::default(),
            log: LogSettings::default(),
            aliases: None,
        }
    }

    fn read(path: PathBuf, required: bool) -> Result<Config, Error> {
        let cannot =
            |e: io::Error| format!("cannot read {} (the config file): {e}", path.display());
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                return Ok(Self::empty(Source::Missing(path)));
            }
            Err(e) => return Err(Error(cannot(e))),
        };
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot)?;
        // The mode of the file we read, not of whatever is at the path now.
        let shared_mode = shared_mode(&file).map_err(cannot)?;
        Self::parse(path, &text, shared_mode)
    }

    /// Parses and checks the text of the file at `path`; `shared_mode` is its mode when
    /// others than its owner may access it.
    fn parse(path: PathBuf, text: &str, shared_mode: Option<u32>) -> Result<Config, Error> {
        let file: RawFile = toml::from_str(text).map_err(|e| {
            // Not toml's own rendering: it quotes the line, which may hold a password.
            match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    // serde quotes a value of the wrong type: never on a line that may
                    // hold a password (an inline table's too).
                    let said = match line_at(text, span.start).contains("password") {
                        true => "a password must be a string in quotes (the value is not shown)",
                        false => e.message(),
                    };
                    format!("{}:{line}:{column}: {said}", path.display())
                }
                None => format!("{}: {}", path.display(), e.message()),
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut accounts = BTreeMap::new();
        for (name, raw) in file.accounts {
            let account = raw
                .check(name.clone(), dir, shared_mode)
                .map_err(|problem| format!("{}: account {name:?}: {problem}", path.display()))?;
            accounts.insert(name, account);
        }
        if let Some(default) = &file.default
            && !accounts.contains_key(default)
        {
            return Err(Error(format!(
                "{}: default account {default:?} is not defined (accounts: {})",
                path.display(),
                names(&accounts)
            )));
        }
        let defaults = QueueSettings::default();
        let raw = file.queue.unwrap_or_default();
        for (key, value, most) in [
            ("retry_minutes", raw.retry_minutes, MAX_RETRY_MINUTES),
            ("give_up_days", raw.give_up_days, MAX_GIVE_UP_DAYS),
        ] {
            if value.is_some_and(|value| value > most) {
                return Err(Error(format!(
                    "{}: [queue] {key} is at most {most}",
                    path.display()
                )));
            }
        }
        let queue = QueueSettings {
            enabled: raw.enabled.unwrap_or(defaults.enabled),
            dir: match raw.dir {
                Some(dir) => resolve(dir, path.parent().unwrap_or(Path::new("")))
                    .map_err(|problem| format!("{}: [queue] dir: {problem}", path.display()))?,
                None => defaults.dir,
            },
            retry_secs: raw
                .retry_minutes
                .map_or(defaults.retry_secs, |m| m.saturating_mul(60)),
            give_up_secs: raw
                .give_up_days
                .map_or(defaults.give_up_secs, |d| d.saturating_mul(24 * 60 * 60)),
        };
        let in_file = |problem: String| format!("{}: {problem}", path.display());
        let raw_log = file.log.unwrap_or_default();
        let log = LogSettings {
            file: raw_log
                .file
                .map(|f| resolve(f, dir))
                .transpose()
                .map_err(in_file)?,
            syslog: match (raw_log.syslog, raw_log.syslog_socket) {
                (Some(true), socket) => Some(socket.unwrap_or_else(|| "/dev/log".into())),
                _ => None,
            },
        };
        let aliases = file
            .aliases
            .map(|aliases| resolve(aliases, dir).map_err(in_file))
            .transpose()?;
        Ok(Config {
            source: Source::File(path),
            default: file.default,
            accounts,
            queue,
            log,
            aliases,
        })
    }
}

/// The names of `accounts`, for messages.
fn names(accounts: &BTreeMap<String, Account>) -> String {
    if accounts.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = accounts.keys().map(String::as_str).collect();
    names.join(", ")
}

/// Which file to read, and whether it must exist: `--config`, else `$SENDBOX_CONFIG`
/// (unless empty), else the default file in `config_dir`.
fn locate(
    explicit: Option<&Path>,
    from_env: Option<OsString>,
    config_dir: Option<PathBuf>,
    system: &Path,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = explicit {
        return Some((path.to_owned(), true));
    }
    if let Some(path) = from_env.filter(|p| !p.is_empty()) {
        return Some((path.into(), true));
    }
    let user = config_dir.map(|dir| dir.join("sendbox").join("config.toml"));
    match user {
        Some(user) if user.exists() || !system.exists() => Some((user, false)),
        _ if system.exists() => Some((system.to_owned(), false)),
        _ => None,
    }
}

/// The longest first retry delay `[queue] retry_minutes` may ask for: a day.
const MAX_RETRY_MINUTES: u64 = 24 * 60;
/// The longest `[queue] give_up_days`: a year.
const MAX_GIVE_UP_DAYS: u64 = 366;

/// Where users without a home directory keep their outbox, one folder each.
pub const SYSTEM_SPOOL: &str = "/var/spool/sendbox";

/// The outbox when the config names none: in the user's data directory when the user has
/// a home (or that directory exists already), else, for a daemon (no home, or one that
/// does not exist, such as nobody's `/nonexistent`), its own folder in the system's spool,
/// which an administrator makes once (mode 1733, as contrib/sendbox.tmpfiles does). A
/// home directory is never made.
fn default_outbox(home: Option<PathBuf>, data_dir: Option<PathBuf>, uid: u32) -> PathBuf {
    let has_home = home.is_some_and(|home| home.is_dir());
    match data_dir {
        Some(data) if has_home || data.is_dir() => data.join("sendbox").join("outbox"),
        _ => Path::new(SYSTEM_SPOOL).join(uid.to_string()),
    }
}

/// The system-wide file, for daemons that have no home directory.
const SYSTEM_FILE: &str = "/etc/sendbox/config.toml";

/// The line of `text` that byte `offset` is on.
fn line_at(text: &str, offset: usize) -> &str {
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    text[start..].lines().next().unwrap_or_default()
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The file's permission bits when its group or others have any access to it.
#[cfg(unix)]
fn shared_mode(file: &File) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// Other systems have no mode bits to check.
#[cfg(not(unix))]
fn shared_mode(_file: &File) -> io::Result<Option<u32>> {
    Ok(None)
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<String>,
    #[serde(default)]
    accounts: BTreeMap<String, RawAccount>,
    queue: Option<RawQueue>,
    log: Option<RawLog>,
    aliases: Option<PathBuf>,
}

/// `[log]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    file: Option<PathBuf>,
    syslog: Option<bool>,
    /// Where syslog listens, when not `/dev/log`.
    syslog_socket: Option<PathBuf>,
}

/// `[queue]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    retry_minutes: Option<u64>,
    give_up_days: Option<u64>,
}

/// An account as written, before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    server: String,
    #[serde(default)]
    tls: TlsArg,
    ca: Option<PathBuf>,
    ehlo: Option<String>,
    from: Option<String>,
    user: Option<String>,
    auth: Option<AuthArg>,
    password_env: Option<String>,
    password_command: Option<String>,
    password: Option<String>,
    token_env: Option<String>,
    token_command: Option<String>,
    #[serde(default)]
    allow_cleartext_password: bool,
    #[serde(default)]
    keep_header: bool,
    dkim_key_file: Option<PathBuf>,
    dkim_selector: Option<String>,
    dkim_domain: Option<String>,
    dkim_algorithm: Option<String>,
    dkim_headers: Option<Vec<String>>,
    dkim_canonicalization: Option<String>,
    dkim_expire_days: Option<u32>,
    dkim_identity: Option<String>,
}

impl RawAccount {
    /// The account's DKIM settings: none, or the key file, selector and domain together.
    fn dkim(&mut self, dir: &Path) -> Result<Option<Dkim>, String> {
        let (key_file, selector, domain) = match (
            self.dkim_key_file.take(),
            self.dkim_selector.take(),
            self.dkim_domain.take(),
        ) {
            (Some(key_file), Some(selector), Some(domain)) => (key_file, selector, domain),
            (None, None, None) => {
                let extra = [
                    ("dkim_algorithm", self.dkim_algorithm.is_some()),
                    ("dkim_headers", self.dkim_headers.is_some()),
                    (
                        "dkim_canonicalization",
                        self.dkim_canonicalization.is_some(),
                    ),
                    ("dkim_expire_days", self.dkim_expire_days.is_some()),
                    ("dkim_identity", self.dkim_identity.is_some()),
                ];
                return match extra.iter().find(|(_, given)| *given) {
                    Some((key, _)) => Err(format!(
                        "sets {key} but not dkim_key_file, dkim_selector and dkim_domain"
                    )),
                    None => Ok(None),
                };
            }
            _ => {
                return Err(
                    "DKIM needs dkim_key_file, dkim_selector and dkim_domain together".into(),
                );
            }
        };
        if self
            .dkim_expire_days
            .is_some_and(|days| !(1..=dkim::MAX_EXPIRE_DAYS).contains(&days))
        {
            return Err(format!(
                "dkim_expire_days must be 1 to {}",
                dkim::MAX_EXPIRE_DAYS
            ));
        }
        // Checked now as the signer will check them; the key file is read at each send.
        let mut request = sendbox_proto::dkim::Request::new(
            domain.clone(),
            selector.clone(),
            sendbox_proto::dkim::Algorithm::RsaSha256,
        );
        if let Some(headers) = &self.dkim_headers {
            request.set_headers(headers.clone());
        }
        request.identity = self.dkim_identity.clone();
        request.check().map_err(|e| e.to_string())?;
        Ok(Some(Dkim {
            domain,
            selector,
            key_file: resolve(key_file, dir).map_err(|why| format!("dkim_key_file: {why}"))?,
            algorithm: self
                .dkim_algorithm
                .as_deref()
                .map(dkim::algorithm)
                .transpose()
                .map_err(|why| format!("dkim_algorithm: {why}"))?,
            headers: self.dkim_headers.take(),
            canonicalization: dkim::canonicalization(
                self.dkim_canonicalization
                    .as_deref()
                    .unwrap_or("relaxed/relaxed"),
            )
            .map_err(|why| format!("dkim_canonicalization: {why}"))?,
            expire_days: self.dkim_expire_days,
            identity: self.dkim_identity.take(),
        }))
    }

    /// The checked account; `dir` is the file's directory, `shared_mode` its mode when
    /// others may access it.
    fn check(
        mut self,
        name: String,
        dir: &Path,
        shared_mode: Option<u32>,
    ) -> Result<Account, String> {
        let dkim = self.dkim(dir)?;
        let secret = one_secret([
            self.password_env.map(SecretSource::PasswordEnv),
            self.password_command.map(SecretSource::PasswordCommand),
            self.password.map(SecretSource::Password),
            self.token_env.map(SecretSource::TokenEnv),
            self.token_command.map(SecretSource::TokenCommand),
        ])?;
        if let SecretSource::Password(_) = secret {
            if !self.allow_cleartext_password {
                return Err(format!(
                    "has a cleartext password; use password_command (such as \"pass show \
                     mail/{name}\") or password_env, or set allow_cleartext_password = true \
                     in the account"
                ));
            }
            if let Some(mode) = shared_mode {
                return Err(format!(
                    "has a cleartext password, but others can access the file (mode \
                     {mode:04o}); run chmod 600 on it, or use password_command"
                ));
            }
        }
        if let Some(auth) = self.auth
            && secret != SecretSource::None
            && let Some(problem) = auth.refuses(
                secret.is_token(),
                secret.key(),
                &format!("auth = {:?}", auth.name()),
                |name| format!("{name:?}"),
            )
        {
            return Err(problem);
        }
        if self.user.is_none() {
            if secret != SecretSource::None {
                return Err(format!("sets {} but no user", secret.key()));
            }
            if self.auth.is_some() {
                return Err("sets auth but no user".into());
            }
        }
        let ca = self.ca.map(|ca| resolve(ca, dir)).transpose()?;
        let server = ServerAddress::parse(&self.server).map_err(|why| format!("server {why}"))?;
        if let Some(ehlo) = &self.ehlo {
            sendbox_proto::command::check_ehlo_name(ehlo)
                .map_err(|why| format!("ehlo: {}", why.message))?;
        }
        let from = self
            .from
            .as_deref()
            .map(crate::compose::mailbox)
            .transpose()
            .map_err(|why| format!("from: {why}"))?;
        Ok(Account {
            name,
            server,
            tls: self.tls,
            ca,
            ehlo: self.ehlo,
            from,
            user: self.user,
            auth: self.auth,
            secret,
            keep_header: self.keep_header,
            dkim,
        })
    }
}

/// The one secret source among those `given`, if any.
fn one_secret(given: [Option<SecretSource>; 5]) -> Result<SecretSource, String> {
    let mut given = given.into_iter().flatten();
    match (given.next(), given.next()) {
        (None, _) => Ok(SecretSource::None),
        (Some(one), None) => Ok(one),
        (Some(one), Some(other)) => Err(format!(
            "sets both {} and {}; give one secret source",
            one.key(),
            other.key()
        )),
    }
}

/// `path` with a leading `~` replaced by the home directory, and made relative to `dir`.
fn resolve(path: PathBuf, dir: &Path) -> Result<PathBuf, String> {
    let path = match path.strip_prefix("~") {
        Ok(rest) => dirs::home_dir()
            .ok_or_else(|| format!("cannot expand ~ in {}: no home directory", path.display()))?
            .join(rest),
        Err(_) => path,
    };
    Ok(dir.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the parser accepts in the table that `text` opens: serde's refusal of an
    /// unknown key lists them.
    fn accepted_keys(text: &str) -> Vec<String> {
        let error = toml::from_str::<RawFile>(&format!("{text}\nno_such_key = 1\n"))
            .err()
            .expect("an unknown key is refused");
        let message = error.message();
        let (_, expected) = message
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{message}"));
        expected
            .split(", ")
            .map(|key| key.trim().trim_matches('`').to_owned())
            .collect()
    }

    /// The keys sendbox.toml(5) names: the bold tag of each tagged paragraph that is a
    /// key's name.
    fn page_keys() -> Vec<String> {
        let page = crate::generate::CONFIG_PAGE.1;
        let lines: Vec<&str> = page.lines().collect();
        lines
            .windows(2)
            .filter(|pair| pair[0] == ".TP")
            .filter_map(|pair| pair[1].strip_prefix(".B "))
            .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn dkim_settings_come_together_or_not_at_all() {
        let account = |extra: &str| {
            parse(&format!(
                "[accounts.a]\nserver = \"smtp.example.org\"\n{extra}"
            ))
            .map(|config| config.account(Some("a")).unwrap().unwrap().dkim.clone())
            .map_err(|e| e.to_string())
        };
        let full = "dkim_key_file = \"/etc/dkim.pem\"\ndkim_selector = \"s1\"\n\
                    dkim_domain = \"example.org\"\n";
        let dkim = account(full).unwrap().unwrap();
        assert_eq!(dkim.key_file, PathBuf::from("/etc/dkim.pem"));
        assert_eq!(
            (dkim.domain.as_str(), dkim.selector.as_str()),
            ("example.org", "s1")
        );
        assert_eq!(account("").unwrap(), None);
        let error = account("dkim_selector = \"s1\"\n").unwrap_err();
        assert!(
            error.contains("dkim_key_file, dkim_selector and dkim_domain together"),
            "{error}"
        );
        let error = account("dkim_expire_days = 3\n").unwrap_err();
        assert!(error.contains("sets dkim_expire_days but not"), "{error}");
        let error = account(&format!("{full}dkim_algorithm = \"rsa-sha1\"\n")).unwrap_err();
        assert!(
            error.contains("dkim_algorithm: \"rsa-sha1\" is not"),
            "{error}"
        );
        let error = account(&format!("{full}dkim_canonicalization = \"loose\"\n")).unwrap_err();
        assert!(error.contains("dkim_canonicalization"), "{error}");
        let error = account(&format!("{full}dkim_expire_days = 0\n")).unwrap_err();
        assert!(
            error.contains("dkim_expire_days must be 1 to 36500"),
            "{error}"
        );
        for bad in [
            "dkim_selector = \"bad sel\"\n",
            "dkim_identity = \"a@other.test\"\n",
            "dkim_headers = [\"Sub ject\"]\n",
            "dkim_expire_days = 20000000\n",
        ] {
            let text = full.replace("dkim_selector = \"s1\"\n", "") + bad;
            let text = match bad.starts_with("dkim_selector") {
                true => text,
                false => text + "dkim_selector = \"s1\"\n",
            };
            assert!(account(&text).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_page_names_every_key_and_only_those() {
        let mut accepted = Vec::new();
        for table in ["", "[accounts.a]\nserver = \"x\"", "[queue]", "[log]"] {
            let keys = accepted_keys(table);
            assert!(keys.len() >= 3, "{table}: {keys:?}");
            accepted.extend(keys);
        }
        let named = page_keys();
        for key in &accepted {
            // Tables have their own sections.
            if !["accounts", "queue", "log"].contains(&key.as_str()) {
                assert!(
                    named.contains(key),
                    "the parser takes `{key}`, which sendbox.toml(5) does not name"
                );
            }
        }
        for key in &named {
            assert!(
                accepted.contains(key),
                "sendbox.toml(5) names `{key}`, which the parser refuses"
            );
        }
    }

    #[test]
    fn the_pages_example_is_a_valid_file() {
        let page = crate::generate::CONFIG_PAGE.1;
        let (_, example) = page.split_once(".SH EXAMPLE\n.EX\n").unwrap();
        let (example, _) = example.split_once(".EE").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let aliases = tmp.path().join("aliases");
        std::fs::write(&aliases, "root: alice@example.org\n").unwrap();
        let example = example.replace("/etc/aliases", aliases.to_str().unwrap());
        let config = Config::parse(tmp.path().join("c.toml"), &example, None).unwrap();
        assert!(config.account(None).unwrap().is_some());
    }

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(PathBuf::from("/etc/sendbox/config.toml"), text, None)
            .map_err(|e| e.to_string())
    }

    fn parse_err(text: &str) -> String {
        parse(text).expect_err("accepted")
    }

    #[test]
    fn full_example() {
        let config = parse(
            r#"
            default = "work"

            [accounts.work]
            server = "smtp.example.org:587"
            tls = "starttls"
            ca = "certs/private-ca.pem"
            ehlo = "laptop.example.org"
            from = "alice@example.org"
            user = "alice"
            auth = "scram-sha256"
            password_command = "pass show mail/work"

            [accounts.home]
            server = "[2001:db8::1]:465"
            tls = "implicit"
            ca = "~/ca.pem"
            user = "alice@example.net"
            auth = "xoauth2"
            token_env = "HOME_TOKEN"

            [accounts.relay]
            server = "relay.lan"
            tls = "none"
            "#,
        )
        .unwrap();
        let work = config.account(Some("work")).unwrap().unwrap();
        assert_eq!(work.name, "work");
        assert_eq!(
            work.server,
            ServerAddress {
                host: "smtp.example.org".into(),
                port: Some(587)
            }
        );
        assert_eq!(work.tls, TlsArg::Starttls);
        assert_eq!(work.ca, Some("/etc/sendbox/certs/private-ca.pem".into()));
        assert_eq!(work.ehlo.as_deref(), Some("laptop.example.org"));
        assert_eq!(work.address(), Some("alice@example.org"));
        assert_eq!(work.domain(), Some("example.org"));
        assert_eq!(work.user.as_deref(), Some("alice"));
        assert_eq!(work.auth, Some(AuthArg::ScramSha256));
        assert_eq!(
            work.secret,
            SecretSource::PasswordCommand("pass show mail/work".into())
        );
        assert!(!work.keep_header);
        let home = config.account(Some("home")).unwrap().unwrap();
        assert_eq!(home.tls, TlsArg::Implicit);
        assert_eq!(home.ca, Some(dirs::home_dir().unwrap().join("ca.pem")));
        assert_eq!(home.auth, Some(AuthArg::XOAuth2));
        assert_eq!(home.secret, SecretSource::TokenEnv("HOME_TOKEN".into()));
        let relay = config.account(Some("relay")).unwrap().unwrap();
        assert_eq!(
            (relay.tls, &relay.user, &relay.secret),
            (TlsArg::None, &None, &SecretSource::None)
        );
        assert_eq!(config.account(None).unwrap().unwrap().name, "work");
    }

    #[test]
    fn defaults_and_choice_of_account() {
        let one = parse("[accounts.only]\nserver = \"mx.example.org\"\n").unwrap();
        let only = one.account(None).unwrap().unwrap();
        assert_eq!((only.name.as_str(), only.tls), ("only", TlsArg::Starttls));
        let two = parse("[accounts.a]\nserver = \"a\"\n[accounts.b]\nserver = \"b\"\n").unwrap();
        assert!(two.account(None).unwrap().is_none());
        let message = two.account(Some("c")).unwrap_err().to_string();
        assert!(
            message.contains("\"c\"") && message.contains("a, b"),
            "{message}"
        );
        let empty = parse("").unwrap();
        assert!(empty.account(None).unwrap().is_none());
        assert!(
            empty
                .account(Some("x"))
                .unwrap_err()
                .to_string()
                .contains("has no accounts")
        );
    }

    #[test]
    fn scram_has_its_iana_spelling_too() {
        let config =
            parse("[accounts.a]\nserver = \"a\"\nuser = \"u\"\nauth = \"scram-sha-256\"\n")
                .unwrap();
        assert_eq!(
            config.account(None).unwrap().unwrap().auth,
            Some(AuthArg::ScramSha256)
        );
    }

    #[test]
    fn toml_errors_name_file_line_and_column_but_not_the_line() {
        let message = parse_err("[accounts.work]\nserver = \"a\"\npasword = \"hunter2\"\n");
        assert!(
            message.starts_with("/etc/sendbox/config.toml:3:1: "),
            "{message}"
        );
        assert!(message.contains("unknown field `pasword`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let message = parse_err("defualt = \"work\"\n");
        assert!(
            message.contains(":1:1: unknown field `defualt`"),
            "{message}"
        );
        let message = parse_err("[accounts.work]\ntls = \"starttls\"\n");
        assert!(message.contains("missing field `server`"), "{message}");
        let message = parse_err("[accounts.work]\nserver = \"a\"\ntls = \"ssl\"\n");
        assert!(
            message.contains(":3:") && message.contains("unknown variant `ssl`"),
            "{message}"
        );
    }

    #[test]
    fn one_secret_source_at_most() {
        let message = parse_err(
            "[accounts.w]\nserver = \"a\"\nuser = \"u\"\npassword_env = \"P\"\n\
             password_command = \"pass\"\n",
        );
        assert!(message.contains("account \"w\""), "{message}");
        assert!(
            message.contains("both password_env and password_command"),
            "{message}"
        );
    }

    #[test]
    fn cleartext_password_needs_consent() {
        let message =
            parse_err("[accounts.w]\nserver = \"a\"\nuser = \"u\"\npassword = \"hunter2\"\n");
        assert!(message.contains("cleartext password"), "{message}");
        assert!(
            message.contains("allow_cleartext_password = true"),
            "{message}"
        );
        assert!(message.contains("password_command"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn unknown_default_account() {
        let message = parse_err("default = \"wrok\"\n[accounts.work]\nserver = \"a\"\n");
        assert!(
            message.starts_with("/etc/sendbox/config.toml: "),
            "{message}"
        );
        assert!(message.contains("\"wrok\" is not defined"), "{message}");
        assert!(message.contains("work"), "{message}");
    }

    #[test]
    fn secret_must_suit_the_mechanism() {
        for auth in ["plain", "login", "scram-sha256", "cram-md5"] {
            let message = parse_err(&format!(
                "[accounts.w]\nserver = \"a\"\nuser = \"u\"\nauth = \"{auth}\"\n\
                 token_command = \"get-token\"\n"
            ));
            assert!(
                message.contains("token_command gives an OAuth token"),
                "{message}"
            );
            assert!(message.contains(&format!("auth = \"{auth}\"")), "{message}");
        }
        let message = parse_err(
            "[accounts.w]\nserver = \"a\"\nuser = \"u\"\nauth = \"oauthbearer\"\n\
             password_env = \"P\"\n",
        );
        assert!(
            message.contains("password_env gives a password"),
            "{message}"
        );
    }

    #[test]
    fn queue_settings_are_bounded() {
        let error = parse_err("[queue]\nretry_minutes = 307445734561825860\n");
        assert!(
            error.contains("[queue] retry_minutes is at most 1440"),
            "{error}"
        );
        let error = parse_err("[queue]\ngive_up_days = 367\n");
        assert!(
            error.contains("[queue] give_up_days is at most 366"),
            "{error}"
        );
        let config = parse("[queue]\nretry_minutes = 1440\ngive_up_days = 0\n").unwrap();
        assert_eq!(
            (config.queue.retry_secs, config.queue.give_up_secs),
            (86400, 0)
        );
    }

    #[test]
    fn a_password_of_the_wrong_type_is_not_shown() {
        for value in ["12345678", "987654.321", "0x1F2E3D", "[\"hunter2\"]"] {
            let error = parse_err(&format!(
                "[accounts.a]\nserver = \"h\"\nuser = \"u\"\npassword = {value}\n"
            ));
            let inline = parse_err(&format!(
                "accounts.b = {{ server = \"h\", user = \"u\", password = {value} }}\n"
            ));
            assert!(
                !inline.contains("hunter2") && !inline.contains("1234"),
                "{inline}"
            );
            assert!(error.contains("a password must be a string"), "{error}");
            for shown in ["12345678", "987654", "2043453", "1F2E3D", "hunter2"] {
                assert!(!error.contains(shown), "{error}");
            }
        }
    }

    #[test]
    fn server_from_and_ehlo_are_checked_when_the_file_is_read() {
        for (line, said) in [
            (
                "server = \"a:b:c\"",
                "account \"a\": server \"a:b:c\" is not HOST",
            ),
            (
                "server = \"h\"\nfrom = \"bob@@x\"",
                "account \"a\": from: address \"bob@@x\"",
            ),
            (
                "server = \"h\"\nehlo = \"a b\"",
                "account \"a\": ehlo: EHLO name \"a b\"",
            ),
        ] {
            let error = parse_err(&format!("[accounts.a]\n{line}\n"));
            assert!(
                error.starts_with("/etc/sendbox/config.toml: ") && error.contains(said),
                "{error}"
            );
        }
    }

    #[test]
    fn secret_and_auth_need_a_user() {
        let message = parse_err("[accounts.w]\nserver = \"a\"\npassword_env = \"P\"\n");
        assert!(
            message.contains("sets password_env but no user"),
            "{message}"
        );
        let message = parse_err("[accounts.w]\nserver = \"a\"\nauth = \"plain\"\n");
        assert!(message.contains("sets auth but no user"), "{message}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let config = parse(
            "[accounts.w]\nserver = \"a\"\nuser = \"u\"\npassword = \"hunter2\"\n\
             allow_cleartext_password = true\n",
        )
        .unwrap();
        let account = config.account(None).unwrap().unwrap();
        assert_eq!(account.secret, SecretSource::Password("hunter2".into()));
        let secret = account.secret.fetch().unwrap().unwrap();
        assert_eq!(secret, Secret::Password("hunter2".into()));
        for debug in [
            format!("{config:?}"),
            format!("{account:?}"),
            format!("{secret:?}"),
            format!("{:?}", Secret::BearerToken("hunter2".into())),
        ] {
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn cleartext_password_needs_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[accounts.w]\nserver = \"a\"\nuser = \"u\"\npassword = \"hunter2\"\n\
             allow_cleartext_password = true\n",
        )
        .unwrap();

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("mode 0644"), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains("password_command"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let account = config.account(Some("w")).unwrap().unwrap();
        assert_eq!(account.secret, SecretSource::Password("hunter2".into()));
    }

    #[test]
    fn file_location() {
        let dir = Some(PathBuf::from("/home/a/.config"));
        let default = PathBuf::from("/home/a/.config/sendbox/config.toml");
        let no_system = Path::new("/nonexistent/sendbox/config.toml");
        assert_eq!(
            locate(
                Some(Path::new("x.toml")),
                Some("env.toml".into()),
                dir.clone(),
                no_system
            ),
            Some(("x.toml".into(), true))
        );
        assert_eq!(
            locate(None, Some("env.toml".into()), dir.clone(), no_system),
            Some(("env.toml".into(), true))
        );
        assert_eq!(
            locate(None, Some("".into()), dir.clone(), no_system),
            Some((default.clone(), false))
        );
        assert_eq!(
            locate(None, None, dir.clone(), no_system),
            Some((default, false))
        );
        assert_eq!(locate(None, None, None, no_system), None);

        // The system file serves when the user has none, or no home at all; the user's
        // own file wins whole when it exists.
        let tmp = tempfile::tempdir().unwrap();
        let system = tmp.path().join("etc-sendbox.toml");
        std::fs::write(&system, "").unwrap();
        assert_eq!(
            locate(None, None, dir.clone(), &system),
            Some((system.clone(), false))
        );
        assert_eq!(
            locate(None, None, None, &system),
            Some((system.clone(), false))
        );
        let home = tmp.path().join("config");
        std::fs::create_dir_all(home.join("sendbox")).unwrap();
        std::fs::write(home.join("sendbox/config.toml"), "").unwrap();
        assert_eq!(
            locate(None, None, Some(home.clone()), &system),
            Some((home.join("sendbox/config.toml"), false))
        );
    }

    #[test]
    fn queue_log_and_aliases_settings() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("aliases"), "root: admin@example.org\n").unwrap();
        let text = "aliases = \"aliases\"\n[log]\nfile = \"sendbox.log\"\nsyslog = true\n\
                    [queue]\nenabled = false\ndir = \"outbox\"\nretry_minutes = 5\ngive_up_days = 2\n";
        let config = Config::parse(tmp.path().join("config.toml"), text, None).unwrap();
        assert_eq!(
            config.queue,
            QueueSettings {
                enabled: false,
                dir: tmp.path().join("outbox"),
                retry_secs: 300,
                give_up_secs: 2 * 86400,
            }
        );
        assert_eq!(config.log.file, Some(tmp.path().join("sendbox.log")));
        assert_eq!(config.log.syslog, Some(PathBuf::from("/dev/log")));
        assert_eq!(
            config
                .aliases()
                .unwrap()
                .unwrap()
                .expand(&["root".to_owned()])
                .unwrap(),
            ["admin@example.org"]
        );
        let defaults = parse("").unwrap();
        assert_eq!(defaults.queue, QueueSettings::default());
        assert!(defaults.queue.enabled && defaults.queue.retry_secs == 1800);
        assert_eq!(defaults.log, LogSettings::default());
        // Read when used: a missing file stops what needs it, not the config.
        let missing = Config::parse(tmp.path().join("c.toml"), "aliases = \"nope\"\n", None);
        assert!(
            missing
                .unwrap()
                .aliases()
                .unwrap_err()
                .to_string()
                .contains("cannot read the aliases file")
        );
    }

    #[test]
    fn only_the_default_file_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let message = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("cannot read {}", path.display())),
            "{message}"
        );
        let config = Config::read(path.clone(), false).unwrap();
        assert!(config.account(None).unwrap().is_none());
        let message = config.account(Some("work")).unwrap_err().to_string();
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn password_command_takes_the_first_line() {
        let source = SecretSource::PasswordCommand("printf 'secret\\nignored'".into());
        assert_eq!(source.fetch(), Ok(Some(Secret::Password("secret".into()))));
        let source = SecretSource::TokenCommand("printf 'token\\r\\n'".into());
        assert_eq!(
            source.fetch(),
            Ok(Some(Secret::BearerToken("token".into())))
        );
    }

    #[test]
    fn failed_command_shows_its_status_not_its_output() {
        // The output ("secret") differs from the command's text, which the message quotes.
        let source = SecretSource::PasswordCommand("printf 'se%sret' cr; exit 3".into());
        let message = source.fetch().unwrap_err().to_string();
        assert!(message.contains("password_command"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn silent_command_is_an_error() {
        let source = SecretSource::TokenCommand("true".into());
        let message = source.fetch().unwrap_err().to_string();
        assert!(
            message.contains("token_command \"true\" printed nothing"),
            "{message}"
        );
    }

    #[test]
    fn environment_variables() {
        let var = "SENDBOX_TEST_SURELY_UNSET_VARIABLE";
        let message = SecretSource::PasswordEnv(var.into())
            .fetch()
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!("password_env: environment variable {var} is not set")
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            SecretSource::TokenEnv("PATH".into()).fetch(),
            Ok(Some(Secret::BearerToken(path)))
        );
        assert_eq!(SecretSource::None.fetch(), Ok(None));
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncé\nx", 6), (2, 3));
    }

    #[test]
    fn a_user_whose_home_is_missing_gets_the_system_spool_and_no_home_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let data = home.join(".local/share");
        let spool = Path::new(SYSTEM_SPOOL).join("65534");
        // nobody's /nonexistent, or HOME unset.
        assert_eq!(
            default_outbox(Some(home.clone()), Some(data.clone()), 65534),
            spool
        );
        assert_eq!(default_outbox(None, None, 65534), spool);
        assert!(!home.exists(), "a home was made");
        std::fs::create_dir(&home).unwrap();
        assert_eq!(
            default_outbox(Some(home), Some(data.clone()), 1000),
            data.join("sendbox/outbox")
        );
        // XDG_DATA_HOME pointing at a folder that exists, whatever the home.
        assert_eq!(
            default_outbox(None, Some(dir.path().to_owned()), 1000),
            dir.path().join("sendbox/outbox")
        );
    }
}
