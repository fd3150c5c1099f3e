//! The compiled-code cache is a trust boundary: what `Sandbox` loads from it is native code
//! that runs outside the sandbox. These tests plant each kind of cache that someone other
//! than the user could have written, and check that it is neither loaded nor written, that
//! the component is compiled in memory instead, and that `Sandbox::cache` says why.
//!
//! The ownership tests need root (to give a file to uid 65534, `nobody`), so a plain
//! `cargo test` lists them as ignored; CI runs them as root with `--include-ignored`, and
//! run as another user they fail.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sendbox::component::CacheUse;
use sendbox::{Sandbox, SandboxOptions};

const GARBAGE: &[u8] = b"not compiled code: must be neither loaded nor replaced";

fn sandbox(dir: &Path) -> Sandbox {
    Sandbox::with_options(&SandboxOptions {
        cache_dir: Some(dir.to_path_buf()),
        pooled_instances: None,
        // The cache serves where the precompiled code cannot run: made to serve here.
        compile_at_run_time: true,
        installed_dir: None,
    })
    .expect("a refused cache only costs the compilation")
}

/// A private directory under the system's temporary directory.
fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    dir
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The cache file's name for this build, found by letting a sandbox store it.
fn cache_file_name() -> std::ffi::OsString {
    let dir = private_dir();
    match sandbox(dir.path()).cache() {
        CacheUse::Stored(path) => path.file_name().unwrap().to_owned(),
        other => panic!("a private cache was not written: {other:?}"),
    }
}

/// A private cache directory holding a cache file with `GARBAGE` in it.
fn planted() -> (tempfile::TempDir, PathBuf) {
    let dir = private_dir();
    let file = dir.path().join(cache_file_name());
    std::fs::write(&file, GARBAGE).unwrap();
    chmod(&file, 0o600);
    (dir, file)
}

#[track_caller]
fn assert_refused(sandbox: &Sandbox, reason: &str) {
    match sandbox.cache() {
        CacheUse::Refused(why) => assert!(why.contains(reason), "{why:?} lacks {reason:?}"),
        other => panic!("the cache was used: {other:?}"),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // A file just created is owned by the effective user.
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().metadata().unwrap().uid() == 0
}

/// Fails a test that needs root when it is not root.
fn require_root(why: &str) {
    assert!(is_root(), "this test {why}: run it as root (CI does)");
}

const NOBODY: u32 = 65534;

#[test]
fn a_private_cache_is_written_then_loaded() {
    let dir = private_dir();
    let cache = dir.path().join("sendbox");
    let stored = match sandbox(&cache).cache() {
        CacheUse::Stored(path) => path.clone(),
        other => panic!("not stored: {other:?}"),
    };
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the cache directory is created private"
    );
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the cache file is private");
    assert_eq!(sandbox(&cache).cache(), &CacheUse::Loaded(stored));
}

#[test]
fn a_symlinked_cache_directory_is_resolved_and_its_target_checked() {
    let dir = private_dir();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    chmod(&dir.path().join("real"), 0o700);
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
    match sandbox(&dir.path().join("link")).cache() {
        CacheUse::Stored(path) => {
            assert!(path.starts_with(dir.path().canonicalize().unwrap().join("real")))
        }
        other => panic!("not stored: {other:?}"),
    }
    chmod(&dir.path().join("real"), 0o777);
    assert_refused(&sandbox(&dir.path().join("link")), "writable by");
}

#[test]
#[ignore = "needs root: run as root with `cargo test -- --include-ignored`, as CI does"]
fn a_cache_file_owned_by_another_user_is_refused() {
    require_root("needs root to give the file to uid 65534");
    let (_dir, file) = planted();
    std::os::unix::fs::chown(&file, Some(NOBODY), None).unwrap();
    assert_refused(&sandbox(file.parent().unwrap()), "owned by uid 65534");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        GARBAGE,
        "the file was replaced"
    );
}

#[test]
#[ignore = "needs root: run as root with `cargo test -- --include-ignored`, as CI does"]
fn a_cache_directory_owned_by_another_user_is_refused() {
    require_root("needs root to give the directory to uid 65534");
    let (dir, file) = planted();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), None).unwrap();
    assert_refused(&sandbox(dir.path()), "owned by uid 65534");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        GARBAGE,
        "the file was replaced"
    );
}

#[test]
fn a_cache_file_writable_by_group_or_others_is_refused() {
    for (mode, reason) in [
        (0o620, "writable by its group"),
        (0o602, "writable by others"),
        (0o666, "writable by its group and others"),
    ] {
        let (_dir, file) = planted();
        chmod(&file, mode);
        assert_refused(&sandbox(file.parent().unwrap()), reason);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            GARBAGE,
            "mode {mode:o}: replaced"
        );
    }
}

#[test]
fn a_cache_directory_writable_by_group_or_others_is_refused() {
    for (mode, reason) in [
        (0o770, "writable by its group"),
        (0o707, "writable by others"),
        (0o1777, "writable by its group and others"),
    ] {
        let dir = private_dir();
        chmod(dir.path(), mode);
        assert_refused(&sandbox(dir.path()), reason);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "mode {mode:o}: compiled code was stored"
        );
    }
}

#[test]
fn a_directory_above_the_cache_writable_by_others_is_refused() {
    // Someone who can write above the cache can rename it away and put their own there.
    for mode in [0o777, 0o757, 0o775] {
        let dir = private_dir();
        let above = dir.path().join("shared");
        let cache = above.join("sendbox");
        std::fs::create_dir_all(&cache).unwrap();
        chmod(&cache, 0o700);
        chmod(&above, mode);
        assert_refused(&sandbox(&cache), "(above the cache) is");
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "stored");
        // Nor is the cache created below such a directory.
        let absent = above.join("absent");
        assert_refused(&sandbox(&absent), "(above the cache) is");
        assert!(
            !absent.exists(),
            "mode {mode:o}: the cache directory was created"
        );
    }
}

#[test]
#[ignore = "needs root: run as root with `cargo test -- --include-ignored`, as CI does"]
fn a_root_owned_sticky_directory_above_the_cache_is_accepted() {
    // Like /tmp: others may write there but cannot rename or remove what is not theirs.
    require_root("needs root to own a sticky directory");
    let dir = private_dir();
    let above = dir.path().join("tmp");
    std::fs::create_dir(&above).unwrap();
    chmod(&above, 0o1777);
    assert!(matches!(
        sandbox(&above.join("sendbox")).cache(),
        CacheUse::Stored(_)
    ));
    // Without the sticky bit, the same directory is refused.
    chmod(&above, 0o777);
    assert_refused(&sandbox(&above.join("sendbox")), "(above the cache) is");
}

#[test]
fn a_symlinked_cache_file_is_refused() {
    // A cache file of the user's own, reached through a symlink planted in the cache.
    let (elsewhere, target) = planted();
    let dir = private_dir();
    let link = dir.path().join(target.file_name().unwrap());
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_refused(&sandbox(dir.path()), "is a symlink");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced"
    );
    assert_eq!(std::fs::read(&target).unwrap(), GARBAGE, "written through");
    drop(elsewhere);
}

#[test]
fn a_cache_path_that_is_a_directory_is_refused() {
    let dir = private_dir();
    std::fs::create_dir(dir.path().join(cache_file_name())).unwrap();
    assert_refused(&sandbox(dir.path()), "not a regular file");
}

/// The precompiled code (x86-64 Linux), with a cache and a directory a package installs
/// its copy in, as [`SandboxOptions::cached`] names them.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn precompiled(cache: Option<&Path>, installed: Option<&Path>) -> Sandbox {
    Sandbox::with_options(&SandboxOptions {
        cache_dir: cache.map(Path::to_path_buf),
        installed_dir: installed.map(Path::to_path_buf),
        ..SandboxOptions::default()
    })
    .expect("the precompiled code runs here")
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn the_precompiled_code_is_stored_by_the_first_run_then_mapped() {
    let dir = private_dir();
    let stored = match precompiled(Some(dir.path()), None).cache() {
        CacheUse::Stored(path) => path.clone(),
        other => panic!("not stored: {other:?}"),
    };
    let name = stored.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("sendbox-") && name.ends_with(".x86_64-linux.cwasm"),
        "{name}"
    );
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("component/sendbox.x86_64-linux.cwasm");
    assert!(
        std::fs::read(&stored).unwrap() == std::fs::read(committed).unwrap(),
        "not the embedded code"
    );
    assert_eq!(
        precompiled(Some(dir.path()), None).cache(),
        &CacheUse::Loaded(stored.clone())
    );
    // Garbage under its name is not this engine's code: replaced by the embedded copy.
    std::fs::write(&stored, GARBAGE).unwrap();
    assert_eq!(
        precompiled(Some(dir.path()), None).cache(),
        &CacheUse::Stored(stored.clone())
    );
    assert_ne!(std::fs::read(&stored).unwrap(), GARBAGE);
    // Without a cache: the embedded code, copied.
    assert_eq!(precompiled(None, None).cache(), &CacheUse::Precompiled);
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn an_installed_copy_is_mapped_only_when_nobody_else_could_have_written_it() {
    let scratch = private_dir();
    let name = match precompiled(Some(scratch.path()), None).cache() {
        CacheUse::Stored(path) => path.file_name().unwrap().to_owned(),
        other => panic!("not stored: {other:?}"),
    };
    let installed = private_dir();
    chmod(installed.path(), 0o755);
    let copy = installed.path().join(&name);
    std::fs::copy(scratch.path().join(&name), &copy).unwrap();
    chmod(&copy, 0o644);
    assert_eq!(
        precompiled(None, Some(installed.path())).cache(),
        &CacheUse::Loaded(copy.clone())
    );
    // Writable by others, or in a directory others can write to: not loaded, and the
    // binary's own copy runs.
    chmod(&copy, 0o666);
    assert_eq!(
        precompiled(None, Some(installed.path())).cache(),
        &CacheUse::Precompiled
    );
    chmod(&copy, 0o644);
    chmod(installed.path(), 0o777);
    assert_eq!(
        precompiled(None, Some(installed.path())).cache(),
        &CacheUse::Precompiled
    );
    // A copy of other code under the name: never loaded, never replaced (not the cache).
    chmod(installed.path(), 0o755);
    std::fs::write(&copy, GARBAGE).unwrap();
    assert_eq!(
        precompiled(None, Some(installed.path())).cache(),
        &CacheUse::Precompiled
    );
    assert_eq!(std::fs::read(&copy).unwrap(), GARBAGE);
}
