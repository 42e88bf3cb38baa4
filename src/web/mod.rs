//! HTTP: the one table of routes, shared state, and helpers. Handlers only translate a
//! request into one use-case call and its result into a response.

mod atompub;
mod auth;
mod blobs;
mod cache;
pub mod deliver;
mod feeds;
mod files;
mod follows;
mod hub;
mod keys;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use tokio::sync::Notify;

use crate::hub::HubSettings;
use crate::mesh::Mesh;
use crate::net::Outbound;
use crate::store::{FeedKey, Principal};
use crate::ttl::TtlMap;

pub use auth::feed_key_path;
pub use cache::FeedCache;
pub use keys::owned_feed_path;

pub struct AppState {
    pub mesh: Mesh,
    /// Public URL of the hub, without a trailing slash.
    pub base_url: String,
    /// Largest Atom entry body accepted, in bytes.
    pub max_entry_bytes: usize,
    pub cache: FeedCache,
    /// Read-path credentials (token or key hash → who), trusted for at most a second.
    pub principals: TtlMap<[u8; 32], Principal>,
    pub feed_keys: TtlMap<[u8; 32], FeedKey>,
    /// Self keys by (user, hash of the feed key path), trusted for at most a second.
    pub self_keys: TtlMap<(i64, u64), Arc<str>>,
    /// Derives self keys; stored in the database, shared by every process.
    pub server_secret: String,
    /// Every request the hub makes on someone else's behalf goes through this guard.
    pub outbound: Outbound,
    /// Content distribution's own client, under the same policy (see `push`).
    pub pusher: crate::push::Pusher,
    pub hub: HubSettings,
    /// Wakes the WebSub verification worker when a request is queued.
    pub hub_wake: Arc<Notify>,
    /// Wakes the open-hub topic fetcher when a ping marks a topic due.
    pub topic_wake: Arc<Notify>,
    /// Wakes the follow worker (a new follow, or a hub's denial).
    pub follow_wake: Arc<Notify>,
    /// Rates of hub requests per client, callback host and topic.
    pub limits: crate::limits::RateLimits,
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/", get(pages::landing))
        .route("/login", get(pages::login))
        .route("/healthz", get(pages::health))
        .route("/hub", axum::routing::post(hub::request))
        .route("/atompub", get(atompub::service))
        .route(
            "/atompub/{user}/{collection}",
            get(feeds::collection).post(atompub::create),
        )
        .route(
            "/atompub/{user}/{collection}/{id}",
            get(atompub::read).put(atompub::replace).delete(atompub::remove),
        )
        .route("/atompub/{user}/{collection}/{id}/media", get(atompub::media))
        .route("/u/{user}/{feed}", get(feeds::user_stream))
        .route("/u/{user}/endpoints/{device}/{feed}", get(feeds::endpoint_stream))
        .route("/api/keys", get(keys::list).post(keys::create))
        .route("/api/keys/{id}", axum::routing::delete(keys::revoke))
        .route(
            "/api/blobs",
            axum::routing::post(blobs::post_many).layer(axum::extract::DefaultBodyLimit::max(blobs::BATCH_BYTES)),
        )
        .route("/api/blobs/{sha256}", get(blobs::get).put(blobs::put))
        .route("/api/collections", get(atompub::collections))
        .route("/api/follows", get(follows::list).post(follows::create))
        .route("/api/follows/{id}", axum::routing::delete(follows::remove))
        .route("/websub/callback/{token}", get(follows::verify).post(follows::receive))
        .with_state(state)
        .layer(axum::middleware::map_response(files::common_headers))
}

/// Percent-encodes one path segment (a FeedSync id may hold `/`, `?` and `#`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AppState {
    pub fn hub_url(&self) -> String {
        format!("{}/hub", self.base_url)
    }
    pub fn collection_url(&self, user: &str, collection: &str) -> String {
        format!(
            "{}/atompub/{}/{}",
            self.base_url,
            encode_segment(user),
            encode_segment(collection)
        )
    }
    pub fn member_url(&self, user: &str, collection: &str, sync_id: &str) -> String {
        format!("{}/{}", self.collection_url(user, collection), encode_segment(sync_id))
    }
}
