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

use crate::args::GrantArgs;
use crate::error::Error;
use crate::{escape, exit};

/// The grant component (`grant/`, built by `just grant`).
pub const GRANT: &[u8] = include_bytes!("../component/grant.wasm");

/// Writes the granted sender for the server the arguments name, and says what it grants.
pub async fn run(args: GrantArgs) -> Result<u8, Error> {
    let port = args.server.port.ok_or_else(|| {
        Error::Usage(format!(
            "--server {:?} needs a port: HOST:PORT",
            args.server.to_string()
        ))
    })?;
    let endpoints = sendbox::mailer::resolve(&args.server.host, port)
        .await
        .map_err(|e| Error::NoHost(e.to_string()))?;
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::NoInput(format!("cannot read {}: {e}", escape::path(path))))
    };
    let confined = match &args.component {
        Some(path) => read(path)?,
        None => sendbox::component::COMPONENT.to_vec(),
    };
    // A component given that cannot be confined is bad input; the built-in one, a bug.
    let mut granted = compose(&confined, &endpoints).map_err(|e| match &args.component {
        Some(path) => Error::Data(format!(
            "cannot grant --component {}: {e:#}",
            escape::path(path)
        )),
        None => Error::Internal(format!("cannot grant the built-in sender: {e:#}")),
    })?;
    if let Some(app) = &args.into {
        granted = plug_into(&read(app)?, &granted).map_err(|e| {
            Error::Data(format!(
                "cannot plug the sender into {}: {e:#}",
                escape::path(app)
            ))
        })?;
    }
    std::fs::write(&args.output, &granted).map_err(|e| {
        Error::CannotCreate(format!("cannot write {}: {e}", escape::path(&args.output)))
    })?;
    let what = if args.component.is_some() {
        "the component"
    } else {
        "the sender"
    };
    let whole = match &args.into {
        Some(app) => format!("{} with {what}", escape::path(app)),
        None => what.to_owned(),
    };
    println!(
        "{}: {whole}, granted TCP to {} only ({} bytes)",
        escape::path(&args.output),
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
    let (imports, exports) = names(confined)?;
    if imports
        .iter()
        .any(|name| name.starts_with("sendbox:grant/"))
        || exports.iter().any(|name| name.starts_with("wasi:sockets/"))
    {
        bail!(
            "it is a grant (it serves wasi:sockets, or imports sendbox:grant), not a component \
             that uses the network: give the sender (sendbox/sender), not sendbox/grant"
        );
    }
    for name in &imports {
        if reaches_network(name) && !SERVED.contains(&name.as_str()) {
            bail!("the component imports {name}, which the grant cannot confine");
        }
    }
    if !imports
        .iter()
        .any(|name| name.starts_with("wasi:sockets/tcp@"))
    {
        bail!(
            "it imports no wasi:sockets/tcp, so there is nothing to grant: give the sender \
             component (sendbox/sender), not the WIT package (sendbox/mail)"
        );
    }
    let policy = policy_component(endpoints)?;
    let grant = plug(("sendbox:grant", GRANT), ("sendbox:policy", &policy))
        .context("the grant and its policy")?;
    let granted = plug(("sendbox:confined", confined), ("sendbox:granted", &grant))
        .context("the component and its grant")?;
    only_the_grant_reaches_the_network(&granted)?;
    Ok(granted)
}

/// `app`, which imports `sendbox:mail/mail-sender`, with `sender` (a granted sender)
/// plugged in. Refused: an application that reaches the network itself.
pub fn plug_into(app: &[u8], sender: &[u8]) -> anyhow::Result<Vec<u8>> {
    let imports = import_names(app)?;
    if !imports.iter().any(|name| name.starts_with(MAIL_SENDER)) {
        bail!("it does not import sendbox:mail/mail-sender (in any version)");
    }
    if let Some(name) = imports.iter().find(|name| reaches_network(name)) {
        bail!("it imports {name}, which would reach the network around the grant");
    }
    let whole = plug(("sendbox:app", app), ("sendbox:sender", sender))?;
    if let Some(name) = import_names(&whole)?
        .iter()
        .find(|name| name.starts_with(MAIL_SENDER))
    {
        bail!("it imports {name}, which the granted sender does not export");
    }
    only_the_grant_reaches_the_network(&whole)?;
    Ok(whole)
}

/// The interface an application imports to send mail (any version).
const MAIL_SENDER: &str = "sendbox:mail/mail-sender@";

/// Whether an import can reach the network: `wasi:sockets`, or `wasi:http`'s outgoing
/// handler (its `types` only describe requests and responses).
fn reaches_network(import: &str) -> bool {
    import.starts_with("wasi:sockets/") || import.starts_with("wasi:http/outgoing-handler@")
}

/// Every network import of a composed component must be the grant's own: none of the
/// confined component's, nor an application's, may have stayed unplugged.
fn only_the_grant_reaches_the_network(composed: &[u8]) -> anyhow::Result<()> {
    for name in import_names(composed)? {
        if reaches_network(&name) && !GRANT_IMPORTS.contains(&name.as_str()) {
            bail!("the composed component still imports {name} from its host");
        }
    }
    Ok(())
}

/// The names a component imports.
fn import_names(component: &[u8]) -> anyhow::Result<Vec<String>> {
    Ok(names(component)?.0)
}

/// The names a component imports and exports. What is not a valid component is said in a
/// person's words, not the composition library's (`package 'sendbox:inspected' is not a
/// binary-encoded WebAssembly component`), and before anything is composed from it.
fn names(component: &[u8]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    // The preamble: `\0asm`, then the version and layer (1 and 0 for a core module).
    match component.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => bail!(
            "it is a core WebAssembly module, not a component: build it for wasm32-wasip2, \
             or make it one with `wasm-tools component new`"
        ),
        Some([0, b'a', b's', b'm', ..]) => {}
        _ => bail!(
            "it is not WebAssembly (no `\\0asm` at its start): give a component, such as \
             the sender's, built for wasm32-wasip2"
        ),
    }
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(component)
        .map_err(|e| anyhow::anyhow!("it is not a valid component (damaged or cut short?): {e}"))?;
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes(
        "sendbox:inspected",
        None,
        component.to_vec(),
        graph.types_mut(),
    )?;
    let world = &graph.types()[package.ty()];
    Ok((
        world.imports.keys().cloned().collect(),
        world.exports.keys().cloned().collect(),
    ))
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
