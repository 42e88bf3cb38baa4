//! The WebSub hub's subscription side against a real callback server on loopback:
//! requests (A, B), verification of intent (C), unsubscription (E), leases (F), durability
//! (J6) and the default refusal of private callbacks (S14).

use std::time::{Duration, Instant};

use crate::common::callbacks::*;
use crate::common::{TestApp, eventually};

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
    let db = crate::common::test_db(dir.path()).await;
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
    let db = crate::common::test_db(shared.path()).await;
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
