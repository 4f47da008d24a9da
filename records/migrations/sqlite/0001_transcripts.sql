-- Transcript store, SQLite. Keep in step with ../postgres/0001_transcripts.sql: same tables, columns
-- and semantics. Times are milliseconds since the Unix epoch (wall clock), as in the protocol.

CREATE TABLE meetings (
    id                TEXT    NOT NULL PRIMARY KEY,
    room              TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    language          TEXT,
    matrix_room       TEXT,
    transcript_digest TEXT
) STRICT;

CREATE INDEX meetings_started ON meetings (started_at);
CREATE INDEX meetings_room_started ON meetings (room, started_at);

CREATE TABLE meeting_participants (
    meeting_id     TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    participant_id TEXT    NOT NULL,
    display_name   TEXT    NOT NULL,
    -- display_name lowercased by the application (Unicode-aware, identical on both backends), for search.
    name_key       TEXT    NOT NULL,
    first_seen     INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, participant_id)
) STRICT;

CREATE INDEX meeting_participants_participant ON meeting_participants (participant_id);
CREATE INDEX meeting_participants_name ON meeting_participants (name_key);

CREATE TABLE segments (
    meeting_id     TEXT    NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    utterance_id   TEXT    NOT NULL,
    participant_id TEXT    NOT NULL,
    speaker_name   TEXT    NOT NULL,
    start_ms       INTEGER NOT NULL,
    end_ms         INTEGER NOT NULL,
    text           TEXT    NOT NULL,
    language       TEXT,
    confidence     REAL,
    -- One row per utterance: a worker that restarts and sends an utterance again changes nothing.
    PRIMARY KEY (meeting_id, utterance_id)
) STRICT;

CREATE INDEX segments_meeting_start ON segments (meeting_id, start_ms);
