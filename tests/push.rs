//! Content distribution's HTTP/1.1 client (`feedmesh::push`) against real servers on
//! loopback: kept-alive connections reused, closed ones replaced, long answers not read,
//! a hanging callback bounded by the timeout, and private addresses refused by default.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::post;
use axum::serve::ListenerExt;
use bytes::Bytes;
use feedmesh::net::{OutboundError, UrlError};
use feedmesh::websub::push::Pusher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(HeaderMap, Bytes)>>,
}

/// An axum callback server that counts the connections it accepts.
async fn callback_server(seen: Arc<Seen>) -> String {
    let s = seen.clone();
    let app = Router::new()
        .route(
            "/cb",
            post(move |headers: HeaderMap, body: Bytes| async move {
                s.requests.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }),
        )
        .route("/gone", post(|| async { StatusCode::GONE }))
        .route("/big", post(|| async { "x".repeat(100_000) }))
        .route("/close", post(|| async { ([(header::CONNECTION, "close")], "bye") }))
        .route(
            "/hang",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |_| {
        seen.connections.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{}", addr.port())
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn notification_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/atom+xml"));
    h.insert("x-hub-signature", HeaderValue::from_static("sha256=abc"));
    h
}

#[tokio::test]
async fn one_kept_alive_connection_carries_many_notifications() {
    let seen = Arc::new(Seen::default());
    let base = callback_server(seen.clone()).await;
    let pusher = Pusher::new(true, Duration::from_secs(5));
    for i in 0..3 {
        let body = Bytes::from(format!("<feed>{i}</feed>"));
        let status = pusher
            .post(&url(&format!("{base}/cb?x={i}")), notification_headers(), body)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "the connection was not reused"
    );
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    for (i, (headers, body)) in requests.iter().enumerate() {
        assert_eq!(body.as_ref(), format!("<feed>{i}</feed>").as_bytes());
        assert_eq!(headers["content-type"], "application/atom+xml");
        assert_eq!(headers["x-hub-signature"], "sha256=abc");
        assert_eq!(headers["host"], base.trim_start_matches("http://"));
        assert!(headers["user-agent"].to_str().unwrap().starts_with("feedmesh/"));
        assert_eq!(headers["content-length"], body.len().to_string().as_str());
    }
}

#[tokio::test]
async fn statuses_come_back_and_spent_connections_are_replaced() {
    let seen = Arc::new(Seen::default());
    let base = callback_server(seen.clone()).await;
    let pusher = Pusher::new(true, Duration::from_secs(5));
    let post = async |path: &str| {
        let target = url(&format!("{base}{path}"));
        pusher.post(&target, HeaderMap::new(), Bytes::from_static(b"x")).await
    };
    assert_eq!(post("/gone").await.unwrap(), StatusCode::GONE);
    assert_eq!(post("/nowhere").await.unwrap(), StatusCode::NOT_FOUND);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    // The server ends this connection after its answer: the next request opens another.
    assert_eq!(post("/close").await.unwrap(), StatusCode::OK);
    assert_eq!(post("/cb").await.unwrap(), StatusCode::NO_CONTENT);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    // An answer longer than 4 KiB is not read: its connection is dropped, not reused.
    assert_eq!(post("/big").await.unwrap(), StatusCode::OK);
    assert_eq!(post("/cb").await.unwrap(), StatusCode::NO_CONTENT);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

/// A bare HTTP/1.1 server that answers one request per connection and then, like a server
/// whose keep-alive timeout strikes just as the next request arrives, reads the next one and
/// closes the connection without an answer.
async fn one_shot_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                for answered in [false, true] {
                    // Headers, then the one-byte body.
                    while !buf.windows(5).any(|w| w == b"\r\n\r\nx") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    if answered {
                        return; // closed, unanswered
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                }
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), served)
}

#[tokio::test]
async fn a_connection_closed_by_the_callback_is_not_a_failed_delivery() {
    let (base, served) = one_shot_server().await;
    let pusher = Pusher::new(true, Duration::from_secs(5));
    for _ in 0..5 {
        let status = pusher
            .post(&url(&format!("{base}/cb")), HeaderMap::new(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(served.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_hanging_callback_ends_at_the_timeout() {
    let seen = Arc::new(Seen::default());
    let base = callback_server(seen).await;
    let pusher = Pusher::new(true, Duration::from_millis(300));
    let start = Instant::now();
    let err = pusher
        .post(&url(&format!("{base}/hang")), HeaderMap::new(), Bytes::new())
        .await
        .expect_err("timed out");
    assert!(err.to_string().contains("did not answer in time"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let seen = Arc::new(Seen::default());
    let base = callback_server(seen.clone()).await;
    let pusher = Pusher::new(false, Duration::from_secs(5));
    let port = base.rsplit(':').next().unwrap();
    for target in [format!("{base}/cb"), format!("http://localhost:{port}/cb")] {
        let err = pusher
            .post(&url(&target), HeaderMap::new(), Bytes::from_static(b"x"))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, OutboundError::Url(UrlError::Private(_))),
            "{target}: {err}"
        );
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        0,
        "a refused address was connected to"
    );
}
