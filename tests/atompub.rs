//! AtomPub publishing with FeedSync: create, read, update with ETags, delete as tombstone,
//! merge of entries edited offline (conflicts kept), resolution, media resources.

use crate::common::{ATOM_ENTRY, Db, alice_with_notes as setup, entry, header, sync_entry};

async fn lifecycle(db: Db) {
    let Some((app, token)) = setup(db).await else {
        return;
    };

    // The service document lists the user's collections.
    let svc = app.get(&token, "/atompub").await;
    assert_eq!(svc.status(), 200);
    assert!(header(&svc, "content-type").starts_with("application/atomsvc+xml"));
    let svc = svc.text().await.unwrap();
    assert!(
        svc.contains("<workspace>") && svc.contains(&format!("href=\"{}/atompub/alice/Notes\"", app.base)),
        "{svc}"
    );
    assert!(svc.contains("<accept>application/atom+xml;type=entry</accept>"));

    // Create.
    let resp = app
        .post_entry(&token, "/atompub/alice/Notes", entry("Groceries", "milk"))
        .await;
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location");
    let etag1 = header(&resp, "etag");
    assert!(
        location.starts_with(&format!("{}/atompub/alice/Notes/", app.base)),
        "{location}"
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(r#"updates="1""#) && body.contains(r#"by="alice/laptop""#),
        "{body}"
    );
    assert!(body.contains("<title type=\"text\">Groceries</title>"));

    // Read, and a conditional read.
    let got = app.client.get(&location).bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(header(&got, "etag"), etag1);
    let again = app
        .client
        .get(&location)
        .bearer_auth(&token)
        .header("if-none-match", &etag1)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Update: a stale ETag is refused, the current one accepted.
    let ok = app
        .put_entry(&token, &location, entry("Groceries", "milk, eggs"), Some(&etag1))
        .await;
    assert_eq!(ok.status(), 200);
    let etag2 = header(&ok, "etag");
    assert_ne!(etag1, etag2);
    let body = ok.text().await.unwrap();
    assert!(body.contains(r#"updates="2""#) && body.contains("milk, eggs"), "{body}");
    let stale = app
        .put_entry(&token, &location, entry("Groceries", "lost edit"), Some(&etag1))
        .await;
    assert_eq!(stale.status(), 412);
    let after = app.text(&token, &location).await;
    assert!(!after.contains("lost edit"), "a stale PUT changed the entry");

    // Delete makes a tombstone that stays in the collection feed.
    let del = app.client.delete(&location).bearer_auth(&token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let tomb = app.text(&token, &location).await;
    assert!(
        tomb.contains(r#"deleted="true""#) && tomb.contains(r#"updates="3""#),
        "{tomb}"
    );
    let feed = app.get(&token, "/atompub/alice/Notes").await.text().await.unwrap();
    assert!(
        feed.contains(r#"deleted="true""#),
        "tombstone missing from the feed: {feed}"
    );

    // Every accepted write is one change with an increasing sequence number.
    let u = app.store.user("alice").await.unwrap();
    let changes = app.store.changes(u.id, None, None, 10).await.unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["delete", "update", "create"]);
    assert!(changes.windows(2).all(|w| w[0].seq > w[1].seq));
}

#[tokio::test]
async fn entry_lifecycle_on_sqlite() {
    lifecycle(Db::Sqlite).await;
}

#[tokio::test]
async fn entry_lifecycle_on_postgres() {
    lifecycle(Db::Postgres).await;
}

#[tokio::test]
async fn offline_edits_merge_and_conflicts_are_kept_then_resolved() {
    let (app, laptop) = setup(Db::Sqlite).await.unwrap();
    let phone = app.token("alice", "phone").await;
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    // The laptop publishes an item with FeedSync metadata of its own.
    let resp = app
        .post_entry(
            &laptop,
            "/atompub/alice/Notes",
            sync_entry("note-1", 1, false, &base, "v1"),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, "feedmesh-change"), "create");

    // The same version again is an echo: nothing changes.
    let echo = app
        .post_entry(
            &laptop,
            "/atompub/alice/Notes",
            sync_entry("note-1", 1, false, &base, "v1"),
        )
        .await;
    assert_eq!(echo.status(), 200);
    assert_eq!(header(&echo, "feedmesh-change"), "");

    // Laptop and phone both edit v1 offline; both sync.
    let laptop_edit = [(2, "2026-01-01T10:05:00Z", "alice/laptop"), base[0]];
    let phone_edit = [(2, "2026-01-01T10:07:00Z", "alice/phone"), base[0]];
    let r1 = app
        .post_entry(
            &laptop,
            "/atompub/alice/Notes",
            sync_entry("note-1", 2, false, &laptop_edit, "laptop text"),
        )
        .await;
    assert_eq!(header(&r1, "feedmesh-change"), "update");
    let r2 = app
        .post_entry(
            &phone,
            "/atompub/alice/Notes",
            sync_entry("note-1", 2, false, &phone_edit, "phone text"),
        )
        .await;
    assert_eq!(r2.status(), 200);
    assert_eq!(header(&r2, "feedmesh-change"), "conflict");
    let body = r2.text().await.unwrap();
    // The later edit wins (T6); the other is kept under sx:conflicts, not dropped.
    let (winner, conflicts) = body.split_once("<sx:conflicts>").expect("conflicts kept");
    assert!(winner.contains("phone text"), "{body}");
    assert!(conflicts.contains("laptop text"), "{body}");

    // The conflict is in the collection's FeedSync feed for every device to see.
    let feed = app.get(&phone, "/atompub/alice/Notes").await.text().await.unwrap();
    assert!(feed.contains("<sx:conflicts>") && feed.contains("laptop text"));

    // A third device resolves: it keeps the chosen content, clears the conflicts and copies
    // the losing version's history in (§2.8), so the resolution wins everywhere.
    let desk = app.token("alice", "desk").await;
    let resolve_url = app.url("/atompub/alice/Notes/note-1?resolve=true");
    let resolved = app
        .put_entry(&desk, &resolve_url, entry("merged", "laptop + phone text"), None)
        .await;
    assert_eq!(resolved.status(), 200);
    assert_eq!(header(&resolved, "feedmesh-change"), "resolve");
    let body = resolved.text().await.unwrap();
    assert!(!body.contains("<sx:conflicts>"), "{body}");
    assert!(
        body.contains(r#"updates="3""#) && body.contains(r#"sequence="3""#),
        "{body}"
    );
    assert!(
        body.contains(r#"sequence="2" when="2026-01-01T10:05:00Z" by="alice/laptop""#),
        "the losing version's history was not copied: {body}"
    );
    // The losing laptop version arriving again is now subsumed: no conflict comes back (T18).
    let late = app
        .post_entry(
            &laptop,
            "/atompub/alice/Notes",
            sync_entry("note-1", 2, false, &laptop_edit, "laptop text"),
        )
        .await;
    assert_eq!(late.status(), 200);
    assert_eq!(header(&late, "feedmesh-change"), "");
}

#[tokio::test]
async fn delete_concurrent_with_a_later_edit_keeps_both_versions() {
    let (app, laptop) = setup(Db::Sqlite).await.unwrap();
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    app.post_entry(&laptop, "/atompub/alice/Notes", sync_entry("n2", 1, false, &base, "v1"))
        .await;
    let deleted = [(2, "2026-01-01T10:10:00Z", "alice/laptop"), base[0]];
    let edited = [(2, "2026-01-01T10:05:00Z", "alice/phone"), base[0]];
    app.post_entry(
        &laptop,
        "/atompub/alice/Notes",
        sync_entry("n2", 2, true, &deleted, "v1"),
    )
    .await;
    let r = app
        .post_entry(
            &laptop,
            "/atompub/alice/Notes",
            sync_entry("n2", 2, false, &edited, "edited"),
        )
        .await;
    let body = r.text().await.unwrap();
    // T13: the later delete wins, the edit survives as a conflict.
    let (winner, conflict) = body.split_once("<sx:conflicts>").expect("edit kept");
    assert!(winner.contains(r#"deleted="true""#), "{body}");
    assert!(conflict.contains("edited"), "{body}");
}

#[tokio::test]
async fn media_resources_are_content_addressed_and_bounded() {
    let (app, token) = setup(Db::Sqlite).await.unwrap();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let post = |body: Vec<u8>, slug: &str| {
        app.client
            .post(app.url("/atompub/alice/Notes"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("slug", slug)
            .body(body)
            .send()
    };
    let resp = post(bytes.clone(), "report%20v1.bin").await.unwrap();
    assert_eq!(resp.status(), 201);
    let body = resp.text().await.unwrap();
    assert!(body.contains("rel=\"edit-media\""), "{body}");
    assert!(body.contains("<title type=\"text\">report v1.bin</title>"), "{body}");
    assert!(
        body.contains("<content type=\"application/octet-stream\" src=\""),
        "{body}"
    );
    let media_url = body
        .split("rel=\"edit-media\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let got = app.client.get(&media_url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The same bytes again: a second entry, but one blob on disk.
    assert_eq!(post(bytes.clone(), "copy.bin").await.unwrap().status(), 201);
    let blob_files = walk(&app.dir.path().join("blobs"));
    assert_eq!(
        blob_files.iter().filter(|p| !p.contains("/blobs/tmp/")).count(),
        1,
        "{blob_files:?}"
    );

    // Over the limit: 413, and nothing left behind.
    let big = vec![7u8; 9 * 1024 * 1024];
    let before = app.snapshot("alice").await;
    assert_eq!(post(big, "big.bin").await.unwrap().status(), 413);
    assert_eq!(app.snapshot("alice").await, before);
    assert_eq!(
        walk(&app.dir.path().join("blobs")).len(),
        1,
        "a partial upload was left on disk"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn one_user_never_sees_anothers_collections() {
    let (app, alice) = setup(Db::Sqlite).await.unwrap();
    let bob = app.token("bob", "desk").await;
    app.collection("bob", "Notes").await;
    let r = app
        .post_entry(&alice, "/atompub/alice/Notes", entry("secret", "alice only"))
        .await;
    let location = header(&r, "location");
    assert_eq!(
        app.client
            .get(&location)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(app.get(&bob, "/atompub/alice/Notes").await.status(), 404);
    assert_eq!(
        app.post_entry(&bob, "/atompub/alice/Notes", entry("x", "y"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.client
            .delete(&location)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let svc = app.get(&bob, "/atompub").await.text().await.unwrap();
    assert!(!svc.contains("/atompub/alice/"), "{svc}");
    assert_eq!(app.client.get(&location).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_of_one_item_lose_no_update() {
    let (app, token) = setup(Db::Sqlite).await.unwrap();
    let r = app
        .post_entry(&token, "/atompub/alice/Notes", entry("counter", "0"))
        .await;
    let location = header(&r, "location");
    let edits: Vec<_> = (0..24)
        .map(|i| {
            let (client, location, token) = (app.client.clone(), location.clone(), token.clone());
            tokio::spawn(async move {
                client
                    .put(&location)
                    .bearer_auth(&token)
                    .header("content-type", ATOM_ENTRY)
                    .body(entry("counter", &format!("edit {i}")))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for e in edits {
        assert_eq!(e.await.unwrap(), 200);
    }
    let body = app.text(&token, &location).await;
    // Every edit is one FeedSync update: 1 create + 24 updates, each in the history.
    assert!(body.contains(r#"updates="25""#), "{body}");
    assert_eq!(body.matches("<sx:history ").count(), 25);
    let u = app.store.user("alice").await.unwrap();
    let changes = app.store.changes(u.id, None, None, 100).await.unwrap();
    assert_eq!(changes.len(), 25);
    assert!(
        changes.windows(2).all(|w| w[0].seq > w[1].seq),
        "sequence numbers are unique and ordered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_writes_from_another_process_succeed_while_entries_stream_in() {
    let (app, token) = setup(Db::Sqlite).await.unwrap();
    // A second store on the same file, as `feedmesh token add` opens while `serve` runs.
    let other = feedmesh::store::open(&app.db_url, crate::common::test_sealer())
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, url, token, stop) = (
                app.client.clone(),
                app.url("/atompub/alice/Notes"),
                token.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", ATOM_ENTRY)
                        .body(entry(&format!("w{w}"), "x"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let alice = feedmesh::domain::UserName::parse("alice").unwrap();
    for i in 0..40 {
        let device = feedmesh::domain::DeviceName::parse(&format!("dev{i}")).unwrap();
        other
            .add_token(&alice, &device, &format!("hash{i}"), "fm_x")
            .await
            .unwrap_or_else(|e| panic!("token {i} failed while entries streamed in: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 0);
    assert_eq!(other.tokens(&alice).await.unwrap().len(), 41);
}
