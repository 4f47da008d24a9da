//! What a joined participant does in the meeting besides media: chat, and the moderator's room
//! settings (lock) and room actions (mute everyone, end the meeting). Raising a hand is one call
//! to the room registry (`Rooms::set_hand`).

use super::Session;
use samtal_protocol::{ErrorCode, Role, RoomAction, RoomSettings, TrackSource};
use std::time::Instant;

impl Session {
    pub(super) fn on_chat(&mut self, text: String) {
        let joined = self.joined.as_ref().expect("checked");
        if joined.hidden {
            self.error(ErrorCode::Forbidden, "hidden participants do not chat", Some("chat"));
            return;
        }
        let text = match crate::chat::clean(&text) {
            Ok(text) => text,
            Err(why) => return self.error(ErrorCode::BadMessage, why, Some("chat")),
        };
        if !self.chat_rate.allow(Instant::now()) {
            self.error(
                ErrorCode::RateLimited,
                "too many chat messages: one per second after a burst of five",
                Some("chat"),
            );
            return;
        }
        self.state.rooms.chat(&joined.room, &joined.id, text);
    }

    /// Whether this session is a moderator; answers `forbidden` to `kind` when not.
    pub(super) fn moderator(&self, kind: &str) -> bool {
        let moderator = self.joined.as_ref().is_some_and(|j| j.role == Role::Moderator);
        if !moderator {
            self.error(ErrorCode::Forbidden, "only moderators may do this", Some(kind));
        }
        moderator
    }

    pub(super) fn on_room_settings(&self, settings: RoomSettings) {
        if !self.moderator("room_settings") {
            return;
        }
        let joined = self.joined.as_ref().expect("checked");
        if self.state.rooms.set_settings(&joined.room, settings, joined.id.clone()) {
            tracing::info!(?settings, "room settings changed");
        }
    }

    pub(super) fn on_room_action(&self, action: RoomAction) {
        if !self.moderator("room_action") {
            return;
        }
        let joined = self.joined.as_ref().expect("checked");
        tracing::info!(?action, "room action");
        match action {
            RoomAction::MuteAll => {
                let others = self.state.rooms.visible(&joined.room);
                for member in others {
                    let speaking = member
                        .tracks
                        .iter()
                        .any(|t| t.source == TrackSource::Microphone && !t.muted);
                    if member.id != joined.id && member.role != Role::Moderator && speaking {
                        self.force_mute(&member.id, TrackSource::Microphone);
                    }
                }
            }
            RoomAction::End => {
                let removed = self.state.rooms.end(&joined.room, &joined.id);
                tracing::info!(removed, "meeting ended by a moderator");
            }
        }
    }
}
