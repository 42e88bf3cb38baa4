//! AtomPub as devices and generic clients use it: a device's changes as one FeedSync feed
//! (all checked, then merged in order), a generic client's GET-change-PUT under an
//! unchanged `sx:sync` (RFC 5023 clients keep extension markup), and attribution.

use crate::common::{Db, TestApp, alice_with_notes as setup, entry, header, sync_entry};

/// A FeedSync feed of `entries` (each an Atom entry document without its XML declaration).
fn changes_feed(entries: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync"><title>changes</title><id>urn:changes</id><updated>2026-01-01T00:00:00Z</updated>{}</feed>"#,
        entries.concat()
    )
}

async fn post_feed(app: &TestApp, token: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/atompub/alice/Notes"))
        .bearer_auth(token)
        .header("content-type", "application/atom+xml;type=feed")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The `sx:sync` ids of a feed's entries, in document order.
fn sync_ids(feed: &str) -> Vec<String> {
    feed.split("<sx:sync id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

async fn changes_as_one_feed(db: Db) {
    let Some((app, laptop)) = setup(db).await else {
        return;
    };
    let phone = app.token("alice", "phone").await;
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    // A device's changes go up as one feed; the merged items come back in the order sent.
    let sent = changes_feed(&[
        sync_entry("note-c", 1, false, &base, "c v1"),
        sync_entry("note-a", 1, false, &base, "a v1"),
        sync_entry("note-b", 1, false, &base, "b v1"),
    ]);
    let resp = post_feed(&app, &laptop, sent).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("application/atom+xml;type=feed"));
    let body = resp.text().await.unwrap();
    assert_eq!(sync_ids(&body), ["note-c", "note-a", "note-b"], "{body}");
    let listed = app.get(&phone, "/atompub/alice/Notes").await.text().await.unwrap();
    let mut ids = sync_ids(&listed);
    ids.sort();
    assert_eq!(ids, ["note-a", "note-b", "note-c"]);

    // The phone's feed: a concurrent edit of note-a (a conflict) and an echo of note-b.
    let laptop_edit = [(2, "2026-01-01T10:05:00Z", "alice/laptop"), base[0]];
    let phone_edit = [(2, "2026-01-01T10:07:00Z", "alice/phone"), base[0]];
    let r = post_feed(
        &app,
        &laptop,
        changes_feed(&[sync_entry("note-a", 2, false, &laptop_edit, "a laptop")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post_feed(
        &app,
        &phone,
        changes_feed(&[
            sync_entry("note-a", 2, false, &phone_edit, "a phone"),
            sync_entry("note-b", 1, false, &base, "b v1"),
        ]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let (a, _) = body.split_once("b v1").expect("note-b answered");
    assert!(
        a.contains("a phone") && a.contains("<sx:conflicts>") && a.contains("a laptop"),
        "{body}"
    );
    assert_eq!(sync_ids(&body).first().map(String::as_str), Some("note-a"));

    // Bad feeds change nothing: one entry without sx:sync, broken XML, too many entries.
    let before = app.snapshot("alice").await;
    let fresh = sync_entry("note-new", 1, false, &base, "new");
    let plain = r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>plain</title></entry>"#.to_string();
    let many: Vec<String> = (0..1001)
        .map(|i| sync_entry(&format!("n{i}"), 1, false, &base, "x"))
        .collect();
    for (what, feed, status) in [
        ("an entry without sx:sync", changes_feed(&[fresh.clone(), plain]), 400),
        (
            "broken XML",
            changes_feed(std::slice::from_ref(&fresh)).replace("</feed>", ""),
            400,
        ),
        ("1001 entries", changes_feed(&many), 413),
    ] {
        let r = post_feed(&app, &laptop, feed).await;
        assert_eq!(r.status(), status, "{what}");
        assert!(!r.text().await.unwrap().trim().is_empty(), "{what}: no reason given");
        assert_eq!(app.snapshot("alice").await, before, "{what} changed the store");
    }
    // An entry sent untyped is still one entry.
    let r = app
        .client
        .post(app.url("/atompub/alice/Notes"))
        .bearer_auth(&laptop)
        .header("content-type", "application/atom+xml")
        .body(fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_device_sends_its_changes_as_one_feed_on_sqlite() {
    changes_as_one_feed(Db::Sqlite).await;
}

#[tokio::test]
async fn a_device_sends_its_changes_as_one_feed_on_postgres() {
    changes_as_one_feed(Db::Postgres).await;
}

/// A generic AtomPub client edits by GET, change, PUT with `If-Match`, sending back every
/// element it received, `sx:sync` included (RFC 5023 §9.3 asks it to keep what it does not
/// understand). That is an edit by the requesting endpoint: a new version and a new ETag,
/// so a second client's PUT made from the same GET gets 412.
async fn generic_client_edit(db: Db) {
    let Some((app, token)) = setup(db).await else {
        return;
    };
    let phone = app.token("alice", "phone").await;
    let created = app
        .post_entry(&token, "/atompub/alice/Notes", entry("Plan", "first draft"))
        .await;
    assert_eq!(created.status(), 201);
    let location = header(&created, "location");

    let got = app.client.get(&location).bearer_auth(&phone).send().await.unwrap();
    let etag = header(&got, "etag");
    let read = got.text().await.unwrap();
    assert!(read.contains("<sx:sync") && read.contains("first draft"), "{read}");

    // Sent back unchanged: nothing to record, the ETag stays.
    let same = app.put_entry(&phone, &location, read.clone(), Some(&etag)).await;
    assert_eq!(same.status(), 200);
    assert_eq!(header(&same, "etag"), etag, "an unchanged PUT made a new version");

    // Edited content, everything else as read.
    let edited = read.replace("first draft", "second draft");
    let put = app.put_entry(&phone, &location, edited.clone(), Some(&etag)).await;
    assert_eq!(put.status(), 200);
    let new_etag = header(&put, "etag");
    assert_ne!(new_etag, etag, "the edit kept the old ETag");
    let body = put.text().await.unwrap();
    assert!(body.contains("second draft"), "the edit was lost: {body}");
    assert!(body.contains(r#"updates="2""#), "{body}");
    assert!(
        body.contains(r#"<sx:history sequence="2""#) && body.contains(r#"by="alice/phone""#),
        "the edit is not the phone's: {body}"
    );
    let now = app.text(&token, &location).await;
    assert!(now.contains("second draft"), "{now}");

    // A second client that read the same version is refused, and loses nothing.
    let stale = read.replace("first draft", "laptop's draft");
    let late = app.put_entry(&token, &location, stale, Some(&etag)).await;
    assert_eq!(late.status(), 412);
    let now = app.text(&token, &location).await;
    assert!(now.contains("second draft") && !now.contains("laptop's draft"), "{now}");

    // The same in a device's FeedSync feed (POSTed batch): an edit under the version read.
    let read = app.text(&token, &location).await;
    let entry_xml = read
        .split_once("?>")
        .map_or(read.as_str(), |(_, e)| e)
        .trim()
        .to_string();
    let batch = changes_feed(&[entry_xml.replace("second draft", "third draft")]);
    let resp = post_feed(&app, &token, batch).await;
    assert_eq!(resp.status(), 200);
    let now = app.text(&token, &location).await;
    assert!(
        now.contains("third draft") && now.contains(r#"updates="3""#) && now.contains(r#"by="alice/laptop""#),
        "{now}"
    );
}

#[tokio::test]
async fn a_generic_clients_edit_is_kept_on_sqlite() {
    generic_client_edit(Db::Sqlite).await;
}

#[tokio::test]
async fn a_generic_clients_edit_is_kept_on_postgres() {
    generic_client_edit(Db::Postgres).await;
}

/// A merged item's history may name anyone; an entry is never shown as written by another
/// user's endpoint.
#[tokio::test]
async fn an_entry_is_attributed_to_its_owners_endpoints_only() {
    let (app, token) = setup(Db::Sqlite).await.unwrap();
    let spoofed = sync_entry("s1", 1, false, &[(1, "2026-01-01T00:00:00Z", "bob/laptop")], "Hello");
    let resp = app.post_entry(&token, "/atompub/alice/Notes", spoofed).await;
    assert_eq!(resp.status(), 201);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("<name>bob/laptop</name>"), "{body}");
    assert!(body.contains("<author><name>alice</name></author>"), "{body}");
    let own = app
        .post_entry(&token, "/atompub/alice/Notes", entry("Mine", "text"))
        .await
        .text()
        .await
        .unwrap();
    assert!(own.contains("<author><name>alice/laptop</name></author>"), "{own}");
}
