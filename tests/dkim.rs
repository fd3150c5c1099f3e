//! DKIM signatures made by sendbox, judged by verifiers nobody here wrote: OpenDKIM as a
//! milter behind the test Postfix's 127.0.0.1:2527, and dkimpy on the message read back
//! from the mailbox (tests/dkim/: `just dkim`, which .ci/run runs, sets both up with the
//! test keys in /etc/sendbox-test-dkim and no DNS).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::postfix::token;
use support::*;

const KEYS: &str = "/etc/sendbox-test-dkim";
const MAILBOX: &str = "/var/mail/vhosts/sendbox.test/bob";

fn tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/dkim")
        .join(name)
}

/// The message with `token` in its Subject, as bob's mailbox holds it.
fn delivered(token: &str) -> Vec<u8> {
    let output = Command::new(tool("last-message.py"))
        .args(["--wait", "60", MAILBOX, token])
        .output()
        .expect("last-message.py runs");
    assert!(output.status.success(), "{}", text(&output));
    output.stdout
}

/// What a verifier says of `message`: its exit status and its lines.
fn judged(verifier: &str, message: &[u8]) -> (bool, String) {
    let output = run_piped(Command::new(tool(verifier)), message);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Both verifiers pass `message`, each with one signature of this selector, algorithm
/// and canonicalization.
#[track_caller]
fn assert_passes(message: &[u8], selector: &str, algorithm: &str, canonicalization: &str) {
    let shown = String::from_utf8_lossy(message);
    // dkimpy says which canonicalization it checked; OpenDKIM's header does not.
    let (passed, said) = judged("verify.py", message);
    let expected = format!("pass d=sendbox.test s={selector} a={algorithm} c={canonicalization}");
    assert!(passed && said.trim() == expected, "dkimpy: {said}\n{shown}");
    let (passed, said) = judged("authres.py", message);
    let expected = format!("pass d=sendbox.test s={selector} a={algorithm} ");
    assert!(
        passed && said.starts_with(&expected) && said.trim().lines().count() == 1,
        "OpenDKIM: {said}\n{shown}"
    );
}

#[track_caller]
fn assert_fails_in_dkimpy(message: &[u8], why: &str) {
    let (passed, said) = judged("verify.py", message);
    assert!(
        !passed && said.starts_with("fail "),
        "{why}: dkimpy said {said}"
    );
}

fn send(args: &[&str]) -> Output {
    let mut command = sendbox_command(sendbox_bin(), Path::new("/nonexistent"), "");
    command.args(["send", "--server", "127.0.0.1:2527", "--tls", "none"]);
    command.args(["--from", "alice@sendbox.test", "--to", "bob@sendbox.test"]);
    command.args(args);
    command.output().unwrap()
}

fn key(selector: &str) -> String {
    format!("{KEYS}/{selector}.private.pem")
}

#[test]
#[ignore = "needs the DKIM verifiers on the test Postfix: run .ci/run, or `just postfix` and `just dkim` as root"]
fn composed_messages_pass_both_verifiers_in_each_algorithm_and_canonicalization() {
    let attachment = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(attachment.path(), "a file\r\n\r\n\r\n").unwrap();
    for (selector, algorithm) in [("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")] {
        for canonicalization in ["relaxed/relaxed", "simple/simple", "relaxed/simple"] {
            let label = token(&format!(
                "{selector}-{}",
                canonicalization.replace('/', "-")
            ));
            let sent = send(&[
                "--subject",
                &format!("{label} Grüße, naïve café"),
                "--body",
                "Hello,\n\n  spaced   line \t\n\n\n",
                "--attach",
                attachment.path().to_str().unwrap(),
                "--header",
                "X-Note: ünïcödé   header",
                "--dkim-key",
                &key(selector),
                "--dkim-selector",
                selector,
                "--dkim-domain",
                "sendbox.test",
                "--dkim-canonicalization",
                canonicalization,
            ]);
            assert_exit(&sent, 0, "");
            let message = delivered(&label);
            assert_passes(&message, selector, algorithm, canonicalization);
        }
    }
}

/// A header list without From signs From too (first in h=), and the signature verifies.
#[test]
#[ignore = "needs the DKIM verifiers on the test Postfix: run .ci/run, or `just postfix` and `just dkim` as root"]
fn a_header_list_without_from_still_signs_from() {
    let label = token("headers-without-from");
    let sent = send(&[
        "--subject",
        &label,
        "--body",
        "x",
        "--dkim-key",
        &key("ed"),
        "--dkim-selector",
        "ed",
        "--dkim-domain",
        "sendbox.test",
        "--dkim-header",
        "Subject",
    ]);
    assert_exit(&sent, 0, "");
    let message = delivered(&label);
    assert_passes(&message, "ed", "ed25519-sha256", "relaxed/relaxed");
    let text = String::from_utf8_lossy(&message);
    let field = text
        .split("\nDKIM-Signature:")
        .nth(1)
        .or_else(|| text.strip_prefix("DKIM-Signature:"))
        .expect("a DKIM-Signature field");
    let h: String = field
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(h, "from:subject:from", "{text}");
}

#[test]
#[ignore = "needs the DKIM verifiers on the test Postfix: run .ci/run, or `just postfix` and `just dkim` as root"]
fn a_change_after_signing_or_the_wrong_key_fails_in_both() {
    let signed = token("changed");
    let sent = send(&[
        "--subject",
        &signed,
        "--body",
        "the body as signed",
        "--dkim-key",
        &key("rsa"),
        "--dkim-selector",
        "rsa",
        "--dkim-domain",
        "sendbox.test",
    ]);
    assert_exit(&sent, 0, "");
    let message = delivered(&signed);
    assert_passes(&message, "rsa", "rsa-sha256", "relaxed/relaxed");
    let text = String::from_utf8_lossy(&message).into_owned();
    let body_changed = text.replace("the body as signed", "the body as signEd");
    assert_fails_in_dkimpy(body_changed.as_bytes(), "one body byte changed");
    let header_changed = text.replacen(&signed, &signed.to_uppercase(), 1);
    assert_fails_in_dkimpy(header_changed.as_bytes(), "the Subject changed");

    // Signed with a key that is not the one published for s=rsa.
    let wrong = token("wrong-key");
    let sent = send(&[
        "--subject",
        &wrong,
        "--dkim-key",
        &key("wrong"),
        "--dkim-selector",
        "rsa",
        "--dkim-domain",
        "sendbox.test",
    ]);
    assert_exit(&sent, 0, "");
    let message = delivered(&wrong);
    for verifier in ["verify.py", "authres.py"] {
        let (passed, said) = judged(verifier, &message);
        assert!(!passed && said.starts_with("fail "), "{verifier}: {said}");
    }
}

/// cron's way: `sendmail -t` with the message on stdin, through an account that signs,
/// queued first (the outbox holds no key) and signed when it is sent.
#[test]
#[ignore = "needs the DKIM verifiers on the test Postfix: run .ci/run, or `just postfix` and `just dkim` as root"]
fn sendmail_t_signs_with_the_accounts_key_and_the_outbox_never_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let outbox = dir.path().join("outbox");
    std::fs::write(
        &config,
        format!(
            "default = \"signed\"\n[accounts.signed]\nserver = \"127.0.0.1:2527\"\ntls = \
             \"none\"\nfrom = \"alice@sendbox.test\"\ndkim_key_file = \"{}\"\n\
             dkim_selector = \"ed\"\ndkim_domain = \"sendbox.test\"\n\
             dkim_canonicalization = \"simple/simple\"\n[queue]\ndir = \"{}\"\n",
            key("ed"),
            outbox.display()
        ),
    )
    .unwrap();
    let label = token("sendmail");
    let message =
        format!("To: bob@sendbox.test\nSubject: {label} from cron\n\nline one\n.leading dot\n\n\n");
    let mut command = sendbox_command(sendbox_bin(), dir.path(), "");
    command.args(["sendmail", "-C", config.to_str().unwrap(), "-t", "-i"]);
    let sent = run_piped(command, message.as_bytes());
    assert_exit(&sent, 0, "");
    let received = delivered(&label);
    assert_passes(&received, "ed", "ed25519-sha256", "simple/simple");
    // Nothing of the key was ever written to the outbox.
    let key_text = std::fs::read_to_string(key("ed")).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap();
    for entry in walk(&outbox) {
        let content = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains(secret_line),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Keys in every wrong shape are refused before anything is sent, with exit 78 and words
/// that show nothing of the key.
#[test]
fn bad_keys_are_refused_before_connecting_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            text(&output)
        );
        output.stdout
    };
    let genpkey = |algorithm: &str, option: &str| {
        openssl(&["genpkey", "-algorithm", algorithm, "-pkeyopt", option])
    };
    let rsa = genpkey("RSA", "rsa_keygen_bits:2048");
    let rsa_file = write("rsa.pem", &rsa);
    let secret_line = String::from_utf8_lossy(&rsa)
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let small = genpkey("RSA", "rsa_keygen_bits:1024");
    let ec = genpkey("EC", "ec_paramgen_curve:P-256");
    let encrypted = openssl(&[
        "pkey",
        "-in",
        rsa_file.to_str().unwrap(),
        "-aes256",
        "-passout",
        "pass:x",
    ]);
    let pkcs1 = openssl(&["rsa", "-in", rsa_file.to_str().unwrap(), "-traditional"]);
    let certificate = openssl(&[
        "req",
        "-x509",
        "-key",
        rsa_file.to_str().unwrap(),
        "-subj",
        "/CN=x",
        "-days",
        "1",
    ]);
    let truncated = rsa[..rsa.len() / 2].to_vec();
    // A server that must never be reached: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let send_with = |key: &Path, extra: &[&str]| {
        let mut command = sendbox_command(sendbox_bin(), Path::new("/nonexistent"), "");
        command.args(["send", "--server", &closed, "--tls", "none"]);
        command.args([
            "--from",
            "a@sendbox.test",
            "--to",
            "b@sendbox.test",
            "--body",
            "x",
        ]);
        command.args(["--dkim-key", key.to_str().unwrap(), "--dkim-selector", "s"]);
        command.args(["--dkim-domain", "sendbox.test"]);
        command.args(extra);
        command.output().unwrap()
    };
    // `dkim record` reads a key as signing does: the same words, and 78.
    let record = |key: &Path| {
        run_sendbox(
            &[
                "dkim",
                "record",
                "--selector",
                "s",
                "--domain",
                "sendbox.test",
                key.to_str().unwrap(),
            ],
            "",
            None,
        )
    };
    for (name, content, words) in [
        ("small.pem", &small[..], "2048 bits or more"),
        ("ec.pem", &ec[..], "EC"),
        ("encrypted.pem", &encrypted[..], "encrypted"),
        ("certificate.pem", &certificate[..], "no private key"),
        ("truncated.pem", &truncated[..], "no private key"),
        (
            "garbage.der",
            b"\x30\x03\x02\x01\x00",
            "neither an RSA nor an Ed25519",
        ),
    ] {
        let file = write(name, content);
        let refused = send_with(&file, &[]);
        assert_exit(&refused, 78, words);
        assert!(
            text(&refused).contains("the DKIM key"),
            "{name}: {}",
            text(&refused)
        );
        assert!(
            !text(&refused).contains("connect"),
            "{name}: {}",
            text(&refused)
        );
        let refused = record(&file);
        assert_exit(&refused, 78, words);
        assert!(
            text(&refused).contains(&format!("{}: the DKIM key", file.display())),
            "{name}: {}",
            text(&refused)
        );
    }
    // PKCS#1 works as PKCS#8 does, in PEM and in DER, and after text before the block
    // (the server is closed: 75, after signing).
    let der = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-in", rsa_file.to_str().unwrap(), "-outform", "DER"]);
        openssl(&all)
    };
    let mut prefixed = b"\xef\xbb\xbfa key for DKIM\n".to_vec();
    prefixed.extend_from_slice(&rsa);
    let published = record(&rsa_file);
    assert_exit(&published, 0, "v=DKIM1; k=rsa; p=");
    for (name, content) in [
        ("pkcs1.pem", pkcs1.clone()),
        ("pkcs1.der", der(&["rsa", "-traditional"])),
        ("pkcs8.der", der(&["pkcs8", "-topk8", "-nocrypt"])),
        ("prefixed.pem", prefixed),
    ] {
        let file = write(name, &content);
        assert_exit(&send_with(&file, &[]), 75, "connect");
        // The same record, whatever the key's shape.
        assert_eq!(record(&file).stdout, published.stdout, "{name}");
    }
    assert_exit(&send_with(&rsa_file, &[]), 75, "connect");
    // Larger than ring signs with, and an encrypted PKCS#1 key.
    let large = genpkey("RSA", "rsa_keygen_bits:6144");
    let large = write("large.pem", &large);
    assert_exit(&send_with(&large, &[]), 78, "at most 4096 bits");
    assert_exit(&record(&large), 78, "at most 4096 bits");
    let encrypted_pkcs1 = openssl(&[
        "rsa",
        "-in",
        rsa_file.to_str().unwrap(),
        "-traditional",
        "-aes256",
        "-passout",
        "pass:x",
    ]);
    let encrypted_pkcs1 = write("encrypted-pkcs1.pem", &encrypted_pkcs1);
    assert_exit(&send_with(&encrypted_pkcs1, &[]), 78, "encrypted");
    assert_exit(&record(&encrypted_pkcs1), 78, "encrypted");
    // batch checks the key once, before it connects: 78, not 1000 network failures.
    let message = write("message.eml", b"Subject: x\r\n\r\nbody\r\n");
    let mut batch = sendbox_command(sendbox_bin(), Path::new("/nonexistent"), "");
    batch.args(["batch", "--server", &closed, "--tls", "none", "--quiet"]);
    batch.args([
        "--from",
        "a@sendbox.test",
        "--to",
        "b@sendbox.test",
        "--count",
        "50",
    ]);
    batch.arg("--raw").arg(&message);
    batch.arg("--dkim-key").arg(write("ec-batch.pem", &ec));
    batch.args(["--dkim-selector", "s", "--dkim-domain", "sendbox.test"]);
    let refused = batch.output().unwrap();
    assert_exit(&refused, 78, "EC key");
    assert!(!text(&refused).contains("connect"), "{}", text(&refused));
    // An algorithm the key is not for, a bad selector, an identity outside d=.
    assert_exit(
        &send_with(&rsa_file, &["--dkim-algorithm", "ed25519-sha256"]),
        78,
        "the DKIM key is for rsa-sha256, not ed25519-sha256",
    );
    assert_exit(
        &send_with(&rsa_file, &["--dkim-identity", "bob@example.org"]),
        78,
        "identity",
    );
    // A key others may read is refused before it is read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&rsa_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_exit(&send_with(&rsa_file, &[]), 78, "run chmod 600 on it");
    for output in [
        send_with(&rsa_file, &[]),
        send_with(&write("e.pem", &ec), &[]),
    ] {
        assert!(!text(&output).contains(&secret_line), "{}", text(&output));
    }
}

/// `dkim keygen` makes keys that other tools read too, and prints the record that the
/// verifiers accept for them.
#[test]
fn keygen_makes_keys_openssl_reads_and_records_that_match() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["rsa", "ed25519"] {
        let key = dir.path().join(format!("{algorithm}.pem"));
        let made = run_sendbox(
            &[
                "dkim",
                "keygen",
                "--selector",
                "s1",
                "--domain",
                "example.org",
                "--algorithm",
                algorithm,
                "--output",
                key.to_str().unwrap(),
            ],
            "",
            None,
        );
        assert_exit(&made, 0, "s1._domainkey.example.org. 3600 IN TXT");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            public.status.success(),
            "openssl cannot read it: {}",
            text(&public)
        );
        use base64::Engine as _;
        let p = match algorithm {
            // SubjectPublicKeyInfo for RSA; the raw 32 bytes for Ed25519 (RFC 8463).
            "rsa" => base64::engine::general_purpose::STANDARD.encode(&public.stdout),
            _ => base64::engine::general_purpose::STANDARD.encode(&public.stdout[12..]),
        };
        let k = if algorithm == "rsa" { "rsa" } else { "ed25519" };
        assert!(
            String::from_utf8_lossy(&made.stdout).contains(&format!("v=DKIM1; k={k}; p={p}\n")),
            "{}",
            text(&made)
        );
    }
    let again = run_sendbox(
        &[
            "dkim",
            "keygen",
            "--selector",
            "s1",
            "--domain",
            "example.org",
            "-o",
        ],
        "",
        None,
    );
    assert_exit(&again, 64, "");
    let key = dir.path().join("rsa.pem");
    let existing = run_sendbox(
        &[
            "dkim",
            "keygen",
            "--selector",
            "s1",
            "--domain",
            "example.org",
            "-o",
            key.to_str().unwrap(),
        ],
        "",
        None,
    );
    assert_exit(&existing, 73, "a key is never overwritten");
    let large = run_sendbox(
        &[
            "dkim",
            "keygen",
            "--selector",
            "s",
            "--domain",
            "example.org",
            "--bits",
            "8192",
            "-o",
            "x",
        ],
        "",
        None,
    );
    assert_exit(&large, 64, "8192");
}

/// A key another user owns could be replaced by that user: refused, even at mode 600.
#[test]
#[ignore = "needs root, to give the key to another user (run .ci/run)"]
fn a_key_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::copy(format!("{KEYS}/rsa.private.pem"), &key).unwrap();
    std::os::unix::fs::chown(&key, Some(65534), None).unwrap();
    let refused = send(&[
        "--subject",
        "never sent",
        "--dkim-key",
        key.to_str().unwrap(),
        "--dkim-selector",
        "rsa",
        "--dkim-domain",
        "sendbox.test",
    ]);
    assert_exit(&refused, 78, "belongs to user 65534");
}
