//! The media loop: one thread that owns the media sockets and a [`Router`], and moves datagrams,
//! ICE-TCP frames, commands and time between them. Everything it decides is the router's; this file
//! is only I/O: read datagrams and frames (a batch at a time), run commands from signaling, write
//! what the router wants sent, deliver its events to each participant's channel, and sleep until
//! its next deadline.
//!
//! It must never block on anything but its own sockets, commands and timers.

use super::Command;
use super::batch::Outbox;
use super::sockets::{BoundListener, BoundSocket};
use super::tcp::{self, Admission, TcpEvent};
use crate::router::{MediaEvent, Router};
use crate::stats::Stats;
use bytes::BytesMut;
use rtc::shared::TransportProtocol;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const UDP: TransportProtocol = TransportProtocol::UDP;

/// Datagrams read in one go before outputs are flushed.
const READ_BATCH: usize = 32;

pub(crate) struct MediaLoop {
    bound: Vec<BoundSocket>,
    listeners: Vec<BoundListener>,
    admission: Admission,
    locals: Vec<SocketAddr>,
    /// Each ICE-TCP connection's writer, by (our address, theirs).
    tcp: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<BytesMut>>,
    router: Router,
    stats: Arc<Stats>,
    /// Each participant's event channel, by participant id.
    events: HashMap<String, mpsc::UnboundedSender<MediaEvent>>,
    /// Datagrams waiting to be sent, one outbox per UDP socket.
    outboxes: Vec<Outbox>,
}

impl MediaLoop {
    pub fn new(
        bound: Vec<BoundSocket>,
        listeners: Vec<BoundListener>,
        admission: Admission,
        router: Router,
        stats: Arc<Stats>,
    ) -> Self {
        let locals: Vec<SocketAddr> = bound.iter().map(|b| b.local).collect();
        let outboxes = locals.iter().map(|_| Outbox::default()).collect();
        Self {
            bound,
            listeners,
            admission,
            locals,
            tcp: HashMap::new(),
            router,
            stats,
            events: HashMap::new(),
            outboxes,
        }
    }

    /// Runs until shutdown or until every `MediaServer` handle is gone.
    pub fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("media loop cannot start its runtime: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let sockets: Vec<UdpSocket> = match std::mem::take(&mut self.bound)
                .into_iter()
                .map(|b| UdpSocket::from_std(b.socket))
                .collect::<std::io::Result<_>>()
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("media sockets unusable: {e}");
                    return;
                }
            };
            // The sender stays here too, so the channel never closes while the loop runs.
            let (tcp_tx, mut tcp_events) = mpsc::channel::<TcpEvent>(1024);
            for l in std::mem::take(&mut self.listeners) {
                match tokio::net::TcpListener::from_std(l.listener) {
                    Ok(listener) => {
                        tokio::spawn(tcp::accept(listener, l.local, tcp_tx.clone(), self.admission.clone()));
                    }
                    Err(e) => tracing::error!(local = %l.local, "ICE-TCP listener unusable: {e}"),
                }
            }
            let mut buf = vec![0u8; 2048];
            loop {
                self.router.handle_timeout(Instant::now());
                self.flush(&sockets);
                let wake = self.router.poll_timeout();
                // Unbiased: a participant flooding commands cannot keep datagrams waiting, nor the reverse.
                tokio::select! {
                    command = commands.recv() => match command {
                        None | Some(Command::Shutdown) => break,
                        Some(command) => self.on_command(command, Instant::now()),
                    },
                    received = recv_any(&sockets, &mut buf) => {
                        if let Ok((sock, len, from)) = received {
                            let (read_at, forwarded) = (Instant::now(), self.router.forwarded());
                            self.router.handle_datagram(self.locals[sock], from, UDP, &buf[..len], read_at);
                            for _ in 1..READ_BATCH {
                                match try_recv_any(&sockets, &mut buf) {
                                    Some((sock, len, from)) => {
                                        self.router.handle_datagram(self.locals[sock], from, UDP, &buf[..len], Instant::now());
                                    }
                                    None => break,
                                }
                            }
                            self.flush(&sockets);
                            // In-server delay, socket read to socket write, over the packets forwarded.
                            let sent = self.router.forwarded() - forwarded;
                            Stats::add(&self.stats.forward_delay_nanos, sent * read_at.elapsed().as_nanos() as u64);
                        }
                    },
                    Some(event) = tcp_events.recv() => {
                        self.on_tcp(event);
                        for _ in 1..READ_BATCH {
                            match tcp_events.try_recv() {
                                Ok(event) => self.on_tcp(event),
                                Err(_) => break,
                            }
                        }
                    },
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
                self.flush(&sockets);
            }
            drop(tcp_tx);
            tracing::info!("media loop stopped");
        });
    }

    /// Writes what the router wants sent and delivers its events.
    fn flush(&mut self, sockets: &[UdpSocket]) {
        while let Some(out) = self.router.poll_transmit() {
            if out.protocol == TransportProtocol::TCP {
                // A full queue or a closed connection: lost, as a datagram would be.
                let sent = self.tcp.get(&(out.local, out.to)).map(|w| w.try_send(out.data));
                if !matches!(sent, Some(Ok(()))) {
                    Stats::add(&self.stats.errors, 1);
                }
                continue;
            }
            let sock = self.locals.iter().position(|a| *a == out.local).unwrap_or(0);
            if self.outboxes[sock].push(out.to, out.data) {
                self.send(sockets, sock);
            }
        }
        for sock in 0..sockets.len() {
            self.send(sockets, sock);
        }
        while let Some((participant, event)) = self.router.poll_event() {
            if let Some(events) = self.events.get(&participant) {
                let _ = events.send(event);
            }
        }
    }

    /// Sends what is queued for socket `sock`.
    fn send(&mut self, sockets: &[UdpSocket], sock: usize) {
        let done = self.outboxes[sock].flush(&sockets[sock]);
        if done.failed > 0 {
            Stats::add(&self.stats.errors, done.failed as u64);
        }
    }

    /// An ICE-TCP connection opened, sent a frame, or closed. A frame that reaches no peer
    /// connection (not ICE for one of ours, or for one that is gone) closes its connection.
    fn on_tcp(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened { local, peer, writer } => {
                self.tcp.insert((local, peer), writer);
            }
            TcpEvent::Frame { local, peer, data } => {
                if !self.tcp.contains_key(&(local, peer)) {
                    return;
                }
                let routed = self
                    .router
                    .handle_datagram(local, peer, TransportProtocol::TCP, &data, Instant::now());
                if !routed {
                    Stats::add(&self.stats.tcp_refused, 1);
                    tracing::debug!(%peer, "ICE-TCP frame for no peer connection: closing");
                    self.tcp.remove(&(local, peer));
                }
            }
            TcpEvent::Closed { local, peer } => {
                self.tcp.remove(&(local, peer));
            }
        }
    }

    fn on_command(&mut self, command: Command, now: Instant) {
        let router = &mut self.router;
        match command {
            Command::Join {
                room,
                participant,
                options,
                events,
                reply,
            } => {
                let result = router.join(&room, &participant, options, now);
                if result.is_ok() {
                    self.events.insert(participant, events);
                }
                let _ = reply.send(result);
            }
            Command::Publish {
                participant,
                sdp,
                tracks,
                reply,
            } => {
                let _ = reply.send(router.publish(&participant, sdp, tracks, now));
            }
            Command::SubscribeAnswer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(router.subscribe_answer(&participant, sdp, now));
            }
            Command::Candidate {
                participant,
                pc,
                candidate,
            } => router.add_candidate(&participant, pc, candidate, now),
            Command::Mute {
                participant,
                source,
                muted,
            } => router.set_muted(&participant, source, muted, now),
            Command::VideoTile {
                participant,
                track_id,
                width,
                height,
            } => router.set_video_tile(&participant, &track_id, width, height, now),
            Command::TrackActive {
                participant,
                track_id,
                active,
            } => router.set_track_active(&participant, &track_id, active, now),
            Command::OptOut { participant, opted_out } => router.set_transcription_opt_out(&participant, opted_out),
            Command::Leave { participant, reply } => {
                router.leave(&participant, now);
                self.events.remove(&participant);
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Shutdown => {}
        }
    }
}

/// Waits for a datagram on any of the sockets.
async fn recv_any(sockets: &[UdpSocket], buf: &mut [u8]) -> std::io::Result<(usize, usize, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for (i, socket) in sockets.iter().enumerate() {
            let mut read = tokio::io::ReadBuf::new(buf);
            match socket.poll_recv_from(cx, &mut read) {
                std::task::Poll::Ready(Ok(from)) => return std::task::Poll::Ready(Ok((i, read.filled().len(), from))),
                std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => {}
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// A datagram that is already waiting, without blocking.
fn try_recv_any(sockets: &[UdpSocket], buf: &mut [u8]) -> Option<(usize, usize, SocketAddr)> {
    sockets
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.try_recv_from(buf).ok().map(|(n, from)| (i, n, from)))
}
