//! Bad input gets a 4xx with a one-line reason and changes nothing.

use crate::common::{ATOM_ENTRY, TestApp, entry, sync_entry};

#[tokio::test]
async fn every_bad_body_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let ok = app
        .post_entry(&token, "/atompub/alice/Notes", entry("kept", "original"))
        .await;
    let location = ok.headers()["location"].to_str().unwrap().to_string();
    let before = app.snapshot("alice").await;

    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><entry xmlns="http://www.w3.org/2005/Atom"><title>&lol2;</title></entry>"#;
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><entry xmlns="http://www.w3.org/2005/Atom"><title>&xxe;</title></entry>"#;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed XML", b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>x</entry>".to_vec(), 400),
        ("billion laughs", bomb.as_bytes().to_vec(), 400),
        ("external entity", xxe.as_bytes().to_vec(), 400),
        ("undeclared entity", entry("&nope;", "x").into_bytes(), 400),
        ("invalid UTF-8", b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>\xff\xfe</title></entry>".to_vec(), 400),
        ("no title", b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><content>x</content></entry>".to_vec(), 400),
        ("not Atom", b"<item><title>rss?</title></item>".to_vec(), 400),
        ("a feed, not an entry", b"<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>f</title></feed>".to_vec(), 400),
        ("empty body", Vec::new(), 400),
        ("bad date", b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title><updated>soon</updated></entry>".to_vec(), 400),
        ("sx:sync updates=0", sync_entry("a", 0, false, &[(1, "2026-01-01T00:00:00Z", "x")], "t").into_bytes(), 400),
        ("sx:sync updates past 2^31", sync_entry("a", u32::MAX, false, &[(1, "2026-01-01T00:00:00Z", "x")], "t").into_bytes(), 400),
        ("sx:sync bad id", sync_entry("has space", 1, false, &[(1, "2026-01-01T00:00:00Z", "x")], "t").into_bytes(), 400),
        ("sx:sync no history", sync_entry("a", 1, false, &[], "t").into_bytes(), 400),
        ("sx:history bad when", sync_entry("a", 1, false, &[(1, "yesterday", "x")], "t").into_bytes(), 400),
        ("sx:history sequence 0", sync_entry("a", 1, false, &[(0, "2026-01-01T00:00:00Z", "x")], "t").into_bytes(), 400),
        (
            "sx:sync deleted=maybe",
            br#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync"><title>t</title><sx:sync id="a" updates="1" deleted="maybe"><sx:history sequence="1" by="x"/></sx:sync></entry>"#.to_vec(),
            400,
        ),
        ("over the size limit", entry("big", &"x".repeat(300 * 1024)).into_bytes(), 413),
    ];
    for (what, body, status) in cases {
        let r = app
            .client
            .post(app.url("/atompub/alice/Notes"))
            .bearer_auth(&token)
            .header("content-type", ATOM_ENTRY)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let reason = r.text().await.unwrap();
        assert!(
            !reason.trim().is_empty() && reason.trim().lines().count() == 1,
            "{what}: reason {reason:?}"
        );
        assert_eq!(app.snapshot("alice").await, before, "{what} changed the store");
    }

    // The same through PUT on an existing member, plus a mismatched sync id.
    let mismatched = sync_entry("other-id", 5, false, &[(5, "2026-01-01T00:00:00Z", "x")], "t");
    for (what, body) in [
        ("malformed XML on PUT", "<entry>".to_string()),
        ("wrong sx:sync id on PUT", mismatched),
    ] {
        let r = app.put_entry(&token, &location, body, None).await;
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(app.snapshot("alice").await, before, "{what} changed the store");
    }

    // Wrong media type on PUT, unknown collection, wrong and revoked tokens.
    let r = app
        .client
        .put(&location)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        app.post_entry(&token, "/atompub/alice/Nope", entry("a", "b"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.post_entry("fm_not_a_token", "/atompub/alice/Notes", entry("a", "b"))
            .await
            .status(),
        401
    );
    let r = app
        .client
        .post(app.url("/atompub/alice/Notes"))
        .header("authorization", "Digest abc")
        .body(entry("a", "b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(app.url("/atompub/alice/Notes"))
        .header("authorization", "Basic !!!")
        .body(entry("a", "b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let name = feedmesh::domain::UserName::parse("alice").unwrap();
    let id = app.store.tokens(&name).await.unwrap()[0].id;
    app.store.revoke_token(&name, id).await.unwrap();
    assert_eq!(
        app.post_entry(&token, "/atompub/alice/Notes", entry("a", "b"))
            .await
            .status(),
        401
    );
    assert_eq!(app.snapshot("alice").await, before);
}

#[tokio::test]
async fn a_stale_or_garbled_if_match_is_412() {
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let ok = app
        .post_entry(&token, "/atompub/alice/Notes", entry("kept", "original"))
        .await;
    let location = ok.headers()["location"].to_str().unwrap().to_string();
    let before = app.snapshot("alice").await;
    for etag in ["\"999\"", "garbage"] {
        let r = app
            .client
            .delete(&location)
            .bearer_auth(&token)
            .header("if-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412, "{etag}");
    }
    assert_eq!(app.snapshot("alice").await, before);
}

/// A `%` right before a multi-byte character once panicked the topic normaliser, before the
/// rate limiter, for anyone: every hub parameter that reaches it now gets a 4xx.
#[tokio::test]
async fn hub_parameters_with_broken_escapes_are_refused_not_panicked_on() {
    let app = TestApp::spawn().await;
    for body in [
        "hub.mode=publish&hub.topic=http%3A%2F%2Fx%2F%25a%C3%A9",
        "hub.mode=publish&hub.url=%25%C3%A9",
        "hub.mode=subscribe&hub.topic=http%3A%2F%2Fx%2F&hub.callback=http%3A%2F%2Fx%2F%25a%C3%A9",
        "hub.mode=subscribe&hub.topic=http%3A%2F%2Fx%2F%25%C3%A9%C3%A9&hub.callback=http%3A%2F%2F127.0.0.1%2F",
    ] {
        let r = app
            .client
            .post(app.url("/hub"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{body}: no answer ({e})"));
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
    }
}
