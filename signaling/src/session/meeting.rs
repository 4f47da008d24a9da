//! What a joined participant does in the meeting besides media: chat (kept with the transcript
//! while the meeting is transcribed), and the moderator's room
//! settings (lock) and room actions (mute everyone, end the meeting). Raising a hand is one call
//! to the room registry (`Rooms::set_hand`).

use super::Session;
use crate::store::StoredChat;
use samtal_protocol::{ChatMessage, ErrorCode, Role, RoomAction, RoomSettings, TrackSource};
use std::time::Instant;

impl Session {
    pub(super) async fn on_chat(&mut self, text: String) {
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
        let Some(message) = self.state.rooms.chat(&joined.room, &joined.id, text) else {
            return;
        };
        self.keep_chat(&joined.room, message).await;
    }

    /// Keeps a chat message with the transcript while the room is transcribed (`keep_chat`),
    /// unless its sender opted out of transcription.
    async fn keep_chat(&self, room: &str, message: ChatMessage) {
        if !self.state.config.transcription.keep_chat {
            return;
        }
        let Some(meeting_id) = self.state.transcription.meeting_id(room) else {
            return;
        };
        if self
            .state
            .rooms
            .speaker(room, &message.participant_id)
            .is_none_or(|s| s.opted_out)
        {
            return;
        }
        let stored = StoredChat {
            meeting_id,
            // Unique in the meeting, across restarts of the room's message counter.
            message_id: format!("{}-{}", message.at, message.id),
            participant_id: message.participant_id,
            name: message.name,
            text: message.text,
            at: message.at,
        };
        if let Err(e) = self.state.store.put_chat(&stored).await {
            tracing::error!(meeting = %stored.meeting_id, "chat message not kept with the transcript: {e}");
        }
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
