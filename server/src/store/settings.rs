//! An account's settings: the provider connection, call handling, the extension map, and the
//! webhook endpoint with its signing secrets.

use sqlx::FromRow;

use super::{AccountId, Flag, Store};
use crate::clock::unix_secs;

/// The stored settings of one account.
#[derive(Debug, Clone, FromRow)]
pub struct SettingsRow {
    #[sqlx(try_from = "Flag")]
    pub active: bool,
    pub credential_method: String,
    pub provider_url: String,
    pub voip_login: String,
    /// The sealed VoIP password or API key (see `crypto`), if one was saved.
    pub voip_token: Option<String>,
    pub hook_id: String,
    pub webhook_secret_hint: String,
    /// `shared::CallHandling` as JSON.
    pub config: String,
    pub fallback_user_id: Option<i64>,
    /// `shared::ProviderSystem`'s name.
    pub provider_system: String,
}

/// What a settings save writes (with `active` on).
pub struct SettingsWrite<'a> {
    pub provider_system: &'a str,
    pub credential_method: &'a str,
    pub provider_url: &'a str,
    pub voip_login: &'a str,
    /// A newly sealed password or key, or `None` to keep the stored one.
    pub sealed_secret: Option<String>,
    pub voip_account_id: &'a str,
    pub config: String,
    pub fallback_user_id: Option<i64>,
    pub extensions: Vec<(String, i64)>,
    pub user_id: i64,
    /// Used only when the account has no webhook endpoint yet.
    pub new_endpoint: NewEndpoint,
}

/// A webhook endpoint to create: its id and its sealed signing secret.
pub struct NewEndpoint {
    pub hook_id: String,
    pub sealed_secret: String,
    pub hint: String,
}

/// What a webhook path resolves to.
#[derive(Debug, Clone)]
pub struct Hook {
    pub account: AccountId,
    /// Kommo's `active` flag: call processing is on.
    pub active: bool,
    /// The signing secret, sealed.
    pub secret: String,
    /// The secret before the last rotation, sealed, while it still verifies, and until when (unix s).
    pub previous_secret: Option<(String, i64)>,
    /// The call-handling settings (JSON of `shared::CallHandling`).
    pub config: String,
    /// The telephony system (`shared::ProviderSystem`'s name): which adapter reads its webhooks.
    pub provider_system: String,
    /// The sealed VoIP secret (Zadarma's API secret and Twilio's auth token sign their webhooks).
    pub voip_token: Option<String>,
    pub voip_login: String,
}

impl Store {
    pub async fn settings(&self, account: AccountId) -> sqlx::Result<Option<SettingsRow>> {
        sqlx::query_as(
            "SELECT CASE WHEN active THEN 1 ELSE 0 END AS active, credential_method, provider_url, voip_login, voip_token, hook_id, webhook_secret_hint,
                    config, fallback_user_id, provider_system
             FROM widget_settings WHERE account_id = $1",
        )
        .bind(account.0)
        .fetch_optional(&self.pool)
        .await
    }

    /// The account's extension map, in the order it was entered.
    pub async fn extensions(&self, account: AccountId) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT extension_id, kommo_user_id FROM voip_users WHERE account_id = $1 ORDER BY id")
            .bind(account.0)
            .fetch_all(&self.pool)
            .await
    }

    /// Writes the account's settings and extension map in one transaction, so two concurrent saves
    /// leave one of them whole (never a mix). The stored secret is kept unless replaced, and the
    /// webhook endpoint is created once. Returns whether the endpoint was created by this save.
    pub async fn save_settings(&self, account: AccountId, write: SettingsWrite<'_>) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let created: Flag = sqlx::query_scalar(
            "INSERT INTO widget_settings (account_id, active, credential_method, provider_url, voip_login, voip_token,
                                          voip_account_id, hook_id, webhook_secret, webhook_secret_hint, config,
                                          fallback_user_id, updated_by_user_id, updated_at, provider_system)
             VALUES ($1, TRUE, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (account_id) DO UPDATE
                SET active = TRUE,
                    provider_system = excluded.provider_system,
                    credential_method = excluded.credential_method,
                    provider_url = excluded.provider_url,
                    voip_login = excluded.voip_login,
                    voip_token = COALESCE(excluded.voip_token, widget_settings.voip_token),
                    voip_account_id = excluded.voip_account_id,
                    config = excluded.config,
                    fallback_user_id = excluded.fallback_user_id,
                    updated_by_user_id = excluded.updated_by_user_id,
                    updated_at = excluded.updated_at
             RETURNING CASE WHEN hook_id = $7 THEN 1 ELSE 0 END",
        )
        .bind(account.0)
        .bind(write.credential_method)
        .bind(write.provider_url)
        .bind(write.voip_login)
        .bind(write.sealed_secret)
        .bind(write.voip_account_id)
        .bind(&write.new_endpoint.hook_id)
        .bind(&write.new_endpoint.sealed_secret)
        .bind(&write.new_endpoint.hint)
        .bind(&write.config)
        .bind(write.fallback_user_id)
        .bind(write.user_id)
        .bind(unix_secs())
        .bind(write.provider_system)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM voip_users WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
        for (extension, user_id) in &write.extensions {
            sqlx::query("INSERT INTO voip_users (account_id, kommo_user_id, extension_id) VALUES ($1, $2, $3)")
                .bind(account.0)
                .bind(user_id)
                .bind(extension)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(created.into())
    }

    /// Turns call processing off for the account (Kommo's `active: 'N'`), keeping everything else.
    pub async fn deactivate(&self, account: AccountId, user_id: i64) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE widget_settings SET active = FALSE, updated_by_user_id = $2, updated_at = $3 WHERE account_id = $1",
        )
        .bind(account.0)
        .bind(user_id)
        .bind(unix_secs())
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Replaces the webhook signing secret; the current one keeps verifying until `previous_until`.
    /// Returns false when the account has no endpoint yet.
    /// The account's current signing secret, sealed (for an admin's reveal); `None` before the first save.
    pub async fn webhook_secret(&self, account: AccountId) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT webhook_secret FROM widget_settings WHERE account_id = $1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn rotate_webhook_secret(
        &self,
        account: AccountId,
        sealed_secret: &str,
        hint: &str,
        previous_until: i64,
    ) -> sqlx::Result<bool> {
        let rotated = sqlx::query(
            "UPDATE widget_settings
                SET previous_webhook_secret = webhook_secret, previous_secret_until = $4,
                    webhook_secret = $2, webhook_secret_hint = $3, updated_at = $5
             WHERE account_id = $1",
        )
        .bind(account.0)
        .bind(sealed_secret)
        .bind(hint)
        .bind(previous_until)
        .bind(unix_secs())
        .execute(&self.pool)
        .await?;
        Ok(rotated.rows_affected() == 1)
    }

    /// Resolves a webhook path to its account. Unknown ids give `None`.
    pub async fn hook(&self, hook_id: &str, now: i64) -> sqlx::Result<Option<Hook>> {
        type Row = (i64, Flag, String, Option<String>, Option<i64>, String, String, Option<String>, String);
        let row: Option<Row> = sqlx::query_as(
            "SELECT account_id, CASE WHEN active THEN 1 ELSE 0 END, webhook_secret,
                    CASE WHEN previous_secret_until > $2 THEN previous_webhook_secret END, previous_secret_until,
                    config, provider_system, voip_token, voip_login
             FROM widget_settings WHERE hook_id = $1",
        )
        .bind(hook_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(account, active, secret, previous, until, config, provider_system, voip_token, voip_login)| {
            Hook {
                account: AccountId(account),
                active: active.into(),
                secret,
                previous_secret: previous.zip(until),
                config,
                provider_system,
                voip_token,
                voip_login,
            }
        }))
    }

    /// The Kommo user an extension belongs to in this account, if mapped.
    pub async fn user_for_extension(&self, account: AccountId, extension: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT kommo_user_id FROM voip_users WHERE account_id = $1 AND extension_id = $2")
            .bind(account.0)
            .bind(extension)
            .fetch_optional(&self.pool)
            .await
    }
}
