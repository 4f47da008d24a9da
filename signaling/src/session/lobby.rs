//! A joiner in a knocking room's lobby: it waits (answering `ping`s, nothing else) until a
//! moderator admits it, turns it away, the meeting ends, or `limits.lobby_wait_secs` pass. The
//! waiting list itself is the room registry's (`crate::rooms::Rooms::knock`).

use super::{End, Entering, Session};
use crate::rooms::{Decision, Knock, Waiting};
use samtal_protocol::{ErrorCode, LobbyEntry, Role, ServerMessage, unix_ms};
use std::time::Duration;

/// A session's place in the lobby, with the join it will complete.
pub(super) struct Lobbied {
    entering: Entering,
    waiting: Waiting,
    until: tokio::time::Instant,
}

impl Lobbied {
    pub(super) fn room(&self) -> &str {
        &self.entering.room
    }

    pub(super) fn id(&self) -> &str {
        &self.entering.id
    }
}

/// What ends the wait: a decision, or `None` when the time ran out. Never, while nobody waits.
pub(super) async fn outcome(waiting: &mut Option<Lobbied>) -> Option<Decision> {
    let Some(lobbied) = waiting else {
        return std::future::pending().await;
    };
    tokio::select! {
        decision = lobbied.waiting.decision() => Some(decision),
        _ = tokio::time::sleep_until(lobbied.until) => None,
    }
}

impl Session {
    /// Sends a joiner who is not a moderator to the lobby when the room knocks. `Ok`: join now;
    /// `Err(None)`: it waits; `Err(Some(end))`: refused.
    pub(super) fn knock(&mut self, entering: Entering) -> Result<Entering, Option<End>> {
        if entering.request.hidden || entering.role == Role::Moderator {
            return Ok(entering);
        }
        let limits = &self.state.config.limits;
        let entry = LobbyEntry {
            id: entering.id.clone(),
            name: entering.name.clone(),
            since: unix_ms(),
        };
        match self.state.rooms.knock(&entering.room, entry, limits.max_lobby_waiting) {
            Knock::Enter => Ok(entering),
            Knock::Full => {
                self.error(
                    ErrorCode::LobbyTimeout,
                    format!("the lobby of room {} is full; try again later", entering.room),
                    Some("join"),
                );
                Err(Some(End::Fatal))
            }
            Knock::Wait(waiting) => {
                tracing::info!("waiting in the lobby");
                self.send(ServerMessage::LobbyWaiting {
                    room: entering.room.clone(),
                    participant_id: entering.id.clone(),
                });
                // It passed the token check; the lobby's own bound holds it from now on.
                self.unjoined = None;
                let until = tokio::time::Instant::now() + Duration::from_secs(limits.lobby_wait_secs);
                self.waiting = Some(Lobbied {
                    entering,
                    waiting,
                    until,
                });
                Err(None)
            }
        }
    }

    /// The wait is over: join, or end with the reason.
    pub(super) async fn on_lobby_outcome(&mut self, outcome: Option<Decision>) -> Option<End> {
        let Lobbied { mut entering, .. } = self.waiting.take()?;
        let (code, message) = match outcome {
            Some(Decision::Admitted) => {
                tracing::info!("admitted from the lobby");
                entering.admitted = true;
                return self.enter(entering).await;
            }
            Some(Decision::Rejected { by }) => {
                tracing::info!(%by, "turned away from the lobby");
                (
                    ErrorCode::LobbyRejected,
                    format!("a moderator ({by}) did not let you in"),
                )
            }
            Some(Decision::Ended) => (
                ErrorCode::LobbyRejected,
                "the meeting ended before a moderator let you in".to_owned(),
            ),
            None => {
                self.state.rooms.leave_lobby(&entering.room, &entering.id);
                let secs = self.state.config.limits.lobby_wait_secs;
                (
                    ErrorCode::LobbyTimeout,
                    format!("no moderator let you in within {secs} s"),
                )
            }
        };
        self.error(code, message, Some("join"));
        Some(End::Fatal)
    }

    /// A moderator lets a waiting joiner in or turns it away.
    pub(super) fn on_lobby_decision(&self, participant: &str, admit: bool) {
        if !self.moderator("lobby_decision") {
            return;
        }
        let joined = self.joined.as_ref().expect("checked");
        if self
            .state
            .rooms
            .decide(&joined.room, participant, admit, joined.name.clone())
        {
            tracing::info!(participant, admit, "lobby decision");
        } else {
            self.error(
                ErrorCode::UnknownParticipant,
                format!("nobody waits in the lobby as {participant}"),
                Some("lobby_decision"),
            );
        }
    }
}
