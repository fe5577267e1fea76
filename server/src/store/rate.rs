//! The rate budget towards Kommo: the next free send slot per bucket (an account, or a host before
//! the account exists), shared by every server process through the database.

use super::Store;

impl Store {
    /// Reserves the next send slot of `bucket`, `spacing_ms` after the previous one, unless that slot
    /// starts more than `max_wait_ms` from `now_ms`: `Ok(start)` (unix ms) when reserved, `Err(next)`
    /// with the next free slot when not. One atomic statement, so processes sharing the database
    /// never take the same slot: together they stay within the rate.
    pub async fn reserve_send_slot(
        &self,
        bucket: &str,
        now_ms: i64,
        spacing_ms: i64,
        max_wait_ms: i64,
    ) -> sqlx::Result<Result<i64, i64>> {
        let reserved: Option<i64> = sqlx::query_scalar(
            "INSERT INTO kommo_rate (bucket, next_at_ms) VALUES ($1, $2 + $3)
             ON CONFLICT (bucket) DO UPDATE SET next_at_ms = CASE WHEN kommo_rate.next_at_ms > $2 THEN kommo_rate.next_at_ms ELSE $2 END + $3
                 WHERE kommo_rate.next_at_ms <= $2 + $4
             RETURNING next_at_ms - $3",
        )
        .bind(bucket)
        .bind(now_ms)
        .bind(spacing_ms)
        .bind(max_wait_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(start) = reserved {
            return Ok(Ok(start));
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT next_at_ms FROM kommo_rate WHERE bucket = $1")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Err(next.unwrap_or(now_ms)))
    }
}
