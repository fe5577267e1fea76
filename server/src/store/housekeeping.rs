//! Housekeeping: retention and erasure, run every few minutes by one loop per process.

use std::time::Duration;

use super::Store;
use crate::config::Retention;

impl Store {
    /// Forgets what no one needs any more; returns the rows removed. Finished jobs after a week;
    /// provider events applied a month ago (their call stays in `voip_calls`; a provider retry that late
    /// is no longer recognised as a duplicate, and none retries that long), both sooner when
    /// `retention.finished` is shorter; events no job will fold (a call that never ended) after
    /// `retention.finished`; finished calls, their write records and results, and dead jobs
    /// after `retention.finished`; a disabled account whole after `retention.erase_disabled_after`;
    /// consent states past their expiry; authorization codes left unexchanged a day after Kommo's
    /// 20-minute lifetime ended; pacing rows of idle buckets; call lists untouched for 30 days.
    pub async fn housekeeping(&self, now: i64, retention: &Retention) -> sqlx::Result<u64> {
        const DAY: i64 = 24 * 3600;
        let secs = |age: Duration| i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        let keep_finished = secs(retention.finished);
        let finished = now.saturating_sub(keep_finished);
        // A call whose job is queued or running is not finished, whatever its age.
        const IDLE: &str = "NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.account_id = t.account_id
                              AND j.subject = t.call_id AND j.state IN ('queued', 'running'))";
        let mut removed = 0;
        let statements: [(String, i64); 16] = [
            (
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < $1".into(),
                (now - (7 * DAY).min(keep_finished)) * 1000,
            ),
            ("DELETE FROM jobs WHERE state = 'dead' AND updated_at < $1".into(), finished * 1000),
            (
                "DELETE FROM webhook_inbox WHERE applied_at IS NOT NULL AND applied_at < $1".into(),
                now - (30 * DAY).min(keep_finished),
            ),
            // Events no job will fold: a call that never ended, or a late event after its call's end.
            (
                format!("DELETE FROM webhook_inbox AS t WHERE applied_at IS NULL AND received_at < $1 AND {IDLE}"),
                finished,
            ),
            (format!("DELETE FROM voip_calls AS t WHERE updated_at < $1 AND {IDLE}"), finished),
            (format!("DELETE FROM kommo_writes AS t WHERE updated_at < $1 AND {IDLE}"), finished),
            (format!("DELETE FROM call_results AS t WHERE updated_at < $1 AND {IDLE}"), finished),
            ("DELETE FROM oauth_states WHERE expires_at < $1".into(), now),
            ("DELETE FROM push_tickets WHERE expires_at < $1".into(), now),
            ("DELETE FROM workers WHERE seen_at_ms < $1".into(), (now - DAY) * 1000),
            ("DELETE FROM oauth_codes WHERE received_at < $1".into(), now - DAY),
            // Call lists untouched for a month (an unfinished one too); dial guards long released.
            ("DELETE FROM call_lists WHERE updated_at_ms < $1".into(), (now - 30 * DAY) * 1000),
            ("DELETE FROM dial_guards WHERE until_ms < $1".into(), (now - DAY) * 1000),
            // A call's binding outlives its events' redeliveries (Zadarma retries for hours, not days).
            ("DELETE FROM call_bindings WHERE created_at < $1".into(), now - 2 * DAY),
            // Pacing rows of buckets idle for a minute say nothing any more.
            ("DELETE FROM kommo_rate WHERE next_at_ms < $1".into(), (now - 60) * 1000),
            // Erasure after Kommo's disable hook: every table hangs off accounts with ON DELETE CASCADE.
            (
                "DELETE FROM accounts WHERE state = 'disabled' AND updated_at < $1".into(),
                now.saturating_sub(secs(retention.erase_disabled_after)),
            ),
        ];
        for (statement, cutoff) in statements {
            removed += sqlx::query(&statement).bind(cutoff).execute(&self.pool).await?.rows_affected();
        }
        Ok(removed)
    }
}
