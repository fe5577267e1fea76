-- The seed's tables. Every row of tenant data belongs to one account, through our own `accounts.id`.
-- Kommo's account id and subdomain are plain properties (a subdomain can change).

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kommo_account_id  BIGINT  NOT NULL UNIQUE,
    subdomain         TEXT    NOT NULL,
    country           TEXT,
    timezone          TEXT,
    -- installed | needs_reauth | disabled
    state             TEXT    NOT NULL DEFAULT 'installed'
                      CHECK (state IN ('installed', 'needs_reauth', 'disabled')),
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

-- OAuth tokens, sealed (see server/src/crypto.rs): never stored in clear.
CREATE TABLE kommo_auth_tokens (
    account_id     INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    access_token   TEXT    NOT NULL,
    refresh_token  TEXT    NOT NULL,
    expires_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE widget_settings (
    account_id          INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    active              BOOLEAN NOT NULL DEFAULT FALSE,
    voip_login          TEXT    NOT NULL DEFAULT '',
    -- The VoIP password, sealed and bound to this account and column.
    voip_token          TEXT,
    -- Unguessable id in the provider webhook URL: /hooks/voip/{hook_id}.
    hook_id             TEXT    NOT NULL UNIQUE,
    -- Call-handling configuration (JSON), filled by the settings issue.
    config              TEXT    NOT NULL DEFAULT '{}',
    updated_by_user_id  BIGINT,
    updated_at          BIGINT  NOT NULL
);

CREATE TABLE voip_users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kommo_user_id  BIGINT  NOT NULL,
    extension_id   TEXT    NOT NULL,
    UNIQUE (account_id, extension_id)
);

CREATE TABLE voip_calls (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id           INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id              TEXT    NOT NULL,
    voip_account_id      TEXT    NOT NULL,
    from_number          TEXT    NOT NULL,
    to_number            TEXT    NOT NULL,
    -- inbound | outbound, once known
    direction            TEXT,
    extension            TEXT,
    -- the provider's latest call status (ringing, answered, ended, missed, busy, failed)
    status               TEXT    NOT NULL,
    started_at           BIGINT  NOT NULL,
    duration             BIGINT,
    recording_url        TEXT,
    responsible_user_id  BIGINT,
    -- Kommo's call_status 1-7 from the manager's call result
    call_result          INTEGER,
    -- Delivery into Kommo, kept apart from the call status: pending | delivered | failed
    delivery_status      TEXT    NOT NULL DEFAULT 'pending',
    entity_id            BIGINT,
    entity_type          TEXT,
    unsorted_uid         TEXT,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    UNIQUE (account_id, call_id)
);
