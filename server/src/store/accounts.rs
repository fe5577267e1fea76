//! Accounts and their Kommo tokens: install, state, the disable hook, the sealed token pair and the
//! refresh lease that makes a refresh happen once across every server process.

use sqlx::FromRow;

use super::{AccountId, Store};
use crate::clock::unix_secs;

/// Where an account's connection to Kommo stands (`accounts.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Installed,
    NeedsReauth,
    Suspended,
    Disabled,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Installed => "installed",
            AccountState::NeedsReauth => "needs_reauth",
            AccountState::Suspended => "suspended",
            AccountState::Disabled => "disabled",
        }
    }

    fn parse(value: &str) -> AccountState {
        match value {
            "installed" => AccountState::Installed,
            "needs_reauth" => AccountState::NeedsReauth,
            "suspended" => AccountState::Suspended,
            // The CHECK constraint allows nothing else.
            _ => AccountState::Disabled,
        }
    }
}

/// An account's connection details.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub kommo_account_id: i64,
    pub subdomain: String,
    pub api_domain: String,
    pub state: AccountState,
    pub state_reason: Option<String>,
}

/// An account's sealed Kommo tokens.
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

impl Store {
    /// Keeps an account's subdomain current (Kommo lets accounts rename; the id is stable).
    pub async fn rename_account(&self, account: AccountId, subdomain: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE accounts SET subdomain = $2, updated_at = $3 WHERE id = $1")
            .bind(account.0)
            .bind(subdomain)
            .bind(unix_secs())
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Records a completed install: creates the account, or updates it when Kommo's account id is
    /// known (a changed subdomain never creates a second account).
    pub async fn install_account(
        &self,
        kommo_account_id: i64,
        subdomain: &str,
        api_domain: &str,
        country: Option<&str>,
    ) -> sqlx::Result<AccountId> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (kommo_account_id, subdomain, api_domain, country, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'installed', $5, $5)
             ON CONFLICT (kommo_account_id) DO UPDATE
                SET subdomain = excluded.subdomain, api_domain = excluded.api_domain,
                    country = COALESCE(excluded.country, accounts.country),
                    state = 'installed', state_reason = NULL, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(kommo_account_id)
        .bind(subdomain)
        .bind(api_domain)
        .bind(country)
        .bind(unix_secs())
        .fetch_one(&self.pool)
        .await?;
        Ok(AccountId(id))
    }

    /// The account Kommo knows as `kommo_account_id`, if we have it.
    pub async fn account_by_kommo_id(&self, kommo_account_id: i64) -> sqlx::Result<Option<AccountId>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE kommo_account_id = $1")
            .bind(kommo_account_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.map(AccountId))
    }

    pub async fn account(&self, account: AccountId) -> sqlx::Result<Option<AccountInfo>> {
        let row: Option<(i64, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT kommo_account_id, subdomain, api_domain, state, state_reason FROM accounts WHERE id = $1",
        )
        .bind(account.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(kommo_account_id, subdomain, api_domain, state, state_reason)| AccountInfo {
            kommo_account_id,
            subdomain,
            api_domain,
            state: AccountState::parse(&state),
            state_reason,
        }))
    }

    pub async fn set_account_state(
        &self,
        account: AccountId,
        state: AccountState,
        reason: Option<&str>,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE accounts SET state = $2, state_reason = $3, updated_at = $4 WHERE id = $1")
            .bind(account.0)
            .bind(state.as_str())
            .bind(reason)
            .bind(unix_secs())
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The disable hook: forget the account's tokens and stop its traffic, in one transaction.
    pub async fn disable_account(&self, account: AccountId) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM kommo_auth_tokens WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE accounts SET state = 'disabled', state_reason = 'disabled in Kommo', updated_at = $2 WHERE id = $1",
        )
        .bind(account.0)
        .bind(unix_secs())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE widget_settings SET active = FALSE WHERE account_id = $1")
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    pub async fn tokens(&self, account: AccountId) -> sqlx::Result<Option<TokenRow>> {
        sqlx::query_as("SELECT access_token, refresh_token, expires_at FROM kommo_auth_tokens WHERE account_id = $1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    /// Stores a sealed token pair and releases any refresh lease.
    pub async fn store_tokens(
        &self,
        account: AccountId,
        access: &str,
        refresh: &str,
        expires_at: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO kommo_auth_tokens (account_id, access_token, refresh_token, expires_at, refreshing_until, updated_at)
             VALUES ($1, $2, $3, $4, NULL, $5)
             ON CONFLICT (account_id) DO UPDATE
                SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    expires_at = excluded.expires_at, refreshing_until = NULL, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(access)
        .bind(refresh)
        .bind(expires_at)
        .bind(unix_secs())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Takes the account's refresh lease if nobody holds a live one and the stored refresh token is
    /// still `observed` (compare-and-swap: a process that read the row before another one refreshed
    /// must not refresh again with the old token). One conditional UPDATE, atomic on its own, so it
    /// works across server processes sharing the database.
    pub async fn claim_refresh_lease(
        &self,
        account: AccountId,
        observed: &str,
        now: i64,
        until: i64,
    ) -> sqlx::Result<bool> {
        let claimed = sqlx::query(
            "UPDATE kommo_auth_tokens SET refreshing_until = $4
             WHERE account_id = $1 AND refresh_token = $2 AND (refreshing_until IS NULL OR refreshing_until < $3)",
        )
        .bind(account.0)
        .bind(observed)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    pub async fn release_refresh_lease(&self, account: AccountId) -> sqlx::Result<()> {
        sqlx::query("UPDATE kommo_auth_tokens SET refreshing_until = NULL WHERE account_id = $1")
            .bind(account.0)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The account's country (ISO 3166-1 alpha-2, from Kommo), which phone numbers are read with.
    pub async fn account_country(&self, account: AccountId) -> sqlx::Result<Option<String>> {
        let country: Option<Option<String>> = sqlx::query_scalar("SELECT country FROM accounts WHERE id = $1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(country.flatten())
    }
}
