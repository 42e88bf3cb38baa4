//! Feeds out: formats, who may read them (token, Basic, feed key), conditional GET, paging,
//! FeedSync partial feeds with cursors, per-endpoint streams.

use crate::common::{TestApp, entry};

async fn with_entries(n: usize) -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    for i in 0..n {
        let r = app
            .post_entry(
                &token,
                "/atompub/alice/Notes",
                entry(&format!("note {i}"), &format!("body {i}")),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    (app, token)
}

fn links(body: &str, rel: &str) -> Vec<String> {
    body.split(&format!("rel=\"{rel}\" href=\""))
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn stream_in_three_formats_newest_first() {
    let (app, token) = with_entries(3).await;
    for (ext, ct) in [
        ("atom", "application/atom+xml"),
        ("rss", "application/rss+xml"),
        ("json", "application/feed+json"),
    ] {
        let r = app.get(&token, &format!("/u/alice/stream.{ext}")).await;
        assert_eq!(r.status(), 200, "{ext}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ct), "{ext}");
        assert!(r.headers().contains_key("etag") && r.headers().contains_key("last-modified"));
        let body = r.text().await.unwrap();
        let (i2, i0) = (body.find("note 2").unwrap(), body.find("note 0").unwrap());
        assert!(i2 < i0, "{ext}: not newest first");
    }
    let json: serde_json::Value = app.get(&token, "/u/alice/stream.json").await.json().await.unwrap();
    assert_eq!(json["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(json["items"].as_array().unwrap().len(), 3);
    // Read with credentials, a feed names its capability URL (the self key) as itself.
    let feed_url = json["feed_url"].as_str().unwrap();
    assert!(
        feed_url.starts_with(&format!("{}/u/alice/stream.json?key=fk_", app.base)),
        "{feed_url}"
    );
    let atom = app.get(&token, "/u/alice/stream.atom").await.text().await.unwrap();
    let me = links(&atom, "self");
    assert_eq!(me.len(), 1);
    assert!(
        me[0].starts_with(&format!("{}/u/alice/stream.atom?key=fk_", app.base)),
        "{me:?}"
    );
    assert_eq!(links(&atom, "alternate").len(), 4, "feed + one per entry");
    assert_eq!(app.get(&token, "/u/alice/stream.xml").await.status(), 404);
}

#[tokio::test]
async fn readers_authenticate_with_basic_or_a_feed_key() {
    let (app, token) = with_entries(1).await;
    let bob = app.token("bob", "desk").await;
    let url = app.url("/u/alice/stream.atom");

    let anon = app.client.get(&url).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert!(anon.headers()["www-authenticate"].to_str().unwrap().contains("Basic"));
    assert_eq!(
        app.client
            .get(&url)
            .basic_auth("alice", Some(&token))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(&url)
            .basic_auth("bob", Some(&token))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.client
            .get(&url)
            .basic_auth("alice", Some("fm_wrong"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Bob's own valid token on alice's feed: the feed does not exist for him.
    let r = app.client.get(&url).basic_auth("bob", Some(&bob)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("note 0"));

    // A feed key works without credentials, for that feed in every format, and nowhere else.
    let created = app.feed_key(&token, "/u/alice/stream.atom").await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(created["url"], format!("{url}?key={key}"));
    assert_eq!(
        app.client
            .get(format!("{url}?key={key}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let rss = app.url(&format!("/u/alice/stream.rss?key={key}"));
    assert_eq!(app.client.get(&rss).send().await.unwrap().status(), 200);
    let other = app.url(&format!("/atompub/alice/Notes?key={key}"));
    assert_eq!(app.client.get(&other).send().await.unwrap().status(), 404);
    assert_eq!(
        app.client
            .get(format!("{url}?key=fk_nope"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Bob cannot mint keys for alice's feeds.
    let refused = app.feed_key(&bob, "/u/alice/stream.atom").await;
    assert_eq!(refused.status(), 400);
    // Revoked: 401 at once.
    let del = app.revoke_key(&token, &created["id"]).await;
    assert_eq!(del.status(), 204);
    assert_eq!(
        app.client
            .get(format!("{url}?key={key}"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn a_revoked_token_never_writes_and_stops_reading_within_a_second() {
    let (app, token) = with_entries(1).await;
    assert_eq!(app.get(&token, "/u/alice/stream.atom").await.status(), 200);
    let name = feedmesh::domain::UserName::parse("alice").unwrap();
    let id = app.store.tokens(&name).await.unwrap()[0].id;
    // Revoked by another process (as `feedmesh token revoke` does).
    app.store.revoke_token(&name, id).await.unwrap();
    assert_eq!(
        app.post_entry(&token, "/atompub/alice/Notes", entry("x", "y"))
            .await
            .status(),
        401
    );
    assert_eq!(app.get(&token, "/atompub").await.status(), 401);
    let revoked_at = std::time::Instant::now();
    loop {
        let status = app.get(&token, "/u/alice/stream.atom").await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_millis(1500),
            "still reading after revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn conditional_get_answers_304_until_something_changes() {
    let (app, token) = with_entries(2).await;
    let first = app.get(&token, "/u/alice/stream.atom").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let modified = first.headers()["last-modified"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong ETag: {etag}");
    let cond = |h: &'static str, v: String| {
        app.client
            .get(app.url("/u/alice/stream.atom"))
            .bearer_auth(&token)
            .header(h, v)
            .send()
    };
    let r = cond("if-none-match", etag.clone()).await.unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.text().await.unwrap().is_empty());
    assert_eq!(cond("if-modified-since", modified.clone()).await.unwrap().status(), 304);
    assert_eq!(cond("if-none-match", "\"other\"".into()).await.unwrap().status(), 200);
    assert_eq!(
        cond("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT".into())
            .await
            .unwrap()
            .status(),
        200
    );

    app.post_entry(&token, "/atompub/alice/Notes", entry("new", "news"))
        .await;
    let r = cond("if-none-match", etag.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.text().await.unwrap().contains("news"));
}

#[tokio::test]
async fn long_streams_are_paged_with_next_links() {
    let (app, token) = with_entries(120).await;
    let mut url = app.url("/u/alice/stream.atom");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let body = app.text(&token, &url).await;
        pages += 1;
        seen.extend(
            body.matches("<title type=\"text\">note ")
                .map(|_| ())
                .collect::<Vec<_>>(),
        );
        match links(&body, "next").first() {
            Some(next) => url = next.clone(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120, "every entry exactly once across pages");
}

#[tokio::test]
async fn collection_feed_is_a_feedsync_feed_with_cursors() {
    let (app, token) = with_entries(3).await;
    let full = app.get(&token, "/atompub/alice/Notes").await;
    let cursor = full.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
    let body = full.text().await.unwrap();
    assert!(
        body.contains(&format!("<sx:sharing until=\"{cursor}\"/>")),
        "complete feed: {body}"
    );
    assert_eq!(body.matches("<sx:sync ").count(), 3);

    // Nothing new: an empty partial feed with the same cursor.
    let empty = app.get(&token, &format!("/atompub/alice/Notes?since={cursor}")).await;
    assert_eq!(empty.headers()["feedmesh-cursor"].to_str().unwrap(), cursor);
    let empty = empty.text().await.unwrap();
    assert_eq!(empty.matches("<entry>").count(), 0);
    assert!(
        empty.contains(&format!("since=\"{cursor}\"")) && empty.contains("type=\"complete\""),
        "{empty}"
    );

    // One new entry: only it, and the cursor moves on.
    app.post_entry(&token, "/atompub/alice/Notes", entry("later", "after the cursor"))
        .await;
    let partial = app.get(&token, &format!("/atompub/alice/Notes?since={cursor}")).await;
    let next_cursor = partial.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
    assert!(next_cursor.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
    let partial = partial.text().await.unwrap();
    assert_eq!(partial.matches("<entry>").count(), 1);
    assert!(partial.contains("after the cursor"));

    // Small pages chain through rel="next".
    let page = app
        .get(&token, "/atompub/alice/Notes?limit=2")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("<entry>").count(), 2);
    let next = links(&page, "next");
    assert_eq!(next.len(), 1);
    let rest = app.text(&token, &next[0]).await;
    assert_eq!(rest.matches("<entry>").count(), 2);

    assert_eq!(app.get(&token, "/atompub/alice/Notes?since=abc").await.status(), 400);
    assert_eq!(app.get(&token, "/atompub/alice/Notes?limit=0").await.status(), 400);
    assert_eq!(app.get(&token, "/atompub/alice/Nope").await.status(), 404);
}

#[tokio::test]
async fn each_endpoint_has_its_own_stream() {
    let (app, laptop) = with_entries(2).await;
    let phone = app.token("alice", "phone").await;
    app.post_entry(&phone, "/atompub/alice/Notes", entry("from the phone", "hi"))
        .await;
    let phone_feed = app
        .get(&laptop, "/u/alice/endpoints/phone/stream.atom")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(phone_feed.matches("<entry>").count(), 1);
    assert!(phone_feed.contains("from the phone"));
    let laptop_feed = app
        .get(&laptop, "/u/alice/endpoints/laptop/stream.rss")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(laptop_feed.matches("<item>").count(), 2);
    assert_eq!(
        app.get(&laptop, "/u/alice/endpoints/tablet/stream.atom").await.status(),
        404
    );
}

#[tokio::test]
async fn landing_page_shows_version_and_a_logged_in_reader_their_stream() {
    let (app, token) = with_entries(0).await;
    let public = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(public.contains(env!("CARGO_PKG_VERSION")) && public.contains("Getting started"));
    assert!(public.contains("href=\"/login\"") && !public.contains("<h1>Stream</h1>"));
    let mine = app
        .client
        .get(app.url("/"))
        .basic_auth("alice", Some(&token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(mine.contains("<h1>Stream</h1>"), "{mine}");
    let login = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_another_device_publishes() {
    let (app, laptop) = with_entries(1).await;
    let phone = app.token("alice", "phone").await;
    let full = app.get(&laptop, "/atompub/alice/Notes").await;
    let cursor = full.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let poll = {
        let (client, url, laptop) = (
            app.client.clone(),
            app.url(&format!("/atompub/alice/Notes?since={cursor}&wait=20")),
            laptop.clone(),
        );
        tokio::spawn(async move {
            let r = client.get(url).bearer_auth(laptop).send().await.unwrap();
            (std::time::Instant::now(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long-poll answered before anything changed");
    let posted = std::time::Instant::now();
    app.post_entry(&phone, "/atompub/alice/Notes", entry("from the phone", "now"))
        .await;
    let (answered, body) = poll.await.unwrap();
    assert!(
        answered.duration_since(posted) < std::time::Duration::from_secs(1),
        "took {:?}",
        answered.duration_since(posted)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        body.contains("from the phone") && body.matches("<entry>").count() == 1,
        "{body}"
    );
}

#[tokio::test]
async fn a_long_poll_with_nothing_new_ends_empty_at_its_deadline() {
    let (app, token) = with_entries(1).await;
    let full = app.get(&token, "/atompub/alice/Notes").await;
    let cursor = full.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let r = app
        .get(&token, &format!("/atompub/alice/Notes?since={cursor}&wait=1"))
        .await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(r.headers()["feedmesh-cursor"].to_str().unwrap(), cursor);
    assert_eq!(r.text().await.unwrap().matches("<entry>").count(), 0);
    assert_eq!(
        app.get(&token, &format!("/atompub/alice/Notes?since={cursor}&wait=61"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&token, &format!("/atompub/alice/Notes?since={cursor}&wait=soon"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn feeds_are_compressed_once_per_version_for_readers_that_accept_it() {
    use std::io::Read as _;
    let (app, token) = with_entries(30).await;
    let get = |path: &'static str, accept: Option<&'static str>, inm: Option<String>| {
        let app = &app;
        let token = token.clone();
        async move {
            let mut req = app.client.get(app.url(path)).bearer_auth(&token);
            if let Some(a) = accept {
                req = req.header("accept-encoding", a);
            }
            if let Some(t) = inm {
                req = req.header("if-none-match", t);
            }
            req.send().await.unwrap()
        }
    };
    for path in [
        "/u/alice/stream.atom",
        "/u/alice/stream.rss",
        "/u/alice/stream.json",
        "/atompub/alice/Notes",
    ] {
        let plain = get(path, None, None).await;
        assert_eq!(crate::common::header(&plain, "content-encoding"), "");
        assert!(
            crate::common::header(&plain, "vary").contains("Accept-Encoding"),
            "{path}"
        );
        let plain_etag = crate::common::header(&plain, "etag");
        let plain = plain.bytes().await.unwrap();
        for (accept, coding) in [
            ("gzip", "gzip"),
            ("gzip, deflate, br", "br"),
            ("br;q=1.0, gzip;q=0.8, *;q=0.1", "br"),
            ("br;q=0, gzip", "gzip"),
            ("identity", ""),
        ] {
            let resp = get(path, Some(accept), None).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(
                crate::common::header(&resp, "content-encoding"),
                coding,
                "{path} {accept}"
            );
            let etag = crate::common::header(&resp, "etag");
            let body = resp.bytes().await.unwrap();
            let decoded = match coding {
                "gzip" => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
                    out
                }
                "br" => {
                    let mut out = Vec::new();
                    brotli::Decompressor::new(&body[..], 4096)
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                _ => body.to_vec(),
            };
            assert_eq!(decoded, plain.to_vec(), "{path} {accept}");
            if !coding.is_empty() {
                assert!(
                    body.len() * 3 < plain.len(),
                    "{path}: {} of {} bytes",
                    body.len(),
                    plain.len()
                );
                assert_ne!(etag, plain_etag, "one ETag per representation");
                // Its own ETag makes a 304; the same bytes come back while the feed stays.
                assert_eq!(get(path, Some(accept), Some(etag.clone())).await.status(), 304);
                let again = get(path, Some(accept), None).await;
                assert_eq!(crate::common::header(&again, "etag"), etag);
            }
        }
    }
}
