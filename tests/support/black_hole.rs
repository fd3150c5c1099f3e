//! A black-holed address: connects to it neither succeed nor fail, as with a host that
//! drops packets. It is a listener on loopback whose backlog (0) is already full with one
//! connection that is never accepted, so the kernel drops every further SYN.

use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

pub struct BlackHole {
    _listener: Socket,
    _filler: TcpStream,
    pub address: SocketAddr,
}

impl BlackHole {
    /// A black hole at `address` (port 0 picks a free one).
    pub fn at(address: SocketAddr) -> BlackHole {
        let listener = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .expect("a socket");
        listener.bind(&address.into()).expect("bind the black hole");
        listener.listen(0).expect("listen");
        let address = listener
            .local_addr()
            .expect("its address")
            .as_socket()
            .expect("an IP address");
        let filler = TcpStream::connect(address).expect("the connection that fills the backlog");
        BlackHole {
            _listener: listener,
            _filler: filler,
            address,
        }
    }
}
