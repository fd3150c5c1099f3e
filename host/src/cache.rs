//! The compiled-code cache: a [`Sandbox`] keeps the component's compiled code in a cache
//! directory, keyed by the component's hash, the wasmtime version and the engine's
//! settings, and later loads it in milliseconds instead of compiling for most of a second.
//!
//! That cache is a trust boundary: what is loaded from it is native code that runs outside
//! the sandbox. It is used only when nobody but the user (or root) could have put the file
//! there, checked as OpenSSH's `StrictModes` checks `~/.ssh`: the file is a regular file
//! (not a symlink) and the file and its directory are owned by the user or root and not
//! writable by group or others, and so is every directory above, up to `/`, except a
//! root-owned directory with the sticky bit (like `/tmp`). Otherwise the component is
//! compiled in memory, the cache is neither read nor written, and [`Sandbox::cache`] says
//! why. The library prints nothing; the caller decides whether to warn.
//!
//! The component's precompiled code (x86-64 Linux) goes the same way: it is embedded in
//! the binary, but a copy in a file is mapped rather than copied into memory, so that only
//! the code a run touches is resident (4 MiB less at the peak of a send). The copy is
//! found under the name of its own hash in [`INSTALLED_DIR`], where a package puts it
//! (trusted by the same rules), else in the cache, where the first run stores it.
//!
//! [`Sandbox`]: crate::Sandbox
//! [`Sandbox::cache`]: crate::Sandbox::cache

#[cfg(feature = "compiler")]
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

#[cfg(feature = "compiler")]
use anyhow::Context as _;
#[cfg(feature = "compiler")]
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::component::{self, CacheUse};

/// Where the Debian package installs the precompiled code (`just deb`).
pub const INSTALLED_DIR: &str = "/usr/lib/sendbox";

/// The file name of a copy of the precompiled code: the hash of its bytes (computed by
/// the build script), so that a binary maps only the code it embeds.
pub(crate) fn precompiled_name() -> String {
    format!(
        "sendbox-{}.x86_64-linux.cwasm",
        env!("SENDBOX_PRECOMPILED_ID")
    )
}

/// The precompiled code `embedded` in the binary, mapped from a trusted copy in
/// `installed` or `cache_dir` when there is one; else loaded from the binary (a copy in
/// memory) and stored in the cache for the next run. An untrusted or unusable copy is
/// never loaded: the embedded code is. Errors only when the embedded code cannot run here.
pub(crate) fn load_precompiled(
    engine: &Engine,
    embedded: &'static [u8],
    installed: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheUse), String> {
    let name = precompiled_name();
    if let Some(dir) = installed
        && check_ancestors(dir).is_ok()
    {
        let path = dir.join(&name);
        if let Ok(Some(file)) = trusted_cache_file(&path)
            && let Some(component) = load(engine, file)
        {
            return Ok((component, CacheUse::Loaded(path)));
        }
    }
    let cache = cache_dir.and_then(|dir| trusted_cache_dir(dir).ok());
    let mut stored = None;
    if let Some(dir) = &cache {
        let path = dir.join(&name);
        match trusted_cache_file(&path) {
            Ok(Some(file)) => match load(engine, file) {
                Some(component) => return Ok((component, CacheUse::Loaded(path))),
                // Not this engine's code after all: replaced below.
                None => stored = Some(path),
            },
            Ok(None) => stored = Some(path),
            // Not to be used, nor overwritten.
            Err(_) => {}
        }
    }
    let stored = match (&cache, stored) {
        (Some(dir), Some(path)) => Some(match store_atomically(dir, &path, embedded) {
            Ok(()) => CacheUse::Stored(path),
            Err(e) => CacheUse::NotStored(format!("writing {}: {e}", path.display())),
        }),
        _ => None,
    };
    // SAFETY: compiled by `just guest` from the component, checked like it by the build
    // script; wasmtime checks that this engine and CPU can run it.
    let component = unsafe { Component::deserialize(engine, embedded) }
        .map_err(|e| format!("its precompiled code cannot run here: {e:#}"))?;
    component::release(embedded);
    Ok((component, stored.unwrap_or(CacheUse::Precompiled)))
}

/// Loads the compiled component from `dir`, or compiles it and stores it there, provided
/// the cache can be trusted ([`trusted_cache_dir`], [`trusted_cache_file`]). A cache that
/// cannot be read or written only costs the compilation.
#[cfg(feature = "compiler")]
pub(crate) fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    dir: &Path,
) -> anyhow::Result<(Component, CacheUse)> {
    let dir = match trusted_cache_dir(dir) {
        Ok(dir) => dir,
        Err(why) => return Ok((component::compile(engine, wasm)?, CacheUse::Refused(why))),
    };
    let path = dir.join(format!("sendbox-{}.cwasm", cache_key(engine, wasm)));
    match trusted_cache_file(&path) {
        Ok(Some(file)) => {
            if let Some(component) = load(engine, file) {
                return Ok((component, CacheUse::Loaded(path)));
            }
            // Not a compiled component for this engine: compile and replace it below.
        }
        Ok(None) => {}
        Err(why) => return Ok((component::compile(engine, wasm)?, CacheUse::Refused(why))),
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))?;
    let cache = match store_atomically(&dir, &path, &compiled) {
        Ok(()) => CacheUse::Stored(path),
        Err(e) => CacheUse::NotStored(format!("writing {}: {e}", path.display())),
    };
    // SAFETY: these bytes were produced by this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("loading the compiled component")?;
    Ok((component, cache))
}

/// Loads a cache file that [`trusted_cache_file`] opened and checked, from the open file so
/// that nothing can be swapped in between. On Linux it is mapped rather than read where it
/// can be (through `/proc/self/fd`, which names the open file itself): then only the code a
/// run touches is ever resident, instead of a copy of all of it. Elsewhere it is read.
//
// SAFETY (every deserialize): the file is a regular file in a directory only the user (or
// root) can write, owned by the user or root and writable by nobody else (checked on the
// open file), and named by the hash of what it was compiled from (or, for the
// precompiled code, of itself): this module's own output, or the package's copy of the
// embedded code. It is replaced by a rename, never changed in place, so a mapping of it stays as
// it was. wasmtime also checks its header against this engine and refuses a mismatch,
// which falls back to compiling.
fn load(engine: &Engine, mut file: std::fs::File) -> Option<Component> {
    use std::io::Read as _;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let open_file = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &open_file) } {
            return Some(component);
        }
    }
    let mut compiled = Vec::new();
    file.read_to_end(&mut compiled).ok()?;
    unsafe { Component::deserialize(engine, &compiled) }.ok()
}

/// Why a file or directory with this owner and mode could be written by someone other than
/// the user or root; `None` when it cannot.
fn untrusted_because(metadata: &std::fs::Metadata, ancestor: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let user = rustix::process::geteuid().as_raw();
    let (owner, mode) = (metadata.uid(), metadata.mode());
    if owner != user && owner != 0 {
        return Some(format!("owned by uid {owner}, not by uid {user} or root"));
    }
    let sticky_root_directory = ancestor && owner == 0 && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_root_directory {
        let who = match mode & 0o022 {
            0o002 => "others",
            0o020 => "its group",
            _ => "its group and others",
        };
        return Some(format!("writable by {who} (mode {:o})", mode & 0o7777));
    }
    None
}

/// Checks a directory above the cache directory.
fn check_ancestors(path: &Path) -> Result<(), String> {
    for ancestor in path.ancestors() {
        let metadata =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        if let Some(why) = untrusted_because(&metadata, true) {
            return Err(format!("{} (above the cache) is {why}", ancestor.display()));
        }
    }
    Ok(())
}

/// The cache directory with symlinks resolved, created (mode 0700) if absent, once it is
/// known that nobody but the user or root can write to it or to a directory above it.
fn trusted_cache_dir(dir: &Path) -> Result<PathBuf, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if std::fs::symlink_metadata(&dir).is_err() {
        // Check where it would be created before creating it.
        let existing = dir
            .ancestors()
            .find(|a| std::fs::symlink_metadata(a).is_ok())
            .unwrap_or(Path::new("/"));
        let existing = existing
            .canonicalize()
            .map_err(|e| format!("{}: {e}", existing.display()))?;
        check_ancestors(&existing)?;
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let metadata =
        std::fs::metadata(&canonical).map_err(|e| format!("{}: {e}", canonical.display()))?;
    if !metadata.is_dir() {
        return Err(format!("{} is not a directory", canonical.display()));
    }
    if let Some(why) = untrusted_because(&metadata, false) {
        return Err(format!(
            "the cache directory {} is {why}",
            canonical.display()
        ));
    }
    if let Some(parent) = canonical.parent() {
        check_ancestors(parent)?;
    }
    Ok(canonical)
}

/// The cache file, open for reading, if it exists and is trusted: a regular file, not a
/// symlink, owned by the user or root and writable by nobody else. `Ok(None)` when there is
/// none yet; an error when there is one that must not be used (nor overwritten).
fn trusted_cache_file(path: &Path) -> Result<Option<std::fs::File>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let before = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if before.file_type().is_symlink() {
        return Err(format!("the cache file {} is a symlink", path.display()));
    }
    if !before.is_file() {
        return Err(format!(
            "the cache file {} is not a regular file",
            path.display()
        ));
    }
    if let Some(why) = untrusted_because(&before, false) {
        return Err(format!("the cache file {} is {why}", path.display()));
    }
    // Open it, then make sure the open file is the one just checked (no symlink or other
    // file put in its place in between), as O_NOFOLLOW with fstat would.
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let after = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino())
        || untrusted_because(&after, false).is_some()
    {
        return Err(format!(
            "the cache file {} changed while it was opened",
            path.display()
        ));
    }
    Ok(Some(file))
}

/// The component's SHA-256, with wasmtime's version and settings folded in.
#[cfg(feature = "compiler")]
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

/// Writes to a new temporary file (mode 0600, never through an existing name or symlink)
/// and renames it, so a reader never sees half a file.
fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temporary = dir.join(format!(".sendbox-{}-{nanos}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes));
    let result = written.and_then(|()| std::fs::rename(&temporary, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{Sandbox, SandboxOptions};

    #[test]
    fn compiled_code_is_cached_and_a_bad_cache_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("sendbox-cache-test-{}", std::process::id()));
        let options = SandboxOptions {
            cache_dir: Some(dir.clone()),
            pooled_instances: None,
            compile_at_run_time: true,
            installed_dir: None,
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
            compile_at_run_time: true,
            installed_dir: None,
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
