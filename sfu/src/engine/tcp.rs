//! ICE-TCP (RFC 6544, passive): accepting connections on the TCP listeners, reading their RFC 4571
//! frames into the media loop, and writing the loop's frames out. Each connection is a task on the
//! media loop's runtime; the loop sees [`TcpEvent`]s and owns each connection's writer, so it
//! closes a connection by dropping the writer.
//!
//! What one client can make the server hold is bounded: connections in all and per remote IP
//! address, a first frame within [`FIRST_FRAME`], no silence longer than [`IDLE`], frames of at
//! most [`MAX_FRAME`] bytes, [`WRITE_QUEUE`] frames waiting to be written. A slow reader loses
//! frames (as over UDP) instead of holding the loop; a fast sender waits for the loop, alone.

use crate::stats::Stats;
use bytes::BytesMut;
use rtc::shared::tcp_framing::{TcpFrameDecoder, frame_packet_to};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A new connection must send its first frame (a STUN binding request) within this.
pub(crate) const FIRST_FRAME: Duration = Duration::from_secs(5);
/// A connection that sends nothing for this long is closed (ICE consent checks come every few seconds).
pub(crate) const IDLE: Duration = Duration::from_secs(30);
/// Largest frame taken: what fits a UDP datagram the media loop reads.
pub(crate) const MAX_FRAME: usize = 2048;
/// Frames queued toward one connection; more are dropped.
pub(crate) const WRITE_QUEUE: usize = 128;

/// What the connections tell the media loop.
pub(crate) enum TcpEvent {
    /// A connection from `peer` to our `local` listener; frames to it go to `writer`.
    Opened {
        local: SocketAddr,
        peer: SocketAddr,
        writer: mpsc::Sender<BytesMut>,
    },
    Frame {
        local: SocketAddr,
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        local: SocketAddr,
        peer: SocketAddr,
    },
}

/// Connections open, in all and per remote address, shared by the listeners' accept tasks.
#[derive(Clone)]
pub(crate) struct Admission {
    max: usize,
    per_ip: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    stats: Arc<Stats>,
}

/// One admitted connection; it gives its place back when dropped.
pub(crate) struct Admitted {
    ip: IpAddr,
    admission: Admission,
}

impl Admission {
    pub fn new(max: usize, per_ip: usize, stats: Arc<Stats>) -> Self {
        Self {
            max,
            per_ip,
            open: Arc::default(),
            stats,
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.entry(ip).or_default();
        if total >= self.max || *mine >= self.per_ip {
            return None;
        }
        *mine += 1;
        Stats::add(&self.stats.tcp_connections, 1);
        Some(Admitted {
            ip,
            admission: self.clone(),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        Stats::sub(&self.admission.stats.tcp_connections, 1);
    }
}

/// Accepts connections on `listener` (our address `local`) until the media loop is gone.
pub(crate) async fn accept(
    listener: TcpListener,
    local: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    admission: Admission,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%local, "ICE-TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admitted) = admission.admit(peer.ip()) else {
            Stats::add(&admission.stats.tcp_refused, 1);
            tracing::debug!(%peer, "ICE-TCP connection over the limit, closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (writer, outgoing) = mpsc::channel(WRITE_QUEUE);
        if events.send(TcpEvent::Opened { local, peer, writer }).await.is_err() {
            return;
        }
        tokio::spawn(serve(stream, local, peer, events.clone(), outgoing, admitted));
    }
}

/// Moves one connection's frames in both directions until it closes, falls silent, misbehaves,
/// or the media loop drops its writer.
async fn serve(
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    mut outgoing: mpsc::Receiver<BytesMut>,
    admitted: Admitted,
) {
    let stats = admitted.admission.stats.clone();
    let (mut rd, mut wr) = stream.into_split();
    let mut decoder = TcpFrameDecoder::with_capacity(2 * MAX_FRAME);
    let mut buf = vec![0u8; 4096];
    // Reused for every frame written: no allocation per packet once it has grown.
    let mut out_frame = Vec::with_capacity(MAX_FRAME + 2);
    let mut deadline = Instant::now() + FIRST_FRAME;
    let mut framed = false;
    let why = 'conn: loop {
        tokio::select! {
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break 'conn "closed by the peer",
                    Ok(n) => n,
                    Err(_) => break 'conn "read failed",
                };
                decoder.extend_from_slice(&buf[..n]);
                while let Some(frame) = decoder.next_packet() {
                    if frame.len() > MAX_FRAME {
                        break 'conn "frame too large";
                    }
                    framed = true;
                    deadline = Instant::now() + IDLE;
                    if events.send(TcpEvent::Frame { local, peer, data: frame }).await.is_err() {
                        return;
                    }
                }
                if decoder.buffered_len() > 2 * MAX_FRAME {
                    break 'conn "frame too large";
                }
            }
            out = outgoing.recv() => match out {
                Some(data) => {
                    out_frame.resize(data.len() + 2, 0);
                    // Longer than a frame can say: nothing the router makes, dropped as over UDP.
                    let Some(n) = frame_packet_to(&data, &mut out_frame) else { continue };
                    if wr.write_all(&out_frame[..n]).await.is_err() {
                        break 'conn "write failed";
                    }
                }
                None => break 'conn "closed by the server",
            },
            _ = tokio::time::sleep_until(deadline) => {
                break 'conn if framed { "silent" } else { "no frame" };
            }
        }
    };
    if matches!(why, "frame too large" | "no frame") {
        Stats::add(&stats.tcp_refused, 1);
    }
    tracing::debug!(%peer, "ICE-TCP connection ends: {why}");
    drop(admitted);
    let _ = events.send(TcpEvent::Closed { local, peer }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_bounds_connections_in_all_and_per_address() {
        let stats = Arc::new(Stats::default());
        let admission = Admission::new(3, 2, stats.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).expect("first from a");
        let _second = admission.admit(a).expect("second from a");
        assert!(admission.admit(a).is_none(), "a third from one address");
        let _third = admission.admit(b).expect("b has room");
        assert!(admission.admit(b).is_none(), "three in all");
        assert_eq!(Stats::get(&stats.tcp_connections), 3);
        drop(first);
        assert_eq!(Stats::get(&stats.tcp_connections), 2);
        assert!(admission.admit(a).is_some(), "a closed connection gives its place back");
    }
}
