//! Test harness: a real hub on 127.0.0.1:0 over a fresh SQLite file or PostgreSQL database,
//! real HTTP through reqwest, and helpers to find the outside programs tests talk to.

#![allow(dead_code)]

pub mod callbacks;
pub mod dovecot;
pub mod process;
pub mod radicale;

use std::path::PathBuf;
use std::sync::Arc;

use feedmesh::app::App;
use feedmesh::config::{DataArgs, ServeArgs, Settings};
use feedmesh::domain::{CollectionName, DeviceName, UserName};
use feedmesh::secrets;
use feedmesh::store::Store;

pub const ATOM_ENTRY: &str = "application/atom+xml;type=entry";

/// Whether missing peers and databases fail the run (CI) instead of skipping.
pub fn required() -> bool {
    std::env::var("FEEDMESH_REQUIRE_PEERS").is_ok_and(|v| v == "1") || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The path of an outside program, or None (a skip) when it is missing outside CI.
pub fn peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !required(),
            "{program} is not installed; .ci/run installs it (scripts/deps)"
        );
        eprintln!("SKIP: {program} is not installed (run scripts/deps)");
    }
    found
}

/// Where scripts/deps installs npm and pip peers.
pub fn peers_dir() -> Option<PathBuf> {
    std::env::var_os("FEEDMESH_PEERS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/feedmesh-peers")))
}

/// A Python interpreter that has `module`, or None (a skip) outside CI.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FEEDMESH_TEST_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("python3")),
        // scripts/deps puts Flask-WebSub and mastodon-mock in venvs of their own.
        peers_dir().map(|d| d.join("venv-websub/bin/python")),
        peers_dir().map(|d| d.join("venv-mm/bin/python")),
        // … and the reader apps' clients (google-reader, freshrss-api, miniflux) in a third.
        peers_dir().map(|d| d.join("venv-readers/bin/python")),
    ];
    for py in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py);
        }
    }
    assert!(
        !required(),
        "python module {module} is not installed; scripts/deps installs it"
    );
    eprintln!("SKIP: python module {module} is not installed");
    None
}

/// Node and the folder where scripts/deps installed an npm package, or None (a skip) outside CI.
pub fn node_with(package: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = peers_dir()?;
    let installed = dir.join("node_modules").join(package).join("package.json").is_file();
    let node = peer("node")?;
    if !installed {
        assert!(
            !required(),
            "npm package {package} is not installed in {}; scripts/deps installs it",
            dir.display()
        );
        eprintln!("SKIP: npm package {package} is not installed");
        return None;
    }
    Some((node, dir))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty PostgreSQL database, or None (a skip) when no server is configured.
pub async fn postgres_url() -> Option<String> {
    let Some(admin) = std::env::var("FEEDMESH_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !required(),
            "FEEDMESH_TEST_POSTGRES_URL is not set; scripts/test starts PostgreSQL"
        );
        eprintln!("SKIP: FEEDMESH_TEST_POSTGRES_URL is not set");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("fm_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
    Some(format!("{base}/{name}"))
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The key that seals secrets in the in-process test hubs' databases.
pub const TEST_SECRET_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// The sealing key of the in-process test hubs.
pub fn test_sealer() -> Arc<feedmesh::seal::Sealer> {
    Arc::new(feedmesh::seal::Sealer::from_hex(TEST_SECRET_KEY).unwrap())
}

/// The sealing key of a hub run as a command with `FEEDMESH_DATA_DIR=dir` (its key file).
pub fn sealer_of(dir: &std::path::Path) -> Arc<feedmesh::seal::Sealer> {
    Arc::new(feedmesh::seal::Sealer::load(None, dir).unwrap())
}

pub fn settings(dir: &std::path::Path, db_url: &str) -> Settings {
    Settings {
        data: DataArgs {
            database_url: Some(db_url.to_string()),
            data_dir: dir.to_path_buf(),
            // Hubs of one test may share a database from different data directories.
            secret_key: Some(TEST_SECRET_KEY.into()),
            default_region: Default::default(),
        },
        serve: ServeArgs {
            listen: "127.0.0.1:0".into(),
            base_url: None,
            allow_private_network: true,
            max_entry_bytes: 256 * 1024,
            max_file_bytes: 8 * 1024 * 1024,
            max_partial_bytes: 12 * 1024 * 1024,
            websub_signature: feedmesh::secrets::Signature::Sha256,
            hub_rate_limit: 0,
            open_hub: false,
            websub_strict_secrets: false,
            websub_strict_topic_hub_link: false,
            poll_interval: 900,
            header_timeout: 30,
            max_header_bytes: 64 << 10,
            max_connections: 4096,
        },
        hub: feedmesh::config::HubSettings {
            min_lease: 1,
            retry_base: std::time::Duration::from_millis(50),
            rate_limit: 0,
            ..Default::default()
        },
    }
}

impl TestApp {
    /// A hub on [`default_db`].
    pub async fn spawn() -> TestApp {
        Self::spawn_on(default_db()).await.expect("the test database is there")
    }

    /// A hub on the given database; None when that database is not available (a skip).
    pub async fn spawn_on(db: Db) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("feedmesh.db").display()),
            Db::Postgres => postgres_url().await?,
        };
        Some(Self::spawn_with(dir, db_url, |_| {}).await)
    }

    pub async fn spawn_with(dir: tempfile::TempDir, db_url: String, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        feedmesh::net::install_crypto();
        let mut s = settings(dir.path(), &db_url);
        tweak(&mut s);
        let app = App::build(&s).await.expect("app builds");
        let base = app.base_url().to_string();
        let store = s.data.open_store().await.expect("store opens");
        let server = tokio::spawn(async move {
            app.run_until_stopped(std::future::pending())
                .await
                .expect("server runs");
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            dir,
            db_url,
            server,
        }
    }

    /// Adds a user (if new) and a token for one of their devices; returns the token.
    pub async fn token(&self, user: &str, device: &str) -> String {
        let name = UserName::parse(user).unwrap();
        if self.store.user(user).await.is_err() {
            self.store.create_user(&name).await.unwrap();
        }
        let token = secrets::generate("fm_").unwrap();
        self.store
            .add_token(
                &name,
                &DeviceName::parse(device).unwrap(),
                &secrets::hash(&token),
                &secrets::display_prefix(&token),
            )
            .await
            .unwrap();
        token
    }

    pub async fn collection(&self, user: &str, name: &str) {
        let u = self.store.user(user).await.unwrap();
        self.store
            .create_collection(u.id, &CollectionName::parse(name).unwrap())
            .await
            .unwrap();
    }

    /// `GET /api/keys` as `token`'s user.
    pub async fn keys(&self, token: &str) -> serde_json::Value {
        let resp = self
            .client
            .get(self.url("/api/keys"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    /// `DELETE /api/keys/{id}` as `token`'s user.
    pub async fn revoke_key(&self, token: &str, id: &serde_json::Value) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/keys/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_entry(&self, token: &str, path: &str, body: impl Into<String>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", ATOM_ENTRY)
            .body(body.into())
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// The body of a GET of `url` (absolute, or a path on this hub) with the token.
    pub async fn text(&self, token: &str, url: &str) -> String {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            self.url(url)
        };
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// PUT an Atom entry to a member URL, with an `If-Match` when given.
    pub async fn put_entry(
        &self,
        token: &str,
        url: &str,
        body: impl Into<String>,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .put(url)
            .bearer_auth(token)
            .header("content-type", ATOM_ENTRY)
            .body(body.into());
        if let Some(etag) = if_match {
            req = req.header("if-match", etag);
        }
        req.send().await.unwrap()
    }

    /// Edits a member as a generic AtomPub client does: GET, change the text (`from` to
    /// `to`, everything else kept as it came), PUT with `If-Match`.
    pub async fn edit_entry(&self, token: &str, url: &str, from: &str, to: &str) -> reqwest::Response {
        let resp = self.client.get(url).bearer_auth(token).send().await.unwrap();
        let etag = resp.headers()[reqwest::header::ETAG].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap().replace(from, to);
        self.put_entry(token, url, body, Some(&etag)).await
    }

    /// Creates a feed key for `feed` through the API; answers the JSON (`id`, `key`, `url`).
    pub async fn feed_key(&self, token: &str, feed: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/keys"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "feed": feed }))
            .send()
            .await
            .unwrap()
    }

    /// Everything the store holds for a user, to compare before and after bad requests.
    pub async fn snapshot(&self, user: &str) -> String {
        let u = self.store.user(user).await.unwrap();
        let mut out = format!("head={}\n", self.store.user_head(u.id).await.unwrap());
        for c in self.store.collections(u.id).await.unwrap() {
            for r in self.store.items_since(c.id, 0, 10_000).await.unwrap() {
                out.push_str(&format!(
                    "{}/{}@{} {}\n",
                    c.name,
                    r.item.id(),
                    r.seq,
                    serde_json::to_string(&r.item).unwrap()
                ));
            }
        }
        out
    }
}

/// A plain Atom entry.
pub fn entry(title: &str, text: &str) -> String {
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>{title}</title><content type="text">{text}</content></entry>"#
    )
}

/// An Atom entry with FeedSync metadata: `history` is `(sequence, when, by)`, topmost first.
pub fn sync_entry(id: &str, updates: u32, deleted: bool, history: &[(u32, &str, &str)], title: &str) -> String {
    let hist: String = history
        .iter()
        .map(|(s, w, b)| format!(r#"<sx:history sequence="{s}" when="{w}" by="{b}"/>"#))
        .collect();
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync"><title>{title}</title><content type="text">{title} body</content><sx:sync id="{id}" updates="{updates}" deleted="{deleted}">{hist}</sx:sync></entry>"#
    )
}

/// The database the HTTP tests run on: SQLite, or PostgreSQL when `FEEDMESH_TEST_DB` is
/// `postgres` (scripts/test runs the WebSub, follow and feed tests a second time so).
pub fn default_db() -> Db {
    match std::env::var("FEEDMESH_TEST_DB").as_deref() {
        Ok("postgres") => Db::Postgres,
        _ => Db::Sqlite,
    }
}

/// A fresh database URL for a test hub on [`default_db`]: a SQLite file in `dir`, or a new
/// PostgreSQL database.
pub async fn test_db(dir: &std::path::Path) -> String {
    match default_db() {
        Db::Sqlite => format!("sqlite://{}", dir.join("feedmesh.db").display()),
        Db::Postgres => postgres_url()
            .await
            .expect("FEEDMESH_TEST_DB=postgres needs FEEDMESH_TEST_POSTGRES_URL"),
    }
}

/// Serves `router` on 127.0.0.1, port 0; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Waits (up to 8 s) until `check` holds; fails naming `what`.
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(what, 8, check).await
}

/// Waits up to `secs` seconds, looking every 20 ms, until `check` holds; fails naming `what`.
pub async fn eventually_within(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A hub on `db` with alice's collection Notes and a laptop token (returned); None when
/// that database is not available (a skip).
pub async fn alice_with_notes(db: Db) -> Option<(TestApp, String)> {
    let app = TestApp::spawn_on(db).await?;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    Some((app, token))
}

/// A response header as text ("" when absent).
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A JSON API call as `token`: the status and the body (JSON, or the text as a string).
pub async fn api(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
