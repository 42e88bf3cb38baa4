//! Open-hub mode (`--open-hub`): subscriptions to topics served elsewhere, fetched on a
//! publish ping with redirects re-checked (G4, S2), delivered byte for byte with the topic's
//! own Content-Type (H2, H3, H11), and not again while the content is unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::common::callbacks::{callback_server, hmac_sha256, hub, posts, seen, setup_with, subscribe};
use crate::common::eventually;

#[derive(Default)]
struct Publisher {
    body: Mutex<String>,
    /// The Accept header of every fetch of /feed, in order.
    fetches: Mutex<Vec<String>>,
    away_fetches: Mutex<u32>,
}

const TYPE: &str = "application/atom+xml; charset=UTF-8";

async fn feed(State(p): State<Arc<Publisher>>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    p.fetches.lock().unwrap().push(accept.to_string());
    ([(header::CONTENT_TYPE, TYPE)], p.body.lock().unwrap().clone())
}

async fn publisher() -> (String, Arc<Publisher>) {
    let p = Arc::new(Publisher::default());
    *p.body.lock().unwrap() = "<feed>first</feed>".into();
    let app = Router::new()
        .route("/feed", get(feed))
        .route(
            "/old",
            get(|| async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/feed")]) }),
        )
        .route(
            "/away",
            get(|State(p): State<Arc<Publisher>>| async move {
                *p.away_fetches.lock().unwrap() += 1;
                (StatusCode::FOUND, [(header::LOCATION, "ftp://127.0.0.1/feed")])
            }),
        )
        .with_state(p.clone());
    let base = crate::common::serve(app).await;
    (base, p)
}

#[tokio::test]
async fn outside_topics_are_refused_unless_the_hub_is_open() {
    let (app, _) = setup_with(|_| {}).await;
    let (publisher_base, _) = publisher().await;
    let (cb_base, cb) = callback_server().await;
    let topic = format!("{publisher_base}/feed");
    let callback = format!("{cb_base}/echo");
    let resp = hub(
        &app,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", &topic),
            ("hub.callback", &callback),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("only feeds this hub serves"));
    let resp = hub(&app, &[("hub.mode", "publish"), ("hub.url", &topic)]).await;
    assert_eq!(resp.status(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cb.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_ping_fetches_the_topic_through_redirects_and_delivers_it_verbatim() {
    let (app, _) = setup_with(|s| s.hub.open = true).await;
    let (publisher_base, p) = publisher().await;
    let (cb_base, cb) = callback_server().await;
    // The topic is the URL subscribed to; the publisher moved it (301 to /feed).
    let topic = format!("{publisher_base}/old");
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[("hub.secret", "s3cret")]).await;

    // G3: a ping for a topic nobody subscribes to is accepted and fetches nothing.
    let nobody = format!("{publisher_base}/feed?nobody");
    assert_eq!(
        hub(&app, &[("hub.mode", "publish"), ("hub.url", &nobody)])
            .await
            .status(),
        202
    );

    assert_eq!(
        hub(&app, &[("hub.mode", "publish"), ("hub.topic", &topic)])
            .await
            .status(),
        202
    );
    eventually("the first delivery", async || posts(&cb, "echo").len() == 1).await;
    let d = &posts(&cb, "echo")[0];
    assert_eq!(d.body, "<feed>first</feed>");
    assert_eq!(
        d.content_type, TYPE,
        "the topic's Content-Type, parameters and case kept"
    );
    assert_eq!(
        d.link,
        format!("<{}>; rel=\"hub\", <{topic}>; rel=\"self\"", app.url("/hub"))
    );
    assert_eq!(d.signature.as_deref(), Some(hmac_sha256("s3cret", &d.body).as_str()));
    assert_eq!(
        p.fetches.lock().unwrap().len(),
        1,
        "the ping for the unsubscribed URL fetched nothing"
    );

    // The same content again is not distributed again; the fetch prefers the type seen.
    hub(&app, &[("hub.mode", "publish"), ("hub.url", &topic)]).await;
    eventually("the second fetch", async || p.fetches.lock().unwrap().len() == 2).await;
    assert!(
        p.fetches.lock().unwrap()[1].starts_with(TYPE),
        "{:?}",
        p.fetches.lock().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&cb, "echo").len(), 1);

    *p.body.lock().unwrap() = "<feed>second</feed>".into();
    hub(&app, &[("hub.mode", "publish"), ("hub.url", &topic)]).await;
    eventually("the delivery of the change", async || posts(&cb, "echo").len() == 2).await;
    assert_eq!(posts(&cb, "echo")[1].body, "<feed>second</feed>");
}

#[tokio::test]
async fn a_redirect_to_a_refused_url_is_not_followed() {
    let (app, _) = setup_with(|s| s.hub.open = true).await;
    let (publisher_base, p) = publisher().await;
    let (cb_base, cb) = callback_server().await;
    let topic = format!("{publisher_base}/away");
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[]).await;
    hub(&app, &[("hub.mode", "publish"), ("hub.url", &topic)]).await;
    eventually("the fetch", async || *p.away_fetches.lock().unwrap() == 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(posts(&cb, "echo").is_empty(), "nothing is delivered from a refused hop");
    assert!(p.fetches.lock().unwrap().is_empty());
}

/// A5, A6: percent-encoded IRIs are kept as sent, unreserved escapes are decoded, so
/// `/a%7Eb` and `/a~b` are one topic.
#[tokio::test]
async fn topic_urls_are_compared_after_decoding_unreserved_escapes_only() {
    let (app, _) = setup_with(|s| s.hub.open = true).await;
    let router = Router::new().fallback(|uri: axum::http::Uri| async move {
        ([(header::CONTENT_TYPE, "text/plain")], format!("path {}", uri.path()))
    });
    let publisher = crate::common::serve(router).await;
    let (cb_base, cb) = callback_server().await;
    let (tilde, cafe) = (format!("{cb_base}/echo"), format!("{cb_base}/rss"));

    subscribe(&app, &format!("{publisher}/a~b"), &tilde, &[]).await;
    let pairs = [
        ("hub.mode", "subscribe"),
        ("hub.topic", &format!("{publisher}/a%7Eb")),
        ("hub.callback", &tilde),
    ];
    assert_eq!(hub(&app, &pairs).await.status(), 202);
    subscribe(&app, &format!("{publisher}/caf%C3%A9"), &cafe, &[]).await;

    hub(
        &app,
        &[("hub.mode", "publish"), ("hub.url", &format!("{publisher}/a%7Eb"))],
    )
    .await;
    hub(
        &app,
        &[("hub.mode", "publish"), ("hub.url", &format!("{publisher}/caf%C3%A9"))],
    )
    .await;
    eventually("both deliveries", async || {
        posts(&cb, "echo").len() == 1 && posts(&cb, "rss").len() == 1
    })
    .await;
    assert_eq!(posts(&cb, "echo")[0].body, "path /a~b");
    assert_eq!(posts(&cb, "rss")[0].body, "path /caf%C3%A9");
    assert!(
        posts(&cb, "rss")[0]
            .link
            .contains(&format!("<{publisher}/caf%C3%A9>; rel=\"self\""))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&cb, "echo").len(), 1, "one subscription, one delivery");
}

/// An Atom feed naming `hub` as its WebSub hub.
fn feed_naming(hub: &str, text: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{text}</title><id>urn:t</id><updated>2026-01-01T00:00:00Z</updated><link rel="hub" href="{hub}"/></feed>"#
    )
}

#[tokio::test]
async fn with_a_strict_topic_hub_link_a_topic_that_drops_this_hub_ends_its_subscriptions() {
    let (app, _) = setup_with(|s| {
        s.hub.open = true;
        s.hub.strict_topic_hub_link = true;
    })
    .await;
    let (publisher_base, p) = publisher().await;
    let (cb_base, cb) = callback_server().await;
    let topic = format!("{publisher_base}/feed");
    let callback = format!("{cb_base}/echo");
    let me = app.url("/hub");
    *p.body.lock().unwrap() = feed_naming(&me, "first");
    subscribe(&app, &topic, &callback, &[]).await;
    let ping = [("hub.mode", "publish"), ("hub.url", topic.as_str())];
    assert_eq!(hub(&app, &ping).await.status(), 202);
    eventually("the first delivery", async || posts(&cb, "echo").len() == 1).await;

    // The publisher moves to another hub: the next fetch ends the subscription with a denial.
    *p.body.lock().unwrap() = feed_naming("https://elsewhere.example/hub", "second");
    assert_eq!(hub(&app, &ping).await.status(), 202);
    eventually("the denial", async || {
        seen(&cb, "echo").iter().any(|q| q.contains("hub.mode=denied"))
    })
    .await;
    let denial = seen(&cb, "echo")
        .into_iter()
        .find(|q| q.contains("hub.mode=denied"))
        .unwrap();
    assert!(url::form_urlencoded::parse(denial.as_bytes()).any(|(k, v)| k == "hub.topic" && v == topic));
    assert!(app.store.subscription(&topic, &callback).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        posts(&cb, "echo").len(),
        1,
        "content delivered from a topic that left this hub"
    );
}
