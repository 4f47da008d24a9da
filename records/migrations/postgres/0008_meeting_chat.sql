-- The chat of a transcribed meeting, kept with its transcript (`transcription.keep_chat`): each message
-- written while the meeting was transcribed, deleted with the meeting (retention, deletion) and so kept
-- while it is under legal hold.
-- Keep in step with ../sqlite/0008_meeting_chat.sql: same tables, columns and semantics.
CREATE TABLE meeting_chat (
    meeting_id     TEXT COLLATE "C" NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    -- The message's id in its room (unique there).
    message_id     TEXT COLLATE "C" NOT NULL,
    participant_id TEXT   NOT NULL,
    -- The sender's display name when it wrote.
    name           TEXT   NOT NULL,
    text           TEXT   NOT NULL,
    -- When the server received it, milliseconds since the Unix epoch.
    at             BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, message_id)
);
