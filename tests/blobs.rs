//! Files by content (`/api/blobs/{sha256}`) and items that are files (`fm:file`): uploads
//! are checked against their name, each user sees only their own, and an entry may name
//! only a blob its user uploaded.

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::common::{Db, TestApp};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn put(app: &TestApp, token: &str, name: &str, body: &'static [u8]) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/blobs/{name}")))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Every file under the hub's blob directory (temporary files included).
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.dir.path().join("blobs"), &mut out);
    out
}

#[tokio::test]
async fn blobs_are_checked_deduplicated_and_private() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    let bob = app.token("bob", "desk").await;
    let body: &[u8] = b"hello, mesh";
    let name = sha(body);
    assert_eq!(put(&app, &alice, &name, body).await.status(), 201);
    assert_eq!(put(&app, &alice, &name, body).await.status(), 204, "already there");
    let head = app
        .client
        .head(app.url(&format!("/api/blobs/{name}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            head.status().as_u16(),
            head.headers()["content-length"].to_str().unwrap()
        ),
        (200, "11")
    );
    assert_eq!(
        app.get(&alice, &format!("/api/blobs/{name}"))
            .await
            .bytes()
            .await
            .unwrap(),
        body
    );
    // Bob has not uploaded it: for him it does not exist, until he uploads the same bytes.
    assert_eq!(app.get(&bob, &format!("/api/blobs/{name}")).await.status(), 404);
    assert_eq!(put(&app, &bob, &name, body).await.status(), 201);
    assert_eq!(app.get(&bob, &format!("/api/blobs/{name}")).await.status(), 200);
    assert_eq!(stored_files(&app).len(), 1, "one copy on disk");

    // A body that is not what its name says is refused, and nothing is kept.
    let resp = put(&app, &alice, &sha(b"other"), b"not other").await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("SHA-256"));
    assert_eq!(
        app.get(&alice, &format!("/api/blobs/{}", sha(b"other"))).await.status(),
        404
    );
    assert_eq!(put(&app, &alice, "not-a-hash", body).await.status(), 400);
    let anon = app
        .client
        .put(app.url(&format!("/api/blobs/{name}")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    // A cut-short upload (the connection closes early) stores nothing either.
    let full = vec![7u8; 100_000];
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /api/blobs/{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {alice}\r\nContent-Length: {}\r\n\r\n",
        sha(&full),
        full.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&full[..1000]).await.unwrap();
    conn.shutdown().await.unwrap();
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.get(&alice, &format!("/api/blobs/{}", sha(&full))).await.status(),
        404
    );
    assert_eq!(stored_files(&app).len(), 1, "no partial file left behind");
}

#[tokio::test]
async fn an_item_names_only_files_its_user_uploaded() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    let bob = app.token("bob", "desk").await;
    app.collection("alice", "Docs").await;
    let body: &[u8] = b"# notes\n";
    let name = sha(body);
    let entry = |size: usize| {
        format!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>notes.md</title><fm:file xmlns:fm="urn:feedmesh:2026" sha256="{name}" size="{size}" type="text/markdown" name="notes.md"/></entry>"#
        )
    };
    let resp = app.post_entry(&alice, "/atompub/alice/Docs", entry(8)).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("is not uploaded"));
    put(&app, &bob, &name, body).await; // bob's upload does not count for alice
    assert_eq!(
        app.post_entry(&alice, "/atompub/alice/Docs", entry(8)).await.status(),
        400
    );
    put(&app, &alice, &name, body).await;
    assert_eq!(
        app.post_entry(&alice, "/atompub/alice/Docs", entry(9)).await.status(),
        400,
        "wrong size"
    );
    let resp = app.post_entry(&alice, "/atompub/alice/Docs", entry(8)).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let read = app.text(&alice, &location).await;
    assert!(
        read.contains(&format!(
            r#"sha256="{name}" size="8" type="text/markdown" name="notes.md""#
        )),
        "{read}"
    );
    // The file survives a round trip through the sync exchange.
    let feed = app.text(&alice, "/atompub/alice/Docs").await;
    assert!(feed.contains("fm:file"), "{feed}");
}

async fn put_part(app: &TestApp, token: &str, name: &str, range: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/blobs/{name}")))
        .bearer_auth(token)
        .header("content-range", range)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn offset(resp: &reqwest::Response) -> u64 {
    resp.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

/// Large files go up in parts (`Content-Range`); an interrupted part keeps what arrived,
/// HEAD says where to continue, and the finished blob is checked against its name.
#[tokio::test]
async fn uploads_resume_where_they_stopped() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let name = sha(&body);
    let head = async || {
        app.client
            .head(app.url(&format!("/api/blobs/{name}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
    };
    let first = put_part(&app, &alice, &name, "bytes 0-99999/300000", body[..100_000].to_vec()).await;
    assert_eq!((first.status().as_u16(), offset(&first)), (202, 100_000));
    let h = head().await;
    assert_eq!((h.status().as_u16(), offset(&h)), (404, 100_000));
    // A part that does not continue where the upload stands is refused.
    let wrong = put_part(&app, &alice, &name, "bytes 0-99999/300000", body[..100_000].to_vec()).await;
    assert_eq!(wrong.status(), 409);

    // A part cut short by a dropped connection keeps what arrived.
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head_text = format!(
        "PUT /api/blobs/{name} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {alice}\r\nContent-Range: bytes 100000-299999/300000\r\nContent-Length: 200000\r\n\r\n"
    );
    conn.write_all(head_text.as_bytes()).await.unwrap();
    conn.write_all(&body[100_000..150_000]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.shutdown().await.unwrap();
    drop(conn);
    let mut at = 0;
    for _ in 0..50 {
        at = offset(&head().await);
        if at == 150_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(at, 150_000, "the received bytes of the cut part are kept");
    let last = put_part(
        &app,
        &alice,
        &name,
        "bytes 150000-299999/300000",
        body[150_000..].to_vec(),
    )
    .await;
    assert_eq!(last.status(), 201);
    assert_eq!(
        app.get(&alice, &format!("/api/blobs/{name}"))
            .await
            .bytes()
            .await
            .unwrap(),
        body
    );

    // Parts that add up to other bytes than the name says are refused, and nothing is kept.
    let other = sha(b"something else");
    put_part(&app, &alice, &other, "bytes 0-4/10", b"01234".to_vec()).await;
    let bad = put_part(&app, &alice, &other, "bytes 5-9/10", b"56789".to_vec()).await;
    assert_eq!(bad.status(), 400);
    let h = app
        .client
        .head(app.url(&format!("/api/blobs/{other}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!((h.status().as_u16(), offset(&h)), (404, 0));
    let junk = put_part(&app, &alice, &other, "bytes nonsense", vec![1]).await;
    assert_eq!(junk.status(), 400);
}

async fn post_many(app: &TestApp, token: &str, parts: &[(&str, Vec<u8>)]) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in parts {
        form = form.part(name.to_string(), reqwest::multipart::Part::bytes(bytes.clone()));
    }
    app.client
        .post(app.url("/api/blobs"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn many_small_blobs_go_up_in_one_request_on_sqlite() {
    many_small_blobs(Db::Sqlite).await;
}

#[tokio::test]
async fn many_small_blobs_go_up_in_one_request_on_postgres() {
    many_small_blobs(Db::Postgres).await;
}

async fn many_small_blobs(db: Db) {
    let Some(app) = TestApp::spawn_on(db).await else {
        return;
    };
    let alice = app.token("alice", "laptop").await;
    let bob = app.token("bob", "desk").await;
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("file {i}").repeat(100 + i).into_bytes())
        .collect();
    let names: Vec<String> = files.iter().map(|f| sha(f)).collect();
    let parts: Vec<(&str, Vec<u8>)> = names.iter().map(String::as_str).zip(files.iter().cloned()).collect();
    let r = post_many(&app, &alice, &parts).await;
    assert_eq!(r.status(), 200);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["created"], serde_json::json!(names));
    for (name, bytes) in names.iter().zip(&files) {
        let got = app.get(&alice, &format!("/api/blobs/{name}")).await;
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
        // Each user sees only their own uploads.
        assert_eq!(app.get(&bob, &format!("/api/blobs/{name}")).await.status(), 404);
    }
    // Sent again: nothing new.
    let json: serde_json::Value = post_many(&app, &alice, &parts).await.json().await.unwrap();
    assert_eq!(
        (
            json["created"].as_array().unwrap().len(),
            json["present"].as_array().unwrap().len()
        ),
        (0, 3)
    );

    // Bad requests store nothing, not even their good parts.
    let stored = stored_files(&app);
    let good = b"a good new part".to_vec();
    let good_name = sha(&good);
    let big = vec![7u8; (1 << 20) + 1];
    let big_name = sha(&big);
    for (what, parts, status) in [
        (
            "a part whose content is not its name",
            vec![
                (good_name.as_str(), good.clone()),
                (names[0].as_str(), b"other".to_vec()),
            ],
            400,
        ),
        (
            "a part not named by a SHA-256",
            vec![(good_name.as_str(), good.clone()), ("readme.txt", b"x".to_vec())],
            400,
        ),
        (
            "a part over 1 MiB",
            vec![(good_name.as_str(), good.clone()), (big_name.as_str(), big.clone())],
            413,
        ),
    ] {
        let r = post_many(&app, &alice, &parts).await;
        assert_eq!(r.status(), status, "{what}");
        assert!(!r.text().await.unwrap().trim().is_empty(), "{what}: no reason given");
        assert_eq!(
            app.get(&alice, &format!("/api/blobs/{good_name}")).await.status(),
            404,
            "{what}"
        );
        assert_eq!(stored_files(&app), stored, "{what} left a file");
    }
    let r = app.client.post(app.url("/api/blobs")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(app.url("/api/blobs"))
        .bearer_auth(&alice)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "not multipart");
}

/// A part may not hold more than its `Content-Range` says (the upload stays where it was),
/// and one user's unfinished uploads are capped together (the test hub allows 12 MiB).
#[tokio::test]
async fn parts_are_held_to_their_range_and_a_quota() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let name = sha(&body);
    let first = put_part(&app, &alice, &name, "bytes 0-999/3000", body[..1000].to_vec()).await;
    assert_eq!((first.status().as_u16(), offset(&first)), (202, 1000));
    // bytes 1000-1000 is one byte; 1,500 were sent.
    let over = put_part(&app, &alice, &name, "bytes 1000-1000/3000", body[1000..2500].to_vec()).await;
    assert_eq!(over.status(), 400);
    assert!(over.text().await.unwrap().contains("Content-Range"));
    let h = app.get(&alice, &format!("/api/blobs/{name}")).await;
    assert_eq!(
        (h.status().as_u16(), offset(&h)),
        (404, 1000),
        "the refused part was kept"
    );
    for bad in ["bytes 1000-999/3000", "bytes 1000-3000/3000", "bytes 1000-x/3000"] {
        let r = put_part(&app, &alice, &name, bad, vec![0]).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let rest = put_part(&app, &alice, &name, "bytes 1000-2999/3000", body[1000..].to_vec()).await;
    assert_eq!(rest.status(), 201);

    // Quota: 7 MiB held by one unfinished upload, then a 6 MiB file does not fit beside it
    // (13 MiB > 12); another user's does.
    let big = sha(b"big");
    let r = put_part(
        &app,
        &alice,
        &big,
        &format!("bytes 0-{}/{}", (7 << 20) - 1, 8 << 20),
        vec![7; 7 << 20],
    )
    .await;
    assert_eq!(r.status(), 202);
    let more = sha(b"more");
    let r = put_part(&app, &alice, &more, &format!("bytes 0-99/{}", 6 << 20), vec![7; 100]).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("unfinished uploads"));
    let bob = app.token("bob", "laptop").await;
    let r = put_part(&app, &bob, &more, &format!("bytes 0-99/{}", 6 << 20), vec![7; 100]).await;
    assert_eq!(r.status(), 202);
}

/// Stored files never run as pages of the hub: `nosniff`, a CSP sandbox, and active types
/// (HTML, SVG) served as downloads, from `/media` and `/api/blobs` alike.
#[tokio::test]
async fn stored_files_are_never_live_content() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    app.collection("alice", "Docs").await;
    let html = b"<html><script>fetch('/api/keys')</script></html>";
    for (ct, inline) in [("text/html", false), ("image/svg+xml", false), ("image/png", true)] {
        let created = app
            .client
            .post(app.url("/atompub/alice/Docs"))
            .bearer_auth(&alice)
            .header("content-type", ct)
            .body(html.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let member = created.headers()["location"].to_str().unwrap().to_string();
        for url in [format!("{member}/media"), app.url(&format!("/api/blobs/{}", sha(html)))] {
            let r = app.client.get(&url).bearer_auth(&alice).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let h = r.headers();
            assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
            assert!(
                h["content-security-policy"].to_str().unwrap().contains("sandbox"),
                "{url}"
            );
            let disposition = h["content-disposition"].to_str().unwrap();
            let is_media = url.ends_with("/media");
            if is_media && inline {
                assert_eq!(disposition, "inline", "{ct}");
            } else {
                assert!(disposition.starts_with("attachment"), "{ct} {url}: {disposition}");
            }
        }
    }
    // Every response: no sniffing, no framing.
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = app.get(&alice, "/api/keys").await;
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // A media type of any length is not echoed back.
    let long = format!("application/{}", "x".repeat(1000));
    let r = app
        .client
        .post(app.url("/atompub/alice/Docs"))
        .bearer_auth(&alice)
        .header("content-type", long)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at most 255"));
}

/// A Slug is shown to people: bidi overrides and other invisible controls are dropped, as
/// the other control characters are.
#[tokio::test]
async fn slugs_lose_their_bidi_controls() {
    let app = TestApp::spawn().await;
    let alice = app.token("alice", "laptop").await;
    app.collection("alice", "Docs").await;
    let r = app
        .client
        .post(app.url("/atompub/alice/Docs"))
        .bearer_auth(&alice)
        .header("content-type", "application/octet-stream")
        .header("slug", "report%E2%80%AEtxt.exe")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body = r.text().await.unwrap();
    assert!(body.contains("reporttxt.exe") && !body.contains('\u{202E}'), "{body}");
}
