//! Refuses to build with a committed component that does not match what it is built from.
//!
//! `component/sendbox.wasm` is built by `just guest`, which then runs this script with
//! `SENDBOX_UPDATE_STAMP=1` to write `component/sendbox.wasm.sources`: one line for each
//! input of the guest build (the source files rustc read, the Cargo.lock entries of the
//! packages compiled into it, the manifest tables and RUSTFLAGS that shape it, the
//! toolchain) with its hash, and the component's hash. Every other build hashes exactly
//! those inputs again and stops on a difference, so a stale component is never tested or
//! shipped, while a change to anything the component is not built from (a proto test, a
//! host-only dependency) needs no rebuild. The logic is in `stamp.rs`; its unit tests run
//! as the `stamp` test target (`stamp_test.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use stamp::Input;

mod stamp;

const COMPONENT: &str = "component/sendbox.wasm";
const STAMP: &str = "component/sendbox.wasm.sources";
const PRECOMPILED: &str = "component/sendbox.x86_64-linux.cwasm";

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed={COMPONENT}");
    println!("cargo:rerun-if-changed={STAMP}");
    println!("cargo:rerun-if-env-changed=SENDBOX_UPDATE_STAMP");
    // The name under which an installed or cached copy of the precompiled code is found:
    // its own hash, so that a build only ever maps the code it was built with.
    println!("cargo:rerun-if-changed={PRECOMPILED}");
    let precompiled = fs::read(manifest.join(PRECOMPILED)).expect("reading the precompiled code");
    let id: String = sha2::Sha256::digest(&precompiled)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=SENDBOX_PRECOMPILED_ID={id}");
    if !root.join("guest").is_dir() {
        // Built outside the workspace (e.g. from a package): the sources are not here.
        println!(
            "cargo:warning=guest sources not found; not checking that the component is current"
        );
        return;
    }
    let component = fs::read(manifest.join(COMPONENT)).expect("reading component/sendbox.wasm");

    if std::env::var("SENDBOX_UPDATE_STAMP").as_deref() == Ok("1") {
        // Run by `just guest`, right after the guest build.
        let read = |variable: &str| {
            println!("cargo:rerun-if-env-changed={variable}");
            let path = std::env::var(variable)
                .unwrap_or_else(|_| panic!("`just guest` sets {variable} with the stamp"));
            println!("cargo:rerun-if-changed={path}");
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
        };
        let depinfo = read("SENDBOX_GUEST_DEPINFO");
        let packages = read("SENDBOX_GUEST_PACKAGES");
        let inputs = stamp::gather(&root, &depinfo, &packages)
            .unwrap_or_else(|e| panic!("listing the guest's inputs: {e}"));
        let text = stamp::render(&root, &inputs, &component)
            .unwrap_or_else(|e| panic!("hashing the guest's inputs: {e}"));
        fs::write(manifest.join(STAMP), text).expect("writing the component stamp");
        for input in &inputs {
            rerun_if_changed(&root, input);
        }
        return;
    }

    let recorded = fs::read_to_string(manifest.join(STAMP)).unwrap_or_default();
    let Some(recorded) = stamp::parse(&recorded) else {
        fail(&["host/component/sendbox.wasm.sources is missing or not a stamp".into()]);
    };
    for (input, _) in &recorded.inputs {
        rerun_if_changed(&root, input);
    }
    if let Err(problems) = stamp::verify(&root, &recorded, &component) {
        fail(&problems);
    }
}

/// Reruns this script when the file that `input` is read from changes.
fn rerun_if_changed(root: &Path, input: &Input) {
    let file = match input {
        Input::File(path) | Input::Tree(path) => path,
        Input::Toml { file, .. } | Input::Just { file, .. } => file,
        Input::Lock { .. } => "Cargo.lock",
    };
    println!("cargo:rerun-if-changed={}", root.join(file).display());
}

fn fail(problems: &[String]) -> ! {
    let mut list = String::new();
    for problem in problems.iter().take(20) {
        list.push_str(&format!("  - {problem}\n"));
    }
    if problems.len() > 20 {
        list.push_str(&format!("  - and {} more\n", problems.len() - 20));
    }
    panic!(
        "\n\nhost/{COMPONENT} is not what its inputs build (recorded in host/{STAMP}):\n{list}\
         Rebuild it with `just guest` (needs clang and the wasm32-wasip2 target; `just setup` \
         installs them) and commit both files.\n\n"
    );
}
