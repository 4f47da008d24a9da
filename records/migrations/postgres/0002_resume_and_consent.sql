-- Keep in step with ../sqlite/0002_resume_and_consent.sql.
-- The moderator's vocabulary prompt, so that a transcription still running when the server stops
-- resumes with the same settings when it starts again (a meeting with no ended_at is running).
ALTER TABLE meetings ADD COLUMN prompt TEXT;
-- Consent: when a participant opted out of transcription (ms since the epoch); NULL: not opted out.
-- Their audio is not sent to the transcription worker, and the transcript says so.
ALTER TABLE meeting_participants ADD COLUMN opted_out_at BIGINT;
CREATE INDEX meetings_open ON meetings (room) WHERE ended_at IS NULL;
