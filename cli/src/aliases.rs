//! The aliases file, as msmtp reads it: local names such as `root` or `cron`, which cron
//! and daemons send to, mapped to real addresses.
//!
//! ```text
//! # comment
//! root: admin@example.org
//! cron: ops@example.org, alice@example.org
//! default: admin@example.org      # any other local name
//! ```

use std::collections::BTreeMap;
use std::path::Path;

/// The aliases of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    map: BTreeMap<String, Vec<String>>,
}

impl Aliases {
    /// Reads `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Aliases, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the aliases file {}: {e}", path.display()))?;
        Self::parse(&text)
            .map_err(|(line, problem)| format!("{}:{line}: {problem}", path.display()))
    }

    fn parse(text: &str) -> Result<Aliases, (usize, String)> {
        let mut map = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (name, targets) = line
                .split_once(':')
                .ok_or((index + 1, "not `name: address, ...`".to_owned()))?;
            let name = name.trim().to_ascii_lowercase();
            let targets: Vec<String> = targets
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if name.is_empty() || name.contains('@') || targets.is_empty() {
                return Err((index + 1, "not `name: address, ...`".to_owned()));
            }
            map.insert(name, targets);
        }
        Ok(Aliases { map })
    }

    /// The recipients with each local name (no `@`) replaced by its addresses, or by the
    /// `default` ones; other addresses, and names without an alias, stay as they are.
    /// One level only: an alias's addresses are not looked up again.
    pub fn expand(&self, recipients: &[String]) -> Vec<String> {
        let mut expanded = Vec::new();
        for recipient in recipients {
            let local = !recipient.contains('@');
            let name = recipient.to_ascii_lowercase();
            match self.map.get(&name).or_else(|| self.map.get("default")) {
                Some(targets) if local => expanded.extend(targets.iter().cloned()),
                _ => expanded.push(recipient.clone()),
            }
        }
        expanded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn local_names_become_their_addresses() {
        let aliases = Aliases::parse(
            "# cron and daemons\nroot: admin@example.org\nCron: ops@example.org, alice@example.org # both\n\n",
        )
        .unwrap();
        assert_eq!(
            aliases.expand(&strings(&["root", "cron", "www-data", "bob@example.org"])),
            strings(&[
                "admin@example.org",
                "ops@example.org",
                "alice@example.org",
                "www-data",
                "bob@example.org"
            ])
        );
        let with_default = Aliases::parse("root: a@example.org\ndefault: b@example.org\n").unwrap();
        assert_eq!(
            with_default.expand(&strings(&["root", "nobody", "c@example.org"])),
            strings(&["a@example.org", "b@example.org", "c@example.org"])
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for text in ["root admin@example.org", "root:", "a@b: c@d", ": x@y"] {
            assert_eq!(Aliases::parse(text).unwrap_err().0, 1, "{text:?}");
        }
        assert_eq!(Aliases::parse("ok: a@b\n\nbad\n").unwrap_err().0, 3);
    }
}
