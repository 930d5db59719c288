//! [`Links`] through rtnetlink: one request and its acknowledgement per change, on a blocking
//! socket, instead of an `ip` process per step.
//!
//! Why synchronous sockets: the network code is blocking (callers use `spawn_blocking`), and a
//! request/ack exchange is a send and one or two receives; an async runtime per call would cost
//! more than the call. Work inside a container's namespace happens on a short-lived thread that
//! `setns`es into it, so no other thread ever changes namespace.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::error::{NetworkError, Result};
use super::links::{Links, Veth};

/// [`Links`] through rtnetlink sockets.
#[derive(Debug, Default, Clone, Copy)]
pub struct Netlink;

impl Links for Netlink {
    fn exists(&self, name: &str) -> Result<bool> {
        let mut socket = RouteSocket::open()?;
        Ok(socket.index_of(name)?.is_some())
    }

    fn add_bridge(&self, name: &str) -> Result<()> {
        let mut link = named_link(name);
        link.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        RouteSocket::open()?
            .change(
                RouteNetlinkMessage::NewLink(link),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map_err(|e| failed(format!("adding bridge {name}"), e))
    }

    fn set_address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut socket = RouteSocket::open()?;
        let index = socket.require_index(name)?;
        socket.replace_address(index, address, prefix)
    }

    fn set_up(&self, name: &str) -> Result<()> {
        RouteSocket::open()?.set_up(name)
    }

    fn add_veth(
        &self,
        host: &str,
        bridge: &str,
        peer: &str,
        netns: &Path,
        veth: &Veth,
    ) -> Result<()> {
        let namespace = open_netns(netns)?;
        let mut socket = RouteSocket::open()?;
        let bridge_index = socket.require_index(bridge)?;
        // One request: the pair, the peer moved into the namespace, the host end on the
        // bridge and up (the kernel applies IFLA_MASTER and the flags after creating the link).
        let mut peer_link = named_link(peer);
        peer_link
            .attributes
            .push(LinkAttribute::NetNsFd(namespace.as_raw_fd()));
        peer_link
            .attributes
            .push(LinkAttribute::Address(veth.mac.to_vec()));
        let mut link = named_link(host);
        if let Some(mtu) = veth.mtu {
            peer_link.attributes.push(LinkAttribute::Mtu(mtu));
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        link.attributes
            .push(LinkAttribute::Controller(bridge_index));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_link))),
        ]));
        socket
            .change(
                RouteNetlinkMessage::NewLink(link),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map_err(|e| failed(format!("adding veth {host} with peer {peer}"), e))?;
        if veth.isolated {
            let mut port = named_link(host);
            port.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                    true,
                )])),
            ]));
            let isolated = socket
                .change(RouteNetlinkMessage::NewLink(port), 0)
                .map_err(|e| failed(format!("isolating bridge port {host}"), e));
            if let Err(e) = isolated {
                let _ = self.delete(host);
                return Err(e);
            }
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<()> {
        match RouteSocket::open()?.change(RouteNetlinkMessage::DelLink(named_link(name)), 0) {
            Ok(()) => Ok(()),
            Err(e) if is_no_device(&e) => Ok(()),
            Err(e) => Err(failed(format!("deleting link {name}"), e)),
        }
    }

    fn ports_of(&self, bridge: &str) -> Result<Vec<String>> {
        let mut socket = RouteSocket::open()?;
        let Some(index) = socket.index_of(bridge)? else {
            return Ok(Vec::new());
        };
        let links = socket
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(|e| failed("listing links".to_owned(), e))?;
        Ok(links
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .filter(|link| {
                link.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == index))
            })
            .filter_map(|link| {
                link.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                })
            })
            .collect())
    }

    fn configure_inside(
        &self,
        netns: &Path,
        interface: &str,
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<()> {
        let namespace = open_netns(netns)?;
        let interface = interface.to_owned();
        in_namespace(namespace, move || {
            let mut socket = RouteSocket::open()?;
            socket.set_up("lo")?;
            let index = socket.require_index(&interface)?;
            socket.replace_address(index, address, prefix)?;
            socket.set_up(&interface)?;
            socket.replace_default_route(index, gateway)
        })
    }
}

/// Runs `work` on a new thread that first joins the network namespace `namespace`; the thread
/// ends with the work, so the namespace change never leaks to another thread.
fn in_namespace<T: Send + 'static>(
    namespace: File,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::Builder::new()
        .name("netns".to_owned())
        .spawn(move || {
            // SAFETY: setns with an open namespace fd changes only this thread's namespace.
            if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
                return Err(failed(
                    "joining the network namespace".to_owned(),
                    io::Error::last_os_error(),
                ));
            }
            drop(namespace);
            work()
        })
        .map_err(|e| failed("starting the namespace thread".to_owned(), e))?
        .join()
        .unwrap_or_else(|_| {
            Err(failed(
                "configuring inside the namespace".to_owned(),
                io::Error::other("thread panicked"),
            ))
        })
}

fn open_netns(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| NetworkError::io("opening network namespace", path, e))
}

fn named_link(name: &str) -> LinkMessage {
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.to_owned()));
    link
}

fn failed(operation: String, source: io::Error) -> NetworkError {
    NetworkError::Netlink { operation, source }
}

fn is_no_device(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODEV)
}

/// A NETLINK_ROUTE socket in the namespace of the thread that opened it.
struct RouteSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl RouteSocket {
    fn open() -> Result<RouteSocket> {
        let open = || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            Ok(socket)
        };
        let socket = open().map_err(|e| failed("opening a netlink socket".to_owned(), e))?;
        Ok(RouteSocket {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// The index of link `name`, or `None` if there is no such link.
    fn index_of(&mut self, name: &str) -> Result<Option<u32>> {
        match self.request(RouteNetlinkMessage::GetLink(named_link(name)), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(failed(format!("looking up link {name}"), e)),
        }
    }

    fn require_index(&mut self, name: &str) -> Result<u32> {
        self.index_of(name)?.ok_or_else(|| {
            failed(
                format!("looking up link {name}"),
                io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    fn set_up(&mut self, name: &str) -> Result<()> {
        let mut link = named_link(name);
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::NewLink(link), 0)
            .map_err(|e| failed(format!("setting {name} up"), e))
    }

    /// Like `ip addr replace address/prefix dev <index>`.
    fn replace_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message
            .attributes
            .push(AddressAttribute::Local(IpAddr::V4(address)));
        message
            .attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        self.change(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(|e| failed(format!("setting address {address}/{prefix}"), e))
    }

    /// Like `ip route replace default via <gateway> dev <index>`.
    fn replace_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = RouteHeader::RT_TABLE_MAIN;
        route.header.protocol = RouteProtocol::Boot;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        route.attributes.push(RouteAttribute::Oif(index));
        self.change(
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(|e| failed(format!("adding the default route via {gateway}"), e))
    }

    /// Sends a change and waits for its acknowledgement.
    fn change(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(message, flags).map(drop)
    }

    /// Sends a dump request and collects every reply until the end of the dump.
    fn dump(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends a request with an acknowledgement requested; returns the replies before the ack.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | flags)
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence += 1;
        let sequence = self.sequence;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = sequence;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;

        let mut replies = Vec::new();
        loop {
            self.buffer.clear();
            let size = self.socket.recv(&mut self.buffer, 0)?;
            if size > self.buffer.len() {
                return Err(io::Error::other("netlink reply larger than the buffer"));
            }
            let mut offset = 0;
            while offset < self.buffer.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buffer[offset..])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = reply.header.length as usize;
                let this_request = reply.header.sequence_number == sequence;
                match reply.payload {
                    _ if !this_request => {}
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(_) => Err(error.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += align(length);
            }
        }
    }
}

/// Netlink messages start at 4-byte boundaries.
fn align(length: usize) -> usize {
    (length + 3) & !3
}
