//! The one WebSub callback server of the tests (verification GETs and deliveries, with
//! behaviours chosen by path), and the hub-side helpers built on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::{TestApp, eventually};

#[derive(Default)]
pub struct Callbacks {
    /// (path, raw query) of every verification GET, in order.
    pub seen: Mutex<Vec<(String, String)>>,
    /// Every delivery POST, in order.
    pub posts: Mutex<Vec<Delivery>>,
}

#[derive(Clone, Debug)]
pub struct Delivery {
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

pub fn posts(cb: &Callbacks, kind: &str) -> Vec<Delivery> {
    cb.posts
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.kind == kind)
        .cloned()
        .collect()
}

pub fn challenge(query: &str) -> String {
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
        "echo" | "gone" | "flakypost" | "rss" | "phone" | "notes" | "short" | "revoked" | "timeline" | "view" => {
            (StatusCode::OK, echo)
        }
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

pub async fn callback_server() -> (String, Arc<Callbacks>) {
    let cb = Arc::new(Callbacks::default());
    let app = Router::new()
        .route("/cb/{kind}", get(callback).post(receive))
        .with_state(cb.clone());
    (format!("{}/cb", super::serve(app).await), cb)
}

pub async fn hub(app: &TestApp, pairs: &[(&str, &str)]) -> reqwest::Response {
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
pub async fn setup() -> (TestApp, String) {
    setup_with(|_| {}).await
}

/// `setup` with changed settings.
pub async fn setup_with(tweak: impl FnOnce(&mut feedmesh::config::Settings)) -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = super::test_db(dir.path()).await;
    let app = TestApp::spawn_with(dir, db, tweak).await;
    let token = app.token("alice", "laptop").await;
    let key: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    (app, key["url"].as_str().unwrap().to_string())
}

pub fn seen(cb: &Callbacks, kind: &str) -> Vec<String> {
    cb.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == kind)
        .map(|(_, q)| q.clone())
        .collect()
}

/// Subscribes `callback` to `topic` and waits until the subscription is active.
pub async fn subscribe(app: &TestApp, topic: &str, callback: &str, extra: &[(&str, &str)]) {
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

pub fn hmac_sha256(secret: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}
