//! `sendbox-release`: what a release does to the artefacts before `just publish` pushes them.
//!
//! - `metadata`: writes a crate's name, version, description, licence and source into the
//!   component it builds, where `wasm-tools metadata show` and OCI registries read them.
//! - `wit-version`: checks that `wit/` changed only with a version bump (also a test).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod wit_version;

#[derive(Parser)]
#[command(about = "Release steps for sendbox's components and WIT package")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the Cargo package's metadata into the component FILE, in place.
    Metadata {
        /// The workspace package the component is built from (e.g. sendbox-guest).
        #[arg(long)]
        package: String,
        /// The component's name, as it is published (e.g. sendbox:sender).
        #[arg(long)]
        name: String,
        /// For a WIT package: take the version and description from the package in this
        /// folder (its `package` line and the doc comment above it) instead of the crate.
        #[arg(long)]
        wit: Option<PathBuf>,
        file: PathBuf,
    },
    /// Print a component's metadata as `wkg oci push` annotations, one argument a line
    /// (`--annotation=org.opencontainers.image.version=0.2.0`), as `wkg publish` maps them.
    Annotations { file: PathBuf },
    /// Check that the components belong to the WIT package's release: each carries its
    /// version, and the sender exports the package's `mail-sender` at that version.
    CheckRelease {
        /// The WIT package's folder.
        #[arg(long)]
        wit: PathBuf,
        /// The sender component.
        #[arg(long)]
        sender: PathBuf,
        /// The grant component.
        #[arg(long)]
        grant: PathBuf,
    },
    /// Check wit/ against the releases recorded in wit/released/.
    WitVersion {
        /// The workspace root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Command::Metadata {
            package,
            name,
            wit,
            file,
        } => metadata(&package, &name, wit.as_deref(), &file),
        Command::Annotations { file } => annotations(&file),
        Command::CheckRelease { wit, sender, grant } => check_release(&wit, &sender, &grant),
        Command::WitVersion { root } => wit_version::check_tree(&root).map(|summary| {
            println!("{summary}");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sendbox-release: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A component's metadata (what `wasm-tools metadata show` prints).
fn read_metadata(file: &std::path::Path) -> anyhow::Result<wasm_metadata::Payload> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let payload = wasm_metadata::Payload::from_binary(&wasm)
        .with_context(|| format!("{} is not a component", file.display()))?;
    Ok(payload)
}

fn check_release(
    wit: &std::path::Path,
    sender: &std::path::Path,
    grant: &std::path::Path,
) -> anyhow::Result<()> {
    let version = wit_version::Wit::parse_dir(wit)?.version.to_string();
    for file in [sender, grant] {
        let found = read_metadata(file)?
            .metadata()
            .version
            .as_ref()
            .map(|v| v.to_string());
        if found.as_deref() != Some(version.as_str()) {
            bail!(
                "{} is version {}, but the WIT package is {version}: rebuild the components \
                 (just guest grant) after the version bump, and commit them",
                file.display(),
                found.as_deref().unwrap_or("(none)")
            );
        }
    }
    let wasm = std::fs::read(sender)?;
    let wit_component::DecodedWasm::Component(resolve, world) = wit_component::decode(&wasm)
        .with_context(|| format!("{} is not a component", sender.display()))?
    else {
        bail!(
            "{} is a WIT package, not the sender component",
            sender.display()
        );
    };
    let wanted = format!("sendbox:mail/mail-sender@{version}");
    let exports: Vec<String> = resolve.worlds[world]
        .exports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .collect();
    if !exports.contains(&wanted) {
        bail!(
            "{} exports {}, not {wanted}: rebuild it (just guest) from this wit/",
            sender.display(),
            exports.join(", ")
        );
    }
    println!("sender and grant {version} export and carry the WIT package's version");
    Ok(())
}

fn annotations(file: &std::path::Path) -> anyhow::Result<()> {
    let payload = read_metadata(file)?;
    let metadata = payload.metadata();
    let fields = [
        ("version", metadata.version.as_ref().map(|v| v.to_string())),
        (
            "description",
            metadata.description.as_ref().map(|v| v.to_string()),
        ),
        (
            "licenses",
            metadata.licenses.as_ref().map(|v| v.to_string()),
        ),
        ("source", metadata.source.as_ref().map(|v| v.to_string())),
    ];
    for (key, value) in fields {
        let value = value.with_context(|| {
            format!(
                "{} has no {key} in its metadata: build it with `just guest` or `just grant`",
                file.display()
            )
        })?;
        println!("--annotation=org.opencontainers.image.{key}={value}");
    }
    Ok(())
}

/// The package's fields as Cargo resolves them (workspace inheritance included).
fn metadata(
    package: &str,
    name: &str,
    wit: Option<&std::path::Path>,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use wasm_metadata::{AddMetadata, AddMetadataField, Description, Licenses, Source, Version};
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let found = json["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == package))
        .with_context(|| format!("no package {package} in the workspace"))?;
    let field = |key: &str| {
        found[key]
            .as_str()
            .with_context(|| format!("package {package} has no {key} in its Cargo.toml"))
    };
    let (version, description) = match wit {
        Some(dir) => {
            let wit = wit_version::Wit::parse_dir(dir)?;
            (wit.version.to_string(), wit.summary()?)
        }
        None => (
            field("version")?.to_owned(),
            field("description")?.to_owned(),
        ),
    };
    let mut add = AddMetadata::default();
    add.name = AddMetadataField::Set(name.to_owned());
    add.version = AddMetadataField::Set(Version::new(version));
    add.description = AddMetadataField::Set(Description::new(description));
    add.licenses = AddMetadataField::Set(Licenses::new(field("license")?)?);
    add.source = AddMetadataField::Set(Source::new(field("repository")?)?);
    if read_metadata(file)?.metadata().description.is_some() {
        bail!(
            "{} already carries metadata: stamp only a file as the compiler wrote it",
            file.display()
        );
    }
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let stamped = add
        .to_wasm(&wasm)
        .with_context(|| format!("{} is not a component", file.display()))?;
    // Renamed into place, so that a failure leaves the old file whole.
    let tmp = file.with_extension("wasm.tmp");
    std::fs::write(&tmp, stamped).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}
