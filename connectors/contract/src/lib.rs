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
    /// Trying again will not help until the user changes something (the account is gone,
    /// the resource moved away for good): the hub stops the connector and says why.
    #[error("{0}")]
    Permanent(String),
}

/// What the hub does about an error (see [`ConnectorError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials were refused: the connector needs reconnecting by its user.
    Auth,
    /// Try again later, with backoff (or after the wait the service asked for).
    Transient,
    /// Stop, and say why.
    Permanent,
}

impl ConnectorError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectorError::Unauthorized(_) => ErrorKind::Auth,
            ConnectorError::Unreachable(_) | ConnectorError::RateLimited(_) | ConnectorError::Malformed(_) => {
                ErrorKind::Transient
            }
            ConnectorError::Refused(_) | ConnectorError::Unsupported(_) | ConnectorError::Permanent(_) => {
                ErrorKind::Permanent
            }
        }
    }
}

/// A secret a connector is configured with (a token, a password): kept sealed by the hub,
/// never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// One option a connector kind takes (`--option NAME=VALUE`): what `--help`, the API and
/// the README tell users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: &'static str,
    pub required: bool,
    /// Sealed at rest, never printed.
    pub secret: bool,
    /// It may be given more than once (`--option mailbox=INBOX --option mailbox=Sent`):
    /// [`Options::all`] reads every value.
    pub many: bool,
    pub doc: &'static str,
}

/// A config option that is missing, unknown or wrong, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("option {option}: {problem}")]
pub struct ConfigError {
    pub option: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(option: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            option: option.to_string(),
            problem: problem.into(),
        }
    }
}

/// The options a user gave a connector, checked against the kind's [`OptionSpec`]s: every
/// required one present and none unknown or repeated.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options(std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: only the names show.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Options {
    pub fn new(specs: &[OptionSpec], pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut map: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            let k = k.trim().to_string();
            if !specs.iter().any(|s| s.name == k) {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                return Err(ConfigError::new(
                    &k,
                    format!("unknown (this kind takes {})", known.join(", ")),
                ));
            }
            let many = specs.iter().any(|s| s.name == k && s.many);
            match map.get_mut(&k) {
                Some(_) if !many => return Err(ConfigError::new(&k, "given twice")),
                Some(_) if v.contains('\n') => return Err(ConfigError::new(&k, "a value holds a line break")),
                Some(held) => {
                    held.push('\n');
                    held.push_str(&v);
                }
                None => {
                    map.insert(k, v);
                }
            }
        }
        for s in specs.iter().filter(|s| s.required) {
            if map.get(s.name).is_none_or(|v: &String| v.trim().is_empty()) {
                return Err(ConfigError::new(s.name, format!("required: {}", s.doc)));
            }
        }
        Ok(Options(map))
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
    /// Every value of an option that may be given more than once, in the order given.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .map(|v| v.split('\n').map(str::trim).filter(|v| !v.is_empty()).collect())
            .unwrap_or_default()
    }
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An HTTP method a connector's requests use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    /// WebDAV (RFC 4918): a collection's members and their properties.
    Propfind,
    /// WebDAV (RFC 3253): CardDAV's `addressbook-multiget`, RFC 6578's `sync-collection`.
    Report,
}

/// A request to a service's API, sent through the hub's guard ([`Http::send`]). Header
/// values are hidden from `Debug` (they hold credentials).
#[derive(Clone, Default)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// (content type, bytes)
    pub body: Option<(String, Vec<u8>)>,
    /// The most bytes of the answer read (more: [`ConnectorError::Malformed`]).
    pub max_bytes: usize,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn get(url: impl Into<String>, max_bytes: usize) -> Self {
        Request {
            url: url.into(),
            max_bytes,
            ..Request::default()
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A service's answer, whatever its status (the connector reads it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The URL that answered, after redirects (GETs follow them, each re-checked).
    pub url: String,
    /// Names in lower case, in the order received (a name may repeat).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The target of a `Link` header's relation (`next`, `prev`…), resolved against the URL
    /// that answered; several `Link` headers are read alike.
    pub fn link(&self, rel: &str) -> Option<String> {
        let base = url::Url::parse(&self.url).ok();
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
            .filter_map(|(_, v)| parse_link_header::parse_with_rel(v).ok())
            .find_map(|links| links.get(rel).map(|l| l.raw_uri.clone()))
            .map(|raw| match base.as_ref().and_then(|b| b.join(&raw).ok()) {
                Some(u) => u.to_string(),
                None => raw,
            })
    }
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
    /// `Cache-Control: max-age` (seconds): the server's word on how long this stays fresh.
    pub max_age: Option<u64>,
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

    /// Sends a request to a service's API and answers its response whatever the status. A
    /// refused address is [`ConnectorError::Refused`]; no answer, [`ConnectorError::Unreachable`].
    async fn send(&self, _request: Request) -> Result<Response, ConnectorError> {
        Err(ConnectorError::Unsupported("API requests"))
    }

    /// Opens a long-lived GET (a stream of Server-Sent Events) and answers its status and
    /// headers at once, the body to be read as it arrives. Nothing arriving for `idle`
    /// (heartbeats included) is [`ConnectorError::Unreachable`]; the request's `max_bytes`
    /// is not applied (the connector caps what it keeps).
    async fn open(&self, _request: Request, _idle: std::time::Duration) -> Result<Streamed, ConnectorError> {
        Err(ConnectorError::Unsupported("streaming responses"))
    }

    /// Opens a TCP connection (IMAP, say) under the hub's outbound policy, with TLS when
    /// [`Dial::tls`] asks: a refused address is [`ConnectorError::Refused`], no connection
    /// or a certificate not trusted, [`ConnectorError::Unreachable`].
    async fn dial(&self, _to: &Dial) -> Result<Box<dyn Socket>, ConnectorError> {
        Err(ConnectorError::Unsupported("connections other than HTTP"))
    }

    /// Starts TLS on a connection opened plain (after the protocol's STARTTLS), checking the
    /// certificate for `to.host`.
    async fn start_tls(&self, _plain: Box<dyn Socket>, _to: &Dial) -> Result<Box<dyn Socket>, ConnectorError> {
        Err(ConnectorError::Unsupported("STARTTLS"))
    }
}

/// A TCP connection a connector asks for (see [`Http::dial`]): the hub resolves the host
/// and refuses private addresses as it does for HTTP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dial {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (IMAPS); otherwise plain until [`Http::start_tls`].
    pub tls: bool,
    /// A PEM file of certificates to trust for this server (a self-signed one), beside the
    /// system's roots.
    pub ca_file: Option<String>,
    /// Nothing read for this long is an error (the server hung).
    pub idle: std::time::Duration,
}

/// A byte stream the hub opened for a connector.
pub trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug> Socket for T {}

/// A response whose body is read as it arrives (see [`Http::open`]).
pub struct Streamed {
    pub status: u16,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Chunks>,
}

impl Streamed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The body of a [`Streamed`] response, chunk by chunk.
#[async_trait]
pub trait Chunks: Send {
    /// The next bytes, `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ConnectorError>;
}

/// Where a listening connector hands what the service pushes (see [`Connector::listen`]):
/// the hub stores each at once, as it stores what a pull brings.
#[async_trait]
pub trait Sink: Send {
    /// The connection is up and listening.
    async fn ready(&mut self) {}
    /// An item came, or changed (the same id as a pull gives it).
    async fn item(&mut self, item: Pulled) -> Result<(), ConnectorError>;
    /// An item is gone at the service (deleted there).
    async fn gone(&mut self, id: &str) -> Result<(), ConnectorError>;
    /// Something the service sent was not taken (hostile or malformed); the hub logs why.
    fn refused(&mut self, why: String);
}

/// Where a pull starts: what the hub kept of the last one (the connector's cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Whatever else the connector keeps between pulls (its own format, JSON say: the last
    /// ids seen, an ETag per endpoint); the hub stores it as given.
    pub state: Option<String>,
}

/// One item a connector brings in: an id stable for this source (the same entry always has
/// the same id, so pulling again changes nothing that did not change) and its payload. An
/// entry without a date has `updated` at the epoch; the hub keeps the date it first saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    pub id: String,
    pub entry: Entry,
    /// Files that come with it (an e-mail's attachments): the hub stores each as a blob of
    /// the user's and links it from the entry (`rel="enclosure"`).
    pub files: Vec<Attachment>,
    /// Where it lives at the service, for a connector that syncs both ways (a CardDAV
    /// card's address and ETag, in the connector's own format): the hub records it, and an
    /// edit made in the hub goes there as an [`Outgoing::Update`] of this `remote_id`.
    pub remote_id: Option<String>,
}

impl Pulled {
    pub fn new(id: impl Into<String>, entry: Entry) -> Self {
        Pulled {
            id: id.into(),
            entry,
            files: Vec::new(),
            remote_id: None,
        }
    }
}

/// A file a pulled item carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its file name, as the service gave it (may be empty).
    pub name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("len", &self.bytes.len())
            .finish()
    }
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
    /// The service asks not to be polled again before this many seconds.
    pub poll_after: Option<u64>,
    /// The pull stopped at its page limit with more waiting: the hub runs it again at once.
    pub more: bool,
    /// Ids ([`Pulled::id`]) of items deleted at the service since the cursor.
    pub gone: Vec<String>,
}

/// What the hub asks a connector to do with an item of its outbox collection.
#[derive(Clone, Copy, Debug)]
pub enum Outgoing<'a> {
    /// Post it. The key is the same every time the hub asks for this item, so a service
    /// that honours it (`Idempotency-Key`) never posts it twice.
    Create { entry: &'a Entry, idempotency_key: &'a str },
    /// It changed: edit what was posted as `remote_id`.
    Update { entry: &'a Entry, remote_id: &'a str },
    /// It was deleted: delete what was posted as `remote_id`.
    Delete { remote_id: &'a str },
}

/// Where an item went at the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posted {
    pub remote_id: String,
    /// Its page, for people.
    pub url: Option<String>,
}

/// A connector: one source, built from its config.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector's kind, as users name it (`feed`, `mastodon`, …).
    fn kind(&self) -> &'static str;

    /// Checks that the service answers and takes the credentials; names the account
    /// (`octocat`, `alice@mastodon.example`) for `connector list`.
    async fn check(&self, _http: &dyn Http) -> Result<String, ConnectorError> {
        Ok(String::new())
    }

    /// Fetches what changed since `cursor`.
    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError>;

    /// Reads a document the service pushed to the hub (its signature already checked).
    fn receive(&self, _body: &[u8]) -> Result<Batch, ConnectorError> {
        Err(ConnectorError::Unsupported("pushed documents"))
    }

    /// Sends an item of its outbox to the service: posts, edits or deletes it; answers
    /// where it went (for a create or an update). A failure of this item alone (the service
    /// refused its content) is [`ConnectorError::Permanent`]. Read-only sources say
    /// [`ConnectorError::Unsupported`].
    async fn push(&self, _http: &dyn Http, _item: Outgoing<'_>) -> Result<Posted, ConnectorError> {
        Err(ConnectorError::Unsupported("posting items"))
    }

    /// Listens to what the service pushes over a long-lived connection (Mastodon's streaming
    /// API), handing each change to `sink` as it comes, until the connection ends (`Ok`: the
    /// hub opens it again) or fails. The hub holds one listener per connector, on one
    /// process, beside the polls (which still catch up what a dropped connection missed).
    /// [`ConnectorError::Unsupported`] (the default, or a service that does not stream): the
    /// connector is only polled.
    async fn listen(&self, _http: &dyn Http, _sink: &mut dyn Sink) -> Result<(), ConnectorError> {
        Err(ConnectorError::Unsupported("listening"))
    }

    /// The id ([`Pulled::id`]) its own pull gives what it posted as `remote_id`, when its
    /// pull brings back its own posts: so the hub knows that echo for what it is, and a
    /// route never sends it round again.
    fn pulled_id(&self, _remote_id: &str) -> Option<String> {
        None
    }
}
