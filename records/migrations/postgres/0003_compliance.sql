-- Compliance: transcript hash chains, legal holds, the audit trail and full-text search.
-- Keep in step with ../sqlite/0003_compliance.sql: same tables, columns and semantics.

-- Each segment's link in its meeting's hash chain (lowercase hex SHA-256), stored when the meeting is
-- sealed; NULL until then. The last link is meetings.transcript_digest (as "sha256:<hex>").
ALTER TABLE segments ADD COLUMN chain_link TEXT;

-- A meeting under legal hold is never purged by retention and cannot be deleted.
CREATE TABLE legal_holds (
    meeting_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    since      BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    set_by     TEXT   NOT NULL
);

-- The audit trail: append-only, each entry chained to the one before by SHA-256 (see docs/http-api.md).
CREATE TABLE audit_log (
    seq        BIGINT NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    client     TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    entry_hash TEXT   NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION samtal_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION samtal_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION samtal_audit_append_only();

-- Full-text search with the language-neutral 'simple' configuration (lowercasing, no stemming, no
-- stop words), so Swedish and English alike. Punctuation is turned into spaces first, so words are
-- runs of letters and digits, as for SQLite's unicode61 tokenizer. The search query uses exactly this
-- expression, so it is served by this index. Needs a UTF-8 database with a UTF-8 locale (C.UTF-8, sv_SE.UTF-8).
CREATE INDEX segments_search ON segments
    USING GIN (to_tsvector('simple', regexp_replace(text, '[^[:alnum:]]+', ' ', 'g')));
