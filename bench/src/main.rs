//! `sendbox-bench` measures sendbox against native SMTP clients in the same run, on
//! loopback only, and prints a markdown table of medians with the ratio sendbox / peer.
//!
//! The workloads, one module each: [`cold_start`] (a whole process sends one message over
//! STARTTLS and AUTH to Postfix), [`homeless`] (one send without a home, so without a
//! compiled-code cache, against one with it and against msmtp), [`throughput`] (one and many connections to smtp-sink),
//! [`tls_bulk`] (one and many connections over STARTTLS and AUTH to a sink in this process,
//! against lettre), [`handshake`] (a TLS session in the component against native rustls),
//! [`footprint`] (size, compile and instantiation time), [`grant`] (a send through
//! `sendbox grant`'s component against one without), [`outbox`] (`sendbox serve` taking
//! messages into the outbox, and `sendbox queue flush` draining it), [`large`] (a 25 MB
//! message, raw and composed, against curl), [`dkim`] (a batch signed with RSA and with
//! Ed25519 against the same batch unsigned) and [`idle`] (`sendbox serve`'s memory with 16
//! idle connections, against msmtpd).
//!
//! It needs the test Postfix (`bash tests/postfix/setup.sh`) and the release `sendbox`
//! next to it (`cargo build --release -p sendbox-cli`). A peer that is missing or fails gets
//! `n/a (reason)` in its row. `just bench` installs the peers and runs it.

mod cold_start;
mod dkim;
mod footprint;
mod grant;
mod handshake;
mod homeless;
mod idle;
mod large;
mod machine;
mod outbox;
mod report;
mod setup;
mod throughput;
mod tls_bulk;
mod tls_sink;

use std::path::PathBuf;

use clap::Parser;
use sendbox::Sandbox;

use crate::report::Table;
use crate::setup::{Plan, Setup, SmtpSink};
use crate::throughput::Target;

/// Measure sendbox against native SMTP clients on loopback.
#[derive(Parser)]
struct Args {
    /// Few repetitions and messages: a smoke run, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// The sendbox CLI to measure [default: `sendbox` next to this program].
    #[arg(long)]
    sendbox: Option<PathBuf>,
    /// Where tests/postfix/setup.sh keeps the test CA, user name and password.
    #[arg(long, default_value = "/var/lib/sendbox-postfix")]
    postfix_dir: PathBuf,
    /// Run only these workloads (repeatable): cold-start, homeless, throughput, tls-bulk,
    /// handshake, grant, outbox, serve-idle, large, footprint, dkim.
    #[arg(long, value_name = "WORKLOAD")]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan::new(args.quick);
    let setup = Setup::new(args.sendbox, &args.postfix_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let sandbox = Sandbox::new().map_err(|e| format!("{e:#}"));
    let mut table = Table::default();

    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wanted("cold-start") {
        cold_start::run(&setup, &plan, &mut table);
    }
    if wanted("homeless") {
        homeless::run(&setup, &plan, &mut table);
    }
    let message = throughput::message_file(&setup);
    {
        // smtp-sink runs until `sink` is dropped, at the end of this block.
        let sink = setup
            .peers
            .smtp_sink
            .clone()
            .and_then(|program| SmtpSink::start(&program));
        let target = sink.as_ref().map_err(Clone::clone).and_then(|sink| {
            Ok(Target {
                sink: sink.address,
                message: message.clone()?,
            })
        });
        if wanted("throughput") {
            throughput::run(&setup, &plan, &target, &mut table);
        }
        if wanted("tls-bulk") {
            tls_bulk::run(&setup, &plan, &message, &mut table);
        }
        if wanted("handshake") {
            handshake::run(&setup, &plan, &sandbox, &runtime, &mut table);
        }
        if wanted("grant") {
            grant::run(&setup, &plan, &runtime, &mut table);
        }
        if wanted("outbox") {
            outbox::run(&setup, &plan, &target, &mut table);
        }
        if wanted("serve-idle") {
            idle::run(&setup, &plan, &mut table);
        }
        if wanted("dkim") {
            dkim::run(&setup, &plan, &target, &mut table);
        }
        if wanted("large") {
            large::run(&setup, &plan, &runtime, &mut table);
        }
        if wanted("footprint") {
            footprint::run(&plan, &sandbox, &runtime, &mut table);
        }
    }

    println!(
        "# sendbox benchmarks{}\n",
        if args.quick { " (--quick)" } else { "" }
    );
    println!("{}", machine::describe(&setup));
    println!(
        "Medians over: cold starts {}, throughput runs {}, TLS bulk runs {} of {} messages, \
         TLS sessions {}, instantiations {}. \
         ratio = sendbox / peer: above 1 means sendbox takes longer (ms), sends faster \
         (msg/s) or uses more memory (MiB).\n",
        plan.cold_starts,
        plan.throughput_runs,
        plan.tls_runs,
        plan.tls_messages,
        plan.handshakes,
        plan.instantiations
    );
    print!("{table}");
    Ok(())
}
