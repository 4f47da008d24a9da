//! Binding a media loop's sockets: one UDP socket per local address, all on the loop's port, shared
//! by every peer connection of the loop, and (ICE-TCP) one TCP listener per local address on the
//! loop's TCP port. Knowing which socket a packet came in on tells the local address the ICE agent
//! must see.

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

pub(crate) struct BoundSocket {
    pub local: SocketAddr,
    pub socket: UdpSocket,
}

pub(crate) struct BoundListener {
    pub local: SocketAddr,
    pub listener: TcpListener,
}

/// The addresses to bind: the configured ones, or every usable IPv4 interface address.
fn addresses(config: &MediaConfig) -> Result<Vec<IpAddr>> {
    if !config.ips.is_empty() {
        return Ok(config.ips.clone());
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map_err(|e| Error::Config(format!("cannot list network interfaces: {e}")))?
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(_) => false,
        })
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(Error::Config(
            "no usable IPv4 interface address found; set media.ips".into(),
        ));
    }
    Ok(ips)
}

/// Binds one socket per address with `bind_one`, non-blocking, and returns each with its address.
fn bind_each<T>(
    ips: &[IpAddr],
    port: u16,
    bind_one: impl Fn(SocketAddr) -> std::io::Result<T>,
    nonblocking: impl Fn(&T) -> std::io::Result<SocketAddr>,
) -> Result<Vec<(SocketAddr, T)>> {
    ips.iter()
        .map(|&ip| {
            let addr = SocketAddr::new(ip, port);
            let bound = bind_one(addr).map_err(|source| Error::Bind { addr, source })?;
            let local = nonblocking(&bound).map_err(|source| Error::Bind { addr, source })?;
            Ok((local, bound))
        })
        .collect()
}

/// The UDP sockets and, with ICE-TCP on, the TCP listeners of media loop `index`.
pub(crate) fn bind(config: &MediaConfig, index: usize) -> Result<(Vec<BoundSocket>, Vec<BoundListener>)> {
    let ips = addresses(config)?;
    let port = |base: u16| {
        MediaConfig::port_of(base, index)
            .ok_or_else(|| Error::Config(format!("media loop {index} needs port {base} + {index}, past 65535")))
    };
    let udp = bind_each(&ips, port(config.udp_port)?, UdpSocket::bind, |s| {
        s.set_nonblocking(true)?;
        s.local_addr()
    })?;
    let tcp = if config.ice_tcp {
        bind_each(&ips, port(config.tcp_port)?, TcpListener::bind, |l| {
            l.set_nonblocking(true)?;
            l.local_addr()
        })?
    } else {
        Vec::new()
    };
    Ok((
        udp.into_iter()
            .map(|(local, socket)| BoundSocket { local, socket })
            .collect(),
        tcp.into_iter()
            .map(|(local, listener)| BoundListener { local, listener })
            .collect(),
    ))
}
