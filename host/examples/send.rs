//! Embedding sendbox in a Rust program: one message with [`Mailer::send`], then two more
//! over one connection with [`Mailer::open`]. The SMTP client runs in the sandboxed
//! component and can reach only the server named here.
//!
//! ```sh
//! SMTP_USER=alice SMTP_PASSWORD=... cargo run -p sendbox --example send -- \
//!     starttls smtp.example.org 587 alice@example.org bob@example.net [ca.pem]
//! ```
//!
//! Without `SMTP_USER` it sends without AUTH. The optional last argument is a PEM file of
//! trust anchors for a private CA.

use sendbox::{Credentials, Envelope, Mailer, Sandbox, Server, TlsMode};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tls, host, port, from, to, rest @ ..] = args.as_slice() else {
        return Err("usage: send implicit|starttls|none HOST PORT FROM TO [CA.pem]".into());
    };
    let tls = match tls.as_str() {
        "implicit" => TlsMode::Implicit,
        "starttls" => TlsMode::Starttls,
        "none" => TlsMode::InsecurePlaintext,
        other => return Err(format!("unknown TLS mode {other:?}").into()),
    };
    let mut server = Server::new(host.as_str(), port.parse()?, tls);
    if let Some(ca) = rest.first() {
        server.ca_pem = Some(std::fs::read_to_string(ca)?);
    }
    let credentials = match std::env::var("SMTP_USER") {
        Ok(username) => Some(Credentials::password(
            username,
            std::env::var("SMTP_PASSWORD")?,
        )),
        Err(_) => None,
    };

    // Compile (or load from the cache) the component once; resolve the server's name
    // here, in the host, and grant the component exactly those addresses.
    let mailer = Mailer::new(Sandbox::new()?, server, credentials).await?;
    println!(
        "the component may connect to: {:?}",
        mailer.grant().addresses()
    );
    let envelope = Envelope::new(from.clone(), vec![to.clone()]);

    let delivery = mailer
        .send(&envelope, b"Subject: one\r\n\r\nThe first message.\r\n")
        .await?;
    println!("sent: {}", delivery.final_reply.text);

    let mut session = mailer.open().await?;
    for subject in ["two", "three"] {
        let message = format!("Subject: {subject}\r\n\r\nOver one connection.\r\n");
        let delivery = session.send(&envelope, message.as_bytes()).await?;
        println!("sent: {}", delivery.final_reply.text);
    }
    session.close().await?;
    Ok(())
}
