//! Durable WebSub delivery: `kill -9` of the hub in the middle of a 10,000-subscriber fan-out
//! loses no notification; after a restart every subscriber has the new entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

use crate::common::process::{alice_with_notes, ok, serve_with};
use crate::common::{ATOM_ENTRY, entry};

const SUBSCRIBERS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_fan_out_loses_no_notification() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = alice_with_notes(d);
    let key_url = ok(d, &["key", "add", "alice", "/u/alice/stream.atom"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let key = key_url.split("key=").nth(1).unwrap().to_string();

    // Subscribers: one POST route, recording which of them got the entry.
    let got: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let app = Router::new()
        .route(
            "/cb/{n}",
            post(
                |State(got): State<Arc<Mutex<HashSet<usize>>>>, Path(n): Path<usize>, body: String| async move {
                    if body.contains(">fan-out news<") {
                        got.lock().unwrap().insert(n);
                    }
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // 10,000 verified subscriptions, as the hub keeps them.
    let db = format!("sqlite://{}", d.join("feedmesh.db").display());
    let store = feedmesh::store::open(&db, crate::common::sealer_of(d)).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64)
        + 86_400_000;
    for n in 0..SUBSCRIBERS {
        let sub = feedmesh::store::Subscription {
            topic: key_url.clone(),
            callback: format!("http://127.0.0.1:{cb_port}/cb/{n}"),
            user_id: Some(user.id),
            feed: "/u/alice/stream.atom".into(),
            key_hash: feedmesh::secrets::hash(&key),
            secret: Some("s".into()),
            lease_seconds: 86_400,
            expires_at: far,
        };
        store.subscribe(&sub).await.unwrap();
    }
    drop(store);

    let (mut hub, base) = serve_with(d, &["--allow-private-network"]);
    feedmesh::net::install_crypto();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/atompub/alice/Notes"))
        .bearer_auth(&token)
        .header("content-type", ATOM_ENTRY)
        .body(entry("fan-out news", "for everyone"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let start = Instant::now();
    while got.lock().unwrap().len() < SUBSCRIBERS / 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "the fan-out did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.kill().unwrap(); // SIGKILL, mid fan-out
    hub.wait().unwrap();
    let at_kill = got.lock().unwrap().len();
    assert!(
        at_kill < SUBSCRIBERS,
        "the fan-out had finished before the kill ({at_kill})"
    );

    let (mut hub, _) = serve_with(d, &["--allow-private-network"]);
    let start = Instant::now();
    while got.lock().unwrap().len() < SUBSCRIBERS {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = hub.kill();
            panic!(
                "after restart only {} of {SUBSCRIBERS} subscribers got the entry (at kill: {at_kill})",
                got.lock().unwrap().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill().unwrap();
    hub.wait().unwrap();
}
