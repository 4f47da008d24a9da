-- Keep in step with ../postgres/0005_webhook_outbox.sql.
-- Signed webhooks: every event owed to a configured receiver, one row per event and receiver, with
-- its delivery log (attempts, last HTTP status or error, when it was delivered). Written in the same
-- store as the meetings, so events survive a receiver or this server being down; with several
-- servers on one PostgreSQL, a row is delivered by the one that holds its lease.
CREATE TABLE webhook_outbox (
    -- Random UUID; also the event's id in the body (receivers deduplicate by it).
    id              TEXT    NOT NULL PRIMARY KEY,
    -- The receiver's configured name.
    endpoint        TEXT    NOT NULL,
    -- room_started, participant_joined, ... (docs/configuration.md, "Webhooks").
    event           TEXT    NOT NULL,
    room            TEXT,
    -- The exact bytes that are signed and sent (JSON).
    body            TEXT    NOT NULL,
    -- pending (not yet delivered; retried), delivered, failed (given up; see last_error).
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    -- Milliseconds since the Unix epoch.
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- A server delivering the row holds it until then; another may take it after.
    lease_until     INTEGER NOT NULL DEFAULT 0,
    -- Which server holds it (a random id per server run).
    lease_owner     TEXT,
    delivered_at    INTEGER
) STRICT;

CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_created ON webhook_outbox (created_at);
