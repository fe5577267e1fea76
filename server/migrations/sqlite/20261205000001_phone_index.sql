-- The phone index: the account's contacts and companies in Kommo that have phone numbers, mirrored by
-- the phone sync (and kept fresh by it), so that a call's caller is known without a Kommo search.
CREATE TABLE phone_entities (
    account_id          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- 'contacts' or 'companies'
    entity_kind         TEXT   NOT NULL CHECK (entity_kind IN ('contacts', 'companies')),
    entity_id           BIGINT NOT NULL,
    name                TEXT   NOT NULL,
    -- a contact's first company
    company_id          BIGINT,
    responsible_user_id BIGINT,
    phone_count         INTEGER NOT NULL,
    -- the ids of its leads (a JSON array), open or not
    lead_ids            TEXT   NOT NULL,
    -- Kommo's updated_at (unix s): an older version never replaces a newer one
    updated_at          BIGINT NOT NULL,
    -- unix s: the last time a sync page (or our own write) brought it; a full pass drops what it did not see
    seen_at             BIGINT NOT NULL,
    PRIMARY KEY (account_id, entity_kind, entity_id)
);
-- Each number of each entity, in E.164 with the account's country.
CREATE TABLE phone_numbers (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    e164        TEXT   NOT NULL,
    entity_kind TEXT   NOT NULL,
    entity_id   BIGINT NOT NULL,
    PRIMARY KEY (account_id, e164, entity_kind, entity_id)
);
CREATE INDEX phone_numbers_entity ON phone_numbers (account_id, entity_kind, entity_id);
-- Where the account's sync stands. A pass pages through the contacts, then the companies, updated at
-- or after pass_from (0: all of them, the first sync); it resumes at pass_page after a crash or restart.
CREATE TABLE phone_sync (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- 'contacts' or 'companies' while a pass runs; NULL between passes
    pass_kind       TEXT,
    pass_page       INTEGER NOT NULL DEFAULT 1,
    pass_from       BIGINT  NOT NULL DEFAULT 0,
    -- unix s
    pass_started_at BIGINT  NOT NULL,
    -- entities read by the current (or last) pass
    pass_entities   BIGINT  NOT NULL DEFAULT 0,
    -- unix s: the first complete pass ended (before it, the processor searches Kommo)
    complete_at     BIGINT,
    -- unix s: the last pass ended (the index is as fresh as that pass's start)
    fresh_at        BIGINT,
    -- unix s: the last full pass (pass_from = 0) ended
    full_at         BIGINT,
    -- Kommo's updated_at from which the next pass reads
    next_from       BIGINT  NOT NULL DEFAULT 0,
    updated_at      BIGINT  NOT NULL
);
-- Kommo's own webhooks for the account's contact and company changes, which keep the index fresh
-- between passes: the unguessable path token and whether Kommo took the subscription.
CREATE TABLE kommo_hooks (
    account_id    INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    token    TEXT   NOT NULL UNIQUE,
    -- 'subscribed', or 'unavailable' (the plan has no webhooks, or the token is not an admin's)
    state         TEXT   NOT NULL CHECK (state IN ('subscribed', 'unavailable')),
    -- unix s: the last subscription attempt
    checked_at    BIGINT NOT NULL
);
-- Kommo's webhook bodies, stored before the 200 and applied by a job (kind 'kommo_event').
CREATE TABLE kommo_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    body        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX kommo_events_account ON kommo_events (account_id, id);
-- The account's leads (open and closed: a closed one says so), read by the same passes after the
-- companies, with the contacts and companies each is linked to.
CREATE TABLE phone_leads (
    account_id          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    lead_id             BIGINT NOT NULL,
    name                TEXT   NOT NULL,
    price               BIGINT,
    pipeline_id         BIGINT,
    status_id           BIGINT,
    responsible_user_id BIGINT,
    created_at          BIGINT NOT NULL,
    -- Kommo's updated_at (unix s)
    updated_at          BIGINT NOT NULL,
    seen_at             BIGINT NOT NULL,
    PRIMARY KEY (account_id, lead_id)
);
CREATE TABLE phone_lead_links (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    entity_kind TEXT   NOT NULL,
    entity_id   BIGINT NOT NULL,
    lead_id     BIGINT NOT NULL,
    PRIMARY KEY (account_id, entity_kind, entity_id, lead_id)
);
CREATE INDEX phone_lead_links_lead ON phone_lead_links (account_id, lead_id);
