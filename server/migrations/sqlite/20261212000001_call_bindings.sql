-- What a system signed about each call, for a system whose signature leaves the call id out (Zadarma): the
-- first event of a call binds its id to the numbers and start it signed, and a later event of that id that
-- signed others (a captured signature relabelled with this call's id) is refused, on every replica and
-- across restarts. Kept two days.
CREATE TABLE call_bindings (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    call_id    TEXT    NOT NULL,
    -- the client's number and the start, as signed
    signed     TEXT    NOT NULL,
    -- our line's number, once an event signed it (one call's ANSWER signs the extension instead)
    line       TEXT,
    -- unix seconds
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (account_id, call_id)
);
