//! The push channel's shared state: single-use stream tickets (`push_tickets`, so a ticket issued by
//! one replica opens a stream on another), and on PostgreSQL the `push` notification channel that
//! carries call events to every replica's open streams, whichever replica received the webhook.

use futures_util::{Stream, StreamExt};
use sqlx::postgres::PgListener;

use super::{AccountId, Engine, Store};
use crate::clock::unix_secs;

/// The PostgreSQL notification channel of push events.
pub const CHANNEL: &str = "kommo_voip_push";
/// PostgreSQL refuses notification payloads from 8000 bytes; a larger event is not sent.
pub const MAX_PAYLOAD: usize = 7900;

impl Store {
    /// Keeps a ticket (its hash) for `user_id` of `account` until `expires_at` (unix s), unless the
    /// user holds `max_per_user` unexpired ones already: then false and nothing is stored.
    pub async fn insert_push_ticket(
        &self,
        ticket_hash: &str,
        account: AccountId,
        user_id: i64,
        expires_at: i64,
        max_per_user: i64,
    ) -> sqlx::Result<bool> {
        let now = unix_secs();
        let inserted = sqlx::query(
            "INSERT INTO push_tickets (ticket_hash, account_id, user_id, expires_at)
             SELECT $1, $2, $3, $4
              WHERE (SELECT COUNT(*) FROM push_tickets
                      WHERE account_id = $2 AND user_id = $3 AND expires_at >= $5) < $6",
        )
        .bind(ticket_hash)
        .bind(account.0)
        .bind(user_id)
        .bind(expires_at)
        .bind(now)
        .bind(max_per_user)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Spends a ticket: its account and user when it existed and had not expired at `now`. It is
    /// deleted either way, so it works at most once, on whichever replica it is presented.
    pub async fn take_push_ticket(&self, ticket_hash: &str, now: i64) -> sqlx::Result<Option<(AccountId, i64)>> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as("DELETE FROM push_tickets WHERE ticket_hash = $1 RETURNING account_id, user_id, expires_at")
                .bind(ticket_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.filter(|(_, _, expires_at)| *expires_at >= now).map(|(account, user, _)| (AccountId(account), user)))
    }

    /// Sends serialized call events to every replica (PostgreSQL only; a SQLite server is one process
    /// and publishes in memory): packed into as few notifications as fit PostgreSQL's payload limit, one
    /// event per line, `<account>:<event>`. Delivery is at most once and only to replicas listening
    /// now, which is what a live popup needs; a widget that reconnects asks for its calls again.
    pub async fn notify_push(&self, events: &[(AccountId, String)]) -> sqlx::Result<()> {
        if self.engine != Engine::Postgres {
            return Ok(());
        }
        let mut payload = String::new();
        for (account, event) in events {
            let line = format!("{}:{event}", account.0);
            if line.len() > MAX_PAYLOAD || line.contains('\n') {
                tracing::warn!(account.id = account.0, bytes = line.len(), "push event too large to send; skipped");
                continue;
            }
            if !payload.is_empty() && payload.len() + 1 + line.len() > MAX_PAYLOAD {
                self.notify(&payload).await?;
                payload.clear();
            }
            if !payload.is_empty() {
                payload.push('\n');
            }
            payload.push_str(&line);
        }
        if !payload.is_empty() {
            self.notify(&payload).await?;
        }
        Ok(())
    }

    async fn notify(&self, payload: &str) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&self.pool).await.map(drop)
    }

    /// The push events every replica (this one too) notified, with their account; `None` on SQLite.
    /// The stream reconnects by itself after a lost connection (events sent meanwhile are missed).
    pub async fn listen_push(&self) -> sqlx::Result<Option<impl Stream<Item = (AccountId, String)> + Send + 'static>> {
        if self.engine != Engine::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(
            listener
                .into_stream()
                .filter_map(|notification| async move {
                    match notification {
                        Ok(notification) => Some(
                            notification
                                .payload()
                                .lines()
                                .filter_map(|line| {
                                    let (account, event) = line.split_once(':')?;
                                    Some((AccountId(account.parse().ok()?), event.to_owned()))
                                })
                                .collect::<Vec<_>>(),
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "push notifications: the listening connection failed; reconnecting");
                            None
                        }
                    }
                })
                .flat_map(futures_util::stream::iter),
        ))
    }
}
