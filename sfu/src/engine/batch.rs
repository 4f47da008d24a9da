//! Sending many datagrams with few system calls: each socket's outgoing datagrams are queued while
//! the router is drained and go out with `sendmmsg(2)`, up to [`SEND_BATCH`] per call, whatever
//! their destinations (an SFU's datagrams mostly go to different peers, so UDP GSO, which needs one
//! destination, does not fit).

use bytes::BytesMut;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams one `sendmmsg` call takes at most.
pub(crate) const SEND_BATCH: usize = 64;

/// Datagrams waiting for their socket.
#[derive(Default)]
pub(crate) struct Outbox {
    queued: Vec<(SocketAddr, BytesMut)>,
}

/// What one flush of an outbox did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub sent: usize,
    pub failed: usize,
}

impl Outbox {
    /// Queues a datagram; true when the batch is full and should be flushed now.
    pub fn push(&mut self, to: SocketAddr, data: BytesMut) -> bool {
        self.queued.push((to, data));
        self.queued.len() >= SEND_BATCH
    }

    /// Sends what is queued on `socket`. A datagram the kernel refuses (an unreachable address) is
    /// skipped and the rest still go; when the socket's buffer is full the rest are dropped, as a
    /// congested link would drop them.
    pub fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        let mut done = Flushed::default();
        let mut at = 0;
        while at < self.queued.len() {
            match send_some(socket, &self.queued[at..]) {
                Ok(0) => {
                    done.failed += self.queued.len() - at;
                    break;
                }
                Ok(n) => {
                    done.sent += n;
                    at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    done.failed += self.queued.len() - at;
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.queued[at].0, "media send failed: {e}");
                    done.failed += 1;
                    at += 1;
                }
            }
        }
        self.queued.clear();
        done
    }
}

/// One `sendmmsg` of the first [`SEND_BATCH`] of `datagrams`: how many the kernel took.
fn send_some(socket: &UdpSocket, datagrams: &[(SocketAddr, BytesMut)]) -> io::Result<usize> {
    let datagrams = &datagrams[..datagrams.len().min(SEND_BATCH)];
    let slices: Vec<[IoSlice<'_>; 1]> = datagrams.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = datagrams
        .iter()
        .map(|&(to, _)| Some(SockaddrStorage::from(to)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(datagrams.len(), None);
    let no_control: [ControlMessage<'_>; 0] = [];
    socket.try_io(Interest::WRITABLE, || {
        sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addresses,
            no_control,
            MsgFlags::empty(),
        )
        .map(|sent| sent.count())
        .map_err(io::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_reaches_every_destination_and_a_refused_datagram_does_not_stop_it() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sender.writable().await.unwrap();
        let receivers = [(); 2].map(|()| {
            let r = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            r.set_nonblocking(true).unwrap();
            r
        });
        let mut outbox = Outbox::default();
        let total = SEND_BATCH + 6;
        for i in 0..total {
            let to = receivers[i % 2].local_addr().unwrap();
            // The IPv4 broadcast address needs SO_BROADCAST: the kernel refuses that one.
            if i == 3 {
                outbox.push("255.255.255.255:9".parse().unwrap(), BytesMut::from(&b"refused"[..]));
            }
            let full = outbox.push(to, BytesMut::from(format!("datagram {i}").as_bytes()));
            assert_eq!(full, outbox.queued.len() >= SEND_BATCH);
        }
        assert_eq!(outbox.flush(&sender), Flushed { sent: total, failed: 1 });
        assert!(outbox.queued.is_empty());
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for (r, receiver) in receivers.iter().enumerate() {
            while let Ok(n) = receiver.recv(&mut buf) {
                got.push((r, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        got.sort_by_key(|(_, text)| text[9..].parse::<usize>().unwrap());
        let expected: Vec<(usize, String)> = (0..total).map(|i| (i % 2, format!("datagram {i}"))).collect();
        assert_eq!(got, expected, "each datagram once, at its own destination, in order");
    }
}
