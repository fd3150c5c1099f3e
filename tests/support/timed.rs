//! A plaintext scripted SMTP server that also measures how long the client stayed
//! connected, for tests of time limits that must not depend on how long the client
//! process took to start. It plays the plaintext steps of [`Step`] (no TLS).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::scripted::Step;

/// A server that plays a script to each of the first `clients` connections, one after the
/// other, and reports how long each stayed.
pub struct TimedServer {
    port: u16,
    done: thread::JoinHandle<Vec<Connected>>,
}

/// One connection: how long it lasted, and why the script stopped early, if it did.
#[derive(Debug, Clone)]
pub struct Connected {
    /// From accepting the connection to the client closing it (or the script ending).
    pub lasted: Duration,
    /// Why the script stopped before its end (the client closed, a line did not match).
    pub stopped: Option<String>,
}

impl TimedServer {
    pub fn start(script: Vec<Step>, clients: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let done = thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..clients {
                let Ok((stream, _)) = listener.accept() else {
                    break;
                };
                let started = Instant::now();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut stream = stream;
                let mut stopped = None;
                for step in script.clone() {
                    if let Err(why) = play(&mut stream, step) {
                        stopped = Some(why);
                        break;
                    }
                }
                seen.push(Connected {
                    lasted: started.elapsed(),
                    stopped,
                });
            }
            seen
        });
        TimedServer { port, done }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for every expected client to have come and gone.
    pub fn connections(self) -> Vec<Connected> {
        self.done.join().expect("the timed server panicked")
    }
}

fn play(stream: &mut TcpStream, step: Step) -> Result<(), String> {
    match step {
        Step::Send(text) => stream
            .write_all(text.as_bytes())
            .map_err(|e| format!("write: {e}")),
        Step::Expect(prefix) => {
            let line = read_line(stream)?;
            let text = String::from_utf8_lossy(&line).to_ascii_uppercase();
            if text.starts_with(&prefix.to_ascii_uppercase()) {
                Ok(())
            } else {
                Err(format!("expected {prefix:?}, read {text:?}"))
            }
        }
        Step::ExpectData => loop {
            if read_line(stream)? == b".\r\n" {
                return Ok(());
            }
        },
        Step::Pause(time) => {
            thread::sleep(time);
            Ok(())
        }
        Step::Silent => {
            let mut byte = [0u8];
            while stream.read(&mut byte).map_err(|e| format!("read: {e}"))? > 0 {}
            Ok(())
        }
        Step::Close => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        other => Err(format!("the timed server cannot play {other:?}")),
    }
}

fn read_line(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match stream.read(&mut byte).map_err(|e| format!("read: {e}"))? {
            0 => return Err(format!("the client closed the connection after {line:?}")),
            _ => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Ok(line);
                }
            }
        }
    }
}
