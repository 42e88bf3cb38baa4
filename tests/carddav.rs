//! The CardDAV connector against Radicale (started per test): an address book synced both
//! ways with Contacts: cards come in merged by identity (never a duplicate), server edits
//! and deletions follow, contacts made or edited in the hub go to the server (new cards with
//! `If-None-Match: *`, edits to the card's own address with `If-Match`), and a 412 is read
//! again and merged, so neither side's edit is lost.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::radicale::{PASSWORD, Radicale, USER, card};

use crate::common::api;

async fn contacts(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, v) = api(app, token, Method::GET, "/api/contacts", None).await;
    assert_eq!(status, 200, "{v}");
    let mut all = v.as_array().cloned().unwrap();
    all.sort_by_key(|c| c["name"].as_str().unwrap_or("").to_string());
    all
}

fn names(all: &[Value]) -> Vec<String> {
    all.iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn sync(app: &TestApp, token: &str, id: i64) {
    let path = format!("/api/connectors/{id}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = api(app, token, Method::GET, &path, None).await.1["last_sync_at"].clone();
    let (status, v) = api(app, token, Method::POST, &format!("{path}/sync"), None).await;
    assert!(status < 300, "{v}");
    crate::common::eventually_within("a sync", 60, async || {
        let c = api(app, token, Method::GET, &path, None).await.1;
        assert!(c["last_error"].is_null(), "{c}");
        c["last_sync_at"] != before && c["last_sync_at"].is_string()
    })
    .await;
    let c = api(app, token, Method::GET, &path, None).await.1;
    assert_eq!(c["last_error"], Value::Null, "{c}");
}

async fn stream_len(app: &TestApp, token: &str) -> usize {
    let (_, v) = api(app, token, Method::GET, "/u/alice/stream.json?limit=200", None).await;
    v["items"].as_array().unwrap().len()
}

/// Until `check` holds of the server's cards (a push follows a write within a run or two).
async fn on_server(dav: &Radicale, what: &str, check: impl Fn(&[(String, String)]) -> bool) {
    let mut last = Vec::new();
    for _ in 0..150 {
        last = dav.cards().await;
        if check(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: the server holds {last:#?}");
}

#[tokio::test]
async fn an_address_book_syncs_both_ways_without_duplicates() {
    let Some(dav) = Radicale::start().await else { return };
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    // Bob is a contact already; the phone knows him by the same address.
    let (status, robert) = api(
        &app,
        &token,
        Method::POST,
        "/api/contacts",
        Some(json!({"name": "Robert", "identities": ["mailto:bob@example.org"]})),
    )
    .await;
    assert_eq!(status, 201, "{robert}");
    let robert = robert["id"].as_str().unwrap().to_string();
    assert_eq!(
        dav.put(
            "c1-ann.vcf",
            &card(
                "c1-ann",
                "Ann Example",
                &["TEL;TYPE=CELL:+441234567890", "EMAIL:ann@example.org"]
            ),
            None
        )
        .await
        .0,
        201
    );
    assert_eq!(
        dav.put(
            "c2-bob.vcf",
            &card("c2-bob", "Bob Builder", &["EMAIL:bob@example.org", "TEL:+15551230000"]),
            None
        )
        .await
        .0,
        201
    );

    // Clear refusals first.
    for (options, named) in [
        (json!({"user": USER, "password": PASSWORD}), "url"),
        (
            json!({"url": "ftp://x.example/", "user": USER, "password": PASSWORD}),
            "url",
        ),
        (json!({"url": dav.book(), "user": USER}), "password"),
    ] {
        let (status, v) = api(
            &app,
            &token,
            Method::POST,
            "/api/connectors",
            Some(json!({"kind": "carddav", "options": options})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert!(v.to_string().contains(named), "{v}");
    }
    let (status, v) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "carddav", "collection": "Elsewhere", "options": {"url": dav.book(), "user": USER, "password": PASSWORD}})),
    )
    .await;
    assert_eq!(status, 400, "a CardDAV connector syncs Contacts: {v}");

    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "carddav", "options": {"url": dav.book(), "user": USER, "password": PASSWORD}})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["collection"], "Contacts");
    assert!(!c.to_string().contains(PASSWORD));
    let id = c["id"].as_i64().unwrap();
    sync(&app, &token, id).await;
    let all = contacts(&app, &token).await;
    assert_eq!(
        names(&all),
        ["Ann Example", "Robert"],
        "Bob merged into Robert, not a second contact"
    );
    let bob = all.iter().find(|c| c["id"] == robert.as_str()).unwrap();
    assert!(
        bob["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "tel:+15551230000"),
        "{bob}"
    );
    // Robert had less than the card: the folded contact went back to Bob's own card.
    on_server(&dav, "the merged contact at c2-bob.vcf", |cards| {
        cards.len() == 2
            && cards
                .iter()
                .any(|(n, t)| n == "c2-bob.vcf" && t.contains("+15551230000"))
    })
    .await;

    // A second sync changes nothing.
    let n = stream_len(&app, &token).await;
    sync(&app, &token, id).await;
    sync(&app, &token, id).await;
    assert_eq!(stream_len(&app, &token).await, n, "no change made by syncing again");

    // An edit at the server comes in; a deletion there deletes.
    let (_, etag) = dav.get("c1-ann.vcf").await.unwrap();
    let (st, _) = dav
        .put(
            "c1-ann.vcf",
            &card(
                "c1-ann",
                "Ann Example",
                &[
                    "TEL;TYPE=CELL:+441234567890",
                    "EMAIL:ann@example.org",
                    "EMAIL:ann@work.example",
                ],
            ),
            Some(&etag),
        )
        .await;
    assert!(st == 201 || st == 204, "{st}");
    sync(&app, &token, id).await;
    let ann = contacts(&app, &token)
        .await
        .into_iter()
        .find(|c| c["name"] == "Ann Example")
        .unwrap();
    assert!(
        ann["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "mailto:ann@work.example"),
        "{ann}"
    );
    dav.delete("c1-ann.vcf").await;
    sync(&app, &token, id).await;
    assert_eq!(names(&contacts(&app, &token).await), ["Robert"]);

    // Made in the hub: a new card at the server.
    let (status, cara) = api(
        &app,
        &token,
        Method::POST,
        "/api/contacts",
        Some(json!({"name": "Cara Hub", "identities": ["mailto:cara@example.net"]})),
    )
    .await;
    assert_eq!(status, 201, "{cara}");
    on_server(&dav, "Cara's new card", |cards| {
        cards
            .iter()
            .any(|(_, t)| t.contains("FN:Cara Hub") && t.contains("cara@example.net"))
    })
    .await;
    // Edited in the hub: Bob's own card changes (no new card).
    let (status, v) = api(
        &app,
        &token,
        Method::PATCH,
        &format!("/api/contacts/{robert}"),
        Some(json!({"identities": ["mailto:bob@example.org", "tel:+15551230000", "mailto:bob@home.example"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    on_server(&dav, "Bob's card edited in place", |cards| {
        cards.len() == 2
            && cards
                .iter()
                .any(|(n, t)| n == "c2-bob.vcf" && t.contains("bob@home.example"))
    })
    .await;

    // Both sides edit Bob while the connector is paused: after it runs, both edits are on
    // both sides.
    assert_eq!(
        api(&app, &token, Method::POST, &format!("/api/connectors/{id}/pause"), None)
            .await
            .0,
        200
    );
    let (text, etag) = dav.get("c2-bob.vcf").await.unwrap();
    let edited = text.replace("END:VCARD", "NOTE:met at the fair\r\nEND:VCARD");
    assert!(matches!(dav.put("c2-bob.vcf", &edited, Some(&etag)).await.0, 201 | 204));
    let (status, _) = api(
        &app,
        &token,
        Method::PATCH,
        &format!("/api/contacts/{robert}"),
        Some(json!({"identities": ["mailto:bob@example.org", "tel:+15551230000", "mailto:bob@home.example", "mailto:bob@office.example"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        api(
            &app,
            &token,
            Method::POST,
            &format!("/api/connectors/{id}/resume"),
            None
        )
        .await
        .0,
        200
    );
    on_server(&dav, "both edits at the server", |cards| {
        cards
            .iter()
            .any(|(n, t)| n == "c2-bob.vcf" && t.contains("bob@office.example") && t.contains("met at the fair"))
    })
    .await;
    crate::common::eventually_within("both edits in the hub", 30, async || {
        let (_, b) = api(&app, &token, Method::GET, &format!("/api/contacts/{robert}"), None).await;
        b["note"].as_str().is_some_and(|n| n.contains("met at the fair"))
            && b["identities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i == "mailto:bob@office.example")
    })
    .await;
    assert_eq!(dav.cards().await.len(), 2, "Bob and Cara, each once");
    assert_eq!(names(&contacts(&app, &token).await), ["Cara Hub", "Robert"]);

    // Deleted in the hub: deleted at the server.
    assert_eq!(
        api(
            &app,
            &token,
            Method::DELETE,
            &format!("/api/contacts/{}", cara["id"].as_str().unwrap()),
            None
        )
        .await
        .0,
        204
    );
    on_server(&dav, "Cara's card deleted", |cards| cards.len() == 1).await;

    // Another user sees none of it.
    let eve = app.token("eve", "laptop").await;
    assert!(contacts(&app, &eve).await.is_empty());
    assert_eq!(
        api(&app, &eve, Method::GET, &format!("/api/connectors/{id}"), None)
            .await
            .0,
        404
    );
}

/// A write over a stale ETag (the card changed at the server meanwhile) answers 412: the
/// connector reads the card again, merges, and writes over the new ETag.
#[tokio::test]
async fn a_412_is_read_again_and_merged() {
    use feedmesh_connector::{Connector, Outgoing};
    let Some(dav) = Radicale::start().await else { return };
    let (_, first) = dav
        .put("c9.vcf", &card("c9", "Dee Dav", &["EMAIL:dee@example.org"]), None)
        .await;
    let (_, _second) = dav
        .put(
            "c9.vcf",
            &card("c9", "Dee Dav", &["EMAIL:dee@example.org", "TEL:+15550009999"]),
            Some(&first),
        )
        .await;
    let o = feedmesh_connector::Options::new(
        feedmesh_connector_carddav::OPTIONS,
        [
            ("url", dav.book()),
            ("user", USER.into()),
            ("password", PASSWORD.into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap();
    let connector = feedmesh_connector_carddav::CardDavConnector::new(
        feedmesh_connector_carddav::CardDavConfig::from_options(&o).unwrap(),
    );
    let outbound = feedmesh::net::Outbound::new(true, Duration::from_secs(10)).unwrap();
    let http = feedmesh::fetch::ConnectorHttp(&outbound);
    let entry = feedmesh::domain::entry::Entry {
        content: Some(feedmesh::domain::entry::Content {
            kind: "text/vcard".into(),
            value: card("c9", "Dee Renamed", &["EMAIL:dee@example.org", "EMAIL:dee@new.example"]),
            src: None,
        }),
        ..Default::default()
    };
    let remote = json!({"href": "/alice/contacts/c9.vcf", "etag": first}).to_string();
    let posted = connector
        .push(
            &http,
            Outgoing::Update {
                entry: &entry,
                remote_id: &remote,
            },
        )
        .await
        .unwrap();
    let (text, etag) = dav.get("c9.vcf").await.unwrap();
    assert!(
        text.contains("FN:Dee Renamed") && text.contains("dee@new.example"),
        "ours: {text}"
    );
    assert!(text.contains("+15550009999"), "theirs kept: {text}");
    let kept: Value = serde_json::from_str(&posted.remote_id).unwrap();
    assert_eq!(kept["etag"], etag, "the new ETag is kept for the next edit");
    // A deletion over a stale ETag keeps the card (its edit comes back into the hub).
    connector
        .push(&http, Outgoing::Delete { remote_id: &remote })
        .await
        .unwrap();
    assert!(dav.get("c9.vcf").await.is_some());
}

fn multistatus(body: &'static str) -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::MULTI_STATUS,
        [("content-type", "application/xml")],
        body,
    )
}

/// A card that does not parse is skipped (and the reason logged); the cards beside it are
/// taken, the connector carries on.
#[tokio::test]
async fn a_card_that_does_not_parse_is_skipped() {
    let fake = axum::Router::new().route(
        "/book/",
        axum::routing::any(async |req: axum::extract::Request| {
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            if body.contains("sync-collection") {
                multistatus(
                    "<multistatus xmlns=\"DAV:\"><response><href>/book/good.vcf</href><propstat><prop><getetag>\"g\"</getetag></prop>\
                     <status>HTTP/1.1 200 OK</status></propstat></response><response><href>/book/bad.vcf</href><propstat><prop>\
                     <getetag>\"b\"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response><sync-token>t1</sync-token></multistatus>",
                )
            } else {
                multistatus(
                    "<multistatus xmlns=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\"><response><href>/book/good.vcf</href><propstat><prop>\
                     <getetag>\"g\"</getetag><C:address-data>BEGIN:VCARD\r\nVERSION:3.0\r\nUID:good\r\nFN:Good Card\r\nEMAIL:good@example.org\r\nEND:VCARD\r\n</C:address-data>\
                     </prop><status>HTTP/1.1 200 OK</status></propstat></response><response><href>/book/bad.vcf</href><propstat><prop>\
                     <getetag>\"b\"</getetag><C:address-data>BEGIN:VCARD\r\nVERSION:3.0\r\nthis is: not; a card\r\n\x01\x02\r\nEND:VCARD</C:address-data>\
                     </prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>",
                )
            }
        }),
    );
    let base = crate::common::serve(fake).await;
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "carddav", "options": {"url": format!("{base}/book/"), "user": "u", "password": "p"}})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    sync(&app, &token, c["id"].as_i64().unwrap()).await;
    assert_eq!(names(&contacts(&app, &token).await), ["Good Card"]);
}
