//! Several nodes on one NATS server (JetStream): a node registry with liveness, room placement, the
//! routing of a participant's websocket to the node that holds its room, and room events on subjects.
//!
//! - **Registry**: every node puts a [`NodeRecord`] (its URL, rooms, participants, CPU, draining) into
//!   the key-value bucket `<prefix>_nodes` every third of `liveness_secs`; the bucket keeps a value
//!   `liveness_secs`, so a node that stops renewing drops out of it by itself.
//! - **Placement**: the bucket `<prefix>_rooms` maps a room (its name in hex) to the node that holds
//!   it. The first join of a room places it on the least-loaded live node ([`placement::choose`]) with
//!   an atomic create; a room whose node has left the registry is placed again with a
//!   compare-and-set on the revision; the node deletes the placement when its last participant leaves.
//! - **Routing**: a join that reaches a node which does not hold the room is proxied, websocket and
//!   all, to the node that does ([`proxy`]); media goes straight to that node's media addresses, which
//!   its SDP names. A resume token names its node, so a resume reaches the same session anywhere.
//! - **Events**: every room event (the webhook kinds) is published on `<prefix>.events.<kind>`.
//!
//! Nothing here runs without `[cluster] nats_url`. When NATS cannot be reached during a join, the
//! node holds the room itself rather than refusing the participant.

pub mod api;
pub mod placement;
pub mod proxy;

use crate::error::{Error, Result};
use crate::server::AppState;
use async_nats::jetstream::kv;
use futures_util::TryStreamExt;
pub use placement::NodeRecord;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT` (or `tls://`); unset: this node is alone and nothing below applies.
    pub nats_url: Option<String>,
    /// This node's name in the registry: 1-32 characters of A-Z a-z 0-9 _ -, unique in the cluster.
    pub node_id: Option<String>,
    /// How the other nodes reach this node's HTTP listener, e.g. `http://10.0.0.2:8080`.
    pub advertise_url: Option<String>,
    /// Seconds after its last renewal that a node counts as gone. Every node of a cluster must use
    /// the same value (it is the registry bucket's setting).
    pub liveness_secs: u64,
    /// Prefix of the buckets and subjects, so that several clusters can share one NATS server.
    pub prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            node_id: None,
            advertise_url: None,
            liveness_secs: 10,
            prefix: "samtal".into(),
        }
    }
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.nats_url.is_some()
    }

    /// With `nats_url`: a valid `node_id`, an `http(s)://` `advertise_url`, `liveness_secs` ≥ 3 and a
    /// prefix usable as a bucket name.
    pub fn validate(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let bad = |why: String| Err(Error::Config(format!("cluster: {why}")));
        match self.node_id.as_deref() {
            Some(id) if placement::valid_node_id(id) => {}
            Some(id) => return bad(format!("node_id {id:?} must be 1-32 characters of A-Z a-z 0-9 _ -")),
            None => return bad("nats_url is set, so node_id must be too".into()),
        }
        match self.advertise_url.as_deref() {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {}
            _ => {
                return bad(
                    "nats_url is set, so advertise_url must be the http(s):// URL other nodes reach this one at".into(),
                );
            }
        }
        if self.liveness_secs < 3 {
            return bad("liveness_secs must be at least 3".into());
        }
        if !placement::valid_node_id(&self.prefix) {
            return bad("prefix must be 1-32 characters of A-Z a-z 0-9 _ -".into());
        }
        Ok(())
    }
}

/// Where a joining participant's room is held.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Here,
    Elsewhere(NodeRecord),
}

/// This node's handle on the cluster.
pub struct Cluster {
    node_id: String,
    url: String,
    liveness: Duration,
    client: async_nats::Client,
    nodes: kv::Store,
    rooms: kv::Store,
    prefix: String,
}

fn nats_error(what: &str) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::Cluster(format!("{what}: {e}"))
}

impl Cluster {
    /// Connects to NATS and opens (creating when missing) the two buckets.
    pub async fn connect(config: &ClusterConfig) -> Result<Self> {
        config.validate()?;
        let (Some(url), Some(node_id), Some(advertise)) = (&config.nats_url, &config.node_id, &config.advertise_url)
        else {
            return Err(Error::Config("cluster: nats_url is unset".into()));
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("samtal {node_id}"))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .connect(url.as_str())
            .await
            .map_err(|e| nats_error("cannot connect to NATS")(&e))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let liveness = Duration::from_secs(config.liveness_secs);
        let nodes = bucket(
            &jetstream,
            &format!("{}_nodes", config.prefix),
            "Samtal nodes: each renews its record; a record expires when its node stops",
            liveness,
            4096,
        )
        .await
        .map_err(|e| {
            Error::Cluster(format!(
                "cannot open the node registry (same liveness_secs on every node?): {e}"
            ))
        })?;
        let rooms = bucket(
            &jetstream,
            &format!("{}_rooms", config.prefix),
            "Samtal room placement: room name in hex -> node id",
            Duration::ZERO,
            // A node id is at most 32 bytes; the limit counts a delete's headers too.
            1024,
        )
        .await
        .map_err(|e| Error::Cluster(format!("cannot open the room placements: {e}")))?;
        Ok(Self {
            node_id: node_id.clone(),
            url: advertise.trim_end_matches('/').to_owned(),
            liveness,
            client,
            nodes,
            rooms,
            prefix: config.prefix.clone(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Puts this node's record into the registry.
    pub async fn announce(&self, state: &AppState) -> Result<()> {
        let record = NodeRecord {
            id: self.node_id.clone(),
            url: self.url.clone(),
            rooms: state.rooms.room_count(),
            participants: state.rooms.participant_count(),
            cpu: cpu_load(),
            draining: state.draining.load(Ordering::SeqCst),
            at_ms: crate::store::now_ms().max(0) as u64,
        };
        let value = serde_json::to_vec(&record).expect("node records serialise");
        self.nodes
            .put(&self.node_id, value.into())
            .await
            .map_err(|e| nats_error("cannot renew this node's record")(&e))?;
        Ok(())
    }

    /// Takes this node out of the registry at once (at stop), rather than after `liveness_secs`.
    pub async fn withdraw(&self) {
        if let Err(e) = self.nodes.purge(&self.node_id).await {
            tracing::warn!("cannot take this node out of the registry: {e}");
        }
    }

    /// The record of a live node.
    pub async fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        if !placement::valid_node_id(id) {
            return Ok(None);
        }
        let value = self
            .nodes
            .get(id)
            .await
            .map_err(|e| nats_error("cannot read the node registry")(&e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every live node's record, sorted by id.
    pub async fn live_nodes(&self) -> Result<Vec<NodeRecord>> {
        let keys = keys_of(&self.nodes, "cannot list the node registry").await?;
        let mut nodes = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(record) = self.node(&key).await? {
                nodes.push(record);
            }
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Every placed room and its node, sorted by room.
    pub async fn placements(&self) -> Result<Vec<(String, String)>> {
        let keys = keys_of(&self.rooms, "cannot list the room placements").await?;
        let mut placed = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(room) = placement::room_of_key(&key) else {
                continue;
            };
            let value = self
                .rooms
                .get(&key)
                .await
                .map_err(|e| nats_error("cannot read a room placement")(&e))?;
            if let Some(node) = value.and_then(|v| String::from_utf8(v.to_vec()).ok()) {
                placed.push((room, node));
            }
        }
        placed.sort();
        Ok(placed)
    }

    /// Where `room` is held, placing it when it is not yet (or its node is gone). A few concurrent
    /// placements of the same room settle on one node: each retry reads what the winner wrote.
    pub async fn route(&self, room: &str) -> Result<Route> {
        let key = placement::room_key(room);
        let read = nats_error("cannot read a room placement");
        for _ in 0..4 {
            let entry = self.rooms.entry(key.as_str()).await.map_err(|e| read(&e))?;
            let current = entry.filter(|e| e.operation == kv::Operation::Put);
            if let Some(entry) = &current {
                let holder = String::from_utf8_lossy(&entry.value).into_owned();
                if holder == self.node_id {
                    return Ok(Route::Here);
                }
                if let Some(record) = self.node(&holder).await? {
                    return Ok(Route::Elsewhere(record));
                }
                tracing::info!(%room, node = %holder, "the room's node is gone; placing the room again");
            }
            let nodes = self.live_nodes().await?;
            // Every node drains (or none is registered yet): this node answers, and refuses a new
            // meeting while it drains.
            let Some(target) = placement::choose(&nodes).cloned() else {
                return Ok(Route::Here);
            };
            let value = target.id.clone();
            let placed = match &current {
                Some(entry) => self
                    .rooms
                    .update(key.as_str(), value.into(), entry.revision)
                    .await
                    .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
                None => self
                    .rooms
                    .create(key.as_str(), value.into())
                    .await
                    .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
            };
            match placed {
                Ok(_) => {
                    tracing::info!(%room, node = %target.id, "room placed");
                    return Ok(if target.id == self.node_id {
                        Route::Here
                    } else {
                        Route::Elsewhere(target)
                    });
                }
                // Another node placed it first: read what it wrote.
                Err((true, _)) => continue,
                Err((false, e)) => return Err(Error::Cluster(format!("cannot place room {room}: {e}"))),
            }
        }
        Err(Error::Cluster(format!("room {room}: placement kept changing")))
    }

    /// Forgets the placement of a room this node held and whose last participant left; a placement
    /// another node has taken since is left alone.
    pub async fn release(&self, room: &str) {
        let key = placement::room_key(room);
        let Ok(Some(entry)) = self.rooms.entry(key.as_str()).await else {
            return;
        };
        if entry.operation != kv::Operation::Put || entry.value.as_ref() != self.node_id.as_bytes() {
            return;
        }
        if let Err(e) = self
            .rooms
            .delete_expect_revision(key.as_str(), Some(entry.revision))
            .await
        {
            tracing::debug!(%room, "placement not released: {e}");
        }
    }

    /// Publishes a room event on `<prefix>.events.<kind>`.
    async fn publish(&self, event: &crate::webhooks::Event) {
        let mut body = event.body();
        body.insert("node".into(), self.node_id.clone().into());
        body.insert("at".into(), crate::store::now_ms().into());
        let subject = format!("{}.events.{}", self.prefix, event.kind.as_str());
        let payload = serde_json::Value::Object(body).to_string();
        if let Err(e) = self.client.publish(subject, payload.into()).await {
            tracing::warn!(event = event.kind.as_str(), "room event not published: {e}");
        }
    }
}

/// Every key of a bucket that holds a value (`what`: the error's wording).
async fn keys_of(bucket: &kv::Store, what: &str) -> Result<Vec<String>> {
    let keys = bucket.keys().await.map_err(|e| nats_error(what)(&e))?;
    keys.try_collect().await.map_err(|e| nats_error(what)(&e))
}

/// Opens the key-value bucket `name`, creating it when missing: a stream as NATS lays out a bucket
/// (`KV_<name>` on `$KV.<name>.>`, one value per key, rollups, direct reads), made directly rather
/// than through the client's bucket creation, which reads account fields that NATS 2.9 does not send.
/// `max_age` zero: values do not expire.
async fn bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    description: &str,
    max_age: Duration,
    max_value_size: i32,
) -> std::result::Result<kv::Store, String> {
    use async_nats::jetstream::stream;
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: max_value_size,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())?;
    jetstream.get_key_value(name).await.map_err(|e| e.to_string())
}

/// The machine's 1-minute load average per core (0 where it cannot be read).
fn cpu_load() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |load| load / cores)
}

/// Starts the heartbeat (this node's record, every third of `liveness_secs`) and the publisher of
/// room events. The first record is written before this returns, so the node is placeable as soon
/// as it serves.
pub async fn start(state: &Arc<AppState>) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(cluster) = state.cluster.clone() else {
        return Ok(Vec::new());
    };
    cluster.announce(state).await?;
    let every = cluster.liveness / 3;
    let heartbeat = {
        let (state, cluster) = (Arc::downgrade(state), cluster.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else { return };
                if state.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = cluster.announce(&state).await {
                    tracing::warn!("{e}");
                }
            }
        })
    };
    let mut tasks = vec![heartbeat];
    if let Some(mut events) = state.webhooks.tap() {
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                cluster.publish(&event).await;
            }
        }));
    }
    tracing::info!(node = %state.cluster.as_ref().map_or("", |c| c.node_id()), "cluster: registered");
    Ok(tasks)
}
