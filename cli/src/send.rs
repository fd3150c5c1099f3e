//! `sendbox send`: one message, composed or raw, straight to the server or through the
//! outbox (`--queue`). Also how a delivery is reported, which sendmail shares.

use sendbox::{Delivery, Envelope, Mailer, Message, Sandbox, SandboxOptions, SendOptions};

use crate::args::{DeliveryArgs, SendArgs};
use crate::config::{self, Account, Config};
use crate::connection::{self, Connection};
use crate::dkim::Dkim;
use crate::error::{self, Error};
use crate::escape::escaped;
use crate::{compose, dsn, exit, outbox, queue};

pub async fn run(args: SendArgs) -> Result<u8, Error> {
    // Read everything first: a missing file or password must stop us before we connect.
    let config = Config::load(args.connection.config.as_deref())?;
    let account = connection::account(&config, &args.connection)?;
    let from = match &args.from {
        Some(text) => {
            Some(compose::mailbox(text).map_err(|why| Error::Data(format!("--from: {why}")))?)
        }
        None => account.and_then(|a| a.from.clone()),
    };
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
    if args.queue && args.dkim.dkim_key.is_some() {
        return Err(Error::Usage(
            "--dkim-key with --queue: a queued message is signed at each attempt with its \
             account's key; set dkim_key_file, dkim_selector and dkim_domain in the account"
                .to_owned(),
        ));
    }
    // With --queue, the account's key is checked now (the component refuses a bad one),
    // and used at each attempt.
    options.dkim = Dkim::resolve(&args.dkim, account)
        .map(|dkim| dkim.signing())
        .transpose()?;
    if args.queue {
        return send_queued(&config, &args, account, envelope, message, &options).await;
    }
    let mailer = Connection::resolve(&args.connection, account)?
        .mailer(&SandboxOptions::cached())
        .await?;
    deliver(&mailer, &envelope, message, &options, true).await
}

/// `send --queue`: the component builds the message now, with no network, and the outbox
/// keeps what it built with the completed envelope, so that every attempt sends the same
/// bytes (one Date, one Message-ID) through the account.
async fn send_queued(
    config: &Config,
    args: &SendArgs,
    account: Option<&Account>,
    envelope: Envelope,
    message: Message,
    options: &SendOptions,
) -> Result<u8, Error> {
    let account = account.ok_or_else(|| {
        config::Error::from(
            config.no_default_account("--queue sends through an account later, so it needs one"),
        )
    })?;
    if !config.queue.enabled {
        return Err(config::Error::from(
            "--queue: the outbox is turned off in the config file ([queue] enabled = false)"
                .to_owned(),
        )
        .into());
    }
    let sandbox = Sandbox::with_options(&SandboxOptions::cached()).map_err(error::component)?;
    let prepared = sendbox::prepare(&sandbox, &envelope, message, options).await?;
    let completed = Envelope {
        sender: Some(prepared.sender),
        recipients: prepared.recipients,
        recipients_from_headers: false,
        qualify_domain: None,
    };
    // Built and completed already: sent byte for byte from now on.
    let options = SendOptions {
        keep_raw_header: true,
        dkim: None,
        ..options.clone()
    };
    let queued = outbox::Envelope::new(&account.name, completed, &options, outbox::now());
    let verbose = args.connection.verbose;
    queue::accept_and_try(config, account, verbose, true, queued, prepared.content).await
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
        dkim: None,
    }
}

/// Sends, reports what the server accepted and refused, and picks the exit code.
pub async fn deliver(
    mailer: &Mailer,
    envelope: &Envelope,
    message: Message,
    options: &SendOptions,
    report_success: bool,
) -> Result<u8, Error> {
    let delivery = mailer.send_with(envelope, message, options).await?;
    report(&delivery, report_success);
    Ok(exit::for_delivery(&delivery))
}

/// Prints what the server accepted (unless quiet) and what it refused.
pub fn report(delivery: &Delivery, report_success: bool) {
    if report_success {
        println!(
            "sent to {}: {}",
            escaped(delivery.accepted.join(", ")),
            escaped(delivery.final_reply.to_string())
        );
    }
    for refused in &delivery.refused {
        eprintln!(
            "sendbox: recipient {} refused: {} (the message went to the others)",
            escaped(&refused.address),
            escaped(refused.reply.to_string())
        );
    }
}
