//! A misbehaving SMTP server for hostile-server tests: it plays a script over a real
//! loopback socket (replies, timing, TLS or not, what it expects to read) and records
//! every byte the client sent, split by whether TLS protected it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};

/// The greeting and the EHLO replies scripts usually begin with.
pub const GREETING: &str = "220 scripted.test ESMTP\r\n";
pub const EHLO_STARTTLS: &str = "250-scripted.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
pub const EHLO_PLAIN: &str = "250-scripted.test\r\n250 8BITMIME\r\n";

/// Greeting, EHLO, STARTTLS: the server answers STARTTLS with `answer`, then says nothing.
pub fn up_to_starttls(answer: &'static str) -> Vec<Step> {
    vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_STARTTLS),
        Step::Expect("STARTTLS"),
        Step::Send(answer),
        Step::Silent,
    ]
}

/// One step of the script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes.
    Send(&'static str),
    /// Write these bytes one at a time, pausing between them.
    Trickle(&'static str),
    /// Read one line from the client; it must start with this (case-insensitive).
    Expect(&'static str),
    /// Read message content up to and including the final `.` line.
    ExpectData,
    /// Become a TLS server on this connection (after a 220 to STARTTLS, or at once).
    Tls,
    /// Wait this long.
    Pause(Duration),
    /// Write `line` over and over, up to `total` bytes or until the client goes away.
    Flood { line: &'static str, total: usize },
    /// Say nothing and keep the connection open until the client closes it.
    Silent,
    /// Close the connection at once.
    Close,
}

/// What the client sent, and how the script went.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Bytes received before TLS.
    pub plaintext: Vec<u8>,
    /// Bytes received over TLS (decrypted).
    pub encrypted: Vec<u8>,
    /// Why the script stopped early, if it did (the client left, a line did not match).
    pub stopped: Option<String>,
}

impl Seen {
    pub fn plaintext_text(&self) -> String {
        String::from_utf8_lossy(&self.plaintext).into_owned()
    }

    pub fn all_text(&self) -> String {
        format!(
            "{}{}",
            self.plaintext_text(),
            String::from_utf8_lossy(&self.encrypted)
        )
    }
}

/// A server that plays `script` to the first client that connects.
pub struct ScriptedServer {
    pub address: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    done: Option<thread::JoinHandle<()>>,
}

impl ScriptedServer {
    pub fn start(script: Vec<Step>, tls: Option<Arc<ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        let done = thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut connection = Connection {
                tcp: stream,
                tls: None,
                config: tls,
                seen: record.clone(),
            };
            for step in script {
                if let Err(why) = connection.play(step) {
                    record.lock().unwrap().stopped = Some(why);
                    return;
                }
            }
        });
        ScriptedServer {
            address,
            seen,
            done: Some(done),
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Waits for the script to end (the client must have finished) and returns what it saw.
    pub fn seen(mut self) -> Seen {
        if let Some(done) = self.done.take() {
            done.join().expect("the script thread panicked");
        }
        self.seen.lock().unwrap().clone()
    }
}

struct Connection {
    tcp: TcpStream,
    tls: Option<ServerConnection>,
    config: Option<Arc<ServerConfig>>,
    seen: Arc<Mutex<Seen>>,
}

impl Connection {
    fn play(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Send(text) => self
                .write(text.as_bytes())
                .map_err(|e| format!("write: {e}")),
            Step::Trickle(text) => {
                for byte in text.as_bytes() {
                    self.write(std::slice::from_ref(byte))
                        .map_err(|e| format!("write: {e}"))?;
                    thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            }
            Step::Expect(prefix) => {
                let line = self.read_line()?;
                let text = String::from_utf8_lossy(&line);
                if text
                    .to_ascii_uppercase()
                    .starts_with(&prefix.to_ascii_uppercase())
                {
                    Ok(())
                } else {
                    Err(format!("expected {prefix:?}, read {text:?}"))
                }
            }
            Step::ExpectData => loop {
                if self.read_line()? == b".\r\n" {
                    return Ok(());
                }
            },
            Step::Tls => {
                let config = self.config.clone().ok_or("the script has no TLS config")?;
                let mut tls = ServerConnection::new(config).map_err(|e| e.to_string())?;
                while tls.is_handshaking() {
                    tls.complete_io(&mut self.tcp)
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                }
                self.tls = Some(tls);
                Ok(())
            }
            Step::Pause(time) => {
                thread::sleep(time);
                Ok(())
            }
            Step::Flood { line, total } => {
                let mut sent = 0;
                while sent < total {
                    if self.write(line.as_bytes()).is_err() {
                        return Ok(()); // the client gave up, as it should
                    }
                    sent += line.len();
                }
                Ok(())
            }
            Step::Silent => {
                // Read until the client closes; whatever it sends is recorded.
                while self.read_byte()?.is_some() {}
                Ok(())
            }
            Step::Close => {
                let _ = self.tcp.shutdown(std::net::Shutdown::Both);
                Ok(())
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => {
                let mut stream = rustls::Stream::new(tls, &mut self.tcp);
                stream.write_all(bytes)?;
                stream.flush()
            }
            None => self.tcp.write_all(bytes),
        }
    }

    /// One byte from the client, `None` when it closed the connection.
    fn read_byte(&mut self) -> Result<Option<u8>, String> {
        let mut byte = [0u8];
        let n = match &mut self.tls {
            Some(tls) => rustls::Stream::new(tls, &mut self.tcp).read(&mut byte),
            None => self.tcp.read(&mut byte),
        }
        .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        let mut seen = self.seen.lock().unwrap();
        match self.tls {
            Some(_) => seen.encrypted.push(byte[0]),
            None => seen.plaintext.push(byte[0]),
        }
        Ok(Some(byte[0]))
    }

    fn read_line(&mut self) -> Result<Vec<u8>, String> {
        let mut line = Vec::new();
        loop {
            match self.read_byte()? {
                None => return Err(format!("the client closed the connection after {line:?}")),
                Some(byte) => {
                    line.push(byte);
                    if byte == b'\n' {
                        return Ok(line);
                    }
                }
            }
        }
    }
}
