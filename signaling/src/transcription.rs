//! Which rooms are transcribed and by which worker.
//!
//! Transcription workers connect to `/ws` and announce themselves with a `worker` message; a
//! moderator turns transcription on with `transcription`. This registry hands each transcribed
//! room to the least busy worker as a `job`, moves rooms to another worker when one disconnects,
//! re-sends jobs to a worker that reconnects, and stops jobs when transcription is turned off or the
//! room empties. It decides; sessions carry the messages.

use crate::auth;
use crate::rooms::Outbound;
use samtal_protocol::{Job, JobAction, Role, ServerMessage, TranscriptionStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Lifetime of the service tokens handed to workers in jobs.
const JOB_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

struct Worker {
    tx: mpsc::Sender<Outbound>,
    capacity: usize,
}

#[derive(Clone)]
struct Transcribed {
    meeting_id: String,
    language: Option<String>,
    prompt: Option<String>,
    worker: Option<String>,
}

pub struct Transcription {
    /// Signs the room-scoped service tokens in jobs; random per server start.
    job_secret: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    workers: HashMap<String, Worker>,
    rooms: HashMap<String, Transcribed>,
}

impl Default for Transcription {
    fn default() -> Self {
        let job_secret = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        Self {
            job_secret,
            state: Mutex::new(State::default()),
        }
    }
}

impl Transcription {
    pub fn job_secret(&self) -> &str {
        &self.job_secret
    }

    pub fn status(&self, room: &str) -> TranscriptionStatus {
        let state = self.state.lock().expect("transcription lock");
        let available = !state.workers.is_empty();
        match state.rooms.get(room) {
            Some(t) => TranscriptionStatus {
                enabled: true,
                language: t.language.clone(),
                meeting_id: Some(t.meeting_id.clone()),
                available,
                chat_kept: false,
            },
            None => TranscriptionStatus {
                enabled: false,
                language: None,
                meeting_id: None,
                available,
                chat_kept: false,
            },
        }
    }

    /// Meeting id of a transcribed room.
    pub fn meeting_id(&self, room: &str) -> Option<String> {
        self.state
            .lock()
            .expect("transcription lock")
            .rooms
            .get(room)
            .map(|t| t.meeting_id.clone())
    }

    /// Turns transcription on; returns false if it already was.
    pub fn enable(&self, room: &str, meeting_id: String, language: Option<String>, prompt: Option<String>) -> bool {
        let mut state = self.state.lock().expect("transcription lock");
        if state.rooms.contains_key(room) {
            return false;
        }
        state.rooms.insert(
            room.to_owned(),
            Transcribed {
                meeting_id,
                language,
                prompt,
                worker: None,
            },
        );
        self.assign(&mut state, room);
        true
    }

    /// Changes the language of a room being transcribed; its worker gets the job again with it.
    /// Returns false when the room is not transcribed or already in that language.
    pub fn set_language(&self, room: &str, language: Option<String>) -> bool {
        let mut guard = self.state.lock().expect("transcription lock");
        let state = &mut *guard;
        let Some(t) = state.rooms.get_mut(room).filter(|t| t.language != language) else {
            return false;
        };
        t.language = language;
        if let Some(worker) = t.worker.as_ref().and_then(|w| state.workers.get(w)) {
            self.send_job(worker, JobAction::Start, room, t);
        }
        true
    }

    /// Turns transcription off; returns the meeting id if it was on.
    pub fn disable(&self, room: &str) -> Option<String> {
        let mut state = self.state.lock().expect("transcription lock");
        let t = state.rooms.remove(room)?;
        if let Some(worker) = t.worker.as_ref().and_then(|w| state.workers.get(w)) {
            self.send_job(worker, JobAction::Stop, room, &t);
        }
        Some(t.meeting_id)
    }

    /// A worker connected: it gets every room that has nobody transcribing it, up to its capacity.
    pub fn add_worker(&self, id: &str, tx: mpsc::Sender<Outbound>, capacity: usize) {
        let mut state = self.state.lock().expect("transcription lock");
        state.workers.insert(
            id.to_owned(),
            Worker {
                tx,
                capacity: capacity.max(1),
            },
        );
        let waiting: Vec<String> = state
            .rooms
            .iter()
            .filter(|(_, t)| t.worker.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        for room in waiting {
            self.assign(&mut state, &room);
        }
        tracing::info!(
            worker = id,
            workers = state.workers.len(),
            "transcription worker connected"
        );
    }

    /// A worker went away: its rooms move to the others (or wait for the next worker).
    pub fn remove_worker(&self, id: &str) {
        let mut state = self.state.lock().expect("transcription lock");
        state.workers.remove(id);
        let orphaned: Vec<String> = state
            .rooms
            .iter_mut()
            .filter(|(_, t)| t.worker.as_deref() == Some(id))
            .map(|(r, t)| {
                t.worker = None;
                r.clone()
            })
            .collect();
        for room in orphaned {
            self.assign(&mut state, &room);
        }
        tracing::info!(
            worker = id,
            workers = state.workers.len(),
            "transcription worker disconnected"
        );
    }

    fn assign(&self, state: &mut State, room: &str) {
        let load = |w: &str| state.rooms.values().filter(|t| t.worker.as_deref() == Some(w)).count();
        let best = state
            .workers
            .iter()
            .filter(|(id, w)| load(id) < w.capacity)
            .min_by_key(|(id, _)| load(id))
            .map(|(id, _)| id.clone());
        let Some(worker_id) = best else {
            tracing::warn!(
                room,
                "no transcription worker has room for this meeting; it waits for one"
            );
            return;
        };
        let t = state.rooms.get_mut(room).expect("assigning a known room");
        t.worker = Some(worker_id.clone());
        let t = t.clone();
        self.send_job(&state.workers[&worker_id], JobAction::Start, room, &t);
    }

    fn send_job(&self, worker: &Worker, action: JobAction, room: &str, t: &Transcribed) {
        let token = match auth::mint(
            &self.job_secret,
            room,
            Some("Transcriber"),
            Role::Service,
            JOB_TOKEN_TTL,
        ) {
            Ok(token) => token,
            Err(e) => {
                tracing::error!("cannot mint a job token: {e}");
                return;
            }
        };
        let job = Job {
            action,
            room: room.to_owned(),
            meeting_id: t.meeting_id.clone(),
            language: t.language.clone(),
            prompt: t.prompt.clone(),
            token,
        };
        if worker.tx.try_send(Outbound::Message(ServerMessage::Job(job))).is_err() {
            tracing::warn!(room, "worker queue full; job not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rx: &mut mpsc::Receiver<Outbound>) -> Option<Job> {
        match rx.try_recv() {
            Ok(Outbound::Message(ServerMessage::Job(job))) => Some(job),
            _ => None,
        }
    }

    #[test]
    fn rooms_wait_for_workers_and_move_when_one_leaves() {
        let t = Transcription::default();
        assert!(t.enable("a", "m1".into(), Some("sv".into()), None));
        assert!(!t.enable("a", "m2".into(), None, None), "already on");
        assert!(!t.status("a").available);
        let (tx1, mut rx1) = mpsc::channel(8);
        t.add_worker("w1", tx1, 4);
        let start = job(&mut rx1).expect("waiting room handed to the new worker");
        assert_eq!(
            (start.action, start.room.as_str(), start.meeting_id.as_str()),
            (JobAction::Start, "a", "m1")
        );
        assert_eq!(start.language.as_deref(), Some("sv"));
        let (tx2, mut rx2) = mpsc::channel(8);
        t.add_worker("w2", tx2, 4);
        t.enable("b", "m3".into(), None, None);
        assert_eq!(
            job(&mut rx2).map(|j| j.room),
            Some("b".into()),
            "least busy worker gets the next room"
        );
        t.remove_worker("w1");
        assert_eq!(job(&mut rx2).map(|j| j.room), Some("a".into()), "orphaned room moves");
        assert_eq!(t.disable("a"), Some("m1".into()));
        assert_eq!(job(&mut rx2).map(|j| j.action), Some(JobAction::Stop));
        assert!(!t.status("a").enabled && t.status("b").enabled);
    }

    #[tokio::test]
    async fn job_tokens_are_room_scoped_service_tokens() {
        let t = Transcription::default();
        let (tx, mut rx) = mpsc::channel(8);
        t.add_worker("w", tx, 1);
        t.enable("room1", "m".into(), None, None);
        let job = job(&mut rx).unwrap();
        let verifier = auth::Verifier::new(crate::config::AuthConfig {
            secret: Some(t.job_secret().into()),
            ..Default::default()
        });
        let claims = verifier.verify(&job.token).await.unwrap();
        assert_eq!((claims.role, claims.room.as_str()), (Role::Service, "room1"));
    }
}
