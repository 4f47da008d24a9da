//! Every event a Rust participant gets, collected by a task, for tests that wait on them.

use crate::ws::eventually;
use samtal_client::ParticipantEvent;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long [`EventLog::wait_n`] waits.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<ParticipantEvent>>>);

impl EventLog {
    /// Collects what `rx` delivers from now on.
    pub fn spawn(mut rx: mpsc::UnboundedReceiver<ParticipantEvent>) -> EventLog {
        let log = EventLog::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                sink.0.lock().unwrap().push(e);
            }
        });
        log
    }

    /// What `pick` takes from the events so far, in order.
    pub fn find<T>(&self, pick: impl Fn(&ParticipantEvent) -> Option<T>) -> Vec<T> {
        self.0.lock().unwrap().iter().filter_map(pick).collect()
    }

    /// Waits until `pick` takes at least `n` events; returns all it took. Fails the test, listing
    /// every event, if that does not happen within 20 s.
    pub async fn wait_n<T>(&self, what: &str, n: usize, pick: impl Fn(&ParticipantEvent) -> Option<T>) -> Vec<T> {
        let ok = eventually(WAIT, || std::future::ready(self.find(&pick).len() >= n)).await;
        let found = self.find(&pick);
        assert!(
            ok,
            "waited for {n} x {what}, got {}; events: {:#?}",
            found.len(),
            self.0.lock().unwrap()
        );
        found
    }

    /// Waits for the first event `pick` takes.
    pub async fn wait<T>(&self, what: &str, pick: impl Fn(&ParticipantEvent) -> Option<T>) -> T {
        self.wait_n(what, 1, pick).await.into_iter().next().expect("one found")
    }
}
