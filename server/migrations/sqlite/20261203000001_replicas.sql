-- Single-use tickets of the push stream, kept in the database so that a ticket issued by one server
-- process opens a stream on another (several replicas behind one address). Stored as hashes.
CREATE TABLE push_tickets (
    ticket_hash  TEXT    PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id      BIGINT  NOT NULL,
    -- unix seconds
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX push_tickets_expiry ON push_tickets (expires_at);

-- Worker processes (one per server process) and when each last showed it was alive, in unix
-- milliseconds. A job claim counts an account's running jobs only on live workers, so a replica that
-- was killed stops holding the account's share within seconds, not when its leases pass.
CREATE TABLE workers (
    id          TEXT    PRIMARY KEY,
    seen_at_ms  BIGINT  NOT NULL
);
