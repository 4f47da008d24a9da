//! A participant's websocket carried to the node that holds its room.
//!
//! The first message of a new connection decides: a `join` whose room another node holds is sent
//! on to that node over a websocket of this node's own, and from then on every frame is passed
//! through both ways unchanged, so the participant speaks to the room's node as if directly (its
//! SDP and ICE candidates are that node's, so media goes straight there). A close frame passes with
//! its code; a connection that drops without one is dropped on the other side the same way, so the
//! room's node keeps a resumable session as it would for a direct client. A proxied connection is
//! marked (`samtal-hops`) and never proxied again.

use super::{Cluster, NodeRecord, Route};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use samtal_protocol::{ClientMessage, ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};

/// The header that marks a connection one node proxied to another.
pub const HOPS_HEADER: &str = "samtal-hops";

/// How long the room's node may take to accept the proxied websocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a new connection goes, from its first message.
pub enum First {
    /// This node serves it; the text is its first message, still to be handled.
    Here(Option<String>),
    /// Another node holds the room of this first message (a join).
    Elsewhere(NodeRecord, String),
    /// The connection ended before it said anything.
    Gone,
}

/// Reads the first message (waiting at most until `deadline`) and routes a join by its room.
/// Messages too long for the protocol, and anything but a join, stay here for the session to answer.
pub async fn first_message(
    cluster: &Cluster,
    socket: &mut WebSocket,
    deadline: tokio::time::Instant,
    max_bytes: usize,
) -> First {
    loop {
        let text = match tokio::time::timeout_at(deadline, socket.recv()).await {
            // The session reports the missing join.
            Err(_) => return First::Here(None),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return First::Gone,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Binary(_)))) => return First::Here(None),
            Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        };
        let room = match (text.len() <= max_bytes).then(|| serde_json::from_str::<ClientMessage>(&text)) {
            Some(Ok(ClientMessage::Join { room, .. })) if crate::session::valid_room(&room) => room,
            _ => return First::Here(Some(text)),
        };
        return match cluster.route(&room).await {
            Ok(Route::Here) => First::Here(Some(text)),
            Ok(Route::Elsewhere(node)) => First::Elsewhere(node, text),
            Err(e) => {
                tracing::warn!(%room, "{e}; this node holds the room");
                First::Here(Some(text))
            }
        };
    }
}

/// `http(s)://host:port` → `ws(s)://host:port/ws`, with the query.
fn websocket_url(base: &str, query: &str) -> Option<String> {
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))?;
    Some(format!("{}/ws{query}", rest.trim_end_matches('/')))
}

/// Carries `client` to `node` (`query`: `""` or `?resume=…`), after sending `first` there.
pub async fn carry(client: WebSocket, node: &NodeRecord, query: &str, first: Option<String>, max_frame: usize) {
    // A resume that cannot reach its session's node fails as a resume does; a join gets busy.
    let (code, ref_type) = if query.is_empty() {
        (ErrorCode::ServerBusy, "join")
    } else {
        (ErrorCode::ResumeFailed, "resume")
    };
    let upstream = match websocket_url(&node.url, query) {
        None => Err(format!("node URL {:?} is not http(s)", node.url)),
        Some(url) => connect(&url, max_frame).await,
    };
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(node = %node.id, "cannot reach the room's node: {e}");
            refuse(client, code, ref_type).await;
            return;
        }
    };
    tracing::info!(node = %node.id, "session proxied to the room's node");
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut down_tx, mut down_rx) = client.split();
    if let Some(first) = first
        && up_tx.send(tungstenite::Message::text(first)).await.is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = down_rx.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    if up_tx.send(tungstenite::Message::text(t.as_str())).await.is_err() { break }
                }
                Some(Ok(Message::Binary(b))) => {
                    if up_tx.send(tungstenite::Message::Binary(b)).await.is_err() { break }
                }
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.map(|f| tungstenite::protocol::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = up_tx.send(tungstenite::Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                // Dropped without a close frame: drop the other side the same way.
                None | Some(Err(_)) => break,
            },
            frame = up_rx.next() => match frame {
                Some(Ok(tungstenite::Message::Text(t))) => {
                    if down_tx.send(Message::Text(t.as_str().into())).await.is_err() { break }
                }
                Some(Ok(tungstenite::Message::Binary(b))) => {
                    if down_tx.send(Message::Binary(b)).await.is_err() { break }
                }
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    let frame = frame.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = down_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
        }
    }
    tracing::debug!(node = %node.id, "proxied session ended");
}

type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, max_frame: usize) -> Result<Upstream, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert(HOPS_HEADER, tungstenite::http::HeaderValue::from_static("1"));
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((upstream, _))) => Ok(upstream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Tells a client its room's node cannot be reached (a fatal `code`), then closes.
async fn refuse(mut client: WebSocket, code: ErrorCode, ref_type: &str) {
    let why = "the node that holds this room cannot be reached; try again";
    let error = ServerMessage::error(code, why, Some(ref_type));
    let text = serde_json::to_string(&error).expect("server messages serialise");
    let _ = client.send(Message::Text(text.into())).await;
    let frame = CloseFrame {
        code: crate::session::close::FATAL_ERROR,
        reason: Utf8Bytes::from(crate::session::code_name(code)),
    };
    let _ = client.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::websocket_url;

    #[test]
    fn node_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://10.0.0.2:8080", "").as_deref(),
            Some("ws://10.0.0.2:8080/ws")
        );
        assert_eq!(
            websocket_url("https://b.example/", "?resume=x&received=3").as_deref(),
            Some("wss://b.example/ws?resume=x&received=3")
        );
        assert_eq!(websocket_url("nats://x", ""), None);
    }
}
