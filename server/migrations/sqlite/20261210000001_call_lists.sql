-- Click-to-call: one call placed per user at a time. A user's row is taken by one conditional upsert
-- (until_ms in the past) before the provider is asked, so a double click, two tabs or two replicas
-- place one call.
CREATE TABLE dial_guards (
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kommo_user_id BIGINT  NOT NULL,
    -- unix ms: the guard holds until then
    until_ms      BIGINT  NOT NULL,
    PRIMARY KEY (account_id, kommo_user_id)
);
-- Call lists: the entities a manager selected in one of Kommo's lists, dialled one after another.
CREATE TABLE call_lists (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kommo_user_id    BIGINT  NOT NULL,
    source           TEXT    NOT NULL CHECK (source IN ('contacts', 'companies', 'leads')),
    state            TEXT    NOT NULL CHECK (state IN ('ready', 'running', 'paused', 'finished', 'stopped')),
    -- the next entry to dial (the number of entries when none is left)
    next_position    INTEGER NOT NULL,
    -- the entry dialled last
    current_position INTEGER,
    -- unix s
    created_at       BIGINT  NOT NULL,
    -- unix ms; every change moves it, and dial and skip compare next_position, so two tabs never both act
    updated_at_ms    BIGINT  NOT NULL
);
CREATE INDEX call_lists_user ON call_lists (account_id, kommo_user_id, id);
CREATE TABLE call_list_entries (
    list_id      INTEGER NOT NULL REFERENCES call_lists (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    entity_id    BIGINT  NOT NULL,
    name         TEXT    NOT NULL,
    -- for a lead, the contact (or company) whose number is dialled
    via          TEXT,
    -- E.164, and as people of the account read it; NULL: the entity has no number
    number       TEXT,
    number_shown TEXT,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'calling', 'answered', 'not_answered', 'failed',
                                                   'skipped', 'no_number')),
    -- the provider's call id, once dialled
    call_id      TEXT,
    -- unix ms
    dialed_at_ms BIGINT,
    ended_at_ms  BIGINT,
    duration     INTEGER,
    -- a dial error code (shared::api::dial_errors)
    error        TEXT,
    PRIMARY KEY (list_id, position)
);
CREATE INDEX call_list_entries_call ON call_list_entries (account_id, call_id);
