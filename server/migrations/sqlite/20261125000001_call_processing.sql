-- Durable call processing: the inbox of provider webhooks, the job table, the Kommo write ledger
-- (recovery points) and the managers' call results. Portable to PostgreSQL: no SQLite-only syntax
-- beyond AUTOINCREMENT ids; the job claim is one UPDATE ... WHERE id IN (SELECT ...) RETURNING.

-- Every provider webhook we answered 200, stored before the answer. A delivery repeated by the
-- provider (same webhook-id) or the same event sent twice under new ids (same event_key) is stored once.
CREATE TABLE webhook_inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    webhook_id   TEXT    NOT NULL,
    -- callId + '/' + the event's kind (type, else status): one row per provider event
    event_key    TEXT    NOT NULL,
    call_id      TEXT    NOT NULL,
    -- the verified raw body (JSON, schema-checked before storing)
    body         TEXT    NOT NULL,
    received_at  BIGINT  NOT NULL,
    -- set when the worker folded the event into voip_calls
    applied_at   BIGINT,
    UNIQUE (account_id, webhook_id),
    UNIQUE (account_id, event_key)
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (account_id, call_id) WHERE applied_at IS NULL;

-- Work towards Kommo. One kind today: 'call' (subject = the provider's call id): fold the call's new
-- events, plan the Kommo writes, execute the ones not done yet.
-- queued -> running -> done | dead (parked with its last error until someone retries it).
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    -- unix milliseconds: not before
    run_at        BIGINT  NOT NULL,
    locked_by     TEXT,
    -- unix milliseconds: a running job whose lease passed is claimable again (its worker died)
    locked_until  BIGINT,
    last_error    TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
-- At most one queued job per subject: a burst of events for one call makes one job.
CREATE UNIQUE INDEX jobs_one_queued ON jobs (account_id, kind, subject) WHERE state = 'queued';
CREATE INDEX jobs_due ON jobs (state, run_at);
-- A claim picks each account's oldest due job through this index (fair, whatever the backlog).
CREATE INDEX jobs_account_due ON jobs (account_id, state, run_at);

-- Recovery points of Kommo writes: one row per (call, action key). 'sending' is written before the
-- request leaves, 'done' (with Kommo's ids) after it answered. A 'sending' row found on a retry means
-- the outcome is unknown: look in Kommo before posting again.
CREATE TABLE kommo_writes (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id      TEXT    NOT NULL,
    action_key   TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('sending', 'done')),
    -- Kommo's answer worth keeping: entity ids, unsorted uid (JSON)
    outcome      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (account_id, call_id, action_key)
);

-- The manager's call result from the widget, accepted before or after the call's end webhook.
CREATE TABLE call_results (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id      TEXT    NOT NULL,
    -- shared::CallResult as JSON
    result       TEXT    NOT NULL,
    user_id      BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (account_id, call_id)
);

-- voip_calls gains what the worker learns while folding events and delivering.
ALTER TABLE voip_calls ADD COLUMN answered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE voip_calls ADD COLUMN client_number TEXT;
ALTER TABLE voip_calls ADD COLUMN delivery_error TEXT;
ALTER TABLE voip_calls ADD COLUMN delivered_at BIGINT;
ALTER TABLE voip_calls ADD COLUMN kommo_call_id BIGINT;
