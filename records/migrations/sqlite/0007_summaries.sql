-- Meeting summaries as records: written once when a transcribed meeting has ended, deleted with
-- their meeting (retention, deletion) and so kept while it is under legal hold.
-- Keep in step with ../postgres/0007_summaries.sql: same tables, columns and semantics.
CREATE TABLE meeting_summaries (
    meeting_id TEXT    NOT NULL PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    -- Which summarizer wrote it: `extractive`, or `llm:<model>`.
    source     TEXT    NOT NULL,
    -- The summary as JSON: {"key_points": [...], "decisions": [...], "action_items": [...]},
    -- each point {"speaker": name or null, "text": ...}.
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
