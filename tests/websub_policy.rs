//! The hub's policies under load and abuse: request rates (S3, G7), the per-host cap on
//! deliveries in flight (J5), outbound timeouts (J4), and the lease sweep (F7).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;

use crate::common::callbacks::{callback_server, hub, posts, setup_with, subscribe};
use crate::common::entry;
use crate::common::eventually;

#[tokio::test]
async fn requests_over_the_rate_get_429_and_change_nothing() {
    let (app, topic) = setup_with(|s| s.hub.rate_limit = 3).await;
    let (cb_base, cb) = callback_server().await;
    for i in 0..3 {
        let callback = format!("{cb_base}/echo?n={i}");
        let pairs = [
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
        ];
        assert_eq!(hub(&app, &pairs).await.status(), 202, "request {i} is within the rate");
    }
    let over = format!("{cb_base}/echo?n=over");
    let pairs = [
        ("hub.mode", "subscribe"),
        ("hub.topic", &topic),
        ("hub.callback", &over),
    ];
    let resp = hub(&app, &pairs).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1, "Retry-After says when to come back");
    assert!(resp.text().await.unwrap().contains("too many hub requests"));
    // The three within the rate are verified; the one over it never is.
    eventually("three verifications", async || cb.seen.lock().unwrap().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cb.seen.lock().unwrap().len(), 3);
    assert!(app.store.subscription(&topic, &over).await.unwrap().is_none());
    // Publish pings are counted too (G7), and the bucket refills with time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ping = [("hub.mode", "publish"), ("hub.url", topic.as_str())];
    let codes = [
        hub(&app, &ping).await.status(),
        hub(&app, &ping).await.status(),
        hub(&app, &ping).await.status(),
        hub(&app, &ping).await.status(),
    ];
    assert_eq!(codes.map(|c| c.as_u16()), [202, 202, 202, 429]);
}

/// Counts deliveries in flight at once; each takes 150 ms.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    done: AtomicUsize,
    first_post: Mutex<Option<std::time::Instant>>,
    hung: AtomicUsize,
}

async fn verify(RawQuery(q): RawQuery) -> String {
    crate::common::callbacks::challenge(&q.unwrap_or_default())
}

async fn slow_post(State(g): State<Arc<Gauge>>, Path(kind): Path<String>) -> StatusCode {
    if kind.starts_with("hang") {
        g.first_post.lock().unwrap().get_or_insert_with(std::time::Instant::now);
        // The first delivery hangs far longer than the hub's timeout; the retry is answered.
        if g.hung.fetch_add(1, Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        g.done.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NO_CONTENT;
    }
    let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
    g.max.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    g.now.fetch_sub(1, Ordering::SeqCst);
    g.done.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn gauge_server() -> (String, Arc<Gauge>) {
    let g = Arc::new(Gauge::default());
    let app = Router::new()
        .route("/g/{kind}", get(verify).post(slow_post))
        .with_state(g.clone());
    let base = format!("{}/g", crate::common::serve(app).await);
    (base, g)
}

#[tokio::test]
async fn one_callback_host_gets_at_most_the_cap_in_flight() {
    let (app, topic) = setup_with(|s| s.hub.per_host = 3).await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (base, g) = gauge_server().await;
    for i in 0..12 {
        subscribe(&app, &topic, &format!("{base}/slow{i}"), &[]).await;
    }
    assert_eq!(
        app.post_entry(&token, "/atompub/alice/Notes", entry("fan", "out"))
            .await
            .status(),
        201
    );
    eventually("12 deliveries", async || g.done.load(Ordering::SeqCst) == 12).await;
    assert_eq!(g.max.load(Ordering::SeqCst), 3, "the cap is reached and never passed");
}

#[tokio::test]
async fn a_hanging_callback_times_out_and_is_retried() {
    let (app, topic) = setup_with(|s| s.hub.timeout = Duration::from_millis(400)).await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (base, g) = gauge_server().await;
    subscribe(&app, &topic, &format!("{base}/hang"), &[]).await;
    app.post_entry(&token, "/atompub/alice/Notes", entry("slow", "peer"))
        .await;
    // Without a timeout the first attempt would hold the delivery for 20 s.
    eventually("the retry after the timeout", async || {
        g.done.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(g.hung.load(Ordering::SeqCst), 2, "one hung attempt, one retry");
}

#[tokio::test]
async fn expired_leases_are_swept_and_a_new_subscribe_starts_fresh() {
    let (app, topic) = setup_with(|s| s.hub.sweep_every = Duration::from_millis(100)).await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/short");
    subscribe(&app, &topic, &callback, &[("hub.lease_seconds", "1")]).await;
    eventually("the sweep", async || {
        app.store.subscription(&topic, &callback).await.unwrap().is_none()
    })
    .await;
    subscribe(&app, &topic, &callback, &[("hub.lease_seconds", "60")]).await;
    app.post_entry(&token, "/atompub/alice/Notes", entry("after", "renewal"))
        .await;
    eventually("a delivery to the fresh subscription", async || {
        posts(&cb, "short").len() == 1
    })
    .await;
    let sub = app.store.subscription(&topic, &callback).await.unwrap().unwrap();
    assert_eq!(sub.lease_seconds, 60);
}

/// Notification bodies by callback path; every verification is confirmed.
type Bodies = Arc<Mutex<Vec<(String, String)>>>;

async fn recording_server() -> (String, Bodies) {
    let bodies = Bodies::default();
    let app = Router::new()
        .route(
            "/r/{who}",
            get(verify).post(
                |State(b): State<Bodies>, Path(who): Path<String>, body: String| async move {
                    b.lock().unwrap().push((who, body));
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(bodies.clone());
    let base = format!("{}/r", crate::common::serve(app).await);
    (base, bodies)
}

#[tokio::test]
async fn many_quick_changes_through_few_lanes_reach_everyone_once_and_in_order() {
    // Two lanes for eight subscribers of one host, and changes faster than they drain: lanes
    // run dry and start again many times, and nothing may be stranded, doubled or reordered.
    let (app, topic) = setup_with(|s| s.hub.per_host = 2).await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (base, bodies) = recording_server().await;
    for i in 0..8 {
        subscribe(&app, &topic, &format!("{base}/s{i}"), &[]).await;
    }
    for n in 0..15 {
        let r = app
            .post_entry(&token, "/atompub/alice/Notes", entry(&format!("q{n:02}"), "x"))
            .await;
        assert_eq!(r.status(), 201);
    }
    let seen = |who: &str| -> Vec<String> {
        // Each notification lists the newest entry first; flatten into publish order.
        let mut titles = Vec::new();
        for (_, body) in bodies.lock().unwrap().iter().filter(|(w, _)| w == who) {
            let mut these: Vec<String> = body
                .match_indices("<title type=\"text\">q")
                .map(|(at, m)| body[at + m.len() - 1..at + m.len() + 2].to_string())
                .collect();
            these.reverse();
            titles.extend(these);
        }
        titles
    };
    eventually("every change at every subscriber", async || {
        (0..8).all(|i| seen(&format!("s{i}")).len() >= 15)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<String> = (0..15).map(|n| format!("q{n:02}")).collect();
    for i in 0..8 {
        assert_eq!(seen(&format!("s{i}")), expected, "subscriber s{i}");
    }
}
