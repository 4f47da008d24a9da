//! Serving HTTP on the open network: the accept loop, with what `axum::serve` leaves out.
//!
//! - A cap on open connections (`limits.max_http_connections`, websockets included): one more is
//!   answered `503 Service Unavailable` with `Retry-After` and closed, so a flood of sockets cannot
//!   take the file descriptors `/healthz` and real participants need.
//! - A deadline for request headers (`limits.http_header_timeout_secs`), which is also how long a
//!   kept-alive connection may sit idle between requests: half-sent requests are closed.
//! - A bounded stop: on shutdown the listener closes, idle connections close, open requests get
//!   `limits.shutdown_grace_secs` to finish, and whatever is still open then is closed.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;

/// Files kept free for everything that is not a client connection (database, media sockets, logs).
const RESERVED_FILES: u64 = 128;
/// Connections over the cap that are being told so at once; more are closed without an answer.
const MAX_REFUSING: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl HttpLimits {
    pub fn from_config(limits: &crate::config::Limits) -> Self {
        Self {
            max_connections: limits.max_http_connections.max(1),
            header_timeout: Duration::from_secs(limits.http_header_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(limits.shutdown_grace_secs),
        }
    }

    /// Raises the process's soft open-file limit to its hard limit and keeps the connection cap
    /// below it, so that the cap, not the kernel, decides when the server is full.
    pub fn fit_open_files(mut self) -> Self {
        let files = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("cannot read the open-file limit: {e}");
                return self;
            }
        };
        let room = files.saturating_sub(RESERVED_FILES).max(1) as usize;
        if room < self.max_connections {
            tracing::warn!(
                configured = self.max_connections,
                open_file_limit = files,
                "limits.max_http_connections lowered to {room} to stay below the open-file limit"
            );
            self.max_connections = room;
        }
        self
    }
}

/// A connection's place under the cap. The connection's task holds it, and so does a websocket
/// session upgraded from it, so upgraded connections count too.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Serves `app` on `listener` until `stop` fires, then stops within the grace period.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, mut stop: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (closing, closing_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors or a connection reset before accept: do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                while tasks.try_join_next().is_some() {}
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let slot = ConnectionSlot(Arc::new(permit));
                        tasks.spawn(connection(stream, peer, app.clone(), limits, slot, closing_rx.clone()));
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "connection refused: limits.max_http_connections reached");
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                refuse(stream).await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let deadline = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                tracing::warn!(open = tasks.len(), "shutdown grace period over: closing the remaining connections");
                tasks.abort_all();
                break;
            }
        }
    }
}

/// One HTTP/1.1 connection (with upgrades, for websockets).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    slot: ConnectionSlot,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(slot.clone());
        let mut app = app.clone();
        async move { tower::Service::call(&mut app, request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "http connection ended: {e}");
            }
        }
        _ = async { closing.wait_for(|closing| *closing).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Tells a client over the cap that the server is full, then closes.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "the server has too many open connections; try again shortly\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing, so the kernel does not reset the connection and
        // destroy the answer in flight.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
