//! Media plane configuration: which addresses and UDP port carry RTP for every peer.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where media flows. The peer connections of one media loop share one UDP port per local address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Media loops: threads that each own their sockets and forward the rooms placed on them
    /// (0: one per core). Loop `i` uses `udp_port + i` and `tcp_port + i`.
    pub loops: usize,
    /// UDP port of the first media loop, shared by its peers on every address in `ips` (0: an
    /// ephemeral port per loop, for tests).
    pub udp_port: u16,
    /// Local addresses to bind and announce as ICE host candidates. Empty: every non-link-local
    /// IPv4 address of the machine's interfaces, loopback included.
    pub ips: Vec<IpAddr>,
    /// Passive ICE-TCP (RFC 6544, RFC 4571 framing) on every address in `ips`, for networks that
    /// block UDP: offered as a candidate of lower priority than UDP.
    pub ice_tcp: bool,
    /// TCP port of the first media loop's ICE-TCP listeners on every address in `ips` (0: a free
    /// port per loop, for tests).
    pub tcp_port: u16,
    /// ICE-TCP connections held at once, and from one remote IP address; more are closed at once.
    pub max_tcp_connections: usize,
    pub max_tcp_connections_per_ip: usize,
    /// Addresses announced in addition to the bound ones, for a server behind 1:1 NAT
    /// (for example a cloud VM's public address). Packets to them must reach every loop's port here.
    pub public_ips: Vec<IpAddr>,
    /// A peer connection silent for 10 s is disconnected; after this many more seconds it has failed
    /// and the participant is dropped.
    pub disconnect_timeout_secs: u64,
    /// Media sections (`m=` lines) one publish offer may have; more are refused before parsing.
    pub max_media_sections: usize,
    /// Publish offers per second one participant may make, on average (bursts of four times this).
    pub offers_per_second: f64,
    /// Cameras each participant receives at most, following the speakers (last-N); 0: all of them.
    pub last_n: usize,
    /// Ask publishers to send their audio as RED (RFC 2198: each Opus frame also rides in the next
    /// packet, so a single loss is repaired at once) where their offer has it. Subscribers without
    /// RED receive plain Opus either way.
    pub opus_red: bool,
    /// Ask publishers for Opus DTX: while silent they send a packet every 400 ms instead of 50 a
    /// second.
    pub opus_dtx: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            loops: 0,
            udp_port: 10000,
            ips: Vec::new(),
            ice_tcp: true,
            tcp_port: 10000,
            max_tcp_connections: 4096,
            max_tcp_connections_per_ip: 256,
            public_ips: Vec::new(),
            disconnect_timeout_secs: 15,
            max_media_sections: 16,
            offers_per_second: 2.0,
            last_n: 20,
            opus_red: true,
            opus_dtx: true,
        }
    }
}

impl MediaConfig {
    /// The media loops to run: `loops`, or one per core.
    pub fn loop_count(&self) -> usize {
        match self.loops {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The port of loop `index` counted from `base` (0 stays 0: an ephemeral port).
    pub fn port_of(base: u16, index: usize) -> Option<u16> {
        match base {
            0 => Some(0),
            _ => u16::try_from(usize::from(base) + index).ok(),
        }
    }
}
