//! One websocket connection: the protocol state machine of one participant.
//!
//! A session reads client messages, checks them (size, rate, shape, order, role), drives the media
//! server, relays media events, and cleans up on leave, close, heartbeat timeout, peer failure or
//! removal. A misbehaving client gets `error` messages and keeps its connection unless the error is
//! fatal; nothing it sends can stall another participant (its own task, bounded queues).

mod lobby;
mod meeting;
mod resume;
mod writer;

pub use resume::{Resume, Resumes};

use crate::meetings;
use crate::rooms::{JoinLimits, JoinRefused, OUTBOUND_QUEUE, Outbound};
use crate::server::AppState;
use crate::webhooks::{Event, EventKind};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use samtal_protocol::{
    ClientMessage, ErrorCode, LeaveReason, MediaState, ModerateAction, ParticipantInfo, PcKind, ResumeInfo, Role,
    ServerMessage, TrackInfo, TrackSource,
};
use samtal_sfu::rate::TokenBucket;
use samtal_sfu::{MediaEvent, PeerState, SubscribeOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// What a `join` asks for besides room, name and token.
struct JoinRequest {
    hidden: bool,
    matrix_room: Option<String>,
    opt_out: bool,
    /// The client resumes after a dropped websocket.
    resumable: bool,
}

struct Joined {
    room: String,
    id: String,
    name: String,
    role: Role,
    hidden: bool,
    /// The others were told this participant's media connection is interrupted.
    interrupted: bool,
}

/// A join that passed its checks, on its way into the room (through the lobby when the room knocks).
struct Entering {
    room: String,
    /// The participant id it will have.
    id: String,
    name: String,
    role: Role,
    identity: Option<String>,
    request: JoinRequest,
    /// A moderator let it in from the lobby.
    admitted: bool,
}

/// What a join's credential grants.
struct Admission {
    role: Role,
    /// The display name the token gives, if any.
    name: Option<String>,
    /// Who holds the token (its `sub`, else the token's hash): joins per identity are limited.
    identity: Option<String>,
}

/// Why the session ends.
#[derive(Debug, Clone, Copy)]
enum End {
    Leave(LeaveReason),
    /// A peer connection failed: the others see the participant as disconnected.
    MediaFailed,
    /// A fatal error was sent; the writer closes with its code.
    Fatal,
}

/// Close codes the server ends a websocket with (documented in docs/protocol.md).
pub mod close {
    pub const LEFT: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    /// After a fatal `error`; the reason is the error's code.
    pub const FATAL_ERROR: u16 = 1008;
    pub const MEDIA_FAILED: u16 = 1011;
    pub const REMOVED: u16 = 4001;
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
}

impl End {
    /// The close frame this end gets, when the session (not the writer) sends it.
    fn close(self, stopping: bool) -> Option<(u16, &'static str)> {
        match self {
            // The writer already closed after `removed` or the fatal error.
            End::Leave(LeaveReason::Removed) | End::Fatal => None,
            _ if stopping => Some((close::GOING_AWAY, "server stopping")),
            End::Leave(LeaveReason::Left | LeaveReason::Disconnected) => Some((close::LEFT, "left")),
            End::Leave(LeaveReason::Timeout) => Some((close::HEARTBEAT_TIMEOUT, "heartbeat timeout")),
            End::MediaFailed => Some((close::MEDIA_FAILED, "peer connection failed")),
        }
    }
}

struct Session {
    state: Arc<AppState>,
    out: mpsc::Sender<Outbound>,
    media_tx: mpsc::UnboundedSender<MediaEvent>,
    joined: Option<Joined>,
    /// Set when this connection is a transcription worker rather than a participant.
    worker: Option<String>,
    bucket: MessageRate,
    /// The client's address, for the audit trail.
    peer: SocketAddr,
    /// Counts this connection among the unjoined ones until it joins or registers.
    unjoined: Option<UnjoinedSlot>,
    /// Messages to this client dropped because it did not read them.
    dropped: AtomicU64,
    /// Where a new websocket for this session arrives (`resume::Resumes`).
    resume_tx: mpsc::Sender<Box<Resume>>,
    /// The session's resume token, once joined (when resumption is on).
    resume_token: Option<String>,
    /// Text messages received from the client in this session, over all its websockets.
    received: u64,
    /// How many chat messages it may send now.
    chat_rate: crate::chat::ChatRate,
    /// Set while the joiner waits in a knocking room's lobby.
    waiting: Option<lobby::Lobbied>,
}

/// One of the server's limited places for connections that have not joined yet.
struct UnjoinedSlot(Arc<AppState>);

impl UnjoinedSlot {
    /// Takes a place, or None when all `limits.max_unjoined_connections` are taken.
    fn take(state: &Arc<AppState>) -> Option<Self> {
        let before = state.metrics.unjoined.inc();
        if before >= state.config.limits.max_unjoined_connections as i64 {
            state.metrics.unjoined.dec();
            return None;
        }
        Some(Self(state.clone()))
    }
}

impl Drop for UnjoinedSlot {
    fn drop(&mut self) {
        self.0.metrics.unjoined.dec();
    }
}

/// Serves one websocket. In a cluster, when `routed` (the connection did not come from another
/// node), a first `join` whose room another node holds is carried there (`crate::cluster::proxy`).
pub async fn run(state: Arc<AppState>, socket: WebSocket, peer: SocketAddr, routed: bool) {
    let span = tracing::info_span!("session", %peer, room = tracing::field::Empty, participant = tracing::field::Empty);
    run_inner(state, socket, peer, routed).instrument(span).await
}

async fn run_inner(state: Arc<AppState>, mut socket: WebSocket, peer: SocketAddr, routed: bool) {
    let limits = &state.config.limits;
    let join_deadline = tokio::time::Instant::now() + Duration::from_secs(limits.join_timeout_secs);
    // Held from here, so that connections waiting to be routed count as waiting to join.
    let unjoined = UnjoinedSlot::take(&state);
    let mut first = None;
    if let Some(cluster) = state.cluster.as_ref().filter(|_| routed && unjoined.is_some()) {
        use crate::cluster::proxy::{First, carry, first_message};
        match first_message(cluster, &mut socket, join_deadline, limits.max_message_bytes).await {
            First::Here(text) => first = text,
            First::Gone => return,
            First::Elsewhere(node, text) => {
                drop(unjoined);
                let hard_limit = (limits.max_message_bytes * 4).max(1 << 20);
                return carry(socket, &node, "", Some(text), hard_limit).await;
            }
        }
    }
    let (ws_tx, ws_rx) = socket.split();
    let mut ws_rx = Some(ws_rx);
    let (out, out_rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let (resume_tx, mut resume_rx) = mpsc::channel::<Box<Resume>>(1);
    state.metrics.connections.inc();
    // Set by the writer when it delivered a moderator's removal, so the leave is reported as `removed`.
    let removed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (attach_tx, writer) = writer::spawn(ws_tx, out_rx, removed.clone());
    // What keeps a resumed websocket counted under the connection limit.
    let mut _resumed_slot = None;
    let heartbeat = Duration::from_secs(limits.heartbeat_timeout_secs);
    let mut session = Session {
        bucket: MessageRate::new(limits.max_messages_per_second),
        state: state.clone(),
        out,
        media_tx,
        joined: None,
        worker: None,
        peer,
        unjoined,
        dropped: AtomicU64::new(0),
        resume_tx,
        resume_token: None,
        received: 0,
        chat_rate: crate::chat::ChatRate::new(Instant::now()),
        waiting: None,
    };
    let mut deadline = tokio::time::Instant::now() + heartbeat;
    // Set while the websocket is gone and the session waits for its client to resume.
    let mut detached_until: Option<tokio::time::Instant> = None;
    let end = loop {
        if session.unjoined.is_none()
            && session.joined.is_none()
            && session.worker.is_none()
            && session.waiting.is_none()
        {
            tracing::info!("too many connections waiting to join; refused");
            session.error(
                ErrorCode::ServerBusy,
                "too many connections are waiting to join; try again later",
                None,
            );
            break End::Fatal;
        }
        // The message the cluster routing read already.
        if let Some(text) = first.take() {
            session.received += 1;
            if let Some(end) = session.on_frame(&text).await {
                break end;
            }
            continue;
        }
        tokio::select! {
            frame = next_frame(&mut ws_rx) => {
                let text = match frame {
                    // A client that closes with "normal" or "going away" means to go.
                    Some(Ok(Message::Close(Some(CloseFrame { code: 1000 | 1001, .. })))) => {
                        break End::Leave(LeaveReason::Disconnected)
                    }
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => match session.detach() {
                        Some(grace) => {
                            ws_rx = None;
                            detached_until = Some(tokio::time::Instant::now() + grace);
                            continue;
                        }
                        None => break End::Leave(LeaveReason::Disconnected),
                    },
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(bytes))) => {
                        // Counted and limited like text, so binary frames are no way around the limits.
                        if session.admit(bytes.len()) {
                            session.error(ErrorCode::BadMessage, "binary frames are not part of the protocol", None);
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue, // websocket ping/pong
                };
                deadline = tokio::time::Instant::now() + heartbeat;
                session.received += 1;
                if let Some(end) = session.on_frame(text.as_str()).await {
                    break end;
                }
            }
            _ = tokio::time::sleep_until(join_deadline), if session.unjoined.is_some() => {
                session.error(ErrorCode::JoinTimeout, format!("no join within {} s", state.config.limits.join_timeout_secs), None);
                break End::Fatal;
            }
            outcome = lobby::outcome(&mut session.waiting) => {
                if let Some(end) = session.on_lobby_outcome(outcome).await {
                    break end;
                }
            }
            event = media_rx.recv() => {
                if let Some(event) = event
                    && let Some(end) = session.on_media_event(event) {
                    break end;
                }
            }
            Some(resume) = resume_rx.recv() => {
                let peer = resume.peer;
                let resume = *resume;
                let (sink, stream) = resume.socket.split();
                let (reply, replied) = oneshot::channel();
                let attach = writer::Attach { sink, received: resume.received, reply };
                if attach_tx.send(attach).await.is_err() {
                    break End::Leave(LeaveReason::Disconnected);
                }
                match replied.await {
                    Ok(Ok(())) => {
                        tracing::info!(%peer, detached = detached_until.is_some(), "session resumed on a new websocket");
                        state.metrics.resumes.inc();
                        ws_rx = Some(stream);
                        _resumed_slot = resume.slot;
                        detached_until = None;
                        deadline = tokio::time::Instant::now() + heartbeat;
                        session.send(ServerMessage::Resumed { received: session.received });
                    }
                    Ok(Err(why)) => {
                        tracing::info!(%peer, "resume refused: {why}");
                        state.metrics.error(ErrorCode::ResumeFailed);
                        break End::Leave(LeaveReason::Disconnected);
                    }
                    Err(_) => break End::Leave(LeaveReason::Disconnected),
                }
            }
            _ = tokio::time::sleep_until(detached_until.unwrap_or(deadline)), if detached_until.is_some() => {
                tracing::info!("no resume within the grace period");
                break End::Leave(LeaveReason::Disconnected);
            }
            _ = tokio::time::sleep_until(deadline), if detached_until.is_none() => break End::Leave(LeaveReason::Timeout),
            _ = session.out.closed() => break End::Leave(LeaveReason::Disconnected),
        }
    };
    let end = if removed.load(std::sync::atomic::Ordering::Relaxed) {
        End::Leave(LeaveReason::Removed)
    } else {
        end
    };
    let stopping = state.stopping.load(std::sync::atomic::Ordering::SeqCst);
    session.finish(end).await;
    if let Some((code, reason)) = end.close(stopping) {
        let _ = session.out.try_send(Outbound::Close { code, reason });
    }
    drop(session);
    drop(attach_tx);
    let _ = writer.await;
    state.metrics.connections.dec();
}

/// A websocket that asks to resume a session (`/ws?resume=TOKEN&received=N`): handed to that
/// session, or refused with `resume_failed`.
pub async fn resume(state: Arc<AppState>, token: String, resume: Box<Resume>) {
    if let Err(resume) = state.resumes.hand_over(&token, resume) {
        tracing::info!(peer = %resume.peer, "resume refused: no such session");
        state.metrics.error(ErrorCode::ResumeFailed);
        let mut socket = resume.socket;
        resume::refuse(
            &mut socket,
            "no session to resume: it ended, or the token is wrong; join again",
        )
        .await;
    }
}

/// The next frame of the session's websocket; never, while it has none.
async fn next_frame(ws_rx: &mut Option<SplitStream<WebSocket>>) -> Option<Result<Message, axum::Error>> {
    match ws_rx {
        Some(rx) => rx.next().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// The websocket dropped: how long the session waits for its client to resume, if it does.
    fn detach(&self) -> Option<Duration> {
        let grace = self.state.config.limits.resume_grace_secs;
        let stopping = self.state.stopping.load(std::sync::atomic::Ordering::SeqCst);
        if self.joined.is_none() || self.resume_token.is_none() || grace == 0 || stopping {
            return None;
        }
        tracing::info!("websocket dropped; the session waits {grace} s for a resume");
        Some(Duration::from_secs(grace))
    }

    fn send(&self, message: ServerMessage) {
        if self.out.try_send(Outbound::Message(message)).is_err() {
            self.state.metrics.dropped.inc();
            // One line per session, not one per dropped message: a flooding client must not flood the log.
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "client is not reading; messages to it are dropped (counted in samtal_signaling_dropped_messages)"
                );
            }
        }
    }

    /// Size and rate limits of every frame, text or binary: false (with at most one error a second) if it is dropped.
    fn admit(&mut self, len: usize) -> bool {
        self.state.metrics.messages.inc();
        let max = self.state.config.limits.max_message_bytes;
        if !self.bucket.take(Instant::now()) {
            if self.bucket.should_warn() {
                self.error(
                    ErrorCode::RateLimited,
                    "too many messages; excess messages are dropped",
                    None,
                );
            }
            return false;
        }
        if len > max {
            self.error(
                ErrorCode::TooLarge,
                format!("message of {len} bytes exceeds the limit of {max}"),
                None,
            );
            return false;
        }
        true
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>, ref_type: Option<&str>) {
        let message = message.into();
        tracing::debug!(?code, %message, "protocol error");
        self.state.metrics.error(code);
        self.send(ServerMessage::error(code, message, ref_type));
    }

    async fn on_frame(&mut self, text: &str) -> Option<End> {
        if !self.admit(text.len()) {
            return None;
        }
        let message = match decode(text) {
            Ok(m) => m,
            Err((code, what)) => {
                self.error(code, what, None);
                return None;
            }
        };
        self.on_message(message).await
    }

    async fn on_message(&mut self, message: ClientMessage) -> Option<End> {
        let kind = message.type_name();
        match message {
            ClientMessage::Ping { nonce } => self.send(ServerMessage::Pong { nonce }),
            ClientMessage::Worker { token, capacity } => {
                if self.joined.is_some() || self.worker.is_some() || self.waiting.is_some() {
                    self.error(
                        ErrorCode::AlreadyJoined,
                        "this connection already joined or registered",
                        Some(kind),
                    );
                } else {
                    return self.on_worker(token, capacity).await;
                }
            }
            _ if self.worker.is_some() => self.error(
                ErrorCode::Forbidden,
                format!("a worker connection does not send {kind}"),
                Some(kind),
            ),
            ClientMessage::Join {
                room,
                name,
                token,
                hidden,
                protocol,
                matrix_room,
                transcription_opt_out,
                resumable,
            } => {
                if self.joined.is_some() || self.waiting.is_some() {
                    self.error(
                        ErrorCode::AlreadyJoined,
                        "this connection already joined a room",
                        Some(kind),
                    );
                } else if protocol.is_some_and(|v| v != samtal_protocol::PROTOCOL_VERSION) {
                    self.error(
                        ErrorCode::BadMessage,
                        format!(
                            "protocol version {} is not supported; this server speaks 1",
                            protocol.unwrap_or(0)
                        ),
                        Some(kind),
                    );
                } else {
                    let options = JoinRequest {
                        hidden,
                        matrix_room,
                        opt_out: transcription_opt_out,
                        resumable,
                    };
                    return self.on_join(room, name, token, options).await;
                }
            }
            ClientMessage::Leave if self.waiting.is_some() => return Some(End::Leave(LeaveReason::Left)),
            _ if self.waiting.is_some() => self.error(
                ErrorCode::NotJoined,
                format!("waiting in the lobby: {kind} comes after a moderator lets you in"),
                Some(kind),
            ),
            _ if self.joined.is_none() => {
                self.error(ErrorCode::NotJoined, format!("send join before {kind}"), Some(kind))
            }
            ClientMessage::Leave => return Some(End::Leave(LeaveReason::Left)),
            ClientMessage::Offer {
                pc: PcKind::Publish,
                sdp,
                tracks,
            } => {
                let joined = self.joined.as_ref().expect("checked");
                if joined.hidden {
                    self.error(ErrorCode::Forbidden, "hidden participants do not publish", Some(kind));
                    return None;
                }
                match self.state.media.publish(&joined.id, sdp, tracks).await {
                    Ok(sdp) => self.send(ServerMessage::Answer {
                        pc: PcKind::Publish,
                        sdp,
                    }),
                    Err(e @ samtal_sfu::Error::TooManyOffers { .. }) => {
                        self.error(ErrorCode::RateLimited, e.to_string(), Some(kind))
                    }
                    Err(e) => self.error(ErrorCode::NegotiationFailed, e.to_string(), Some(kind)),
                }
            }
            ClientMessage::Answer {
                pc: PcKind::Subscribe,
                sdp,
            } => {
                let id = &self.joined.as_ref().expect("checked").id;
                if let Err(e) = self.state.media.subscribe_answer(id, sdp).await {
                    self.error(ErrorCode::NegotiationFailed, e.to_string(), Some(kind));
                }
            }
            ClientMessage::Offer { .. } | ClientMessage::Answer { .. } => self.error(
                ErrorCode::BadMessage,
                "clients offer on the publish connection and answer on the subscribe connection",
                Some(kind),
            ),
            ClientMessage::Candidate { pc, candidate } => {
                let id = &self.joined.as_ref().expect("checked").id;
                let _ = self.state.media.add_candidate(id, pc, candidate);
            }
            ClientMessage::Mute { source, muted } => {
                let joined = self.joined.as_ref().expect("checked");
                self.apply_mute(&joined.room, &joined.id, source, muted);
            }
            ClientMessage::Moderate {
                action,
                participant,
                source,
            } => self.on_moderate(action, participant, source),
            ClientMessage::VideoTile {
                track_id,
                width,
                height,
            } => {
                let id = &self.joined.as_ref().expect("checked").id;
                let _ = self.state.media.set_video_tile(id, &track_id, width, height);
            }
            ClientMessage::TrackActive { track_id, active } => {
                let id = &self.joined.as_ref().expect("checked").id;
                let _ = self.state.media.set_track_active(id, &track_id, active);
            }
            ClientMessage::Transcription {
                enabled,
                language,
                prompt,
            } => self.on_transcription(enabled, language, prompt).await,
            ClientMessage::TranscriptionConsent { opt_out } => self.on_consent(opt_out).await,
            ClientMessage::Segment(segment) => self.on_segment(segment).await,
            ClientMessage::Chat { text } => self.on_chat(text).await,
            ClientMessage::Hand { raised } => {
                let joined = self.joined.as_ref().expect("checked");
                self.state.rooms.set_hand(&joined.room, &joined.id, raised, None);
            }
            ClientMessage::RoomSettings(settings) => self.on_room_settings(settings),
            ClientMessage::RoomAction { action } => self.on_room_action(action),
            ClientMessage::LobbyDecision { participant, admit } => self.on_lobby_decision(&participant, admit),
        }
        None
    }

    fn apply_mute(&self, room: &str, id: &str, source: TrackSource, muted: bool) {
        let _ = self.state.media.set_muted(id, source, muted);
        self.state.rooms.set_muted(room, id, source, muted);
        self.state.rooms.broadcast(
            room,
            id,
            &ServerMessage::MuteChanged {
                participant_id: id.to_owned(),
                source,
                muted,
            },
        );
    }

    fn on_moderate(&self, action: ModerateAction, target: String, source: Option<TrackSource>) {
        let joined = self.joined.as_ref().expect("checked");
        if joined.role != Role::Moderator {
            self.error(ErrorCode::Forbidden, "only moderators may moderate", Some("moderate"));
            return;
        }
        if target == joined.id || !self.state.rooms.contains(&joined.room, &target) {
            self.error(
                ErrorCode::UnknownParticipant,
                format!("no other participant {target} in this room"),
                Some("moderate"),
            );
            return;
        }
        tracing::info!(?action, %target, "moderation");
        match action {
            ModerateAction::Mute => {
                self.force_mute(&target, source.unwrap_or(TrackSource::Microphone));
            }
            ModerateAction::Remove => {
                // Through `Rooms::remove`, as the admin API does: a full queue does not lose it.
                self.state.rooms.remove(&joined.room, &target, joined.id.clone());
            }
            ModerateAction::LowerHand => {
                let by = Some(joined.id.clone());
                self.state.rooms.set_hand(&joined.room, &target, false, by);
            }
        }
    }

    /// A moderator (this session) mutes `target`'s `source`: the server stops forwarding it, everyone
    /// is told, and the target's client is asked to mute too.
    fn force_mute(&self, target: &str, source: TrackSource) {
        let joined = self.joined.as_ref().expect("checked");
        self.apply_mute(&joined.room, target, source, true);
        // The target's own session does not see broadcasts it is excluded from, so tell it directly.
        let changed = ServerMessage::MuteChanged {
            participant_id: target.to_owned(),
            source,
            muted: true,
        };
        self.state
            .rooms
            .send_to(&joined.room, target, Outbound::Message(changed));
        self.state.rooms.send_to(
            &joined.room,
            target,
            Outbound::Message(ServerMessage::MuteRequest {
                source,
                by: joined.id.clone(),
            }),
        );
    }

    /// Registers a transcription worker. Workers hear every meeting they are given and write the
    /// transcript, so this always needs a credential participants cannot get: the configured
    /// `transcription.worker_key`, or a service-role token. An open server opens meetings to
    /// participants, never this.
    async fn on_worker(&mut self, token: Option<String>, capacity: Option<u32>) -> Option<End> {
        if let Err(message) = self.authorize_worker(token.as_deref()).await {
            tracing::info!("worker registration refused: {message}");
            self.error(ErrorCode::Unauthorized, message, Some("worker"));
            return Some(End::Fatal);
        }
        let id = format!("w{:08x}", rand::random::<u32>());
        tracing::Span::current().record("participant", id.as_str());
        self.state
            .transcription
            .add_worker(&id, self.out.clone(), capacity.unwrap_or(4).clamp(1, 64) as usize);
        self.worker = Some(id);
        self.unjoined = None;
        self.broadcast_availability();
        None
    }

    async fn authorize_worker(&self, token: Option<&str>) -> Result<(), String> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or("a worker needs a credential: the server's transcription.worker_key or a service token")?;
        if let Some(key) = &self.state.config.transcription.worker_key
            && same_secret(token, key)
        {
            return Ok(());
        }
        if !self.state.verifier.enabled() {
            return Err("the worker key is wrong (or this server has no transcription.worker_key configured)".into());
        }
        match self.state.verifier.verify(token).await {
            Ok(claims) if claims.role == Role::Service => Ok(()),
            Ok(_) => Err("workers need the worker key or a token with role service".into()),
            Err(e) => Err(format!("neither the worker key nor a valid service token: {e}")),
        }
    }

    /// Tells every transcribed room whether a worker serves it (after workers come and go).
    fn broadcast_availability(&self) {
        for room in self.state.rooms.room_names() {
            let status = self.state.transcription_status(&room);
            self.state
                .rooms
                .broadcast(&room, "", &ServerMessage::TranscriptionStatus(status));
        }
    }

    async fn on_transcription(&self, enabled: bool, language: Option<String>, prompt: Option<String>) {
        let joined = self.joined.as_ref().expect("checked");
        // On an open server anyone may; with tokens, moderators.
        if self.state.verifier.enabled() && joined.role != Role::Moderator {
            self.error(
                ErrorCode::Forbidden,
                "only moderators may turn transcription on or off",
                Some("transcription"),
            );
            return;
        }
        let changed = if enabled {
            match meetings::start(&self.state, &joined.room, language, prompt).await {
                Ok(changed) => changed,
                Err(message) => {
                    self.error(ErrorCode::Internal, message, Some("transcription"));
                    return;
                }
            }
        } else {
            meetings::stop(&self.state, &joined.room).await
        };
        if changed {
            tracing::info!(enabled, "transcription switched");
        }
    }

    /// The participant opts out of transcription or back in: the media server withholds (or
    /// forwards again) their audio toward the transcription service, the meeting record notes it,
    /// and everyone is told.
    async fn on_consent(&self, opt_out: bool) {
        let joined = self.joined.as_ref().expect("checked");
        if !self.state.rooms.set_opt_out(&joined.room, &joined.id, opt_out) {
            return;
        }
        let _ = self.state.media.set_transcription_opt_out(&joined.id, opt_out);
        if let Some(meeting_id) = self.state.transcription.meeting_id(&joined.room) {
            let name = self.state.rooms.name(&joined.room, &joined.id).unwrap_or_default();
            meetings::record_opt_out(&self.state, &meeting_id, &joined.id, &name, opt_out).await;
        }
        tracing::info!(opt_out, "transcription consent changed");
        let message = ServerMessage::TranscriptionConsent {
            participant_id: joined.id.clone(),
            opt_out,
        };
        self.state.rooms.broadcast(&joined.room, "", &message);
    }

    fn refuse_segment(&self, utterance_id: String, code: ErrorCode, message: String, retry: bool) {
        tracing::debug!(%utterance_id, ?code, %message, "segment refused");
        self.state.metrics.error(code);
        self.send(ServerMessage::SegmentRefused {
            utterance_id,
            code,
            message,
            retry,
        });
    }

    async fn on_segment(&self, segment: samtal_protocol::Segment) {
        let joined = self.joined.as_ref().expect("checked");
        if !(joined.hidden && joined.role == Role::Service) {
            self.error(
                ErrorCode::Forbidden,
                "only the transcription service sends segments",
                Some("segment"),
            );
            return;
        }
        // Only text about audio the media server sent this service: a visible participant of this
        // room who published audio and has not opted out. Anything else would put words in
        // someone's mouth.
        let utterance = segment.utterance_id.clone();
        let name = match self.state.rooms.speaker(&joined.room, &segment.participant_id) {
            Some(speaker) if speaker.transcribable() => speaker.name,
            Some(_) => {
                let why = format!(
                    "participant {}'s audio is not sent to the transcription service",
                    segment.participant_id
                );
                self.refuse_segment(utterance, ErrorCode::Forbidden, why, false);
                return;
            }
            None => {
                // The speaker left before recognition finished (or never was here): nothing to
                // attribute it to, now or later.
                let why = format!("participant {} is not in the room", segment.participant_id);
                self.refuse_segment(utterance, ErrorCode::UnknownParticipant, why, false);
                return;
            }
        };
        if segment.is_final {
            let Some(meeting_id) = self.state.transcription.meeting_id(&joined.room) else {
                let why = "transcription is not running in this room".to_owned();
                self.refuse_segment(utterance, ErrorCode::Forbidden, why, false);
                return;
            };
            if let Err(e) = self.state.store.add_segment(&meeting_id, &segment, &name).await {
                // The worker keeps it and sends it again later.
                self.refuse_segment(utterance, ErrorCode::Internal, format!("not stored: {e}"), true);
                return;
            }
            self.send(ServerMessage::SegmentStored {
                utterance_id: utterance,
            });
        }
        self.state
            .rooms
            .broadcast(&joined.room, &joined.id, &ServerMessage::Caption { segment, name });
    }

    async fn on_join(
        &mut self,
        room: String,
        name: String,
        token: Option<String>,
        request: JoinRequest,
    ) -> Option<End> {
        let hidden = request.hidden;
        if !valid_room(&room) {
            self.error(
                ErrorCode::BadRoom,
                "room names are 1-64 characters of A-Z a-z 0-9 _ . -",
                Some("join"),
            );
            return Some(End::Fatal);
        }
        let name = match checked_display_name(&name) {
            Ok(name) => name,
            Err(message) => {
                self.error(ErrorCode::BadMessage, message, Some("join"));
                return None;
            }
        };
        let Admission {
            role,
            name: token_name,
            identity,
        } = match self.authorize(&room, token.as_deref()).await {
            Ok(admission) => admission,
            Err(message) => {
                self.error(ErrorCode::Unauthorized, message, Some("join"));
                return Some(End::Fatal);
            }
        };
        // A name from an identity provider is not refused, but made as harmless as a typed one.
        let name = token_name
            .map(|n| display_name(&n))
            .filter(|n| !n.is_empty())
            .unwrap_or(name);
        if hidden && role != Role::Service {
            self.error(
                ErrorCode::Forbidden,
                "only service accounts may join hidden",
                Some("join"),
            );
            return None;
        }
        let id = new_participant_id();
        let span = tracing::Span::current();
        span.record("room", room.as_str());
        span.record("participant", id.as_str());
        let entering = Entering {
            room,
            id,
            name,
            role,
            identity,
            request,
            admitted: false,
        };
        match self.knock(entering) {
            Ok(entering) => self.enter(entering).await,
            Err(end) => end,
        }
    }

    /// Joins the room: media, the room registry, then everyone is told.
    async fn enter(&mut self, entering: Entering) -> Option<End> {
        let Entering {
            room,
            id,
            name,
            role,
            identity,
            request:
                JoinRequest {
                    hidden,
                    matrix_room,
                    opt_out,
                    resumable,
                },
            admitted,
        } = entering;
        // Media first: its events queue up in this session until `joined` is out.
        let options = SubscribeOptions {
            audio: true,
            video: !hidden,
            withhold_opted_out: hidden,
        };
        if let Err(e) = self.state.media.join(&room, &id, options, self.media_tx.clone()).await {
            // Fatal: the connection closes after it.
            self.send(ServerMessage::Error {
                code: ErrorCode::Internal,
                message: e.to_string(),
                ref_type: Some("join".into()),
                fatal: true,
            });
            return Some(End::Fatal);
        }
        if opt_out {
            // Before any publish offer: not one packet of ours reaches the transcription service.
            let _ = self.state.media.set_transcription_opt_out(&id, true);
        }
        let info = ParticipantInfo {
            id: id.clone(),
            name,
            role,
            tracks: Vec::new(),
            transcription_opt_out: opt_out,
            hand_raised_at: None,
        };
        let mut ice_servers = self.state.config.ice_servers.clone();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ice_servers.extend(self.state.config.turn.credentials(&id, now_unix));
        let transcription = self.state.transcription_status(&room);
        let grace_secs = self.state.config.limits.resume_grace_secs;
        let resume = (resumable && grace_secs > 0).then(|| ResumeInfo {
            token: self.state.resumes.register(self.resume_tx.clone()),
            grace_secs,
        });
        self.resume_token = resume.as_ref().map(|r| r.token.clone());
        let welcome = |participants| ServerMessage::Joined {
            participant_id: id.clone(),
            room: room.clone(),
            role,
            ice_servers,
            participants,
            transcription,
            resume,
        };
        let limits = JoinLimits {
            max_participants: self.state.config.limits.max_participants,
            max_per_identity: self.state.config.limits.max_joins_per_identity,
            // A draining server keeps its meetings going but starts none.
            may_start: !self.state.draining.load(Ordering::SeqCst),
            admitted,
        };
        let joined = self
            .state
            .rooms
            .join(&room, info.clone(), hidden, identity, self.out.clone(), limits, welcome);
        if let Ok(first) = joined {
            let webhooks = &self.state.webhooks;
            if first {
                webhooks.emit(Event::new(EventKind::RoomStarted, &room));
            }
            webhooks.emit(
                Event::new(EventKind::ParticipantJoined, &room)
                    .participant(&id, &info.name, hidden)
                    .with("role", serde_json::to_value(role).unwrap_or_default()),
            );
        }
        if let Err(refused) = joined {
            self.state.media.leave(&id).await;
            if let Some(token) = self.resume_token.take() {
                self.state.resumes.remove(&token);
            }
            let (code, message) = match refused {
                JoinRefused::Full => (ErrorCode::RoomFull, format!("room {room} is full")),
                JoinRefused::Locked => (
                    ErrorCode::RoomLocked,
                    format!("room {room} is locked: only moderators may join"),
                ),
                JoinRefused::Draining => (
                    ErrorCode::Draining,
                    "this server is draining for maintenance and starts no new meetings; join again".to_owned(),
                ),
                JoinRefused::TooManySessions => (
                    ErrorCode::TooManySessions,
                    format!(
                        "this token is already in room {room} {} times; leave elsewhere first",
                        limits.max_per_identity
                    ),
                ),
            };
            self.error(code, message, Some("join"));
            return Some(End::Fatal);
        }
        self.unjoined = None;
        tracing::info!(?role, hidden, "joined");
        if let Some(matrix_room) = matrix_room {
            self.link_matrix_room(&room, &id, &info.name, role, &matrix_room).await;
        }
        if !hidden && let Some(meeting_id) = self.state.transcription.meeting_id(&room) {
            meetings::record_participant(&self.state, &meeting_id, &id, &info.name).await;
            if opt_out {
                meetings::record_opt_out(&self.state, &meeting_id, &id, &info.name, true).await;
            }
            meetings::record_matrix_link(&self.state, &meeting_id, &room).await;
        }
        let name = info.name.clone();
        if !hidden {
            self.state
                .rooms
                .broadcast(&room, &id, &ServerMessage::ParticipantJoined { participant: info });
        }
        self.joined = Some(Joined {
            room,
            id,
            name,
            role,
            hidden,
            interrupted: false,
        });
        None
    }

    /// What a join's credential grants. Errors are the message for the client.
    async fn authorize(&self, room: &str, token: Option<&str>) -> Result<Admission, String> {
        // A transcription job's own token (minted by this server) is accepted for its room.
        if let Some(token) = token
            && let Ok(claims) = self.state.job_verifier.verify(token).await
        {
            return if claims.allows_room(room) {
                Ok(Admission {
                    role: claims.role,
                    name: claims.name,
                    identity: None,
                })
            } else {
                Err(format!("the token is for room {}, not {room}", claims.room))
            };
        }
        if !self.state.verifier.enabled() {
            return Ok(Admission {
                role: Role::Participant,
                name: None,
                identity: None,
            });
        }
        let token = token.ok_or("this server requires a token")?;
        let claims = self.state.verifier.verify(token).await.map_err(|e| e.to_string())?;
        if !claims.allows_room(room) {
            return Err(format!("the token is for room {}, not {room}", claims.room));
        }
        let identity = claims
            .sub
            .clone()
            .map(|sub| format!("sub:{sub}"))
            .unwrap_or_else(|| format!("token:{}", crate::compliance::sha256_hex(token.as_bytes())));
        Ok(Admission {
            role: claims.role,
            name: claims.name,
            identity: Some(identity),
        })
    }

    /// Links the meeting to a Matrix room, where its notices, summary and transcript files go. Only a
    /// moderator may choose that; every attempt, granted or refused, is in the audit trail.
    async fn link_matrix_room(&self, room: &str, id: &str, name: &str, role: Role, matrix_room: &str) {
        let allowed = matches!(role, Role::Moderator | Role::Administrator);
        let valid = crate::delivery::valid_room_id(matrix_room);
        let linked = if allowed && valid {
            Some(self.state.rooms.link_matrix(room, matrix_room))
        } else {
            None
        };
        let detail =
            serde_json::json!({ "room": room, "matrix_room": matrix_room, "participant": id, "linked": linked });
        let event = crate::compliance::audit::Event {
            at: crate::store::now_ms(),
            actor: name.to_owned(),
            role: serde_json::to_value(role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            action: "matrix.link".into(),
            target: self.state.transcription.meeting_id(room).unwrap_or_default(),
            client: self.peer.ip().to_string(),
            outcome: if linked.is_some() { "ok" } else { "denied" }.into(),
            detail: crate::compliance::canonical_json(&detail),
        };
        // Refusals go through the refusal limiter: joins with a link cannot flood the trail.
        let written = if linked.is_some() {
            self.state.store.append_audit(event).await.map(drop)
        } else {
            self.state.store.append_refusal(event).await.map(drop)
        };
        if let Err(e) = written {
            tracing::error!("cannot audit a Matrix link: {e}");
        }
        if !allowed {
            tracing::info!(matrix_room, "Matrix link refused: not a moderator");
            self.error(
                ErrorCode::Forbidden,
                "only moderators may link the meeting to a Matrix room; joined without the link",
                Some("join"),
            );
        } else if !valid {
            self.error(
                ErrorCode::BadMessage,
                "matrix_room must be a Matrix room id such as !abc:example.org; joined without the link",
                Some("join"),
            );
        }
    }

    fn on_media_event(&mut self, event: MediaEvent) -> Option<End> {
        let joined = self.joined.as_ref()?;
        match event {
            MediaEvent::SubscribeOffer { sdp } => self.send(ServerMessage::Offer {
                pc: PcKind::Subscribe,
                sdp,
            }),
            MediaEvent::TrackPublished {
                track_id,
                kind,
                source,
                muted,
            } => {
                let track = TrackInfo {
                    track_id,
                    kind,
                    source,
                    muted,
                    stream_id: joined.id.clone(),
                };
                self.state
                    .rooms
                    .update_tracks(&joined.room, &joined.id, |tracks| tracks.push(track.clone()));
                let message = ServerMessage::TrackPublished {
                    participant_id: joined.id.clone(),
                    track,
                };
                self.state.rooms.broadcast(&joined.room, &joined.id, &message);
            }
            MediaEvent::TrackUnpublished { track_id } => {
                self.state.rooms.update_tracks(&joined.room, &joined.id, |tracks| {
                    tracks.retain(|t| t.track_id != track_id)
                });
                let message = ServerMessage::TrackUnpublished {
                    participant_id: joined.id.clone(),
                    track_id,
                };
                self.state.rooms.broadcast(&joined.room, &joined.id, &message);
            }
            MediaEvent::PeerState {
                pc,
                state: PeerState::Failed,
            } => {
                tracing::warn!(?pc, "peer connection failed; dropping participant");
                return Some(End::MediaFailed);
            }
            MediaEvent::PeerState {
                pc: PcKind::Publish,
                state: state @ (PeerState::Interrupted | PeerState::Connected),
            } => {
                // What the others receive from this participant stops or comes back: say so.
                let interrupted = state == PeerState::Interrupted;
                let joined = self.joined.as_mut()?;
                if joined.interrupted != interrupted && !joined.hidden {
                    joined.interrupted = interrupted;
                    let message = ServerMessage::MediaState {
                        participant_id: joined.id.clone(),
                        state: if interrupted {
                            MediaState::Interrupted
                        } else {
                            MediaState::Connected
                        },
                    };
                    self.state.rooms.broadcast(&joined.room, &joined.id, &message);
                }
            }
            MediaEvent::PeerState { .. } => {}
            MediaEvent::DominantSpeaker => self.state.rooms.announce_dominant(&joined.room, &joined.id),
            MediaEvent::VideoForwarded { participants } => self.send(ServerMessage::VideoForwarded {
                participant_ids: participants,
            }),
            MediaEvent::PublishLayers { track_id, active } => {
                self.send(ServerMessage::PublishLayers { track_id, active })
            }
        }
        None
    }

    async fn finish(&mut self, end: End) {
        if let Some(worker) = self.worker.take() {
            self.state.transcription.remove_worker(&worker);
            self.broadcast_availability();
        }
        if let Some(token) = self.resume_token.take() {
            self.state.resumes.remove(&token);
        }
        if let Some(lobbied) = self.waiting.take() {
            self.state.rooms.leave_lobby(lobbied.room(), lobbied.id());
            tracing::info!("left the lobby");
        }
        let Some(joined) = self.joined.take() else { return };
        self.state.media.leave(&joined.id).await;
        let left = self.state.rooms.leave(&joined.room, &joined.id);
        let reason = match end {
            End::Leave(reason) => reason,
            End::MediaFailed | End::Fatal => LeaveReason::Disconnected,
        };
        tracing::info!(?reason, "left");
        let stopping = self.state.stopping.load(std::sync::atomic::Ordering::SeqCst);
        // A server that stops ends no meetings: its participants come back when it is up again.
        if left.is_some() && !stopping {
            self.state.webhooks.emit(
                Event::new(EventKind::ParticipantLeft, &joined.room)
                    .participant(&joined.id, &joined.name, joined.hidden)
                    .with("reason", serde_json::to_value(reason).unwrap_or_default()),
            );
        }
        if left.is_some_and(|l| l.visible) {
            self.state.rooms.broadcast(
                &joined.room,
                &joined.id,
                &ServerMessage::ParticipantLeft {
                    participant_id: joined.id.clone(),
                    reason,
                },
            );
            if !stopping
                && self.state.rooms.visible(&joined.room).is_empty()
                && meetings::stop(&self.state, &joined.room).await
            {
                tracing::info!("last participant left: transcription stopped");
            }
        }
        // After the meeting's own end (transcription stopped, transcript sealed).
        if left.is_some_and(|l| l.last) && !stopping {
            self.state
                .webhooks
                .emit(Event::new(EventKind::RoomFinished, &joined.room));
            if let Some(cluster) = &self.state.cluster {
                cluster.release(&joined.room).await;
            }
        }
    }
}

/// The protocol's name of an error code (`room_full`), also the reason of the close frame after it.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A client's text frame as a message, or the error code and explanation it gets.
pub fn decode(text: &str) -> Result<ClientMessage, (ErrorCode, String)> {
    serde_json::from_str::<ClientMessage>(text).map_err(|e| classify_parse_error(text, &e))
}

/// Tells "not JSON / wrong shape" from "a type this server does not know".
fn classify_parse_error(text: &str, error: &serde_json::Error) -> (ErrorCode, String) {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => (ErrorCode::BadMessage, format!("not valid JSON: {error}")),
        Ok(serde_json::Value::Object(map)) => match map.get("type").and_then(|t| t.as_str()) {
            None => (ErrorCode::BadMessage, "a message needs a string field \"type\"".into()),
            Some(t) if !ClientMessage::is_known_type(t) => {
                (ErrorCode::UnknownType, format!("unknown message type {t:?}"))
            }
            Some(t) => (ErrorCode::BadMessage, format!("bad {t} message: {error}")),
        },
        Ok(_) => (ErrorCode::BadMessage, "a message must be a JSON object".into()),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (
        crate::compliance::sha256_hex(given.as_bytes()),
        crate::compliance::sha256_hex(expected.as_bytes()),
    );
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A display name as it may be shown and stored: control and bidirectional-override characters
/// (which could forge transcript lines or reorder text) become spaces, runs of spaces one, trimmed.
fn display_name(name: &str) -> String {
    crate::export::single_line(name)
}

/// A typed display name, or why it is refused: 1-64 characters, no control characters.
pub fn checked_display_name(name: &str) -> Result<String, &'static str> {
    let trimmed = name.trim();
    if trimmed.chars().any(crate::export::is_unsafe_char) {
        return Err("display name must not contain control characters (newlines, tabs, escapes, direction overrides)");
    }
    let name = display_name(trimmed);
    if name.is_empty() || name.chars().count() > 64 {
        return Err("display name must be 1-64 characters");
    }
    Ok(name)
}

/// Room names: 1-64 characters of `A-Z a-z 0-9 _ . -`.
pub fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len()) && room.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn new_participant_id() -> String {
    format!("p{:08x}", rand::random::<u32>())
}

/// Messages per second with a burst of twice the rate, and when the last warning went out.
struct MessageRate {
    bucket: TokenBucket,
    last_warning: Option<Instant>,
}

impl MessageRate {
    fn new(per_second: u32) -> Self {
        Self {
            bucket: TokenBucket::new(f64::from(per_second.max(1)), 2.0, Instant::now()),
            last_warning: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        self.bucket.allow(now)
    }

    /// One rate-limit error per second at most.
    fn should_warn(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.last_warning = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("weekly-sync_2.0"));
        assert!(!valid_room(""));
        assert!(!valid_room("a b"));
        assert!(!valid_room("../etc"));
        assert!(!valid_room(&"x".repeat(65)));
    }

    #[test]
    fn parse_errors_are_classified() {
        let err = |t: &str| classify_parse_error(t, &serde_json::from_str::<ClientMessage>(t).unwrap_err()).0;
        assert_eq!(err("{nope"), ErrorCode::BadMessage);
        assert_eq!(err("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(err(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(err(r#"{"type":"join","room":5}"#), ErrorCode::BadMessage);
        assert_eq!(err(r#"{"room":"x"}"#), ErrorCode::BadMessage);
        // Every message type of the protocol is known: a malformed one is a bad message, not an unknown type.
        for t in ["segment", "transcription", "transcription_consent", "join", "offer"] {
            assert_eq!(
                err(&format!(r#"{{"type":"{t}","nope":[]}}"#)),
                ErrorCode::BadMessage,
                "{t}"
            );
        }
    }

    #[test]
    fn display_names_cannot_forge_lines() {
        assert_eq!(checked_display_name("  Anna Berg "), Ok("Anna Berg".into()));
        assert!(checked_display_name("Anna\n[00:01] Boss: I resign").is_err());
        assert!(checked_display_name("Anna\u{202e}gnirts").is_err());
        assert!(checked_display_name("   ").is_err());
        assert!(checked_display_name(&"å".repeat(65)).is_err());
        assert_eq!(display_name("Anna\r\nBoss:\tx"), "Anna Boss: x");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("k3y-0123456789", "k3y-0123456789"));
        assert!(!same_secret("k3y-0123456788", "k3y-0123456789") && !same_secret("", "x"));
    }

    #[test]
    fn token_bucket_allows_bursts_then_limits() {
        let t0 = Instant::now();
        let mut b = MessageRate::new(10);
        let allowed = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(allowed, 20, "burst of twice the rate");
        assert!(b.take(t0 + Duration::from_millis(150)), "refills with time");
    }
}
