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
use tokio::sync::Notify;

use crate::hub;
use crate::mesh::Mesh;
use crate::net::Outbound;
use crate::store::Store;
use crate::ttl::TtlMap;
use crate::web::{self, AppState, FeedCache};

pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    /// Background work that stops with the server.
    _workers: Vec<hub::Worker>,
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
        let state = Arc::new(AppState {
            mesh: Mesh::new(store, blobs),
            base_url,
            max_entry_bytes: settings.serve.max_entry_bytes,
            cache: FeedCache::new(4096),
            principals: TtlMap::new(Duration::from_secs(1), 100_000),
            feed_keys: TtlMap::new(Duration::from_secs(1), 100_000),
            self_keys: TtlMap::new(Duration::from_secs(1), 100_000),
            server_secret,
            outbound: Outbound::new(settings.serve.allow_private_network, settings.hub.timeout)?,
            pusher: crate::push::Pusher::new(settings.serve.allow_private_network, settings.hub.timeout),
            hub: settings.hub.clone(),
            hub_wake: Arc::new(Notify::new()),
            topic_wake: Arc::new(Notify::new()),
            follow_wake: Arc::new(Notify::new()),
            limits: crate::limits::RateLimits::new(settings.hub.rate_limit),
        });
        let deliveries = web::deliver::spawn(state.clone());
        // Other processes' writes (PostgreSQL NOTIFY) wake this one's waiters at once.
        let forwarder = state.mesh.store.changes_elsewhere().map(|mut rx| {
            let state = state.clone();
            hub::Worker::spawn(async move {
                while rx.changed().await.is_ok() {
                    state.mesh.changed_elsewhere();
                }
            })
        });
        let worker = hub::spawn_worker(
            state.mesh.store.clone(),
            state.outbound.clone(),
            state.hub.clone(),
            state.hub_wake.clone(),
        );
        let topics = {
            let st = state.clone();
            hub::spawn_topic_fetcher(
                state.mesh.store.clone(),
                state.outbound.clone(),
                state.topic_wake.clone(),
                state.hub.strict_topic_hub_link.then(|| state.hub_url()),
                move || st.mesh.changed.send_modify(|n| *n += 1),
            )
        };
        let follows = crate::follow::spawn(state.clone());
        Ok(App {
            listener,
            state,
            _workers: [Some(worker), Some(deliveries), Some(topics), Some(follows), forwarder]
                .into_iter()
                .flatten()
                .collect(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = web::router(self.state.clone()).layer(tower_http::trace::TraceLayer::new_for_http());
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        // Without TCP_NODELAY a response written in two pieces (headers, then a body) waits
        // for the client's delayed ACK: 40 ms per small blob download.
        use axum::serve::ListenerExt;
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        axum::serve(listener, service).with_graceful_shutdown(shutdown).await?;
        Ok(())
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
