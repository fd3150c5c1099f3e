//! `sendbox generate`: the man pages and the shell completions, made from the clap
//! definitions the command parses with (clap_mangen, clap_complete), so that they cannot
//! drift from its options. The two pages clap cannot make are written by hand in `doc/`
//! and carried in the binary: sendbox-sendmail(8), for sendmail's own parser, and
//! sendbox.toml(5), the config file. Tests hold each to its parser.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use clap::CommandFactory as _;

use crate::args::{Cli, GenerateArgs, Generated};
use crate::error::Error;
use crate::exit;

/// sendbox-sendmail(8): every option the sendmail parser takes, ignores or refuses.
pub const SENDMAIL_PAGE: (&str, &str) = (
    "sendbox-sendmail.8",
    include_str!("../../doc/sendbox-sendmail.8"),
);
/// sendbox.toml(5): every key of the config file.
pub const CONFIG_PAGE: (&str, &str) = ("sendbox.toml.5", include_str!("../../doc/sendbox.toml.5"));

/// `sendbox generate man DIR` and `sendbox generate completions SHELL`.
pub fn run(args: GenerateArgs) -> Result<u8, Error> {
    match args.what {
        Generated::Man { dir } => {
            let pages = pages().map_err(|e| Error::Internal(format!("cannot render: {e}")))?;
            write_pages(&dir, &pages)?;
            println!("{} pages written to {}", pages.len(), dir.display());
        }
        Generated::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sendbox", &mut out);
            io::stdout()
                .write_all(&out)
                .map_err(|e| Error::Io(format!("cannot write the completions: {e}")))?;
        }
    }
    Ok(exit::OK)
}

/// Every page, by file name: sendbox(1), one per subcommand (`sendbox-queue-list.1`, as
/// git names them), and the two written by hand.
pub fn pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pages = Vec::new();
    let mut root = Vec::new();
    man(&cli).render(&mut root)?;
    // clap_mangen gives every subcommand section 1; sendmail's page is in section 8.
    let root = String::from_utf8_lossy(&root)
        .replace("\nsendbox\\-sendmail(1)\n", "\nsendbox\\-sendmail(8)\n")
        + &see_also(&cli);
    pages.push(("sendbox.1".to_owned(), root.into_bytes()));
    for command in cli.get_subcommands() {
        // Its options are sendmail's, not clap's: its page is written by hand.
        if command.get_name() != "sendmail" {
            subcommand_pages(command, &mut pages)?;
        }
    }
    for (name, text) in [SENDMAIL_PAGE, CONFIG_PAGE] {
        pages.push((name.to_owned(), text.as_bytes().to_vec()));
    }
    Ok(pages)
}

fn subcommand_pages(command: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let man = man(command);
    let mut page = Vec::new();
    man.render(&mut page)?;
    pages.push((man.get_filename(), page));
    for sub in command.get_subcommands() {
        subcommand_pages(sub, pages)?;
    }
    Ok(())
}

/// A page's renderer; each page's footer names sendbox and its version.
fn man(command: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command.clone())
        .source(format!("sendbox {}", env!("CARGO_PKG_VERSION")))
        .manual("sendbox manual")
}

/// sendbox(1)'s SEE ALSO: the other pages.
fn see_also(cli: &clap::Command) -> String {
    let mut names: Vec<String> = cli
        .get_subcommands()
        .filter(|command| command.get_name() != "sendmail")
        .map(|command| format!("\\fB{}\\fR(1)", command.get_display_name().unwrap_or("")))
        .collect();
    names.push("\\fBsendbox-sendmail\\fR(8)".to_owned());
    names.push("\\fBsendbox.toml\\fR(5)".to_owned());
    format!(".SH \"SEE ALSO\"\n{}\n", names.join(",\n"))
}

/// Writes every page to a temporary file first, and only then renames them into place,
/// so that a failure leaves the pages as they were rather than some of them new.
fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> Result<(), Error> {
    let cannot = |path: &Path, e: io::Error| {
        Error::CannotCreate(format!(
            "cannot write {}: {e}; name a folder you can write to",
            path.display()
        ))
    };
    fs::create_dir_all(dir).map_err(|e| cannot(dir, e))?;
    let temporary = |name: &str| dir.join(format!(".{name}.new"));
    let written = pages.iter().try_for_each(|(name, text)| {
        fs::write(temporary(name), text).map_err(|e| cannot(&temporary(name), e))
    });
    let placed = written.and_then(|()| {
        pages.iter().try_for_each(|(name, _)| {
            let path = dir.join(name);
            fs::rename(temporary(name), &path).map_err(|e| cannot(&path, e))
        })
    });
    if placed.is_err() {
        for (name, _) in pages {
            let _ = fs::remove_file(temporary(name));
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_for_every_command_and_none_for_help() {
        let names: Vec<String> = pages().unwrap().into_iter().map(|(n, _)| n).collect();
        for expected in [
            "sendbox.1",
            "sendbox-send.1",
            "sendbox-batch.1",
            "sendbox-queue.1",
            "sendbox-queue-list.1",
            "sendbox-queue-remove.1",
            "sendbox-serve.1",
            "sendbox-grant.1",
            "sendbox-generate-man.1",
            "sendbox-sendmail.8",
            "sendbox.toml.5",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("help") || n == "sendbox-sendmail.1")
        );
        let (_, root) = &pages().unwrap()[0];
        let root = String::from_utf8_lossy(root);
        assert!(root.contains("\nsendbox\\-sendmail(8)\n"), "{root}");
        assert!(!root.contains("sendbox\\-sendmail(1)"), "{root}");
    }

    #[test]
    fn each_option_of_send_is_on_its_page() {
        let pages = pages().unwrap();
        let (_, send) = pages.iter().find(|(n, _)| n == "sendbox-send.1").unwrap();
        let send = String::from_utf8(send.clone()).unwrap();
        let cli = Cli::command();
        let command = cli.find_subcommand("send").unwrap();
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                // Roff writes each - of an option as \-.
                let written = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(
                    send.contains(&written),
                    "--{long} is not on sendbox-send(1)"
                );
            }
        }
    }

    /// cargo-deb takes the packages' version from the workspace; what it cannot, the MTA
    /// package's Depends and the changelog's top entry, must say the same.
    #[test]
    fn the_packages_carry_the_workspace_version() {
        let version = env!("CARGO_PKG_VERSION");
        let manifest: toml::Table =
            toml::from_str(include_str!("../Cargo.toml")).expect("cli/Cargo.toml parses");
        let depends = manifest["package"]["metadata"]["deb"]["variants"]["mta"]["depends"]
            .as_str()
            .unwrap();
        assert_eq!(depends, format!("sendbox (>= {version})"));
        let changelog = include_str!("../debian/changelog");
        assert!(
            changelog.starts_with(&format!("sendbox ({version}-1) ")),
            "cli/debian/changelog's first entry is not {version}-1"
        );
    }
}
