//! The `sendbox` command: `sendbox send`, `sendbox sendmail`, `sendbox queue`, `sendbox
//! serve`, `sendbox batch`, `sendbox grant`, `sendbox generate` and `sendbox demo`.
//! Invoked through a link named `sendmail`, it is `sendbox sendmail`; named `mailq`,
//! `sendmail -bp`; named `newaliases`, `sendmail -bi`.
//!
//! This file only dispatches: `args` is the command line, `connection` resolves the options
//! and the account into a server to reach, each command has its module, and what stops a
//! command is an `error::Error`, which `exit` turns into a code.

mod aliases;
mod args;
mod batch;
mod compose;
mod config;
mod connection;
mod demo;
mod dkim;
mod dsn;
mod error;
mod escape;
mod exit;
mod generate;
mod grant;
mod log;
mod outbox;
mod output;
mod queue;
mod send;
mod sendmail;
mod serve;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::error::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let invoked_as = argv.next().unwrap_or_default();
    // Through a link named sendmail, mailq or newaliases, it is that command.
    let name = Path::new(&invoked_as).file_name().unwrap_or_default();
    if let Some(implied) = sendmail::implied_by(name) {
        let args = implied.iter().map(Into::into).chain(argv).collect();
        return finish(sendmail::run(args).await);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            // It may quote an argument: no escape sequence reaches the terminal.
            eprint!("{}", escape::escaped_lines(&error.render().to_string()));
            return ExitCode::from(exit::USAGE);
        }
        // --help and --version.
        Err(help) => {
            let _ = help.print();
            return ExitCode::from(exit::OK);
        }
    };
    let result = match cli.command {
        Command::Send(args) => send::run(*args).await,
        Command::Sendmail { args } => sendmail::run(args).await,
        Command::Batch(args) => batch::run(*args).await,
        Command::Demo => demo::run().await,
        Command::Grant(args) => grant::run(args).await,
        Command::Queue(args) => queue::command(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Generate(args) => generate::run(args),
        Command::Dkim(args) => dkim::command(args),
    };
    finish(result)
}

fn finish(result: Result<u8, Error>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // A server's reply may be in it: no escape sequence reaches the terminal.
            eprintln!("sendbox: {}", escape::escaped_lines(&error.to_string()));
            ExitCode::from(exit::code(&error))
        }
    }
}
