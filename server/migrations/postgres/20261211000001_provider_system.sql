-- The telephony system the account runs (shared::ProviderSystem): which adapter reads its webhooks, checks
-- its credentials and places its calls.
ALTER TABLE widget_settings ADD COLUMN provider_system TEXT NOT NULL DEFAULT 'standard'
    CHECK (provider_system IN ('standard', 'asterisk', 'zadarma', 'yeastar', 'twilio'));
