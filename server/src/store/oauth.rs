//! The consent flow's state: authorization codes awaiting exchange (sealed, bounded), single-use
//! consent `state` values, and the `jti` of disposable tokens already used.

use sqlx::FromRow;

use super::Store;
use crate::clock::unix_secs;

/// A received authorization code awaiting exchange.
#[derive(Debug, Clone, FromRow)]
pub struct PendingCode {
    pub id: i64,
    pub api_domain: String,
    /// Sealed with [`PENDING_CODE_ACCOUNT`] as the account.
    pub code: String,
    pub received_at: i64,
}

/// How many authorization codes may wait for their exchange, in total and per Kommo host.
#[derive(Debug, Clone, Copy)]
pub struct PendingCodeLimits {
    pub total: u32,
    pub per_host: u32,
}

/// Codes are sealed before an account exists; this stands in for the account id in their binding.
pub const PENDING_CODE_ACCOUNT: i64 = 0;

impl Store {
    /// Keeps a received authorization code (sealed) until it is exchanged, unless `limits` codes are
    /// waiting already (in total, or for this host): then `None` and nothing is stored. Codes older
    /// than `not_before` no longer count (they expired at Kommo).
    pub async fn insert_code(
        &self,
        api_domain: &str,
        sealed_code: &str,
        not_before: i64,
        limits: PendingCodeLimits,
    ) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar(
            "INSERT INTO oauth_codes (api_domain, code, received_at)
             SELECT $1, $2, $3
              WHERE (SELECT COUNT(*) FROM oauth_codes
                      WHERE state IN ('pending', 'exchanging') AND received_at >= $4) < $5
                AND (SELECT COUNT(*) FROM oauth_codes
                      WHERE api_domain = $1 AND state IN ('pending', 'exchanging') AND received_at >= $4) < $6
             RETURNING id",
        )
        .bind(api_domain)
        .bind(sealed_code)
        .bind(unix_secs())
        .bind(not_before)
        .bind(i64::from(limits.total))
        .bind(i64::from(limits.per_host))
        .fetch_optional(&self.pool)
        .await
    }

    /// Claims pending codes received after `not_before` (older ones have expired at Kommo),
    /// including ones whose exchange lease lapsed (a crash mid-exchange). One plain `UPDATE`: when
    /// replicas claim at once, PostgreSQL re-checks its conditions on the row a concurrent claim just
    /// wrote, so a code goes to one of them (a sub-select would be read from the older snapshot and
    /// hand the code to both, and Kommo revokes everything issued from a code presented twice).
    pub async fn claim_codes(
        &self,
        not_before: i64,
        lease_until: i64,
        only: Option<i64>,
    ) -> sqlx::Result<Vec<PendingCode>> {
        let now = unix_secs();
        sqlx::query_as(
            "UPDATE oauth_codes SET state = 'exchanging', lease_until = $2, attempts = attempts + 1
             WHERE received_at >= $1 AND ($4 IS NULL OR id = $4)
               AND (state = 'pending' OR (state = 'exchanging' AND lease_until < $3))
             RETURNING id, api_domain, code, received_at",
        )
        .bind(not_before)
        .bind(lease_until)
        .bind(now)
        .bind(only)
        .fetch_all(&self.pool)
        .await
    }

    /// Ends a code's exchange: `error` None means done. The code itself is erased either way.
    pub async fn finish_code(&self, id: i64, retry: bool, error: Option<&str>) -> sqlx::Result<()> {
        let state = match (error, retry) {
            (None, _) => "done",
            (Some(_), true) => "pending",
            (Some(_), false) => "failed",
        };
        sqlx::query(
            "UPDATE oauth_codes SET state = $2, last_error = $3, lease_until = NULL,
                    code = CASE WHEN $2 = 'pending' THEN code ELSE '' END
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn insert_oauth_state(&self, state_hash: &str, browser_hash: &str, expires_at: i64) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO oauth_states (state_hash, browser_hash, expires_at) VALUES ($1, $2, $3)")
            .bind(state_hash)
            .bind(browser_hash)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Consumes a consent `state`: true when it existed, was bound to this browser and is unexpired.
    /// It is deleted either way, so it works at most once.
    pub async fn consume_oauth_state(&self, state_hash: &str, browser_hash: &str) -> sqlx::Result<bool> {
        let row: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM oauth_states WHERE state_hash = $1 RETURNING browser_hash, expires_at")
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some_and(|(bound_to, expires_at)| bound_to == browser_hash && expires_at >= unix_secs()))
    }

    /// Records a disposable token's `jti`; false when it was already used (a replay).
    pub async fn remember_token_id(&self, jti: &str, expires_at: i64) -> sqlx::Result<bool> {
        let now = unix_secs();
        sqlx::query("DELETE FROM used_token_ids WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        let inserted =
            sqlx::query("INSERT INTO used_token_ids (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
        Ok(inserted.rows_affected() == 1)
    }
}
