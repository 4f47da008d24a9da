-- Compliance: transcript hash chains, legal holds, the audit trail and full-text search.
-- Keep in step with ../postgres/0003_compliance.sql: same tables, columns and semantics.

-- Each segment's link in its meeting's hash chain (lowercase hex SHA-256), stored when the meeting is
-- sealed; NULL until then. The last link is meetings.transcript_digest (as "sha256:<hex>").
ALTER TABLE segments ADD COLUMN chain_link TEXT;

-- A meeting under legal hold is never purged by retention and cannot be deleted.
CREATE TABLE legal_holds (
    meeting_id TEXT    NOT NULL PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    since      INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    set_by     TEXT    NOT NULL
) STRICT;

-- The audit trail: append-only, each entry chained to the one before by SHA-256 (see docs/http-api.md).
CREATE TABLE audit_log (
    seq        INTEGER NOT NULL PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    entry_hash TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;

-- Full-text search: an FTS5 index of segments.text (unicode61: Unicode case folding, accents kept, so
-- Swedish and English alike). segments has no stable integer key (its rowid may change on VACUUM),
-- so segment_search_keys gives each segment one, used as the FTS rowid. Triggers keep both in step.
CREATE TABLE segment_search_keys (
    id           INTEGER NOT NULL PRIMARY KEY,
    meeting_id   TEXT    NOT NULL,
    utterance_id TEXT    NOT NULL,
    UNIQUE (meeting_id, utterance_id)
) STRICT;

CREATE VIRTUAL TABLE segments_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 0');

CREATE TRIGGER segments_search_insert AFTER INSERT ON segments
BEGIN
    INSERT INTO segment_search_keys (meeting_id, utterance_id) VALUES (new.meeting_id, new.utterance_id);
    INSERT INTO segments_fts (rowid, text)
        SELECT id, new.text FROM segment_search_keys WHERE meeting_id = new.meeting_id AND utterance_id = new.utterance_id;
END;

CREATE TRIGGER segments_search_delete AFTER DELETE ON segments
BEGIN
    DELETE FROM segments_fts WHERE rowid =
        (SELECT id FROM segment_search_keys WHERE meeting_id = old.meeting_id AND utterance_id = old.utterance_id);
    DELETE FROM segment_search_keys WHERE meeting_id = old.meeting_id AND utterance_id = old.utterance_id;
END;

CREATE TRIGGER segments_search_update AFTER UPDATE OF meeting_id, utterance_id, text ON segments
BEGIN
    UPDATE segment_search_keys SET meeting_id = new.meeting_id, utterance_id = new.utterance_id
        WHERE meeting_id = old.meeting_id AND utterance_id = old.utterance_id;
    UPDATE segments_fts SET text = new.text WHERE rowid =
        (SELECT id FROM segment_search_keys WHERE meeting_id = new.meeting_id AND utterance_id = new.utterance_id);
END;

-- Segments stored before this migration.
INSERT INTO segment_search_keys (meeting_id, utterance_id) SELECT meeting_id, utterance_id FROM segments;
INSERT INTO segments_fts (rowid, text)
    SELECT k.id, s.text FROM segments s JOIN segment_search_keys k ON k.meeting_id = s.meeting_id AND k.utterance_id = s.utterance_id;
