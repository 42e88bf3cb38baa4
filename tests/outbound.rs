//! The outbound guard against a real server on loopback: refused by default (S14), allowed
//! only with --allow-private-network, never following redirects, reading capped bodies.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use feedmesh::net::{Outbound, OutboundError, UrlError, read_capped};
use reqwest::Method;

async fn callback_server() -> String {
    let app = Router::new()
        .route("/cb", get(|| async { "challenge-echo" }))
        .route("/big", get(|| async { "x".repeat(100_000) }))
        .route("/moved", get(|| async { Redirect::temporary("/cb") }));
    crate::common::serve(app).await
}

#[tokio::test]
async fn the_default_refuses_loopback_by_address_and_by_name() {
    let base = callback_server().await;
    let guard = Outbound::new(false, Duration::from_secs(5)).unwrap();
    let err = guard.request(Method::GET, &format!("{base}/cb")).expect_err("refused");
    assert!(matches!(err, OutboundError::Url(UrlError::Private(_))), "{err}");
    // A name resolving to loopback is refused at resolution time, before any connection.
    let port = base.rsplit(':').next().unwrap();
    let req = guard
        .request(Method::GET, &format!("http://localhost:{port}/cb"))
        .unwrap();
    let err = guard.send(req).await.expect_err("refused");
    assert!(matches!(err, OutboundError::Url(UrlError::Private(_))), "{err}");
    assert!(err.to_string().contains("--allow-private-network"));
}

#[tokio::test]
async fn allowed_in_test_mode_without_redirects_and_with_capped_reads() {
    let base = callback_server().await;
    let open = Outbound::new(true, Duration::from_secs(5)).unwrap();
    let resp = open
        .send(open.request(Method::GET, &format!("{base}/cb")).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "challenge-echo");
    let moved = open
        .send(open.request(Method::GET, &format!("{base}/moved")).unwrap())
        .await
        .unwrap();
    assert_eq!(
        moved.status(),
        StatusCode::TEMPORARY_REDIRECT,
        "a redirect was followed"
    );
    let big = open
        .send(open.request(Method::GET, &format!("{base}/big")).unwrap())
        .await
        .unwrap();
    assert_eq!(read_capped(big, 1000).await.len(), 1000);
    let port = base.rsplit(':').next().unwrap();
    let by_name = open
        .request(Method::GET, &format!("http://localhost:{port}/cb"))
        .unwrap();
    assert_eq!(open.send(by_name).await.unwrap().status(), StatusCode::OK);
}
