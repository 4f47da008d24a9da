//! Binding the media sockets: one UDP socket per local address, all on the configured port, shared by
//! every peer connection. Knowing which socket a datagram came in on tells the local address the
//! ICE agent must see.

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use std::net::{IpAddr, SocketAddr, UdpSocket};

pub(crate) struct BoundSocket {
    pub local: SocketAddr,
    pub socket: UdpSocket,
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

pub(crate) fn bind(config: &MediaConfig) -> Result<Vec<BoundSocket>> {
    addresses(config)?
        .into_iter()
        .map(|ip| {
            let addr = SocketAddr::new(ip, config.udp_port);
            let socket = UdpSocket::bind(addr).map_err(|source| Error::Bind { addr, source })?;
            socket
                .set_nonblocking(true)
                .map_err(|source| Error::Bind { addr, source })?;
            let local = socket.local_addr().map_err(|source| Error::Bind { addr, source })?;
            Ok(BoundSocket { local, socket })
        })
        .collect()
}
