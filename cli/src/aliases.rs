//! The aliases file: local names such as `root` or `cron`, which cron and daemons send
//! to, mapped to real addresses. The subset of aliases(5) that a null client can honour:
//!
//! ```text
//! # comment (a line starting with #, or # after a space)
//! root: admin@example.org
//! postmaster: root                  # a name: followed to its own aliases
//! cron: ops@example.org,
//!     alice@example.org             # a line starting with a space continues the entry
//! default: admin@example.org        # any other local name (msmtp's extension)
//! ```
//!
//! A name that is aliased to itself (`root: root, backup@example.org`) stays a local name
//! there, as sendmail does. What only a local delivery agent can do, a pipe (`|command`),
//! a file (`/path`) or `:include:`, is refused with the file and line when a recipient
//! reaches it: never turned into an address. A longer loop is refused the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// How deep a chain of names may go (sendmail's `MAXALIASDEPTH` is 10).
const MAX_DEPTH: usize = 10;

/// The largest aliases file read; Debian's is a few hundred bytes.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// The aliases of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    file: PathBuf,
    map: BTreeMap<String, Entry>,
}

/// One `name: target, ...` entry and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    line: usize,
    targets: Vec<String>,
}

impl Aliases {
    /// Reads `path`, which must be a regular file (never waiting on a FIFO or reading a
    /// device without end); errors name the file and the line. Lines that are not UTF-8
    /// are refused, except comments (an old file's Latin-1 name in a comment).
    pub fn load(path: &Path) -> Result<Aliases, String> {
        let cannot =
            |why: String| format!("cannot read the aliases file {}: {why}", path.display());
        let bytes = read_regular_file(path).map_err(cannot)?;
        let mut text = String::with_capacity(bytes.len());
        for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            match std::str::from_utf8(line) {
                Ok(line) => text.push_str(line),
                Err(_) if line.trim_ascii_start().starts_with(b"#") => text.push('\n'),
                Err(_) => {
                    return Err(format!(
                        "aliases {}:{}: not UTF-8 text; save the file as UTF-8",
                        path.display(),
                        index + 1
                    ));
                }
            }
        }
        Self::parse(path, &text)
            .map_err(|(line, problem)| format!("aliases {}:{line}: {problem}", path.display()))
    }

    fn parse(file: &Path, text: &str) -> Result<Aliases, (usize, String)> {
        let mut map = BTreeMap::new();
        // Each entry's first line and its text, continuation lines joined.
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = uncommented(raw);
            if line.trim().is_empty() {
                continue;
            }
            match entries.last_mut() {
                Some((_, entry)) if raw.starts_with([' ', '\t']) => {
                    entry.push(' ');
                    entry.push_str(line.trim());
                }
                _ => entries.push((index + 1, line.trim().to_owned())),
            }
        }
        for (line, entry) in entries {
            let malformed = || (line, "not `name: address, ...`".to_owned());
            let (name, targets) = entry.split_once(':').ok_or_else(malformed)?;
            let name = unquoted(name.trim()).to_ascii_lowercase();
            let targets: Vec<String> = targets
                .split(',')
                .map(|target| unquoted(target.trim()).to_owned())
                .filter(|target| !target.is_empty())
                .collect();
            if name.is_empty() || name.contains(['@', ' ']) || targets.is_empty() {
                return Err(malformed());
            }
            map.insert(name, Entry { line, targets });
        }
        Ok(Aliases {
            file: file.to_owned(),
            map,
        })
    }

    /// The file they were read from, if any.
    pub fn file(&self) -> Option<&Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }

    /// How many names have an alias.
    pub fn count(&self) -> usize {
        self.map.len()
    }

    /// What would stop a message to any of the names: each name followed to its
    /// addresses, each problem once, in the order of the lines.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: BTreeSet<(usize, String)> = BTreeSet::new();
        for (name, entry) in &self.map {
            if let Err(problem) = self.expand(std::slice::from_ref(name)) {
                problems.insert((entry.line, problem));
            }
        }
        let mut seen = BTreeSet::new();
        problems
            .into_iter()
            .map(|(_, problem)| problem)
            .filter(|problem| seen.insert(problem.clone()))
            .collect()
    }

    /// The recipients with each local name (no `@`) replaced by its addresses, followed
    /// through names that are aliases too, or by the `default` ones; other addresses,
    /// and names without an alias, stay as they are.
    pub fn expand(&self, recipients: &[String]) -> Result<Vec<String>, String> {
        let mut expanded = Vec::new();
        for recipient in recipients {
            self.expand_one(recipient, &mut Vec::new(), &mut expanded)?;
        }
        Ok(expanded)
    }

    /// Expands `recipient`, reached through the names in `path`, into `out`.
    fn expand_one(
        &self,
        recipient: &str,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        if recipient.contains('@') {
            out.push(recipient.to_owned());
            return Ok(());
        }
        let name = recipient.to_ascii_lowercase();
        let Some((key, entry)) = self
            .map
            .get_key_value(&name)
            .or_else(|| self.map.get_key_value("default"))
        else {
            out.push(recipient.to_owned());
            return Ok(());
        };
        if path.last() == Some(&name) {
            // `root: root, ...`: the name itself, as a local recipient.
            out.push(recipient.to_owned());
            return Ok(());
        }
        if path.contains(&name) || path.len() >= MAX_DEPTH {
            path.push(name);
            return Err(self.refusal(
                entry.line,
                &format!(
                    "the aliases loop or go deeper than {MAX_DEPTH} names: {}",
                    path.join(" -> ")
                ),
            ));
        }
        path.push(key.clone());
        for target in &entry.targets {
            if let Some(why) = unsupported(target) {
                return Err(self.refusal(
                    entry.line,
                    &format!(
                        "{name} goes to `{target}`, {why}, which sendbox (a null client \
                         that only relays) cannot deliver; give an address instead"
                    ),
                ));
            }
            // A local name is checked as the local part it becomes (`root@domain`).
            let as_address = match target.contains('@') {
                true => target.clone(),
                false => format!("{target}@localhost"),
            };
            if let Err(why) =
                sendbox_proto::command::check_mailbox(sendbox_proto::Phase::Rcpt, &as_address)
            {
                let what = match target.contains('@') {
                    true => why.message,
                    false => format!("`{target}`, which is neither an address nor a local name"),
                };
                return Err(self.refusal(
                    entry.line,
                    &format!("{name} goes to {what}; give a valid address"),
                ));
            }
            self.expand_one(target, path, out)?;
        }
        path.pop();
        Ok(())
    }

    fn refusal(&self, line: usize, problem: &str) -> String {
        format!("aliases {}:{line}: {problem}", self.file.display())
    }
}

/// What a target is when only a local delivery agent could deliver it.
fn unsupported(target: &str) -> Option<&'static str> {
    if target.starts_with('|') {
        Some("a pipe to a command")
    } else if target.starts_with('/') {
        Some("a file")
    } else if target.to_ascii_lowercase().starts_with(":include:") {
        Some("a list of addresses to include")
    } else if target.to_ascii_lowercase().starts_with(":error:") {
        Some("an error to return to the sender")
    } else if target.starts_with('\\') {
        Some("a local mailbox")
    } else {
        None
    }
}

/// The line without its comment: `#` at its start, or after a space or tab.
fn uncommented(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    match (1..bytes.len()).find(|&at| bytes[at] == b'#' && bytes[at - 1].is_ascii_whitespace()) {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The whole of `path`, opened without following a FIFO's wait (O_NONBLOCK) and read only
/// when it is a regular file of at most [`MAX_FILE`] bytes.
fn read_regular_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if metadata.len() > MAX_FILE {
        return Err(format!(
            "it is larger than {} MiB",
            MAX_FILE / (1024 * 1024)
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err("it grew while it was read".to_owned());
    }
    Ok(bytes)
}

/// `"text"` without its quotes (aliases(5) quotes names and targets that hold spaces).
fn unquoted(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn parse(text: &str) -> Result<Aliases, (usize, String)> {
        Aliases::parse(Path::new("/etc/aliases"), text)
    }

    #[test]
    fn local_names_become_their_addresses() {
        let aliases = parse(
            "# cron and daemons\nroot: admin@example.org\nCron: ops@example.org, alice@example.org # both\n\n",
        )
        .unwrap();
        assert_eq!(
            aliases
                .expand(&strings(&["root", "cron", "www-data", "bob@example.org"]))
                .unwrap(),
            strings(&[
                "admin@example.org",
                "ops@example.org",
                "alice@example.org",
                "www-data",
                "bob@example.org"
            ])
        );
        let with_default = parse("root: a@example.org\ndefault: b@example.org\n").unwrap();
        assert_eq!(
            with_default
                .expand(&strings(&["root", "nobody", "c@example.org"]))
                .unwrap(),
            strings(&["a@example.org", "b@example.org", "c@example.org"])
        );
    }

    #[test]
    fn chains_are_followed_and_a_name_aliased_to_itself_stays() {
        let aliases = parse(
            "postmaster: root\nabuse: postmaster\nroot: root, admin@example.org\n\
             ops: \"team\",\n  carol@example.org\nteam: dave@example.org\n",
        )
        .unwrap();
        assert_eq!(
            aliases.expand(&strings(&["abuse", "ops"])).unwrap(),
            strings(&[
                "root",
                "admin@example.org",
                "dave@example.org",
                "carol@example.org"
            ])
        );
    }

    #[test]
    fn loops_and_what_only_a_local_agent_can_deliver_are_refused_naming_the_line() {
        let aliases = parse(
            "a: b\nb: a\nbackup: |/usr/local/bin/handle\narchive: /var/mail/archive\n\
             list: :include:/etc/mail/list\nok: x@example.org\n",
        )
        .unwrap();
        let refused = |name: &str| aliases.expand(&strings(&[name])).unwrap_err();
        let looped = refused("a");
        assert!(looped.starts_with("aliases /etc/aliases:1: "), "{looped}");
        assert!(looped.contains("a -> b -> a"), "{looped}");
        for (name, line, what) in [
            ("backup", 3, "`|/usr/local/bin/handle`, a pipe to a command"),
            ("archive", 4, "`/var/mail/archive`, a file"),
            (
                "list",
                5,
                "`:include:/etc/mail/list`, a list of addresses to include",
            ),
        ] {
            let error = refused(name);
            assert!(
                error.starts_with(&format!("aliases /etc/aliases:{line}: ")),
                "{error}"
            );
            assert!(error.contains(what), "{error}");
            assert!(!error.contains("@"), "{error}");
        }
        // Unused entries of those kinds do not stop the others.
        assert_eq!(
            aliases.expand(&strings(&["ok"])).unwrap(),
            strings(&["x@example.org"])
        );
    }

    #[test]
    fn an_invalid_address_is_refused_naming_the_line() {
        let aliases = parse("root: ok@example.org\nbad: a b@example.org\n").unwrap();
        let error = aliases.expand(&strings(&["bad"])).unwrap_err();
        assert!(
            error.contains(":2: bad goes to address \"a b@example.org\""),
            "{error}"
        );
        assert!(aliases.expand(&strings(&["root"])).is_ok());
    }

    #[test]
    fn what_sendmail_could_never_send_is_refused_naming_the_line() {
        let aliases = parse(
            "ok: root\nbounce: :error:5.1.1 gone\nlocal: \\root, a@example.org\nspace: a b\n",
        )
        .unwrap();
        let problems = aliases.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains(":2: bounce goes to `:error:5.1.1 gone`, an error"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains(":3: local goes to `\\root`, a local mailbox"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains(":4: space goes to `a b`, which is neither"),
            "{problems:?}"
        );
        assert_eq!(
            aliases.expand(&strings(&["ok"])).unwrap(),
            strings(&["root"])
        );
    }

    #[test]
    fn many_bad_entries_are_each_reported_once_in_line_order() {
        let mut text = String::new();
        for n in 0..50_000 {
            text.push_str(&format!("n{n}: |/bin/handle\n"));
        }
        let problems = parse(&text).unwrap().problems();
        assert_eq!(problems.len(), 50_000);
        assert!(problems[0].contains(":1: n0 goes to"), "{}", problems[0]);
        assert!(problems[49_999].contains(":50000: n49999 goes to"));
    }

    #[test]
    fn a_file_that_is_not_text_or_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let latin1 = dir.path().join("latin1");
        std::fs::write(&latin1, b"# maintained by J\xfcrgen\nroot: a@example.org\n").unwrap();
        assert_eq!(
            Aliases::load(&latin1)
                .unwrap()
                .expand(&strings(&["root"]))
                .unwrap(),
            strings(&["a@example.org"])
        );
        std::fs::write(&latin1, b"root: a@example.org\nj\xfcrgen: b@example.org\n").unwrap();
        let error = Aliases::load(&latin1).unwrap_err();
        assert!(
            error.ends_with("latin1:2: not UTF-8 text; save the file as UTF-8"),
            "{error}"
        );
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let error = Aliases::load(&fifo).unwrap_err();
        assert!(error.ends_with("it is not a regular file"), "{error}");
        let error = Aliases::load(Path::new("/dev/zero")).unwrap_err();
        assert!(error.ends_with("it is not a regular file"), "{error}");
    }

    #[test]
    fn bad_lines_are_named() {
        for text in ["root admin@example.org", "root:", "a@b: c@d", ": x@y"] {
            assert_eq!(parse(text).unwrap_err().0, 1, "{text:?}");
        }
        assert_eq!(parse("ok: a@b\n\nbad\n").unwrap_err().0, 3);
    }
}
