//! The running hub: binds its listener first (so port 0 works), opens the store, builds the
//! router, and serves until told to stop. Tests and `feedmesh serve` share this path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::blobs::Blobs;
use crate::config::Settings;
use crate::jobs::Supervisor;
use crate::net::Outbound;
use crate::store::Store;
use crate::usecases::Core;
use crate::usecases::items::Mesh;
use crate::web::{self, AppState};
use crate::websub::{self, WebSub};

/// How long workers get at shutdown to finish the jobs they hold.
const GRACE: Duration = Duration::from_secs(5);

pub struct App {
    listener: TcpListener,
    limits: crate::server::Limits,
    state: Arc<AppState>,
    /// Background work: restarted if it dies, drained at shutdown, aborted when dropped.
    workers: Supervisor,
}

impl App {
    pub async fn build(settings: &Settings) -> anyhow::Result<App> {
        let listener = TcpListener::bind(&settings.serve.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.serve.listen))?;
        let url = settings.data.database_url();
        let store = settings.data.open_store().await?;
        if url.starts_with("sqlite") {
            // One `serve` per SQLite file: claims left in it are a crashed predecessor's.
            store.release_claims().await?;
        }
        Self::with_store(settings, listener, store).await
    }

    pub async fn with_store(settings: &Settings, listener: TcpListener, store: Arc<dyn Store>) -> anyhow::Result<App> {
        let server_secret = store.server_secret("self-keys", &crate::secrets::generate("")?).await?;
        let addr = listener.local_addr()?;
        let base_url = settings
            .serve
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let blobs = Blobs::new(
            &settings.data.data_dir,
            settings.serve.max_file_bytes,
            settings.serve.max_partial_bytes,
        )
        .with_context(|| format!("cannot use data directory {}", settings.data.data_dir.display()))?;
        // A SQLite `serve` owns its data directory: every temporary file is a crash's leftover.
        // Processes sharing PostgreSQL may share it too, so there only old ones go.
        let sqlite = settings.data.database_url().starts_with("sqlite");
        blobs.clean_tmp(Duration::from_secs(if sqlite { 0 } else { 3600 }));
        let allow_private = settings.serve.allow_private_network;
        let outbound = Outbound::new(allow_private, settings.hub.timeout)?;
        let core = Arc::new(Core::new(
            Mesh::new(store, blobs).with_region(settings.data.default_region),
            base_url,
            server_secret,
            outbound,
        ));
        let ws = Arc::new(WebSub::new(core, settings.hub.clone(), allow_private));
        let state = Arc::new(AppState::new(ws.clone(), settings.serve.max_entry_bytes));
        Ok(App {
            listener,
            limits: settings.serve.limits(),
            state,
            workers: spawn_workers(&ws),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        // Request spans name the method and the path, never the query: it may hold an OAuth
        // code and state, or a feed key.
        let trace = tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        });
        let router = web::router(self.state.clone()).layer(trace);
        crate::server::serve(self.listener, router, self.limits, shutdown, GRACE).await?;
        let aborted = self.workers.shutdown(GRACE).await;
        if aborted > 0 {
            tracing::warn!(
                aborted,
                "workers still busy at shutdown were stopped; their jobs come due again"
            );
        }
        Ok(())
    }
}

/// The hub's workers, each under the supervisor.
fn spawn_workers(ws: &Arc<WebSub>) -> Supervisor {
    let mut sup = Supervisor::new();
    let st = ws.clone();
    sup.spawn("websub delivery", move |stop| websub::deliver::run(st.clone(), stop));
    // Other processes' writes (PostgreSQL NOTIFY) wake this one's waiters at once.
    if ws.mesh.store.changes_elsewhere().is_some() {
        let st = ws.clone();
        sup.spawn("change forwarder", move |stop| {
            let st = st.clone();
            async move {
                let Some(mut rx) = st.mesh.store.changes_elsewhere() else {
                    return;
                };
                loop {
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return },
                        _ = stop.stopped() => return,
                    }
                    st.mesh.changed_elsewhere();
                }
            }
        });
    }
    let st = ws.clone();
    sup.spawn("activity backfill", move |stop| {
        let st = st.clone();
        async move {
            if let Err(e) = crate::usecases::activities::backfill(&st, &stop).await {
                // Ending makes the supervisor start it again after a pause.
                tracing::warn!(error = %e, "indexing earlier changes failed; trying again");
                return;
            }
            // Done: idle until shutdown, so the supervisor does not start it again.
            stop.stopped().await;
        }
    });
    let st = ws.clone();
    sup.spawn("websub verification", move |stop| {
        let st = st.clone();
        websub::hub::run(
            st.mesh.store.clone(),
            st.outbound.clone(),
            st.hub.clone(),
            st.hub_wake.clone(),
            stop,
        )
    });
    let st = ws.clone();
    sup.spawn("topic fetcher", move |stop| {
        let changed = {
            let st = st.clone();
            Arc::new(move || st.mesh.changed.send_modify(|n| *n += 1)) as Arc<dyn Fn() + Send + Sync>
        };
        websub::topics::run(
            st.mesh.store.clone(),
            st.outbound.clone(),
            st.topic_wake.clone(),
            st.hub.strict_topic_hub_link.then(|| st.hub_url()),
            changed,
            stop,
        )
    });
    let st = ws.clone();
    sup.spawn("follows", move |stop| websub::subscriber::run(st.clone(), stop));
    let core = ws.core.clone();
    sup.spawn("connectors", move |stop| {
        crate::usecases::connectors::run(core.clone(), stop)
    });
    sup
}
