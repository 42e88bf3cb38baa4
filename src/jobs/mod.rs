//! Background work: one claim loop for the durable queues, one backoff rule for every
//! retry, and the supervisor that keeps workers running and stops them in order.
//!
//! A worker here never decides what a job means: the WebSub verifier, the topic fetcher
//! and the follow worker hand [`claim_loop`] a claim function and a handler. The delivery
//! worker keeps its own loop (lanes per callback host, see `websub::deliver`) but runs
//! under the same supervisor and uses the same backoff.

mod backoff;
mod supervisor;

pub use backoff::{Backoff, jitter_from};
pub use supervisor::{Stop, Supervisor};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Milliseconds since the Unix epoch: the clock of every queue's `next_at` and lease.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long an idle claim loop waits before it looks again, unless woken.
pub const IDLE: Duration = Duration::from_secs(1);

/// Claims due jobs and handles each (all of one claim at once, each in its own task), until
/// `stop` fires; then it finishes the jobs it holds and returns. When a claim finds nothing
/// it waits for `wake` or [`IDLE`]. A failed claim is logged and looked at again later: the
/// claims' leases make a crashed or stopped worker's jobs come due again.
pub async fn claim_loop<T, C, CF, H, HF>(name: &'static str, stop: Stop, wake: Arc<Notify>, mut claim: C, handle: H)
where
    T: Send + 'static,
    C: FnMut() -> CF,
    CF: Future<Output = anyhow::Result<Vec<T>>>,
    H: Fn(T) -> HF,
    HF: Future<Output = ()> + Send + 'static,
{
    while !stop.is_stopped() {
        let due = match claim().await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), worker = name, "cannot claim jobs");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.stopped() => {}
            }
            continue;
        }
        let mut running = tokio::task::JoinSet::new();
        for job in due {
            running.spawn(handle(job));
        }
        // Jobs already claimed are finished even when stopping (the supervisor's grace).
        while running.join_next().await.is_some() {}
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
