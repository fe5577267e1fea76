-- The seed's tables. Every row of tenant data belongs to one account, through our own `accounts.id`.
-- Kommo's account id and subdomain are plain properties (a subdomain can change).

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kommo_account_id  BIGINT  NOT NULL UNIQUE,
    subdomain         TEXT    NOT NULL,
    -- Host of the account's Kommo API (from the install's `referer`, allowlisted), e.g. acme.kommo.com
    api_domain        TEXT    NOT NULL,
    country           TEXT,
    timezone          TEXT,
    -- installed: tokens work; needs_reauth: refresh failed, an admin must re-authorize;
    -- suspended: Kommo answered 402/403 (see state_reason); disabled: the disable hook ran.
    state             TEXT    NOT NULL DEFAULT 'installed'
                      CHECK (state IN ('installed', 'needs_reauth', 'suspended', 'disabled')),
    state_reason      TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

-- OAuth tokens, sealed (see server/src/crypto.rs): never stored in clear.
CREATE TABLE kommo_auth_tokens (
    account_id     INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    access_token   TEXT    NOT NULL,
    refresh_token  TEXT    NOT NULL,
    expires_at     BIGINT  NOT NULL,
    -- Refresh lease: a process that set it (to now + a few seconds) is refreshing; others wait.
    -- Shared through the database so several server processes refresh once between them.
    refreshing_until BIGINT,
    updated_at     BIGINT  NOT NULL
);

-- Authorization codes received on the Redirect URI, kept (sealed) until exchanged, so that a slow
-- Kommo or a restart does not lose an install. Kommo's codes live 20 minutes.
CREATE TABLE oauth_codes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    api_domain   TEXT    NOT NULL,
    code         TEXT    NOT NULL,
    -- pending | exchanging | done | failed
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    received_at  BIGINT  NOT NULL,
    lease_until  BIGINT
);

-- Single-use `state` values of the consent flow, stored as hashes, bound to a browser cookie.
CREATE TABLE oauth_states (
    state_hash   TEXT    PRIMARY KEY,
    browser_hash TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL
);

-- `jti` of disposable tokens already used, kept until the token would have expired.
CREATE TABLE used_token_ids (
    jti         TEXT    PRIMARY KEY,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX used_token_ids_expiry ON used_token_ids (expires_at);

CREATE TABLE widget_settings (
    account_id               INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- Kommo's `active` flag: while false, provider webhooks are refused and nothing is processed.
    active                   BOOLEAN NOT NULL DEFAULT FALSE,
    -- How we sign in to the VoIP provider: password (HTTP Basic), api_key (Bearer), or oauth2 (the
    -- provider's client-credentials grant; voip_login then holds the client id).
    credential_method        TEXT    NOT NULL DEFAULT 'password'
                             CHECK (credential_method IN ('password', 'api_key', 'oauth2')),
    provider_url             TEXT    NOT NULL DEFAULT '',
    voip_login               TEXT    NOT NULL DEFAULT '',
    -- The VoIP password or API key, sealed and bound to this account and column.
    voip_token               TEXT,
    -- The provider's own account id, as its credentials check named it.
    voip_account_id          TEXT,
    -- Unguessable id in the provider webhook URL: /hooks/voip/{hook_id}.
    hook_id                  TEXT    NOT NULL UNIQUE,
    -- Standard Webhooks signing secret (sealed), the last characters of it, and the previous one,
    -- which keeps verifying until previous_secret_until after a rotation.
    webhook_secret           TEXT    NOT NULL,
    webhook_secret_hint      TEXT    NOT NULL,
    previous_webhook_secret  TEXT,
    previous_secret_until    BIGINT,
    -- Call-handling configuration (shared::CallHandling as JSON).
    config                   TEXT    NOT NULL DEFAULT '{}',
    -- Kommo user for calls on extensions that are not mapped in voip_users.
    fallback_user_id         BIGINT,
    updated_by_user_id       BIGINT,
    updated_at               BIGINT  NOT NULL
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

-- Request pacing towards Kommo, shared by every server process: the next free send slot per bucket
-- (an account, or a host before the account exists), in unix milliseconds.
CREATE TABLE kommo_rate (
    bucket      TEXT    PRIMARY KEY,
    next_at_ms  BIGINT  NOT NULL
);
