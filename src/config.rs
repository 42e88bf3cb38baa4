//! Settings shared by every command: where the data lives and how the hub is reached.
//! Flags win over `FEEDMESH_*` environment variables, which win over the defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Where the hub keeps its data.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite://DATA_DIR/feedmesh.db]
    #[arg(long = "database", env = "FEEDMESH_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Directory for the SQLite database and stored files (blobs).
    #[arg(
        long,
        env = "FEEDMESH_DATA_DIR",
        global = true,
        default_value = "feedmesh-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Key sealing the WebSub and follow secrets in the database: 64 hex digits (e.g.
    /// `openssl rand -hex 32`). Processes sharing one PostgreSQL need the same key.
    /// [default: DATA_DIR/secret.key, made on first start]
    #[arg(
        long,
        env = "FEEDMESH_SECRET_KEY",
        hide_env_values = true,
        global = true,
        value_name = "HEX"
    )]
    pub secret_key: Option<String>,

    /// Region national phone numbers are read in (ISO 3166 code: US, GB, DE…): "415-555-0100"
    /// read in US is tel:+14155550100.
    #[arg(
        long,
        env = "FEEDMESH_DEFAULT_REGION",
        global = true,
        default_value = "US",
        value_name = "CODE",
        value_parser = parse_region
    )]
    pub default_region: crate::domain::identity::Region,
}

fn parse_region(s: &str) -> Result<crate::domain::identity::Region, String> {
    crate::domain::identity::Region::parse(s).map_err(|e| e.to_string())
}

impl std::fmt::Debug for DataArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DataArgs {
            database_url,
            data_dir,
            secret_key,
            default_region,
        } = self;
        f.debug_struct("DataArgs")
            .field("database_url", &database_url.as_deref().map(crate::secrets::redact_url))
            .field("data_dir", data_dir)
            .field("secret_key", &secret_key.as_ref().map(|_| crate::secrets::Redacted))
            .field("default_region", default_region)
            .finish()
    }
}

impl DataArgs {
    /// The key sealing secrets at rest: `--secret-key`/`FEEDMESH_SECRET_KEY`, else the key
    /// file in the data directory (made on first use).
    pub fn sealer(&self) -> anyhow::Result<std::sync::Arc<crate::seal::Sealer>> {
        crate::seal::Sealer::load(self.secret_key.as_deref(), &self.data_dir).map(std::sync::Arc::new)
    }

    /// Opens the database with its sealing key.
    pub async fn open_store(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        crate::store::open(&self.database_url(), self.sealer()?).await
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("feedmesh.db").display()))
    }
}

/// How `serve` listens and what it allows.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "FEEDMESH_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,

    /// Public URL of the hub, written into feeds and links [default: http://LISTEN-ADDRESS]
    #[arg(long, env = "FEEDMESH_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,

    /// Let outbound requests reach loopback and private addresses (off: they are refused).
    #[arg(long, env = "FEEDMESH_ALLOW_PRIVATE_NETWORK")]
    pub allow_private_network: bool,

    /// Largest Atom entry accepted, in bytes (larger: 413).
    #[arg(long, env = "FEEDMESH_MAX_ENTRY_BYTES", default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_entry_bytes: usize,

    /// HMAC of WebSub `X-Hub-Signature` for subscribers that gave a secret.
    #[arg(
        long,
        env = "FEEDMESH_WEBSUB_SIGNATURE",
        value_enum,
        default_value = "sha256",
        value_name = "ALG"
    )]
    pub websub_signature: crate::secrets::Signature,

    /// WebSub requests per second allowed from one client address, to one callback host,
    /// and for one topic (more: 429 with Retry-After; 0: no limit).
    #[arg(
        long,
        env = "FEEDMESH_HUB_RATE_LIMIT",
        default_value_t = 10,
        value_name = "PER_SECOND"
    )]
    pub hub_rate_limit: u32,

    /// Open hub: also accept subscriptions to feeds served elsewhere, fetching them when
    /// their publisher pings (off: only this hub's own feeds are topics).
    #[arg(long, env = "FEEDMESH_OPEN_HUB")]
    pub open_hub: bool,

    /// Refuse a WebSub hub.secret whose callback is plain http (off: accepted, with a warning).
    #[arg(long, env = "FEEDMESH_WEBSUB_STRICT_SECRETS")]
    pub websub_strict_secrets: bool,

    /// Open hub: on each fetch, check that an outside topic still names this hub (rel="hub" in
    /// its Link headers or the feed); if not, its subscribers are sent denials and dropped.
    #[arg(long, env = "FEEDMESH_WEBSUB_STRICT_TOPIC_HUB_LINK")]
    pub websub_strict_topic_hub_link: bool,

    /// Seconds between fetches of a followed feed that has no working WebSub subscription.
    #[arg(long, env = "FEEDMESH_POLL_INTERVAL", default_value_t = 900, value_name = "SECONDS")]
    pub poll_interval: u64,

    /// Largest file accepted as a media resource, in bytes (larger: 413).
    #[arg(long, env = "FEEDMESH_MAX_FILE_BYTES", default_value_t = 4 << 30, value_name = "BYTES")]
    pub max_file_bytes: u64,

    /// What one user's unfinished resumable uploads (`PUT /api/blobs/…` with
    /// `Content-Range`) may hold together, in bytes (more: 413). They are dropped after 7 days.
    #[arg(long, env = "FEEDMESH_MAX_PARTIAL_BYTES", default_value_t = 8 << 30, value_name = "BYTES")]
    pub max_partial_bytes: u64,

    /// Seconds a client has to send a request's headers (then it is cut off), counted from
    /// its first byte or, on a kept-alive connection, from the previous response.
    #[arg(long, env = "FEEDMESH_HEADER_TIMEOUT", default_value_t = 30, value_name = "SECONDS")]
    pub header_timeout: u64,

    /// Largest request line and headers together, in bytes (more: 431; at least 8192).
    #[arg(long, env = "FEEDMESH_MAX_HEADER_BYTES", default_value_t = 64 << 10, value_name = "BYTES")]
    pub max_header_bytes: usize,

    /// Connections open at once (one more is answered 503 and closed).
    #[arg(long, env = "FEEDMESH_MAX_CONNECTIONS", default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
}

impl ServeArgs {
    /// What one client may take of the server.
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections.max(1),
        }
    }
}

/// Everything `App::build` needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data: DataArgs,
    pub serve: ServeArgs,
    /// WebSub lease and retry policy (defaults: leases 1 hour to 30 days, 10 days asked).
    pub hub: HubSettings,
}

/// Lease, retry and signing policy (F3, F4, C10, J1, I4); tests shorten the times.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub min_lease: u64,
    pub max_lease: u64,
    pub default_lease: u64,
    /// Attempts of a verification GET that fails by timeout, connection error or 5xx.
    pub verify_attempts: i64,
    /// Attempts of one notification before it is dropped (the subscription stays).
    pub delivery_attempts: i64,
    /// First retry delay of verifications and deliveries; doubles each time, with jitter.
    pub retry_base: Duration,
    pub signature: crate::secrets::Signature,
    /// Requests per second per client address, callback host and topic (0: unlimited).
    pub rate_limit: u32,
    /// Accept outside topics (open hub); off by default (S12).
    pub open: bool,
    /// Refuse a `hub.secret` with a plain-http callback (B7); off: accepted with a warning.
    pub strict_secrets: bool,
    /// Open hub: an outside topic that no longer names this hub ends its subscriptions (K7).
    pub strict_topic_hub_link: bool,
    /// Deliveries in flight to one callback host at most (J5).
    pub per_host: usize,
    /// Connect-and-answer limit of every outbound request (J4).
    pub timeout: Duration,
    /// How often expired leases are purged and revoked keys' subscriptions denied (F7, D3).
    pub sweep_every: Duration,
    /// How often a followed feed without a working WebSub subscription is fetched.
    pub poll_interval: Duration,
    /// How long a follow waits for its hub's verification before it polls instead.
    pub verify_wait: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            min_lease: 3600,
            max_lease: 30 * 86_400,
            default_lease: 10 * 86_400,
            verify_attempts: 4,
            delivery_attempts: 10,
            retry_base: Duration::from_secs(30),
            signature: crate::secrets::Signature::Sha256,
            rate_limit: 10,
            open: false,
            strict_secrets: false,
            strict_topic_hub_link: false,
            per_host: 128,
            timeout: Duration::from_secs(10),
            sweep_every: Duration::from_secs(10),
            poll_interval: Duration::from_secs(15 * 60),
            verify_wait: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let args = DataArgs {
            database_url: Some("postgres://feedmesh:hunter2@db/mesh".into()),
            data_dir: "d".into(),
            secret_key: Some("5eed".repeat(16)),
            default_region: Default::default(),
        };
        let shown = format!("{args:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("5eed"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("db/mesh"), "{shown}");
    }
}
