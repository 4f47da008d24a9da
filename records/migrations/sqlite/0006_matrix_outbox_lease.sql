-- Keep in step with ../postgres/0006_matrix_outbox_lease.sql.
-- Several servers on one store drain the Matrix outbox: a server delivering a row holds it until
-- lease_until (milliseconds since the Unix epoch); the others leave it alone until then.
-- lease_owner names the server holding it (a random id per server run).
ALTER TABLE matrix_outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE matrix_outbox ADD COLUMN lease_owner TEXT;
