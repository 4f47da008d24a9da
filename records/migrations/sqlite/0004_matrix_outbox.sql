-- Keep in step with ../postgres/0004_matrix_outbox.sql.
-- The Matrix outbox: every message the bot owes a Matrix room (transcription notices, the meeting
-- summary with its transcript files), written in the same store as the meeting and drained by the
-- delivery task, so nothing is lost while the homeserver or this server is down.
CREATE TABLE matrix_outbox (
    -- Random UUID; the Matrix transaction ids of the row's events derive from it (idempotent retries).
    id              TEXT    NOT NULL PRIMARY KEY,
    meeting_id      TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    -- transcription_started, transcription_stopped or summary.
    kind            TEXT    NOT NULL,
    matrix_room     TEXT    NOT NULL,
    -- pending (not yet or not fully sent; retried), sent, failed (given up; see last_error).
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- Milliseconds since the Unix epoch.
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    -- JSON object: part (notice, summary, vtt, txt) -> Matrix event id, filled as each part is sent.
    event_ids       TEXT    NOT NULL DEFAULT '{}',
    -- Which summarizer wrote the summary (extractive, llm:<model>).
    summary_source  TEXT,
    UNIQUE (meeting_id, kind, matrix_room)
) STRICT;

CREATE INDEX matrix_outbox_due ON matrix_outbox (next_attempt_at) WHERE state = 'pending';
