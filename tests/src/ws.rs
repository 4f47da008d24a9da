//! A raw websocket test client for protocol tests: send any text or binary frame, read the next
//! JSON message with a deadline, wait for a message of a given type or error code, see the
//! connection close. Also a minimal HTTP GET (for `/metrics`) and a Prometheus text reader.
//!
//! Nothing here answers the server by itself: the test sees every message.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long the helpers wait for an expected message unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// What reading the next message gave.
#[derive(Debug)]
pub enum Recv {
    /// A text frame holding JSON.
    Json(Value),
    /// The server closed the websocket (close frame, end of stream or a transport error).
    Closed,
    /// Nothing arrived in time.
    TimedOut,
}

/// One raw websocket connection to `/ws`.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every message read so far, for failure messages.
    pub seen: Vec<Value>,
    /// The server's close frame (code, reason), once one arrived.
    pub close: Option<(u16, String)>,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("websocket connect to {url} timed out"))
            .unwrap_or_else(|e| panic!("websocket connect to {url}: {e}"));
        WsClient {
            ws,
            seen: Vec::new(),
            close: None,
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.ws.send(Message::text(text)).await.expect("websocket send");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("websocket send");
    }

    /// Queues many text frames and flushes once (a flood).
    pub async fn send_many(&mut self, texts: impl IntoIterator<Item = String>) {
        for text in texts {
            self.ws.feed(Message::text(text)).await.expect("websocket feed");
        }
        self.ws.flush().await.expect("websocket flush");
    }

    /// The next JSON message, `Closed`, or `TimedOut`. Non-JSON text fails the test.
    pub async fn recv(&mut self, timeout: Duration) -> Recv {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Recv::TimedOut,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.close = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    return Recv::Closed;
                }
                Ok(None) | Ok(Some(Err(_))) => return Recv::Closed,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("server sent text that is not JSON ({e}): {}", text.as_str()));
                    self.seen.push(value.clone());
                    return Recv::Json(value);
                }
                Ok(Some(Ok(Message::Binary(b)))) => {
                    panic!("server sent a binary frame of {} bytes", b.len())
                }
                Ok(Some(Ok(_))) => continue, // websocket-level ping/pong
            }
        }
    }

    /// Reads until a message `pick` accepts, skipping others; fails the test on close or deadline.
    pub async fn expect<T>(&mut self, what: &str, timeout: Duration, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                Recv::Json(v) => {
                    if let Some(found) = pick(&v) {
                        return found;
                    }
                }
                other => panic!("waiting for {what}: got {other:?}; messages so far: {}", self.dump()),
            }
        }
    }

    /// The next message of type `ty`, skipping others.
    pub async fn expect_type(&mut self, ty: &str) -> Value {
        self.expect(&format!("a {ty:?} message"), WAIT, |v| {
            (v["type"] == ty).then(|| v.clone())
        })
        .await
    }

    /// The next `error` message with `code`, skipping other messages (failing on another error code).
    pub async fn expect_error(&mut self, code: &str) -> Value {
        self.expect(&format!("error {code:?}"), WAIT, |v| {
            if v["type"] == "error" {
                assert_eq!(v["code"], code, "wrong error code: {v}");
                Some(v.clone())
            } else {
                None
            }
        })
        .await
    }

    /// The very next message must be an `error` with `code` (nothing else in between).
    pub async fn next_error(&mut self, code: &str) -> Value {
        match self.recv(WAIT).await {
            Recv::Json(v) => {
                assert_eq!(v["type"], "error", "expected error {code:?}, got {v}");
                assert_eq!(v["code"], code, "wrong error code: {v}");
                v
            }
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }

    /// Sends `ping` with `nonce` and waits for the `pong` echoing it (skipping other messages):
    /// the connection is alive and the session still answers.
    pub async fn ping_pong(&mut self, nonce: &str) {
        self.send_json(&json!({"type": "ping", "nonce": nonce})).await;
        self.expect(&format!("pong {nonce}"), WAIT, |v| {
            (v["type"] == "pong" && v["nonce"] == nonce).then_some(())
        })
        .await
    }

    /// Sends `join` and returns the `joined` message (fails the test on anything else first).
    pub async fn join(&mut self, room: &str, name: &str, token: Option<&str>) -> Value {
        let mut join = json!({"type": "join", "room": room, "name": name});
        if let Some(token) = token {
            join["token"] = json!(token);
        }
        self.send_json(&join).await;
        match self.recv(WAIT).await {
            Recv::Json(v) if v["type"] == "joined" => v,
            other => panic!("join {room} as {name}: expected joined, got {other:?}"),
        }
    }

    /// Reads (discarding messages) until the server closes the connection; false at the deadline.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                Recv::Json(_) => {}
                Recv::Closed => return true,
                Recv::TimedOut => return false,
            }
        }
    }

    /// Closes the websocket with a close handshake.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
    }

    /// Drops the TCP connection without a close frame (a client that vanishes).
    pub fn vanish(self) {
        drop(self);
    }

    /// Reads until the server closes; its close frame's code and reason (`None` without one).
    pub async fn close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            match self.recv(WAIT).await {
                Recv::Json(_) => continue,
                Recv::Closed => return self.close.clone(),
                Recv::TimedOut => panic!("the server did not close; messages so far: {}", self.dump()),
            }
        }
    }

    /// The messages seen so far, for failure output.
    pub fn dump(&self) -> String {
        self.seen.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
    }
}

/// `GET path` on `addr` over plain HTTP/1.1: (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get_with(addr, path, &[]).await
}

/// `GET path` with extra request headers (`("Authorization", "Bearer …")`); status and body.
pub async fn http_get_with(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http_request(addr, "GET", path, headers).await
}

/// `METHOD path` without a body, with extra request headers; status and body.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(WAIT, request)
        .await
        .unwrap_or_else(|_| panic!("HTTP {method} {path} timed out"))
        .unwrap_or_else(|e| panic!("HTTP {method} {path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response: {head}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of an unlabelled sample `name` in Prometheus text (`name value`), if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; returns its last answer.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
