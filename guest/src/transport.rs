//! The byte stream the dialogue runs over: plain TCP, then (after STARTTLS or from the
//! start) TLS by rustls with the ring provider.
//!
//! Each TLS flight is gathered into one buffer and written with one socket write: wasip2
//! has no vectored writes, and writing record by record cost 88 ms per handshake in
//! Nagle and delayed-ACK stalls against 3.6 ms when coalesced.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::net::{Deadline, NetError, Tcp};

/// Why the transport failed.
#[derive(Debug)]
pub enum TransportError {
    Net(NetError),
    /// TLS failed: handshake, certificate, or a corrupt record.
    Tls(String),
}

impl From<NetError> for TransportError {
    fn from(error: NetError) -> Self {
        TransportError::Net(error)
    }
}

/// Checks that `host` can be a TLS server name (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))
}

/// A connection to the server, plain or TLS.
pub struct Transport {
    tcp: Tcp,
    tls: Option<ClientConnection>,
}

impl Transport {
    pub fn new(tcp: Tcp) -> Self {
        Transport { tcp, tls: None }
    }

    /// Runs the TLS handshake over the connection and switches to TLS.
    pub fn start_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        deadline: Deadline,
    ) -> Result<String, TransportError> {
        let mut tls =
            ClientConnection::new(config, name).map_err(|e| TransportError::Tls(e.to_string()))?;
        while tls.is_handshaking() {
            flush_tls(&mut tls, &mut self.tcp, deadline)?;
            if tls.is_handshaking() && tls.wants_read() {
                let bytes = self.tcp.read(deadline)?;
                if let Err(error) = feed_tls(&mut tls, &bytes) {
                    // Tell the server why (a TLS alert) before giving up.
                    let _ = flush_tls(&mut tls, &mut self.tcp, deadline);
                    return Err(error);
                }
            }
        }
        flush_tls(&mut tls, &mut self.tcp, deadline)?;
        let version = tls
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let suite = tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        self.tls = Some(tls);
        Ok(format!("{version} {suite}"))
    }

    /// Sends `bytes`, encrypted if TLS is on.
    pub fn send(&mut self, mut bytes: &[u8], deadline: Deadline) -> Result<(), TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(self.tcp.write_all(bytes, deadline)?);
        };
        while !bytes.is_empty() {
            let n = tls
                .writer()
                .write(bytes)
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            bytes = &bytes[n..];
            flush_tls(tls, &mut self.tcp, deadline)?;
        }
        Ok(())
    }

    /// Receives the next bytes from the server, decrypted if TLS is on.
    pub fn receive(&mut self, deadline: Deadline) -> Result<Vec<u8>, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(self.tcp.read(deadline)?);
        };
        let mut plain = [0; 4096];
        loop {
            match tls.reader().read(&mut plain) {
                Ok(0) => return Err(NetError::Closed.into()),
                Ok(n) => return Ok(plain[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let bytes = match self.tcp.read(deadline) {
                        // A close without close_notify: the server's replies end here.
                        Err(NetError::Closed) => return Err(NetError::Closed.into()),
                        other => other?,
                    };
                    feed_tls(tls, &bytes)?;
                    flush_tls(tls, &mut self.tcp, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(NetError::Closed.into());
                }
                Err(e) => return Err(TransportError::Tls(e.to_string())),
            }
        }
    }
}

/// Hands received TLS bytes to rustls and processes them.
fn feed_tls(tls: &mut ClientConnection, mut bytes: &[u8]) -> Result<(), TransportError> {
    while !bytes.is_empty() {
        tls.read_tls(&mut bytes)
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        tls.process_new_packets()
            .map_err(|e| TransportError::Tls(sendbox_proto::tls::explain(&e)))?;
    }
    Ok(())
}

/// Writes everything rustls has queued as one socket write.
fn flush_tls(
    tls: &mut ClientConnection,
    tcp: &mut Tcp,
    deadline: Deadline,
) -> Result<(), TransportError> {
    if !tls.wants_write() {
        return Ok(());
    }
    let mut flight = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut flight)
            .map_err(|e| TransportError::Tls(e.to_string()))?;
    }
    Ok(tcp.write_all(&flight, deadline)?)
}
