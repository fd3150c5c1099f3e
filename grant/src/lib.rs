//! The grant component: exports `wasi:sockets` to the component it confines, backed by the
//! host's `wasi:sockets`, and lets through only what the grant allows.
//!
//! - TCP: a connect only to a granted endpoint, a bind only of the unspecified address
//!   (port 0), which a connect may need; no listen, no accept. The streams and pollables are
//!   the host's own, handed through: no byte passes through this component.
//! - UDP and name lookup: refused with `access-denied`; no such socket ever exists.
//!
//! The granted endpoints come from the `policy` import, which `sendbox grant` satisfies
//! with a component of constants made at the same time. This is a separate instance with
//! its own memory: a sender that is taken over cannot change what the grant allows.

use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

wit_bindgen::generate!({
    path: "wit",
    world: "grant",
    generate_all,
});

use exports::wasi::sockets as ours;
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, OutputStream};
use wasi::sockets as host;

struct Grant;

export!(Grant);

thread_local! {
    static GRANTED: OnceCell<Vec<SocketAddr>> = const { OnceCell::new() };
}

/// Whether `address` is granted. The policy is read once; a line that does not parse
/// grants nothing.
fn granted(address: SocketAddr) -> bool {
    GRANTED.with(|granted| {
        granted
            .get_or_init(|| {
                sendbox::grant::policy::allowed()
                    .lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect()
            })
            .contains(&address)
    })
}

type Result<T> = std::result::Result<T, ours::network::ErrorCode>;

const DENIED: ours::network::ErrorCode = ours::network::ErrorCode::AccessDenied;

/// The grant's network handle: the host's, which only the grant uses.
pub struct Network(host::network::Network);

impl ours::network::GuestNetwork for Network {}

impl ours::network::Guest for Grant {
    type Network = Network;
}

impl ours::instance_network::Guest for Grant {
    fn instance_network() -> ours::network::Network {
        ours::network::Network::new(Network(host::instance_network::instance_network()))
    }
}

impl ours::tcp_create_socket::Guest for Grant {
    fn create_tcp_socket(family: ours::network::IpAddressFamily) -> Result<ours::tcp::TcpSocket> {
        let socket =
            host::tcp_create_socket::create_tcp_socket(host_family(family)).map_err(error_code)?;
        Ok(ours::tcp::TcpSocket::new(TcpSocket(socket)))
    }
}

/// A TCP socket: the host's, with every call that could reach elsewhere checked.
pub struct TcpSocket(host::tcp::TcpSocket);

impl ours::tcp::Guest for Grant {
    type TcpSocket = TcpSocket;
}

impl ours::tcp::GuestTcpSocket for TcpSocket {
    fn start_bind(
        &self,
        network: ours::network::NetworkBorrow<'_>,
        local_address: ours::network::IpSocketAddress,
    ) -> Result<()> {
        // Only what a connect may need: any local address, a port the host picks.
        let local = socket_addr(local_address);
        if !local.ip().is_unspecified() || local.port() != 0 {
            return Err(DENIED);
        }
        let network = &network.get::<Network>().0;
        self.0
            .start_bind(network, host_socket_addr(local))
            .map_err(error_code)
    }

    fn finish_bind(&self) -> Result<()> {
        self.0.finish_bind().map_err(error_code)
    }

    fn start_connect(
        &self,
        network: ours::network::NetworkBorrow<'_>,
        remote_address: ours::network::IpSocketAddress,
    ) -> Result<()> {
        let remote = socket_addr(remote_address);
        if !granted(remote) {
            return Err(DENIED);
        }
        let network = &network.get::<Network>().0;
        self.0
            .start_connect(network, host_socket_addr(remote))
            .map_err(error_code)
    }

    fn finish_connect(&self) -> Result<(InputStream, OutputStream)> {
        self.0.finish_connect().map_err(error_code)
    }

    fn start_listen(&self) -> Result<()> {
        Err(DENIED)
    }

    fn finish_listen(&self) -> Result<()> {
        Err(ours::network::ErrorCode::NotInProgress)
    }

    fn accept(&self) -> Result<(ours::tcp::TcpSocket, InputStream, OutputStream)> {
        Err(ours::network::ErrorCode::InvalidState)
    }

    fn local_address(&self) -> Result<ours::network::IpSocketAddress> {
        self.0
            .local_address()
            .map(our_socket_addr)
            .map_err(error_code)
    }

    fn remote_address(&self) -> Result<ours::network::IpSocketAddress> {
        self.0
            .remote_address()
            .map(our_socket_addr)
            .map_err(error_code)
    }

    fn is_listening(&self) -> bool {
        false
    }

    fn address_family(&self) -> ours::network::IpAddressFamily {
        our_family(self.0.address_family())
    }

    fn set_listen_backlog_size(&self, _value: u64) -> Result<()> {
        Err(DENIED)
    }

    fn keep_alive_enabled(&self) -> Result<bool> {
        self.0.keep_alive_enabled().map_err(error_code)
    }

    fn set_keep_alive_enabled(&self, value: bool) -> Result<()> {
        self.0.set_keep_alive_enabled(value).map_err(error_code)
    }

    fn keep_alive_idle_time(&self) -> Result<u64> {
        self.0.keep_alive_idle_time().map_err(error_code)
    }

    fn set_keep_alive_idle_time(&self, value: u64) -> Result<()> {
        self.0.set_keep_alive_idle_time(value).map_err(error_code)
    }

    fn keep_alive_interval(&self) -> Result<u64> {
        self.0.keep_alive_interval().map_err(error_code)
    }

    fn set_keep_alive_interval(&self, value: u64) -> Result<()> {
        self.0.set_keep_alive_interval(value).map_err(error_code)
    }

    fn keep_alive_count(&self) -> Result<u32> {
        self.0.keep_alive_count().map_err(error_code)
    }

    fn set_keep_alive_count(&self, value: u32) -> Result<()> {
        self.0.set_keep_alive_count(value).map_err(error_code)
    }

    fn hop_limit(&self) -> Result<u8> {
        self.0.hop_limit().map_err(error_code)
    }

    fn set_hop_limit(&self, value: u8) -> Result<()> {
        self.0.set_hop_limit(value).map_err(error_code)
    }

    fn receive_buffer_size(&self) -> Result<u64> {
        self.0.receive_buffer_size().map_err(error_code)
    }

    fn set_receive_buffer_size(&self, value: u64) -> Result<()> {
        self.0.set_receive_buffer_size(value).map_err(error_code)
    }

    fn send_buffer_size(&self) -> Result<u64> {
        self.0.send_buffer_size().map_err(error_code)
    }

    fn set_send_buffer_size(&self, value: u64) -> Result<()> {
        self.0.set_send_buffer_size(value).map_err(error_code)
    }

    fn subscribe(&self) -> Pollable {
        self.0.subscribe()
    }

    fn shutdown(&self, shutdown_type: ours::tcp::ShutdownType) -> Result<()> {
        let how = match shutdown_type {
            ours::tcp::ShutdownType::Receive => host::tcp::ShutdownType::Receive,
            ours::tcp::ShutdownType::Send => host::tcp::ShutdownType::Send,
            ours::tcp::ShutdownType::Both => host::tcp::ShutdownType::Both,
        };
        self.0.shutdown(how).map_err(error_code)
    }
}

/// No UDP socket, name lookup or datagram stream is ever made: the types have no values.
pub enum Never {}

impl ours::udp_create_socket::Guest for Grant {
    fn create_udp_socket(_family: ours::network::IpAddressFamily) -> Result<ours::udp::UdpSocket> {
        Err(DENIED)
    }
}

impl ours::udp::Guest for Grant {
    type UdpSocket = Never;
    type IncomingDatagramStream = Never;
    type OutgoingDatagramStream = Never;
}

impl ours::udp::GuestUdpSocket for Never {
    fn start_bind(
        &self,
        _: ours::network::NetworkBorrow<'_>,
        _: ours::network::IpSocketAddress,
    ) -> Result<()> {
        match *self {}
    }
    fn finish_bind(&self) -> Result<()> {
        match *self {}
    }
    fn stream(
        &self,
        _: Option<ours::network::IpSocketAddress>,
    ) -> Result<(
        ours::udp::IncomingDatagramStream,
        ours::udp::OutgoingDatagramStream,
    )> {
        match *self {}
    }
    fn local_address(&self) -> Result<ours::network::IpSocketAddress> {
        match *self {}
    }
    fn remote_address(&self) -> Result<ours::network::IpSocketAddress> {
        match *self {}
    }
    fn address_family(&self) -> ours::network::IpAddressFamily {
        match *self {}
    }
    fn unicast_hop_limit(&self) -> Result<u8> {
        match *self {}
    }
    fn set_unicast_hop_limit(&self, _: u8) -> Result<()> {
        match *self {}
    }
    fn receive_buffer_size(&self) -> Result<u64> {
        match *self {}
    }
    fn set_receive_buffer_size(&self, _: u64) -> Result<()> {
        match *self {}
    }
    fn send_buffer_size(&self) -> Result<u64> {
        match *self {}
    }
    fn set_send_buffer_size(&self, _: u64) -> Result<()> {
        match *self {}
    }
    fn subscribe(&self) -> Pollable {
        match *self {}
    }
}

impl ours::udp::GuestIncomingDatagramStream for Never {
    fn receive(&self, _: u64) -> Result<Vec<ours::udp::IncomingDatagram>> {
        match *self {}
    }
    fn subscribe(&self) -> Pollable {
        match *self {}
    }
}

impl ours::udp::GuestOutgoingDatagramStream for Never {
    fn check_send(&self) -> Result<u64> {
        match *self {}
    }
    fn send(&self, _: Vec<ours::udp::OutgoingDatagram>) -> Result<u64> {
        match *self {}
    }
    fn subscribe(&self) -> Pollable {
        match *self {}
    }
}

impl ours::ip_name_lookup::Guest for Grant {
    type ResolveAddressStream = Never;

    fn resolve_addresses(
        _network: ours::network::NetworkBorrow<'_>,
        _name: String,
    ) -> Result<ours::ip_name_lookup::ResolveAddressStream> {
        Err(DENIED)
    }
}

impl ours::ip_name_lookup::GuestResolveAddressStream for Never {
    fn resolve_next_address(&self) -> Result<Option<ours::network::IpAddress>> {
        match *self {}
    }
    fn subscribe(&self) -> Pollable {
        match *self {}
    }
}

fn socket_addr(address: ours::network::IpSocketAddress) -> SocketAddr {
    use ours::network::IpSocketAddress as A;
    match address {
        A::Ipv4(a) => {
            let (x, y, z, w) = a.address;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(x, y, z, w)), a.port)
        }
        A::Ipv6(a) => {
            let (s0, s1, s2, s3, s4, s5, s6, s7) = a.address;
            let ip = Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7);
            SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                a.port,
                a.flow_info,
                a.scope_id,
            ))
        }
    }
}

fn host_socket_addr(address: SocketAddr) -> host::network::IpSocketAddress {
    use host::network::{IpSocketAddress as A, Ipv4SocketAddress, Ipv6SocketAddress};
    match address {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            A::Ipv4(Ipv4SocketAddress {
                port: a.port(),
                address: (x, y, z, w),
            })
        }
        SocketAddr::V6(a) => {
            let [s0, s1, s2, s3, s4, s5, s6, s7] = a.ip().segments();
            A::Ipv6(Ipv6SocketAddress {
                port: a.port(),
                flow_info: a.flowinfo(),
                address: (s0, s1, s2, s3, s4, s5, s6, s7),
                scope_id: a.scope_id(),
            })
        }
    }
}

fn our_socket_addr(address: host::network::IpSocketAddress) -> ours::network::IpSocketAddress {
    use host::network::IpSocketAddress as H;
    use ours::network::{IpSocketAddress as A, Ipv4SocketAddress, Ipv6SocketAddress};
    match address {
        H::Ipv4(a) => A::Ipv4(Ipv4SocketAddress {
            port: a.port,
            address: a.address,
        }),
        H::Ipv6(a) => A::Ipv6(Ipv6SocketAddress {
            port: a.port,
            flow_info: a.flow_info,
            address: a.address,
            scope_id: a.scope_id,
        }),
    }
}

fn host_family(family: ours::network::IpAddressFamily) -> host::network::IpAddressFamily {
    match family {
        ours::network::IpAddressFamily::Ipv4 => host::network::IpAddressFamily::Ipv4,
        ours::network::IpAddressFamily::Ipv6 => host::network::IpAddressFamily::Ipv6,
    }
}

fn our_family(family: host::network::IpAddressFamily) -> ours::network::IpAddressFamily {
    match family {
        host::network::IpAddressFamily::Ipv4 => ours::network::IpAddressFamily::Ipv4,
        host::network::IpAddressFamily::Ipv6 => ours::network::IpAddressFamily::Ipv6,
    }
}

fn error_code(code: host::network::ErrorCode) -> ours::network::ErrorCode {
    use host::network::ErrorCode as H;
    use ours::network::ErrorCode as E;
    match code {
        H::Unknown => E::Unknown,
        H::AccessDenied => E::AccessDenied,
        H::NotSupported => E::NotSupported,
        H::InvalidArgument => E::InvalidArgument,
        H::OutOfMemory => E::OutOfMemory,
        H::Timeout => E::Timeout,
        H::ConcurrencyConflict => E::ConcurrencyConflict,
        H::NotInProgress => E::NotInProgress,
        H::WouldBlock => E::WouldBlock,
        H::InvalidState => E::InvalidState,
        H::NewSocketLimit => E::NewSocketLimit,
        H::AddressNotBindable => E::AddressNotBindable,
        H::AddressInUse => E::AddressInUse,
        H::RemoteUnreachable => E::RemoteUnreachable,
        H::ConnectionRefused => E::ConnectionRefused,
        H::ConnectionReset => E::ConnectionReset,
        H::ConnectionAborted => E::ConnectionAborted,
        H::DatagramTooLarge => E::DatagramTooLarge,
        H::NameUnresolvable => E::NameUnresolvable,
        H::TemporaryResolverFailure => E::TemporaryResolverFailure,
        H::PermanentResolverFailure => E::PermanentResolverFailure,
    }
}
