//! The SFU's I/O shell: a media loop on its own thread owning the UDP sockets and the
//! [`Router`](crate::router::Router), and [`MediaServer`], the handle signaling uses to drive it.
//!
//! Signaling sends commands (join, publish offer, subscribe answer, candidates, mute, leave) and
//! receives [`MediaEvent`]s for each participant (subscribe offers, tracks published, connection
//! state). The loop never waits on signaling: commands arrive through an unbounded channel and
//! replies go back through oneshot channels.

mod batch;
mod media_loop;
mod placement;
mod sockets;
mod tcp;

use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::router::{MediaEvent, Router, SubscribeOptions};
use crate::stats::Stats;
use placement::Placement;
use samtal_protocol::{Candidate, PcKind, TrackDeclaration, TrackSource};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
    TrackActive {
        participant: String,
        track_id: String,
        active: bool,
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

/// Handle to the media loops. Cheap to clone; the loops stop when [`MediaServer::shutdown`] is called.
#[derive(Clone)]
pub struct MediaServer {
    /// Each media loop's commands.
    loops: Arc<Vec<mpsc::UnboundedSender<Command>>>,
    placement: Arc<Mutex<Placement>>,
    stats: Arc<Stats>,
    local_addrs: Arc<Vec<SocketAddr>>,
    tcp_addrs: Arc<Vec<SocketAddr>>,
    max_media_sections: usize,
}

impl MediaServer {
    /// Binds the media sockets and starts the media loops, each on its own thread with its own
    /// sockets (loop `i` on the configured ports plus `i`) and router.
    pub fn start(config: &MediaConfig) -> Result<Self> {
        let loops = config.loop_count();
        let stats = Arc::new(Stats::default());
        let admission = tcp::Admission::new(
            config.max_tcp_connections,
            config.max_tcp_connections_per_ip,
            stats.clone(),
        );
        let (mut senders, mut local_addrs, mut tcp_addrs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..loops {
            let (sockets, listeners) = sockets::bind(config, i)?;
            let udp: Vec<SocketAddr> = sockets.iter().map(|s| s.local).collect();
            let tcp: Vec<SocketAddr> = listeners.iter().map(|l| l.local).collect();
            let router = Router::new(config, &udp, &tcp, stats.clone(), std::time::Instant::now())?;
            let (tx, rx) = mpsc::unbounded_channel();
            let media_loop = media_loop::MediaLoop::new(sockets, listeners, admission.clone(), router, stats.clone());
            std::thread::Builder::new()
                .name(format!("samtal-media-{i}"))
                .spawn(move || media_loop.run(rx))
                .map_err(|e| Error::Config(format!("cannot start a media thread: {e}")))?;
            tracing::info!(media_loop = i, ?udp, ?tcp, "media loop listening");
            senders.push(tx);
            local_addrs.extend(udp);
            tcp_addrs.extend(tcp);
        }
        if loops > 1 {
            tracing::info!(
                loops,
                udp = ?local_addrs,
                tcp = ?tcp_addrs,
                "media uses a port per loop: the firewall must let every one of them through"
            );
        }
        Ok(Self {
            loops: Arc::new(senders),
            placement: Arc::new(Mutex::new(Placement::new(loops))),
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

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        // Nothing that panics holds the lock; a poisoned one still holds a consistent placement.
        self.placement.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a command to the loop the participant is on.
    fn send(&self, participant: &str, command: Command) -> Result<()> {
        let at = self
            .placement()
            .of(participant)
            .ok_or_else(|| Error::UnknownParticipant(participant.to_owned()))?;
        self.send_to(at, command)
    }

    fn send_to(&self, at: usize, command: Command) -> Result<()> {
        self.loops[at].send(command).map_err(|_| Error::Stopped)
    }

    async fn call<T>(&self, participant: &str, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(participant, make(tx))?;
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
        let (_, placed) = self.placement().join(room, participant);
        let joined = self
            .call(participant, |reply| Command::Join {
                room: room.to_owned(),
                participant: participant.to_owned(),
                options,
                events,
                reply,
            })
            .await;
        if joined.is_err() && placed {
            self.placement().leave(participant);
        }
        joined
    }

    /// Applies the participant's publish offer; returns the answer SDP. An offer with more media
    /// sections than allowed is refused here, on the caller's task, and never reaches the media thread.
    pub async fn publish(&self, participant: &str, sdp: String, tracks: Vec<TrackDeclaration>) -> Result<String> {
        crate::router::check_offer_size(&sdp, self.max_media_sections, &self.stats)?;
        self.call(participant, |reply| Command::Publish {
            participant: participant.to_owned(),
            sdp,
            tracks,
            reply,
        })
        .await
    }

    /// Applies the participant's answer to the last subscribe offer.
    pub async fn subscribe_answer(&self, participant: &str, sdp: String) -> Result<()> {
        self.call(participant, |reply| Command::SubscribeAnswer {
            participant: participant.to_owned(),
            sdp,
            reply,
        })
        .await
    }

    pub fn add_candidate(&self, participant: &str, pc: PcKind, candidate: Candidate) -> Result<()> {
        self.send(
            participant,
            Command::Candidate {
                participant: participant.to_owned(),
                pc,
                candidate,
            },
        )
    }

    /// Stops (or resumes) forwarding the participant's tracks of this source.
    pub fn set_muted(&self, participant: &str, source: TrackSource, muted: bool) -> Result<()> {
        self.send(
            participant,
            Command::Mute {
                participant: participant.to_owned(),
                source,
                muted,
            },
        )
    }

    /// How the participant shows one received video track (its tile's size; 0 × 0: not shown).
    pub fn set_video_tile(&self, participant: &str, track_id: &str, width: u32, height: u32) -> Result<()> {
        self.send(
            participant,
            Command::VideoTile {
                participant: participant.to_owned(),
                track_id: track_id.to_owned(),
                width,
                height,
            },
        )
    }

    /// Whether one of the participant's negotiated publish tracks carries media (`false`:
    /// unpublished until `true` again and its next packet).
    pub fn set_track_active(&self, participant: &str, track_id: &str, active: bool) -> Result<()> {
        self.send(
            participant,
            Command::TrackActive {
                participant: participant.to_owned(),
                track_id: track_id.to_owned(),
                active,
            },
        )
    }

    /// The participant opted out of transcription (or back in): its tracks are withheld from
    /// subscribers that joined with [`SubscribeOptions::withhold_opted_out`].
    pub fn set_transcription_opt_out(&self, participant: &str, opted_out: bool) -> Result<()> {
        self.send(
            participant,
            Command::OptOut {
                participant: participant.to_owned(),
                opted_out,
            },
        )
    }

    /// Removes the participant, closes its connections and unpublishes its tracks. Waits until done.
    pub async fn leave(&self, participant: &str) {
        let Some(at) = self.placement().leave(participant) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let command = Command::Leave {
            participant: participant.to_owned(),
            reply: Some(tx),
        };
        if self.send_to(at, command).is_ok() {
            let _ = rx.await;
        }
    }

    /// Like [`leave`](Self::leave) without waiting (for use in `Drop`).
    pub fn leave_now(&self, participant: &str) {
        if let Some(at) = self.placement().leave(participant) {
            let _ = self.send_to(
                at,
                Command::Leave {
                    participant: participant.to_owned(),
                    reply: None,
                },
            );
        }
    }

    /// Stops every media loop.
    pub fn shutdown(&self) {
        for at in 0..self.loops.len() {
            let _ = self.send_to(at, Command::Shutdown);
        }
    }

    /// The media loop the participant's room is placed on.
    pub fn loop_of(&self, participant: &str) -> Option<usize> {
        self.placement().of(participant)
    }

    /// How many media loops run.
    pub fn loops(&self) -> usize {
        self.loops.len()
    }
}
