//! Meeting summaries as records (`meeting_summaries`): one per meeting, written once (the first
//! writer wins, so two servers summarising the same meeting store one), read through the API and
//! deleted with the meeting, so retention, deletion and legal hold cover them as they cover the
//! transcript. The body is the summarizer's JSON, kept as text: the store does not interpret it.

use super::*;

/// A stored meeting summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredSummary {
    pub meeting_id: String,
    /// Which summarizer wrote it: `extractive`, or `llm:<model>`.
    pub source: String,
    /// The summary as JSON text.
    pub body: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl Store {
    /// Stores the meeting's summary unless it has one. Returns whether this call stored it;
    /// [`Error::UnknownMeeting`] if there is no such meeting.
    pub async fn put_summary(&self, meeting_id: &str, source: &str, body: &str) -> Result<bool> {
        let added = with_pool!(self, pool, _DB => {
            sqlx::query(
                "INSERT INTO meeting_summaries (meeting_id, source, body, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (meeting_id) DO NOTHING",
            )
            .bind(meeting_id)
            .bind(source)
            .bind(body)
            .bind(now_ms())
            .execute(pool)
            .await
            .map_err(on_meeting(meeting_id))?
            .rows_affected()
        });
        Ok(added == 1)
    }

    /// The meeting's summary, if one is stored.
    pub async fn summary(&self, meeting_id: &str) -> Result<Option<StoredSummary>> {
        let row = with_pool!(self, pool, _DB => {
            sqlx::query_as::<_, StoredSummary>(
                "SELECT meeting_id, source, body, created_at FROM meeting_summaries WHERE meeting_id = $1",
            )
            .bind(meeting_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }
}
