-- The popup counts a caller's earlier calls by the client's number (E.164).
CREATE INDEX voip_calls_client ON voip_calls (account_id, client_number);
