//! One story through the Store trait, run on SQLite and on PostgreSQL alike.
//! Longer than most files on purpose: it is one story, each step building on the state the
//! last one left (users, then items, then WebSub rows, then follows), so that both
//! backends are held to the same sequence; cutting it would mean rebuilding that state.

use feedmesh::domain::entry::{Entry, StoredItem, Text};
use feedmesh::domain::feedsync;
use feedmesh::domain::{CollectionName, DeviceName, Timestamp, UserName};
use feedmesh::store::{self, ChangeKind, HubRequest, ItemWrite, Store, StoreError, Subscription};

use crate::common::{postgres_url, test_sealer};

fn entry(title: &str) -> Entry {
    Entry {
        title: Text::plain(title),
        updated: Timestamp::from_unix(1_700_000_000),
        ..Entry::default()
    }
}

async fn story(store: &dyn Store) {
    // users
    let alice = store.create_user(&UserName::parse("alice").unwrap()).await.unwrap();
    let bob = store.create_user(&UserName::parse("bob").unwrap()).await.unwrap();
    assert!(matches!(
        store.create_user(&UserName::parse("alice").unwrap()).await,
        Err(StoreError::AlreadyExists("user"))
    ));
    assert_eq!(store.users().await.unwrap().len(), 2);
    assert!(matches!(store.user("carol").await, Err(StoreError::NotFound("user"))));
    assert_eq!(store.user_by_id(bob.id).await.unwrap().name.as_str(), "bob");
    assert_eq!(store.user_by_id(alice.id).await.unwrap().name.as_str(), "alice");
    assert!(matches!(
        store.user_by_id(alice.id + bob.id + 1).await,
        Err(StoreError::NotFound("user"))
    ));

    // tokens
    let name = UserName::parse("alice").unwrap();
    let laptop = DeviceName::parse("laptop").unwrap();
    let t1 = store.add_token(&name, &laptop, "hash1", "fm_abcd").await.unwrap();
    store.add_token(&name, &laptop, "hash2", "fm_efgh").await.unwrap();
    let p = store.principal("hash1").await.unwrap().expect("live token");
    assert_eq!(
        (p.user.as_str(), p.endpoint.as_str(), p.by()),
        ("alice", "laptop", "alice/laptop".to_string())
    );
    assert_eq!(store.tokens(&name).await.unwrap().len(), 2);
    store.revoke_token(&name, t1.id).await.unwrap();
    assert!(
        store.principal("hash1").await.unwrap().is_none(),
        "revoked token still works"
    );
    assert!(store.principal("hash2").await.unwrap().is_some());
    let bob_name = UserName::parse("bob").unwrap();
    assert!(
        matches!(
            store.revoke_token(&bob_name, t1.id + 1).await,
            Err(StoreError::NotFound(_))
        ),
        "bob revoked alice's token"
    );

    // feed keys
    let key = store.add_feed_key(alice.id, "/u/alice/stream", "khash").await.unwrap();
    assert_eq!(
        store.feed_key("khash").await.unwrap().unwrap().feed_path,
        "/u/alice/stream"
    );
    assert!(
        store.revoke_feed_key(bob.id, key.id).await.is_err(),
        "bob revoked alice's key"
    );
    store.revoke_feed_key(alice.id, key.id).await.unwrap();
    assert!(store.feed_key("khash").await.unwrap().is_none());

    // collections
    let notes = store
        .create_collection(alice.id, &CollectionName::parse("Notes").unwrap())
        .await
        .unwrap();
    let docs = store
        .create_collection(alice.id, &CollectionName::parse("Docs").unwrap())
        .await
        .unwrap();
    store
        .create_collection(bob.id, &CollectionName::parse("Notes").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_collection(alice.id, &CollectionName::parse("Notes").unwrap())
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.collections(alice.id).await.unwrap().len(), 2);
    assert_eq!(store.collection(alice.id, "Notes").await.unwrap(), notes);
    assert!(store.collection(bob.id, "Docs").await.is_err());

    // items and changes: create, update with compare-and-swap, conflict on a stale seq
    let endpoint = store.endpoint(alice.id, "laptop").await.unwrap();
    let now = Timestamp::from_unix(1_700_000_100);
    let mut item = feedsync::create("n1".into(), "alice/laptop", now, false, entry("one"));
    let write = |item: &StoredItem, expected_seq, kind, collection_id| ItemWrite {
        user_id: alice.id,
        collection_id,
        expected_seq,
        item: Box::leak(Box::new(item.clone())),
        kind,
        endpoint_id: Some(endpoint.id),
        at: now,
        live_token: Some("hash2"),
        activity: Box::leak(Box::default()),
    };
    let s1 = store
        .write_item(write(&item, None, ChangeKind::Create, notes.id))
        .await
        .unwrap();
    assert_eq!(s1, 1);
    assert!(matches!(
        store.write_item(write(&item, None, ChangeKind::Create, notes.id)).await,
        Err(StoreError::Conflict)
    ));
    feedsync::update(&mut item, "alice/laptop", now, Some(entry("two")), false);
    let s2 = store
        .write_item(write(&item, Some(s1), ChangeKind::Update, notes.id))
        .await
        .unwrap();
    assert!(s2 > s1, "sequence numbers increase");
    assert!(matches!(
        store
            .write_item(write(&item, Some(s1), ChangeKind::Update, notes.id))
            .await,
        Err(StoreError::Conflict)
    ));
    // A write whose token was revoked does not commit.
    let revoked = feedsync::create("r1".into(), "alice/laptop", now, false, entry("revoked"));
    let mut w = write(&revoked, None, ChangeKind::Create, notes.id);
    w.live_token = Some("hash1");
    assert!(matches!(store.write_item(w).await, Err(StoreError::Revoked)));
    assert!(store.item(notes.id, "r1").await.unwrap().is_none());
    let other = feedsync::create("d1".into(), "alice/laptop", now, false, entry("doc"));
    let s3 = store
        .write_item(write(&other, None, ChangeKind::Create, docs.id))
        .await
        .unwrap();

    let got = store.item(notes.id, "n1").await.unwrap().unwrap();
    assert_eq!(got.seq, s2);
    assert_eq!(got.item, item);
    assert!(store.item(docs.id, "n1").await.unwrap().is_none());
    assert_eq!(store.user_head(alice.id).await.unwrap(), s3);
    assert_eq!(store.user_head(bob.id).await.unwrap(), 0);
    assert_eq!(store.collection_head(notes.id).await.unwrap(), s2);

    let since = store.items_since(notes.id, 0, 10).await.unwrap();
    assert_eq!(since.len(), 1);
    assert!(store.items_since(notes.id, s2, 10).await.unwrap().is_empty());

    let changes = store.changes(alice.id, None, None, 10).await.unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![s3, s2, s1], "newest first");
    assert_eq!(changes[1].kind, ChangeKind::Update);
    assert_eq!(changes[1].version.payload.title.value, "two");
    assert_eq!(
        changes[2].version.payload.title.value, "one",
        "a change keeps the version it made"
    );
    assert_eq!(changes[0].collection, "Docs");
    assert_eq!(changes[0].endpoint.as_deref(), Some("laptop"));
    let older = store.changes(alice.id, None, Some(s2), 10).await.unwrap();
    assert_eq!(older.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![s1]);
    assert_eq!(
        store.changes(alice.id, Some(endpoint.id), None, 1).await.unwrap().len(),
        1
    );
    assert!(
        store.changes(bob.id, None, None, 10).await.unwrap().is_empty(),
        "bob sees alice's changes"
    );

    // WebSub: a durable verification queue with claims, and subscriptions with cursors.
    let req = feedmesh::store::HubRequest {
        id: 0,
        subscribe: true,
        topic: "http://hub/u/alice/stream.atom?key=k".into(),
        callback: "http://sub/cb".into(),
        user_id: Some(alice.id),
        feed: "/u/alice/stream.atom".into(),
        key_hash: "khash".into(),
        secret: Some("s".into()),
        lease_seconds: 60,
        attempts: 0,
    };
    let id = store.hub_enqueue(&req, 1_000).await.unwrap();
    assert!(
        store.hub_claim(999, 5_000, 10).await.unwrap().is_empty(),
        "claimed before it was due"
    );
    let claimed = store.hub_claim(1_000, 5_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].id, claimed[0].attempts, claimed[0].secret.as_deref()),
        (id, 1, Some("s"))
    );
    assert!(
        store.hub_claim(2_000, 5_000, 10).await.unwrap().is_empty(),
        "claimed twice within its lease"
    );
    assert_eq!(
        store.hub_claim(6_001, 5_000, 10).await.unwrap().len(),
        1,
        "a crashed worker's claim never expired"
    );
    store.hub_retry(id, 10_000).await.unwrap();
    assert!(store.hub_claim(9_999, 5_000, 10).await.unwrap().is_empty());
    assert_eq!(store.hub_claim(10_000, 5_000, 10).await.unwrap()[0].attempts, 3);
    store.hub_done(id).await.unwrap();
    assert!(store.hub_claim(i64::MAX / 2, 5_000, 10).await.unwrap().is_empty());
    let sub = feedmesh::store::Subscription {
        topic: req.topic.clone(),
        callback: req.callback.clone(),
        user_id: Some(alice.id),
        feed: req.feed.clone(),
        key_hash: "khash".into(),
        secret: Some("A".into()),
        lease_seconds: 60,
        expires_at: 61_000,
    };
    store.subscribe(&sub).await.unwrap();
    store
        .subscribe(&feedmesh::store::Subscription {
            secret: Some("B".into()),
            ..sub.clone()
        })
        .await
        .unwrap();
    let got = store.subscription(&sub.topic, &sub.callback).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some("B"), "a renewal did not replace the state");
    assert!(
        store
            .subscription(&sub.topic, "http://other/cb")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.unsubscribe(&sub.topic, &sub.callback).await.unwrap());
    assert!(!store.unsubscribe(&sub.topic, &sub.callback).await.unwrap());

    // Open hub: an outside topic is fetched only when subscribed and pinged; new content
    // (by hash) is a new version, the same content is not, and a ping during a fetch stays.
    let outside = "http://elsewhere/feed";
    assert!(!store.topic_ping(outside, 100).await.unwrap(), "nobody subscribes yet");
    let osub = feedmesh::store::Subscription {
        topic: outside.into(),
        callback: "http://sub/o".into(),
        user_id: None,
        feed: String::new(),
        key_hash: String::new(),
        secret: None,
        lease_seconds: 60,
        expires_at: i64::MAX / 4,
    };
    store.subscribe(&osub).await.unwrap();
    assert!(store.topic_ping(outside, 100).await.unwrap());
    let due = store.topic_fetches_due(100, 5_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        store.topic_fetches_due(200, 5_000, 10).await.unwrap().is_empty(),
        "claimed twice"
    );
    let content = |body: &[u8]| feedmesh::store::TopicContent {
        content_type: "text/plain; charset=utf-8".into(),
        body: body.to_vec(),
        hash: feedmesh::secrets::hash_bytes(body),
        version: 0,
    };
    assert!(
        store
            .topic_fetched(due[0].id, 100, Some(content(b"\x00one\xff")))
            .await
            .unwrap()
    );
    let got = store.topic_content(outside).await.unwrap().unwrap();
    assert_eq!((got.version, got.body.as_slice()), (1, b"\x00one\xff".as_slice()));
    let deliveries = store.deliveries_due(300, 5_000, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1, "the new subscriber is behind version 1");
    assert_eq!((deliveries[0].user_id, deliveries[0].delivered_seq), (None, 0));
    store.delivered(&[deliveries[0].id], 1).await.unwrap();
    assert!(store.deliveries_due(400, 5_000, 10).await.unwrap().is_empty());
    store.topic_ping(outside, 500).await.unwrap();
    let due = store.topic_fetches_due(500, 5_000, 10).await.unwrap();
    store.topic_ping(outside, 600).await.unwrap(); // arrives during the fetch
    assert!(
        !store
            .topic_fetched(due[0].id, 500, Some(content(b"\x00one\xff")))
            .await
            .unwrap()
    );
    assert_eq!(store.topic_content(outside).await.unwrap().unwrap().version, 1);
    assert_eq!(
        store.topic_fetches_due(700, 5_000, 10).await.unwrap().len(),
        1,
        "the later ping was lost"
    );
    assert_eq!(
        store.revoked_subscriptions(10).await.unwrap(),
        vec![],
        "an outside topic has no key to revoke"
    );
    // K7: the subscriptions of an outside topic, and only those.
    let to = store.subscriptions_to(outside).await.unwrap();
    assert_eq!(
        to.iter().map(|(_, cb)| cb.as_str()).collect::<Vec<_>>(),
        ["http://sub/o"]
    );
    assert!(store.unsubscribe(outside, "http://sub/o").await.unwrap());

    // Self keys: one live generation per feed, a new one after a revocation; one server secret.
    let hash_of = |g: i64| format!("selfhash-{g}");
    assert_eq!(store.self_key(alice.id, "/u/alice/stream", &hash_of).await.unwrap(), 1);
    assert_eq!(store.self_key(alice.id, "/u/alice/stream", &hash_of).await.unwrap(), 1);
    let k1 = store.feed_key("selfhash-1").await.unwrap().unwrap();
    assert!(k1.derived && k1.feed_path == "/u/alice/stream");
    store.revoke_feed_key(alice.id, k1.id).await.unwrap();
    assert_eq!(store.self_key(alice.id, "/u/alice/stream", &hash_of).await.unwrap(), 2);
    assert!(store.feed_key("selfhash-2").await.unwrap().is_some());
    let secret = store.server_secret("s", "first").await.unwrap();
    assert_eq!(
        (
            secret.as_str(),
            store.server_secret("s", "second").await.unwrap().as_str()
        ),
        ("first", "first")
    );

    // Follows: one per user and URL, claimed when due, verified only while waiting for it.
    use feedmesh::store::FollowState;
    let f = store
        .add_follow(alice.id, docs.id, "https://pub/feed", "tok1", "sec1")
        .await
        .unwrap();
    assert_eq!((f.state, f.next_at, f.topic.as_str()), (FollowState::Polling, 0, ""));
    assert!(matches!(
        store
            .add_follow(alice.id, docs.id, "https://pub/feed", "tok2", "sec2")
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.follows_due(1_000, 5_000, 10).await.unwrap().len(), 1);
    assert!(
        store.follows_due(2_000, 5_000, 10).await.unwrap().is_empty(),
        "claimed twice"
    );
    assert!(
        !store.follow_verified(f.id, 9_000, 8_000).await.unwrap(),
        "verified while polling"
    );
    let waiting = feedmesh::store::Follow {
        state: FollowState::Subscribing,
        topic: "https://pub/self".into(),
        hub: "https://hub/".into(),
        next_at: 50_000,
        etag: Some("\"e1\"".into()),
        ..f.clone()
    };
    assert!(store.update_follow(&waiting, FollowState::Polling).await.unwrap());
    // A write from a stale claim (the follow is subscribing now, not polling) changes nothing.
    let stale = feedmesh::store::Follow {
        state: FollowState::Polling,
        next_at: 1,
        ..waiting.clone()
    };
    assert!(!store.update_follow(&stale, FollowState::Polling).await.unwrap());
    assert!(store.follow_verified(f.id, 90_000, 80_000).await.unwrap());
    let got = store.follow_by_token("tok1").await.unwrap().unwrap();
    assert_eq!(
        (
            got.state,
            got.lease_expires_at,
            got.next_at,
            got.etag.as_deref(),
            got.secret.as_str()
        ),
        (FollowState::Subscribed, 90_000, 80_000, Some("\"e1\""), "sec1")
    );
    store.follow_fallback(f.id, "denied", 100).await.unwrap();
    let got = store.follows(alice.id).await.unwrap().remove(0);
    assert_eq!(
        (got.state, got.last_error.as_deref()),
        (FollowState::Polling, Some("denied"))
    );
    let e1 = store.feed_endpoint(alice.id, "feed-1").await.unwrap();
    assert_eq!(store.feed_endpoint(alice.id, "feed-1").await.unwrap().id, e1.id);
    assert!(store.follows(bob.id).await.unwrap().is_empty());
    assert!(matches!(
        store.remove_follow(bob.id, f.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.remove_follow(alice.id, f.id).await.unwrap().id, f.id);
    assert!(store.follow_by_token("tok1").await.unwrap().is_none());

    // blobs
    store.record_blob(alice.id, "ab".repeat(32).as_str(), 42).await.unwrap();
    store.record_blob(alice.id, "ab".repeat(32).as_str(), 42).await.unwrap();
    assert_eq!(store.blob_size(alice.id, &"ab".repeat(32)).await.unwrap(), Some(42));
    assert_eq!(store.blob_size(alice.id, &"cd".repeat(32)).await.unwrap(), None);
    assert_eq!(
        store.blob_size(bob.id, &"ab".repeat(32)).await.unwrap(),
        None,
        "bob never uploaded it"
    );
    store.record_blob(bob.id, "ab".repeat(32).as_str(), 42).await.unwrap();
    assert_eq!(store.blob_size(bob.id, &"ab".repeat(32)).await.unwrap(), Some(42));

    // A burst of concurrent writes (one group commit on SQLite): each fails or succeeds on
    // its own, and the sequence numbers of those that succeed leave no gap.
    let burst = store
        .create_collection(alice.id, &CollectionName::parse("Burst").unwrap())
        .await
        .unwrap();
    let head = store.user_head(alice.id).await.unwrap();
    let mut writes = Vec::new();
    for i in 0..24 {
        let id = if (20..23).contains(&i) {
            "b0".to_string()
        } else {
            format!("b{i}")
        };
        let it = feedsync::create(id, "alice/laptop", now, false, entry("burst"));
        // The last one names a collection that does not exist: an error of its own.
        let collection = if i == 23 { burst.id + 1000 } else { burst.id };
        writes.push(store.write_item(write(&it, None, ChangeKind::Create, collection)));
    }
    let results = futures_util::future::join_all(writes).await;
    let mut seqs: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    seqs.sort();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict)))
        .count();
    assert_eq!((seqs.len(), conflicts), (20, 3), "{results:?}");
    assert!(results[23].is_err(), "a write into no collection fails");
    assert_eq!(seqs, (head + 1..=head + 20).collect::<Vec<u64>>(), "no gaps");
    assert_eq!(store.user_head(alice.id).await.unwrap(), head + 20);
    assert_eq!(store.items_since(burst.id, 0, 100).await.unwrap().len(), 20);
}

#[tokio::test]
async fn store_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("story.db").display());
    let store = store::open(&url, test_sealer()).await.unwrap();
    story(store.as_ref()).await;
    // Reopening runs the migrations again harmlessly and keeps the data.
    drop(store);
    let again = store::open(&url, test_sealer()).await.unwrap();
    assert_eq!(again.users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn store_story_on_postgres() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let store = store::open(&url, test_sealer()).await.unwrap();
    story(store.as_ref()).await;
    drop(store);
    let again = store::open(&url, test_sealer()).await.unwrap();
    assert_eq!(again.users().await.unwrap().len(), 2);
}

/// What the database itself holds in a column, bypassing the store.
async fn raw(url: &str, sql: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn raw_exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .unwrap();
}

/// WebSub, follow and server secrets are sealed in the database and come back whole through
/// the store; secrets kept in clear by an earlier version are sealed on the next open; a
/// process with another key is refused, naming the setting.
async fn sealing_story(url: &str) {
    let store = store::open(url, test_sealer()).await.unwrap();
    let alice = store.create_user(&UserName::parse("alice").unwrap()).await.unwrap();
    let notes = store
        .create_collection(alice.id, &CollectionName::parse("Notes").unwrap())
        .await
        .unwrap();
    let sub = Subscription {
        topic: "http://hub.example/u/alice/stream.atom?key=fk_storykey".into(),
        callback: "http://cb.example/1".into(),
        user_id: Some(alice.id),
        feed: "/u/alice/stream.atom".into(),
        key_hash: "h".into(),
        secret: Some("subscriber-secret".into()),
        lease_seconds: 3600,
        expires_at: i64::MAX / 2,
    };
    store.subscribe(&sub).await.unwrap();
    let request = HubRequest {
        id: 0,
        subscribe: true,
        topic: sub.topic.clone(),
        callback: "http://cb.example/2".into(),
        user_id: Some(alice.id),
        feed: sub.feed.clone(),
        key_hash: "h".into(),
        secret: Some("request-secret".into()),
        lease_seconds: 3600,
        attempts: 0,
    };
    store.hub_enqueue(&request, 0).await.unwrap();
    store
        .add_follow(alice.id, notes.id, "http://feeds.example/a.xml", "tok", "follow-secret")
        .await
        .unwrap();
    let server = store.server_secret("story", "server-secret").await.unwrap();
    assert_eq!(server, "server-secret");

    let stored = [
        raw(url, "SELECT secret FROM websub_subscriptions").await,
        raw(url, "SELECT secret FROM websub_requests").await,
        raw(url, "SELECT secret FROM follows").await,
        raw(url, "SELECT value FROM server_secrets WHERE name = 'story'").await,
    ]
    .concat();
    assert_eq!(stored.len(), 4);
    for (v, plain) in stored
        .iter()
        .zip(["subscriber-secret", "request-secret", "follow-secret", "server-secret"])
    {
        assert!(v.starts_with("v1.") && !v.contains(plain), "{v} holds {plain} in clear");
    }
    // The feed key a hosted topic carries is not kept in clear either.
    for sql in [
        "SELECT topic FROM websub_subscriptions",
        "SELECT topic FROM websub_requests",
        "SELECT topic_sealed FROM websub_subscriptions",
        "SELECT topic_sealed FROM websub_requests",
    ] {
        for v in raw(url, sql).await {
            assert!(!v.contains("fk_storykey"), "{sql}: {v} holds the feed key");
        }
    }
    // Whole again through the store.
    let got = store.subscription(&sub.topic, &sub.callback).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some("subscriber-secret"));
    assert_eq!(got.topic, sub.topic);
    let claimed = store.hub_claim(i64::MAX / 4, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].secret.as_deref(), Some("request-secret"));
    assert_eq!(claimed[0].topic, sub.topic);
    assert_eq!(store.follows(alice.id).await.unwrap()[0].secret, "follow-secret");
    assert_eq!(store.server_secret("story", "another").await.unwrap(), "server-secret");
    // Deliveries carry the secret they sign with.
    let now = Timestamp::from_unix(1_700_000_100);
    let item = feedsync::create("n1".into(), "alice/laptop", now, false, entry("news"));
    store
        .write_item(ItemWrite {
            user_id: alice.id,
            collection_id: notes.id,
            expected_seq: None,
            item: &item,
            kind: ChangeKind::Create,
            endpoint_id: None,
            at: now,
            live_token: None,
            activity: &Default::default(),
        })
        .await
        .unwrap();
    let due = store.deliveries_due(0, 1000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].secret.as_deref(), Some("subscriber-secret"));
    assert_eq!(due[0].topic, sub.topic);
    // Its key is revoked (no such live key): the denial names the whole topic.
    let revoked = store.revoked_subscriptions(10).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].1, sub.topic);

    // Secrets an earlier version left in clear read as they are, and the next open seals them.
    raw_exec(url, "UPDATE websub_subscriptions SET secret = 'from-before'").await;
    raw_exec(
        url,
        "UPDATE websub_subscriptions SET topic_sealed = NULL, topic = 'http://hub.example/u/alice/stream.atom?key=fk_storykey'",
    )
    .await;
    raw_exec(url, "UPDATE follows SET secret = 'follow-from-before'").await;
    raw_exec(
        url,
        "UPDATE server_secrets SET value = 'server-from-before' WHERE name = 'story'",
    )
    .await;
    let got = store.subscription(&sub.topic, &sub.callback).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some("from-before"));
    assert_eq!(got.topic, sub.topic);
    drop(store);
    let store = store::open(url, test_sealer()).await.unwrap();
    let v = raw(url, "SELECT topic FROM websub_subscriptions").await.remove(0);
    assert!(!v.contains("fk_storykey"), "{v}: the legacy topic still holds its key");
    for (sql, plain) in [
        ("SELECT secret FROM websub_subscriptions", "from-before"),
        ("SELECT secret FROM follows", "follow-from-before"),
        (
            "SELECT value FROM server_secrets WHERE name = 'story'",
            "server-from-before",
        ),
    ] {
        let v = raw(url, sql).await.remove(0);
        assert!(v.starts_with("v1.") && !v.contains(plain), "{v} still in clear");
    }
    let got = store.subscription(&sub.topic, &sub.callback).await.unwrap().unwrap();
    assert_eq!(got.secret.as_deref(), Some("from-before"));
    assert_eq!(got.topic, sub.topic);
    assert!(store.unsubscribe(&sub.topic, &sub.callback).await.unwrap());
    store.subscribe(&got).await.unwrap();
    assert_eq!(store.follows(alice.id).await.unwrap()[0].secret, "follow-from-before");
    assert_eq!(store.server_secret("story", "x").await.unwrap(), "server-from-before");
    drop(store);

    // Another key cannot open this database, and the error says which setting to fix.
    let (other, _) = feedmesh::seal::Sealer::generate().unwrap();
    let err = store::open(url, std::sync::Arc::new(other))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("another key") && err.contains("FEEDMESH_SECRET_KEY"),
        "{err}"
    );
    // Nothing was changed by the refused process.
    let v = raw(url, "SELECT secret FROM websub_subscriptions").await.remove(0);
    assert_eq!(test_sealer().open(&v).as_deref(), Some("from-before"));
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sealing_story(&format!("sqlite://{}", dir.path().join("sealed.db").display())).await;
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_on_postgres() {
    let Some(url) = postgres_url().await else {
        return;
    };
    sealing_story(&url).await;
}

#[tokio::test]
async fn a_bad_database_url_is_a_clear_error() {
    let err = store::open("mysql://localhost/x", test_sealer())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("sqlite://") && err.contains("postgres://"), "{err}");
}
