//! The versioning promise of `sendbox:mail` (EMBEDDING.md), checked: every change to the
//! WIT's types, functions or worlds comes with a new version, and a version in the same
//! compatibility series as the last release (0.2.0 -> 0.2.1; 1.2.0 -> 1.3.0) adds and
//! never breaks, by the check `wkg publish` runs against a registry's earlier releases.
//!
//! The releases are recorded in `wit/released/VERSION.wit`, one file per published
//! version; `just publish` refuses to publish a version that is not recorded there.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use semver::Version;
use wit_parser::{PackageId, Resolve};

/// One version of the package: parsed, with its text without docs or version to compare.
pub struct Wit {
    pub version: Version,
    resolve: Resolve,
    package: PackageId,
    shape: String,
    origin: String,
}

impl Wit {
    fn new(mut resolve: Resolve, package: PackageId, origin: String) -> anyhow::Result<Wit> {
        let version = resolve.packages[package]
            .name
            .version
            .clone()
            .with_context(|| format!("{origin}: the package line has no version"))?;
        // The shape: what a consumer binds to. Docs may change within a version.
        let mut bare = resolve.clone();
        bare.packages[package].name.version = None;
        let mut printer = wit_component::WitPrinter::default();
        printer.emit_docs(false);
        printer.print(&bare, package, &[])?;
        let shape = printer.output.to_string();
        resolve.packages[package].name.version = Some(version.clone());
        Ok(Wit {
            version,
            resolve,
            package,
            shape,
            origin,
        })
    }

    /// The package in a text (a released file, or a test's).
    pub fn parse(origin: &str, text: &str) -> anyhow::Result<Wit> {
        let mut resolve = Resolve::new();
        let package = resolve
            .push_str(origin, text)
            .with_context(|| format!("cannot parse {origin}"))?;
        Wit::new(resolve, package, origin.to_owned())
    }

    /// The package in a folder, as wit-bindgen and `wkg wit build` read it.
    pub fn parse_dir(dir: &Path) -> anyhow::Result<Wit> {
        let mut resolve = Resolve::new();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("cannot parse {}", dir.display()))?;
        Wit::new(resolve, package, format!("{}/", dir.display()))
    }

    /// The first paragraph of the package's doc comment, on one line.
    pub fn summary(&self) -> anyhow::Result<String> {
        let docs = self.resolve.packages[self.package].docs.contents.as_deref();
        let first = docs
            .and_then(|d| d.split("\n\n").next())
            .unwrap_or("")
            .trim();
        if first.is_empty() {
            bail!(
                "{}: the package line has no doc comment to describe it",
                self.origin
            );
        }
        Ok(first.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn name(&self) -> String {
        self.resolve.packages[self.package].name.to_string()
    }
}

/// Whether `next` may follow `prev`: an error that says which version to give instead.
pub fn check_step(prev: &Wit, next: &Wit) -> anyhow::Result<()> {
    let name = |w: &Wit| format!("{} ({})", w.name(), w.origin);
    match next.version.cmp(&prev.version) {
        std::cmp::Ordering::Less => bail!(
            "{} is older than the release {}: versions only go up",
            name(next),
            name(prev)
        ),
        std::cmp::Ordering::Equal if prev.shape == next.shape => Ok(()),
        std::cmp::Ordering::Equal => {
            let bump = match additive(prev, next) {
                Ok(()) => format!("{} (the change only adds)", same_series_bump(&prev.version)),
                Err(why) => format!("{} (the change breaks: {why:#})", new_series(&prev.version)),
            };
            bail!(
                "{} differs from the released {} but has its version: make it {bump}",
                name(next),
                name(prev)
            )
        }
        std::cmp::Ordering::Greater if same_series(&prev.version, &next.version) => {
            additive(prev, next).map_err(|why| {
                anyhow!(
                    "{} is in the series of {} but breaks it ({why:#}): make it {}",
                    name(next),
                    name(prev),
                    new_series(&prev.version)
                )
            })
        }
        std::cmp::Ordering::Greater => Ok(()),
    }
}

/// Cargo's `^` series: 0.2.x together, 1.x together; 0.0.x each alone.
fn same_series(a: &Version, b: &Version) -> bool {
    match (a.major, a.minor) {
        (0, 0) => a.major == b.major && a.minor == b.minor && a.patch == b.patch,
        (0, minor) => b.major == 0 && b.minor == minor,
        (major, _) => b.major == major,
    }
}

fn same_series_bump(v: &Version) -> Version {
    match v.major {
        0 => Version::new(0, v.minor, v.patch + 1),
        major => Version::new(major, v.minor + 1, 0),
    }
}

fn new_series(v: &Version) -> Version {
    match v.major {
        0 => Version::new(0, v.minor + 1, 0),
        major => Version::new(major + 1, 0, 0),
    }
}

/// `wkg publish`'s check between neighbours of one series: wit-component's semver check,
/// with the newer package as the reference, for every world of the older.
fn additive(older: &Wit, newer: &Wit) -> anyhow::Result<()> {
    let mut merged = newer.resolve.clone();
    // One name and version is one package to `merge`: the newer one, for this check, gets
    // the next version.
    if newer.version == older.version {
        let old_name = merged.packages[newer.package].name.clone();
        merged.package_names.shift_remove(&old_name);
        let package = &mut merged.packages[newer.package];
        package.name.version = Some(same_series_bump(&older.version));
        merged
            .package_names
            .insert(package.name.clone(), newer.package);
    }
    let remap = merged.merge(older.resolve.clone())?;
    for (world_name, &world) in &older.resolve.packages[older.package].worlds {
        let Some(&kept) = newer.resolve.packages[newer.package].worlds.get(world_name) else {
            bail!("world `{world_name}` was removed");
        };
        let older_world = remap
            .map_world(world, Default::default())
            .map_err(|e| anyhow!("{e:?}"))?;
        wit_component::semver_check(merged.clone(), kept, older_world)
            .with_context(|| format!("world `{world_name}`"))?;
    }
    Ok(())
}

/// Checks the recorded releases in order, then `wit/` against the last of them.
pub fn check_tree(root: &Path) -> anyhow::Result<String> {
    let released_dir = root.join("wit/released");
    let mut released = Vec::new();
    for entry in std::fs::read_dir(&released_dir)
        .with_context(|| format!("cannot read {}", released_dir.display()))?
    {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let wit = Wit::parse(&path.display().to_string(), &text)?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(&wit.version.to_string()) {
            bail!(
                "{} holds version {}: name it {}.wit",
                path.display(),
                wit.version,
                wit.version
            );
        }
        released.push(wit);
    }
    released.sort_by(|a, b| a.version.cmp(&b.version));
    for pair in released.windows(2) {
        check_step(&pair[0], &pair[1])?;
    }
    let current = Wit::parse_dir(&root.join("wit"))?;
    let Some(last) = released.last() else {
        return Ok(format!(
            "{}: nothing released yet ({} is empty)",
            current.name(),
            released_dir.display()
        ));
    };
    check_step(last, &current)?;
    Ok(format!(
        "{}: follows the release {} ({} releases recorded)",
        current.name(),
        last.name(),
        released.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit(version: &str, body: &str) -> Wit {
        let text = format!(
            "package sendbox:mail@{version};\n\
             interface mail-sender {{\n{body}\n}}\n\
             world sender {{ export mail-sender; }}\n"
        );
        Wit::parse("test.wit", &text).unwrap()
    }

    const BASE: &str = "record options { port: u16 }\nsend: func(o: options) -> u32;";

    #[test]
    fn the_tree_follows_its_last_release() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let summary = check_tree(&root).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(summary.contains("follows the release"), "{summary}");
    }

    #[test]
    fn docs_may_change_within_a_version() {
        let documented = BASE.replace("send:", "/// Sends.\nsend:");
        check_step(&wit("0.2.0", BASE), &wit("0.2.0", &documented)).unwrap();
    }

    #[test]
    fn a_changed_type_under_the_same_version_is_refused_with_the_version_to_give() {
        let changed = BASE.replace("port: u16", "port: u16, dkim: option<string>");
        let error = check_step(&wit("0.2.0", BASE), &wit("0.2.0", &changed))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("make it 0.3.0 (the change breaks"),
            "{error}"
        );
    }

    #[test]
    fn an_added_function_under_the_same_version_is_told_to_take_a_patch() {
        let added = format!("{BASE}\nnoop: func();");
        let error = check_step(&wit("0.2.0", BASE), &wit("0.2.0", &added))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("make it 0.2.1 (the change only adds)"),
            "{error}"
        );
        check_step(&wit("0.2.0", BASE), &wit("0.2.1", &added)).unwrap();
    }

    #[test]
    fn a_break_within_a_series_is_refused_and_allowed_across() {
        let changed = BASE.replace("-> u32", "-> string");
        let error = check_step(&wit("0.2.0", BASE), &wit("0.2.1", &changed))
            .unwrap_err()
            .to_string();
        assert!(error.contains("breaks it"), "{error}");
        assert!(error.contains("make it 0.3.0"), "{error}");
        check_step(&wit("0.2.0", BASE), &wit("0.3.0", &changed)).unwrap();
        check_step(&wit("1.2.0", BASE), &wit("2.0.0", &changed)).unwrap();
        assert!(check_step(&wit("1.2.0", BASE), &wit("1.3.0", &changed)).is_err());
    }

    #[test]
    fn versions_only_go_up() {
        let error = check_step(&wit("0.2.0", BASE), &wit("0.1.9", BASE)).unwrap_err();
        assert!(error.to_string().contains("versions only go up"), "{error}");
    }
}
