//! The Samtal signaling protocol in front of Janus's videoroom, enough of it for the load
//! generator's participants: `join`, a publish offer, subscribe offers and answers, `ping`.
//!
//! Each client websocket gets a Janus session. A Samtal room is a Janus room (created by its first
//! participant). A publish offer becomes a publisher handle's `joinandconfigure`; every feed
//! published in the room is subscribed to by every other participant's one subscriber handle
//! (`join` as subscriber for the first feeds, `subscribe` for later ones, one negotiation at a
//! time), whose offers reach the client as Samtal's server-initiated subscribe offers and whose
//! answers go back with `start`. Media flows between the clients and Janus directly; the gateway
//! carries signaling only.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use samtal_client::samtal_protocol::{ClientMessage, PcKind, Role, ServerMessage, TranscriptionStatus};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use super::api::{Session, jsep};

/// A published feed: Janus's feed id and the participant that published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Feed {
    id: u64,
    owner: u64,
}

/// A Samtal room as a Janus room and the feeds published in it.
struct Room {
    janus_room: u64,
    feeds: watch::Sender<Vec<Feed>>,
}

struct Shared {
    janus_url: String,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_room: AtomicU64,
    next_participant: AtomicU64,
}

/// The gateway: a websocket server on `bind` (port chosen by the system).
pub struct Gateway {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Listens on `bind` and bridges every client to the Janus at `janus_url`.
    pub async fn start(bind: IpAddr, janus_url: String) -> anyhow::Result<Gateway> {
        let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            janus_url,
            rooms: Mutex::default(),
            next_room: AtomicU64::new(1),
            next_participant: AtomicU64::new(1),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, shared).await {
                        warn!(error = %e, "gateway session ended");
                    }
                });
            }
        });
        Ok(Gateway { addr, task })
    }

    /// The URL the load generator's participants join at.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(ws: &mut WebSocketStream<TcpStream>, message: ServerMessage) -> anyhow::Result<()> {
    ws.send(Message::text(serde_json::to_string(&message)?)).await?;
    Ok(())
}

/// The next client message, `None` when the websocket closed.
async fn next_message(ws: &mut WebSocketStream<TcpStream>) -> Option<ClientMessage> {
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(text) => match serde_json::from_str(&text) {
                Ok(message) => return Some(message),
                Err(e) => debug!(error = %e, "gateway: unreadable client message"),
            },
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

impl Shared {
    /// The room named `name`, created in Janus by its first participant.
    async fn room(&self, session: &Session, handle: u64, name: &str) -> anyhow::Result<Arc<Room>> {
        let mut rooms = self.rooms.lock().await;
        if let Some(room) = rooms.get(name) {
            return Ok(Arc::clone(room));
        }
        let janus_room = self.next_room.fetch_add(1, Ordering::Relaxed);
        session
            .message(
                handle,
                json!({"request": "create", "room": janus_room, "publishers": 1000, "bitrate": 0,
                       "fir_freq": 0, "audiocodec": "opus", "videocodec": "vp8"}),
                None,
            )
            .await
            .context("creating the janus room")?;
        let room = Arc::new(Room {
            janus_room,
            feeds: watch::Sender::new(Vec::new()),
        });
        rooms.insert(name.to_owned(), Arc::clone(&room));
        Ok(room)
    }
}

/// One client's subscriber handle and what it has subscribed to.
struct Subscriptions {
    handle: Option<u64>,
    subscribed: HashSet<u64>,
    /// A subscribe offer is with the client, waiting for its answer.
    negotiating: bool,
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    let Some(ClientMessage::Join {
        room: room_name, name, ..
    }) = next_message(&mut ws).await
    else {
        bail!("the first message was not join");
    };
    let session = Session::open(&shared.janus_url).await?;
    let me = shared.next_participant.fetch_add(1, Ordering::Relaxed);
    let control = session.attach_videoroom().await?;
    let room = shared.room(&session, control, &room_name).await?;
    send(
        &mut ws,
        ServerMessage::Joined {
            participant_id: format!("janus-{me}"),
            room: room_name,
            role: Role::Participant,
            ice_servers: Vec::new(),
            participants: Vec::new(),
            transcription: TranscriptionStatus {
                enabled: false,
                language: None,
                meeting_id: None,
                available: false,
                chat_kept: false,
            },
            resume: None,
        },
    )
    .await?;
    let mut feeds = room.feeds.subscribe();
    feeds.mark_changed();
    let mut subs = Subscriptions {
        handle: None,
        subscribed: HashSet::new(),
        negotiating: false,
    };
    loop {
        tokio::select! {
            message = next_message(&mut ws) => {
                let Some(message) = message else { return Ok(()) };
                match message {
                    ClientMessage::Offer { pc: PcKind::Publish, sdp, .. } => {
                        let (handle, feed, answer) = publish(&session, &room, &name, &sdp).await?;
                        send(&mut ws, ServerMessage::Answer { pc: PcKind::Publish, sdp: answer }).await?;
                        // The others subscribe once the feed is live.
                        session.wait_webrtcup(handle).await?;
                        room.feeds.send_modify(|feeds| feeds.push(Feed { id: feed, owner: me }));
                    }
                    ClientMessage::Answer { pc: PcKind::Subscribe, sdp } => {
                        let handle = subs.handle.ok_or_else(|| anyhow!("subscribe answer before any offer"))?;
                        session.message(handle, json!({"request": "start"}), Some(jsep("answer", &sdp))).await?;
                        subs.negotiating = false;
                        // Feeds published meanwhile.
                        feeds.mark_changed();
                    }
                    ClientMessage::Ping { nonce } => send(&mut ws, ServerMessage::Pong { nonce }).await?,
                    ClientMessage::Leave => return Ok(()),
                    other => debug!(?other, "gateway: ignored"),
                }
            }
            changed = feeds.changed(), if !subs.negotiating => {
                if changed.is_err() {
                    return Ok(());
                }
                let new: Vec<u64> = feeds
                    .borrow_and_update()
                    .iter()
                    .filter(|f| f.owner != me && !subs.subscribed.contains(&f.id))
                    .map(|f| f.id)
                    .collect();
                if new.is_empty() {
                    continue;
                }
                let offer = subscribe(&session, &room, &mut subs, &new).await?;
                subs.negotiating = true;
                send(&mut ws, ServerMessage::Offer { pc: PcKind::Subscribe, sdp: offer }).await?;
            }
        }
    }
}

/// Publishes the client's offer through a publisher handle; returns the handle, the feed id and
/// Janus's answer SDP.
async fn publish(session: &Session, room: &Room, name: &str, sdp: &str) -> anyhow::Result<(u64, u64, String)> {
    let handle = session.attach_videoroom().await?;
    let reply = session
        .message(
            handle,
            json!({"request": "joinandconfigure", "ptype": "publisher", "room": room.janus_room, "display": name}),
            Some(jsep("offer", sdp)),
        )
        .await?;
    let id = reply.data["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("janus joinandconfigure: no feed id in {}", reply.data))?;
    Ok((handle, id, sdp_of(reply.jsep, "answer")?))
}

/// Subscribes the client's subscriber handle to `feeds`; returns Janus's offer SDP.
async fn subscribe(session: &Session, room: &Room, subs: &mut Subscriptions, feeds: &[u64]) -> anyhow::Result<String> {
    let streams: Vec<_> = feeds.iter().map(|id| json!({"feed": id})).collect();
    let reply = match subs.handle {
        None => {
            let handle = session.attach_videoroom().await?;
            subs.handle = Some(handle);
            session
                .message(
                    handle,
                    json!({"request": "join", "ptype": "subscriber", "room": room.janus_room, "streams": streams}),
                    None,
                )
                .await?
        }
        Some(handle) => {
            session
                .message(handle, json!({"request": "subscribe", "streams": streams}), None)
                .await?
        }
    };
    subs.subscribed.extend(feeds.iter().copied());
    sdp_of(reply.jsep, "offer")
}

fn sdp_of(jsep: Option<serde_json::Value>, kind: &str) -> anyhow::Result<String> {
    let jsep = jsep.ok_or_else(|| anyhow!("janus sent no {kind}"))?;
    if jsep["type"] != kind {
        bail!("janus sent a {} where an {kind} was due", jsep["type"]);
    }
    jsep["sdp"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("janus {kind} without sdp"))
}
