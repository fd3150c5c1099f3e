//! The sendbox component: the committed `.wasm` embedded in this crate, compiled once per
//! [`Sandbox`] and linked against WASI, ready to be instantiated per call.
//!
//! `build.rs` refuses to build when `component/sendbox.wasm` is older than the guest, proto
//! or WIT sources, so a stale component can never be tested or shipped.
//!
//! Compiling the component with Cranelift takes most of a second, so [`Sandbox::new`] keeps
//! the compiled code in a cache directory, keyed by the component's hash, the wasmtime
//! version and the engine's settings, and later loads it in milliseconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::policy::{self, Confined, Limits, NetworkGrant, Transcript};

/// The component, built from `guest/` by `just guest`.
pub const COMPONENT: &[u8] = include_bytes!("../component/sendbox.wasm");

/// Bindings generated from `wit/mail.wit`; the WIT documents every type.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sender",
        exports: { default: async },
    });
}

pub use bindings::exports::sendbox::mail::mail_sender as wit;
pub use bindings::{Sender, SenderPre};

/// A wasmtime engine set up as sendbox runs components: epoch interruption on, so that
/// [`policy::confined_store`] can stop a guest that computes instead of waiting, and a
/// thread that advances the epoch for as long as the engine lives.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(None)
}

/// [`engine`], with wasmtime's pooling allocator preallocating room for `pooled`
/// concurrent instances when given.
fn engine_with(pooled: Option<u32>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if let Some(instances) = pooled {
        // The component has a handful of core instances, memories and tables; leave room.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 4)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memory_size(Limits::default().memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    policy::start_epoch_ticker(&engine);
    Ok(engine)
}

/// How a [`Sandbox`] is set up.
#[derive(Clone, Debug, Default)]
pub struct SandboxOptions {
    /// Where compiled code is cached; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// Preallocate instances for this many concurrent sessions (the pooling allocator),
    /// for many sessions in one process. Each session's memory is then capped at
    /// [`Limits::default`]'s size.
    pub pooled_instances: Option<u32>,
}

impl SandboxOptions {
    /// The default cache: `$SENDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sendbox`, else
    /// `~/.cache/sendbox`; no cache when none of these is set.
    pub fn cached() -> Self {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache_dir = env("SENDBOX_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("sendbox")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("sendbox")));
        SandboxOptions {
            cache_dir,
            pooled_instances: None,
        }
    }
}

/// A compiled, linked component, shared by every send.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    pre: SenderPre<Confined>,
}

impl Sandbox {
    /// The embedded component, from the default cache ([`SandboxOptions::cached`]).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_options(&SandboxOptions::cached())
    }

    /// The embedded component, set up as `options` say.
    pub fn with_options(options: &SandboxOptions) -> anyhow::Result<Self> {
        let engine = engine_with(options.pooled_instances)?;
        let component = match &options.cache_dir {
            Some(dir) => load_or_compile(&engine, COMPONENT, dir)?,
            None => compile(&engine, COMPONENT)?,
        };
        Self::link(engine, component)
    }

    /// Compiles another build of the component (for example one under test), uncached.
    pub fn from_component(wasm: &[u8]) -> anyhow::Result<Self> {
        let engine = engine()?;
        let component = compile(&engine, wasm)?;
        Self::link(engine, component)
    }

    fn link(engine: Engine, component: Component) -> anyhow::Result<Self> {
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

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))
}

/// Loads the compiled component from `dir`, or compiles it and stores it there. A cache
/// that cannot be read or written only costs the compilation.
fn load_or_compile(engine: &Engine, wasm: &[u8], dir: &Path) -> anyhow::Result<Component> {
    if !is_private_or_absent(dir) {
        // Someone else could plant compiled code there: do not use it.
        return compile(engine, wasm);
    }
    let path = dir.join(format!("sendbox-{}.cwasm", cache_key(engine, wasm)));
    // SAFETY: the file is one this function wrote into the user's own cache directory,
    // named by the hash of what it was compiled from; wasmtime also checks its header
    // against this engine and refuses a mismatch, which falls back to compiling.
    if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
        return Ok(component);
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))?;
    let _ = store_atomically(dir, &path, &compiled);
    // SAFETY: these bytes were produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("loading the compiled component")
}

/// A cache directory others can write to is not to be trusted.
fn is_private_or_absent(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(dir) {
        Ok(metadata) => metadata.permissions().mode() & 0o022 == 0,
        Err(_) => true,
    }
}

/// The component's SHA-256, with wasmtime's version and settings folded in.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut hasher = Sha256::new();
    hasher.update(wasm);
    hasher.update(settings.finish().to_le_bytes());
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes to a temporary file and renames it, so a reader never sees half a file.
fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temporary = dir.join(format!(".sendbox-{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_code_is_cached_and_a_bad_cache_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("sendbox-cache-test-{}", std::process::id()));
        let options = SandboxOptions {
            cache_dir: Some(dir.clone()),
            pooled_instances: None,
        };
        Sandbox::with_options(&options).unwrap();
        let cached: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));

        std::fs::write(&cached[0], b"not a compiled component").unwrap();
        Sandbox::with_options(&options).expect("a bad cache file is only a cache miss");
        assert_ne!(
            std::fs::read(&cached[0]).unwrap(),
            b"not a compiled component"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_others_can_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("sendbox-open-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let options = SandboxOptions {
            cache_dir: Some(dir.clone()),
            pooled_instances: None,
        };
        Sandbox::with_options(&options).unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "compiled code was stored"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
