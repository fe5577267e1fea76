//! The push channel's shared state: single-use stream tickets (`push_tickets`, so a ticket issued by
//! one replica opens a stream on another), and on PostgreSQL the notification channel that carries call
//! events to every replica's open streams, whichever replica received the webhook (sent by
//! [`Store::insert_events`] inside the transaction that stores them).

use futures_util::{Stream, StreamExt};
use sqlx::AnyConnection;
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

impl Store {
    /// Sends call events on the push channel now (outside any other transaction); nothing on SQLite.
    pub async fn notify_push(&self, events: &[(AccountId, &str)]) -> sqlx::Result<()> {
        if self.engine != Engine::Postgres {
            return Ok(());
        }
        let mut connection = self.pool.acquire().await?;
        for payload in payloads(events) {
            notify(&mut connection, &payload).await?;
        }
        Ok(())
    }
}

/// Packs call events into as few notification payloads as fit PostgreSQL's limit: one event per line,
/// `<account>:<event>`. An event too large for one notification is left out (and logged).
pub(crate) fn payloads(events: &[(AccountId, &str)]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for (account, event) in events {
        let line = format!("{}:{event}", account.0);
        if line.len() > MAX_PAYLOAD || line.contains('\n') {
            tracing::warn!(account.id = account.0, bytes = line.len(), "push event too large to send; skipped");
            continue;
        }
        if !payload.is_empty() && payload.len() + 1 + line.len() > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&line);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// `NOTIFY` on the push channel, inside the caller's transaction (heard by every replica at its commit).
pub(crate) async fn notify(connection: &mut AnyConnection, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(connection).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_packed_into_payloads_within_the_limit_and_an_oversized_one_is_left_out() {
        let (one, two) = (AccountId::for_tests(1), AccountId::for_tests(2));
        let event = "x".repeat(3000);
        let huge = "y".repeat(MAX_PAYLOAD);
        let payloads = payloads(&[(one, &event), (two, &event), (one, &huge), (two, &event), (one, "{}")]);
        assert_eq!(payloads.len(), 2, "two events of 3 kB fit one payload, the third starts another");
        assert!(payloads.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let lines: Vec<&str> = payloads.iter().flat_map(|payload| payload.lines()).collect();
        assert_eq!(lines.len(), 4, "the oversized event is left out, the others all go");
        assert_eq!(lines[0], format!("1:{event}"));
        assert_eq!(lines[3], "1:{}");
    }
}
