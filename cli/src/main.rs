//! The `sendbox` command: `sendbox send`, `sendbox sendmail`, `sendbox queue`, `sendbox
//! serve`, `sendbox batch`, `sendbox grant` and `sendbox demo`. Invoked through a link named `sendmail`, it
//! is `sendbox sendmail`.

mod aliases;
mod args;
mod batch;
mod compose;
mod config;
mod demo;
mod dsn;
mod escape;
mod exit;
mod grant;
mod log;
mod outbox;
mod queue;
mod sendmail;
mod serve;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use clap::ValueEnum as _;
use rustls::pki_types::pem::PemObject as _;
use sendbox::mailer::Timeouts;
use sendbox::{
    Credentials, Delivery, Envelope, Limits, Mailer, Message, Sandbox, SandboxOptions, Secret,
    SendOptions, Server, Transcript,
};

use crate::args::{Cli, Command, ConnectionArgs, DeliveryArgs, QueueAction, QueueArgs, SendArgs};
use crate::config::{Account, Config, SecretSource};

/// A failure before anything was sent: the message for the user and the exit code.
#[derive(Debug)]
struct Stop(u8, String);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let invoked_as = argv.next().unwrap_or_default();
    if Path::new(&invoked_as).file_name() == Some("sendmail".as_ref()) {
        return finish(sendmail(argv.collect()).await);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.command {
        Command::Send(args) => send(*args).await,
        Command::Sendmail { args } => sendmail(args).await,
        Command::Batch(args) => batch::run(*args).await,
        Command::Demo => demo::run().await,
        Command::Grant(args) => grant::run(args).await,
        Command::Queue(args) => queue_command(args).await,
        Command::Serve(args) => serve::run(args).await,
    };
    finish(result)
}

fn finish(result: Result<u8, Stop>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Stop(code, message)) => {
            // A server's reply may be in it: no escape sequence reaches the terminal.
            eprintln!("sendbox: {}", escape::escaped_lines(&message));
            ExitCode::from(code)
        }
    }
}

async fn send(args: SendArgs) -> Result<u8, Stop> {
    // Read everything first: a missing file or password must stop us before we connect.
    let config = load_config(args.connection.config.as_deref())?;
    let account = connection_account(&config, &args.connection)?;
    let from = args
        .from
        .as_deref()
        .or(account.and_then(|a| a.from.as_deref()));
    let no_from = match account {
        Some(account) => format!("give --from, or a `from` in account {}", account.name),
        None if args.connection.server.is_some() => "give --from: with --server and no \
            --account no account is used, nor its `from`"
            .to_owned(),
        None => format!(
            "give --from, or {}",
            config.no_default_account("an account with a `from`")
        ),
    };
    let (envelope, message) = compose::message(&args, from, &no_from)?;
    let mut options = send_options(&args.delivery);
    options.keep_raw_header |= account.is_some_and(|a| a.keep_header);
    if args.queue {
        return send_queued(&config, &args, account, &envelope, message, &options).await;
    }
    let mailer = mailer(&args.connection, account, &SandboxOptions::cached()).await?;
    deliver(&mailer, &envelope, message, &options, true).await
}

/// `send --queue`: the component builds the message now, with no network, and the outbox
/// keeps what it built with the completed envelope, so that every attempt sends the same
/// bytes (one Date, one Message-ID) through the account.
async fn send_queued(
    config: &Config,
    args: &SendArgs,
    account: Option<&Account>,
    envelope: &Envelope,
    message: Message,
    options: &SendOptions,
) -> Result<u8, Stop> {
    let account = account.ok_or_else(|| {
        Stop(
            exit::CONFIG,
            config.no_default_account("--queue sends through an account later, so it needs one"),
        )
    })?;
    if !config.queue.enabled {
        return Err(Stop(
            exit::CONFIG,
            "--queue: the outbox is turned off in the config file ([queue] enabled = false)"
                .to_owned(),
        ));
    }
    let sandbox = Sandbox::with_options(&SandboxOptions::cached())
        .map_err(|e| Stop(exit::SOFTWARE, format!("cannot load the component: {e:#}")))?;
    let prepared = sendbox::prepare(&sandbox, envelope, message, options)
        .await
        .map_err(|e| Stop(exit::for_error(&e), e.to_string()))?;
    let queued = outbox::Envelope {
        account: Some(account.name.clone()),
        sender: Some(prepared.sender),
        recipients: prepared.recipients,
        recipients_from_headers: false,
        qualify_domain: None,
        dsn_notify: args.delivery.dsn_notify.map(dsn::notify_text),
        dsn_ret: args.delivery.dsn_ret.map(|r| dsn::ret_text(r).to_owned()),
        dsn_envid: args.delivery.dsn_envid.clone(),
        // Built and completed already: sent byte for byte from now on.
        keep_raw_header: true,
        require_tls: options.require_tls,
        accepted_at: outbox::now(),
    };
    through_outbox(config, &args.connection, account, queued, prepared.content).await
}

/// sendmail(1): the message on stdin, the server from the config file's account, quiet
/// on success, sysexits codes on failure.
async fn sendmail(args: Vec<OsString>) -> Result<u8, Stop> {
    let args = sendmail::parse(args).map_err(|m| Stop(exit::USAGE, m))?;
    if args.help {
        print!("{}", sendmail::USAGE);
        return Ok(exit::OK);
    }
    if args.version {
        println!("sendbox {}", env!("CARGO_PKG_VERSION"));
        return Ok(exit::OK);
    }
    let config = load_config(args.config.as_deref())?;
    let account = account(&config, args.account.as_deref())?.ok_or_else(|| {
        Stop(
            exit::CONFIG,
            config.no_default_account("sendmail needs an account"),
        )
    })?;
    let message = sendmail::read_message(std::io::stdin().lock(), args.ignore_dots)
        .map_err(|e| Stop(exit::IOERR, format!("cannot read the message: {e}")))?;
    // -t is done here rather than in the component, so that the aliases apply to the
    // header's names too.
    let (recipients, message) = if args.extract_recipients {
        sendmail::extract_recipients(args.recipients.clone(), message)
            .map_err(|m| Stop(exit::DATAERR, m))?
    } else {
        (args.recipients.clone(), message)
    };
    // Like an MTA: -f wins over the account's address, and bare names such as `root`
    // (cron's) get the domain of the account's address.
    let account_address = account
        .from
        .as_deref()
        .map(compose::mailbox)
        .transpose()?
        .map(|m| m.address);
    let envelope = Envelope {
        sender: args.sender.clone().or_else(|| account_address.clone()),
        recipients: config
            .aliases
            .expand(&recipients)
            .map_err(|m| Stop(exit::CONFIG, m))?,
        recipients_from_headers: false,
        qualify_domain: account_address
            .as_deref()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, domain)| domain.to_owned()),
    };
    let options = SendOptions {
        dsn: args.dsn(),
        require_tls: false,
        keep_raw_header: account.keep_header,
    };
    let connection = ConnectionArgs {
        verbose: args.verbose,
        ..ConnectionArgs::default()
    };
    if config.queue.enabled {
        let queued = outbox::Envelope {
            account: Some(account.name.clone()),
            sender: envelope.sender.clone(),
            recipients: envelope.recipients.clone(),
            recipients_from_headers: envelope.recipients_from_headers,
            qualify_domain: envelope.qualify_domain.clone(),
            dsn_notify: args.dsn_notify.map(dsn::notify_text),
            dsn_ret: args.dsn_return.map(|r| dsn::ret_text(r).to_owned()),
            dsn_envid: args.dsn_envid.clone(),
            keep_raw_header: options.keep_raw_header,
            require_tls: false,
            accepted_at: outbox::now(),
        };
        return through_outbox(&config, &connection, account, queued, message).await;
    }
    let mailer = mailer(&connection, Some(account), &SandboxOptions::cached()).await?;
    deliver(
        &mailer,
        &envelope,
        Message::Raw(message),
        &options,
        args.verbose,
    )
    .await
}

/// sendmail and `send --queue` with the outbox: the message is on disk before anything
/// else, then tried at once. Exit 0 once it is delivered or safely queued; a permanent
/// failure still fails.
async fn through_outbox(
    config: &Config,
    connection: &ConnectionArgs,
    account: &Account,
    queued: outbox::Envelope,
    message: Vec<u8>,
) -> Result<u8, Stop> {
    let outbox = queue::open(&config.queue)?;
    let locked = outbox
        .accept(&queued, &message)
        .map_err(|e| Stop(e.code, e.message))?;
    let id = locked.id.clone();
    let attempt = match (
        mailer(connection, Some(account), &SandboxOptions::cached()).await,
        queue::request(&queued, account),
    ) {
        (Ok(mailer), Ok((envelope, options))) => mailer
            .send_with(&envelope, Message::Raw(message), &options)
            .await
            .into(),
        // Accepted already: a problem of the account or the network waits for a retry.
        (Err(Stop(code, reason)), _) => queue::Attempt::Failed {
            permanent: false,
            code,
            reason,
        },
        (_, Err(unsendable)) => unsendable.into(),
    };
    match queue::settle(&outbox, locked, attempt, config)? {
        queue::Outcome::Delivered(delivery) => {
            report(&delivery, connection.verbose);
            let refused_for_good = delivery.refused.iter().any(|r| r.reply.code / 100 == 5);
            Ok(if refused_for_good {
                exit::NOUSER
            } else {
                exit::OK
            })
        }
        queue::Outcome::Queued(reason) => {
            let next = match outbox.peek(&id).ok().and_then(|p| p.attempts.ok()) {
                Some(attempts) => format!(
                    "in {}",
                    queue::age(attempts.next_at.saturating_sub(outbox::now()))
                ),
                None => "later".to_owned(),
            };
            eprintln!(
                "sendbox: queued as {id} in {}, not delivered yet: {}\n  \
                 `sendbox queue run` (cron, the systemd timer) tries it again {next}; \
                 `sendbox queue flush` tries it now",
                outbox.root().display(),
                escape::escaped(&reason)
            );
            Ok(exit::OK)
        }
        queue::Outcome::Failed(code, reason) => Err(Stop(
            code,
            format!(
                "{reason} (kept as {id} in {}/failed)",
                outbox.root().display()
            ),
        )),
    }
}

/// `sendbox queue`.
async fn queue_command(args: QueueArgs) -> Result<u8, Stop> {
    let config = load_config(args.config.as_deref())?;
    match args.action {
        QueueAction::List => queue::list(&config),
        QueueAction::Run => queue::run(&config, false).await,
        QueueAction::Flush => queue::run(&config, true).await,
        QueueAction::Show { id } => queue::show(&config, &id),
        QueueAction::Remove { id: Some(id), .. } => queue::remove(&config, &id),
        QueueAction::Remove { id: None, .. } => queue::remove_failed(&config),
    }
}

/// Sends, reports what the server accepted and refused, and picks the exit code.
async fn deliver(
    mailer: &Mailer,
    envelope: &Envelope,
    message: Message,
    options: &SendOptions,
    report_success: bool,
) -> Result<u8, Stop> {
    let delivery = mailer
        .send_with(envelope, message, options)
        .await
        .map_err(|e| Stop(exit::for_error(&e), e.to_string()))?;
    report(&delivery, report_success);
    Ok(exit::for_delivery(&delivery))
}

fn load_config(explicit: Option<&Path>) -> Result<Config, Stop> {
    Config::load(explicit).map_err(|m| Stop(exit::CONFIG, m))
}

fn account<'c>(config: &'c Config, name: Option<&str>) -> Result<Option<&'c Account>, Stop> {
    config.account(name).map_err(|m| Stop(exit::CONFIG, m))
}

/// The account `send` and `batch` use: the one named with --account, else the default
/// one, but none when --server names a server without --account, so that an account's
/// login never goes to a server other than its own.
fn connection_account<'c>(
    config: &'c Config,
    connection: &ConnectionArgs,
) -> Result<Option<&'c Account>, Stop> {
    if connection.server.is_some() && connection.account.is_none() {
        return Ok(None);
    }
    account(config, connection.account.as_deref())
}

/// The DSN and REQUIRETLS options.
fn send_options(delivery: &DeliveryArgs) -> SendOptions {
    let dsn = dsn::request(
        delivery.dsn_notify,
        delivery.dsn_ret,
        delivery.dsn_envid.clone(),
    );
    SendOptions {
        dsn,
        require_tls: delivery.require_tls,
        keep_raw_header: delivery.keep_header,
    }
}

/// The mailer the options and the account describe (options win): server, trust
/// anchors, credentials, transcript. Resolves the server's name.
async fn mailer(
    connection: &ConnectionArgs,
    account: Option<&Account>,
    options: &SandboxOptions,
) -> Result<Mailer, Stop> {
    let server_text = connection
        .server
        .as_deref()
        .or(account.map(|a| a.server.as_str()))
        .ok_or_else(|| {
            Stop(
                exit::USAGE,
                "give --server, or an account in the config file".to_owned(),
            )
        })?;
    let (host, port) = args::parse_server(server_text).map_err(|m| Stop(exit::USAGE, m))?;
    let tls = connection
        .tls
        .or(account.map(|a| a.tls))
        .unwrap_or_default()
        .into();
    let mut server = Server::new(host, port.unwrap_or(Server::default_port(tls)), tls);
    server.timeouts = connection.timeout.map(timeouts);
    server.ehlo_name = connection
        .ehlo
        .clone()
        .or_else(|| account.and_then(|a| a.ehlo.clone()));
    let ca = match (&connection.ca, account.and_then(|a| a.ca.as_deref())) {
        (Some(path), _) => Some(("--ca", path.as_path())),
        (None, Some(path)) => Some(("the account's `ca`", path)),
        (None, None) => None,
    };
    if let Some((given_by, path)) = ca {
        let unusable =
            |code, why: String| Stop(code, format!("{given_by} {}: {why}", path.display()));
        let pem = std::fs::read_to_string(path)
            .map_err(|e| unusable(exit::NOINPUT, format!("cannot read it: {e}")))?;
        // Checked here, so that the error names the file and where it was given.
        let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>();
        if !certificates.is_ok_and(|found| !found.is_empty()) {
            return Err(unusable(
                exit::CONFIG,
                "not a CA certificate in PEM (-----BEGIN CERTIFICATE-----); give the CA's \
                 certificate, not the server's key or a DER file"
                    .to_owned(),
            ));
        }
        server.ca_pem = Some(pem);
    }
    let credentials = credentials(connection, account)?;
    let sandbox = Sandbox::with_options(options)
        .map_err(|e| Stop(exit::SOFTWARE, format!("cannot load the component: {e:#}")))?;
    let host = server.host.clone();
    let resolved = Mailer::new(sandbox, server, credentials);
    let mailer = match connection.timeout {
        // The name is resolved here, in the host: --timeout bounds that too.
        Some(seconds) => tokio::time::timeout(Duration::from_secs(seconds.into()), resolved)
            .await
            .map_err(|_| {
                Stop(
                    exit::TEMPFAIL,
                    format!("resolving {host} took longer than --timeout {seconds} s"),
                )
            })?,
        None => resolved.await,
    }
    .map_err(|e| Stop(exit::for_error(&e), e.to_string()))?;
    let mailer = match connection.timeout {
        Some(seconds) => mailer.with_limits(Limits {
            run_time: Duration::from_secs(u64::from(seconds) + RUN_TIME_GRACE_SECS),
            ..Limits::default()
        }),
        None => mailer,
    };
    Ok(if connection.verbose {
        mailer.with_transcript(Transcript::Stderr)
    } else {
        mailer
    })
}

/// How much longer than --timeout the host lets a call run before it stops it, so that
/// the component reports its own timeout (with the stage it was in) first.
const RUN_TIME_GRACE_SECS: u64 = 5;

/// The time limits for `--timeout SECONDS`: the whole call (the component's overall
/// deadline) is `seconds`, and connecting and every stage get RFC 5321's limit (section
/// 4.5.3.2; 30 s to connect), or `seconds` when that is shorter.
fn timeouts(seconds: u32) -> Timeouts {
    let limit = seconds.saturating_mul(1000);
    let stage = |rfc_ms: u32| rfc_ms.min(limit);
    Timeouts {
        connect_ms: stage(30_000),
        greeting_ms: stage(300_000),
        command_ms: stage(300_000),
        mail_ms: stage(300_000),
        rcpt_ms: stage(300_000),
        data_start_ms: stage(120_000),
        data_block_ms: stage(180_000),
        data_end_ms: stage(600_000),
        total_ms: limit,
    }
}

/// The user, secret and mechanism, each from the options when given, else from the
/// account (field by field, as msmtp merges its command line with its account). A
/// password is prompted for when neither says where the secret comes from.
fn credentials(
    connection: &ConnectionArgs,
    account: Option<&Account>,
) -> Result<Option<Credentials>, Stop> {
    let usage = |message: String| Stop(exit::USAGE, message);
    let secret_option = [
        ("--password-env", connection.password_env.is_some()),
        ("--password-file", connection.password_file.is_some()),
        ("--token-env", connection.token_env.is_some()),
        ("--auth", connection.auth.is_some()),
    ]
    .into_iter()
    .find_map(|(name, given)| given.then_some(name));
    let Some(username) = connection
        .user
        .clone()
        .or_else(|| account.and_then(|a| a.user.clone()))
    else {
        if let Some(option) = secret_option {
            return Err(usage(format!(
                "{option} needs a user name: give --user, or a `user` in the account"
            )));
        }
        return Ok(None);
    };
    let from_options = connection.password_env.is_some()
        || connection.password_file.is_some()
        || connection.token_env.is_some();
    let account_secret = account
        .map(|a| &a.secret)
        .filter(|s| !from_options && **s != SecretSource::None);
    // Whether the secret will be a token, known before it is fetched or prompted for.
    let (gives_token, source) = match account_secret {
        Some(secret) => (secret.is_token(), format!("the account's {}", secret.key())),
        None if connection.token_env.is_some() => (true, "--token-env".to_owned()),
        None if connection.password_env.is_some() => (false, "--password-env".to_owned()),
        None if connection.password_file.is_some() => (false, "--password-file".to_owned()),
        None => (false, "the password prompt".to_owned()),
    };
    let (auth, auth_source) = match (connection.auth, account.and_then(|a| a.auth)) {
        (Some(auth), _) => (Some(auth), "--auth"),
        (None, Some(auth)) => (Some(auth), "the account's auth"),
        (None, None) => (None, ""),
    };
    if let Some(auth) = auth
        && auth.takes_token() != gives_token
    {
        let name = auth
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let (gives, wants) = if gives_token {
            ("an OAuth token", "oauthbearer or xoauth2")
        } else {
            ("a password", "scram-sha256, plain, login or cram-md5")
        };
        return Err(usage(format!(
            "{source} gives {gives}, which {auth_source} {name} cannot use; give --auth {wants}"
        )));
    }
    let secret = match account_secret {
        Some(secret) => {
            let name = account.map(|a| a.name.as_str()).unwrap_or_default();
            secret
                .fetch()
                .map_err(|m| Stop(exit::CONFIG, format!("account {name}: {m}")))?
                .ok_or_else(|| Stop(exit::CONFIG, format!("account {name}: no secret")))?
        }
        None => secret_from_options(connection)?,
    };
    Ok(Some(Credentials {
        username,
        secret,
        mechanism: auth.map(Into::into),
    }))
}

/// Prints what the server accepted (unless quiet) and what it refused.
fn report(delivery: &Delivery, report_success: bool) {
    if report_success {
        println!(
            "sent to {}: {}",
            escape::escaped(delivery.accepted.join(", ")),
            escape::escaped(delivery.final_reply.to_string())
        );
    }
    for refused in &delivery.refused {
        eprintln!(
            "sendbox: recipient {} refused: {} (the message went to the others)",
            escape::escaped(&refused.address),
            escape::escaped(refused.reply.to_string())
        );
    }
}

/// The secret from the options: a token or password from the environment, a password
/// from a file, or from the terminal; never from the command line itself.
fn secret_from_options(connection: &ConnectionArgs) -> Result<Secret, Stop> {
    let from_env = |var: &str| config::secret_from_env(var).map_err(|m| Stop(exit::USAGE, m));
    if let Some(var) = &connection.token_env {
        return from_env(var).map(Secret::BearerToken);
    }
    if let Some(var) = &connection.password_env {
        return from_env(var).map(Secret::Password);
    }
    if let Some(path) = &connection.password_file {
        return read_password_file(path).map(Secret::Password);
    }
    rpassword::prompt_password("SMTP password: ")
        .map(Secret::Password)
        .map_err(|e| {
            Stop(
                exit::USAGE,
                format!(
                    "cannot prompt for the password ({e}); use --password-env or --password-file"
                ),
            )
        })
}

fn read_password_file(path: &Path) -> Result<String, Stop> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Stop(
            exit::NOINPUT,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}
