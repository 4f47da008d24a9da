//! Janus's websocket API (subprotocol `janus-protocol`), the parts the videoroom needs: a session
//! kept alive, plugin handles, and requests answered by transaction.
//!
//! A request is a JSON object with a `transaction`; Janus answers `ack` first for requests that a
//! plugin handles asynchronously, then `event` (or `success`/`error`) with the same transaction.
//! [`Session::request`] waits for that answer; everything else Janus sends (`webrtcup`, `media`,
//! `slowlink`, `hangup`, ...) is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Janus ends a session it hears nothing from for 60 s.
const KEEPALIVE: Duration = Duration::from_secs(20);

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A Janus session over one websocket.
pub struct Session {
    id: u64,
    out: mpsc::UnboundedSender<Message>,
    waiters: Waiters,
    /// Handles whose PeerConnection is up.
    up: watch::Receiver<HashSet<u64>>,
    next: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

/// What a plugin answered: its `plugindata.data` and the JSEP, if any.
pub struct PluginReply {
    pub data: Value,
    pub jsep: Option<Value>,
}

impl Session {
    /// Connects to `url` and creates a session.
    pub async fn open(url: &str) -> anyhow::Result<Session> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("connecting to janus at {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let waiters: Waiters = Arc::default();
        let writer = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_waiters = Arc::clone(&waiters);
        let (up_tx, up) = watch::channel(HashSet::new());
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if value["janus"] == "ack" {
                    continue;
                }
                if value["janus"] == "webrtcup" {
                    if let Some(handle) = value["sender"].as_u64() {
                        up_tx.send_modify(|up| {
                            up.insert(handle);
                        });
                    }
                    continue;
                }
                let Some(transaction) = value["transaction"].as_str() else {
                    continue;
                };
                if let Some(waiter) = reader_waiters.lock().await.remove(transaction) {
                    let _ = waiter.send(value);
                }
            }
            // The websocket closed: fail everyone still waiting.
            reader_waiters.lock().await.clear();
        });
        let mut session = Session {
            id: 0,
            out,
            waiters,
            up,
            next: AtomicU64::new(1),
            tasks: vec![writer, reader],
        };
        let created = session.request(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus create: no session id in {created}"))?;
        let (id, out) = (session.id, session.out.clone());
        session.tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE);
            loop {
                tick.tick().await;
                let keepalive = json!({"janus": "keepalive", "session_id": id, "transaction": "keepalive"});
                if out.send(Message::text(keepalive.to_string())).is_err() {
                    break;
                }
            }
        }));
        Ok(session)
    }

    /// Sends `body` (with a fresh transaction, and the session id once there is one) and returns
    /// Janus's answer; an `error` answer is an error.
    async fn request(&self, mut body: Value) -> anyhow::Result<Value> {
        let transaction = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        body["transaction"] = json!(transaction);
        if self.id != 0 {
            body["session_id"] = json!(self.id);
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().await.insert(transaction.clone(), tx);
        self.out
            .send(Message::text(body.to_string()))
            .map_err(|_| anyhow!("janus websocket closed"))?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx)
            .await
            .with_context(|| format!("janus did not answer {}", body["janus"]))?
            .map_err(|_| anyhow!("janus websocket closed while waiting for {}", body["janus"]))?;
        if answer["janus"] == "error" {
            bail!("janus {}: {}", body["janus"], answer["error"]);
        }
        Ok(answer)
    }

    /// Attaches a videoroom plugin handle; returns its id.
    pub async fn attach_videoroom(&self) -> anyhow::Result<u64> {
        let answer = self
            .request(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("janus attach: no handle id in {answer}"))
    }

    /// Waits until `handle`'s PeerConnection is up (Janus's `webrtcup`): a publisher's feed can be
    /// subscribed to only then.
    pub async fn wait_webrtcup(&self, handle: u64) -> anyhow::Result<()> {
        let mut up = self.up.clone();
        tokio::time::timeout(REQUEST_TIMEOUT, up.wait_for(|up| up.contains(&handle)))
            .await
            .context("janus did not report the publisher's connection up")?
            .map_err(|_| anyhow!("janus websocket closed"))?;
        Ok(())
    }

    /// Sends a plugin message on `handle` (with a JSEP when given) and returns the plugin's reply;
    /// a reply whose data carries `error` is an error.
    pub async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<PluginReply> {
        let mut request = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let answer = self.request(request).await?;
        let data = answer["plugindata"]["data"].clone();
        if !data["error"].is_null() {
            bail!("janus videoroom: {} (code {})", data["error"], data["error_code"]);
        }
        Ok(PluginReply {
            data,
            jsep: answer.get("jsep").cloned(),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.id != 0 {
            let destroy = json!({"janus": "destroy", "session_id": self.id, "transaction": "destroy"});
            let _ = self.out.send(Message::text(destroy.to_string()));
        }
        // The writer gets a moment to send the destroy; the others stop now.
        for task in self.tasks.drain(1..) {
            task.abort();
        }
    }
}

/// A JSEP object for Janus: our SDP holds all our candidates (gathered before sending), so no
/// trickle follows.
pub fn jsep(kind: &str, sdp: &str) -> Value {
    json!({"type": kind, "sdp": sdp, "trickle": false})
}
