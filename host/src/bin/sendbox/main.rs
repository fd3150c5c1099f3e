//! The `sendbox` command: `sendbox send`, `sendbox batch` and `sendbox demo`.

mod args;
mod batch;
mod compose;
mod demo;
mod exit;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use sendbox::mailer::format_reply;
use sendbox::{
    Credentials, Delivery, Envelope, Mailer, Sandbox, SandboxOptions, Server, Transcript,
};

use crate::args::{Cli, Command, ConnectionArgs, SendArgs};

/// A failure before anything was sent: the message for the user and the exit code.
struct Stop(u8, String);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
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
        Command::Batch(args) => batch::run(*args).await,
        Command::Demo => demo::run().await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Stop(code, message)) => {
            eprintln!("sendbox: {message}");
            ExitCode::from(code)
        }
    }
}

async fn send(args: SendArgs) -> Result<u8, Stop> {
    // Read everything first: a missing file or password must stop us before we connect.
    let message = compose::message(&args).map_err(|m| Stop(exit::NOINPUT, m))?;
    let mailer = mailer(&args.connection, &SandboxOptions::cached()).await?;
    let envelope = Envelope {
        sender: args.from.clone(),
        recipients: args.to.clone(),
    };
    let delivery = mailer
        .send(&envelope, &message)
        .await
        .map_err(|e| Stop(exit::for_error(&e), e.to_string()))?;
    report(&delivery);
    Ok(exit::for_delivery(&delivery))
}

/// The mailer the connection options describe: server, trust anchors, credentials,
/// transcript. Resolves the server's name.
async fn mailer(connection: &ConnectionArgs, options: &SandboxOptions) -> Result<Mailer, Stop> {
    let (host, port) = args::parse_server(&connection.server).map_err(|m| Stop(exit::USAGE, m))?;
    let tls = connection.tls.into();
    let mut server = Server::new(host, port.unwrap_or(Server::default_port(tls)), tls);
    server.ehlo_name = connection.ehlo.clone();
    if let Some(path) = &connection.ca {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Stop(
                exit::NOINPUT,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        server.ca_pem = Some(pem);
    }
    let credentials = match &connection.user {
        Some(user) => Some(Credentials {
            username: user.clone(),
            password: password(connection)?,
        }),
        None => None,
    };
    let sandbox = Sandbox::with_options(options)
        .map_err(|e| Stop(exit::SOFTWARE, format!("cannot load the component: {e:#}")))?;
    let mailer = Mailer::new(sandbox, server, credentials)
        .await
        .map_err(|e| Stop(exit::for_error(&e), e.to_string()))?;
    Ok(if connection.verbose {
        mailer.with_transcript(Transcript::Stderr)
    } else {
        mailer
    })
}

/// Prints what the server accepted and refused.
fn report(delivery: &Delivery) {
    println!(
        "sent to {}: {}",
        delivery.accepted.join(", "),
        format_reply(&delivery.final_reply)
    );
    for refused in &delivery.refused {
        eprintln!(
            "sendbox: recipient {} refused: {} (the message went to the others)",
            refused.address,
            format_reply(&refused.reply)
        );
    }
}

/// The password, from the environment, a file, or the terminal; never from the command line.
fn password(connection: &ConnectionArgs) -> Result<String, Stop> {
    if let Some(var) = &connection.password_env {
        return std::env::var(var).map_err(|_| {
            Stop(
                exit::USAGE,
                format!("environment variable {var} is not set"),
            )
        });
    }
    if let Some(path) = &connection.password_file {
        return read_password_file(path);
    }
    rpassword::prompt_password("SMTP password: ").map_err(|e| {
        Stop(
            exit::USAGE,
            format!("cannot prompt for the password ({e}); use --password-env or --password-file"),
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
