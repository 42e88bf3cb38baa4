//! Keeps the hub's workers running: a worker that ends or panics is started again (after a
//! pause that grows if it keeps dying), and at shutdown every worker is told to stop, given
//! a grace period to finish the jobs it holds, and only then aborted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Backoff;

/// A worker's view of shutdown: check it between jobs, or wait on it.
#[derive(Clone, Debug, Default)]
pub struct Stop(CancellationToken);

impl Stop {
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
    pub async fn stopped(&self) {
        self.0.cancelled().await
    }
}

/// A worker's task, aborted when its supervising task is.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A restart's pause: 100 ms, doubling to a minute for a worker that keeps dying.
const RESTART: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(60),
    jitter_percent: 20,
};

/// A worker that ran this long before it died is restarted without a pause.
const HEALTHY: Duration = Duration::from_secs(60);

/// Owns the workers. Dropping it aborts them at once (a test hub that is dropped leaves no
/// worker behind); [`Supervisor::shutdown`] stops them in order.
pub struct Supervisor {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor {
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Runs the worker `make` builds, and builds and runs it again whenever it ends before
    /// shutdown (a panic included).
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(Stop) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let make = Arc::new(make);
        self.tasks.spawn(async move {
            let mut deaths = 0u32;
            loop {
                let started = tokio::time::Instant::now();
                // Aborting this task (shutdown's last resort, or dropping the supervisor)
                // drops the guard, which aborts the worker too.
                let mut run = AbortOnDrop(tokio::spawn(make(Stop(stop.clone()))));
                let ended = (&mut run.0).await;
                if stop.is_cancelled() {
                    return;
                }
                match ended {
                    Err(e) if e.is_panic() => tracing::error!(worker = name, "a worker panicked; restarting it"),
                    _ => tracing::error!(worker = name, "a worker ended; restarting it"),
                }
                deaths = if started.elapsed() >= HEALTHY { 1 } else { deaths + 1 };
                tokio::select! {
                    _ = tokio::time::sleep(RESTART.delay_now(deaths)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Tells every worker to stop and waits up to `grace` for them to finish what they
    /// hold; the ones still running then are aborted (their claims' leases return the jobs
    /// to the queue). Returns how many had to be aborted.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_ok() {
            return 0;
        }
        let left = self.tasks.len();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_dead_worker_is_restarted() {
        let runs = Arc::new(AtomicU32::new(0));
        let mut sup = Supervisor::new();
        let r = runs.clone();
        sup.spawn("test", move |stop| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a worker bug");
                }
                stop.stopped().await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after each of two panics");
        assert_eq!(sup.shutdown(Duration::from_secs(5)).await, 0, "it stopped when told");
    }

    #[tokio::test]
    async fn shutdown_lets_workers_finish_then_aborts_the_rest() {
        let finished = Arc::new(AtomicU32::new(0));
        let mut sup = Supervisor::new();
        let f = finished.clone();
        sup.spawn("drains", move |stop| {
            let f = f.clone();
            async move {
                stop.stopped().await;
                tokio::time::sleep(Duration::from_millis(50)).await; // finishing its job
                f.fetch_add(1, Ordering::SeqCst);
            }
        });
        // The stuck worker holds a clone of `alive` for as long as it runs.
        let alive = Arc::new(());
        let held = alive.clone();
        sup.spawn("stuck", move |_stop| {
            let held = held.clone();
            async move {
                let _held = held;
                std::future::pending::<()>().await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(Arc::strong_count(&alive), 3, "the stuck worker runs");
        let aborted = sup.shutdown(Duration::from_millis(500)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 1, "the draining worker finished");
        assert_eq!(aborted, 1, "the stuck one was aborted after the grace");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the stuck worker's task is gone, not left running"
        );
    }

    #[tokio::test]
    async fn the_claim_loop_finishes_claimed_jobs_then_stops() {
        let done = Arc::new(AtomicU32::new(0));
        let claims = Arc::new(AtomicU32::new(0));
        let mut sup = Supervisor::new();
        let (d, c) = (done.clone(), claims.clone());
        sup.spawn("claims", move |stop| {
            let (d, c) = (d.clone(), c.clone());
            async move {
                crate::jobs::claim_loop(
                    "claims",
                    stop,
                    Arc::new(tokio::sync::Notify::new()),
                    || {
                        let n = c.fetch_add(1, Ordering::SeqCst);
                        async move { Ok(if n == 0 { vec![1u32, 2, 3] } else { Vec::new() }) }
                    },
                    |_job| {
                        let d = d.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            d.fetch_add(1, Ordering::SeqCst);
                        }
                    },
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(sup.shutdown(Duration::from_secs(5)).await, 0);
        assert_eq!(done.load(Ordering::SeqCst), 3, "every claimed job ran to its end");
    }
}
