//! The WebSub hub's subscription side against a real callback server on loopback:
//! requests (A, B), verification of intent (C), unsubscription (E), leases (F), durability
//! (J6) and the default refusal of private callbacks (S14).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::common::TestApp;

#[derive(Default)]
pub(crate) struct Callbacks {
    /// (path, raw query) of every verification GET, in order.
    pub seen: Mutex<Vec<(String, String)>>,
    /// Every delivery POST, in order.
    pub posts: Mutex<Vec<Delivery>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub kind: String,
    pub content_type: String,
    pub link: String,
    pub signature: Option<String>,
    pub body: String,
}

/// Delivery answers by path: gone (410), flakypost (500 twice, then 200), else 204.
async fn receive(
    State(cb): State<Arc<Callbacks>>,
    Path(kind): Path<String>,
    headers: axum::http::HeaderMap,
    body: String,
) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let before = {
        let mut posts = cb.posts.lock().unwrap();
        let n = posts.iter().filter(|p| p.kind == kind).count();
        posts.push(Delivery {
            kind: kind.clone(),
            content_type: h("content-type").unwrap_or_default(),
            link: h("link").unwrap_or_default(),
            signature: h("x-hub-signature"),
            body,
        });
        n
    };
    match kind.as_str() {
        "gone" => StatusCode::GONE,
        "flakypost" if before < 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "flakypost" => StatusCode::OK,
        _ => StatusCode::NO_CONTENT,
    }
}

pub(crate) fn posts(cb: &Callbacks, kind: &str) -> Vec<Delivery> {
    cb.posts
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.kind == kind)
        .cloned()
        .collect()
}

pub(crate) fn challenge(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "hub.challenge")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Behaviours by path: echo, accepted (202 echo), refuse (404), wrong (200, wrong body),
/// slow (3 s, then echo), flaky (500 twice, then echo), subonly (echo subscribe only),
/// once (echo the first verification only).
async fn callback(
    State(cb): State<Arc<Callbacks>>,
    Path(kind): Path<String>,
    RawQuery(q): RawQuery,
) -> impl IntoResponse {
    let q = q.unwrap_or_default();
    let seen_before = {
        let mut seen = cb.seen.lock().unwrap();
        let n = seen.iter().filter(|(p, _)| *p == kind).count();
        seen.push((kind.clone(), q.clone()));
        n
    };
    let echo = challenge(&q);
    match kind.as_str() {
        "echo" | "gone" | "flakypost" | "rss" | "phone" | "notes" | "short" | "revoked" => (StatusCode::OK, echo),
        "accepted" => (StatusCode::ACCEPTED, echo),
        "refuse" => (StatusCode::NOT_FOUND, String::new()),
        "wrong" => (StatusCode::OK, "nope".to_string()),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, echo)
        }
        "flaky" if seen_before < 2 => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
        "flaky" => (StatusCode::OK, echo),
        "subonly" if q.contains("hub.mode=subscribe") => (StatusCode::OK, echo),
        "once" if seen_before == 0 => (StatusCode::OK, echo),
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

pub(crate) async fn callback_server() -> (String, Arc<Callbacks>) {
    let cb = Arc::new(Callbacks::default());
    let app = Router::new()
        .route("/cb/{kind}", get(callback).post(receive))
        .with_state(cb.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}/cb", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, cb)
}

pub(crate) async fn hub(app: &TestApp, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    app.client
        .post(app.url("/hub"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap()
}

/// A hub with alice's stream and its key URL (the topic).
pub(crate) async fn setup() -> (TestApp, String) {
    setup_with(|_| {}).await
}

/// `setup` with changed settings.
pub(crate) async fn setup_with(tweak: impl FnOnce(&mut feedmesh::config::Settings)) -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    let app = TestApp::spawn_with(dir, db, tweak).await;
    let token = app.token("alice", "laptop").await;
    let key: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    (app, key["url"].as_str().unwrap().to_string())
}

pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(8), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn seen(cb: &Callbacks, kind: &str) -> Vec<String> {
    cb.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == kind)
        .map(|(_, q)| q.clone())
        .collect()
}

#[tokio::test]
async fn subscribe_is_verified_then_active_with_the_callback_query_kept() {
    let (app, topic) = setup().await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo?z=y&a=b");
    let started = Instant::now();
    let r = hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
            ("hub.lease_seconds", "120"),
            ("hub.secret", "s3cret"),
            ("hub.foo", "ignored"),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    eventually("the subscription", async || {
        app.store.subscription(&topic, &callback).await.unwrap().is_some()
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "verification took {:?}",
        started.elapsed()
    );
    let sub = app.store.subscription(&topic, &callback).await.unwrap().unwrap();
    assert_eq!(sub.secret.as_deref(), Some("s3cret"));
    assert_eq!(sub.lease_seconds, 120);
    assert!(
        (sub.expires_at - (now_ms + 120_000)).abs() < 5_000,
        "expiry {} vs {}",
        sub.expires_at,
        now_ms + 120_000
    );
    assert_eq!(sub.feed, "/u/alice/stream.atom");
    let queries = seen(&cb, "echo");
    assert_eq!(queries.len(), 1);
    let q = &queries[0];
    assert!(q.starts_with("z=y&a=b&hub.mode=subscribe&"), "{q}");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    assert!(params.contains(&("hub.topic".into(), topic.clone())), "{q}");
    assert!(params.contains(&("hub.lease_seconds".into(), "120".into())), "{q}");
    assert!(challenge(q).len() >= 32, "a short challenge: {q}");
    assert!(!q.contains("s3cret"), "the secret was sent in the verification");

    // Any 2xx with the echo counts, 202 included.
    let accepted = format!("{cb_base}/accepted");
    hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &accepted),
        ],
    )
    .await;
    eventually("the 202 subscriber", async || {
        app.store.subscription(&topic, &accepted).await.unwrap().is_some()
    })
    .await;
}

#[tokio::test]
async fn refused_verifications_change_nothing_and_never_delay_the_answer() {
    let (app, topic) = setup().await;
    let (cb_base, cb) = callback_server().await;
    for kind in ["refuse", "wrong", "slow"] {
        let callback = format!("{cb_base}/{kind}");
        let started = Instant::now();
        let r = hub(
            &app,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", &topic),
                ("hub.callback", &callback),
            ],
        )
        .await;
        assert_eq!(r.status(), 202, "{kind}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{kind}: the answer waited for verification"
        );
    }
    eventually("the refused verifications", async || {
        !seen(&cb, "refuse").is_empty() && !seen(&cb, "wrong").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for kind in ["refuse", "wrong"] {
        assert!(
            app.store
                .subscription(&topic, &format!("{cb_base}/{kind}"))
                .await
                .unwrap()
                .is_none(),
            "{kind}"
        );
        assert_eq!(seen(&cb, kind).len(), 1, "{kind}: a refusal was retried");
    }
    eventually("the slow subscriber", async || {
        app.store
            .subscription(&topic, &format!("{cb_base}/slow"))
            .await
            .unwrap()
            .is_some()
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (app, topic) = setup().await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/flaky");
    hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
        ],
    )
    .await;
    eventually("the flaky subscriber", async || {
        app.store.subscription(&topic, &callback).await.unwrap().is_some()
    })
    .await;
    let challenges: Vec<String> = seen(&cb, "flaky").iter().map(|q| challenge(q)).collect();
    assert_eq!(challenges.len(), 3);
    assert!(
        challenges[0] != challenges[1] && challenges[1] != challenges[2],
        "a challenge was reused"
    );
}

#[tokio::test]
async fn unsubscribe_needs_its_own_verification() {
    let (app, topic) = setup().await;
    let (cb_base, cb) = callback_server().await;
    let echo = format!("{cb_base}/echo");
    let subonly = format!("{cb_base}/subonly");
    for callback in [&echo, &subonly] {
        hub(
            &app,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", &topic),
                ("hub.callback", callback),
            ],
        )
        .await;
        eventually("a subscription", async || {
            app.store.subscription(&topic, callback).await.unwrap().is_some()
        })
        .await;
    }
    for callback in [&echo, &subonly] {
        let r = hub(
            &app,
            &[
                ("hub.mode", "unsubscribe"),
                ("hub.topic", &topic),
                ("hub.callback", callback),
                ("hub.lease_seconds", "x"),
            ],
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    eventually("the unsubscription", async || {
        app.store.subscription(&topic, &echo).await.unwrap().is_none()
    })
    .await;
    eventually("the refused unsubscribe", async || seen(&cb, "subonly").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        app.store.subscription(&topic, &subonly).await.unwrap().is_some(),
        "a refused unsubscribe removed it"
    );
    assert!(seen(&cb, "echo")[1].starts_with("hub.mode=unsubscribe&"));

    // Unsubscribing what was never subscribed: 202, and nobody is called.
    let stranger = format!("{cb_base}/never");
    assert_eq!(
        hub(
            &app,
            &[
                ("hub.mode", "unsubscribe"),
                ("hub.topic", &topic),
                ("hub.callback", &stranger)
            ]
        )
        .await
        .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen(&cb, "never").is_empty());
}

#[tokio::test]
async fn a_renewal_applies_only_once_verified() {
    let (app, topic) = setup().await;
    let (cb_base, _cb) = callback_server().await;
    let callback = format!("{cb_base}/once");
    hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
            ("hub.secret", "A"),
        ],
    )
    .await;
    eventually("the subscription", async || {
        app.store.subscription(&topic, &callback).await.unwrap().is_some()
    })
    .await;
    hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
            ("hub.secret", "B"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let sub = app.store.subscription(&topic, &callback).await.unwrap().unwrap();
    assert_eq!(
        sub.secret.as_deref(),
        Some("A"),
        "an unverified renewal changed the secret"
    );
}

#[tokio::test]
async fn bad_hub_requests_get_a_reason_and_create_nothing() {
    let (app, topic) = setup().await;
    let (cb_base, cb) = callback_server().await;
    let echo = format!("{cb_base}/echo");
    let untouched = app.store.subscription(&topic, &echo);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "no callback",
            vec![("hub.mode", "subscribe".into()), ("hub.topic", topic.clone())],
        ),
        (
            "no topic",
            vec![("hub.mode", "subscribe".into()), ("hub.callback", echo.clone())],
        ),
        (
            "bad mode",
            vec![
                ("hub.mode", "watch".into()),
                ("hub.topic", topic.clone()),
                ("hub.callback", echo.clone()),
            ],
        ),
        (
            "ftp callback",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", topic.clone()),
                ("hub.callback", "ftp://x/cb".into()),
            ],
        ),
        (
            "200-byte secret",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", topic.clone()),
                ("hub.callback", echo.clone()),
                ("hub.secret", "s".repeat(200)),
            ],
        ),
        (
            "bad lease",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", topic.clone()),
                ("hub.callback", echo.clone()),
                ("hub.lease_seconds", "1.5".into()),
            ],
        ),
        (
            "outside topic",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", "http://example.com/feed".into()),
                ("hub.callback", echo.clone()),
            ],
        ),
        (
            "topic without key",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", app.url("/u/alice/stream.atom")),
                ("hub.callback", echo.clone()),
            ],
        ),
        (
            "wrong key",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.topic", app.url("/u/alice/stream.atom?key=fk_nope")),
                ("hub.callback", echo.clone()),
            ],
        ),
        (
            "key of another feed",
            vec![
                ("hub.mode", "subscribe".into()),
                (
                    "hub.topic",
                    topic.replace("/stream.atom", "/endpoints/laptop/stream.atom"),
                ),
                ("hub.callback", echo.clone()),
            ],
        ),
        ("publish without topic", vec![("hub.mode", "publish".into())]),
    ];
    for (what, pairs) in &cases {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = hub(&app, &pairs).await;
        assert_eq!(r.status(), 400, "{what}");
        assert!(
            r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"),
            "{what}"
        );
        assert!(!r.text().await.unwrap().trim().is_empty(), "{what}: no reason given");
    }
    let json = app
        .client
        .post(app.url("/hub"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    let get = app
        .client
        .get(app.url(&format!("/hub?hub.mode=subscribe&hub.callback={echo}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(
        hub(&app, &[("hub.mode", "publish"), ("hub.url", &topic)])
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cb.seen.lock().unwrap().is_empty(),
        "a refused request reached the callback"
    );
    assert!(untouched.await.unwrap().is_none());
}

#[tokio::test]
async fn by_default_private_callbacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    let app = TestApp::spawn_with(dir, db, |s| s.serve.allow_private_network = false).await;
    let token = app.token("alice", "laptop").await;
    let key: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let (cb_base, cb) = callback_server().await;
    for callback in [
        format!("{cb_base}/echo"),
        "http://[::1]/cb".to_string(),
        "http://169.254.169.254/latest".to_string(),
    ] {
        let r = hub(
            &app,
            &[
                ("hub.mode", "subscribe"),
                ("hub.topic", &topic),
                ("hub.callback", &callback),
            ],
        )
        .await;
        assert_eq!(r.status(), 400, "{callback}");
        assert!(r.text().await.unwrap().contains("--allow-private-network"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cb.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_queued_verification_survives_a_restart() {
    let shared = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", shared.path().join("feedmesh.db").display());
    let first = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let token = first.token("alice", "laptop").await;
    let key: serde_json::Value = first
        .feed_key(&token, "/u/alice/stream.atom")
        .await
        .json()
        .await
        .unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let user = first.store.user("alice").await.unwrap();
    drop(first); // the first hub stops, its worker with it
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    // What a hub killed between its 202 and the verification leaves behind: a queued row.
    let store = feedmesh::store::open(&db, crate::common::test_sealer()).await.unwrap();
    let req = feedmesh::store::HubRequest {
        id: 0,
        subscribe: true,
        topic: topic.clone(),
        callback: callback.clone(),
        user_id: Some(user.id),
        feed: "/u/alice/stream.atom".into(),
        key_hash: feedmesh::secrets::hash(topic.split("key=").nth(1).unwrap()),
        secret: None,
        lease_seconds: 60,
        attempts: 0,
    };
    store.hub_enqueue(&req, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen(&cb, "echo").is_empty(), "a stopped hub still verified");
    // The restarted hub's base URL differs, but the queued topic is what gets verified.
    let restarted = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    eventually("the verification after restart", async || {
        restarted.store.subscription(&topic, &callback).await.unwrap().is_some()
    })
    .await;
    assert_eq!(seen(&cb, "echo").len(), 1);
}

/// Subscribes `callback` to `topic` and waits until the subscription is active.
pub(crate) async fn subscribe(app: &TestApp, topic: &str, callback: &str, extra: &[(&str, &str)]) {
    let mut pairs = vec![
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.callback", callback),
    ];
    pairs.extend_from_slice(extra);
    assert_eq!(hub(app, &pairs).await.status(), 202);
    eventually("the subscription", async || {
        app.store.subscription(topic, callback).await.unwrap().is_some()
    })
    .await;
}

pub(crate) fn hmac_sha256(secret: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

#[tokio::test]
async fn new_entries_are_pushed_signed_in_order_once() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        crate::common::entry("before", "not sent"),
    )
    .await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[("hub.secret", "s3cret")]).await;

    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("first", "one"))
        .await;
    eventually("the first delivery", async || posts(&cb, "echo").len() == 1).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("second", "two"))
        .await;
    eventually("the second delivery", async || posts(&cb, "echo").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = posts(&cb, "echo");
    assert_eq!(got.len(), 2, "a duplicate delivery");
    assert_eq!(got[0].content_type, "application/atom+xml; charset=utf-8");
    assert_eq!(
        got[0].link,
        format!("<{}>; rel=\"hub\", <{topic}>; rel=\"self\"", app.url("/hub"))
    );
    for d in &got {
        assert_eq!(
            d.signature.as_deref(),
            Some(hmac_sha256("s3cret", &d.body).as_str()),
            "bad signature"
        );
        assert!(
            !d.body.contains("before"),
            "an entry older than the subscription was sent"
        );
    }
    assert!(got[0].body.contains(">first<") && !got[0].body.contains(">second<"));
    assert!(
        got[1].body.contains(">second<") && !got[1].body.contains(">first<"),
        "not a diff: {}",
        got[1].body
    );
}

#[tokio::test]
async fn each_topic_gets_only_its_own_changes_in_its_own_format() {
    let (app, _) = setup().await;
    let laptop = app.token("alice", "laptop").await;
    let phone = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let key = |feed: &'static str| {
        let (app, laptop) = (&app, &laptop);
        async move {
            let v: serde_json::Value = app.feed_key(laptop, feed).await.json().await.unwrap();
            v["url"].as_str().unwrap().to_string()
        }
    };
    let rss_topic = key("/u/alice/stream.rss").await;
    let phone_topic = key("/u/alice/endpoints/phone/stream.json").await;
    let notes_topic = key("/atompub/alice/Notes").await;
    let (cb_base, cb) = callback_server().await;
    subscribe(&app, &rss_topic, &format!("{cb_base}/rss"), &[]).await;
    subscribe(&app, &phone_topic, &format!("{cb_base}/phone"), &[]).await;
    subscribe(&app, &notes_topic, &format!("{cb_base}/notes"), &[]).await;

    app.post_entry(
        &laptop,
        "/atompub/alice/Notes",
        crate::common::entry("from laptop", "l"),
    )
    .await;
    eventually("the rss and notes deliveries", async || {
        posts(&cb, "rss").len() == 1 && posts(&cb, "notes").len() == 1
    })
    .await;
    app.post_entry(&phone, "/atompub/alice/Notes", crate::common::entry("from phone", "p"))
        .await;
    eventually("the phone delivery", async || {
        posts(&cb, "phone").len() == 1 && posts(&cb, "rss").len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = posts(&cb, "rss");
    assert_eq!(rss[0].content_type, "application/rss+xml; charset=utf-8");
    assert!(rss[0].signature.is_none(), "signed without a secret");
    let phone_posts = posts(&cb, "phone");
    assert_eq!(phone_posts.len(), 1, "the phone's feed got the laptop's change");
    assert_eq!(phone_posts[0].content_type, "application/feed+json; charset=utf-8");
    let json: serde_json::Value = serde_json::from_str(&phone_posts[0].body).unwrap();
    assert_eq!(json["items"][0]["title"], "from phone");
    let notes = posts(&cb, "notes");
    assert!(
        notes[0].body.contains("<sx:sync ") && notes[0].body.contains("<sx:sharing since="),
        "{}",
        notes[0].body
    );
}

#[tokio::test]
async fn gone_ends_a_subscription_and_failures_are_retried() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let gone = format!("{cb_base}/gone");
    let flaky = format!("{cb_base}/flakypost");
    subscribe(&app, &topic, &gone, &[]).await;
    subscribe(&app, &topic, &flaky, &[]).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("news", "n"))
        .await;
    eventually("the retried delivery", async || posts(&cb, "flakypost").len() == 3).await;
    eventually("the end of the gone subscription", async || {
        app.store.subscription(&topic, &gone).await.unwrap().is_none()
    })
    .await;
    let flaky_posts = posts(&cb, "flakypost");
    assert!(flaky_posts.iter().all(|p| p.body.contains(">news<")));
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("later", "n"))
        .await;
    eventually("the next delivery", async || posts(&cb, "flakypost").len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&cb, "gone").len(), 1, "delivered after 410 Gone");
    assert!(
        app.store.subscription(&topic, &flaky).await.unwrap().is_some(),
        "failures ended the subscription"
    );
}

#[tokio::test]
async fn nothing_is_delivered_after_the_lease_ends() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/short");
    subscribe(&app, &topic, &callback, &[("hub.lease_seconds", "1")]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("too late", "x"))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(posts(&cb, "short").is_empty(), "delivered after the lease ended");
}

#[tokio::test]
async fn hosted_feeds_advertise_the_hub_on_get_and_head() {
    let (app, topic) = setup().await;
    let hub_url = app.url("/hub");
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = app.client.request(method.clone(), &topic).send().await.unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(
            r.headers()["link"],
            format!("<{hub_url}>; rel=\"hub\", <{topic}>; rel=\"self\"").as_str(),
            "{method}"
        );
    }
    let atom = app.client.get(&topic).send().await.unwrap().text().await.unwrap();
    assert!(
        atom.contains(&format!("<link rel=\"hub\" href=\"{hub_url}\"/>")),
        "{atom}"
    );
    let rss = app
        .client
        .get(topic.replace("stream.atom", "stream.rss"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        rss.contains(&format!("<atom:link rel=\"hub\" href=\"{hub_url}\"/>")),
        "{rss}"
    );
    let json: serde_json::Value = app
        .client
        .get(topic.replace("stream.atom", "stream.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["hubs"][0]["type"], "WebSub");
    assert_eq!(json["hubs"][0]["url"], hub_url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgres_deliver_each_change_exactly_once() {
    let Some(db) = crate::common::postgres_url().await else {
        return;
    };
    let a = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let b = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let token = a.token("alice", "laptop").await;
    a.collection("alice", "Notes").await;
    let key: serde_json::Value = a.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&a, &topic, &callback, &[]).await;
    for i in 0..20 {
        let hub = if i % 2 == 0 { &a } else { &b };
        let r = hub
            .post_entry(
                &token,
                "/atompub/alice/Notes",
                crate::common::entry(&format!("e{i}"), "x"),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let all = || posts(&cb, "echo").iter().map(|p| p.body.clone()).collect::<String>();
    eventually("every change delivered", async || {
        (0..20).all(|i| all().contains(&format!(">e{i}<")))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bodies = all();
    for i in 0..20 {
        assert_eq!(
            bodies.matches(&format!(">e{i}<")).count(),
            1,
            "e{i} delivered more than once"
        );
    }
}

#[tokio::test]
async fn revoking_the_key_ends_its_subscriptions_with_a_denial() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/revoked?token=t1");
    subscribe(&app, &topic, &callback, &[]).await;
    let keys: serde_json::Value = app
        .client
        .get(app.url("/api/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = keys[0]["id"].as_i64().unwrap();
    let del = app
        .client
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert!(
        app.store.subscription(&topic, &callback).await.unwrap().is_none(),
        "the subscription outlived its key"
    );
    let denials: Vec<String> = seen(&cb, "revoked")
        .into_iter()
        .filter(|q| q.contains("hub.mode=denied"))
        .collect();
    assert_eq!(denials.len(), 1);
    assert!(denials[0].starts_with("token=t1&hub.mode=denied&"), "{}", denials[0]);
    assert!(url::form_urlencoded::parse(denials[0].as_bytes()).any(|(k, v)| k == "hub.topic" && v == topic));
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("secret news", "x"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(posts(&cb, "revoked").is_empty(), "content delivered after revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_wakes_a_long_poll_at_once_on_postgres() {
    let Some(db) = crate::common::postgres_url().await else {
        return;
    };
    let a = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let b = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let token = a.token("alice", "laptop").await;
    a.collection("alice", "Notes").await;
    // Without LISTEN/NOTIFY, B would see A's writes only on its once-a-second check.
    for round in 0..5 {
        let full = b.get(&token, "/atompub/alice/Notes").await;
        let cursor = full.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
        let poll = {
            let (client, url, token) = (
                b.client.clone(),
                b.url(&format!("/atompub/alice/Notes?since={cursor}&wait=20")),
                token.clone(),
            );
            tokio::spawn(async move {
                let body = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                (Instant::now(), body)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let posted = Instant::now();
        a.post_entry(
            &token,
            "/atompub/alice/Notes",
            crate::common::entry(&format!("round {round}"), "x"),
        )
        .await;
        let (answered, body) = poll.await.unwrap();
        let took = answered.duration_since(posted);
        assert!(
            took < Duration::from_millis(300),
            "round {round}: B answered {took:?} after A's write"
        );
        assert!(body.contains(&format!(">round {round}<")), "{body}");
    }
}

#[tokio::test]
async fn the_signature_algorithm_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    let app = TestApp::spawn_with(dir, db, |s| s.hub.signature = feedmesh::secrets::Signature::Sha512).await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let key: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[("hub.secret", "k")]).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("signed", "x"))
        .await;
    eventually("the delivery", async || posts(&cb, "echo").len() == 1).await;
    let d = &posts(&cb, "echo")[0];
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(b"k").unwrap();
    m.update(d.body.as_bytes());
    assert_eq!(
        d.signature.as_deref(),
        Some(format!("sha512={}", hex::encode(m.finalize().into_bytes())).as_str())
    );
}

#[tokio::test]
async fn a_credentialed_fetch_advertises_a_capability_url_as_self() {
    let (app, _) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("hello", "x"))
        .await;
    let self_of = async |token: &str| {
        let resp = app.get(token, "/u/alice/stream.atom").await;
        assert_eq!(resp.status(), 200);
        let link = resp.headers()["link"].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap();
        let me = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"self\""))
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once('>'))
            .map(|(u, _)| u.to_string())
            .unwrap();
        assert!(body.contains(&format!("<link rel=\"self\" href=\"{me}\"")), "{body}");
        me
    };
    let me = self_of(&token).await;
    assert!(me.starts_with(&app.url("/u/alice/stream.atom?key=fk_")), "{me}");
    assert_eq!(self_of(&token).await, me, "the self URL is stable");
    // It reads the feed without credentials, and is a topic anyone holding it may subscribe to.
    let plain = app.client.get(&me).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.text().await.unwrap().contains("hello"));
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &me, &callback, &[]).await;

    // Revoking it ends the URL and its subscription; the next credentialed fetch makes a new one.
    let keys: serde_json::Value = app
        .client
        .get(app.url("/api/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["self"] == true && k["revoked"] == false)
        .unwrap()["id"]
        .clone();
    let resp = app
        .client
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.client.get(&me).send().await.unwrap().status(), 401);
    eventually("the denial", async || {
        seen(&cb, "echo").iter().any(|q| q.contains("hub.mode=denied"))
    })
    .await;
    let next = self_of(&token).await;
    assert_ne!(next, me);
    assert_eq!(app.client.get(&next).send().await.unwrap().status(), 200);
    // Another user's credentials never see alice's feed or its self key.
    let bob = app.token("bob", "laptop").await;
    assert_eq!(app.get(&bob, "/u/alice/stream.atom").await.status(), 404);
}
