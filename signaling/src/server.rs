//! The HTTP face: routes (`/`, `/ws`, `/healthz`, `/metrics`), shared state, start and graceful stop.
//! Tests start a whole server in-process with [`start`] on ephemeral ports.

use crate::auth::Verifier;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::session;
use crate::store::Store;
use crate::transcription::Transcription;
use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use samtal_sfu::MediaServer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

pub struct AppState {
    pub config: Config,
    pub rooms: Rooms,
    pub media: MediaServer,
    pub verifier: Verifier,
    pub metrics: Metrics,
    pub transcription: Transcription,
    pub store: Store,
    /// Accepts the room-scoped service tokens this server mints for transcription jobs.
    pub job_verifier: Verifier,
    /// Set when the server stops: connections closing now are not participants leaving, so running
    /// transcriptions stay open in the store and resume at the next start.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The Matrix delivery task (`crate::delivery`).
    pub outbox: crate::delivery::Outbox,
}

impl AppState {
    /// Transcription state of a room as participants see it.
    pub fn transcription_status(&self, room: &str) -> samtal_protocol::TranscriptionStatus {
        self.transcription.status(room)
    }
}

/// A running server; dropping it does not stop it, [`RunningServer::shutdown`] does.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The periodic retention purge, when retention is configured.
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets open requests finish, stops the media loop.
    pub async fn shutdown(mut self) {
        self.state.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(retention) = self.retention.take() {
            retention.abort();
        }
        self.state.outbox.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
        self.state.media.shutdown();
    }

    /// Waits until the server stops by itself (it normally does not).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let web = ServeDir::new(state.config.web_dir()).append_index_html_on_directories(true);
    let frame_ancestors = frame_ancestors(&state.config.embed.allowed_origins);
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/client-config.json", get(client_config))
        .merge(embedding_api(&state.config.web_dir()))
        .fallback_service(web)
        .with_state(state.clone())
        .merge(crate::api::router(state.store.clone(), state.verifier.clone(), state.config.audit.clone()))
        .merge(crate::delivery::router(state.clone()))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, frame_ancestors))
}

/// The iframe API scripts, loadable (also as ES modules, which need CORS) from any site.
fn embedding_api(web_dir: &std::path::Path) -> Router<Arc<AppState>> {
    let cors = SetResponseHeaderLayer::overriding(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    ["external_api.js", "external_api.mjs", "external_api.d.ts"].into_iter().fold(Router::new(), |router, file| {
        router.route_service(&format!("/{file}"), tower_http::services::ServeFile::new(web_dir.join(file)))
    })
    .layer(cors)
}

/// Only this origin and the configured ones may put Samtal's pages in a frame.
fn frame_ancestors(origins: &[String]) -> HeaderValue {
    let allowed: Vec<&str> = origins.iter().map(String::as_str).filter(|o| o.starts_with("http") && !o.contains([';', ',', ' '])).collect();
    let value = format!("frame-ancestors 'self' {}", allowed.join(" "));
    HeaderValue::from_str(value.trim_end()).unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'self'"))
}

/// What the web client needs to know before joining: embedding origins and transcription availability.
async fn client_config(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "allowed_origins": state.config.embed.allowed_origins,
        "auth": state.verifier.enabled(),
        "oidc": state.config.auth.oidc,
        "transcription_available": state.transcription.status("").available,
    }))
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    // The transport limit is well above the protocol limit so that an oversized message gets a
    // `too_large` error instead of a dropped connection.
    let hard_limit = (state.config.limits.max_message_bytes * 4).max(1 << 20);
    upgrade.max_message_size(hard_limit).max_frame_size(hard_limit).on_upgrade(move |socket| session::run(state, socket, peer))
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "rooms": state.rooms.room_count(),
        "participants": state.rooms.participant_count(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

/// Starts the media server and the HTTP server.
pub async fn start(config: Config) -> Result<RunningServer> {
    config.validate()?;
    let store = Store::connect(&config.database_url()).await?;
    tracing::info!(backend = store.backend(), "transcript store ready");
    let media = MediaServer::start(&config.media)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|source| Error::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr()?;
    let transcription = Transcription::default();
    let state = Arc::new(AppState {
        rooms: Rooms::default(),
        verifier: Verifier::new(config.auth.clone()),
        metrics: Metrics::new(media.stats().clone()),
        job_verifier: Verifier::new(crate::config::AuthConfig { secret: Some(transcription.job_secret().to_owned()), ..Default::default() }),
        transcription,
        store,
        media,
        config,
        stopping: Default::default(),
        outbox: Default::default(),
    });
    crate::meetings::resume(&state).await?;
    crate::delivery::start(&state);
    if !state.verifier.enabled() {
        tracing::warn!("NO AUTHENTICATION: auth.secret and auth.jwks_url are unset, anyone who reaches this server can join any room");
    }
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!("http server failed: {e}");
        }
    });
    let retention = crate::compliance::retention::spawn(state.store.clone(), state.config.retention.clone());
    tracing::info!(%addr, "signaling listening: open http://{addr}/");
    Ok(RunningServer { addr, state, stop: Some(stop), task, retention })
}
