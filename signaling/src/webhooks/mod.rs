//! Signed webhooks: the server tells configured receivers what happens (rooms starting and
//! finishing, participants joining and leaving, transcription starting and stopping, transcripts
//! sealed, summaries delivered) by HTTP POST of a JSON body signed with HMAC-SHA256
//! (`docs/configuration.md`, "Webhooks").
//!
//! Nothing is posted inline. [`Webhooks::emit`] queues the event; one task writes it to the store's
//! webhook outbox, a row per receiver, and another delivers the due rows: a receiver that is down or
//! answers other than 2xx is retried with exponential backoff (`retry_initial_secs` doubling up to
//! `retry_max_secs`) until `max_attempts`, also after this server restarts. Rows are the delivery
//! log (`GET /api/webhooks/deliveries`). With several servers on one PostgreSQL each row is
//! delivered by the one server holding its lease (see the store's `webhooks` module).

mod api;
mod sign;

pub use api::router;
pub use sign::{SIGNATURE_HEADER, signature};

use crate::server::AppState;
use crate::store::{Store, WebhookDelivery, new_id, now_ms};
use futures_util::StreamExt;
use samtal_protocol::retry::BackoffConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Events waiting for the task; beyond this a burst loses events (counted, logged).
const QUEUE: usize = 4096;
/// Rows taken per round, all posted at once.
const CONCURRENT_POSTS: usize = 8;
/// Longest sleep between looks at the outbox (another server's rows can fall due meanwhile).
const IDLE: Duration = Duration::from_secs(30);
/// How often delivered and failed rows older than `keep_days` are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// `[webhooks]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The receivers; none: no webhooks.
    pub endpoints: Vec<Endpoint>,
    /// Wait before the first retry; doubles per failed attempt up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Attempts before a row is given up (`failed` in the delivery log).
    pub max_attempts: u32,
    /// Per attempt: connecting, sending and the receiver's answer.
    pub timeout_secs: u64,
    /// Delivered and failed rows are kept this many days.
    pub keep_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            retry_initial_secs: 5,
            retry_max_secs: 600,
            max_attempts: 15,
            timeout_secs: 10,
            keep_days: 30,
        }
    }
}

/// `[[webhooks.endpoints]]`: one receiver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoint {
    /// Names the receiver in the delivery log: `[A-Za-z0-9_.-]{1,64}`, unique.
    pub name: String,
    /// `http://` or `https://` URL the events are posted to.
    pub url: String,
    /// The HMAC-SHA256 key (at least 32 bytes) the receiver verifies the signature with.
    pub secret: String,
    /// Which events (see [`EventKind`]); empty: all.
    pub events: Vec<EventKind>,
}

impl WebhooksConfig {
    /// Refuses a receiver without a usable name, URL or key, with a message naming it.
    pub fn validate(&self, check_secret: impl Fn(&str, &str) -> crate::Result<()>) -> crate::Result<()> {
        let bad = |message: String| Err(crate::Error::Config(message));
        for (i, e) in self.endpoints.iter().enumerate() {
            let valid_name = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid_name {
                return bad(format!(
                    "webhooks.endpoints[{i}].name {:?} is not [A-Za-z0-9_.-]{{1,64}}",
                    e.name
                ));
            }
            if self.endpoints[..i].iter().any(|o| o.name == e.name) {
                return bad(format!("webhooks.endpoints: the name {:?} is used twice", e.name));
            }
            let parsed = reqwest::Url::parse(&e.url);
            if !parsed
                .as_ref()
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            {
                return bad(format!("webhooks.endpoints[{i}].url {:?} is not an http(s) URL", e.url));
            }
            check_secret(&format!("webhooks.endpoints[{i}].secret"), &e.secret)?;
        }
        if self.max_attempts == 0 || self.timeout_secs == 0 {
            return bad("webhooks.max_attempts and webhooks.timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The first participant (hidden ones included) joined a room that had nobody.
    RoomStarted,
    /// The last participant left; the room is gone.
    RoomFinished,
    ParticipantJoined,
    ParticipantLeft,
    TranscriptionStarted,
    TranscriptionStopped,
    /// A transcribed meeting ended and its transcript's hash chain was sealed.
    TranscriptSealed,
    /// The meeting's summary was posted to its Matrix room.
    SummaryDelivered,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RoomStarted => "room_started",
            EventKind::RoomFinished => "room_finished",
            EventKind::ParticipantJoined => "participant_joined",
            EventKind::ParticipantLeft => "participant_left",
            EventKind::TranscriptionStarted => "transcription_started",
            EventKind::TranscriptionStopped => "transcription_stopped",
            EventKind::TranscriptSealed => "transcript_sealed",
            EventKind::SummaryDelivered => "summary_delivered",
        }
    }
}

/// One event: its kind, its room (if any) and the fields that describe it (participant, meeting
/// id, reason, …), which go into the body beside `id`, `event`, `created_at` and `room`.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub room: Option<String>,
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn new(kind: EventKind, room: impl Into<String>) -> Self {
        Self {
            kind,
            room: Some(room.into()),
            fields: Map::new(),
        }
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// `event`, `room` and the event's own fields: the body without `id` and `created_at`.
    pub fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("event".into(), self.kind.as_str().into());
        body.insert("room".into(), self.room.clone().map_or(Value::Null, Value::from));
        body.extend(self.fields.clone());
        body
    }

    /// The participant a participant event is about.
    pub fn participant(self, id: &str, name: &str, hidden: bool) -> Self {
        self.with("participant", json!({ "id": id, "name": name, "hidden": hidden }))
    }
}

/// The emitter in the server state.
pub struct Webhooks {
    tx: Option<mpsc::Sender<Event>>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    /// The writer (events into the store) and the deliverer (rows to the receivers).
    tasks: Mutex<Option<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>>,
    /// Tells the writer to write what is queued and end.
    stopping: Arc<Notify>,
    /// Events lost because the queue was full (a metric).
    lost: prometheus_client::metrics::counter::Counter,
    /// A copy of every event for the cluster bus (`crate::cluster`), when the server has one.
    tap: std::sync::OnceLock<mpsc::Sender<Event>>,
}

impl Webhooks {
    /// An emitter; it queues events only when receivers are configured, and counts lost ones in `lost`.
    pub fn new(config: &WebhooksConfig, lost: prometheus_client::metrics::counter::Counter) -> Self {
        let (tx, rx) = if config.endpoints.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(QUEUE);
            (Some(tx), Some(rx))
        };
        Self {
            tx,
            rx: Mutex::new(rx),
            tasks: Mutex::new(None),
            stopping: Arc::new(Notify::new()),
            lost,
            tap: std::sync::OnceLock::new(),
        }
    }

    /// Queues an event for every receiver that takes its kind. Never waits.
    pub fn emit(&self, event: Event) {
        if let Some(tap) = self.tap.get()
            && tap.try_send(event.clone()).is_err()
        {
            tracing::warn!(
                event = event.kind.as_str(),
                "room event not published: the bus queue is full"
            );
        }
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(event) {
            self.lost.inc();
            let kind = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev.kind,
            };
            tracing::error!(
                event = kind.as_str(),
                "webhook event lost: the queue is full or the task stopped"
            );
        }
    }

    /// A copy of every event from now on (once; None if already tapped), queued up to the same bound.
    pub fn tap(&self) -> Option<mpsc::Receiver<Event>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.tap.set(tx).ok().map(|()| rx)
    }

    /// Stops the tasks: deliveries stop at once (the rows stay in the store for the next start, or
    /// for another server on the same store), and events still queued are written first, for at
    /// most `within`. Events emitted from now on are lost (and counted).
    pub async fn stop(&self, within: Duration) {
        let Some((writer, deliverer)) = self.tasks.lock().expect("webhooks lock").take() else {
            return;
        };
        deliverer.abort();
        self.stopping.notify_one();
        let abort = writer.abort_handle();
        if tokio::time::timeout(within, writer).await.is_err() {
            abort.abort();
            tracing::error!("webhook events still queued at stop were not all written in {within:?}");
        }
    }
}

/// Starts the tasks if receivers are configured: one writes events to the store as they come (so
/// a slow receiver never holds up the queue), one delivers the rows.
pub fn start(state: &Arc<AppState>) {
    let Some(rx) = state.webhooks.rx.lock().expect("webhooks lock").take() else {
        return;
    };
    let config = state.config.webhooks.clone();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(config.timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Samtal-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks disabled: cannot make an HTTP client: {e}");
            return;
        }
    };
    let written = Arc::new(Notify::new());
    let stopping = state.webhooks.stopping.clone();
    let writer = tokio::spawn(write(
        state.store.clone(),
        config.clone(),
        rx,
        written.clone(),
        stopping,
    ));
    let deliverer = tokio::spawn(deliver_due(state.store.clone(), config, client, written));
    *state.webhooks.tasks.lock().expect("webhooks lock") = Some((writer, deliverer));
}

/// Writes `event`'s row for each receiver that takes it. Creation times of one server strictly
/// increase, so rows of one server keep their order in the log.
async fn enqueue(store: &Store, config: &WebhooksConfig, event: &Event, last_at: &mut i64) {
    let created_at = now_ms().max(*last_at + 1);
    *last_at = created_at;
    for endpoint in &config.endpoints {
        if !endpoint.events.is_empty() && !endpoint.events.contains(&event.kind) {
            continue;
        }
        let id = new_id();
        let mut body = Map::new();
        body.insert("id".into(), id.clone().into());
        body.insert("created_at".into(), created_at.into());
        body.extend(event.body());
        let body = Value::Object(body).to_string();
        let (kind, room) = (event.kind.as_str(), event.room.as_deref());
        if let Err(e) = store
            .enqueue_webhook(&id, &endpoint.name, kind, room, &body, created_at)
            .await
        {
            tracing::error!(endpoint = %endpoint.name, event = kind, "cannot queue the webhook: {e}");
        }
    }
}

/// The writer: events from the queue into the store, then a nudge to the deliverer. When the
/// server stops, it closes the queue and writes what is still in it.
async fn write(
    store: Store,
    config: WebhooksConfig,
    mut rx: mpsc::Receiver<Event>,
    written: Arc<Notify>,
    stopping: Arc<Notify>,
) {
    let mut last_at = 0i64;
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    enqueue(&store, &config, &event, &mut last_at).await;
                    written.notify_one();
                }
                None => return,
            },
            () = stopping.notified() => {
                rx.close();
                while let Some(event) = rx.recv().await {
                    enqueue(&store, &config, &event, &mut last_at).await;
                }
                return;
            }
        }
    }
}

/// The deliverer: takes due rows (each under a lease of this server's), posts them a few at a
/// time, records the outcomes, and purges old rows now and then.
async fn deliver_due(store: Store, config: WebhooksConfig, client: reqwest::Client, written: Arc<Notify>) {
    // A round posts at most CONCURRENT_POSTS rows at once, each within the timeout: the lease
    // outlives it with room to spare, so no other server takes a row this one is posting.
    let lease_ms = i64::try_from(config.timeout_secs.saturating_mul(2000).saturating_add(30_000)).unwrap_or(i64::MAX);
    let owner = new_id();
    let mut next_purge = tokio::time::Instant::now();
    loop {
        let rows = match store
            .claim_webhooks(&owner, now_ms(), lease_ms, CONCURRENT_POSTS as u32)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("cannot read the webhook outbox: {e}");
                Vec::new()
            }
        };
        let full = rows.len() == CONCURRENT_POSTS;
        futures_util::stream::iter(rows)
            .for_each_concurrent(CONCURRENT_POSTS, |row| deliver(&store, &config, &client, row))
            .await;
        if tokio::time::Instant::now() >= next_purge {
            next_purge = tokio::time::Instant::now() + PURGE_EVERY;
            let keep = i64::try_from(config.keep_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
            match store.purge_webhooks(now_ms().saturating_sub(keep)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("purged {n} old webhook deliveries"),
                Err(e) => tracing::error!("cannot purge old webhook deliveries: {e}"),
            }
        }
        // Sleep until the next row is due or one is written (at once when a full round suggests more).
        let mut until = tokio::time::Instant::now() + if full { Duration::ZERO } else { IDLE };
        if let Ok(Some(at)) = store.next_webhook_at().await {
            let ms = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
            until = until.min(tokio::time::Instant::now() + Duration::from_millis(ms));
        }
        tokio::select! {
            _ = written.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Posts one row and records the outcome.
async fn deliver(store: &Store, config: &WebhooksConfig, client: &reqwest::Client, row: WebhookDelivery) {
    let Some(endpoint) = config.endpoints.iter().find(|e| e.name == row.endpoint) else {
        // A receiver this server does not know (another server's newer configuration, or one that
        // was removed): the row stays pending for a server that knows it; its lease keeps this one
        // from taking it again before it runs out.
        tracing::debug!(endpoint = %row.endpoint, id = %row.id, "webhook for a receiver not configured here");
        return;
    };
    let outcome = client
        .post(&endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Samtal-Webhook-Id", &row.id)
        .header("Samtal-Webhook-Event", &row.event)
        .header(
            SIGNATURE_HEADER,
            signature(endpoint.secret.as_bytes(), row.body.as_bytes()),
        )
        .body(row.body.clone())
        .send()
        .await;
    let (status, error) = match outcome {
        Ok(response) if response.status().is_success() => {
            let status = response.status().as_u16();
            tracing::debug!(endpoint = %row.endpoint, event = %row.event, id = %row.id, status, "webhook delivered");
            if let Err(e) = store.webhook_delivered(&row.id, status, now_ms()).await {
                tracing::error!(id = %row.id, "cannot record the webhook's delivery: {e}");
            }
            return;
        }
        Ok(response) => (Some(response.status().as_u16()), format!("HTTP {}", response.status())),
        Err(e) => (None, without_url(&e)),
    };
    let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX).saturating_add(1);
    let retry_at = (attempts < config.max_attempts).then(|| {
        let wait = BackoffConfig {
            initial: Duration::from_secs(config.retry_initial_secs.max(1)),
            max: Duration::from_secs(config.retry_max_secs),
        }
        .delay(attempts - 1);
        now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    });
    match retry_at {
        Some(_) => {
            tracing::warn!(endpoint = %row.endpoint, event = %row.event, id = %row.id, attempt = attempts, "webhook not delivered, will retry: {error}")
        }
        None => {
            tracing::error!(endpoint = %row.endpoint, event = %row.event, id = %row.id, attempt = attempts, "webhook given up: {error}")
        }
    }
    if let Err(e) = store.webhook_failed(&row.id, status, &error, retry_at).await {
        tracing::error!(id = %row.id, "cannot record the webhook's failure: {e}");
    }
}

/// The error without the URL (it may carry credentials in its query), with its causes.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(c) = cause {
        detail = c.to_string();
        cause = c.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, url: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            url: url.into(),
            secret: "k".repeat(40),
            events: vec![],
        }
    }

    fn refusal(endpoints: Vec<Endpoint>) -> String {
        let config = WebhooksConfig {
            endpoints,
            ..Default::default()
        };
        let short = |key: &str, secret: &str| {
            if secret.len() < 32 {
                Err(crate::Error::Config(format!("{key} is short")))
            } else {
                Ok(())
            }
        };
        match config.validate(short) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn receivers_need_a_name_an_http_url_and_a_long_key() {
        assert_eq!(refusal(vec![endpoint("audit", "https://hooks.example.org/samtal")]), "");
        assert!(refusal(vec![endpoint("", "https://h/")]).contains("name"));
        assert!(refusal(vec![endpoint("a b", "https://h/")]).contains("name"));
        assert!(refusal(vec![endpoint("a", "https://h/"), endpoint("a", "https://i/")]).contains("twice"));
        assert!(refusal(vec![endpoint("a", "ftp://h/")]).contains("url"));
        assert!(refusal(vec![endpoint("a", "not a url")]).contains("url"));
        let mut weak = endpoint("a", "https://h/");
        weak.secret = "short".into();
        assert!(refusal(vec![weak]).contains("webhooks.endpoints[0].secret"));
    }

    #[test]
    fn event_kinds_read_and_print_as_in_the_body() {
        let kinds: Vec<EventKind> = serde_json::from_str(r#"["room_started","summary_delivered"]"#).unwrap();
        assert_eq!(kinds, [EventKind::RoomStarted, EventKind::SummaryDelivered]);
        for kind in [EventKind::ParticipantLeft, EventKind::TranscriptSealed] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert!(serde_json::from_str::<EventKind>(r#""room_exploded""#).is_err());
    }
}
