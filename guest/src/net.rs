//! TCP over `wasi:sockets`, with a deadline on every wait.
//!
//! The component never resolves names: it connects to IP addresses the embedder gave it,
//! and the embedder decides which of those it may reach.

use std::net::IpAddr;

use sendbox_proto::connect;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{self, Pollable};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// Most bytes taken from the socket in one read.
const READ_CHUNK: u64 = 4096;

/// A point on the monotonic clock, in nanoseconds.
pub type Deadline = u64;

pub fn now() -> Deadline {
    monotonic_clock::now()
}

/// Why a socket operation did not complete.
#[derive(Debug)]
pub enum NetError {
    /// The deadline passed first.
    Timeout,
    /// The peer closed the connection.
    Closed,
    /// The operation failed; the text says how.
    Failed(String),
    /// The embedder's policy refused the address: retrying cannot help.
    Denied(String),
}

/// A connected TCP stream. Field order matters: each pollable must be dropped before its
/// stream, and the streams before the socket they belong to.
pub struct Tcp {
    /// Fires when `input` has bytes (or is closed); made once, waited on for every read.
    readable: Pollable,
    /// Fires when `output` can take more bytes.
    writable: Pollable,
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

/// Connects to the first of `addresses` that accepts, before `deadline`. The addresses are
/// tried one at a time in [`connect::attempt_order`] (IPv6 and IPv4 interleaved), each with
/// its share of the time left, so a black-holed address cannot starve the next one.
pub fn connect(addresses: &[IpAddr], port: u16, deadline: Deadline) -> Result<Tcp, NetError> {
    let order = connect::attempt_order(addresses);
    let mut failures = Vec::new();
    let (mut timeouts, mut denials) = (0, 0);
    for (tried, &address) in order.iter().enumerate() {
        let until = connect::attempt_deadline(now(), deadline, order.len() - tried);
        let why = match connect_one(address, port, until) {
            Ok(tcp) => return Ok(tcp),
            Err(NetError::Timeout) => {
                timeouts += 1;
                "timed out".to_owned()
            }
            Err(NetError::Denied(why)) => {
                denials += 1;
                why
            }
            Err(NetError::Failed(why)) => why,
            Err(NetError::Closed) => "closed at once".to_owned(),
        };
        failures.push(format!("{address} port {port}: {why}"));
    }
    Err(if failures.is_empty() {
        NetError::Failed("no address to connect to".to_owned())
    } else if timeouts == failures.len() {
        NetError::Timeout
    } else if denials == failures.len() {
        NetError::Denied(failures.join("; "))
    } else {
        NetError::Failed(failures.join("; "))
    })
}

fn connect_one(address: IpAddr, port: u16, deadline: Deadline) -> Result<Tcp, NetError> {
    let (family, remote) = match address {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port,
                address: (a, b, c, d),
            });
            (IpAddressFamily::Ipv4, remote)
        }
        IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            let remote = IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port,
                flow_info: 0,
                address: (a, b, c, d, e, f, g, h),
                scope_id: 0,
            });
            (IpAddressFamily::Ipv6, remote)
        }
    };
    let socket = create_tcp_socket(family).map_err(socket_error)?;
    socket
        .start_connect(&instance_network(), remote)
        .map_err(socket_error)?;
    let ready = socket.subscribe();
    let streams = loop {
        match socket.finish_connect() {
            Ok(streams) => break streams,
            Err(ErrorCode::WouldBlock) => wait(&ready, deadline)?,
            Err(code) => return Err(socket_error(code)),
        }
    };
    drop(ready);
    let (input, output) = streams;
    Ok(Tcp {
        readable: input.subscribe(),
        writable: output.subscribe(),
        input,
        output,
        _socket: socket,
    })
}

fn socket_error(code: ErrorCode) -> NetError {
    let why = match code {
        ErrorCode::AccessDenied => {
            return NetError::Denied("access denied by the sandbox policy".to_owned());
        }
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::RemoteUnreachable => "unreachable".to_owned(),
        ErrorCode::ConnectionReset => "connection reset".to_owned(),
        ErrorCode::Timeout => "timed out".to_owned(),
        other => other.message().to_owned(),
    };
    NetError::Failed(why)
}

fn stream_error(error: StreamError) -> NetError {
    match error {
        StreamError::Closed => NetError::Closed,
        StreamError::LastOperationFailed(e) => NetError::Failed(e.to_debug_string()),
    }
}

/// Blocks until `ready` fires or `deadline` passes (a deadline already past fires at
/// once). Callers try the operation first, so `ready` is rarely ready here.
fn wait(ready: &Pollable, deadline: Deadline) -> Result<(), NetError> {
    let timer = monotonic_clock::subscribe_instant(deadline);
    let fired = poll::poll(&[ready, &timer]);
    if fired.contains(&0) {
        Ok(())
    } else {
        Err(NetError::Timeout)
    }
}

impl Tcp {
    /// Reads whatever the peer has sent, waiting for at least one byte.
    pub fn read(&mut self, deadline: Deadline) -> Result<Vec<u8>, NetError> {
        loop {
            let bytes = self.input.read(READ_CHUNK).map_err(stream_error)?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
            wait(&self.readable, deadline)?;
        }
    }

    /// Hands all of `bytes` to the stream. A buffer the stream accepts in one go is handed
    /// over in one write, so a TLS flight leaves in one TCP segment train instead of record
    /// by record (which stalls on Nagle and delayed ACKs). It does not wait for the bytes
    /// to leave: the next write waits for room, and a reply can only follow the bytes.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Deadline) -> Result<(), NetError> {
        while !bytes.is_empty() {
            let permitted = self.output.check_write().map_err(stream_error)?;
            if permitted == 0 {
                wait(&self.writable, deadline)?;
                continue;
            }
            let n = bytes
                .len()
                .min(usize::try_from(permitted).unwrap_or(usize::MAX));
            self.output.write(&bytes[..n]).map_err(stream_error)?;
            bytes = &bytes[n..];
        }
        self.output.flush().map_err(stream_error)
    }
}
