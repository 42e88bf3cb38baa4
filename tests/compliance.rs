//! The connector compliance kit: the same checks for every connector kind, each against its
//! peer (a feed server, GitHub's documented payloads, mastodon-mock) behind a loopback proxy
//! the kit controls, driven through `feedmesh` itself (the CLI and `serve` as processes):
//!
//! 1. config errors are named, and nothing is added;
//! 2. a server on a private address is refused by default;
//! 3. refused credentials are classified (`needs-reconnect`), not retried in a loop;
//! 4. a restart resumes from the cursor: what came since arrives, nothing twice;
//! 5. `kill -9` of `serve` in the middle of a pull loses and duplicates nothing;
//! 6. malformed and hostile answers (empty, not UTF-8, HTML, cut JSON, nesting 100,000
//!    deep, an XML bomb, 12 MB of junk) are refused without a crash, logged with the
//!    connector's id, retried later, and change nothing;
//! 7. its secrets are in no log, and not in the database in clear.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::common::process::{Proc, feedmesh, ok, serve_logged};

/// What the proxy does with the next requests.
#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Pass,
    /// Requests wait (a pull caught in the middle).
    Hold,
    /// Answers are replaced by this body, status 200 (streams pass).
    Replace(Vec<u8>),
    /// Answers are this status.
    Status(u16),
}

struct Proxy {
    target: String,
    mode: Mutex<Mode>,
    changed: tokio::sync::Notify,
    held: AtomicUsize,
    client: reqwest::Client,
}

impl Proxy {
    /// Counts a request held, and waits until the mode is no longer `Hold`.
    async fn hold(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        let changed = self.changed.notified();
        if *self.mode.lock().unwrap() == Mode::Hold {
            changed.await;
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        self.changed.notify_waiters();
    }
}

async fn forward(State(p): State<Arc<Proxy>>, req: axum::extract::Request) -> Response {
    let streaming = req.uri().path().contains("/streaming");
    loop {
        let mode = p.mode.lock().unwrap().clone();
        match mode {
            Mode::Hold => {
                p.hold().await;
                continue;
            }
            Mode::Status(s) => {
                let status = StatusCode::from_u16(s).unwrap();
                return (
                    status,
                    axum::Json(json!({"error": "refused by the kit", "message": "Bad credentials"})),
                )
                    .into_response();
            }
            Mode::Replace(body) if !streaming => {
                // As the status the service answers with: 207 for WebDAV's REPORT and PROPFIND.
                let dav = matches!(req.method().as_str(), "REPORT" | "PROPFIND");
                let status = if dav { StatusCode::MULTI_STATUS } else { StatusCode::OK };
                return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            _ => break,
        }
    }
    let (parts, body) = req.into_parts();
    let url = format!("{}{}", p.target, parts.uri.path_and_query().map_or("/", |q| q.as_str()));
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut out = p.client.request(parts.method.clone(), url).body(body);
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let Ok(resp) = out.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut answer = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            answer = answer.header(k.as_str(), v.as_bytes());
        }
    }
    answer.body(Body::from_stream(resp.bytes_stream())).unwrap()
}

/// A proxy on 127.0.0.1 in front of `target`, rewriting nothing but what its mode says.
async fn proxy(target: &str) -> (String, Arc<Proxy>) {
    let p = Arc::new(Proxy {
        target: target.trim_end_matches('/').to_string(),
        mode: Mutex::new(Mode::Pass),
        changed: tokio::sync::Notify::new(),
        held: AtomicUsize::new(0),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(forward).with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, p)
}

/// A TCP proxy on 127.0.0.1 in front of `target` (an IMAP server), for the same modes: it
/// forwards bytes (`Pass`), keeps connections waiting (`Hold`), or answers a body of its own
/// and closes (`Replace`, `Status`: the server's greeting replaced).
async fn tcp_proxy(target: std::net::SocketAddr) -> (u16, Arc<Proxy>) {
    let p = Arc::new(Proxy {
        target: target.to_string(),
        mode: Mutex::new(Mode::Pass),
        changed: tokio::sync::Notify::new(),
        held: AtomicUsize::new(0),
        client: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = p.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let p = proxy.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                loop {
                    let mode = p.mode.lock().unwrap().clone();
                    match mode {
                        Mode::Hold => p.hold().await,
                        Mode::Replace(body) => {
                            let _ = client.write_all(&body).await;
                            let _ = client.shutdown().await;
                            return;
                        }
                        Mode::Status(_) => {
                            let _ = client.write_all(b"* BYE refused by the kit\r\n").await;
                            return;
                        }
                        Mode::Pass => break,
                    }
                }
                if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, p)
}

/// A feed server: an Atom feed of `entries`, with an ETag.
#[derive(Default)]
struct Feed {
    entries: usize,
}

async fn feed_doc(State(f): State<Arc<Mutex<Feed>>>, headers: axum::http::HeaderMap) -> Response {
    let n = f.lock().unwrap().entries;
    let tag = format!("\"n{n}\"");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    let entries: String = (0..n)
        .map(|i| {
            format!(
                "<entry><id>urn:kit:{i}</id><title>entry {i}</title><updated>2026-01-01T00:{:02}:{:02}Z</updated></entry>",
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:kit</id><title>kit</title>\
         <updated>2026-01-01T00:00:00Z</updated>{entries}</feed>"
    );
    (
        [
            (header::CONTENT_TYPE, "application/atom+xml".to_string()),
            (header::ETAG, tag),
        ],
        body,
    )
        .into_response()
}

/// The kind under test and its peer.
enum Peer {
    Feed(Arc<Mutex<Feed>>),
    Github(crate::connectors::Shared),
    Mastodon {
        instance: String,
        _peer: Box<(tokio::process::Child, tempfile::TempDir)>,
    },
    Imap(Box<crate::common::dovecot::Dovecot>),
    CardDav(Box<crate::common::radicale::Radicale>),
}

/// The kit's card `i`.
fn kit_card(i: usize) -> String {
    crate::common::radicale::card(
        &format!("kit{i}"),
        &format!("Kit Person{i}"),
        &[&format!("EMAIL:kit{i}@example.org")],
    )
}

/// The kit's mail, `i` of them.
fn kit_mail(i: usize) -> Vec<u8> {
    crate::imap::from_bob(&format!("kit mail {i}"), &format!("kit{i}@example.org"), "", "hello")
}

struct Subject {
    peer: Peer,
    /// The proxy's URL, which the connector is pointed at.
    base: String,
    proxy: Arc<Proxy>,
    /// Items the peer holds for the connector now.
    expected: usize,
}

const MM_CONFIG: &str = r#"
url_scheme = "http"
[auth]
permissive = false
[[seed.accounts]]
username = "alice"
access_token = "alice-token"
[[seed.accounts]]
username = "bob"
access_token = "bob-token"
[[seed.follows]]
follower = "alice"
following = "bob"
[[seed.statuses]]
account = "bob"
text = "bob one"
[[seed.statuses]]
account = "bob"
text = "bob two"
"#;

impl Subject {
    async fn start(kind: &'static str) -> Option<Subject> {
        let (peer, target, expected) = match kind {
            "feed" => {
                let f = Arc::new(Mutex::new(Feed { entries: 5 }));
                let app = axum::Router::new()
                    .route("/feed.atom", axum::routing::get(feed_doc))
                    .with_state(f.clone());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
                (Peer::Feed(f), base, 5)
            }
            "github" => {
                let (base, gh) = crate::connectors::github().await;
                (Peer::Github(gh), base, 180)
            }
            "mastodon" => {
                let (instance, mm, dir) = crate::connectors::mastodon(MM_CONFIG).await?;
                (
                    Peer::Mastodon {
                        instance: instance.clone(),
                        _peer: Box::new((mm, dir)),
                    },
                    instance,
                    2,
                )
            }
            "imap" => {
                let dc = crate::common::dovecot::Dovecot::start()?;
                for i in 0..5 {
                    dc.deliver("alice", "INBOX", &kit_mail(i));
                }
                let target = std::net::SocketAddr::from(([127, 0, 0, 1], dc.port));
                let (port, proxy) = tcp_proxy(target).await;
                return Some(Subject {
                    peer: Peer::Imap(Box::new(dc)),
                    base: port.to_string(),
                    proxy,
                    expected: 5,
                });
            }
            "carddav" => {
                let dav = crate::common::radicale::Radicale::start().await?;
                for i in 0..3 {
                    assert_eq!(dav.put(&format!("kit{i}.vcf"), &kit_card(i), None).await.0, 201);
                }
                let target = dav.base.clone();
                (Peer::CardDav(Box::new(dav)), target, 3)
            }
            _ => unreachable!(),
        };
        let (base, proxy) = proxy(&target).await;
        Some(Subject {
            peer,
            base,
            proxy,
            expected,
        })
    }

    /// The options that reach the peer (through the proxy), with good credentials.
    fn options(&self) -> Vec<String> {
        match &self.peer {
            Peer::Feed(_) => vec![format!("url={}/feed.atom", self.base)],
            Peer::Github(_) => vec![
                "login=octocat".into(),
                format!("api={}", self.base),
                format!("token={}", crate::connectors::TOKEN),
            ],
            Peer::Mastodon { .. } => vec![format!("instance={}", self.base), "token=alice-token".into()],
            Peer::Imap(_) => self.imap_options(crate::common::dovecot::PASSWORD),
            Peer::CardDav(_) => self.dav_options(crate::common::radicale::PASSWORD),
        }
    }

    fn dav_options(&self, password: &str) -> Vec<String> {
        vec![
            format!("url={}/alice/contacts/", self.base),
            "user=alice".into(),
            format!("password={password}"),
        ]
    }

    /// The collection its items land in.
    fn collection(&self, kind: &'static str) -> &'static str {
        match self.peer {
            Peer::CardDav(_) => "Contacts",
            _ => kind,
        }
    }

    /// IMAP through the proxy (its `base` is the proxy's port), with a short idle limit.
    fn imap_options(&self, password: &str) -> Vec<String> {
        vec![
            "host=127.0.0.1".into(),
            format!("port={}", self.base),
            "tls=none".into(),
            "user=alice".into(),
            format!("password={password}"),
            "timeout=5".into(),
        ]
    }

    /// The same with credentials the service refuses, where it has credentials.
    fn wrong_credentials(&self) -> Option<Vec<String>> {
        match &self.peer {
            Peer::Feed(_) => None,
            Peer::Github(_) => Some(vec![
                "login=octocat".into(),
                format!("api={}", self.base),
                "token=ghp_wrong".into(),
            ]),
            Peer::Mastodon { .. } => Some(vec![format!("instance={}", self.base), "token=wrong-token".into()]),
            Peer::Imap(_) => Some(self.imap_options("imap-wrong-pw")),
            Peer::CardDav(_) => Some(self.dav_options("dav-wrong-pw")),
        }
    }

    /// Option sets that are wrong, and the word the error must name.
    fn bad_options(&self) -> Vec<(Vec<String>, &'static str)> {
        let mut bad = vec![(vec!["colour=red".to_string()], "colour")];
        match &self.peer {
            Peer::Feed(_) => {
                bad.push((vec![], "url"));
                bad.push((vec!["url=gopher://x.example/".into()], "url"));
            }
            Peer::Github(_) => {
                bad.push((vec!["api=https://api.example".into()], "login"));
                bad.push((vec!["login=octocat".into(), "api=ftp://x.example".into()], "api"));
            }
            Peer::Mastodon { .. } => {
                bad.push((vec![], "instance"));
                bad.push((vec!["instance=https://m.example/@alice".into()], "instance"));
            }
            Peer::Imap(_) => {
                bad.push((vec!["user=alice".into(), "password=x".into()], "host"));
                bad.push((vec!["host=mail.example".into(), "user=alice".into()], "password"));
                bad.push((
                    vec![
                        "host=mail.example".into(),
                        "user=a".into(),
                        "password=x".into(),
                        "tls=maybe".into(),
                    ],
                    "tls",
                ));
            }
            Peer::CardDav(_) => {
                bad.push((vec!["user=alice".into(), "password=x".into()], "url"));
                bad.push((
                    vec!["url=ftp://x.example/".into(), "user=a".into(), "password=x".into()],
                    "url",
                ));
                bad.push((vec!["url=https://dav.example/a/".into(), "user=a".into()], "password"));
            }
        }
        bad
    }

    /// The secrets its options hold.
    fn secrets(&self) -> Vec<&'static str> {
        match &self.peer {
            Peer::Feed(_) => Vec::new(),
            Peer::Github(_) => vec![crate::connectors::TOKEN, "ghp_wrong"],
            Peer::Mastodon { .. } => vec!["alice-token", "wrong-token"],
            Peer::Imap(_) => vec![crate::common::dovecot::PASSWORD, "imap-wrong-pw"],
            Peer::CardDav(_) => vec![crate::common::radicale::PASSWORD, "dav-wrong-pw"],
        }
    }

    /// `n` new items at the peer.
    async fn add_items(&mut self, n: usize) {
        match &self.peer {
            Peer::Feed(f) => f.lock().unwrap().entries += n,
            Peer::Github(gh) => {
                let mut g = gh.lock().unwrap();
                let list = g.lists.get_mut("events").unwrap();
                let top: u64 = list[0]["id"].as_str().unwrap().parse().unwrap();
                let mut fresh = crate::connectors::events("user-events-items", n, top + n as u64);
                for e in &mut fresh {
                    e["created_at"] = json!("2023-01-01T00:00:00Z");
                }
                fresh.append(list);
                *list = fresh;
            }
            Peer::Mastodon { instance, .. } => {
                let client = reqwest::Client::new();
                for i in 0..n {
                    let r = client
                        .post(format!("{instance}/api/v1/statuses"))
                        .bearer_auth("bob-token")
                        .json(&json!({"status": format!("bob new {}", self.expected + i)}))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            }
            Peer::Imap(dc) => {
                for i in 0..n {
                    dc.deliver("alice", "INBOX", &kit_mail(self.expected + i));
                }
            }
            Peer::CardDav(dav) => {
                for i in 0..n {
                    let k = self.expected + i;
                    assert_eq!(dav.put(&format!("kit{k}.vcf"), &kit_card(k), None).await.0, 201);
                }
            }
        }
        self.expected += n;
    }
}

/// The running hub of the kit: its data directory and database (SQLite, or PostgreSQL with
/// `FEEDMESH_TEST_DB=postgres`), `serve`, its API token and logs.
struct Hub {
    dir: tempfile::TempDir,
    db: String,
    store: tokio::sync::OnceCell<Arc<dyn feedmesh::store::Store>>,
    serve: Option<(Proc, String, Arc<Mutex<String>>)>,
    token: String,
    logs: String,
}

impl Hub {
    fn start(&mut self) {
        let (child, base, log) = serve_logged(
            self.dir.path(),
            &["--allow-private-network", "--database", &self.db],
            &[("FEEDMESH_LOG", "info")],
        );
        self.serve = Some((Proc(child), base, log));
    }

    /// SIGKILL, keeping what it logged.
    fn kill(&mut self) {
        if let Some((mut p, _, log)) = self.serve.take() {
            p.0.kill().unwrap();
            p.0.wait().unwrap();
            self.logs.push_str(&log.lock().unwrap());
        }
    }

    fn logs(&self) -> String {
        let mut all = self.logs.clone();
        if let Some((_, _, log)) = &self.serve {
            all.push_str(&log.lock().unwrap());
        }
        all
    }

    async fn api(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let base = &self.serve.as_ref().unwrap().1;
        let resp = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn connector(&self, id: &str) -> Value {
        self.api(reqwest::Method::GET, &format!("/api/connectors/{id}")).await.1
    }

    async fn sync(&self, id: &str) {
        let (status, c) = self
            .api(reqwest::Method::POST, &format!("/api/connectors/{id}/sync"))
            .await;
        assert_eq!(status, 200, "{c}");
    }

    /// The items of the connector's collection, and how many changes made them.
    async fn items(&self, collection: &str) -> (HashMap<String, usize>, usize) {
        let store = self
            .store
            .get_or_init(async || {
                feedmesh::store::open(&self.db, crate::common::sealer_of(self.dir.path()))
                    .await
                    .unwrap()
            })
            .await;
        let user = store.user("alice").await.unwrap();
        let Ok(col) = store.collection(user.id, collection).await else {
            return (HashMap::new(), 0);
        };
        let mut ids = HashMap::new();
        for r in store.items_since(col.id, 0, 10_000).await.unwrap() {
            *ids.entry(r.item.id().to_string()).or_default() += 1;
        }
        let changes = store
            .changes(user.id, None, None, 10_000)
            .await
            .unwrap()
            .iter()
            .filter(|c| c.collection == collection)
            .count();
        (ids, changes)
    }

    /// Waits until the collection holds `n` items, each made by one change.
    async fn holds(&self, collection: &str, n: usize, what: &str) {
        self.holds_within(collection, n, what, 30).await
    }

    async fn holds_within(&self, collection: &str, n: usize, what: &str, secs: u64) {
        crate::common::eventually_within(what, secs, async || self.items(collection).await.0.len() >= n).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ids, changes) = self.items(collection).await;
        assert_eq!(ids.len(), n, "{what}: items");
        assert_eq!(changes, n, "{what}: one change per item, nothing written twice");
    }
}

/// The kit itself: every check, for one kind.
async fn comply(kind: &'static str) {
    feedmesh::net::install_crypto();
    let Some(mut s) = Subject::start(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path()).await;
    let mut hub = Hub {
        dir,
        db,
        store: tokio::sync::OnceCell::new(),
        serve: None,
        token: String::new(),
        logs: String::new(),
    };
    let d = hub.dir.path().to_path_buf();
    let db = hub.db.clone();
    let ok = |d: &std::path::Path, args: &[&str]| ok(d, &[args, &["--database", db.as_str()]].concat());
    let feedmesh = |d: &std::path::Path, args: &[&str]| feedmesh(d, &[args, &["--database", db.as_str()]].concat());
    ok(&d, &["user", "add", "alice"]);
    hub.token = ok(&d, &["token", "add", "alice", "--device", "kit"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let add = |options: &[String], collection: &str, private: bool| {
        let mut args = vec!["connector", "add", "alice", kind, "--collection", collection];
        for o in options {
            args.extend(["--option", o.as_str()]);
        }
        if private {
            args.push("--allow-private-network");
        }
        feedmesh(&d, &args)
    };

    // 1. Config errors are named, and nothing is added.
    for (options, named) in s.bad_options() {
        let (success, _, err) = add(&options, s.collection(kind), true);
        assert!(
            !success && err.contains(named) && !err.contains("panicked"),
            "{kind} {options:?}: {err}"
        );
    }
    // 2. The peer is on 127.0.0.1: refused unless allowed.
    let (success, _, err) = add(&s.options(), s.collection(kind), false);
    assert!(
        !success && (err.contains("private") || err.contains("loopback")),
        "{kind}: {err}"
    );
    assert_eq!(
        ok(&d, &["connector", "list", "alice"]).lines().count(),
        1,
        "{kind}: nothing was added"
    );

    hub.start();
    // 3. Refused credentials: needs-reconnect, and not run again by itself.
    let refused = match s.wrong_credentials() {
        Some(options) if s.collection(kind) != kind => add(&options, s.collection(kind), true),
        Some(options) => add(&options, "refused", true),
        // No credentials to get wrong: the service refuses whoever asks.
        None => {
            s.proxy.set(Mode::Status(401));
            add(&s.options(), "refused", true)
        }
    };
    assert!(refused.0, "{kind}: {}", refused.2);
    let refused = refused.1.lines().next().unwrap().to_string();
    hub.sync(&refused).await;
    crate::common::eventually_within("needs-reconnect", 20, async || {
        hub.connector(&refused).await["state"] == "needs-reconnect"
    })
    .await;
    let c = hub.connector(&refused).await;
    assert!(c["next_run_at"].is_null() && c["last_error"].is_string(), "{kind}: {c}");
    s.proxy.set(Mode::Pass);
    ok(&d, &["connector", "remove", "alice", &refused]);

    // The connector itself, and its first pull.
    let (success, out, err) = add(&s.options(), s.collection(kind), true);
    let kind_col = s.collection(kind);
    assert!(success, "{kind}: {err}");
    let id = out.lines().next().unwrap().to_string();
    hub.sync(&id).await;
    hub.holds(kind_col, s.expected, "the first pull").await;

    // 4. A restart resumes from the cursor: what came since, nothing twice.
    s.add_items(2).await;
    hub.kill();
    hub.start();
    hub.sync(&id).await;
    hub.holds(kind_col, s.expected, "after a restart").await;

    // 5. kill -9 in the middle of a pull.
    s.add_items(3).await;
    s.proxy.held.store(0, Ordering::SeqCst);
    s.proxy.set(Mode::Hold);
    hub.sync(&id).await;
    crate::common::eventually_within("a pull caught midway", 20, async || {
        s.proxy.held.load(Ordering::SeqCst) > 0
    })
    .await;
    hub.kill();
    s.proxy.set(Mode::Pass);
    hub.start();
    hub.sync(&id).await;
    // SQLite's `serve` owns its database and frees the dead one's claims at once; on
    // PostgreSQL the killed run's lease (half a minute) runs out first.
    hub.holds_within(kind_col, s.expected, "after kill -9 mid-pull", 90)
        .await;

    // 6. Malformed and hostile answers: refused, logged, retried later, nothing changed.
    let bomb = {
        let mut x = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            x.push_str(&format!("<!ENTITY lol{i} \"{}\">", format!("&{prev};").repeat(10)));
        }
        x.push_str("]><feed xmlns=\"http://www.w3.org/2005/Atom\"><title>&lol9;</title></feed>");
        x.into_bytes()
    };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not UTF-8", b"\xff\xfe\x00\x00garbage\xc3\x28".to_vec()),
        ("HTML", b"<html><body>an error page</body></html>".to_vec()),
        ("cut JSON", b"[{\"id\": \"1\", \"type\":".to_vec()),
        ("nesting 100,000 deep", "[".repeat(100_000).into_bytes()),
        ("an XML bomb", bomb),
        ("12 MB of junk", vec![b'x'; 12 << 20]),
    ];
    for (what, body) in hostile {
        s.proxy.set(Mode::Replace(body));
        hub.sync(&id).await;
        crate::common::eventually_within(what, 20, async || hub.connector(&id).await["last_error"].is_string()).await;
        let c = hub.connector(&id).await;
        assert!(
            matches!(c["state"].as_str(), Some("active" | "failing")) && c["next_run_at"].is_string(),
            "{kind}, {what}: retried later, not stopped: {c}"
        );
        s.proxy.set(Mode::Pass);
        hub.sync(&id).await;
        crate::common::eventually_within("a good pull again", 20, async || {
            hub.connector(&id).await["last_error"].is_null()
        })
        .await;
        hub.holds(kind_col, s.expected, what).await;
    }
    let logs = hub.logs();
    let failed = logs
        .lines()
        .filter(|l| l.contains("a connector's run failed") && l.contains(&format!("connector={id}")))
        .count();
    assert!(
        failed >= 7,
        "{kind}: each refusal is logged with the connector's id ({failed}):\n{logs}"
    );
    assert!(!logs.contains("panicked"), "{kind}: {logs}");
    // 7. Its secrets are in no log and, sealed, nowhere in the database in clear.
    for secret in s.secrets() {
        assert!(!logs.contains(secret), "{kind}: a secret is in the logs");
        if hub.db.starts_with("sqlite:") {
            let bytes = crate::connectors::database_bytes(hub.dir.path());
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{kind}: a secret is in the database in clear"
            );
        }
    }
}

#[tokio::test]
async fn the_feed_connector_complies() {
    comply("feed").await;
}

#[tokio::test]
async fn the_github_connector_complies() {
    comply("github").await;
}

#[tokio::test]
async fn the_mastodon_connector_complies() {
    comply("mastodon").await;
}

#[tokio::test]
async fn the_imap_connector_complies() {
    comply("imap").await;
}

#[tokio::test]
async fn the_carddav_connector_complies() {
    comply("carddav").await;
}
