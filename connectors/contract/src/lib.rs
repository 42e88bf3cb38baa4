//! The contract between the hub and its connectors. A connector turns one outside service
//! into entries the hub can merge: it *pulls* (fetches what changed since its cursor), takes
//! what the service *pushes* to the hub (a WebSub delivery, say), and may *push* items back.
//!
//! What a connector must never do is written into this crate's dependencies: it sees no
//! database (the hub stores what it returns, and its cursor), and no raw network client. The
//! hub hands it an [`Http`], its guarded outbound client (private addresses refused, every
//! redirect re-checked, bodies capped), so a connector cannot reach what the hub would not.

#![forbid(unsafe_code)]

use async_trait::async_trait;
pub use feedmesh_domain::{Entry, Timestamp};

#[cfg(feature = "testkit")]
pub mod testkit;

/// Why a connector could not do its work. The hub keeps the text as the connector's last
/// error and decides from the kind what to do next (retry later, or ask the user).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// The service could not be reached or answered an error; try again later.
    #[error("{0}")]
    Unreachable(String),
    /// The hub's policy refused the request (a private address, too many redirects).
    #[error("refused: {0}")]
    Refused(String),
    /// The service answered something this connector cannot read.
    #[error("{0}")]
    Malformed(String),
    /// The service wants (new) credentials.
    #[error("the service refused the credentials: {0}")]
    Unauthorized(String),
    /// The service asks to wait this many seconds.
    #[error("rate limited: wait {0} s")]
    RateLimited(u64),
    /// This connector does not do that (a read-only feed asked to push).
    #[error("{0} is not supported by this connector")]
    Unsupported(&'static str),
}

/// Conditions of a GET: what was seen last time, so an unchanged resource costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `Accept`, when the connector prefers a type.
    pub accept: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a GET brought back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The URL finally answered, after redirects.
    pub url: String,
    /// 304: nothing changed since the conditions; `body` is empty.
    pub not_modified: bool,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `rel="hub"` and `rel="self"` of the response's `Link` headers (WebSub discovery).
    pub hubs: Vec<String>,
    pub self_url: Option<String>,
}

/// The hub's guarded outbound HTTP, the only network a connector gets.
#[async_trait]
pub trait Http: Send + Sync {
    /// GET `url` with `conditions`, following redirects the hub's policy allows, reading at
    /// most `max_bytes` of the body (more: [`ConnectorError::Malformed`]).
    async fn get(&self, url: &str, conditions: &Conditions, max_bytes: usize) -> Result<Fetched, ConnectorError>;
}

/// Where a pull starts: what the hub kept of the last one (the connector's cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// One item a connector brings in: an id stable for this source (the same entry always has
/// the same id, so pulling again changes nothing that did not change) and its payload. An
/// entry without a date has `updated` at the epoch; the hub keeps the date it first saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    pub id: String,
    pub entry: Entry,
}

/// What one pull (or one pushed document) gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Newest first, as sources list them; the hub stores them oldest first.
    pub items: Vec<Pulled>,
    /// Where the next pull starts.
    pub cursor: Cursor,
    /// Nothing changed since the cursor (no items).
    pub not_modified: bool,
    /// WebSub hubs the source names, and its own `rel="self"` (the topic to subscribe to).
    pub hubs: Vec<String>,
    pub self_url: Option<String>,
    /// The URL that answered, after redirects.
    pub url: String,
}

/// A connector: one source, built from its config.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector's kind, as users name it (`feed`, `mastodon`, …).
    fn kind(&self) -> &'static str;

    /// Fetches what changed since `cursor`.
    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError>;

    /// Reads a document the service pushed to the hub (its signature already checked).
    fn receive(&self, body: &[u8]) -> Result<Batch, ConnectorError>;

    /// Sends an item the mesh made to the service (a post, say). Read-only sources say
    /// [`ConnectorError::Unsupported`].
    async fn push(&self, _http: &dyn Http, _item: &Entry) -> Result<(), ConnectorError> {
        Err(ConnectorError::Unsupported("pushing items"))
    }
}
