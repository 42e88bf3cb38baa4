//! The WebSub hub's content distribution against a real callback server on loopback:
//! signed, ordered, once-only deliveries per topic and format (H, I), 410 and retries (J),
//! leases ending delivery (F), discovery of the hub (K), key revocation's denials (D).

use crate::common::callbacks::*;
use crate::common::{TestApp, eventually};
use std::time::{Duration, Instant};

#[tokio::test]
async fn new_entries_are_pushed_signed_in_order_once() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        crate::common::entry("before", "not sent"),
    )
    .await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[("hub.secret", "s3cret")]).await;

    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("first", "one"))
        .await;
    eventually("the first delivery", async || posts(&cb, "echo").len() == 1).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("second", "two"))
        .await;
    eventually("the second delivery", async || posts(&cb, "echo").len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = posts(&cb, "echo");
    assert_eq!(got.len(), 2, "a duplicate delivery");
    assert_eq!(got[0].content_type, "application/atom+xml; charset=utf-8");
    assert_eq!(
        got[0].link,
        format!("<{}>; rel=\"hub\", <{topic}>; rel=\"self\"", app.url("/hub"))
    );
    for d in &got {
        assert_eq!(
            d.signature.as_deref(),
            Some(hmac_sha256("s3cret", &d.body).as_str()),
            "bad signature"
        );
        assert!(
            !d.body.contains("before"),
            "an entry older than the subscription was sent"
        );
    }
    assert!(got[0].body.contains(">first<") && !got[0].body.contains(">second<"));
    assert!(
        got[1].body.contains(">second<") && !got[1].body.contains(">first<"),
        "not a diff: {}",
        got[1].body
    );
}

#[tokio::test]
async fn each_topic_gets_only_its_own_changes_in_its_own_format() {
    let (app, _) = setup().await;
    let laptop = app.token("alice", "laptop").await;
    let phone = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let key = |feed: &'static str| {
        let (app, laptop) = (&app, &laptop);
        async move {
            let v: serde_json::Value = app.feed_key(laptop, feed).await.json().await.unwrap();
            v["url"].as_str().unwrap().to_string()
        }
    };
    let rss_topic = key("/u/alice/stream.rss").await;
    let phone_topic = key("/u/alice/endpoints/phone/stream.json").await;
    let notes_topic = key("/atompub/alice/Notes").await;
    let (cb_base, cb) = callback_server().await;
    subscribe(&app, &rss_topic, &format!("{cb_base}/rss"), &[]).await;
    subscribe(&app, &phone_topic, &format!("{cb_base}/phone"), &[]).await;
    subscribe(&app, &notes_topic, &format!("{cb_base}/notes"), &[]).await;

    app.post_entry(
        &laptop,
        "/atompub/alice/Notes",
        crate::common::entry("from laptop", "l"),
    )
    .await;
    eventually("the rss and notes deliveries", async || {
        posts(&cb, "rss").len() == 1 && posts(&cb, "notes").len() == 1
    })
    .await;
    app.post_entry(&phone, "/atompub/alice/Notes", crate::common::entry("from phone", "p"))
        .await;
    eventually("the phone delivery", async || {
        posts(&cb, "phone").len() == 1 && posts(&cb, "rss").len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = posts(&cb, "rss");
    assert_eq!(rss[0].content_type, "application/rss+xml; charset=utf-8");
    assert!(rss[0].signature.is_none(), "signed without a secret");
    let phone_posts = posts(&cb, "phone");
    assert_eq!(phone_posts.len(), 1, "the phone's feed got the laptop's change");
    assert_eq!(phone_posts[0].content_type, "application/feed+json; charset=utf-8");
    let json: serde_json::Value = serde_json::from_str(&phone_posts[0].body).unwrap();
    assert_eq!(json["items"][0]["title"], "from phone");
    let notes = posts(&cb, "notes");
    assert!(
        notes[0].body.contains("<sx:sync ") && notes[0].body.contains("<sx:sharing since="),
        "{}",
        notes[0].body
    );
}

#[tokio::test]
async fn gone_ends_a_subscription_and_failures_are_retried() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let gone = format!("{cb_base}/gone");
    let flaky = format!("{cb_base}/flakypost");
    subscribe(&app, &topic, &gone, &[]).await;
    subscribe(&app, &topic, &flaky, &[]).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("news", "n"))
        .await;
    eventually("the retried delivery", async || posts(&cb, "flakypost").len() == 3).await;
    eventually("the end of the gone subscription", async || {
        app.store.subscription(&topic, &gone).await.unwrap().is_none()
    })
    .await;
    let flaky_posts = posts(&cb, "flakypost");
    assert!(flaky_posts.iter().all(|p| p.body.contains(">news<")));
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("later", "n"))
        .await;
    eventually("the next delivery", async || posts(&cb, "flakypost").len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&cb, "gone").len(), 1, "delivered after 410 Gone");
    assert!(
        app.store.subscription(&topic, &flaky).await.unwrap().is_some(),
        "failures ended the subscription"
    );
}

#[tokio::test]
async fn nothing_is_delivered_after_the_lease_ends() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/short");
    subscribe(&app, &topic, &callback, &[("hub.lease_seconds", "1")]).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("too late", "x"))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(posts(&cb, "short").is_empty(), "delivered after the lease ended");
}

#[tokio::test]
async fn hosted_feeds_advertise_the_hub_on_get_and_head() {
    let (app, topic) = setup().await;
    let hub_url = app.url("/hub");
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = app.client.request(method.clone(), &topic).send().await.unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(
            r.headers()["link"],
            format!("<{hub_url}>; rel=\"hub\", <{topic}>; rel=\"self\"").as_str(),
            "{method}"
        );
    }
    let atom = app.client.get(&topic).send().await.unwrap().text().await.unwrap();
    assert!(
        atom.contains(&format!("<link rel=\"hub\" href=\"{hub_url}\"/>")),
        "{atom}"
    );
    let rss = app
        .client
        .get(topic.replace("stream.atom", "stream.rss"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        rss.contains(&format!("<atom:link rel=\"hub\" href=\"{hub_url}\"/>")),
        "{rss}"
    );
    let json: serde_json::Value = app
        .client
        .get(topic.replace("stream.atom", "stream.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["hubs"][0]["type"], "WebSub");
    assert_eq!(json["hubs"][0]["url"], hub_url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgres_deliver_each_change_exactly_once() {
    let Some(db) = crate::common::postgres_url().await else {
        return;
    };
    let a = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let b = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let token = a.token("alice", "laptop").await;
    a.collection("alice", "Notes").await;
    let key: serde_json::Value = a.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&a, &topic, &callback, &[]).await;
    for i in 0..20 {
        let hub = if i % 2 == 0 { &a } else { &b };
        let r = hub
            .post_entry(
                &token,
                "/atompub/alice/Notes",
                crate::common::entry(&format!("e{i}"), "x"),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let all = || posts(&cb, "echo").iter().map(|p| p.body.clone()).collect::<String>();
    eventually("every change delivered", async || {
        (0..20).all(|i| all().contains(&format!(">e{i}<")))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bodies = all();
    for i in 0..20 {
        assert_eq!(
            bodies.matches(&format!(">e{i}<")).count(),
            1,
            "e{i} delivered more than once"
        );
    }
}

#[tokio::test]
async fn revoking_the_key_ends_its_subscriptions_with_a_denial() {
    let (app, topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/revoked?token=t1");
    subscribe(&app, &topic, &callback, &[]).await;
    let keys = app.keys(&token).await;
    let del = app.revoke_key(&token, &keys[0]["id"]).await;
    assert_eq!(del.status(), 204);
    assert!(
        app.store.subscription(&topic, &callback).await.unwrap().is_none(),
        "the subscription outlived its key"
    );
    let denials: Vec<String> = seen(&cb, "revoked")
        .into_iter()
        .filter(|q| q.contains("hub.mode=denied"))
        .collect();
    assert_eq!(denials.len(), 1);
    assert!(denials[0].starts_with("token=t1&hub.mode=denied&"), "{}", denials[0]);
    assert!(url::form_urlencoded::parse(denials[0].as_bytes()).any(|(k, v)| k == "hub.topic" && v == topic));
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("secret news", "x"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(posts(&cb, "revoked").is_empty(), "content delivered after revocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_wakes_a_long_poll_at_once_on_postgres() {
    let Some(db) = crate::common::postgres_url().await else {
        return;
    };
    let a = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let b = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    let token = a.token("alice", "laptop").await;
    a.collection("alice", "Notes").await;
    // Without LISTEN/NOTIFY, B would see A's writes only on its once-a-second check.
    for round in 0..5 {
        let full = b.get(&token, "/atompub/alice/Notes").await;
        let cursor = full.headers()["feedmesh-cursor"].to_str().unwrap().to_string();
        let poll = {
            let (client, url, token) = (
                b.client.clone(),
                b.url(&format!("/atompub/alice/Notes?since={cursor}&wait=20")),
                token.clone(),
            );
            tokio::spawn(async move {
                let body = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                (Instant::now(), body)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let posted = Instant::now();
        a.post_entry(
            &token,
            "/atompub/alice/Notes",
            crate::common::entry(&format!("round {round}"), "x"),
        )
        .await;
        let (answered, body) = poll.await.unwrap();
        let took = answered.duration_since(posted);
        assert!(
            took < Duration::from_millis(300),
            "round {round}: B answered {took:?} after A's write"
        );
        assert!(body.contains(&format!(">round {round}<")), "{body}");
    }
}

#[tokio::test]
async fn the_signature_algorithm_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path()).await;
    let app = TestApp::spawn_with(dir, db, |s| s.hub.signature = feedmesh::secrets::Signature::Sha512).await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let key: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let topic = key["url"].as_str().unwrap().to_string();
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &topic, &callback, &[("hub.secret", "k")]).await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("signed", "x"))
        .await;
    eventually("the delivery", async || posts(&cb, "echo").len() == 1).await;
    let d = &posts(&cb, "echo")[0];
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(b"k").unwrap();
    m.update(d.body.as_bytes());
    assert_eq!(
        d.signature.as_deref(),
        Some(format!("sha512={}", hex::encode(m.finalize().into_bytes())).as_str())
    );
}

#[tokio::test]
async fn a_credentialed_fetch_advertises_a_capability_url_as_self() {
    let (app, _) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    app.post_entry(&token, "/atompub/alice/Notes", crate::common::entry("hello", "x"))
        .await;
    let self_of = async |token: &str| {
        let resp = app.get(token, "/u/alice/stream.atom").await;
        assert_eq!(resp.status(), 200);
        let link = resp.headers()["link"].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap();
        let me = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"self\""))
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once('>'))
            .map(|(u, _)| u.to_string())
            .unwrap();
        assert!(body.contains(&format!("<link rel=\"self\" href=\"{me}\"")), "{body}");
        me
    };
    let me = self_of(&token).await;
    assert!(me.starts_with(&app.url("/u/alice/stream.atom?key=fk_")), "{me}");
    assert_eq!(self_of(&token).await, me, "the self URL is stable");
    // It reads the feed without credentials, and is a topic anyone holding it may subscribe to.
    let plain = app.client.get(&me).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.text().await.unwrap().contains("hello"));
    let (cb_base, cb) = callback_server().await;
    let callback = format!("{cb_base}/echo");
    subscribe(&app, &me, &callback, &[]).await;

    // Revoking it ends the URL and its subscription; the next credentialed fetch makes a new one.
    let keys = app.keys(&token).await;
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["self"] == true && k["revoked"] == false)
        .unwrap()["id"]
        .clone();
    let resp = app.revoke_key(&token, &id).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(app.client.get(&me).send().await.unwrap().status(), 401);
    eventually("the denial", async || {
        seen(&cb, "echo").iter().any(|q| q.contains("hub.mode=denied"))
    })
    .await;
    let next = self_of(&token).await;
    assert_ne!(next, me);
    assert_eq!(app.client.get(&next).send().await.unwrap().status(), 200);
    // Another user's credentials never see alice's feed or its self key.
    let bob = app.token("bob", "laptop").await;
    assert_eq!(app.get(&bob, "/u/alice/stream.atom").await.status(), 404);
}
