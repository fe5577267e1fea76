//! Prometheus metrics. Counters are recorded where things happen (`webhooks_received_total`,
//! `webhooks_refused_total{reason}`, `kommo_requests_total{status}`, `jobs_total{outcome}`); the queue's
//! depth and age are read from the database at scrape time, so they are right across processes.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::clock::unix_millis;
use crate::jobs::Queue;
use crate::store::Store;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (a test harness): then that one records.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("webhooks_received_total", "Provider webhooks stored (outcome: stored, duplicate).");
    metrics::describe_counter!("webhooks_refused_total", "Provider webhooks refused, by reason; nothing was stored.");
    metrics::describe_counter!("kommo_requests_total", "Requests to Kommo's API, by answer status.");
    metrics::describe_counter!("jobs_total", "Job runs by outcome (done, retry, parked, dead).");
    metrics::describe_gauge!("jobs_queued", "Jobs waiting (due now or later).");
    metrics::describe_gauge!("jobs_due", "Jobs due now and not yet claimed.");
    metrics::describe_gauge!("jobs_running", "Jobs claimed by a worker.");
    metrics::describe_gauge!("jobs_dead", "Dead letters: jobs parked after failing for good.");
    metrics::describe_gauge!("jobs_oldest_due_age_seconds", "How long the oldest due job has waited.");
    metrics::describe_counter!("phone_sync_entities_total", "Contacts and companies the phone syncs read from Kommo.");
    metrics::describe_gauge!("phone_index_accounts", "Accounts by their phone index's state (syncing, ready).");
    metrics::describe_gauge!("phone_index_numbers", "Phone numbers in the phone indexes of every account.");
}

/// The text exposition, with the queue's and the phone indexes' gauges refreshed from the database.
pub async fn render(queue: &Queue, store: &Store) -> String {
    let handle = handle();
    match queue.depth(unix_millis()).await {
        Ok(depth) => {
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("jobs_queued").set(depth.queued as f64);
                metrics::gauge!("jobs_due").set(depth.due as f64);
                metrics::gauge!("jobs_running").set(depth.running as f64);
                metrics::gauge!("jobs_dead").set(depth.dead as f64);
                metrics::gauge!("jobs_oldest_due_age_seconds").set(depth.oldest_due_ms as f64 / 1000.0);
            }
        }
        Err(error) => tracing::error!(%error, "reading the queue depth for metrics failed"),
    }
    match store.phone_index_totals().await {
        Ok(totals) => {
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!("phone_index_accounts", "state" => "syncing").set(totals.syncing as f64);
                metrics::gauge!("phone_index_accounts", "state" => "ready").set(totals.ready as f64);
                metrics::gauge!("phone_index_numbers").set(totals.numbers as f64);
            }
        }
        Err(error) => tracing::error!(%error, "reading the phone indexes for metrics failed"),
    }
    handle.render()
}
