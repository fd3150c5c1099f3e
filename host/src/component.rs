//! The sendbox component: the committed `.wasm` embedded in this crate, compiled once per
//! [`Sandbox`] and linked against WASI, ready to be instantiated per call.
//!
//! `build.rs` refuses to build when `component/sendbox.wasm` is older than the guest, proto
//! or WIT sources, so a stale component can never be tested or shipped.

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use crate::policy::{self, Confined, Limits, NetworkGrant, Transcript};

/// The component, built from `guest/` by `just guest`.
pub const COMPONENT: &[u8] = include_bytes!("../component/sendbox.wasm");

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sender",
    exports: { default: async },
});

pub use exports::sendbox::mail::mail_sender as wit;

/// A wasmtime engine set up as sendbox runs components: epoch interruption on, so that
/// [`policy::confined_store`] can stop a guest that computes instead of waiting, and a
/// thread that advances the epoch for as long as the engine lives.
pub fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    policy::start_epoch_ticker(&engine);
    Ok(engine)
}

/// A compiled, linked component, shared by every send.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    pre: SenderPre<Confined>,
}

impl Sandbox {
    /// Compiles the embedded component.
    pub fn new() -> anyhow::Result<Self> {
        Self::from_component(COMPONENT)
    }

    /// Compiles another build of the component (for example one under test).
    pub fn from_component(wasm: &[u8]) -> anyhow::Result<Self> {
        let engine = engine()?;
        let component = Component::new(&engine, wasm)
            .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let pre = SenderPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Sandbox { engine, pre })
    }

    /// A fresh instance in a store confined by the policy: TCP to `grant` only, memory
    /// and run time bounded by `limits`. [`crate::Mailer`] is built on this; use it
    /// directly to call the WIT interface yourself.
    pub async fn instantiate(
        &self,
        grant: NetworkGrant,
        limits: Limits,
        transcript: &Transcript,
    ) -> anyhow::Result<(Store<Confined>, Sender)> {
        let mut store = policy::confined_store(&self.engine, grant, limits, transcript);
        let sender = self.pre.instantiate_async(&mut store).await?;
        Ok((store, sender))
    }
}
