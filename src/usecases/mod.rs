//! The use cases: what the hub does, called alike by the CLI, the HTTP handlers and the
//! workers. A handler or a subcommand translates its input into one call here and the
//! result back; a worker calls the same functions. Use cases answer [`crate::error::Error`],
//! which the HTTP edge maps to statuses and the CLI prints.
//!
//! Must never: parse HTTP requests or build responses (that is `web/`), nor know WebSub,
//! which sits above this layer (`websub/` builds on these use cases and adds its own; it
//! is told of changes through [`Core`]'s wake-ups and `Mesh::changed`, never called).

pub mod accounts;
pub mod activities;
pub mod browse;
pub mod connectors;
pub mod contacts;
pub mod feeds;
pub mod files;
pub mod follows;
pub mod items;
pub mod keys;
pub mod kinds;
pub mod lines;
pub mod listeners;
pub mod logins;
pub mod oauth;
pub mod phone;
pub mod reading;
pub mod routes;
pub mod timelines;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::error::{Error, Result};

use crate::net::Outbound;
use items::Mesh;

/// What every use case may use: the items (store and blobs), the hub's public URL, its
/// guarded outbound client, and the wake-ups of the workers that act on what changed.
pub struct Core {
    pub mesh: Mesh,
    /// Public URL of the hub, without a trailing slash.
    pub base_url: String,
    /// Derives self keys; stored in the database, shared by every process.
    pub server_secret: String,
    /// Every request the hub makes on someone else's behalf goes through this guard.
    pub outbound: Outbound,
    /// Wakes the follow worker (a new follow, a removed one, or a hub's denial).
    pub follow_wake: Arc<Notify>,
    /// Wakes the connector runtime (a connector added, resumed or asked to sync now).
    pub connector_wake: Arc<Notify>,
    /// Tells this process's listeners to look at their connectors at once (one paused,
    /// removed, resumed or added), rather than at their next renewal.
    pub listener_check: Arc<Notify>,
}

impl Core {
    pub fn new(mesh: Mesh, base_url: String, server_secret: String, outbound: Outbound) -> Self {
        Core {
            mesh,
            base_url,
            server_secret,
            outbound,
            follow_wake: Arc::new(Notify::new()),
            connector_wake: Arc::new(Notify::new()),
            listener_check: Arc::new(Notify::new()),
        }
    }
    /// The user's collection `name`, made on first use.
    pub async fn collection_made(&self, user_id: i64, name: &str) -> Result<crate::store::Collection> {
        match self.mesh.collection(user_id, name).await {
            Err(Error::NotFound(_)) => {}
            other => return other,
        }
        match self
            .mesh
            .store
            .create_collection(user_id, &crate::domain::CollectionName::parse(name)?)
            .await
        {
            Ok(c) => Ok(c),
            Err(crate::store::StoreError::AlreadyExists(_)) => self.mesh.collection(user_id, name).await,
            Err(e) => Err(e.into()),
        }
    }

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

/// Who the hub itself writes as when it writes for a user: the endpoint `endpoint` of the
/// user (a connector's, a route's; made on first use).
pub async fn principal(core: &Core, user_id: i64, endpoint: &str) -> anyhow::Result<crate::store::Principal> {
    let store = &core.mesh.store;
    let user = store.user_by_id(user_id).await?;
    // Read first: this runs on every credential check of a browser session or a password, and
    // the endpoint exists after the first (making it is a write).
    let endpoint = match store.endpoint(user_id, endpoint).await {
        Ok(e) => e,
        Err(crate::store::StoreError::NotFound(_)) => store.feed_endpoint(user_id, endpoint).await?,
        Err(e) => return Err(e.into()),
    };
    Ok(crate::store::Principal {
        user_id,
        user: user.name.to_string(),
        endpoint_id: endpoint.id,
        endpoint: endpoint.name,
        token_hash: String::new(),
    })
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
