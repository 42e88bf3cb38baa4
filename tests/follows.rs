//! The hub following outside feeds: WebSub discovery and subscription against another real
//! hub (a second feedmesh), signed pushes checked, lease renewal, denial, and polling with
//! conditional GETs when a feed names no hub.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::common::callbacks::hmac_sha256;
use crate::common::eventually;
use crate::common::{TestApp, entry};

/// Titles of the items in one of a user's collections.
async fn titles(app: &TestApp, user: &str, collection: &str) -> Vec<String> {
    let u = app.store.user(user).await.unwrap();
    let col = app.store.collection(u.id, collection).await.unwrap();
    let mut t: Vec<String> = app
        .store
        .items_since(col.id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item.current.payload.title.value)
        .collect();
    t.sort();
    t
}

async fn follows(app: &TestApp, token: &str) -> serde_json::Value {
    app.client
        .get(app.url("/api/follows"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn follow(app: &TestApp, token: &str, url: &str, collection: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/follows"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "url": url, "collection": collection }))
        .send()
        .await
        .unwrap()
}

async fn follower(tweak: impl FnOnce(&mut feedmesh::config::Settings)) -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path()).await;
    let app = TestApp::spawn_with(dir, db, tweak).await;
    let token = app.token("bob", "laptop").await;
    app.collection("bob", "News").await;
    (app, token)
}

#[tokio::test]
async fn a_feed_with_a_hub_is_followed_by_push_renewed_and_denied() {
    // The publisher: alice's stream on another hub, with a key URL that advertises it.
    let publisher = TestApp::spawn().await;
    let alice = publisher.token("alice", "phone").await;
    publisher.collection("alice", "Notes").await;
    publisher
        .post_entry(&alice, "/atompub/alice/Notes", entry("before", "x"))
        .await;
    let key: serde_json::Value = publisher
        .feed_key(&alice, "/u/alice/stream.atom")
        .await
        .json()
        .await
        .unwrap();
    let topic = key["url"].as_str().unwrap().to_string();

    // The follower asks for 2 s leases, so it has to renew within the test.
    let (app, bob) = follower(|s| {
        s.hub.default_lease = 2;
        s.hub.poll_interval = Duration::from_secs(600);
    })
    .await;
    let resp = follow(&app, &bob, &topic, "News").await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        follow(&app, &bob, &topic, "News").await.status(),
        409,
        "one follow per URL"
    );
    assert_eq!(follow(&app, &bob, &topic, "Nope").await.status(), 404);

    eventually("the subscription", async || {
        follows(&app, &bob).await[0]["state"] == "subscribed"
    })
    .await;
    let f = follows(&app, &bob).await;
    assert_eq!(f[0]["hub"], publisher.url("/hub"));
    assert_eq!(
        titles(&app, "bob", "News").await,
        ["before"],
        "the first fetch took what was there"
    );

    // A push: signed by the publisher's hub, checked and stored by the follower.
    publisher
        .post_entry(&alice, "/atompub/alice/Notes", entry("pushed", "y"))
        .await;
    eventually("the push", async || titles(&app, "bob", "News").await.len() == 2).await;
    assert_eq!(titles(&app, "bob", "News").await, ["before", "pushed"]);

    // Renewal: the publisher's subscription outlives the first 2 s lease.
    let first = f[0]["lease_expires_at"].as_str().unwrap().to_string();
    eventually("a renewal", async || {
        follows(&app, &bob).await[0]["lease_expires_at"]
            .as_str()
            .is_some_and(|l| l > first.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publisher
        .post_entry(&alice, "/atompub/alice/Notes", entry("later", "z"))
        .await;
    eventually("a push after the first lease", async || {
        titles(&app, "bob", "News").await.len() == 3
    })
    .await;

    // Denial: revoking the key ends the publisher's subscription; the follower polls again,
    // and the revoked key URL now answers 401.
    let revoked = publisher.revoke_key(&alice, &key["id"]).await;
    assert_eq!(revoked.status(), 204);
    eventually("the denial", async || {
        follows(&app, &bob).await[0]["state"] == "polling"
    })
    .await;
    eventually("the poll after it", async || {
        follows(&app, &bob).await[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("401")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        follows(&app, &bob).await[0]["state"],
        "polling",
        "no new subscription to a dead topic"
    );
}

#[tokio::test]
async fn deliveries_are_taken_only_with_the_right_signature() {
    let (app, bob) = follower(|s| s.hub.poll_interval = Duration::from_secs(600)).await;
    // A follow of a URL that does not answer: it stays polling, but its callback exists.
    assert_eq!(
        follow(&app, &bob, "http://127.0.0.1:9/feed", "News").await.status(),
        201
    );
    let user = app.store.user("bob").await.unwrap();
    let f = app.store.follows(user.id).await.unwrap().remove(0);
    let callback = app.url(&format!("/websub/callback/{}", f.callback_token));
    let feed = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
        <updated>2026-01-01T00:00:00Z</updated><entry><id>urn:1</id><title>signed</title>
        <updated>2026-01-01T00:00:00Z</updated></entry></feed>"#;
    let post = |sig: Option<String>, url: String| {
        let mut req = app
            .client
            .post(url)
            .header("content-type", "application/atom+xml")
            .body(feed);
        if let Some(s) = sig {
            req = req.header("x-hub-signature", s);
        }
        req.send()
    };
    for sig in [
        None,
        Some(hmac_sha256("wrong secret", feed)),
        Some(hmac_sha256(&f.secret, &feed.replace("signed", "forged"))),
        Some("sha256=".to_string()),
    ] {
        assert_eq!(
            post(sig, callback.clone()).await.unwrap().status(),
            202,
            "acknowledged, then ignored"
        );
    }
    assert!(
        titles(&app, "bob", "News").await.is_empty(),
        "an unsigned or forged delivery was stored"
    );
    let good = post(Some(hmac_sha256(&f.secret, feed)), callback.clone())
        .await
        .unwrap();
    assert_eq!(good.status(), 202);
    assert_eq!(titles(&app, "bob", "News").await, ["signed"]);
    // The same delivery again changes nothing; an unknown callback is gone (H6).
    post(Some(hmac_sha256(&f.secret, feed)), callback.clone())
        .await
        .unwrap();
    assert_eq!(titles(&app, "bob", "News").await, ["signed"]);
    let gone = post(None, app.url("/websub/callback/nope")).await.unwrap();
    assert_eq!(gone.status(), 410);
    // A verification for a subscription never asked for is refused.
    let v = app
        .client
        .get(format!(
            "{callback}?hub.mode=subscribe&hub.topic=http://x/&hub.challenge=abc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), 404);
}

#[derive(Default)]
struct Origin {
    version: Mutex<u32>,
    /// (If-None-Match sent, status answered) of every request.
    requests: Mutex<Vec<(Option<String>, u16)>>,
}

/// An RSS feed with no hub, with ETags; version N has items 1..=N.
async fn rss(State(o): State<Arc<Origin>>, headers: HeaderMap) -> impl IntoResponse {
    let v = *o.version.lock().unwrap();
    let etag = format!("\"v{v}\"");
    let sent = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if sent.as_deref() == Some(etag.as_str()) {
        o.requests.lock().unwrap().push((sent, 304));
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)], String::new());
    }
    o.requests.lock().unwrap().push((sent, 200));
    let items: String = (1..=v)
        .map(|i| format!("<item><guid>item-{i}</guid><title>item {i}</title><description>d</description></item>"))
        .collect();
    let body = format!(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://x/</link><description>d</description>{items}</channel></rss>"#
    );
    (StatusCode::OK, [(header::ETAG, etag)], body)
}

#[tokio::test]
async fn a_feed_without_a_hub_is_polled_with_conditional_gets() {
    let origin = Arc::new(Origin::default());
    *origin.version.lock().unwrap() = 1;
    let router = Router::new().route("/feed.rss", get(rss)).with_state(origin.clone());
    let url = format!("{}/feed.rss", crate::common::serve(router).await);

    let (app, bob) = follower(|s| s.hub.poll_interval = Duration::from_millis(200)).await;
    assert_eq!(follow(&app, &bob, &url, "News").await.status(), 201);
    eventually("the first item", async || {
        titles(&app, "bob", "News").await == ["item 1"]
    })
    .await;
    eventually("a 304", async || {
        origin.requests.lock().unwrap().iter().any(|r| r.1 == 304)
    })
    .await;
    assert!(
        origin.requests.lock().unwrap()[1..]
            .iter()
            .all(|(sent, _)| sent.as_deref() == Some("\"v1\"")),
        "every later poll is conditional"
    );
    let state = follows(&app, &bob).await;
    assert_eq!(state[0]["state"], "polling");
    assert!(state[0]["hub"].is_null());

    *origin.version.lock().unwrap() = 2;
    eventually("the new item", async || titles(&app, "bob", "News").await.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(titles(&app, "bob", "News").await, ["item 1", "item 2"], "no duplicates");

    // Removing the follow stops the polling.
    let id = state[0]["id"].as_i64().unwrap();
    let del = app
        .client
        .delete(app.url(&format!("/api/follows/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = origin.requests.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(origin.requests.lock().unwrap().len(), n);
}

/// The state a topic server keeps: its feed (version N has entries 1..=N) and the hub's fetches.
pub(crate) struct Topic {
    pub(crate) version: Mutex<u32>,
    pub(crate) fetches: Mutex<u32>,
    pub(crate) hub: String,
    pub(crate) me: Mutex<String>,
}

pub(crate) async fn topic_feed(State(t): State<Arc<Topic>>) -> impl IntoResponse {
    *t.fetches.lock().unwrap() += 1;
    let me = t.me.lock().unwrap().clone();
    let entries: String = (1..=*t.version.lock().unwrap())
        .map(|i| {
            format!(
                "<entry><id>urn:t:{i}</id><title>flask {i}</title><updated>2026-01-0{i}T00:00:00Z</updated></entry>"
            )
        })
        .collect();
    let body = format!(
        r#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id><updated>2026-01-01T00:00:00Z</updated>{entries}</feed>"#
    );
    let link = format!("<{}>; rel=\"hub\", <{me}>; rel=\"self\"", t.hub);
    (
        [
            (header::CONTENT_TYPE, "application/atom+xml".to_string()),
            (header::LINK, link),
        ],
        body,
    )
}

/// Flask-WebSub (PEERS.md) on 127.0.0.1: its URL, the process (killed on drop) and its
/// directory; None (a skip) without it.
pub(crate) async fn flask_websub() -> Option<(String, tokio::process::Child, tempfile::TempDir)> {
    let python = crate::common::python_with("flask_websub")?;
    let dir = tempfile::tempdir().unwrap();
    // Flask-WebSub listens on port 0 and says which port it got (no bind-then-release, where
    // another test could take the port in between).
    let script = format!(
        r#"
from celery import Celery
from flask import Flask
from flask_websub.hub import Hub, SQLite3HubStorage
app = Flask(__name__)
app.config.update(PUBLISH_SUPPORTED=True, HUB_MIN_LEASE_SECONDS=1, REQUEST_TIMEOUT=3)
celery = Celery('hub', broker='memory://')
celery.conf.task_always_eager = True
hub = Hub(SQLite3HubStorage('{}'), celery, **app.config)
app.register_blueprint(hub.build_blueprint(url_prefix='/'))
from werkzeug.serving import make_server
server = make_server('127.0.0.1', 0, app, threaded=True)
print(server.socket.getsockname()[1], flush=True)
server.serve_forever()
"#,
        dir.path().join("hub.sqlite3").display()
    );
    std::fs::write(dir.path().join("hub.py"), script).unwrap();
    let mut flask = tokio::process::Command::new(&python)
        .arg(dir.path().join("hub.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port: u16 = {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let mut out = tokio::io::BufReader::new(flask.stdout.take().unwrap());
        tokio::time::timeout(std::time::Duration::from_secs(30), out.read_line(&mut line))
            .await
            .expect("Flask-WebSub says its port within 30 s")
            .unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("Flask-WebSub said {line:?}, not a port"))
    };
    let hub_url = format!("http://127.0.0.1:{port}/");
    feedmesh::net::install_crypto();
    let client = reqwest::Client::new();
    // Python and Celery start slowly on a loaded machine (two tests start a hub each).
    crate::common::eventually_within("Flask-WebSub to listen", 30, async || {
        client.get(&hub_url).send().await.is_ok()
    })
    .await;

    Some((hub_url, flask, dir))
}

/// Against a real outside hub (Flask-WebSub, PEERS.md): discovery from the topic's Link
/// headers, a verified subscription, and a sha512-signed push checked and stored.
#[tokio::test]
async fn a_feed_on_flask_websub_is_followed_by_push() {
    let Some((hub_url, mut flask, _dir)) = flask_websub().await else {
        return;
    };
    let client = reqwest::Client::new();
    let topic = Arc::new(Topic {
        version: Mutex::new(1),
        fetches: Mutex::new(0),
        hub: hub_url.clone(),
        me: Mutex::new(String::new()),
    });
    let router = Router::new()
        .route("/feed.atom", get(topic_feed))
        .with_state(topic.clone());
    let url = format!("{}/feed.atom", crate::common::serve(router).await);
    *topic.me.lock().unwrap() = url.clone();

    let (app, bob) = follower(|s| s.hub.poll_interval = Duration::from_secs(600)).await;
    assert_eq!(follow(&app, &bob, &url, "News").await.status(), 201);
    eventually("the subscription at Flask-WebSub", async || {
        follows(&app, &bob).await[0]["state"] == "subscribed"
    })
    .await;
    assert_eq!(follows(&app, &bob).await[0]["hub"], hub_url);
    assert_eq!(titles(&app, "bob", "News").await, ["flask 1"]);

    *topic.version.lock().unwrap() = 2;
    let fetches = *topic.fetches.lock().unwrap();
    let ping = client
        .post(&hub_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("hub.mode", "publish")
                .append_pair("hub.topic", &url)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert!(ping.status().is_success(), "{}", ping.status());
    eventually("the push from Flask-WebSub", async || {
        titles(&app, "bob", "News").await.len() == 2
    })
    .await;
    assert_eq!(titles(&app, "bob", "News").await, ["flask 1", "flask 2"]);
    assert!(*topic.fetches.lock().unwrap() > fetches, "the hub fetched the topic");
    assert_eq!(
        follows(&app, &bob).await[0]["state"],
        "subscribed",
        "pushed, not polled"
    );
    flask.kill().await.ok();
}

/// `feedmesh follow remove` ends the outside subscription as `DELETE /api/follows/{id}`
/// does (it used to leave the hub pushing to a callback nobody answered).
#[tokio::test]
async fn removing_a_follow_by_the_cli_or_the_api_unsubscribes_at_its_hub() {
    let publisher = TestApp::spawn().await;
    let alice = publisher.token("alice", "phone").await;
    publisher.collection("alice", "Notes").await;
    let mut topics = Vec::new();
    for feed in ["/u/alice/stream.atom", "/u/alice/stream.rss"] {
        let key: serde_json::Value = publisher.feed_key(&alice, feed).await.json().await.unwrap();
        topics.push(key["url"].as_str().unwrap().to_string());
    }
    let (app, bob) = follower(|s| s.hub.poll_interval = Duration::from_secs(600)).await;
    for topic in &topics {
        assert_eq!(follow(&app, &bob, topic, "News").await.status(), 201);
    }
    eventually("both subscriptions", async || {
        let f = follows(&app, &bob).await;
        f[0]["state"] == "subscribed" && f[1]["state"] == "subscribed"
    })
    .await;
    // The callbacks the follower gave the publisher's hub, by topic.
    let bob_id = app.store.user("bob").await.unwrap().id;
    let callbacks: Vec<(String, String)> = app
        .store
        .follows(bob_id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.topic.clone(),
                format!("{}/websub/callback/{}", app.base, f.callback_token),
            )
        })
        .collect();
    for (topic, callback) in &callbacks {
        assert!(publisher.store.subscription(topic, callback).await.unwrap().is_some());
    }
    let ids: Vec<i64> = follows(&app, &bob)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect();

    // One by the CLI, on the same database, while the hub runs; the other by the API.
    let out = std::process::Command::new(crate::common::process::BIN)
        .args(["follow", "remove", "bob", &ids[0].to_string()])
        .env("FEEDMESH_DATA_DIR", app.dir.path())
        .env("FEEDMESH_DATABASE_URL", &app.db_url)
        .env("FEEDMESH_SECRET_KEY", crate::common::TEST_SECRET_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let removed = app
        .client
        .delete(app.url(&format!("/api/follows/{}", ids[1])))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(follows(&app, &bob).await, serde_json::json!([]), "neither is listed");
    for (topic, callback) in &callbacks {
        eventually("the unsubscription at the publisher's hub", async || {
            publisher.store.subscription(topic, callback).await.unwrap().is_none()
        })
        .await;
    }
    eventually("the follows gone once their hub was told", async || {
        app.store
            .follow_by_token(callbacks[0].1.rsplit('/').next().unwrap())
            .await
            .unwrap()
            .is_none()
    })
    .await;
}
