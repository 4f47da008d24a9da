//! The HTTP face: routes (`/`, `/ws`, `/healthz`, `/metrics`), shared state, start and graceful stop.
//! Tests start a whole server in-process with [`start`] on ephemeral ports.

use crate::auth::Verifier;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::serve::{ConnectionSlot, HttpLimits};
use crate::session;
use crate::store::Store;
use crate::transcription::Transcription;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use samtal_sfu::MediaServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Longest a stopping server spends writing the webhook events still queued.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(10);

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
    /// Signed webhooks to the operator's receivers (`crate::webhooks`).
    pub webhooks: crate::webhooks::Webhooks,
    /// Draining (`crate::drain`): no new meetings start here.
    pub draining: std::sync::atomic::AtomicBool,
    /// Sessions a dropped websocket can resume.
    pub resumes: session::Resumes,
    /// This node's place among several (`crate::cluster`); None when it runs alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AppState {
    /// Transcription state of a room as participants see it.
    pub fn transcription_status(&self, room: &str) -> samtal_protocol::TranscriptionStatus {
        let mut status = self.transcription.status(room);
        status.chat_kept = status.enabled && self.config.transcription.keep_chat;
        status
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
    /// The cluster heartbeat and event publisher.
    cluster_tasks: Vec<tokio::task::JoinHandle<()>>,
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
        self.state.webhooks.stop(WEBHOOK_FLUSH).await;
        for task in self.cluster_tasks.drain(..) {
            task.abort();
        }
        if let Some(cluster) = &self.state.cluster {
            cluster.withdraw().await;
        }
        self.state.media.shutdown();
    }

    /// Drains (see [`crate::drain`]) and waits until nobody is left or `within` has passed; true
    /// when nobody is left. The server keeps running: call [`RunningServer::shutdown`] after.
    pub async fn drain(&self, within: Duration) -> bool {
        crate::drain::until_empty(&self.state, within).await
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
    let csp = content_security_policy(&state.config);
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/client-config.json", get(client_config))
        .merge(embedding_api(&state.config.web_dir()))
        .fallback_service(web)
        .with_state(state.clone())
        .merge(crate::api::router(
            state.store.clone(),
            state.verifier.clone(),
            state.config.audit.clone(),
        ))
        .merge(crate::delivery::router(state.clone()))
        .merge(crate::summary::router(state.clone()))
        .merge(crate::api::rooms::router(state.clone()))
        .merge(crate::webhooks::router(state.clone()))
        .merge(crate::drain::router(state.clone()))
        .merge(crate::cluster::api::router(state.clone()))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        ))
}

/// Camera, microphone and screen capture for this origin's pages (and frames they delegate to);
/// nothing else a page could ask the browser for.
const PERMISSIONS_POLICY: &str = "camera=(self), microphone=(self), display-capture=(self), fullscreen=(self), \
    autoplay=(self), geolocation=(), payment=(), usb=()";

/// The iframe API scripts, loadable (also as ES modules, which need CORS) from any site.
fn embedding_api(web_dir: &std::path::Path) -> Router<Arc<AppState>> {
    let cors = SetResponseHeaderLayer::overriding(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    ["external_api.js", "external_api.mjs", "external_api.d.ts"]
        .into_iter()
        .fold(Router::new(), |router, file| {
            router.route_service(
                &format!("/{file}"),
                tower_http::services::ServeFile::new(web_dir.join(file)),
            )
        })
        .layer(cors)
}

/// The pages load scripts, styles and media only from this origin, connect only to it (and to the
/// identity provider's token endpoint for officer sign-in), and only this origin and the configured
/// ones may put them in a frame.
fn content_security_policy(config: &Config) -> HeaderValue {
    let sources = |values: &mut dyn Iterator<Item = String>| -> String {
        values
            .filter(|o| o.starts_with("http") && !o.contains([';', ',', ' ', '\'', '"']))
            .map(|o| format!(" {o}"))
            .collect()
    };
    let ancestors = sources(&mut config.embed.allowed_origins.iter().cloned());
    let oidc = config.auth.oidc.as_ref();
    let token = sources(&mut oidc.and_then(|o| origin_of(&o.token_endpoint)).into_iter());
    let sign_in = sources(&mut oidc.and_then(|o| origin_of(&o.authorization_endpoint)).into_iter());
    let value = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; connect-src 'self'{token}; frame-src 'self'; \
         frame-ancestors 'self'{ancestors}; form-action 'self'{sign_in}; object-src 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'self'"))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// On an open server (no tokens), a browser page on another site could drive a visitor's browser
/// into meetings; so a websocket whose `Origin` is neither this server nor an embedding origin is
/// refused. Non-browser clients send no `Origin`. With tokens, the token is what counts.
fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    if config.auth_enabled() {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let own = origin
        .split_once("://")
        .is_some_and(|(_, authority)| !host.is_empty() && authority.eq_ignore_ascii_case(host));
    own || config
        .embed
        .allowed_origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
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

/// `/ws?resume=TOKEN&received=N` resumes a session (docs/protocol.md).
#[derive(Debug, serde::Deserialize)]
struct WsQuery {
    resume: Option<String>,
    received: Option<u64>,
}

/// Whether another node proxied this connection (`crate::cluster::proxy`): it is not routed again.
fn proxied(headers: &HeaderMap) -> bool {
    headers.contains_key(crate::cluster::proxy::HOPS_HEADER)
}

/// In a cluster, the live node a resume token names when that is not this node.
async fn resume_elsewhere(state: &AppState, token: &str) -> Option<crate::cluster::NodeRecord> {
    let cluster = state.cluster.as_ref()?;
    // Only tokens as this server writes them travel on (they go into the other node's query).
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return None;
    }
    let node = session::Resumes::node_of(token).filter(|n| *n != cluster.node_id())?;
    match cluster.node(node).await {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<axum::Extension<ConnectionSlot>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&state.config, &headers) {
        tracing::info!(%peer, origin = ?headers.get(header::ORIGIN), "websocket refused: foreign origin on an open server");
        return (
            StatusCode::FORBIDDEN,
            "this page's origin may not connect; add it to embed.allowed_origins\n",
        )
            .into_response();
    }
    // The transport limit is well above the protocol limit so that an oversized message gets a
    // `too_large` error instead of a dropped connection.
    let hard_limit = (state.config.limits.max_message_bytes * 4).max(1 << 20);
    upgrade
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| async move {
            let routed = !proxied(&headers);
            let elsewhere = match (&query.resume, routed) {
                (Some(token), true) => resume_elsewhere(&state, token).await,
                _ => None,
            };
            match (query.resume, elsewhere) {
                (Some(token), Some(node)) => {
                    let query = format!("?resume={token}&received={}", query.received.unwrap_or(0));
                    crate::cluster::proxy::carry(socket, &node, &query, None, hard_limit).await
                }
                (Some(token), None) => {
                    let resume = Box::new(session::Resume {
                        socket,
                        received: query.received.unwrap_or(0),
                        peer,
                        slot: slot.map(|s| Box::new(s) as Box<dyn Send + Sync>),
                    });
                    session::resume(state, token, resume).await
                }
                (None, _) => {
                    // The upgraded connection keeps its place under limits.max_http_connections.
                    let _slot = slot;
                    session::run(state, socket, peer, routed).await
                }
            }
        })
        .into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "rooms": state.rooms.room_count(),
        "participants": state.rooms.participant_count(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// Starts the media server and the HTTP server.
pub async fn start(config: Config) -> Result<RunningServer> {
    config.validate()?;
    let store = Store::connect(&config.database_url()).await?;
    tracing::info!(backend = store.backend(), "transcript store ready");
    let media = MediaServer::start(&config.media)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let transcription = Transcription::default();
    let cluster = match config.cluster.enabled() {
        true => Some(Arc::new(crate::cluster::Cluster::connect(&config.cluster).await?)),
        false => None,
    };
    let resumes = cluster
        .as_ref()
        .map_or_else(session::Resumes::default, |c| session::Resumes::of_node(c.node_id()));
    let metrics = Metrics::new(media.stats().clone());
    let webhooks = crate::webhooks::Webhooks::new(&config.webhooks, metrics.webhook_events_lost.clone());
    let state = Arc::new(AppState {
        rooms: Rooms::default(),
        verifier: Verifier::new(config.auth.clone()),
        metrics,
        job_verifier: Verifier::new(crate::config::AuthConfig {
            secret: Some(transcription.job_secret().to_owned()),
            ..Default::default()
        }),
        transcription,
        store,
        media,
        config,
        stopping: Default::default(),
        outbox: Default::default(),
        webhooks,
        draining: Default::default(),
        resumes,
        cluster,
    });
    crate::meetings::resume(&state).await?;
    crate::delivery::start(&state);
    crate::webhooks::start(&state);
    let cluster_tasks = crate::cluster::start(&state).await?;
    if !state.verifier.enabled() {
        tracing::warn!(
            "NO AUTHENTICATION: auth.secret and auth.jwks_url are unset, anyone who reaches this server can join any room"
        );
    }
    let app = router(state.clone());
    let limits = HttpLimits::from_config(&state.config.limits).fit_open_files();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::serve::serve(listener, app, limits, stopped));
    let retention = crate::compliance::retention::spawn(state.store.clone(), state.config.retention.clone());
    tracing::info!(%addr, "signaling listening: open http://{addr}/");
    Ok(RunningServer {
        addr,
        state,
        stop: Some(stop),
        task,
        retention,
        cluster_tasks,
    })
}
