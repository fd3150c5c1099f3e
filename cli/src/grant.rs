//! `sendbox grant`: the sender and the grant composed into one component that can reach
//! only the named server, whatever its host allows.
//!
//! Three components, composed with wac-graph (the library behind `wac plug`):
//!
//! ```text
//! policy (constants, made here) --sendbox:grant/policy--> grant --wasi:sockets--> sender
//! ```
//!
//! The policy is a component of constants written here in WAT: the granted endpoints are
//! fixed when the granted component is made, never chosen by the code it confines. The
//! result imports the host's `wasi:sockets` only through the grant, and exports only
//! `sendbox:mail/mail-sender`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

use crate::args::{self, GrantArgs};
use crate::{Stop, exit};

/// The grant component (`grant/`, built by `just grant`).
pub const GRANT: &[u8] = include_bytes!("../component/grant.wasm");

/// Writes the granted sender for the server the arguments name, and says what it grants.
pub async fn run(args: GrantArgs) -> Result<u8, Stop> {
    let (host, port) = args::parse_server(&args.server).map_err(|m| Stop(exit::USAGE, m))?;
    let port = port.ok_or_else(|| {
        Stop(
            exit::USAGE,
            format!("--server {:?} needs a port: HOST:PORT", args.server),
        )
    })?;
    let endpoints = sendbox::mailer::resolve(&host, port)
        .await
        .map_err(|e| Stop(exit::NOHOST, e.to_string()))?;
    let confined = match &args.component {
        Some(path) => std::fs::read(path).map_err(|e| {
            Stop(
                exit::NOINPUT,
                format!("cannot read {}: {e}", path.display()),
            )
        })?,
        None => sendbox::component::COMPONENT.to_vec(),
    };
    // A component given that cannot be confined is bad input; the built-in one, a bug.
    let failed = if args.component.is_some() {
        exit::DATAERR
    } else {
        exit::SOFTWARE
    };
    let granted = compose(&confined, &endpoints)
        .map_err(|e| Stop(failed, format!("cannot compose the grant: {e:#}")))?;
    std::fs::write(&args.output, &granted).map_err(|e| {
        Stop(
            exit::CANTCREAT,
            format!("cannot write {}: {e}", args.output.display()),
        )
    })?;
    println!(
        "{}: {}, granted TCP to {} only ({} bytes)",
        args.output.display(),
        if args.component.is_some() {
            "the component"
        } else {
            "the sender"
        },
        list(&endpoints),
        granted.len()
    );
    Ok(exit::OK)
}

/// The network interfaces the grant serves; a component to confine may import these, in
/// these versions, and no other network interface.
const SERVED: [&str; 7] = [
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
    "wasi:sockets/udp@0.2.12",
    "wasi:sockets/udp-create-socket@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
];

/// What the composed component may import of the network: what the grant itself imports.
const GRANT_IMPORTS: [&str; 4] = [
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
];

/// `confined` (the sender) behind a grant of exactly `endpoints`. Refused: a component
/// that reaches the network other than through the `wasi:sockets` the grant serves.
pub fn compose(confined: &[u8], endpoints: &[SocketAddr]) -> anyhow::Result<Vec<u8>> {
    if endpoints.is_empty() {
        bail!("nothing to grant");
    }
    for name in import_names(confined)? {
        let network = name.starts_with("wasi:sockets/") || name.starts_with("wasi:http/");
        if network && !SERVED.contains(&name.as_str()) {
            bail!("the component imports {name}, which the grant cannot confine");
        }
    }
    let policy = policy_component(endpoints)?;
    let grant = plug(("sendbox:grant", GRANT), ("sendbox:policy", &policy))
        .context("the grant and its policy")?;
    let granted = plug(("sendbox:confined", confined), ("sendbox:granted", &grant))
        .context("the component and its grant")?;
    // Every network import left must be the grant's own: none of the confined
    // component's may have stayed unplugged.
    for name in import_names(&granted)? {
        let network = name.starts_with("wasi:sockets/") || name.starts_with("wasi:http/");
        if network && !GRANT_IMPORTS.contains(&name.as_str()) {
            bail!("the composed component still imports {name} from its host");
        }
    }
    Ok(granted)
}

/// The names a component imports.
fn import_names(component: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes(
        "sendbox:inspected",
        None,
        component.to_vec(),
        graph.types_mut(),
    )?;
    Ok(graph.types()[package.ty()]
        .imports
        .keys()
        .cloned()
        .collect())
}

/// `socket` with the imports that `plug` exports satisfied by it; the rest stay imports.
fn plug(socket: (&str, &[u8]), plug: (&str, &[u8])) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let mut register = |(name, bytes): (&str, &[u8])| -> anyhow::Result<_> {
        let package = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut())?;
        Ok(graph.register_package(package)?)
    };
    let socket = register(socket)?;
    let plug = register(plug)?;
    wac_graph::plug(&mut graph, vec![plug], socket)?;
    Ok(graph.encode(EncodeOptions::default())?)
}

/// A component that exports `sendbox:grant/policy` whose `allowed` returns the endpoints,
/// one per line.
fn policy_component(endpoints: &[SocketAddr]) -> anyhow::Result<Vec<u8>> {
    let text: String = endpoints.iter().map(|e| format!("{e}\n")).collect();
    // The string at offset 16; at offset 8 the (pointer, length) pair `allowed` returns.
    let mut data = String::new();
    for byte in text.bytes() {
        write!(data, "\\{byte:02x}").expect("writing to a String");
    }
    let length: String = (text.len() as u32)
        .to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect();
    let wat = format!(
        r#"(component
  (core module $constants
    (memory (export "memory") 1)
    (data (i32.const 8) "\10\00\00\00{length}")
    (data (i32.const 16) "{data}")
    (func (export "allowed") (result i32) (i32.const 8)))
  (core instance $constants (instantiate $constants))
  (func $allowed (result string)
    (canon lift (core func $constants "allowed") (memory (core memory $constants "memory"))))
  (instance $policy (export "allowed" (func $allowed)))
  (export "sendbox:grant/policy@0.1.0" (instance $policy)))"#
    );
    Ok(wat::parse_str(&wat)?)
}

fn list(endpoints: &[SocketAddr]) -> String {
    endpoints
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
