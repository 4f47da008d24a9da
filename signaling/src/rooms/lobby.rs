//! The lobby of a room set to knock (`room_settings` `lobby`): a joiner who is not a moderator
//! waits here until a moderator admits or rejects it. The waiting list is part of the room's
//! state, under the same locks as its settings and members, so a setting change, a decision and
//! the room's end cannot cross: turning the lobby off admits everyone waiting, and a room that
//! empties drops its lobby, which tells each waiter that the meeting ended.

use super::{Rooms, send_moderators};
use samtal_protocol::{LobbyEntry, ServerMessage};
use tokio::sync::oneshot;

/// What became of a joiner's wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// A moderator (by name) turned the joiner away.
    Rejected {
        by: String,
    },
    /// The room emptied while it waited.
    Ended,
}

/// The answer to a knock.
#[derive(Debug)]
pub enum Knock {
    /// The room does not knock (or does not exist yet): join now.
    Enter,
    /// Wait for the decision; the moderators have been told.
    Wait(Waiting),
    /// The lobby holds the most joiners it may.
    Full,
}

/// A joiner's place in the lobby.
#[derive(Debug)]
pub struct Waiting(oneshot::Receiver<Decision>);

impl Waiting {
    /// The decision; [`Decision::Ended`] when the room went away first.
    pub async fn decision(&mut self) -> Decision {
        (&mut self.0).await.unwrap_or(Decision::Ended)
    }
}

pub(super) struct Waiter {
    entry: LobbyEntry,
    decide: oneshot::Sender<Decision>,
}

impl Waiter {
    pub(super) fn admit(self) {
        let _ = self.decide.send(Decision::Admitted);
    }
}

/// What the moderators are sent: everyone waiting, in order of arrival.
pub(super) fn message(lobby: &[Waiter]) -> ServerMessage {
    ServerMessage::Lobby {
        waiting: lobby.iter().map(|w| w.entry.clone()).collect(),
    }
}

impl Rooms {
    /// A joiner asks to come into `room`: it waits when the room knocks and `entry.id` is not
    /// waiting already, with at most `max` waiting at once. A locked room takes no new knocks: the
    /// joiner goes on to the join, which the lock refuses.
    pub fn knock(&self, room: &str, entry: LobbyEntry, max: usize) -> Knock {
        let rooms = self.rooms.lock().expect("rooms lock");
        let mut meta = self.meta.lock().expect("meta lock");
        let Some(meta) = meta
            .get_mut(room)
            .filter(|m| m.settings.lobby && !m.settings.locked && rooms.contains_key(room))
        else {
            return Knock::Enter;
        };
        if meta.lobby.len() >= max || meta.lobby.iter().any(|w| w.entry.id == entry.id) {
            return Knock::Full;
        }
        let (decide, decision) = oneshot::channel();
        meta.lobby.push(Waiter { entry, decide });
        send_moderators(&rooms, room, &message(&meta.lobby));
        Knock::Wait(Waiting(decision))
    }

    /// A moderator's decision on the joiner `id`; false when nobody of that id waits in `room`.
    pub fn decide(&self, room: &str, id: &str, admit: bool, by: String) -> bool {
        let rooms = self.rooms.lock().expect("rooms lock");
        let mut meta = self.meta.lock().expect("meta lock");
        let Some(meta) = meta.get_mut(room) else {
            return false;
        };
        let Some(at) = meta.lobby.iter().position(|w| w.entry.id == id) else {
            return false;
        };
        let waiter = meta.lobby.remove(at);
        let _ = waiter.decide.send(if admit {
            Decision::Admitted
        } else {
            Decision::Rejected { by }
        });
        send_moderators(&rooms, room, &message(&meta.lobby));
        true
    }

    /// The joiner `id` stopped waiting (it left, or its time ran out).
    pub fn leave_lobby(&self, room: &str, id: &str) {
        let rooms = self.rooms.lock().expect("rooms lock");
        let mut meta = self.meta.lock().expect("meta lock");
        let Some(meta) = meta.get_mut(room) else {
            return;
        };
        let before = meta.lobby.len();
        meta.lobby.retain(|w| w.entry.id != id);
        if meta.lobby.len() != before {
            send_moderators(&rooms, room, &message(&meta.lobby));
        }
    }

    /// Who waits in `room`'s lobby, in order of arrival.
    pub fn lobby(&self, room: &str) -> Vec<LobbyEntry> {
        let _rooms = self.rooms.lock().expect("rooms lock");
        let meta = self.meta.lock().expect("meta lock");
        meta.get(room)
            .map(|m| m.lobby.iter().map(|w| w.entry.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::{JoinLimits, Outbound};
    use samtal_protocol::{ParticipantInfo, Role, RoomSettings};
    use tokio::sync::mpsc;

    const LIMITS: JoinLimits = JoinLimits {
        max_participants: 10,
        max_per_identity: 2,
        may_start: true,
        admitted: false,
    };

    fn entry(id: &str) -> LobbyEntry {
        LobbyEntry {
            id: id.into(),
            name: format!("name of {id}"),
            since: 1,
        }
    }

    fn info(id: &str, role: Role) -> ParticipantInfo {
        ParticipantInfo {
            id: id.into(),
            name: id.into(),
            role,
            tracks: Vec::new(),
            transcription_opt_out: false,
            hand_raised_at: None,
        }
    }

    /// Joins `id` with `role`; returns what it is sent.
    fn join(rooms: &Rooms, id: &str, role: Role) -> mpsc::Receiver<Outbound> {
        let (tx, rx) = mpsc::channel(16);
        let info = info(id, role);
        rooms
            .join("r", info, false, None, tx, LIMITS, |_| ServerMessage::Pong {
                nonce: None,
            })
            .expect("joins");
        rx
    }

    fn knocking(rooms: &Rooms) {
        let settings = RoomSettings {
            lobby: true,
            ..RoomSettings::default()
        };
        assert!(rooms.set_settings("r", settings, "mod".into()));
    }

    /// The lobby lists each moderator was sent, oldest first.
    fn lobby_lists(rx: &mut mpsc::Receiver<Outbound>) -> Vec<Vec<String>> {
        let mut lists = Vec::new();
        while let Ok(outbound) = rx.try_recv() {
            if let Outbound::Message(ServerMessage::Lobby { waiting }) = outbound {
                lists.push(waiting.into_iter().map(|e| e.id).collect());
            }
        }
        lists
    }

    fn waits(knock: Knock) -> Waiting {
        match knock {
            Knock::Wait(waiting) => waiting,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_room_that_does_not_knock_or_does_not_exist_lets_joiners_in() {
        let rooms = Rooms::default();
        assert!(matches!(rooms.knock("r", entry("a"), 5), Knock::Enter));
        let _moderator = join(&rooms, "m", Role::Moderator);
        assert!(matches!(rooms.knock("r", entry("a"), 5), Knock::Enter));
        assert!(rooms.lobby("r").is_empty());
    }

    #[tokio::test]
    async fn moderators_see_the_queue_and_their_decisions_reach_the_joiners() {
        let rooms = Rooms::default();
        let mut moderator = join(&rooms, "m", Role::Moderator);
        let mut participant = join(&rooms, "p", Role::Participant);
        knocking(&rooms);
        let mut a = waits(rooms.knock("r", entry("a"), 5));
        let mut b = waits(rooms.knock("r", entry("b"), 5));
        assert_eq!(
            rooms.lobby("r").iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(!rooms.decide("r", "nobody", true, "m".into()));
        assert!(rooms.decide("r", "b", false, "m".into()));
        assert!(rooms.decide("r", "a", true, "m".into()));
        assert!(!rooms.decide("r", "a", true, "m".into()), "a decision is taken once");
        assert_eq!(a.decision().await, Decision::Admitted);
        assert_eq!(b.decision().await, Decision::Rejected { by: "m".into() });
        assert_eq!(
            lobby_lists(&mut moderator),
            [vec!["a"], vec!["a", "b"], vec!["a"], vec![]],
            "every change reaches the moderators"
        );
        assert!(
            lobby_lists(&mut participant).is_empty(),
            "participants are not told who waits"
        );
    }

    #[tokio::test]
    async fn the_lobby_is_bounded_and_a_joiner_waits_once() {
        let rooms = Rooms::default();
        let _moderator = join(&rooms, "m", Role::Moderator);
        knocking(&rooms);
        let _a = waits(rooms.knock("r", entry("a"), 2));
        assert!(matches!(rooms.knock("r", entry("a"), 2), Knock::Full));
        let _b = waits(rooms.knock("r", entry("b"), 2));
        assert!(matches!(rooms.knock("r", entry("c"), 2), Knock::Full));
        rooms.leave_lobby("r", "a");
        let _c = waits(rooms.knock("r", entry("c"), 2));
        assert_eq!(
            rooms.lobby("r").iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[tokio::test]
    async fn turning_the_lobby_off_admits_everyone_and_an_emptied_room_ends_the_wait() {
        let rooms = Rooms::default();
        let _moderator = join(&rooms, "m", Role::Moderator);
        knocking(&rooms);
        let mut a = waits(rooms.knock("r", entry("a"), 5));
        assert!(rooms.set_settings("r", RoomSettings::default(), "m".into()));
        assert_eq!(a.decision().await, Decision::Admitted);
        knocking(&rooms);
        let mut b = waits(rooms.knock("r", entry("b"), 5));
        rooms.leave("r", "m").expect("was there");
        assert_eq!(b.decision().await, Decision::Ended);
        assert!(
            matches!(rooms.knock("r", entry("c"), 5), Knock::Enter),
            "a new meeting does not knock"
        );
    }

    #[tokio::test]
    async fn an_admitted_joiner_passes_the_lock_and_a_moderator_joining_later_sees_the_queue() {
        let rooms = Rooms::default();
        let _first = join(&rooms, "m", Role::Moderator);
        knocking(&rooms);
        let _a = waits(rooms.knock("r", entry("a"), 5));
        let settings = RoomSettings {
            lobby: true,
            locked: true,
        };
        assert!(rooms.set_settings("r", settings, "m".into()));
        assert!(
            matches!(rooms.knock("r", entry("b"), 5), Knock::Enter),
            "a locked room takes no knocks"
        );
        let mut later = join(&rooms, "m2", Role::Moderator);
        assert_eq!(lobby_lists(&mut later), [vec!["a"]]);
        let (tx, _rx) = mpsc::channel(16);
        let info = info("a", Role::Participant);
        let welcome = |_| ServerMessage::Pong { nonce: None };
        let refused = rooms.join("r", info.clone(), false, None, tx.clone(), LIMITS, welcome);
        assert_eq!(refused, Err(crate::rooms::JoinRefused::Locked));
        let admitted = JoinLimits {
            admitted: true,
            ..LIMITS
        };
        assert_eq!(rooms.join("r", info, false, None, tx, admitted, welcome), Ok(false));
    }
}
