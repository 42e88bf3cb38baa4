//! Connectors against their services over real HTTP on 127.0.0.1, through the hub's guarded
//! client (`fetch::ConnectorHttp`). GitHub: a loopback server that speaks the REST API's
//! wire format (Link paging, ETags and 304, `X-Poll-Interval`, the rate-limit headers, 401
//! for a wrong token) and serves GitHub's own documented event payloads (the examples of
//! its OpenAPI description, `tests/fixtures/github-activity-examples.json`, extracted once
//! from npm `@octokit/openapi`).

use crate::common::api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use feedmesh::fetch::ConnectorHttp;
use feedmesh::net::Outbound;
use feedmesh_connector::{Connector, ConnectorError, Cursor, ErrorKind, Options};
use feedmesh_connector_github::{GithubConfig, GithubConnector, OPTIONS};

pub(crate) const TOKEN: &str = "ghp_test_token_0001";

#[derive(Default)]
pub(crate) struct Github {
    /// RFC 7662 introspection at an authorization server: bearer tokens it says are active
    /// are taken as well as TOKEN (the OAuth tests).
    pub(crate) introspect: Option<String>,
    /// Every bearer token presented.
    pub(crate) bearers: Vec<String>,
    pub(crate) lists: HashMap<String, Vec<Value>>,
    /// (path with query, If-None-Match sent)
    pub(crate) seen: Vec<(String, Option<String>)>,
    pub(crate) rate_limited: bool,
    pub(crate) garbage: bool,
    /// Seconds the second page of a list waits before it answers (a pull to kill midway).
    pub(crate) slow_page: u64,
}

pub(crate) type Shared = Arc<Mutex<Github>>;

fn examples() -> Value {
    serde_json::from_str(include_str!("fixtures/github-activity-examples.json")).unwrap()
}

/// `n` events made from the documented examples of `key`, ids counting down from `top`.
pub(crate) fn events(key: &str, n: usize, top: u64) -> Vec<Value> {
    let ex = examples()[key].as_array().unwrap().clone();
    (0..n)
        .map(|i| {
            let mut e = ex[i % ex.len()].clone();
            e["id"] = json!((top - i as u64).to_string());
            e["created_at"] = json!(format!("2022-06-{:02}T12:{:02}:00Z", 28 - (i / 60) % 28, 59 - i % 60));
            e
        })
        .collect()
}

fn etag(list: &[Value]) -> String {
    format!(
        "\"{}-{}\"",
        list.len(),
        list.first().and_then(|e| e["id"].as_str()).unwrap_or("")
    )
}

async fn user(State(gh): State<Shared>, Path(login): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&gh, &headers).await {
        return r;
    }
    if login != "octocat" {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found"}))).into_response();
    }
    axum::Json(json!({"login": "octocat", "id": 583231, "html_url": "https://github.com/octocat"})).into_response()
}

async fn refuse(gh: &Shared, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let introspect = {
        let mut g = gh.lock().unwrap();
        g.bearers.push(bearer.clone());
        g.introspect.clone()
    };
    let active = bearer == TOKEN
        || match introspect {
            Some(url) if !bearer.is_empty() => {
                let v: Value = reqwest::Client::new()
                    .post(url)
                    .basic_auth("hub", Some("hub-secret"))
                    .form(&[("token", bearer.as_str())])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["active"] == json!(true)
            }
            _ => false,
        };
    if !active {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "Bad credentials"})),
            )
                .into_response(),
        );
    }
    if gh.lock().unwrap().rate_limited {
        let reset = (chrono::Utc::now().timestamp() + 30).to_string();
        return Some(
            (
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-limit", "5000".to_string()),
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", reset),
                ],
                axum::Json(json!({"message": "API rate limit exceeded"})),
            )
                .into_response(),
        );
    }
    None
}

async fn list(
    State(gh): State<Shared>,
    Path((login, which)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30).min(100);
    gh.lock()
        .unwrap()
        .seen
        .push((format!("/users/{login}/{which}?page={page}"), inm.clone()));
    if let Some(r) = refuse(&gh, &headers).await {
        return r;
    }
    let slow = gh.lock().unwrap().slow_page;
    if page == 2 && slow > 0 {
        tokio::time::sleep(Duration::from_secs(slow)).await;
    }
    let g = gh.lock().unwrap();
    if g.garbage {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            "[{\"id\": \"1\", \"type\":",
        )
            .into_response();
    }
    let Some(all) = g.lists.get(&which).filter(|_| login == "octocat") else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Not Found"}))).into_response();
    };
    let tag = etag(all);
    let common = [("x-poll-interval", "60".to_string()), ("etag", tag.clone())];
    if inm.as_deref() == Some(tag.as_str()) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let items: Vec<Value> = all.iter().skip((page - 1) * per).take(per).cloned().collect();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut links = Vec::new();
    if page * per < all.len() {
        links.push(format!(
            "<http://{host}/users/{login}/{which}?per_page={per}&page={}>; rel=\"next\"",
            page + 1
        ));
        links.push(format!(
            "<http://{host}/users/{login}/{which}?per_page={per}&page={}>; rel=\"last\"",
            all.len().div_ceil(per)
        ));
    }
    let mut resp = (common, axum::Json(items)).into_response();
    if !links.is_empty() {
        resp.headers_mut()
            .insert(header::LINK, links.join(", ").parse().unwrap());
    }
    resp.headers_mut()
        .insert("x-ratelimit-remaining", "4999".parse().unwrap());
    resp
}

pub(crate) async fn github() -> (String, Shared) {
    let gh: Shared = Arc::default();
    {
        let mut g = gh.lock().unwrap();
        g.lists
            .insert("events".into(), events("user-events-items", 150, 30_000_150));
        g.lists.insert(
            "received_events".into(),
            events("user-received-events-items", 30, 20_000_030),
        );
    }
    let app = axum::Router::new()
        .route("/users/{login}", get(user))
        .route("/users/{login}/{which}", get(list))
        .with_state(gh.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, gh)
}

fn connector(api: &str, login: &str, token: &str) -> GithubConnector {
    let pairs = [("login", login), ("api", api), ("token", token)];
    let options = Options::new(OPTIONS, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    GithubConnector::new(GithubConfig::from_options(&options).unwrap())
}

/// The bytes of a hub's SQLite files (the database, its WAL), to look for secrets in clear.
pub(crate) fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().contains("feedmesh.db") {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    bytes
}

fn outbound(allow_private: bool) -> Outbound {
    feedmesh::net::install_crypto();
    Outbound::new(allow_private, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn github_events_are_paged_kept_by_etag_and_turned_into_activities() {
    let (api, gh) = github().await;
    let out = outbound(true);
    let http = ConnectorHttp(&out);
    let c = connector(&api, "octocat", TOKEN);
    assert_eq!(c.check(&http).await.unwrap(), "octocat");

    let first = c.pull(&http, &Cursor::default()).await.unwrap();
    assert_eq!(first.items.len(), 180, "150 own events over two pages and 30 received");
    let mut ids: Vec<&str> = first.items.iter().map(|p| p.id.as_str()).collect();
    assert!(
        first.items.windows(2).all(|w| w[0].entry.updated >= w[1].entry.updated),
        "newest first"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 180, "ids are unique");
    assert_eq!(first.poll_after, Some(60), "X-Poll-Interval is passed on");
    let push = first
        .items
        .iter()
        .find(|p| p.entry.categories.iter().any(|c| c.term == "PushEvent"))
        .expect("the documented PushEvent");
    assert_eq!(
        push.entry.authors[0].uri.as_deref(),
        Some(format!("{api}/octocat").as_str())
    );
    assert!(
        push.entry
            .title
            .value
            .starts_with("octocat pushed to master in octocat/Hello-World"),
        "{:?}",
        push.entry.title
    );
    assert_eq!(
        push.entry.published,
        push.entry.published.filter(|t| t.unix() > 1_600_000_000)
    );
    {
        let g = gh.lock().unwrap();
        let pages: Vec<&str> = g.seen.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            pages.contains(&"/users/octocat/events?page=2"),
            "the Link rel=next was followed: {pages:?}"
        );
    }

    // Unchanged: both lists answer 304 to the ETags kept in the cursor.
    gh.lock().unwrap().seen.clear();
    let again = c.pull(&http, &first.cursor).await.unwrap();
    assert!(again.not_modified && again.items.is_empty(), "{:?}", again.items.len());
    {
        let g = gh.lock().unwrap();
        assert_eq!(g.seen.len(), 2, "one conditional request per list: {:?}", g.seen);
        assert!(g.seen.iter().all(|(_, inm)| inm.is_some()), "If-None-Match sent");
    }

    // Two new events: only they come, and paging stops at what was seen.
    {
        let mut g = gh.lock().unwrap();
        let mut fresh = events("user-events-items", 2, 30_000_152);
        fresh[0]["created_at"] = json!("2022-07-01T10:00:00Z");
        fresh[1]["created_at"] = json!("2022-07-01T09:00:00Z");
        let list = g.lists.get_mut("events").unwrap();
        fresh.append(list);
        *list = fresh;
        g.seen.clear();
    }
    let next = c.pull(&http, &again.cursor).await.unwrap();
    let got: Vec<&str> = next.items.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got, ["github-event-30000152", "github-event-30000151"]);
    assert!(
        !gh.lock().unwrap().seen.iter().any(|(p, _)| p.contains("page=2")),
        "no second page once seen events are reached"
    );
    // A restart from the same cursor brings the same two, nothing else (the hub merges by id).
    let replay = c.pull(&http, &again.cursor).await.unwrap();
    assert_eq!(replay.items, next.items);
}

#[tokio::test]
async fn github_failures_are_classified_and_nothing_panics() {
    let (api, gh) = github().await;
    let out = outbound(true);
    let http = ConnectorHttp(&out);

    let wrong = connector(&api, "octocat", "ghp_wrong");
    let e = wrong.pull(&http, &Cursor::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert_eq!(wrong.check(&http).await.unwrap_err().kind(), ErrorKind::Auth);

    let nobody = connector(&api, "nobody-here", TOKEN);
    let e = nobody.pull(&http, &Cursor::default()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Permanent(_)), "{e}");

    let c = connector(&api, "octocat", TOKEN);
    gh.lock().unwrap().rate_limited = true;
    match c.pull(&http, &Cursor::default()).await {
        Err(ConnectorError::RateLimited(wait)) => assert!((1..=31).contains(&wait), "{wait}"),
        other => panic!("an exhausted rate limit: {other:?}"),
    }
    gh.lock().unwrap().rate_limited = false;

    gh.lock().unwrap().garbage = true;
    let e = c.pull(&http, &Cursor::default()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Malformed(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::Transient);
    gh.lock().unwrap().garbage = false;
    // A cursor that is not the connector's own is read as none.
    let odd = Cursor {
        state: Some("{not json".into()),
        ..Cursor::default()
    };
    assert_eq!(c.pull(&http, &odd).await.unwrap().items.len(), 180);

    // By default the hub's outbound policy refuses loopback and private addresses.
    let strict = outbound(false);
    let e = c.pull(&ConnectorHttp(&strict), &Cursor::default()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Refused(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::Permanent);
}

/// The runtime end to end: a GitHub connector added over the API pulls into its own
/// collection as activities linked to the contact holding the actor's profile URL, keeps
/// its cursor (a sync adds nothing), keeps its token sealed, is the user's alone, and a
/// refused token puts it in needs-reconnect.
#[tokio::test]
async fn a_github_connector_runs_into_its_collection_and_contact_timelines() {
    use reqwest::Method;
    let (gh_api, gh) = github().await;
    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;

    // Clear refusals first; nothing is made.
    let bad = [
        (json!({"kind": "gitlab", "options": {}}), "gitlab"),
        (json!({"kind": "github", "options": {}}), "login"),
        (
            json!({"kind": "github", "options": {"login": "octocat", "colour": "x"}}),
            "colour",
        ),
        (
            json!({"kind": "github", "options": {"login": "octocat", "api": "ftp://x"}}),
            "api",
        ),
    ];
    for (body, named) in bad {
        let (status, v) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
        assert_eq!(status, 400, "{v}");
        assert!(v.to_string().contains(named), "{v} names {named}");
    }
    assert_eq!(
        api(&app, &token, Method::GET, "/api/connectors", None).await.1,
        json!([])
    );

    // A contact holding octocat's profile URL, before anything arrives.
    let profile = format!("{gh_api}/octocat");
    let (status, contact) = api(
        &app,
        &token,
        Method::POST,
        "/api/contacts",
        Some(json!({"name": "The Octocat", "identities": [profile]})),
    )
    .await;
    assert_eq!(status, 201, "{contact}");

    let body = json!({"kind": "github", "options": {"login": "octocat", "api": gh_api, "token": TOKEN}});
    let (status, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(
        (c["kind"].as_str(), c["collection"].as_str(), c["state"].as_str()),
        (Some("github"), Some("github"), Some("active"))
    );
    assert!(!c.to_string().contains(TOKEN), "the token is never answered: {c}");
    let id = c["id"].as_i64().unwrap();
    let path = format!("/api/connectors/{id}");
    crate::common::eventually("the first pull", async || {
        api(&app, &token, Method::GET, &path, None).await.1["last_sync_at"].is_string()
    })
    .await;
    let (_, c) = api(&app, &token, Method::GET, &path, None).await;
    assert_eq!(
        (c["account"].as_str(), c["state"].as_str()),
        (Some("octocat"), Some("active")),
        "{c}"
    );
    let user = app.store.user("alice").await.unwrap();
    let col = app.store.collection(user.id, "github").await.unwrap();
    assert_eq!(app.store.items_since(col.id, 0, 1000).await.unwrap().len(), 180);
    let head = app.store.user_head(user.id).await.unwrap();

    // Linked by identity: the contact's timeline holds octocat's events (the received ones
    // are by other actors in the documented examples).
    let cid = contact["id"].as_str().unwrap();
    let resp = app
        .get(&token, &format!("/u/alice/contacts/{cid}/timeline.json?limit=1000"))
        .await;
    let feed: Value = resp.json().await.unwrap();
    let from_github = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"].as_str().is_some_and(|t| t.starts_with("octocat ")))
        .count();
    assert!(
        from_github >= 150,
        "{from_github} of octocat's events in the contact's timeline"
    );

    // A sync now: the service answers 304 to the kept ETags, nothing is written again.
    gh.lock().unwrap().seen.clear();
    let (status, _) = api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    assert_eq!(status, 200);
    crate::common::eventually("the sync's conditional requests", async || {
        gh.lock().unwrap().seen.iter().filter(|(_, inm)| inm.is_some()).count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.store.user_head(user.id).await.unwrap(),
        head,
        "a sync of nothing new writes nothing"
    );

    // The token is sealed at rest: not in the database file in clear.
    if app.db_url.starts_with("sqlite://") {
        let bytes = database_bytes(app.dir.path());
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is in the database in clear"
        );
    }

    // Another user sees none of it.
    let eve = app.token("eve", "phone").await;
    assert_eq!(api(&app, &eve, Method::GET, "/api/connectors", None).await.1, json!([]));
    for (m, p) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/pause")),
    ] {
        assert_eq!(api(&app, &eve, m, &p, None).await.0, 404, "{p}");
    }

    // Pause, then a refused token: needs-reconnect, shown with the reason, and not resumable as is.
    let (_, c) = api(&app, &token, Method::POST, &format!("{path}/pause"), None).await;
    assert_eq!(c["state"], "paused");
    assert_eq!(
        api(&app, &token, Method::POST, &format!("{path}/sync"), None).await.0,
        409
    );
    let body = json!({"kind": "github", "collection": "gh2", "options": {"login": "octocat", "api": gh_api, "token": "ghp_revoked"}});
    let (_, c2) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
    let path2 = format!("/api/connectors/{}", c2["id"]);
    crate::common::eventually("needs-reconnect", async || {
        api(&app, &token, Method::GET, &path2, None).await.1["state"] == "needs-reconnect"
    })
    .await;
    let (_, c2) = api(&app, &token, Method::GET, &path2, None).await;
    assert!(c2["last_error"].as_str().unwrap().contains("401"), "{c2}");
    assert_eq!(
        api(&app, &token, Method::POST, &format!("{path2}/resume"), None)
            .await
            .0,
        409
    );
    assert_eq!(api(&app, &token, Method::DELETE, &path2, None).await.0, 204);
    assert_eq!(api(&app, &token, Method::GET, &path2, None).await.0, 404);
}

/// oidc-provider on 127.0.0.1 (tests/fixtures/oidc-provider.mjs): its issuer URL, and the
/// process (killed on drop). None (a skip) without node and the package.
pub async fn oidc_provider(redirect_uri: &str, extra: &[(&str, &str)]) -> Option<(String, tokio::process::Child)> {
    let (node, dir) = crate::common::node_with("oidc-provider")?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-provider.mjs");
    // The script imports oidc-provider from the peers' node_modules.
    let copy = dir.join("oidc-provider-test.mjs");
    std::fs::copy(&script, &copy).unwrap();
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(&copy)
        .env("REDIRECT_URI", redirect_uri)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        tokio::time::timeout(Duration::from_secs(30), out.read_line(&mut line))
            .await
            .expect("oidc-provider says its port within 30 s")
            .unwrap();
        if let Some(port) = line.trim().strip_prefix("listening ") {
            let issuer = format!("http://127.0.0.1:{port}");
            // Whatever it writes later is read, so its stdout never breaks (EPIPE kills it).
            tokio::spawn(async move { while out.read_line(&mut String::new()).await.is_ok_and(|n| n > 0) {} });
            return Some((issuer, child));
        }
        assert!(!line.is_empty(), "oidc-provider ended before listening");
    }
}

/// The browser's part of the round trip, headless: oidc-provider's dev login and consent
/// forms (any login), cookies carried by hand, up to the redirect back to the hub.
pub async fn authorise_in_browser(authorize_url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = authorize_url.to_string();
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        let jar = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = match form.take() {
            Some(f) => client.post(&url).form(&f),
            None => client.get(&url),
        };
        let resp = req.header(header::COOKIE, jar).send().await.unwrap();
        for c in resp.headers().get_all(header::SET_COOKIE) {
            let pair = c.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = resp.status();
        let base = url::Url::parse(&url).unwrap();
        if status.is_redirection() {
            let loc = resp.headers()[header::LOCATION].to_str().unwrap();
            url = base.join(loc).unwrap().to_string();
            if url.contains("/oauth/callback") {
                return url;
            }
            continue;
        }
        let page = resp.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}: {page}");
        // A dev interaction page: the login form, then the consent form.
        form = Some(if page.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", "alice"), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        });
    }
    panic!("the authorisation never came back to the hub");
}

/// OAuth 2.0 end to end against oidc-provider: the client registered at run time, the
/// authorization URL answered by `connector add`, code + PKCE + state through the browser
/// to the hub's callback, a wrong state refused, tokens sealed (never in the database or
/// the API in clear), refreshed with rotation before they expire, revoked at the provider
/// when the connector goes, and a revoked grant ending in needs-reconnect without a loop.
#[tokio::test]
async fn an_oauth_connector_is_authorised_refreshed_revoked_and_reconnected() {
    use reqwest::Method;
    let app = crate::common::TestApp::spawn().await;
    let Some((issuer, _provider)) = oidc_provider(
        &format!("{}/oauth/callback", app.base),
        &[("AT_TTL", "30"), ("REVOKE_GRANT_ON_AT", "1")],
    )
    .await
    else {
        return;
    };
    let (gh_api, gh) = github().await;
    gh.lock().unwrap().introspect = Some(format!("{issuer}/token/introspection"));
    let token = app.token("alice", "laptop").await;

    // Without a client registration, an OAuth connector is refused, naming the command.
    let body = json!({"kind": "github", "options": {"login": "octocat", "api": gh_api}});
    let (status, v) = api(&app, &token, Method::POST, "/api/connectors", Some(body.clone())).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("oauth-client add"), "{v}");

    let client = json!({"provider": "github", "client_id": "hub", "client_secret": "hub-secret",
        "authorize_url": format!("{issuer}/auth"), "token_url": format!("{issuer}/token"),
        "revoke_url": format!("{issuer}/token/revocation"), "scope": "openid offline_access read:user"});
    let (status, v) = api(&app, &token, Method::POST, "/api/oauth-clients", Some(client)).await;
    assert_eq!(status, 201, "{v}");
    assert!(!v.to_string().contains("hub-secret"), "{v}");
    assert_eq!(v["redirect_uri"], json!(format!("{}/oauth/callback", app.base)));

    let (status, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body.clone())).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["state"], "needs-auth");
    let auth_url = c["authorize_url"].as_str().unwrap().to_string();
    let q: HashMap<String, String> = url::Url::parse(&auth_url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.base));
    assert!(q["state"].len() > 20 && q.contains_key("code_challenge"), "{q:?}");
    let path = format!("/api/connectors/{}", c["id"]);

    // A callback with a state the hub never gave is refused and changes nothing.
    let r = app
        .client
        .get(app.url("/oauth/callback?code=abc&state=1.forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(app.url("/oauth/callback?error=access_denied&state=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        api(&app, &token, Method::GET, &path, None).await.1["state"],
        "needs-auth"
    );

    // The round trip: login and consent at the provider, back to the hub's callback.
    let back = authorise_in_browser(&auth_url).await;
    let r = app.client.get(&back).send().await.unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Connected"), "{page}");
    // The same code and state again: used already.
    assert_eq!(app.client.get(&back).send().await.unwrap().status(), 400);
    crate::common::eventually("the first pull with the OAuth token", async || {
        api(&app, &token, Method::GET, &path, None).await.1["last_sync_at"].is_string()
    })
    .await;
    let (_, c) = api(&app, &token, Method::GET, &path, None).await;
    assert_eq!(
        (c["state"].as_str(), c["account"].as_str()),
        (Some("active"), Some("octocat")),
        "{c}"
    );
    let first = gh.lock().unwrap().bearers.last().cloned().unwrap();
    assert!(first.len() > 20 && first != TOKEN);

    // The access token lives 30 s, under the minute the hub refreshes ahead: a sync now
    // refreshes first (the provider rotates the refresh token), then pulls with the new one.
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    crate::common::eventually("a pull with a refreshed token", async || {
        gh.lock()
            .unwrap()
            .bearers
            .iter()
            .any(|b| b != &first && b != TOKEN && !b.is_empty())
    })
    .await;
    crate::common::eventually("the sync to finish", async || {
        api(&app, &token, Method::GET, &path, None).await.1["state"] == "active"
    })
    .await;
    let second = gh.lock().unwrap().bearers.last().cloned().unwrap();

    // No token in clear in the database.
    if app.db_url.starts_with("sqlite://") {
        let bytes = database_bytes(app.dir.path());
        for t in [first.as_str(), second.as_str(), "hub-secret"] {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "{t} is in the database in clear"
            );
        }
    }

    // Removing the connector revokes its grant at the provider: its access token dies.
    assert_eq!(api(&app, &token, Method::DELETE, &path, None).await.0, 204);
    let introspect = |t: String| {
        let issuer = issuer.clone();
        async move {
            let v: Value = reqwest::Client::new()
                .post(format!("{issuer}/token/introspection"))
                .basic_auth("hub", Some("hub-secret"))
                .form(&[("token", t.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["active"] == json!(true)
        }
    };
    assert!(
        !introspect(second.clone()).await,
        "the removed connector's token still works"
    );

    // A grant revoked at the provider: the next run's refresh is refused, the connector
    // needs reconnecting, and it is not tried again by itself.
    let (_, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
    let path = format!("/api/connectors/{}", c["id"]);
    let back = authorise_in_browser(c["authorize_url"].as_str().unwrap()).await;
    assert_eq!(app.client.get(&back).send().await.unwrap().status(), 200);
    crate::common::eventually("the second connector's first pull", async || {
        api(&app, &token, Method::GET, &path, None).await.1["last_sync_at"].is_string()
    })
    .await;
    let live = gh.lock().unwrap().bearers.last().cloned().unwrap();
    assert!(introspect(live.clone()).await);
    let r = reqwest::Client::new()
        .post(format!("{issuer}/token/revocation"))
        .basic_auth("hub", Some("hub-secret"))
        .form(&[("token", live.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    crate::common::eventually("needs-reconnect", async || {
        api(&app, &token, Method::GET, &path, None).await.1["state"] == "needs-reconnect"
    })
    .await;
    let (_, c) = api(&app, &token, Method::GET, &path, None).await;
    assert!(c["last_error"].as_str().unwrap().contains("refused the refresh"), "{c}");
    assert!(c["next_run_at"].is_null(), "{c}");
    // And the user's stream says so, once, as an activity of the hub's.
    let stream: Value = app.get(&token, "/u/alice/stream.json").await.json().await.unwrap();
    let notices: Vec<&Value> = stream["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"].as_str().is_some_and(|t| t.contains("needs reconnecting")))
        .collect();
    assert_eq!(notices.len(), 1, "{stream}");
    let text = notices[0]["content_text"]
        .as_str()
        .or(notices[0]["content_html"].as_str())
        .unwrap_or_default();
    assert!(text.contains("feedmesh connector reconnect alice"), "{}", notices[0]);
    let seen = gh.lock().unwrap().bearers.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        gh.lock().unwrap().bearers.len(),
        seen,
        "a connector that needs reconnecting is not run"
    );

    // Reconnecting: a new authorization URL, the round trip again, and it runs again.
    let (status, c) = api(&app, &token, Method::POST, &format!("{path}/reconnect"), None).await;
    assert_eq!((status, c["state"].as_str()), (200, Some("needs-auth")), "{c}");
    let back = authorise_in_browser(c["authorize_url"].as_str().unwrap()).await;
    assert_eq!(app.client.get(&back).send().await.unwrap().status(), 200);
    crate::common::eventually("active again", async || {
        let c = api(&app, &token, Method::GET, &path, None).await.1;
        c["state"] == "active" && c["last_error"].is_null()
    })
    .await;
}

/// RFC 8414 and RFC 7591 against oidc-provider: a client registration given only the
/// issuer reads the provider's endpoints from its metadata and registers the hub there for
/// its callback; the round trip works with that client; a hub whose public URL changed
/// registers again before its next round trip, and that one works too.
#[tokio::test]
async fn the_hub_registers_itself_where_the_provider_offers_it() {
    use reqwest::Method;
    let shared = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(shared.path()).await;
    let app = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let Some((issuer, _provider)) = oidc_provider("http://127.0.0.1:9/unused", &[("REGISTRATION", "1")]).await else {
        return;
    };
    let (gh_api, _gh) = github().await;
    let token = app.token("alice", "laptop").await;
    let (status, v) = api(
        &app,
        &token,
        Method::POST,
        "/api/oauth-clients",
        Some(json!({"provider": "idp", "authorize_url": format!("{issuer}/auth"), "token_url": format!("{issuer}/token")})),
    )
    .await;
    assert_eq!(status, 400, "no client id and no issuer to register at: {v}");
    assert!(v.to_string().contains("--client-id"), "{v}");
    let (status, v) = api(
        &app,
        &token,
        Method::POST,
        "/api/oauth-clients",
        Some(json!({"provider": "github", "issuer": issuer, "scope": "openid offline_access read:user"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["registered"], true, "{v}");
    assert_eq!(v["authorize_url"], json!(format!("{issuer}/auth")), "{v}");
    assert_eq!(v["revoke_url"], json!(format!("{issuer}/token/revocation")), "{v}");
    assert!(v["has_secret"] == true && v["client_id"] != "hub", "{v}");
    let first_client = v["client_id"].as_str().unwrap().to_string();

    let body = json!({"kind": "github", "options": {"login": "octocat", "api": gh_api}});
    let (status, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let q: HashMap<String, String> = url::Url::parse(c["authorize_url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["client_id"], first_client);
    let back = authorise_in_browser(c["authorize_url"].as_str().unwrap()).await;
    let page = app.client.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connected"), "{page}");
    let user = app.store.user("alice").await.unwrap();
    assert!(
        app.store.connector(user.id, id).await.unwrap().tokens.is_some(),
        "the exchange with the registered client"
    );

    // The hub comes back under another URL: the next round trip registers it again there.
    drop(app);
    let app = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        &format!("/api/connectors/{id}/reconnect"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{c}");
    let q: HashMap<String, String> = url::Url::parse(c["authorize_url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.base));
    assert_ne!(q["client_id"], first_client, "registered again");
    let (_, clients) = api(&app, &token, Method::GET, "/api/oauth-clients", None).await;
    assert_eq!(
        clients[0]["client_id"].as_str(),
        Some(q["client_id"].as_str()),
        "{clients}"
    );
    let back = authorise_in_browser(c["authorize_url"].as_str().unwrap()).await;
    assert!(back.starts_with(&format!("{}/oauth/callback?", app.base)), "{back}");
    let page = app.client.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connected"), "{page}");
}

/// The contract's durability and secrecy, with `serve` as a real process: `kill -9` in the
/// middle of a pull (its second page pending) loses and duplicates nothing once `serve` is
/// back, and the connector's token is neither in the logs (at debug level) nor in the
/// database file in clear.
#[tokio::test]
async fn a_connector_survives_kill_9_mid_pull_and_its_token_reaches_no_log() {
    use crate::common::process::{ok, serve_logged};
    let (gh_api, gh) = github().await;
    gh.lock().unwrap().slow_page = 3;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let id = ok(
        d,
        &[
            "connector",
            "add",
            "alice",
            "github",
            "--option",
            "login=octocat",
            "--option",
            &format!("api={gh_api}"),
            "--option",
            &format!("token={TOKEN}"),
            "--allow-private-network",
        ],
    );
    let id = id.trim().to_string();
    let env = [("FEEDMESH_LOG", "debug")];
    let (mut first, _, log1) = serve_logged(d, &["--allow-private-network"], &env);
    crate::common::eventually("the pull to reach its second page", async || {
        gh.lock().unwrap().seen.iter().any(|(p, _)| p.contains("page=2"))
    })
    .await;
    first.kill().unwrap(); // SIGKILL, mid-pull
    first.wait().unwrap();
    let list = ok(d, &["connector", "list", "alice"]);
    assert!(list.contains(&format!("{id}\tgithub\t")), "{list}");

    gh.lock().unwrap().slow_page = 0;
    let (mut second, base, log2) = serve_logged(d, &["--allow-private-network"], &env);
    crate::common::eventually_within("the run done again after the restart", 20, async || {
        ok(d, &["connector", "list", "alice"]).contains("\toctocat\tactive\t20")
    })
    .await;
    // A callback's query (an OAuth code and state) is not logged with its request.
    feedmesh::net::install_crypto();
    let r = reqwest::get(format!("{base}/oauth/callback?code=SECRETCODE42&state=1.x"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    crate::common::eventually("the request's log line", async || {
        log2.lock().unwrap().contains("/oauth/callback")
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    let url = format!("sqlite://{}", d.join("feedmesh.db").display());
    let store = feedmesh::store::open(&url, crate::common::sealer_of(d)).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let col = store.collection(user.id, "github").await.unwrap();
    let items = store.items_since(col.id, 0, 1000).await.unwrap();
    assert_eq!(items.len(), 180, "every event once");
    let changes = store.changes(user.id, None, None, 1000).await.unwrap();
    assert_eq!(changes.len(), 180, "one change per event: nothing written twice");

    let logs = format!("{}{}", log1.lock().unwrap(), log2.lock().unwrap());
    assert!(
        logs.contains("connector") || logs.contains("DEBUG"),
        "debug logs were written: {logs}"
    );
    assert!(!logs.contains(TOKEN), "the token is in the logs");
    assert!(!logs.contains("SECRETCODE42"), "a callback's code is in the logs");
    let bytes = database_bytes(d);
    assert!(
        !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token is in the database in clear"
    );
}

/// Two `serve`s on one PostgreSQL share the connectors: 100 feed connectors added while
/// both run, and each run once (each feed fetched exactly once, each entry stored once).
#[tokio::test]
async fn two_hubs_on_one_postgresql_run_each_connector_once() {
    use reqwest::Method;
    let Some(db) = crate::common::postgres_url().await else {
        return;
    };
    // Feeds that count their fetches.
    type Hits = Arc<Mutex<HashMap<String, usize>>>;
    let hits: Hits = Arc::default();
    async fn feed(State(h): State<Hits>, Path(n): Path<String>) -> Response {
        *h.lock().unwrap().entry(n.clone()).or_default() += 1;
        let body = format!(
            "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:f{n}</id><title>f{n}</title>\
             <updated>2026-01-01T00:00:00Z</updated><entry><id>urn:f{n}:1</id><title>one of {n}</title>\
             <updated>2026-01-01T00:00:00Z</updated></entry></feed>"
        );
        ([(header::CONTENT_TYPE, "application/atom+xml")], body).into_response()
    }
    let app = axum::Router::new().route("/f/{n}", get(feed)).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let a = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let b = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let token = a.token("alice", "laptop").await;
    for n in 0..100 {
        let body = json!({"kind": "feed", "collection": "News", "options": {"url": format!("{origin}/f/{n}")}});
        let (status, v) = api(&a, &token, Method::POST, "/api/connectors", Some(body)).await;
        assert_eq!(status, 201, "{v}");
    }
    crate::common::eventually_within("every connector's first run", 30, async || {
        hits.lock().unwrap().len() == 100
    })
    .await;
    crate::common::eventually_within("every run recorded", 30, async || {
        let (_, list) = api(&a, &token, Method::GET, "/api/connectors", None).await;
        list.as_array().unwrap().iter().all(|c| c["last_sync_at"].is_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let twice: Vec<(String, usize)> = hits
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(twice.is_empty(), "feeds fetched more than once: {twice:?}");
    let user = a.store.user("alice").await.unwrap();
    let col = a.store.collection(user.id, "News").await.unwrap();
    assert_eq!(b.store.items_since(col.id, 0, 1000).await.unwrap().len(), 100);
}

/// mastodon-mock on 127.0.0.1 (tests/fixtures/mastodon-mock.py) seeded with `config`: its
/// base URL, and the process (killed on drop). None (a skip) without it.
pub(crate) async fn mastodon(config: &str) -> Option<(String, tokio::process::Child, tempfile::TempDir)> {
    let python = crate::common::python_with("mastodon_mock")?;
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("mm.toml");
    std::fs::write(&toml, config).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mastodon-mock.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg(&toml)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut line))
        .await
        .expect("mastodon-mock says its port within 60 s")
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .expect("mastodon-mock's port")
        .to_string();
    tokio::spawn(async move { while out.read_line(&mut String::new()).await.is_ok_and(|n| n > 0) {} });
    let base = format!("http://127.0.0.1:{port}");
    feedmesh::net::install_crypto();
    let client = reqwest::Client::new();
    crate::common::eventually("mastodon-mock to answer", async || {
        client
            .get(format!("{base}/api/v1/instance"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Some((base, child, dir))
}

/// Mastodon end to end against mastodon-mock: `connector add` registers the hub at the
/// instance (`POST /api/v1/apps`) and answers the authorization URL; the instance's consent
/// form sends the browser back; the home timeline, notifications and own posts come in,
/// each status once, the poster's profile URL linking it to their contact; a new post
/// arrives on the next sync, nothing twice.
#[tokio::test]
async fn a_mastodon_account_is_connected_and_its_timeline_linked_to_contacts() {
    use reqwest::Method;
    let config = r#"
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
text = "bob's first post"
[[seed.statuses]]
account = "alice"
text = "alice says hello"
"#;
    let Some((instance, _mm, _dir)) = mastodon(config).await else {
        return;
    };
    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Bob's profile URL, as the instance gives it, held by a contact before anything arrives.
    let bob: Value = client
        .get(format!("{instance}/api/v1/accounts/verify_credentials"))
        .bearer_auth("bob-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob_url = bob["url"].as_str().unwrap().to_string();
    let (status, contact) = api(
        &app,
        &token,
        Method::POST,
        "/api/contacts",
        Some(json!({"name": "Bob", "identities": [bob_url]})),
    )
    .await;
    assert_eq!(status, 201, "{contact}");

    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "mastodon", "options": {"instance": instance}})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["state"], "needs-auth");
    let auth = url::Url::parse(c["authorize_url"].as_str().unwrap()).unwrap();
    assert!(
        auth.as_str().starts_with(&format!("{instance}/oauth/authorize?")),
        "{auth}"
    );
    let q: HashMap<String, String> = auth.query_pairs().into_owned().collect();
    let (_, clients) = api(&app, &token, Method::GET, "/api/oauth-clients", None).await;
    assert_eq!(
        clients[0]["provider"],
        json!(format!("mastodon:{}", &instance["http://".len()..])),
        "{clients}"
    );
    assert_eq!(clients[0]["client_id"].as_str(), Some(q["client_id"].as_str()));

    // The instance's consent form: alice picks her account.
    let r = client
        .post(format!("{instance}/oauth/authorize"))
        .form(&[
            ("username", "alice"),
            ("client_id", q["client_id"].as_str()),
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("state", q["state"].as_str()),
            ("scope", q["scope"].as_str()),
            ("response_type", "code"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(back.starts_with(&format!("{}/oauth/callback?", app.base)), "{back}");
    let page = app.client.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connected"), "{page}");
    let path = format!("/api/connectors/{}", c["id"]);
    crate::common::eventually("the first pull", async || {
        api(&app, &token, Method::GET, &path, None).await.1["last_sync_at"].is_string()
    })
    .await;
    let (_, c) = api(&app, &token, Method::GET, &path, None).await;
    assert_eq!(c["state"], "active", "{c}");
    assert_eq!(c["account"], json!(format!("alice@{}", &instance["http://".len()..])));
    let user = app.store.user("alice").await.unwrap();
    let col = app.store.collection(user.id, "mastodon").await.unwrap();
    let titles = |items: Vec<feedmesh::store::ItemRecord>| -> Vec<String> {
        items.into_iter().map(|r| r.item.current.payload.title.value).collect()
    };
    let first = titles(app.store.items_since(col.id, 0, 1000).await.unwrap());
    assert!(first.iter().any(|t| t.contains("bob's first post")), "{first:?}");
    assert!(first.iter().any(|t| t.contains("alice says hello")), "{first:?}");
    let cid = contact["id"].as_str().unwrap();
    let feed: Value = app
        .get(&token, &format!("/u/alice/contacts/{cid}/timeline.json"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["title"].as_str().is_some_and(|t| t.contains("bob's first post"))),
        "bob's post is in Bob's timeline: {feed}"
    );

    // Bob posts, mentioning alice: home timeline and a mention notification, one item.
    let r = client
        .post(format!("{instance}/api/v1/statuses"))
        .bearer_auth("bob-token")
        .form(&[("status", "hello @alice, <b>news</b>")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    crate::common::eventually("bob's new post", async || {
        titles(app.store.items_since(col.id, 0, 1000).await.unwrap())
            .iter()
            .any(|t| t.contains("news"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = titles(app.store.items_since(col.id, 0, 1000).await.unwrap());
    assert_eq!(now.len(), first.len() + 1, "one new item: {now:?}");
    // Once more: nothing new.
    let head = app.store.user_head(user.id).await.unwrap();
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        app.store.user_head(user.id).await.unwrap(),
        head,
        "a sync of nothing new writes nothing"
    );

    // Posting out: a note the phone writes into mastodon-outbox becomes alice's status; its
    // edit (GET, change, PUT with If-Match, as an AtomPub client does) edits it; its
    // deletion deletes it; syncs in between post nothing twice.
    let alice: Value = client
        .get(format!("{instance}/api/v1/accounts/verify_credentials"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own = format!(
        "{instance}/api/v1/accounts/{}/statuses?limit=40",
        alice["id"].as_str().unwrap()
    );
    let statuses = async || -> Vec<Value> {
        let v: Value = client
            .get(&own)
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().unwrap().clone()
    };
    let phone = app.token("alice", "phone").await;
    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/mastodon-outbox",
            crate::common::entry("a note", "posted from my phone"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let member = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    // No sync asked: a write into the outbox makes its connector due at once.
    crate::common::eventually("the status on the instance", async || {
        statuses().await.iter().any(|s| {
            s["content"]
                .as_str()
                .is_some_and(|c| c.contains("posted from my phone"))
        })
    })
    .await;
    crate::common::eventually("the item to say where it went", async || {
        app.text(&phone, &member).await.contains("rel=\"syndication\"")
    })
    .await;
    for _ in 0..2 {
        api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let mine = |all: Vec<Value>, text: &str| {
        all.into_iter()
            .filter(|s| s["content"].as_str().is_some_and(|c| c.contains(text)))
            .collect::<Vec<_>>()
    };
    let posted = mine(statuses().await, "from my phone");
    assert_eq!(posted.len(), 1, "posted once: {posted:?}");
    let status_id = posted[0]["id"].as_str().unwrap().to_string();

    // A crash after posting, before anything was recorded: here the status is made at the
    // instance with the key the hub sends for this item (as if the hub had posted it and
    // died), then the hub runs. It asks with the same Idempotency-Key and the instance
    // answers the status already made: one status, recorded as the item's.
    let cid: i64 = c["id"].as_i64().unwrap();
    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/mastodon-outbox",
            crate::common::entry("another", "second from my phone"),
        )
        .await;
    let second = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let sync_id = second.rsplit('/').next().unwrap().to_string();
    let made: Value = client
        .post(format!("{instance}/api/v1/statuses"))
        .bearer_auth("alice-token")
        .header("Idempotency-Key", format!("feedmesh-{cid}-{sync_id}"))
        .json(&json!({"status": "second from my phone"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    crate::common::eventually("the second post recorded", async || {
        app.store
            .connector_post(user.id, cid, &sync_id)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let rec = app.store.connector_post(user.id, cid, &sync_id).await.unwrap().unwrap();
    assert_eq!(rec.remote_id, made["id"].as_str().unwrap(), "the status already made");
    assert_eq!(
        mine(statuses().await, "second from my phone").len(),
        1,
        "posted once after the crash"
    );

    let r = app
        .edit_entry(&phone, &member, "posted from my phone", "edited on my phone")
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    let one = format!("{instance}/api/v1/statuses/{status_id}");
    crate::common::eventually("the status edited", async || {
        let v: Value = client
            .get(&one)
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["content"].as_str().is_some_and(|c| c.contains("edited on my phone"))
    })
    .await;
    assert_eq!(mine(statuses().await, "on my phone").len(), 1, "an edit is no new post");

    let r = app.client.delete(&member).bearer_auth(&phone).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
    crate::common::eventually("the status deleted", async || {
        client
            .get(&one)
            .bearer_auth("alice-token")
            .send()
            .await
            .unwrap()
            .status()
            == 404
    })
    .await;
}

/// The feed kind's manners: a 429 with `Retry-After` waits what it asks, a 410 stops the
/// connector with its reason, `Cache-Control: max-age` spaces polls out, and a feed that
/// changes every three hours is polled by its rhythm (half its median gap), within a day.
#[tokio::test]
async fn feed_connectors_honour_retry_after_gone_max_age_and_their_rhythm() {
    use reqwest::Method;
    async fn feed(Path(kind): Path<String>) -> Response {
        let entries: String = (0..6)
            .map(|i| {
                let hours = if kind == "rhythm" { 3 * i } else { 0 };
                let at = chrono::Utc::now() - chrono::Duration::hours(hours) - chrono::Duration::minutes(i);
                format!(
                    "<entry><id>urn:{kind}:{i}</id><title>{kind} {i}</title><updated>{}</updated></entry>",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .collect();
        let body = format!(
            "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:{kind}</id><title>{kind}</title>\
             <updated>2026-01-01T00:00:00Z</updated>{entries}</feed>"
        );
        match kind.as_str() {
            "throttled" => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "120")],
                "slow down",
            )
                .into_response(),
            "gone" => (StatusCode::GONE, "gone").into_response(),
            "cached" => (
                [
                    (header::CONTENT_TYPE, "application/atom+xml"),
                    (header::CACHE_CONTROL, "public, max-age=7200"),
                ],
                body,
            )
                .into_response(),
            _ => ([(header::CONTENT_TYPE, "application/atom+xml")], body).into_response(),
        }
    }
    let router = axum::Router::new().route("/{kind}", get(feed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // A 429 holds every feed of its host: the throttled one on a host of its own.
    let router = axum::Router::new().route("/{kind}", get(feed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let busy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let mut ids = HashMap::new();
    for kind in ["throttled", "gone", "cached", "rhythm"] {
        let host = if kind == "throttled" { &busy } else { &origin };
        let body = json!({"kind": "feed", "collection": "News", "options": {"url": format!("{host}/{kind}")}});
        let (status, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
        assert_eq!(status, 201, "{c}");
        ids.insert(kind, c["id"].as_i64().unwrap());
    }
    let get_one = async |kind: &str| {
        api(
            &app,
            &token,
            Method::GET,
            &format!("/api/connectors/{}", ids[kind]),
            None,
        )
        .await
        .1
    };
    crate::common::eventually("every first run", async || {
        let mut all = true;
        for kind in ["throttled", "gone", "cached", "rhythm"] {
            let c = get_one(kind).await;
            all &= c["last_sync_at"].is_string() || c["last_error"].is_string();
        }
        all
    })
    .await;
    let next_in = |c: &Value| -> Option<i64> {
        let at = c["next_run_at"].as_str()?;
        Some(chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp() - chrono::Utc::now().timestamp())
    };
    let c = get_one("throttled").await;
    assert!(c["last_error"].as_str().unwrap().contains("120"), "{c}");
    assert!(
        next_in(&c).is_some_and(|s| (100..=121).contains(&s)),
        "waits what Retry-After asks: {c}"
    );
    let c = get_one("gone").await;
    assert_eq!(c["state"], "failing", "{c}");
    assert!(c["last_error"].as_str().unwrap().contains("410"), "{c}");
    assert!(c["next_run_at"].is_null(), "a gone feed is not polled again: {c}");
    let c = get_one("cached").await;
    assert!(
        next_in(&c).is_some_and(|s| (7000..=7200).contains(&s)),
        "max-age=7200: {c}"
    );
    let c = get_one("rhythm").await;
    assert!(
        next_in(&c).is_some_and(|s| (5200..=5500).contains(&s)),
        "every 3 hours: polled in about 90 min: {c}"
    );
}

/// Routes between connectors, against mastodon-mock with two accounts: a collection routed
/// into alice's Mastodon connector posts what passes the route's filter; alice's account
/// routed into carol's and carol's back into alice's (A -> B -> A) posts each item once on
/// each account, however often both sync and across a restart of the hub; an edit of the
/// source edits both statuses, its deletion deletes alice's. Bad routes are 4xx.
#[tokio::test]
async fn routes_repost_through_other_connectors_and_a_loop_posts_once() {
    use reqwest::Method;
    let config = r#"
url_scheme = "http"
[auth]
permissive = false
[[seed.accounts]]
username = "alice"
access_token = "alice-token"
[[seed.accounts]]
username = "carol"
access_token = "carol-token"
"#;
    let Some((instance, _mm, _dir)) = mastodon(config).await else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(shared.path()).await;
    let mut app = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let token = app.token("alice", "laptop").await;
    let phone = app.token("alice", "phone").await;
    let client = reqwest::Client::new();

    let add = async |app: &crate::common::TestApp, body: Value| {
        api(app, &token, Method::POST, "/api/connectors", Some(body)).await
    };
    let (status, m1) = add(
        &app,
        json!({"kind": "mastodon", "options": {"instance": instance, "token": "alice-token"}}),
    )
    .await;
    assert_eq!(status, 201, "{m1}");
    assert_eq!(
        (m1["state"].as_str(), m1["outbox"].as_str()),
        (Some("active"), Some("mastodon-outbox")),
        "{m1}"
    );
    assert!(
        !m1.to_string().contains("alice-token"),
        "a token is never answered: {m1}"
    );
    let (status, again) = add(
        &app,
        json!({"kind": "mastodon", "options": {"instance": instance, "token": "carol-token"}}),
    )
    .await;
    assert_eq!(status, 409, "a second account on the same outbox: {again}");
    let (status, m2) = add(
        &app,
        json!({"kind": "mastodon", "collection": "carol", "options": {"instance": instance, "token": "carol-token"}}),
    )
    .await;
    assert_eq!(status, 201, "{m2}");
    assert_eq!(m2["outbox"], "carol-outbox", "{m2}");
    let (m1, m2) = (m1["id"].as_i64().unwrap(), m2["id"].as_i64().unwrap());

    app.collection("alice", "releases").await;
    let route = async |app: &crate::common::TestApp, body: Value| {
        api(app, &token, Method::POST, "/api/routes", Some(body)).await
    };
    let (status, r1) = route(&app, json!({"from": "releases", "to": m1, "filter": {"q": "released"}})).await;
    assert_eq!(status, 201, "{r1}");
    assert_eq!(r1["filter"]["q"], "released");
    for (from, to) in [("mastodon", m2), ("carol", m1)] {
        let (status, r) = route(&app, json!({"from": from, "to": to})).await;
        assert_eq!(status, 201, "{r}");
    }
    for (body, want, why) in [
        (json!({"from": "mastodon-outbox", "to": m1}), 400, "its own outbox"),
        (json!({"from": "releases", "to": m1}), 409, "the same route twice"),
        (
            json!({"from": "releases", "to": m2, "filter": {"type": "no such!"}}),
            400,
            "a bad filter",
        ),
        (
            json!({"from": "releases", "to": m2, "filter": {"q": "\"open"}}),
            400,
            "an unbalanced quote",
        ),
        (json!({"from": "nowhere", "to": m2}), 404, "no such collection"),
        (json!({"from": "releases", "to": 999_999}), 404, "no such connector"),
    ] {
        let (status, r) = route(&app, body).await;
        assert_eq!(status, want, "{why}: {r}");
    }
    let (_, listed) = api(&app, &token, Method::GET, "/api/routes", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    // Another user sees none of them, and cannot route into alice's connector.
    let bob = app.token("bob", "laptop").await;
    let (_, none) = api(&app, &bob, Method::GET, "/api/routes", None).await;
    assert_eq!(none, json!([]));
    app.collection("bob", "mine").await;
    let (status, _) = api(
        &app,
        &bob,
        Method::POST,
        "/api/routes",
        Some(json!({"from": "mine", "to": m1})),
    )
    .await;
    assert_eq!(status, 404, "another user's connector");

    let account = async |token: &str| -> String {
        let v: Value = client
            .get(format!("{instance}/api/v1/accounts/verify_credentials"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let (alice_id, carol_id) = (account("alice-token").await, account("carol-token").await);
    let statuses = async |id: &str, token: &str, text: &str| -> Vec<Value> {
        let v: Value = client
            .get(format!("{instance}/api/v1/accounts/{id}/statuses?limit=40"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["content"].as_str().is_some_and(|c| c.contains(text)))
            .cloned()
            .collect()
    };
    let sync = async |app: &crate::common::TestApp, id: i64| {
        api(app, &token, Method::POST, &format!("/api/connectors/{id}/sync"), None).await;
    };

    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/releases",
            crate::common::entry("v1.0 released", "feedmesh one is out"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let member = r.headers()[header::LOCATION].to_str().unwrap().to_string();
    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/releases",
            crate::common::entry("nightly build 42", "not for the world"),
        )
        .await;
    assert_eq!(r.status(), 201);
    crate::common::eventually("alice's status", async || {
        !statuses(&alice_id, "alice-token", "one is out").await.is_empty()
    })
    .await;
    // Alice's status comes back into her connector's collection on its next pull, and on
    // to carol's account by the second route.
    crate::common::eventually("carol's repost", async || {
        sync(&app, m1).await;
        sync(&app, m2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        !statuses(&carol_id, "carol-token", "one is out").await.is_empty()
    })
    .await;
    let once = async |app: &crate::common::TestApp, rounds: usize| {
        for _ in 0..rounds {
            sync(app, m1).await;
            sync(app, m2).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(
            statuses(&alice_id, "alice-token", "one is out").await.len(),
            1,
            "once on alice's account"
        );
        assert_eq!(
            statuses(&carol_id, "carol-token", "one is out").await.len(),
            1,
            "once on carol's account"
        );
        assert!(
            statuses(&alice_id, "alice-token", "not for the world").await.is_empty(),
            "the filter holds"
        );
    };
    once(&app, 3).await;
    let user = app.store.user("alice").await.unwrap();
    let outbox = app.store.collection(user.id, "mastodon-outbox").await.unwrap();
    let copies = app.store.items_since(outbox.id, 0, 100).await.unwrap();
    assert_eq!(copies.len(), 1, "one copy in alice's outbox, none from carol's echo");
    let history: Vec<String> = copies[0]
        .item
        .current
        .sync
        .history
        .iter()
        .filter_map(|h| h.by.clone())
        .collect();
    assert!(history.iter().any(|b| b.starts_with("alice/route-")), "{history:?}");
    assert!(
        copies[0]
            .item
            .current
            .payload
            .links
            .iter()
            .any(|l| l.rel.as_deref() == Some("via") && l.href.ends_with(member.rsplit('/').next().unwrap())),
        "the copy points at its source"
    );

    // The release edited on the phone: alice's status edited, and carol's after it (the
    // edit of alice's status comes back through the streaming API, and on by the route).
    let r = app
        .edit_entry(
            &phone,
            &member,
            "feedmesh one is out",
            "feedmesh one is out, with notes",
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    crate::common::eventually("alice's status edited", async || {
        !statuses(&alice_id, "alice-token", "with notes").await.is_empty()
    })
    .await;
    crate::common::eventually("carol's status edited", async || {
        sync(&app, m2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        !statuses(&carol_id, "carol-token", "with notes").await.is_empty()
    })
    .await;
    once(&app, 1).await;

    // A restart of the hub between steps posts nothing twice.
    drop(app);
    app = crate::common::TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let member = format!(
        "{}/atompub/alice/releases/{}",
        app.base,
        member.rsplit('/').next().unwrap()
    );
    once(&app, 2).await;

    // Deleted on the phone: alice's status goes.
    let r = app.client.delete(&member).bearer_auth(&phone).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    crate::common::eventually("alice's status deleted", async || {
        statuses(&alice_id, "alice-token", "one is out").await.is_empty()
    })
    .await;
    let (status, _) = api(&app, &token, Method::DELETE, &format!("/api/routes/{}", r1["id"]), None).await;
    assert_eq!(status, 204);
    let (_, listed) = api(&app, &token, Method::GET, "/api/routes", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

/// Mastodon's streaming API, against mastodon-mock: a connector holds the user stream open
/// (`listening` in the API) and a new post of someone followed, its edit and its deletion
/// reach the collection within seconds, long before the next poll (a minute); pausing
/// closes the stream; an instance with streaming off is polled, and nothing fails.
#[tokio::test]
async fn a_mastodon_connector_listens_to_the_streaming_api() {
    use reqwest::Method;
    let config = r#"
url_scheme = "http"
[auth]
permissive = false
[streaming]
heartbeat_seconds = 1
[[seed.accounts]]
username = "alice"
access_token = "alice-token"
[[seed.accounts]]
username = "bob"
access_token = "bob-token"
[[seed.follows]]
follower = "alice"
following = "bob"
"#;
    let Some((instance, _mm, _dir)) = mastodon(config).await else {
        return;
    };
    let quiet = "url_scheme = \"http\"\n[streaming]\nenabled = false\n[[seed.accounts]]\nusername = \"dora\"\naccess_token = \"dora-token\"\n";
    let Some((off, _mm2, _dir2)) = mastodon(quiet).await else {
        return;
    };
    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "mastodon", "options": {"instance": instance, "token": "alice-token"}})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let path = format!("/api/connectors/{}", c["id"]);
    crate::common::eventually_within("the stream open and the first pull done", 20, async || {
        let c = api(&app, &token, Method::GET, &path, None).await.1;
        c["listening"] == json!(true) && c["last_sync_at"].is_string()
    })
    .await;
    let user = app.store.user("alice").await.unwrap();
    let col = app.store.collection(user.id, "mastodon").await.unwrap();
    let find = async |text: &str| {
        app.store
            .items_since(col.id, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|r| {
                r.item
                    .current
                    .payload
                    .content
                    .as_ref()
                    .is_some_and(|c| c.value.contains(text))
            })
    };
    let client = reqwest::Client::new();
    let posted: Value = client
        .post(format!("{instance}/api/v1/statuses"))
        .bearer_auth("bob-token")
        .json(&json!({"status": "streamed hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // No sync asked, and the next poll is a minute away: only the stream brings it.
    crate::common::eventually_within("the post, streamed", 10, async || {
        find("streamed hello").await.is_some()
    })
    .await;
    let one = format!("{instance}/api/v1/statuses/{}", posted["id"].as_str().unwrap());
    let r = client
        .put(&one)
        .bearer_auth("bob-token")
        .json(&json!({"status": "streamed hello, edited"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    crate::common::eventually_within("the edit, streamed", 10, async || find("edited").await.is_some()).await;
    let r = client.delete(&one).bearer_auth("bob-token").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    crate::common::eventually_within("the deletion, streamed", 10, async || {
        find("edited").await.is_some_and(|r| r.item.current.sync.deleted)
    })
    .await;
    let items = app.store.items_since(col.id, 0, 1000).await.unwrap();
    assert_eq!(items.len(), 1, "one item, edited then deleted: {}", items.len());

    api(&app, &token, Method::POST, &format!("{path}/pause"), None).await;
    crate::common::eventually_within("the stream closed on pause", 30, async || {
        api(&app, &token, Method::GET, &path, None).await.1["listening"] == json!(false)
    })
    .await;

    // Streaming off at the instance (404): polled only, and nothing is wrong.
    let (status, d) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "mastodon", "collection": "dora", "options": {"instance": off, "token": "dora-token"}})),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let path = format!("/api/connectors/{}", d["id"]);
    crate::common::eventually("its first pull", async || {
        api(&app, &token, Method::GET, &path, None).await.1["last_sync_at"].is_string()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, d) = api(&app, &token, Method::GET, &path, None).await;
    assert_eq!(
        (d["state"].as_str(), d["listening"].as_bool()),
        (Some("active"), Some(false)),
        "{d}"
    );
    assert!(d["last_error"].is_null(), "{d}");
}

/// One listener per connector across processes: a claim holds it for its owner only; the
/// owner's renewal keeps it, another's does not; a paused connector's renewal fails; a
/// claim that ran out (its process died) is taken over; a release with a wait keeps it
/// free but unclaimed until then.
#[tokio::test]
async fn a_listener_is_claimed_by_one_process_at_a_time() {
    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let (status, c) = api(
        &app,
        &token,
        reqwest::Method::POST,
        "/api/connectors",
        Some(json!({"kind": "mastodon", "options": {"instance": "https://m.example", "token": "t"}})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    // This test's claims, not the hub's own listener (which this store's clock runs past).
    let store = &app.store;
    let user = store.user("alice").await.unwrap();
    let id = c["id"].as_i64().unwrap();
    let far = feedmesh::jobs::now_ms() + 10 * 3600 * 1000;
    let kinds = ["mastodon"];
    let a = store.claim_listeners("a", &kinds, far, 60_000, 10).await.unwrap();
    assert_eq!(a.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
    assert!(
        store
            .claim_listeners("b", &kinds, far + 1, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "held by a"
    );
    assert!(
        store
            .claim_listeners("b", &["feed"], far + 120_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "another kind"
    );
    assert!(
        !store.renew_listener(user.id, id, "b", far + 90_000).await.unwrap(),
        "not b's"
    );
    assert!(store.renew_listener(user.id, id, "a", far + 90_000).await.unwrap());
    store.set_listening(user.id, id, "a", Some(far)).await.unwrap();
    assert!(store.connector(user.id, id).await.unwrap().listening(far + 1));
    assert!(
        store
            .claim_listeners("b", &kinds, far + 80_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "renewed"
    );
    // a's process died: its claim runs out and b takes over.
    let b = store
        .claim_listeners("b", &kinds, far + 91_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert!(
        !store.renew_listener(user.id, id, "a", far + 200_000).await.unwrap(),
        "a lost it"
    );
    assert!(!b[0].listening(far + 91_000), "b is not connected yet");
    store.release_listener(user.id, id, "b", far + 3_600_000).await.unwrap();
    assert!(
        store
            .claim_listeners("c", &kinds, far + 200_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "waits"
    );
    assert_eq!(
        store
            .claim_listeners("c", &kinds, far + 3_600_001, 60_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .set_connector_state(user.id, id, feedmesh::store::ConnectorState::Paused, 0)
        .await
        .unwrap();
    assert!(
        !store.renew_listener(user.id, id, "c", far + 3_700_000).await.unwrap(),
        "paused"
    );
}

/// Politeness per host: twelve feeds of one host, all due at once, are fetched at most four
/// at a time (net::PER_HOST); a 429 with `Retry-After` from one feed of a host holds that
/// host's other feeds too (not asked at all until then), not the feeds of other hosts.
#[tokio::test]
async fn feed_connectors_are_polite_to_each_host() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Default)]
    struct Seen {
        now: AtomicUsize,
        most: AtomicUsize,
        asked: Mutex<Vec<String>>,
    }
    async fn feed(State(seen): State<Arc<Seen>>, Path(name): Path<String>) -> Response {
        seen.asked.lock().unwrap().push(name.clone());
        if name == "limited" {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "300")],
                "slow down",
            )
                .into_response();
        }
        let n = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
        seen.most.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        seen.now.fetch_sub(1, Ordering::SeqCst);
        let body = format!(
            "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><id>urn:{name}</id><title>{name}</title>\
             <updated>2026-01-01T00:00:00Z</updated><entry><id>urn:{name}:1</id><title>{name}</title>\
             <updated>2026-01-01T00:00:00Z</updated></entry></feed>"
        );
        ([(header::CONTENT_TYPE, "application/atom+xml")], body).into_response()
    }
    let serve = async || {
        let seen = Arc::new(Seen::default());
        let router = axum::Router::new().route("/{name}", get(feed)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (origin, seen)
    };
    let (many, seen) = serve().await;
    let (held, held_seen) = serve().await;
    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let add = async |url: String| {
        let body = json!({"kind": "feed", "collection": "News", "options": {"url": url}});
        let (status, c) = api(&app, &token, reqwest::Method::POST, "/api/connectors", Some(body)).await;
        assert_eq!(status, 201, "{c}");
        format!("/api/connectors/{}", c["id"])
    };
    let mut paths = Vec::new();
    for i in 0..12 {
        paths.push(add(format!("{many}/f{i}")).await);
    }
    crate::common::eventually("the twelve fetched", async || seen.asked.lock().unwrap().len() == 12).await;
    let most = seen.most.load(Ordering::SeqCst);
    assert!(
        (2..=feedmesh::net::PER_HOST).contains(&most),
        "{most} fetches of one host at once"
    );

    let limited = add(format!("{held}/limited")).await;
    crate::common::eventually("the 429", async || {
        api(&app, &token, reqwest::Method::GET, &limited, None).await.1["last_error"].is_string()
    })
    .await;
    let other = add(format!("{held}/other")).await;
    crate::common::eventually("the held host's other feed run", async || {
        api(&app, &token, reqwest::Method::GET, &other, None).await.1["last_error"].is_string()
    })
    .await;
    let (_, c) = api(&app, &token, reqwest::Method::GET, &other, None).await;
    assert!(c["last_error"].as_str().unwrap().contains("wait"), "{c}");
    assert_eq!(
        *held_seen.asked.lock().unwrap(),
        ["limited"],
        "the held host was not asked again"
    );
    // Another host is not held.
    let free = add(format!("{many}/after")).await;
    crate::common::eventually("another host's feed", async || {
        api(&app, &token, reqwest::Method::GET, &free, None).await.1["last_sync_at"].is_string()
    })
    .await;
}

/// WebSub for feed connectors, against Flask-WebSub: a feed connector whose feed names a hub
/// subscribes there (verified), takes a signed push into its collection as the connector,
/// polls only as a safety net meanwhile (every six hours), is not listed as a follow, and
/// when removed leaves the hub.
#[tokio::test]
async fn a_feed_connector_is_pushed_to_by_the_hub_its_feed_names() {
    use crate::follows::{Topic, flask_websub, topic_feed};
    use reqwest::Method;
    let Some((hub_url, _flask, _dir)) = flask_websub().await else {
        return;
    };
    let topic = Arc::new(Topic {
        version: Mutex::new(1),
        fetches: Mutex::new(0),
        hub: hub_url.clone(),
        me: Mutex::new(String::new()),
    });
    let router = axum::Router::new()
        .route("/feed.atom", get(topic_feed))
        .with_state(topic.clone());
    let url = format!("{}/feed.atom", crate::common::serve(router).await);
    *topic.me.lock().unwrap() = url.clone();

    let app = crate::common::TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let body = json!({"kind": "feed", "collection": "News", "options": {"url": url}});
    let (status, c) = api(&app, &token, Method::POST, "/api/connectors", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    let user = app.store.user("alice").await.unwrap();
    crate::common::eventually("the subscription at Flask-WebSub", async || {
        app.store
            .follow_of_connector(user.id, id)
            .await
            .unwrap()
            .is_some_and(|f| f.state == feedmesh::store::FollowState::Subscribed)
    })
    .await;
    let (_, follows) = api(&app, &token, Method::GET, "/api/follows", None).await;
    assert_eq!(
        follows,
        json!([]),
        "a connector's subscription is no follow of the user's"
    );
    let col = app.store.collection(user.id, "News").await.unwrap();
    let titles = async || -> Vec<String> {
        app.store
            .items_since(col.id, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.item.current.payload.title.value)
            .collect()
    };
    assert_eq!(titles().await, ["flask 1"]);

    // The feed changes and its publisher pings the hub: the push brings it, no poll.
    *topic.version.lock().unwrap() = 2;
    let ping = reqwest::Client::new()
        .post(&hub_url)
        .form(&[("hub.mode", "publish"), ("hub.topic", url.as_str())])
        .send()
        .await
        .unwrap();
    assert!(ping.status().is_success(), "{}", ping.status());
    // Flask-WebSub fetches the topic and pushes in the ping's own request: on a loaded
    // 2-core CI machine (Chromium running beside) that has taken more than 8 s.
    crate::common::eventually_within("the push", 30, async || titles().await.len() == 2).await;
    let changes = app.store.changes(user.id, None, None, 10).await.unwrap();
    assert!(
        changes
            .iter()
            .all(|ch| ch.endpoint.as_deref() == Some(&format!("connector-{id}"))),
        "written as the connector: {:?}",
        changes.iter().map(|c| &c.endpoint).collect::<Vec<_>>()
    );
    // The next poll is the safety net's (six hours), as long as the hub pushes.
    api(&app, &token, Method::POST, &format!("/api/connectors/{id}/sync"), None).await;
    crate::common::eventually("a poll after the subscription", async || {
        let c = api(&app, &token, Method::GET, &format!("/api/connectors/{id}"), None)
            .await
            .1;
        c["next_run_at"].as_str().is_some_and(|at| {
            chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp() - chrono::Utc::now().timestamp() > 5 * 3600
        })
    })
    .await;

    // Removed: the hub is told, the subscription goes.
    assert_eq!(
        api(&app, &token, Method::DELETE, &format!("/api/connectors/{id}"), None)
            .await
            .0,
        204
    );
    crate::common::eventually("the subscription left", async || {
        app.store.follow_of_connector(user.id, id).await.unwrap().is_none()
    })
    .await;
}
