//! The outbox of `sendbox sendmail` and `sendbox queue`, with real faults: Postfix stopped
//! and started again, a runner killed with SIGKILL in the middle of DATA, a full disk, an
//! outbox that cannot be made, two runners at once over 200 messages, and permanent
//! refusals; queue files damaged by hand, and escape sequences in what is queued. The
//! mail server is the test Postfix on 127.0.0.1:25 (`just postfix`), or the in-process
//! loopback server.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sendbox_loopback::ServerTls;
use support::scripted::{GREETING, ScriptedServer, Step};
use support::*;

/// Tests that stop Postfix, or need it up, take turns.
static POSTFIX: Mutex<()> = Mutex::new(());

fn postfix_turn() -> std::sync::MutexGuard<'static, ()> {
    POSTFIX
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A config file with one account, `main`, on `server` (plaintext), and the outbox in the
/// test's own directory; `queue` adds lines to `[queue]`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(server: &str, queue: &str) -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        setup.point_at(server, queue);
        setup
    }

    /// Rewrites the config: the same account now on `server`.
    fn point_at(&self, server: &str, queue: &str) {
        let config = format!(
            "default = \"main\"\n\
             [accounts.main]\n\
             server = \"{server}\"\n\
             tls = \"none\"\n\
             from = \"alice@sendbox.test\"\n\
             [queue]\n\
             dir = \"{}\"\n\
             {queue}\n",
            self.outbox().display()
        );
        std::fs::write(self.config(), config).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = sendbox_command(sendbox_bin(), self.dir.path(), "");
        command.args(args);
        command
    }

    /// `sendmail -C CONFIG -i RECIPIENT...`, not yet run.
    fn sendmail_command(&self, recipients: &[&str]) -> Command {
        let config = self.config();
        let mut command = self.command(&["sendmail", "-C", config.to_str().unwrap(), "-i"]);
        command.args(recipients);
        command
    }

    /// `sendmail -C CONFIG -i RECIPIENT...` with a message whose subject is `subject`.
    fn sendmail_to(&self, recipients: &[&str], subject: &str) -> Output {
        run_piped(
            self.sendmail_command(recipients),
            message(subject).as_bytes(),
        )
    }

    /// The same to bob.
    fn sendmail(&self, subject: &str) -> Output {
        self.sendmail_to(&["bob@sendbox.test"], subject)
    }

    /// sendbox through a link called `name` (sendmail, mailq, newaliases), as sendbox-mta
    /// installs them, with `-C CONFIG` and then `args`.
    fn linked_as(&self, name: &str, args: &[&str]) -> Output {
        let link = self.dir.path().join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(sendbox_bin(), &link).unwrap();
        }
        let mut command = sendbox_command(&link, self.dir.path(), "");
        command.arg("-C").arg(self.config()).args(args);
        command.output().unwrap()
    }

    /// `sendbox queue --config CONFIG ACTION...`.
    fn queue(&self, action: &[&str]) -> Output {
        let config = self.config();
        let mut args = vec!["queue", "--config", config.to_str().unwrap()];
        args.extend(action);
        self.command(&args).output().unwrap()
    }

    /// Queues a message with `subject` for bob (the server must be down) and returns its id.
    fn queued(&self, subject: &str) -> String {
        let before = self.messages_in("queue");
        assert_exit(&self.sendmail(subject), 0, "queued as");
        self.messages_in("queue")
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("a new message in queue/")
    }

    /// Writes `queue/NAME` (a message, or with `.state` its attempts) as a hand or a
    /// damaged disk would.
    fn plant(&self, name: &str, content: impl AsRef<[u8]>) {
        std::fs::write(self.outbox().join("queue").join(name), content).unwrap();
    }

    /// The delivery log, when the config names it as [`LOGGED`] does.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sendbox.log")).unwrap_or_default()
    }

    /// The files in `queue/` or `failed/` that are messages (not their `.state`).
    fn messages_in(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.outbox().join(folder))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| !name.ends_with(".state"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Lines for the end of `[queue]`: a delivery log in the test's directory.
const LOGGED: &str = "[log]\nfile = \"sendbox.log\"";

/// Output and log lines must never hold a raw escape sequence: ESC, BEL, CSI.
#[track_caller]
fn assert_no_raw_controls(text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n')
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} in {text}");
}

fn message(subject: &str) -> String {
    format!(
        "From: alice@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: {subject}\r\n\r\nkept until delivered\r\n"
    )
}

/// A port on which nothing listens: a server that is down.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// How many times a message with `subject` is in bob's mailbox.
fn copies(subject: &str) -> usize {
    let mbox =
        std::fs::read(Path::new(support::postfix::MAILBOXES).join("bob")).unwrap_or_default();
    String::from_utf8_lossy(&mbox)
        .matches(&format!("Subject: {subject}\n"))
        .count()
}

/// Waits until every subject is in bob's mailbox, then a little longer for duplicates,
/// and returns how many copies of each arrived.
fn arrived(subjects: &[String]) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while subjects.iter().any(|s| copies(s) == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    subjects.iter().map(|s| copies(s)).collect()
}

/// Postfix stopped until this is dropped, even by a failing test: the other tests need it.
struct StoppedPostfix;

impl StoppedPostfix {
    fn new() -> Self {
        postfixctl("stop");
        wait_for_port_25(false);
        StoppedPostfix
    }
}

impl Drop for StoppedPostfix {
    fn drop(&mut self) {
        postfixctl("start");
        wait_for_port_25(true);
    }
}

fn postfixctl(action: &str) {
    let status = Command::new("postfix")
        .arg(action)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "postfix {action}");
}

fn wait_for_port_25(up: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:25").is_ok() != up {
        assert!(
            Instant::now() < deadline,
            "Postfix did not come {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs Postfix on loopback, and stops and starts it: run .ci/run, or `just postfix` as root"]
fn mail_sent_while_postfix_is_stopped_is_delivered_once_it_is_back() {
    let _turn = postfix_turn();
    support::postfix::state("ca.pem");
    let setup = Setup::new("127.0.0.1:25", "");
    let subject = support::postfix::token("outbox-stopped");
    let sent = {
        let _stopped = StoppedPostfix::new();
        setup.sendmail(&subject)
    };

    assert_exit(&sent, 0, "queued as");
    assert!(text(&sent).contains("queue run"), "{}", text(&sent));
    assert_eq!(setup.messages_in("queue").len(), 1);
    let list = setup.queue(&["list"]);
    // The first retry is 30 minutes away (29 once a second has passed).
    assert_exit(&list, 0, "1 try, next in ");
    assert!(
        text(&list).contains("next in 30m") || text(&list).contains("next in 29m"),
        "{}",
        text(&list)
    );
    assert!(
        text(&list).contains("Connection refused") || text(&list).contains("connect"),
        "{}",
        text(&list)
    );

    // Not due yet: `run` leaves it; `flush` sends it.
    assert_exit(&setup.queue(&["run"]), 0, "");
    assert_eq!(
        setup.messages_in("queue").len(),
        1,
        "run sent a message not yet due"
    );
    let flushed = setup.queue(&["flush"]);
    assert_exit(&flushed, 0, "1 delivered, 0 still queued, 0 failed");
    assert_eq!(arrived(std::slice::from_ref(&subject)), [1]);
    assert!(setup.messages_in("queue").is_empty());
    assert_exit(&setup.queue(&["flush"]), 0, "");
    assert_eq!(arrived(&[subject]), [1], "delivered twice");
}

#[test]
#[ignore = "needs Postfix on loopback: run .ci/run, or `just postfix` as root"]
fn a_runner_killed_in_the_middle_of_data_loses_nothing() {
    let _turn = postfix_turn();
    // A server that takes everything up to DATA's 354, reads the content, and never says
    // whether it accepted it.
    let stalling = ScriptedServer::start(
        vec![
            Step::Send(GREETING),
            Step::Expect("EHLO"),
            Step::Send("250-scripted.test\r\n250 8BITMIME\r\n"),
            Step::Expect("MAIL FROM"),
            Step::Send("250 2.1.0 ok\r\n"),
            Step::Expect("RCPT TO"),
            Step::Send("250 2.1.5 ok\r\n"),
            Step::Expect("DATA"),
            Step::Send("354 go on\r\n"),
            Step::ExpectData,
            Step::Silent,
        ],
        None,
    );
    let server = format!("127.0.0.1:{}", stalling.port());
    let setup = Setup::new(&closed_port(), "");
    let subject = support::postfix::token("outbox-killed");
    assert_exit(&setup.sendmail(&subject), 0, "queued as");

    setup.point_at(&server, "");
    let config = setup.config();
    let mut runner = setup
        .command(&["queue", "--config", config.to_str().unwrap(), "flush"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the content is on its way.
    std::thread::sleep(Duration::from_secs(2));
    runner.kill().unwrap(); // SIGKILL
    runner.wait().unwrap();
    let seen = stalling.seen();
    assert!(
        seen.plaintext_text().contains("Subject: "),
        "the runner never reached DATA: {seen:?}"
    );

    assert_eq!(
        setup.messages_in("queue").len(),
        1,
        "the killed runner's message is gone"
    );
    setup.point_at("127.0.0.1:25", "");
    assert_exit(&setup.queue(&["flush"]), 0, "1 delivered");
    assert_eq!(arrived(&[subject]), [1]);
    assert!(setup.messages_in("queue").is_empty());
}

#[test]
#[ignore = "needs Postfix on loopback: run .ci/run, or `just postfix` as root"]
fn two_runners_at_once_deliver_each_of_200_messages_once() {
    let _turn = postfix_turn();
    let setup = Setup::new(&closed_port(), "");
    let run = support::postfix::token("outbox-200");
    let subjects: Vec<String> = (0..200).map(|i| format!("{run}-{i}")).collect();
    // Queued four at a time, each by its own sendmail.
    for chunk in subjects.chunks(4) {
        let children: Vec<_> = chunk
            .iter()
            .map(|subject| {
                let mut child = setup
                    .sendmail_command(&["bob@sendbox.test"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(message(subject).as_bytes())
                    .unwrap();
                child
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert_exit(&output, 0, "queued as");
        }
    }
    assert_eq!(setup.messages_in("queue").len(), 200);

    setup.point_at("127.0.0.1:25", "");
    let config = setup.config();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            setup
                .command(&["queue", "--config", config.to_str().unwrap(), "flush"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for runner in runners {
        let output = runner.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    assert!(setup.messages_in("queue").is_empty());
    let counts = arrived(&subjects);
    let wrong: Vec<(&String, usize)> = subjects
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(wrong.is_empty(), "not delivered exactly once: {wrong:?}");
}

#[test]
#[ignore = "needs Postfix on loopback: run .ci/run, or `just postfix` as root"]
fn a_permanent_refusal_leaves_the_queue_for_failed() {
    let _turn = postfix_turn();
    // At once: sendmail fails as it always did, and keeps a copy in failed/.
    let setup = Setup::new("127.0.0.1:25", "");
    let refused = setup.sendmail_to(&["nobody@sendbox.test"], "refused");
    assert_exit(&refused, 67, "550 5.1.1");
    assert!(text(&refused).contains("failed"), "{}", text(&refused));
    assert!(setup.messages_in("queue").is_empty());
    assert_eq!(setup.messages_in("failed").len(), 1);

    // Later, from the queue: the runner reports it and moves it to failed/.
    let setup = Setup::new(&closed_port(), "");
    assert_exit(
        &setup.sendmail_to(&["nobody@sendbox.test"], "refused later"),
        0,
        "queued as",
    );
    setup.point_at("127.0.0.1:25", "");
    let flushed = setup.queue(&["flush"]);
    assert_exit(&flushed, 0, "0 delivered, 0 still queued, 1 failed");
    assert!(text(&flushed).contains("550 5.1.1"), "{}", text(&flushed));
    // The summary once, not again on stderr for the one account.
    assert_eq!(
        text(&flushed).matches("still queued").count(),
        1,
        "{}",
        text(&flushed)
    );
    let failed = setup.messages_in("failed");
    assert_eq!(failed.len(), 1);
    assert!(setup.messages_in("queue").is_empty());
    let list = setup.queue(&["list"]);
    assert_exit(&list, 0, "FAILED  to nobody@sendbox.test");
    let show = setup.queue(&["show", &failed[0]]);
    assert_exit(&show, 0, "Subject: refused later");
    assert_exit(&setup.queue(&["remove", &failed[0]]), 0, "");
    assert!(setup.messages_in("failed").is_empty());
}

#[test]
fn a_message_queued_past_its_age_limit_is_given_up() {
    let setup = Setup::new(&closed_port(), "give_up_days = 0");
    let output = setup.sendmail("too old");
    assert_exit(&output, 75, "gave up after 1 attempt over");
    assert!(setup.messages_in("queue").is_empty());
    assert_eq!(setup.messages_in("failed").len(), 1);
}

#[test]
fn a_dead_server_defers_every_due_message_of_its_account() {
    let setup = Setup::new(&closed_port(), "retry_minutes = 0");
    let ids: Vec<String> = (0..3).map(|n| setup.queued(&format!("dead {n}"))).collect();
    let attempts = |id: &str| {
        let state = setup.outbox().join("queue").join(format!("{id}.state"));
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
        state["count"].as_u64().unwrap()
    };
    assert_eq!(
        ids.iter().map(|id| attempts(id)).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    let run = setup.queue(&["run"]);
    assert_exit(&run, 0, "0 delivered, 3 still queued, 0 failed");
    // One connection was tried, and each message records this run's failure.
    assert_eq!(
        ids.iter().map(|id| attempts(id)).collect::<Vec<_>>(),
        [2, 2, 2]
    );
}

#[test]
fn without_the_queue_sendmail_fails_at_once_and_keeps_nothing() {
    let setup = Setup::new(&closed_port(), "enabled = false");
    let output = setup.sendmail("not queued");
    assert_exit(&output, 75, "connect");
    assert!(!setup.outbox().exists(), "an outbox was made");
}

#[test]
fn an_outbox_that_cannot_be_made_is_never_claimed_as_accepted() {
    let setup = Setup::new(&closed_port(), "");
    // The outbox under a file: no directory can be made there, even by root.
    std::fs::write(setup.dir.path().join("file"), "").unwrap();
    let config = std::fs::read_to_string(setup.config()).unwrap().replace(
        &setup.outbox().display().to_string(),
        &setup.dir.path().join("file/outbox").display().to_string(),
    );
    std::fs::write(setup.config(), config).unwrap();
    let output = setup.sendmail("nowhere to go");
    assert_exit(&output, 73, "cannot create the outbox");
}

#[test]
#[ignore = "needs root: mounts a small tmpfs as the outbox (run .ci/run)"]
fn a_full_disk_is_never_claimed_as_accepted() {
    let setup = Setup::new(&closed_port(), "");
    std::fs::create_dir(setup.outbox()).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(setup.outbox())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs (needs root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(setup.outbox());

    let big = format!("{}{}\r\n", message("too big"), "x".repeat(200_000));
    let output = run_piped(
        setup.sendmail_command(&["bob@sendbox.test"]),
        big.as_bytes(),
    );
    assert_exit(&output, 74, "cannot write");
    assert!(
        setup.messages_in("queue").is_empty(),
        "a partial message was queued"
    );
    assert!(
        setup.messages_in("tmp").is_empty(),
        "a partial message was left behind"
    );
    // A small one still fits: the failure was the disk's, and it left nothing behind.
    assert_exit(&setup.sendmail("fits"), 0, "queued as");
    // Filling the disk up: whatever fails (the message, or only the record of the attempt
    // after it), exit 0 means it is in queue/, and a failure means it is not.
    let mut refused = 0;
    for n in 0..80 {
        let before = setup.messages_in("queue").len();
        let output = setup.sendmail(&format!("filler {n} {}", "y".repeat(1500)));
        let after = setup.messages_in("queue").len();
        match output.status.code() {
            Some(0) => assert_eq!(after, before + 1, "exit 0, but not queued: {output:?}"),
            _ => {
                assert_eq!(after, before, "it failed, but was queued: {output:?}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the disk never filled up");
}

#[test]
fn queue_commands_on_an_empty_or_missing_id() {
    let setup = Setup::new(&closed_port(), "");
    assert_exit(&setup.queue(&["list"]), 0, "is empty");
    assert_exit(&setup.queue(&["show", "1.2.3.4"]), 66, "no message 1.2.3.4");
    assert_exit(
        &setup.queue(&["remove", "1.2.3.4"]),
        66,
        "no message 1.2.3.4",
    );
    assert_exit(
        &setup.queue(&["remove", "../config.toml"]),
        64,
        "not a queue id",
    );
    assert_exit(
        &setup.queue(&["show", "../config.toml"]),
        64,
        "not a queue id",
    );
    assert!(setup.config().exists());
}

#[test]
fn every_attempt_is_logged_to_a_file_and_to_syslog_without_a_secret() {
    use std::os::unix::net::UnixDatagram;
    let setup = Setup::new(&closed_port(), "");
    let syslog_path = setup.dir.path().join("syslog.sock");
    let syslog = UnixDatagram::bind(&syslog_path).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let log = setup.dir.path().join("sendbox.log");
    std::fs::write(
        setup.config(),
        format!(
            "default = \"main\"\n\
             [accounts.main]\n\
             server = \"{}\"\n\
             tls = \"starttls\"\n\
             from = \"alice@sendbox.test\"\n\
             user = \"alice\"\n\
             password_env = \"OUTBOX_TEST_PASSWORD\"\n\
             [log]\nfile = \"{}\"\nsyslog = true\nsyslog_socket = \"{}\"\n\
             [queue]\ndir = \"{}\"\n",
            closed_port(),
            log.display(),
            syslog_path.display(),
            setup.outbox().display()
        ),
    )
    .unwrap();
    let mut command = setup.sendmail_command(&["bob@sendbox.test"]);
    command.env("OUTBOX_TEST_PASSWORD", "hunter2-secret");
    assert_exit(
        &run_piped(command, message("logged").as_bytes()),
        0,
        "queued as",
    );

    let id = &setup.messages_in("queue")[0];
    let line = std::fs::read_to_string(&log).unwrap();
    let expected = format!(
        "id={id} account=main from=<alice@sendbox.test> to=bob@sendbox.test outcome=deferred error=\""
    );
    assert!(line.contains(&expected), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    let mut datagram = [0; 2048];
    let n = syslog.recv(&mut datagram).expect("a syslog datagram");
    let datagram = String::from_utf8_lossy(&datagram[..n]);
    // <22>: facility mail (2), severity info (6).
    assert!(datagram.starts_with("<22>"), "{datagram}");
    assert!(
        datagram.contains("sendbox[") && datagram.contains("outcome=deferred"),
        "{datagram}"
    );
    for text in [line.as_str(), &datagram] {
        assert!(!text.contains("hunter2"), "a secret was logged: {text}");
    }
}

#[test]
fn sendmail_sends_local_names_to_their_aliases() {
    let setup = Setup::new(&closed_port(), "");
    std::fs::write(
        setup.dir.path().join("aliases"),
        "root: bob@sendbox.test, carol@sendbox.test\ndefault: alice@sendbox.test\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("aliases = \"aliases\"\n{config}")).unwrap();
    assert_exit(
        &setup.sendmail_to(&["root", "www-data", "dave@example.org"], "for root"),
        0,
        "queued as",
    );
    let id = &setup.messages_in("queue")[0];
    let shown = setup.queue(&["show", id]);
    assert_exit(
        &shown,
        0,
        "# to: bob@sendbox.test, carol@sendbox.test, alice@sendbox.test, dave@example.org\n",
    );

    // With -t, the header's names too; the Bcc is gone from what is kept.
    std::fs::remove_file(setup.outbox().join("queue").join(id)).unwrap();
    let header_message = "From: cron\r\nTo: root\r\nCc: dave@example.org\r\nBcc: www-data\r\nSubject: t\r\n\r\nhi\r\n";
    let mut command = setup.sendmail_command(&["-t"]);
    command.arg("erin@example.org");
    assert_exit(
        &run_piped(command, header_message.as_bytes()),
        0,
        "queued as",
    );
    let id = &setup.messages_in("queue")[0];
    let shown = setup.queue(&["show", id]);
    assert_exit(
        &shown,
        0,
        "# to: erin@example.org, bob@sendbox.test, carol@sendbox.test, dave@example.org, alice@sendbox.test\n",
    );
    assert!(!text(&shown).contains("Bcc"), "{}", text(&shown));
}

#[test]
fn aliases_are_followed_like_etc_aliases_and_pipes_are_refused_not_sent() {
    let setup = Setup::new(&closed_port(), "");
    std::fs::write(
        setup.dir.path().join("aliases"),
        "# as Debian ships it\npostmaster: root\nroot: admin@sendbox.test\n\
         backup: |/usr/local/bin/handle\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("aliases = \"aliases\"\n{config}")).unwrap();
    assert_exit(
        &setup.sendmail_to(&["postmaster"], "for the postmaster"),
        0,
        "queued as",
    );
    let id = &setup.messages_in("queue")[0];
    assert_exit(&setup.queue(&["show", id]), 0, "# to: admin@sendbox.test\n");
    let refused = setup.sendmail_to(&["backup"], "for a pipe");
    assert_exit(
        &refused,
        78,
        "aliases:4: backup goes to `|/usr/local/bin/handle`, a pipe",
    );
    assert_eq!(setup.messages_in("queue").len(), 1, "{}", text(&refused));
}

#[test]
#[ignore = "needs Postfix on loopback: run .ci/run, or `just postfix` as root"]
fn send_queue_keeps_the_message_as_built_until_it_is_delivered() {
    let _turn = postfix_turn();
    let setup = Setup::new(&closed_port(), "");
    let config = setup.config();
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--config", config.to_str().unwrap(), "--queue"];
        args.extend(extra);
        setup.command(&args).output().unwrap()
    };
    let subject = format!("send --queue {}", std::process::id());
    let queued = send(&[
        "--to",
        "bob@sendbox.test",
        "--bcc",
        "carol@sendbox.test",
        "--subject",
        &subject,
        "--body",
        "built once",
    ]);
    assert_exit(&queued, 0, "queued as");
    let id = &setup.messages_in("queue")[0];
    let shown = setup.queue(&["show", id]);
    assert_exit(&shown, 0, "# to: bob@sendbox.test, carol@sendbox.test\n");
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("# header: sent as it is\n"), "{shown}");
    assert!(!shown.contains("accepted_at"), "{shown}");
    assert!(!shown.contains("Bcc") && !shown.contains("carol@sendbox.test\r\n"));
    let message_id = shown
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("message-id:"))
        .unwrap_or_else(|| panic!("no Message-ID in {shown}"))
        .to_owned();

    // Delivered later as it was built: the same Message-ID, to the Bcc recipient too.
    setup.point_at("127.0.0.1:25", "");
    assert_exit(&setup.queue(&["flush"]), 0, "1 delivered");
    assert_eq!(arrived(std::slice::from_ref(&subject)), [1]);
    // Delivered at once, it says so, as `send` does.
    let subject_now = format!("{subject} at once");
    let sent = send(&[
        "--to",
        "bob@sendbox.test",
        "--subject",
        &subject_now,
        "--body",
        "x",
    ]);
    assert_exit(&sent, 0, "sent to bob@sendbox.test: 250");
    assert_eq!(arrived(&[subject_now]), [1]);
    for user in ["bob", "carol"] {
        let copy = support::postfix::delivered(user, &subject);
        assert!(copy.contains(message_id.trim_end()), "{user}: {copy}");
        assert!(!copy.contains("Bcc"), "{user}: {copy}");
    }

    // The connection is the account's: options that change it are refused.
    assert_exit(
        &send(&["--server", "127.0.0.1:25", "--to", "bob@sendbox.test"]),
        64,
        "--server",
    );
    setup.point_at("127.0.0.1:25", "enabled = false");
    assert_exit(
        &send(&["--to", "bob@sendbox.test", "--body", "x"]),
        78,
        "outbox is turned off",
    );
}

#[test]
fn damaged_entries_are_named_by_list_and_run_while_the_others_are_delivered() {
    let setup = Setup::new(&closed_port(), &format!("retry_minutes = 0\n{LOGGED}"));
    let garbage = setup.queued("garbage");
    let empty = setup.queued("empty");
    let cut = setup.queued("cut");
    setup.queued("healthy");
    setup.plant(&garbage, b"\x00\x1b[2Jnot an envelope\nnor a message\n");
    setup.plant(&empty, b"");
    let body_cut = setup.queued("body cut");
    let whole = std::fs::read(setup.outbox().join("queue").join(&cut)).unwrap();
    setup.plant(&cut, &whole[..40]);
    let whole = std::fs::read(setup.outbox().join("queue").join(&body_cut)).unwrap();
    setup.plant(&body_cut, &whole[..whole.len() - 5]);
    let line = whole.iter().position(|&b| b == b'\n').unwrap() + 1;
    let cut_message = format!(
        "the message is {} bytes, but {} were written (cut or added to)",
        whole.len() - line - 5,
        whole.len() - line
    );
    let damaged = [
        (
            &garbage,
            "envelope line is not valid JSON (expected value at line 1 column 1)",
        ),
        (&empty, "empty file"),
        (
            &cut,
            "no envelope line (file ends before the first newline)",
        ),
        (&body_cut, cut_message.as_str()),
    ];

    // Listed every time, not only once: nothing vanishes from sight.
    for _ in 0..2 {
        let list = setup.queue(&["list"]);
        assert_exit(&list, 0, "1 try, due now  to bob@sendbox.test");
        for (id, what) in damaged {
            assert!(
                text(&list).contains(&format!("{id}  DAMAGED  {what}")),
                "{id}: {}",
                text(&list)
            );
        }
    }

    // The healthy message goes; the damaged ones stay, named on stderr and in the log.
    let server = loopback(ServerTls::None);
    setup.point_at(
        &format!("127.0.0.1:{}", server.port()),
        &format!("retry_minutes = 0\n{LOGGED}"),
    );
    let run = setup.queue(&["run"]);
    assert_exit(
        &run,
        65,
        "1 delivered, 0 still queued, 0 failed, 4 damaged and left as they are",
    );
    assert_eq!(subjects(&server), ["Subject: healthy"]);
    let log = setup.log();
    for (id, what) in damaged {
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains(&format!("{id} not sent, damaged: {what}")),
            "{id}: {stderr}"
        );
        assert!(
            log.contains(&format!("id={id} outcome=damaged error=\"{what}\"")),
            "{id}: {log}"
        );
    }
    let mut left: Vec<String> = damaged.iter().map(|(id, _)| id.to_string()).collect();
    left.sort();
    assert_eq!(setup.messages_in("queue"), left);
    assert_exit(&setup.queue(&["run"]), 65, "4 damaged");
}

#[test]
fn a_message_whose_state_alone_is_damaged_is_still_delivered() {
    // The first retry is 30 minutes away: only a state read as none makes it due now.
    let setup = Setup::new(&closed_port(), LOGGED);
    let id = setup.queued("state damaged");
    setup.plant(&format!("{id}.state"), "{\"count\": 1, \"last_at\"");
    let what = "state file is not valid JSON (EOF while parsing an object at line 1 column 22)";

    let list = setup.queue(&["list"]);
    assert_exit(&list, 0, &format!("{id}  queued "));
    assert!(
        text(&list).contains("tries unknown, due now  to bob@sendbox.test")
            && text(&list).contains(&format!(
                "DAMAGED  {what}; counted as never tried, so due now"
            )),
        "{}",
        text(&list)
    );

    let server = loopback(ServerTls::None);
    setup.point_at(&format!("127.0.0.1:{}", server.port()), LOGGED);
    let run = setup.queue(&["run"]);
    assert_exit(&run, 65, "1 delivered, 0 still queued, 0 failed");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains(&format!("{id}: {what}")),
        "{}",
        text(&run)
    );
    assert_eq!(subjects(&server), ["Subject: state damaged"]);
    assert!(setup.messages_in("queue").is_empty());
    assert!(
        !setup
            .outbox()
            .join("queue")
            .join(format!("{id}.state"))
            .exists()
    );
    let log = setup.log();
    let line = |outcome: &str| {
        log.lines()
            .any(|l| l.contains(&format!("id={id} ")) && l.contains(outcome))
    };
    assert!(
        line(&format!(
            "outcome=damaged error=\"{what}; counted as never tried, so due now\""
        )) && line("outcome=delivered"),
        "{log}"
    );
}

#[test]
fn queue_show_and_remove_work_on_a_damaged_entry() {
    let setup = Setup::new(&closed_port(), "");
    let id = setup.queued("to be cut");
    let whole = std::fs::read(setup.outbox().join("queue").join(&id)).unwrap();
    // Cut inside the envelope line, ending in an escape sequence.
    let mut cut = whole[..30].to_vec();
    cut.extend_from_slice(b"\x1b[2J");
    setup.plant(&id, &cut);

    let show = setup.queue(&["show", &id]);
    assert_exit(
        &show,
        0,
        "# DAMAGED  no envelope line (file ends before the first newline)",
    );
    let shown = String::from_utf8(show.stdout.clone()).unwrap();
    assert!(shown.contains("# 1 attempt; last: "), "{shown}");
    let readable = format!("{}\\x1b[2J", String::from_utf8_lossy(&whole[..30]));
    assert!(shown.contains(&readable), "{readable} not in {shown}");
    assert_no_raw_controls(&shown);

    assert_exit(&setup.queue(&["remove", &id]), 0, "");
    assert!(setup.messages_in("queue").is_empty());
    assert!(
        !setup
            .outbox()
            .join("queue")
            .join(format!("{id}.state"))
            .exists(),
        "its state was left behind"
    );
    assert_exit(&setup.queue(&["list"]), 0, "is empty");
}

#[test]
fn escape_sequences_in_a_queued_envelope_are_escaped_in_list_run_and_the_log() {
    let setup = Setup::new(&closed_port(), &format!("retry_minutes = 0\n{LOGGED}"));
    assert_exit(&setup.queue(&["list"]), 0, "is empty");
    // `list` makes no outbox; `run` does.
    assert_exit(&setup.queue(&["run"]), 0, "");
    // As an SMTP client could have handed it over; sendmail would refuse such addresses.
    let accepted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let id = format!("{accepted_at}.000000000.1.0");
    setup.plant(
        &id,
        format!(
            "{{\"account\":null,\"sender\":\"eve\\u001b]0;owned\\u0007@sendbox.test\",\
             \"recipients\":[\"bob\\u001b[31m@sendbox.test\"],\"recipients_from_headers\":false,\
             \"qualify_domain\":null,\"dsn_notify\":null,\"dsn_ret\":null,\"dsn_envid\":null,\
             \"keep_raw_header\":false,\"accepted_at\":{accepted_at}}}\n\
             Subject: x\r\n\r\nbody\r\n"
        ),
    );
    setup.plant(
        &format!("{id}.state"),
        r#"{"count":1,"last_at":0,"next_at":0,"last_error":"421 \u001b[2J\u009b1m busy"}"#,
    );

    let list = setup.queue(&["list"]);
    assert_exit(&list, 0, r"1 try, due now  to bob\x1b[31m@sendbox.test");
    assert_exit(&list, 0, r"last: 421 \x1b[2J\u{9b}1m busy");
    let show = setup.queue(&["show", &id]);
    assert_exit(&show, 0, r"last: 421 \x1b[2J\u{9b}1m busy");
    let run = setup.queue(&["run"]);
    assert_exit(&run, 0, &format!("{id} still queued"));
    let log = setup.log();
    assert!(
        log.contains(&format!(
            r"id={id} account=- from=<eve\x1b]0;owned\x07@sendbox.test> to=bob\x1b[31m@sendbox.test outcome=deferred"
        )),
        "{log}"
    );
    for output in [&list, &show, &run] {
        assert_no_raw_controls(&text(output));
    }
    assert_no_raw_controls(&log);
}

#[test]
#[ignore = "needs root, to run sendmail as nobody (run .ci/run)"]
fn a_daemon_without_a_home_gets_the_system_spool_and_no_home_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("nonexistent");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("default = \"main\"\n[accounts.main]\nserver = \"{}\"\ntls = \"none\"\nfrom = \"cron@sendbox.test\"\n", closed_port()),
    )
    .unwrap();
    for path in [dir.path(), &config] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let spool = Path::new("/var/spool/sendbox");
    let spool_was_there = spool.exists();
    // As nobody (65534 on Debian), and as root, whom nothing stops from making folders.
    // A copy nobody can run wherever the checkout is (a home of mode 0700, say).
    let program = dir.path().join("sendbox");
    std::fs::copy(sendbox_bin(), &program).unwrap();
    let sendmail_as = |user: &str| {
        let mut command = Command::new("runuser");
        command
            .args(["-u", user, "--", "env", "-i"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("SENDBOX_CONFIG={}", config.display()))
            .arg(&program)
            .args(["sendmail", "bob@sendbox.test"]);
        run_piped(command, b"Subject: from a daemon\n\nhi\n")
    };
    let users = [("nobody", 65534), ("root", 0)];
    if !spool_was_there {
        for (user, uid) in users {
            let output = sendmail_as(user);
            let mine = spool.join(uid.to_string());
            assert_exit(
                &output,
                73,
                &format!("cannot create the outbox {}", mine.display()),
            );
            for hint in ["contrib/sendbox.tmpfiles", "`dir` under `[queue]`"] {
                assert!(text(&output).contains(hint), "{user}: {}", text(&output));
            }
            // The spool is an administrator's to make, with its mode.
            assert!(!spool.exists(), "{user} made {}", spool.display());
        }
        // Made as the package (or contrib/sendbox.tmpfiles) makes it.
        std::fs::create_dir(spool).unwrap();
        std::fs::set_permissions(spool, std::os::unix::fs::PermissionsExt::from_mode(0o1733))
            .unwrap();
    }
    for (user, uid) in users {
        // The first message of a user new to the spool is kept, not refused: the user
        // cannot open the spool (mode 1733) to sync its new folder's entry.
        let mine = spool.join(uid.to_string());
        let _ = std::fs::remove_dir_all(&mine);
        let output = sendmail_as(user);
        // Neither the outbox nor the compiled-code cache makes a home.
        assert!(!home.exists(), "{user}: a home was made: {}", text(&output));
        assert_exit(&output, 0, "");
        let messages = std::fs::read_dir(mine.join("queue")).map(|entries| {
            entries
                .filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".state")
                })
                .count()
        });
        assert_eq!(messages.ok(), Some(1), "{user}: {}", text(&output));
        let _ = std::fs::remove_dir_all(&mine);
    }
    if !spool_was_there {
        std::fs::remove_dir(spool).unwrap();
    }
    // Without the outbox the component is loaded at once: its compiled-code cache makes
    // no home either.
    let direct = dir.path().join("direct.toml");
    let text_of_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &direct,
        format!("{text_of_config}[queue]\nenabled = false\n"),
    )
    .unwrap();
    let mut command = Command::new("env");
    command
        .arg("-i")
        .arg(format!("HOME={}", home.display()))
        .arg(format!("SENDBOX_CONFIG={}", direct.display()))
        .arg(sendbox_bin())
        .args(["sendmail", "bob@sendbox.test"]);
    let output = run_piped(command, b"Subject: not kept\n\nhi\n");
    assert_exit(&output, 75, "connect failed");
    assert!(!home.exists(), "the cache made a home: {}", text(&output));
}

#[test]
fn a_refused_login_says_when_the_message_is_tried_again_and_how_to_send_it_now() {
    let server = loopback(ServerTls::StartTls);
    let setup = Setup::new(&closed_port(), "");
    let ca = setup.dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let account = |password: &str| {
        let config = format!(
            "default = \"main\"\n[accounts.main]\nserver = \"127.0.0.1:{}\"\n\
             tls = \"starttls\"\nca = \"{}\"\nuser = \"{USER}\"\n\
             password_env = \"RELAY_TEST_PASSWORD\"\nfrom = \"alice@sendbox.test\"\n\
             [queue]\ndir = \"{}\"\n",
            server.port(),
            ca.display(),
            setup.outbox().display()
        );
        std::fs::write(setup.config(), config).unwrap();
        password.to_owned()
    };
    let password = account("wrong");
    let mut command = setup.sendmail_command(&["bob@sendbox.test"]);
    command.env("RELAY_TEST_PASSWORD", &password);
    let output = run_piped(command, message("login refused").as_bytes());
    assert_exit(&output, 0, "not delivered yet: AUTH failed");
    let said = text(&output);
    assert!(!said.contains("[permanent]"), "{said}");
    assert!(said.contains("tries it again in 30m"), "{said}");
    assert!(
        said.contains("`sendbox queue flush` tries it now"),
        "{said}"
    );

    // queue run says what it left and why, and how to send it now.
    let run = setup.queue(&["run"]);
    assert_exit(&run, 0, "1 message not due yet, the next in ");
    assert!(
        text(&run).contains("`sendbox queue flush` tries it now"),
        "{}",
        text(&run)
    );
    assert!(server.received().is_empty());

    // Once the password is right, flush sends it.
    let password = account(PASSWORD);
    let mut flush = setup.command(&[
        "queue",
        "--config",
        setup.config().to_str().unwrap(),
        "flush",
    ]);
    flush.env("RELAY_TEST_PASSWORD", &password);
    assert_exit(&flush.output().unwrap(), 0, "1 delivered");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn files_that_are_not_messages_are_named_and_never_hang_a_runner() {
    let setup = Setup::new(&closed_port(), &format!("retry_minutes = 0\n{LOGGED}"));
    let healthy = setup.queued("healthy");
    let queue = setup.outbox().join("queue");
    // A FIFO and a link to an endless device where messages belong, a directory where
    // the healthy message's state belongs, and files that are no messages at all.
    let (fifo, link) = ("1796000000.1.1.0", "1796000000.2.1.0");
    let mkfifo = Command::new("mkfifo")
        .arg(queue.join(fifo))
        .status()
        .unwrap();
    assert!(mkfifo.success());
    std::os::unix::fs::symlink("/dev/zero", queue.join(link)).unwrap();
    std::fs::remove_file(queue.join(format!("{healthy}.state"))).unwrap();
    std::fs::create_dir(queue.join(format!("{healthy}.state"))).unwrap();
    setup.plant("notes.txt", "by hand");
    setup.plant("1796000000.3.1.0.state", "{}");
    std::fs::write(setup.outbox().join("tmp/1796000000.4.1.0"), "half written").unwrap();
    // Left a while ago: younger, either could be a removal or a write in progress.
    for left in [
        queue.join("1796000000.3.1.0.state"),
        setup.outbox().join("tmp/1796000000.4.1.0"),
    ] {
        let a_while_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(left)
            .unwrap()
            .set_modified(a_while_ago)
            .unwrap();
    }
    // In tmp/ too, where a crash leaves files: a FIFO and a link must not be opened.
    let tmp_fifo = Command::new("mkfifo")
        .arg(setup.outbox().join("tmp/fifo"))
        .status()
        .unwrap();
    assert!(tmp_fifo.success());
    std::os::unix::fs::symlink("/dev/zero", setup.outbox().join("tmp/zero")).unwrap();
    {
        use std::os::unix::ffi::OsStrExt as _;
        let name = std::ffi::OsStr::from_bytes(b"bad\xff\x1b");
        std::fs::write(queue.join(name), "x").unwrap();
    }
    // A sparse file larger than the outbox ever writes, behind a healthy envelope line.
    let huge = "1796000000.5.1.0";
    let whole = std::fs::read(queue.join(&healthy)).unwrap();
    let line = &whole[..whole.iter().position(|&b| b == b'\n').unwrap() + 1];
    let file = std::fs::File::create(queue.join(huge)).unwrap();
    std::io::Write::write_all(&mut &file, line).unwrap();
    file.set_len(300 * 1024 * 1024).unwrap();
    let config = setup.config();
    let queue_command = |action: &[&str]| {
        let mut args = vec!["queue", "--config", config.to_str().unwrap()];
        args.extend(action);
        setup.command(&args)
    };

    let list = finished_within_30_s(&mut queue_command(&["list"]));
    for line in [
        format!("{fifo}  DAMAGED  not a regular file but a FIFO"),
        format!("{link}  DAMAGED  not a regular file but a symbolic link"),
        "queue/notes.txt  STRAY".to_owned(),
        "queue/1796000000.3.1.0.state  STRAY".to_owned(),
        "tmp/1796000000.4.1.0  STRAY".to_owned(),
        "tmp/fifo  STRAY".to_owned(),
        "tmp/zero  STRAY".to_owned(),
        r"queue/bad\xff\x1b  STRAY".to_owned(),
        "state file is not a regular file but a directory".to_owned(),
    ] {
        assert!(
            text(&list).contains(&line),
            "{line:?} not in {}",
            text(&list)
        );
    }

    // The healthy message goes, its state being only advice; the rest stay, named.
    let server = loopback(ServerTls::None);
    setup.point_at(
        &format!("127.0.0.1:{}", server.port()),
        &format!("retry_minutes = 0\n{LOGGED}"),
    );
    let run = finished_within_30_s(&mut queue_command(&["run"]));
    assert_exit(&run, 65, "1 delivered");
    assert!(
        // Found by the length its envelope line records, without reading it.
        text(&run).contains(&format!("{huge} not sent, damaged: the message is ")),
        "{}",
        text(&run)
    );
    assert!(
        text(&run).contains("6 files that are not messages"),
        "{}",
        text(&run)
    );
    assert_eq!(subjects(&server), ["Subject: healthy"]);
    assert!(!queue.join(format!("{healthy}.state")).exists());

    for id in [fifo, link] {
        assert_exit(
            &finished_within_30_s(&mut queue_command(&["remove", id])),
            0,
            "",
        );
        assert!(std::fs::symlink_metadata(queue.join(id)).is_err(), "{id}");
    }
    assert!(Path::new("/dev/zero").exists());
}

/// A server whose reply to MAIL holds terminal escapes: colour, a window title (OSC, ended
/// by BEL), a C1 CSI, and a right-to-left override.
fn hostile_reply_server() -> ScriptedServer {
    ScriptedServer::start(
        vec![
            Step::Send(GREETING),
            Step::Expect("EHLO"),
            Step::Send("250-scripted.test\r\n250 8BITMIME\r\n"),
            Step::Expect("MAIL FROM"),
            Step::Send("451 4.0.0 \x1b[31mEVIL\x1b]0;title\x07 \u{9b}2J \u{202e}x\r\n"),
            Step::Expect("RSET"),
            Step::Send("250 ok\r\n"),
            Step::Expect("QUIT"),
            Step::Send("221 bye\r\n"),
        ],
        None,
    )
}

#[test]
fn a_hostile_servers_reply_reaches_the_terminal_escaped_from_sendmail_and_send() {
    let server = hostile_reply_server();
    let setup = Setup::new(&format!("127.0.0.1:{}", server.port()), "");
    let output = setup.sendmail("hostile reply");
    assert_exit(&output, 0, "not delivered yet");
    assert!(text(&output).contains(r"\x1b[31mEVIL"), "{}", text(&output));
    assert_no_raw_controls(&text(&output));
    assert!(!text(&output).contains('\u{202e}'), "{}", text(&output));

    let server = hostile_reply_server();
    let output = run_sendbox(
        &[
            "send",
            "--server",
            &format!("127.0.0.1:{}", server.port()),
            "--tls",
            "none",
            "--from",
            "alice@sendbox.test",
            "--to",
            "bob@sendbox.test",
            "--subject",
            "s",
            "--body",
            "b",
            "-v",
        ],
        "",
        None,
    );
    assert_exit(&output, 75, "EVIL");
    assert_no_raw_controls(&text(&output));
    assert!(!text(&output).contains('\u{202e}'), "{}", text(&output));
}

#[test]
fn a_local_name_without_a_domain_to_give_it_waits_for_the_configuration() {
    let server = loopback(ServerTls::None);
    let setup = Setup::new(&closed_port(), "");
    let write = |from: &str| {
        let config = format!(
            "default = \"main\"\n[accounts.main]\nserver = \"127.0.0.1:{}\"\ntls = \"none\"\n\
             {from}\n[queue]\ndir = \"{}\"\n",
            server.port(),
            setup.outbox().display()
        );
        std::fs::write(setup.config(), config).unwrap();
    };
    // No `from`: cron's `root` has no domain. A configuration problem, not a bad message.
    write("");
    let output = setup.sendmail_to(&["root"], "for root");
    assert_exit(
        &output,
        0,
        "the local name \"root\" needs a domain: give account main a `from`",
    );
    assert_eq!(setup.messages_in("queue").len(), 1, "{}", text(&output));
    assert!(setup.messages_in("failed").is_empty());
    // Once the account has a `from`, the message goes to root at its domain.
    write("from = \"ops@sendbox.test\"");
    assert_exit(&setup.queue(&["flush"]), 0, "1 delivered");
    let received = server.received();
    assert_eq!(received[0].recipients, ["root@sendbox.test"]);
    // The account's `from` is the sender too (not the message's From), as if it had
    // been there all along.
    assert_eq!(received[0].sender, "ops@sendbox.test");
}

#[test]
fn list_shows_sender_and_size_and_remove_failed_empties_failed() {
    let setup = Setup::new(&closed_port(), "");
    let id = setup.queued("waiting");
    let list = setup.queue(&["list"]);
    let size = std::fs::metadata(setup.outbox().join("queue").join(&id))
        .unwrap()
        .len();
    assert!(
        text(&list).contains("to bob@sendbox.test  from <alice@sendbox.test>  "),
        "{}",
        text(&list)
    );
    assert!(
        text(&list).contains(" bytes  account main"),
        "{}",
        text(&list)
    );
    assert!(size > 0);

    let server = sendbox_loopback::LoopbackServer::start(sendbox_loopback::LoopbackOptions {
        tls: ServerTls::None,
        account: None,
        mechanisms: Vec::new(),
        refuse: vec!["nobody@sendbox.test".to_owned()],
    })
    .unwrap();
    setup.point_at(&format!("127.0.0.1:{}", server.port()), "");
    for subject in ["one", "two"] {
        setup.sendmail_to(&["nobody@sendbox.test"], subject);
    }
    assert_eq!(setup.messages_in("failed").len(), 2);
    assert_exit(
        &setup.queue(&["list"]),
        0,
        "FAILED  to nobody@sendbox.test  from <alice@sendbox.test>",
    );
    assert_exit(
        &setup.queue(&["remove", "--failed"]),
        0,
        "removed 2 messages from ",
    );
    assert!(setup.messages_in("failed").is_empty());
    // The queued one is not touched.
    assert_eq!(setup.messages_in("queue"), [id]);
}

#[test]
fn mailq_and_sendmail_bp_list_the_outbox_as_queue_list_does() {
    let setup = Setup::new(&closed_port(), "");
    // Before anything was queued: empty, and listing does not make the outbox.
    assert_exit(&setup.linked_as("mailq", &[]), 0, "is empty");
    assert!(!setup.outbox().exists(), "mailq made the outbox");
    let id = setup.queued("waiting for mailq");
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();
    for (name, args) in [("mailq", &[][..]), ("sendmail", &["-bp"])] {
        let before = stdout(&setup.queue(&["list"]));
        let listed = setup.linked_as(name, args);
        let after = stdout(&setup.queue(&["list"]));
        assert_exit(&listed, 0, &id);
        // The same rows (a minute may turn between the two lists).
        assert!(
            stdout(&listed) == before || stdout(&listed) == after,
            "{name} {args:?}:\n{}\nqueue list:\n{before}",
            stdout(&listed)
        );
        assert!(
            stdout(&listed).contains("to bob@sendbox.test"),
            "{}",
            stdout(&listed)
        );
    }
    assert_exit(
        &setup.linked_as("mailq", &["bob@sendbox.test"]),
        64,
        "-bp (mailq) takes no recipients",
    );
    assert_eq!(
        setup.messages_in("queue"),
        std::slice::from_ref(&id),
        "listing changed the queue"
    );

    // A reader gone (`mailq | head -0`) ends the list quietly; a full disk is exit 74.
    let mailq = |stdout: Stdio| {
        let mut command = sendbox_command(&setup.dir.path().join("mailq"), setup.dir.path(), "");
        command.arg("-C").arg(setup.config()).stdout(stdout);
        command.output().unwrap()
    };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let listed = mailq(Stdio::from(writer));
    assert_exit(&listed, 0, "");
    assert!(listed.stderr.is_empty(), "{}", text(&listed));
    let full = std::fs::File::create("/dev/full").unwrap();
    assert_exit(
        &mailq(Stdio::from(full)),
        74,
        "cannot write to standard output",
    );

    // Listing needs neither the aliases file nor anything but the outbox; an account
    // named must exist all the same.
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("aliases = \"missing\"\n{config}")).unwrap();
    assert_exit(&setup.linked_as("mailq", &[]), 0, &id);
    assert_exit(&setup.linked_as("sendmail", &["-bp", "-a", "main"]), 0, &id);
    assert_exit(
        &setup.linked_as("mailq", &["-a", "nosuch"]),
        78,
        "\"nosuch\"",
    );
}

#[test]
fn sendmail_q_runs_what_is_due_and_qf_flushes_everything() {
    let setup = Setup::new(&closed_port(), "");
    let waiting = setup.queued("not due yet");
    let server = loopback(ServerTls::None);
    setup.point_at(&format!("127.0.0.1:{}", server.port()), "");
    // Tried once and due in 30 minutes: -q leaves it, -qf sends it.
    assert_exit(&setup.linked_as("sendmail", &["-q"]), 0, "");
    assert_eq!(
        setup.messages_in("queue"),
        [waiting],
        "-q sent a message not due"
    );
    assert_exit(&setup.linked_as("sendmail", &["-qf"]), 0, "1 delivered");
    assert!(setup.messages_in("queue").is_empty());
    assert_eq!(subjects(&server), ["Subject: not due yet"]);

    // Due at once after a failure: -q sends it.
    setup.point_at(&closed_port(), "retry_minutes = 0");
    setup.queued("due now");
    setup.point_at(&format!("127.0.0.1:{}", server.port()), "retry_minutes = 0");
    assert_exit(&setup.linked_as("sendmail", &["-q"]), 0, "1 delivered");
    assert!(setup.messages_in("queue").is_empty());
    assert_eq!(subjects(&server).len(), 2);
    assert_exit(
        &setup.linked_as("sendmail", &["-q30m"]),
        64,
        "sendbox runs no queue daemon",
    );
}

#[test]
fn newaliases_checks_the_aliases_file_and_names_each_bad_line() {
    let setup = Setup::new(&closed_port(), "");
    assert_exit(
        &setup.linked_as("newaliases", &[]),
        0,
        "names no aliases file",
    );
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("aliases = \"aliases\"\n{config}")).unwrap();
    let aliases = setup.dir.path().join("aliases");
    let check = |text: &str, code: i32, needle: &str| {
        std::fs::write(&aliases, text).unwrap();
        for (name, args) in [
            ("newaliases", &[][..]),
            ("sendmail", &["-bi"]),
            ("sendmail", &["-I"]),
        ] {
            let checked = setup.linked_as(name, args);
            assert_exit(&checked, code, needle);
        }
    };
    check(
        "# as Debian ships it\npostmaster: root\nroot: admin@sendbox.test\n",
        0,
        "aliases: 2 aliases, each usable",
    );
    check(
        "postmaster: root\nroot admin@sendbox.test\n",
        78,
        "aliases:2: not `name: address, ...`",
    );
    check(
        "postmaster: root\nroot: admin@sendbox.test\nbackup: |/usr/local/bin/handle\n",
        78,
        "aliases:3: backup goes to `|/usr/local/bin/handle`, a pipe",
    );
    check("a: b\nb: a\n", 78, "loop");
    check("root: admin@bad..example\n", 78, "aliases:1: root goes to");
}
