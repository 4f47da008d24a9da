//! The SFU's I/O shell: a media loop on its own thread owning the UDP sockets and the
//! [`Router`](crate::router::Router), and [`MediaServer`], the handle signaling uses to drive it.
//!
//! Signaling sends commands (join, publish offer, subscribe answer, candidates, mute, leave) and
//! receives [`MediaEvent`]s for each participant (subscribe offers, tracks published, connection
//! state). The loop never waits on signaling: commands arrive through an unbounded channel and
//! replies go back through oneshot channels.

mod media_loop;
mod sockets;
mod tcp;

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::router::{MediaEvent, Router, SubscribeOptions};
use crate::stats::Stats;
use samtal_protocol::{Candidate, PcKind, TrackDeclaration, TrackSource};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub(crate) enum Command {
    Join {
        room: String,
        participant: String,
        options: SubscribeOptions,
        events: mpsc::UnboundedSender<MediaEvent>,
        reply: oneshot::Sender<Result<()>>,
    },
    Publish {
        participant: String,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
        reply: oneshot::Sender<Result<String>>,
    },
    SubscribeAnswer {
        participant: String,
        sdp: String,
        reply: oneshot::Sender<Result<()>>,
    },
    Candidate {
        participant: String,
        pc: PcKind,
        candidate: Candidate,
    },
    Mute {
        participant: String,
        source: TrackSource,
        muted: bool,
    },
    VideoTile {
        participant: String,
        track_id: String,
        width: u32,
        height: u32,
    },
    OptOut {
        participant: String,
        opted_out: bool,
    },
    Leave {
        participant: String,
        reply: Option<oneshot::Sender<()>>,
    },
    Shutdown,
}

/// Handle to the media loop. Cheap to clone; the loop stops when [`MediaServer::shutdown`] is called.
#[derive(Clone)]
pub struct MediaServer {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Stats>,
    local_addrs: Arc<Vec<SocketAddr>>,
    tcp_addrs: Arc<Vec<SocketAddr>>,
    max_media_sections: usize,
}

impl MediaServer {
    /// Binds the media sockets and starts the media loop on its own thread.
    pub fn start(config: &MediaConfig) -> Result<Self> {
        let (sockets, listeners) = sockets::bind(config)?;
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local).collect();
        let tcp_addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local).collect();
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let router = Router::new(
            config,
            &local_addrs,
            &tcp_addrs,
            stats.clone(),
            std::time::Instant::now(),
        )?;
        let admission = tcp::Admission::new(
            config.max_tcp_connections,
            config.max_tcp_connections_per_ip,
            stats.clone(),
        );
        let media_loop = media_loop::MediaLoop::new(sockets, listeners, admission, router, stats.clone());
        std::thread::Builder::new()
            .name("samtal-media".into())
            .spawn(move || media_loop.run(rx))
            .map_err(|e| Error::Config(format!("cannot start the media thread: {e}")))?;
        tracing::info!(udp = ?local_addrs, tcp = ?tcp_addrs, "media server listening");
        Ok(Self {
            commands: tx,
            stats,
            local_addrs: Arc::new(local_addrs),
            tcp_addrs: Arc::new(tcp_addrs),
            max_media_sections: config.max_media_sections,
        })
    }

    /// The UDP addresses peers send media to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The ICE-TCP listeners' addresses (none with `ice_tcp` off).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).map_err(|_| Error::Stopped)
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Adds a participant to a room (created on first join). Its events arrive on `events`.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        options: SubscribeOptions,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<()> {
        self.call(|reply| Command::Join {
            room: room.to_owned(),
            participant: participant.to_owned(),
            options,
            events,
            reply,
        })
        .await
    }

    /// Applies the participant's publish offer; returns the answer SDP. An offer with more media
    /// sections than allowed is refused here, on the caller's task, and never reaches the media thread.
    pub async fn publish(&self, participant: &str, sdp: String, tracks: Vec<TrackDeclaration>) -> Result<String> {
        crate::router::check_offer_size(&sdp, self.max_media_sections, &self.stats)?;
        self.call(|reply| Command::Publish {
            participant: participant.to_owned(),
            sdp,
            tracks,
            reply,
        })
        .await
    }

    /// Applies the participant's answer to the last subscribe offer.
    pub async fn subscribe_answer(&self, participant: &str, sdp: String) -> Result<()> {
        self.call(|reply| Command::SubscribeAnswer {
            participant: participant.to_owned(),
            sdp,
            reply,
        })
        .await
    }

    pub fn add_candidate(&self, participant: &str, pc: PcKind, candidate: Candidate) -> Result<()> {
        self.send(Command::Candidate {
            participant: participant.to_owned(),
            pc,
            candidate,
        })
    }

    /// Stops (or resumes) forwarding the participant's tracks of this source.
    pub fn set_muted(&self, participant: &str, source: TrackSource, muted: bool) -> Result<()> {
        self.send(Command::Mute {
            participant: participant.to_owned(),
            source,
            muted,
        })
    }

    /// How the participant shows one received video track (its tile's size; 0 × 0: not shown).
    pub fn set_video_tile(&self, participant: &str, track_id: &str, width: u32, height: u32) -> Result<()> {
        self.send(Command::VideoTile {
            participant: participant.to_owned(),
            track_id: track_id.to_owned(),
            width,
            height,
        })
    }

    /// The participant opted out of transcription (or back in): its tracks are withheld from
    /// subscribers that joined with [`SubscribeOptions::withhold_opted_out`].
    pub fn set_transcription_opt_out(&self, participant: &str, opted_out: bool) -> Result<()> {
        self.send(Command::OptOut {
            participant: participant.to_owned(),
            opted_out,
        })
    }

    /// Removes the participant, closes its connections and unpublishes its tracks. Waits until done.
    pub async fn leave(&self, participant: &str) {
        let (tx, rx) = oneshot::channel();
        if self
            .send(Command::Leave {
                participant: participant.to_owned(),
                reply: Some(tx),
            })
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Like [`leave`](Self::leave) without waiting (for use in `Drop`).
    pub fn leave_now(&self, participant: &str) {
        let _ = self.send(Command::Leave {
            participant: participant.to_owned(),
            reply: None,
        });
    }

    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}
