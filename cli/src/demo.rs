//! `sendbox demo`: a whole send, with nothing to set up. An SMTP server starts on
//! loopback (STARTTLS with a CA and certificate made now, AUTH with a password made now),
//! the sandboxed component sends it a message, and we show the dialogue and what the
//! server received.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use sendbox::{
    ComposedMessage, Credentials, Envelope, Mailbox, Mailer, Sandbox, Server, TlsMode, Transcript,
    TranscriptBuffer,
};
use sendbox_loopback::{AuthMechanism, LoopbackOptions, LoopbackServer, ServerTls};

use crate::error::{self, Error};
use crate::exit;

const FROM: &str = "demo@sendbox.invalid";
const TO: &str = "you@sendbox.invalid";

pub async fn run() -> Result<u8, Error> {
    let account = ("demo".to_owned(), one_time_password());
    let server = LoopbackServer::start(LoopbackOptions {
        tls: ServerTls::StartTls,
        account: Some(account.clone()),
        mechanisms: vec![AuthMechanism::Plain, AuthMechanism::Login],
        refuse: Vec::new(),
    })
    .map_err(|e| Error::Internal(format!("cannot start the loopback server: {e}")))?;

    let mut config = Server::new("localhost", server.port(), TlsMode::Starttls);
    config.ca_pem = Some(server.ca_pem().to_owned());
    config.ehlo_name = Some("demo.sendbox.invalid".to_owned());
    let credentials = Credentials::password(account.0, account.1);
    let sandbox = Sandbox::new().map_err(error::component)?;
    let transcript = TranscriptBuffer::new(1 << 20);
    let mailer = Mailer::new(sandbox, config, Some(credentials))
        .await?
        .with_transcript(Transcript::Capture(transcript.clone()));

    println!("== sendbox demo ==");
    println!(
        "An SMTP server (the mailin library) is listening on {}.",
        server.address()
    );
    println!(
        "It offers STARTTLS with a certificate from a CA made a moment ago, and AUTH PLAIN and LOGIN."
    );
    let granted: Vec<String> = mailer
        .grant()
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "The sandboxed component may open TCP connections to {} and to nothing else:",
        granted.join(", ")
    );
    println!("no other address or port, no DNS, no files, no environment.\n");

    let body = "Hello!\n\nThis message was sent by the sendbox WebAssembly component, which spoke\n\
                SMTP and TLS itself from inside its sandbox.\n\n\
                .A line that starts with a dot travels dot-stuffed and arrives intact.\n";
    // The component builds the message (MIME, Date, Message-ID) and takes the envelope
    // from it.
    let mut message = ComposedMessage::new(Mailbox::new(FROM));
    message.to.push(Mailbox::new(TO));
    message.subject = "Hello from the sandbox".to_owned();
    message.text = Some(body.to_owned());
    let result = mailer.send(&Envelope::from_headers(), message).await;

    println!("-- The SMTP dialogue, as the component wrote it (AUTH data redacted) --");
    print!("{}", transcript.contents());
    let delivery = result?;
    println!();
    println!("-- Result --");
    println!(
        "Accepted for {}: {}",
        delivery.accepted.join(", "),
        delivery.final_reply
    );
    println!();
    for received in server.received() {
        println!("-- What the server received --");
        println!("MAIL FROM: {}", received.sender);
        println!("RCPT TO:   {}", received.recipients.join(", "));
        println!(
            "AUTH user: {}",
            received.user.as_deref().unwrap_or("(none)")
        );
        println!();
        print!(
            "{}",
            String::from_utf8_lossy(&received.data).replace("\r\n", "\n")
        );
    }
    Ok(exit::OK)
}

/// A password for this run only, so the demo never holds a fixed secret.
fn one_time_password() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    format!("{:016x}", hasher.finish())
}
