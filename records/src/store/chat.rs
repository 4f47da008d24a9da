//! The chat of a transcribed meeting as a record (`meeting_chat`): each message written while the
//! meeting was transcribed, stored once (by its id in the room), read through the API in the order
//! it was written, and deleted with the meeting, so retention, deletion and legal hold cover it as
//! they cover the transcript.

use super::*;

/// A chat message kept with a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredChat {
    pub meeting_id: String,
    /// The message's id in its room.
    pub message_id: String,
    pub participant_id: String,
    /// The sender's display name when it wrote.
    pub name: String,
    pub text: String,
    /// When the server received it, milliseconds since the Unix epoch.
    pub at: i64,
}

impl Store {
    /// Keeps a chat message with its meeting. Returns whether this call stored it (false: that
    /// message id is stored already); [`Error::UnknownMeeting`] if there is no such meeting.
    pub async fn put_chat(&self, message: &StoredChat) -> Result<bool> {
        let added = with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO meeting_chat (meeting_id, message_id, participant_id, name, text, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (meeting_id, message_id) DO NOTHING",
            )
            .bind(&message.meeting_id)
            .bind(&message.message_id)
            .bind(&message.participant_id)
            .bind(&message.name)
            .bind(&message.text)
            .bind(message.at)
            .execute(pool)
            .await
            .map_err(on_meeting(&message.meeting_id))?
            .rows_affected()
        });
        Ok(added == 1)
    }

    /// The meeting's kept chat, oldest first.
    pub async fn chat(&self, meeting_id: &str) -> Result<Vec<StoredChat>> {
        let rows = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, StoredChat>(
                "SELECT meeting_id, message_id, participant_id, name, text, at FROM meeting_chat \
                 WHERE meeting_id = $1 ORDER BY at, message_id",
            )
            .bind(meeting_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
