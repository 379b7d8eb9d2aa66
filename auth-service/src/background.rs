//! Work done on a schedule while the server runs: writing the failed
//! authentications counted so far (one row per kind, route and client per window)
//! and when keys were last used, logging the requests refused because their client
//! was limited (one line per client per window), and enforcing retention (audit age
//! and row count, expired revocations, ended sessions).

use std::sync::Arc;
use std::time::Duration;

use crate::service::Service;

/// How often the background work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The failed-authentication window: counts are written this often.
    pub flush_every: Duration,
    /// Retention runs this often.
    pub retention_every: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            flush_every: Duration::from_secs(60),
            retention_every: Duration::from_secs(300),
        }
    }
}

/// Runs `f` on the blocking pool; logs its failure.
async fn run(svc: &Arc<Service>, what: &'static str, f: fn(&Service) -> crate::error::Result<u64>) {
    let svc = svc.clone();
    match tokio::task::spawn_blocking(move || f(&svc)).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(task = what, rows = n, "background work done"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(task = what, error = %e, "background work failed; will retry"),
        Err(e) => tracing::error!(task = what, error = %e, "background task panicked"),
    }
}

fn flush(svc: &Service) -> crate::error::Result<u64> {
    svc.flush_auth_failures().map(|n| n as u64)
}

/// Logs the requests refused since the last call because their client was over its
/// failed-authentication limit: one line per client (at most the guard's `max_rows`,
/// the most refused first) and one for the rest. Such requests have no line of their own.
pub fn log_refused(svc: &Service, window: Duration) {
    let refused = svc.guard.take_refused();
    let window_s = window.as_secs();
    for (client, requests) in &refused.clients {
        tracing::warn!(
            client = %client,
            refused = requests,
            window_s,
            "requests refused: client over its failed-authentication limit"
        );
    }
    if refused.other_clients > 0 {
        tracing::warn!(
            clients = refused.other_clients,
            refused = refused.other_requests,
            window_s,
            "requests refused: other clients over their failed-authentication limit"
        );
    }
}

fn key_usage(svc: &Service) -> crate::error::Result<u64> {
    svc.flush_key_usage().map(|n| n as u64)
}

fn retention(svc: &Service) -> crate::error::Result<u64> {
    svc.enforce_retention()
}

/// Starts the background work; it runs until the runtime stops.
pub fn spawn(svc: Arc<Service>, schedule: Schedule) {
    let usage = svc.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(crate::usage::GRANULARITY_S.unsigned_abs()));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            run(&usage, "key_usage", key_usage).await;
        }
    });
    let flusher = svc.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(schedule.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            log_refused(&flusher, schedule.flush_every);
            run(&flusher, "audit_flush", flush).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(schedule.retention_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            run(&svc, "retention", retention).await;
        }
    });
}

/// Writes what is still counted (at shutdown), waiting at most `limit`.
pub async fn final_flush(svc: Arc<Service>, limit: Duration, window: Duration) {
    log_refused(&svc, window);
    let both = async {
        run(&svc, "audit_flush", flush).await;
        run(&svc, "key_usage", key_usage).await;
    };
    if tokio::time::timeout(limit, both).await.is_err() {
        tracing::warn!("the last failed-authentication counts could not be written in time");
    }
}
