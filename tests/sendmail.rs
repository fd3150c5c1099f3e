//! `sendbox sendmail` as the programs that call sendmail(1) use it, delivering to a real
//! Postfix on loopback: `git send-email` through a link named `sendmail`, and cron.
//!
//! These tests are ignored by a plain `cargo test`: Postfix must be installed and started
//! first with `just postfix` (tests/postfix/setup.sh, as root), which also installs git
//! and git-email. `.ci/run` runs them with `--include-ignored`; if Postfix is missing they
//! fail, never pass silently.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

use support::postfix::{STATE, delivered, state, token};
use support::{run_piped, sendbox_bin, sendbox_command, text};

/// What tests/postfix/setup.sh left for us: the AUTH user.
fn postfix_user() -> String {
    state("user").trim().to_owned()
}

/// Writes the config file `text` into `dir` (mode 0600), and returns its path.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A link named `sendmail` to the sendbox binary, in `dir/bin`.
fn sendmail_link(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("sendmail");
    std::os::unix::fs::symlink(sendbox_bin(), &link).unwrap();
    link
}

/// `git` in `repo`, with no user or system configuration and a fixed identity.
fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Patch Author")
        .env("GIT_AUTHOR_EMAIL", "author@sendbox.test")
        .env("GIT_COMMITTER_NAME", "Patch Author")
        .env("GIT_COMMITTER_EMAIL", "author@sendbox.test")
        .env_remove("SENDBOX_CONFIG");
    command
}

#[track_caller]
fn git_ok(repo: &Path, args: &[&str]) -> Output {
    let mut command = git(repo);
    command.args(args);
    let output = run_piped(command, b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "git {args:?}: {}",
        text(&output)
    );
    output
}

#[test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
fn git_send_email_through_a_sendmail_link() {
    let user = postfix_user();
    let token = token("gse");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git_ok(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("notes.txt"),
        format!("unique line {token}\n.a line that starts with a dot\n"),
    )
    .unwrap();
    git_ok(&repo, &["add", "notes.txt"]);
    git_ok(
        &repo,
        &["commit", "-q", "-m", &format!("add notes {token}")],
    );
    let patches = dir.path().join("patches");
    let output = git_ok(
        &repo,
        &["format-patch", "-1", "-o", patches.to_str().unwrap()],
    );
    let patch = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(patch.ends_with(".patch"), "format-patch printed {patch:?}");

    // The password comes from a command; the account has no `from`, so the envelope
    // sender is the message's From, which git writes from --from.
    let config = write_config(
        dir.path(),
        &format!(
            "[accounts.postfix]\n\
             server = \"localhost:587\"\n\
             tls = \"starttls\"\n\
             ca = \"{STATE}/ca.pem\"\n\
             ehlo = \"client.sendbox.test\"\n\
             user = \"{user}\"\n\
             password_command = \"cat {STATE}/password\"\n"
        ),
    );
    let link = sendmail_link(dir.path());

    let mut send_email = git(&repo);
    send_email
        .env("SENDBOX_CONFIG", &config)
        .args([
            "send-email",
            "--confirm=never",
            "--suppress-cc=all",
            "--to=bob@sendbox.test",
            "--from=alice@sendbox.test",
        ])
        .arg(format!("--smtp-server={}", link.display()))
        .arg(&patch);
    let output = run_piped(send_email, b"");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // git send-email says which sendmail it ran, and that it succeeded.
    assert!(
        stdout.contains(&format!("Sendmail: {}", link.display())),
        "{}",
        text(&output)
    );
    assert!(stdout.contains("Result: OK"), "{}", text(&output));

    let stored = delivered("bob", &token);
    assert!(
        stored.contains(&format!("\nSubject: [PATCH] add notes {token}\n")),
        "{stored}"
    );
    assert!(stored.contains("\nFrom: alice@sendbox.test\n"), "{stored}");
    assert!(stored.contains("\nTo: bob@sendbox.test\n"), "{stored}");
    assert!(stored.contains("\nX-Mailer: git-send-email "), "{stored}");
    // Postfix records the envelope sender, and that it came over TLS from the user who
    // logged in.
    assert!(
        stored.contains("\nReturn-Path: <alice@sendbox.test>\n"),
        "{stored}"
    );
    assert!(stored.contains(" with ESMTPSA id "), "{stored}");
    assert!(
        stored.contains(&format!("(Authenticated sender: {user}")),
        "{stored}"
    );
    // git's in-body From for an author other than the sender.
    assert!(
        stored.contains("\n\nFrom: Patch Author <author@sendbox.test>\n"),
        "{stored}"
    );
    // The patch is intact, the line with a leading dot too (-i, then dot-stuffing).
    for line in [
        "\ndiff --git a/notes.txt b/notes.txt\n",
        "\nnew file mode 100644\n",
        "\n--- /dev/null\n+++ b/notes.txt\n@@ -0,0 +1,2 @@\n",
        &format!("\n+unique line {token}\n+.a line that starts with a dot\n-- \n"),
    ] {
        assert!(stored.contains(line), "{line:?} missing from:\n{stored}");
    }
}

/// What cron writes: From: root, 8-bit UTF-8 text, and a line that is only a dot.
fn cron_message(token: &str) -> String {
    format!(
        "From: root (Cron Daemon)\n\
         To: bob@sendbox.test\n\
         Subject: Cron <root@host> /usr/local/bin/report {token}\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=UTF-8\n\
         Content-Transfer-Encoding: 8bit\n\
         X-Cron-Env: <SHELL=/bin/sh>\n\
         \n\
         Grüße vom Cron-Job: 5 € gespart, ✓ erledigt {token}\n\
         .\n\
         after the lone dot\n"
    )
}

/// A config for Postfix's port 25: no TLS, no login, and root@sendbox.test as the sender,
/// since cron's `root` has no domain.
fn port_25_config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        "[accounts.relay]\n\
         server = \"127.0.0.1:25\"\n\
         tls = \"none\"\n\
         from = \"root@sendbox.test\"\n",
    )
}

/// `sendbox sendmail ARGS` with the config file `config`, the cron message on stdin.
fn sendmail_as_cron(dir: &Path, config: &Path, args: &[&str], token: &str) -> Output {
    let mut command = sendbox_command(sendbox_bin(), dir, "");
    command
        .env("SENDBOX_CONFIG", config)
        .arg("sendmail")
        .args(args);
    run_piped(command, cron_message(token).as_bytes())
}

#[test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
fn cron_mails_its_output_with_8bit_text() {
    let token = token("cron");
    let dir = tempfile::tempdir().unwrap();
    let config = port_25_config(dir.path());
    let args = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-t"];
    let output = sendmail_as_cron(dir.path(), &config, &args, &token);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        text(&output)
    );

    let stored = delivered("bob", &token);
    assert!(
        stored.contains(&format!(
            "\nSubject: Cron <root@host> /usr/local/bin/report {token}\n"
        )),
        "{stored}"
    );
    assert!(
        stored.contains("\nReturn-Path: <root@sendbox.test>\n"),
        "{stored}"
    );
    assert!(
        stored.contains("\nX-Cron-Env: <SHELL=/bin/sh>\n"),
        "{stored}"
    );
    // The 8-bit body arrives as it was written, byte for byte, the lone dot too.
    assert!(
        stored.contains(&format!(
            "\n\nGrüße vom Cron-Job: 5 € gespart, ✓ erledigt {token}\n.\nafter the lone dot\n"
        )),
        "{stored}"
    );
}

/// cronie runs `sendmail -FCronDaemon -i -odi -oem -oi -t -f root`: `-f` with the bare user
/// name. A real sendmail qualifies it; sendbox refuses "root" (no @domain) with 65, even
/// when the account says which sender to use, so cronie's mail is lost.
#[test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
fn cronie_command_line_with_f_root() {
    let token = token("cronie");
    let dir = tempfile::tempdir().unwrap();
    let config = port_25_config(dir.path());
    let args = [
        "-FCronDaemon",
        "-i",
        "-odi",
        "-oem",
        "-oi",
        "-t",
        "-f",
        "root",
    ];
    let output = sendmail_as_cron(dir.path(), &config, &args, &token);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stored = delivered("bob", &token);
    assert!(stored.contains("after the lone dot"), "{stored}");
}
