//! The oracles the fuzz targets in `fuzz/` check, here so that every crash input they
//! ever found is replayed by `cargo test` (see `fuzz/regressions/`). Each function takes
//! arbitrary bytes and panics if a promise breaks.

use mail_parser::{HeaderName, MessageParser};

use crate::data::{Framing, encode};
use crate::message::{EnvelopeRequest, Message, RawHeader, Stamp};
use crate::reply::{MAX_LINES, ReplyParser};
use crate::{
    Client, ClientConfig, Credentials, Envelope, ErrorKind, Instant, Secret, SendOptions, Step,
    Timeouts, TlsMode,
};

/// The reply parser never panics, and every reply it returns is well formed.
pub fn reply_parser(input: &[u8]) {
    // The first byte sets the chunk size, so that lines split at every possible place.
    let Some((&chunk, bytes)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut parser = ReplyParser::new();
    for piece in bytes.chunks(chunk) {
        parser.push(piece);
        loop {
            match parser.next_reply() {
                Ok(Some(reply)) => {
                    assert!((200..=559).contains(&reply.code), "code {}", reply.code);
                    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
                    if let Some(status) = reply.enhanced {
                        assert_eq!(u16::from(status.class), reply.code / 100);
                    }
                }
                Ok(None) => break,
                // An error ends the connection; nothing more is parsed.
                Err(_) => return,
            }
        }
    }
}

/// Exactly one end-of-data marker, at the end, and no bare CR or LF on the wire.
pub fn data_encoder(message: &[u8]) {
    let Ok(encoded) = encode(message, Framing::DotStuffed) else {
        assert!(message.contains(&0), "only NUL is refused");
        return;
    };
    let wire = encoded.wire;
    assert!(wire.ends_with(b".\r\n"));
    let body = &wire[..wire.len() - 3];
    // The terminator is CRLF.CRLF; the body before it may not contain that sequence,
    // nor start with ".\r\n" (an empty message is the terminator alone).
    assert!(
        !body.windows(5).any(|w| w == b"\r\n.\r\n"),
        "early end of data"
    );
    assert!(!body.starts_with(b".\r\n"), "early end of data");
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    for (i, &byte) in wire.iter().enumerate() {
        match byte {
            b'\r' => assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR"),
            b'\n' => assert!(i > 0 && wire[i - 1] == b'\r', "bare LF"),
            _ => {}
        }
    }
}

const PASSWORD: &str = "fuzz-password-Zq8";

/// The dialogue, fed arbitrary server bytes as a real driver would, never panics, always
/// ends, sends nothing but EHLO and STARTTLS before TLS when TLS is required, and never
/// shows the password in its transcript.
pub fn dialogue(input: &[u8]) {
    // The first byte picks the TLS mode and how the server's bytes are split up.
    let Some((&control, server)) = input.split_first() else {
        return;
    };
    let tls = match control % 3 {
        0 => TlsMode::StartTls,
        1 => TlsMode::Implicit,
        _ => TlsMode::InsecurePlaintext,
    };
    let chunk = usize::from(control / 3).max(1);
    let credentials = (tls != TlsMode::InsecurePlaintext).then(|| Credentials {
        username: "fuzz-user".into(),
        secret: Secret::Password(PASSWORD.into()),
        mechanism: None,
    });
    let mut now = Instant::default();
    let mut client = Client::new(
        ClientConfig {
            ehlo_name: Some("fuzz.example".into()),
            tls,
            credentials,
            server_host: "mx.fuzz.example".into(),
            server_port: 587,
            sasl_nonce: "fuzz-nonce".into(),
            transcript: true,
            timeouts: Timeouts::default(),
        },
        now,
    )
    .expect("a valid configuration");
    let envelope = Envelope {
        sender: "a@fuzz.example".into(),
        recipients: vec!["b@fuzz.example".into(), "c@fuzz.example".into()],
    };

    let mut replies = server.chunks(chunk);
    let mut tls_active = tls == TlsMode::Implicit;
    let mut before_tls = Vec::new();
    let mut messages = 0;
    let mut closed = false;
    for _ in 0..1_000_000 {
        // Each step takes a second, so a second message meets the idle check.
        now = now.plus_ms(1_000);
        match client.poll(now) {
            Step::Transmit(bytes, _) => {
                if !tls_active {
                    before_tls.extend_from_slice(&bytes);
                }
            }
            Step::Receive(_) => match replies.next() {
                Some(bytes) => client.receive(bytes),
                None => client.connection_lost(ErrorKind::Network, "end of input"),
            },
            Step::StartTls(handshake) => {
                tls_active = true;
                handshake.established();
            }
            Step::Ready(ready) if messages < 2 => {
                messages += 1;
                let message = b"Subject: fuzz\r\n\r\nbody\r\n.\r\n";
                let sent = ready.send(
                    now,
                    envelope.clone(),
                    message.to_vec(),
                    SendOptions::default(),
                );
                if let Err(error) = sent {
                    // Only the server's SIZE limit may refuse this message.
                    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
                }
            }
            Step::Ready(ready) => ready.quit(now),
            Step::Delivered(_) | Step::Failed(_) | Step::Reconnect => {}
            Step::Closed => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the dialogue did not end");

    if tls == TlsMode::StartTls {
        let sent = String::from_utf8_lossy(&before_tls);
        for line in sent.split_terminator("\r\n") {
            assert!(
                line == "EHLO fuzz.example" || line == "STARTTLS",
                "sent before TLS: {line:?}"
            );
        }
    }
    // Without TLS there are no credentials, and the "password" is just text the server sent.
    if tls != TlsMode::InsecurePlaintext {
        let transcript = client.take_transcript().join("\n");
        assert!(!transcript.contains(PASSWORD), "password in the transcript");
    }
}

/// Reading a raw message's header never panics, and when the recipients come from the
/// header, no Bcc field is left in what would be sent.
pub fn raw_message(input: &[u8]) {
    let request = EnvelopeRequest {
        sender: Some(String::new()),
        recipients: Vec::new(),
        recipients_from_headers: true,
        qualify_domain: None,
    };
    let stamp = || Stamp {
        unix_time: 0,
        unique: "fuzz".into(),
    };
    let Ok((_, bytes)) = Message::Raw(input.to_vec()).build(request, RawHeader::Complete, stamp)
    else {
        return;
    };
    if let Some(parsed) = MessageParser::new().parse_headers(&bytes) {
        assert!(
            parsed.headers().iter().all(|h| h.name != HeaderName::Bcc),
            "a Bcc field is left in {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// The relay's dialogue fed arbitrary client bytes, in chunks and with time passing: it
/// never panics, says nothing after closing, and keeps no message that a real CRLF.CRLF
/// did not end, nor one whose content holds a bare CR or LF or a NUL, nor an address
/// the sender would refuse.
pub fn relay(input: &[u8]) {
    use crate::Phase;
    use crate::command::check_mailbox;
    use crate::server::{Answer, Event, Login, Server, ServerConfig};

    // The first byte sets the chunk size and whether a login and TLS are asked for.
    let Some((&control, bytes)) = input.split_first() else {
        return;
    };
    let config = ServerConfig {
        hostname: "fuzz".to_owned(),
        max_message: 4096,
        max_recipients: 4,
        starttls: control & 0x80 != 0,
        login: (control & 0x40 != 0).then(|| Login {
            user: "u".to_owned(),
            password: "p".to_owned(),
        }),
        line_ms: 1_000,
        login_ms: 5_000,
    };
    let ends = bytes.windows(5).filter(|w| w == b"\r\n.\r\n").count();
    let chunk = usize::from(control & 0x3f).max(1);
    let mut now = Instant::default();
    let mut server = Server::new(config, now);
    let (mut kept, mut closed) = (0, false);
    for piece in bytes.chunks(chunk) {
        server.receive(piece);
        now = now.plus_ms(400);
        while let Some(event) = server.poll(now) {
            assert!(!closed, "{event:?} after Close");
            match event {
                Event::Send(reply) => {
                    assert!(reply.ends_with(b"\r\n") && reply.len() >= 5, "{reply:?}");
                    assert!(
                        !reply
                            .iter()
                            .any(|b| b.is_ascii_control() && !b"\r\n".contains(b))
                    );
                }
                Event::StartTls | Event::LoginFailed => {}
                Event::Message(incoming) => {
                    kept += 1;
                    let content = &incoming.content;
                    assert!(content.is_empty() || content.ends_with(b"\r\n"));
                    for (at, &byte) in content.iter().enumerate() {
                        match byte {
                            0 => panic!("NUL kept"),
                            b'\r' => assert_eq!(content.get(at + 1), Some(&b'\n'), "bare CR"),
                            b'\n' => assert_eq!(content[at - 1], b'\r', "bare LF"),
                            _ => {}
                        }
                    }
                    assert!(!incoming.recipients.is_empty());
                    for address in incoming.recipients.iter().chain([&incoming.sender]) {
                        assert!(
                            address.is_empty() || check_mailbox(Phase::Rcpt, address).is_ok(),
                            "{address:?}"
                        );
                    }
                    server.answer(Answer::Kept(kept.to_string()), now);
                }
                Event::Close => closed = true,
            }
        }
    }
    // Each message ends at a line "." after a line's CRLF (DATA's, for an empty one).
    assert!(kept <= ends, "{kept} messages from {ends} ends");
}

/// DKIM signing of arbitrary message bytes never panics. What it accepts gets a clean
/// field (ASCII, lines of at most 78 columns, ending in CRLF) holding what it signed, and
/// line ends added at the end of the message change nothing signed.
pub fn dkim(input: &[u8]) {
    use crate::dkim::{Algorithm, Canonicalization, Request, prepare};

    // The first byte picks the algorithm, the canonicalisations and the optional tags.
    let Some((&control, message)) = input.split_first() else {
        return;
    };
    let algorithm = if control & 1 != 0 {
        Algorithm::RsaSha256
    } else {
        Algorithm::Ed25519Sha256
    };
    let canonicalization = |bit: u8| {
        if control & bit != 0 {
            Canonicalization::Simple
        } else {
            Canonicalization::Relaxed
        }
    };
    let mut request = Request::new("example.org", "fuzz", algorithm);
    request.header_canonicalization = canonicalization(2);
    request.body_canonicalization = canonicalization(4);
    if control & 8 != 0 {
        request.expiry = Some(86_400);
        request.identity = Some("fuzz@mail.example.org".into());
    }
    let Ok(prepared) = prepare(&request, message, 1_700_000_000) else {
        return;
    };
    let field = prepared.finish(&[0xA5; 256]);
    assert!(field.is_ascii() && field.ends_with(b"\r\n"));
    assert!(field.starts_with(prepared.field().as_bytes()));
    for line in field[..field.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() <= 78, "a line of {} columns", line.len());
    }
    if request.header_canonicalization == Canonicalization::Simple {
        assert!(
            prepared
                .signed_data()
                .ends_with(prepared.field().as_bytes())
        );
    }
    match algorithm {
        Algorithm::RsaSha256 => assert_eq!(prepared.signing_input(), prepared.signed_data()),
        Algorithm::Ed25519Sha256 => assert_eq!(prepared.signing_input().len(), 32),
    }
    let mut longer = message.to_vec();
    longer.extend_from_slice(b"\r\n\r\n");
    let again = prepare(&request, &longer, 1_700_000_000).expect("still signable");
    assert_eq!(again.signed_data(), prepared.signed_data());
}

#[cfg(test)]
mod regressions {
    use std::path::{Path, PathBuf};

    /// What a fuzz target checks.
    type Oracle = fn(&[u8]);

    /// Each fuzz target and its oracle.
    const TARGETS: [(&str, Oracle); 6] = [
        ("reply_parser", super::reply_parser),
        ("data_encoder", super::data_encoder),
        ("dialogue", super::dialogue),
        ("raw_message", super::raw_message),
        ("relay", super::relay),
        ("dkim", super::dkim),
    ];

    /// Targets whose oracle lives in another crate, which replays their saved inputs.
    const REPLAYED_ELSEWHERE: [&str; 1] = [
        "outbox_entry", // sendbox-cli: outbox::entry::tests::saved_fuzz_inputs_still_pass
    ];

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// Every target's saved inputs still pass, and no target's folder is empty (each keeps
    /// at least a seed), so a lost folder cannot hide behind the others.
    #[test]
    fn saved_inputs_of_every_target_still_pass() {
        for (target, oracle) in TARGETS {
            let dir = fuzz_dir().join("regressions").join(target);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut replayed = 0;
            for entry in entries {
                let path = entry.unwrap().path();
                oracle(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
            assert!(replayed > 0, "{} holds no input", dir.display());
        }
    }

    /// Every fuzz target in fuzz/fuzz_targets is replayed here.
    #[test]
    fn every_fuzz_target_is_replayed() {
        let dir = fuzz_dir().join("fuzz_targets");
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
            .collect();
        found.sort();
        let mut replayed: Vec<String> = TARGETS
            .iter()
            .map(|(t, _)| t.to_string())
            .chain(REPLAYED_ELSEWHERE.map(str::to_owned))
            .collect();
        replayed.sort();
        assert_eq!(found, replayed);
    }
}
