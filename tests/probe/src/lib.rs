//! The probe component: each export tries one thing the sendbox sandbox forbids and
//! reports what happened. It exists only for the sandbox tests.

use std::net::IpAddr;

use wasip2::io::poll;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::ip_name_lookup::resolve_addresses;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;
use wasip2::sockets::udp::OutgoingDatagram;
use wasip2::sockets::udp_create_socket::create_udp_socket;

wit_bindgen::generate!({
    // sendbox's WIT first: the probe's world exports its `mail-sender` interface.
    path: ["../../wit", "wit"],
    world: "sendbox:probe/probe",
});

use exports::sendbox::mail::mail_sender as mail;

struct Probe;

export!(Probe);

impl Guest for Probe {
    fn lookup(name: String) -> Result<Vec<String>, String> {
        let stream =
            resolve_addresses(&instance_network(), &name).map_err(|e| e.message().to_owned())?;
        let mut found = Vec::new();
        loop {
            match stream.resolve_next_address() {
                Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => found.push(format!("{a}.{b}.{c}.{d}")),
                Ok(Some(IpAddress::Ipv6(v6))) => found.push(format!("{v6:?}")),
                Ok(None) => return Ok(found),
                Err(ErrorCode::WouldBlock) => {
                    poll::poll(&[&stream.subscribe()]);
                }
                Err(e) => return Err(e.message().to_owned()),
            }
        }
    }

    fn list_dir(path: String) -> Result<Vec<String>, String> {
        let entries = std::fs::read_dir(&path).map_err(|e| e.to_string())?;
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    fn environment() -> Vec<(String, String)> {
        std::env::vars().collect()
    }

    fn arguments() -> Vec<String> {
        std::env::args().collect()
    }

    fn connect(address: String, port: u16) -> Result<(), String> {
        let (family, remote) = socket_address(&address, port)?;
        let socket = create_tcp_socket(family).map_err(|e| e.message().to_owned())?;
        socket
            .start_connect(&instance_network(), remote)
            .map_err(|e| e.message().to_owned())?;
        let ready = socket.subscribe();
        loop {
            match socket.finish_connect() {
                Ok(_) => return Ok(()),
                Err(ErrorCode::WouldBlock) => {
                    poll::poll(&[&ready]);
                }
                Err(e) => return Err(e.message().to_owned()),
            }
        }
    }

    fn send_udp(address: String, port: u16) -> Result<(), String> {
        let (family, remote) = socket_address(&address, port)?;
        let socket = create_udp_socket(family).map_err(|e| e.message().to_owned())?;
        let unspecified = match family {
            IpAddressFamily::Ipv4 => IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: 0,
                address: (0, 0, 0, 0),
            }),
            IpAddressFamily::Ipv6 => IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: 0,
                flow_info: 0,
                address: (0, 0, 0, 0, 0, 0, 0, 0),
                scope_id: 0,
            }),
        };
        socket
            .start_bind(&instance_network(), unspecified)
            .map_err(|e| e.message().to_owned())?;
        poll::poll(&[&socket.subscribe()]);
        socket.finish_bind().map_err(|e| e.message().to_owned())?;
        let (_incoming, outgoing) = socket
            .stream(Some(remote))
            .map_err(|e| e.message().to_owned())?;
        poll::poll(&[&outgoing.subscribe()]);
        outgoing.check_send().map_err(|e| e.message().to_owned())?;
        let datagram = OutgoingDatagram {
            data: b"probe".to_vec(),
            remote_address: None,
        };
        match outgoing.send(&[datagram]) {
            Ok(1) => Ok(()),
            Ok(_) => Err("the datagram was not sent".to_owned()),
            Err(e) => Err(e.message().to_owned()),
        }
    }

    fn allocate(mebibytes: u32) -> u32 {
        let mut kept = Vec::new();
        for got in 0..mebibytes {
            let mut block = Vec::new();
            if block.try_reserve_exact(1 << 20).is_err() {
                return got;
            }
            block.resize(1 << 20, 1u8);
            kept.push(block);
        }
        mebibytes
    }

    fn spin() -> u64 {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn panic_with(secret: String) {
        panic_quoting(&secret)
    }
}

/// Panics with `secret` in the panic message.
fn panic_quoting(secret: &str) -> ! {
    panic!("probe: giving up with the secret {secret:?} in hand")
}

/// The secret of `credentials`, for a panic message to quote.
fn secret_of(credentials: Option<&mail::Credentials>) -> String {
    match credentials.map(|c| &c.secret) {
        Some(mail::Secret::Password(secret) | mail::Secret::BearerToken(secret)) => secret.clone(),
        None => "<no credentials given>".to_owned(),
    }
}

/// The sender interface, as a component with a bug that panics with the password in its
/// panic message: the host must report the trap without repeating that message.
impl mail::Guest for Probe {
    type Session = PanickingSession;

    fn send(
        _server: mail::Server,
        credentials: Option<mail::Credentials>,
        _envelope: mail::Envelope,
        _message: mail::Message,
        _options: mail::SendOptions,
    ) -> Result<mail::Delivery, mail::SendError> {
        panic_quoting(&secret_of(credentials.as_ref()))
    }

    fn prepare(
        _envelope: mail::Envelope,
        _message: mail::Message,
        _options: mail::SendOptions,
    ) -> Result<mail::PreparedMessage, mail::SendError> {
        unreachable!("the probe is only asked to send")
    }
}

/// A session that never opens: `open` panics the same way.
pub struct PanickingSession;

impl mail::GuestSession for PanickingSession {
    fn open(
        _server: mail::Server,
        credentials: Option<mail::Credentials>,
    ) -> Result<mail::Session, mail::SendError> {
        panic_quoting(&secret_of(credentials.as_ref()))
    }

    fn send(
        &self,
        _envelope: mail::Envelope,
        _message: mail::Message,
        _options: mail::SendOptions,
    ) -> Result<mail::Delivery, mail::SendError> {
        unreachable!("a probe session never opens")
    }

    fn is_open(&self) -> bool {
        unreachable!("a probe session never opens")
    }

    fn close(&self) -> Result<(), mail::SendError> {
        unreachable!("a probe session never opens")
    }
}

/// The address family and socket address of `address`:`port`.
fn socket_address(address: &str, port: u16) -> Result<(IpAddressFamily, IpSocketAddress), String> {
    let ip: IpAddr = address
        .parse()
        .map_err(|_| "not an IP address".to_owned())?;
    Ok(match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port,
                    address: (a, b, c, d),
                }),
            )
        }
        IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port,
                    flow_info: 0,
                    address: (a, b, c, d, e, f, g, h),
                    scope_id: 0,
                }),
            )
        }
    })
}
