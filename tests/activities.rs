//! Activities: the Atom Activity Streams 1.0 vocabulary in and out, Activity Streams 2.0
//! (checked by a real JSON-LD processor, pyld, against the AS2 context kept in the tests),
//! and timelines and views as WebSub topics.

use serde_json::{Value, json};

use crate::common::callbacks::*;
use crate::common::{TestApp, alice_with_notes, default_db, eventually, python_with};

const AS2: &str = "application/activity+json";

fn entry(title: &str, extra: &str) -> String {
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/"><title>{title}</title><content type="html">&lt;p&gt;{title}&lt;/p&gt;</content>{extra}</entry>"#
    )
}

async fn as2(app: &TestApp, token: &str, url: &str, accept: &str) -> Value {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        app.url(url)
    };
    let resp = app
        .client
        .get(&url)
        .bearer_auth(token)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/activity+json"),
        "{url}"
    );
    resp.json().await.unwrap()
}

async fn contact(app: &TestApp, token: &str, body: Value) -> String {
    let r = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn atom_entries_read_and_write_the_activity_streams_1_vocabulary() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    let said = entry(
        "Missed call",
        "<activity:verb>http://activitystrea.ms/schema/1.0/post</activity:verb><activity:object-type>call</activity:object-type>",
    );
    let r = app.post_entry(&token, "/atompub/alice/Notes", said).await;
    assert_eq!(r.status(), 201);
    let member = r.headers()["location"].to_str().unwrap().to_string();
    let doc = app.text(&token, &member).await;
    assert!(
        doc.contains("<activity:object-type>call</activity:object-type>"),
        "{doc}"
    );
    // A plain entry is a Note created by its endpoint; an edit is an Update, a delete a Delete.
    let r = app.post_entry(&token, "/atompub/alice/Notes", entry("Plain", "")).await;
    let plain = r.headers()["location"].to_str().unwrap().to_string();
    let r = app
        .client
        .put(&plain)
        .bearer_auth(&token)
        .header("content-type", "application/atom+xml;type=entry")
        .body(entry("Plain, edited", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.client
            .delete(&member)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let stream = app.text(&token, "/u/alice/stream.atom").await;
    for expected in [
        "<activity:verb>http://activitystrea.ms/schema/1.0/delete</activity:verb>",
        "<activity:verb>http://activitystrea.ms/schema/1.0/update</activity:verb>",
        "<activity:verb>http://activitystrea.ms/schema/1.0/post</activity:verb>",
        "<activity:object-type>http://activitystrea.ms/schema/1.0/note</activity:object-type>",
        "<activity:object-type>http://activitystrea.ms/schema/1.0/call</activity:object-type>",
    ] {
        assert!(stream.contains(expected), "{expected} missing from {stream}");
    }
    let page = as2(&app, &token, "/u/alice/stream.json?page=1", AS2).await;
    let types: Vec<(&str, &str)> = page["orderedItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["type"].as_str().unwrap(), a["object"]["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("Delete", "Call"),
            ("Update", "Note"),
            ("Create", "Note"),
            ("Create", "Call")
        ]
    );
    // Search by type.
    let found: Value = serde_json::from_str(&app.text(&token, "/u/alice/search.json?q=call&type=Call").await).unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn feeds_answer_activity_streams_2_that_a_json_ld_processor_keeps_whole() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    let bob = contact(
        &app,
        &token,
        json!({"name": "Bob", "identities": ["mailto:bob@acme.example"]}),
    )
    .await;
    for i in 0..7 {
        let who = r#"<author><name>Bob</name><email>bob@acme.example</email></author><link rel="mentioned" href="tel:+14155550100" title="Ann"/>"#;
        let r = app
            .post_entry(
                &token,
                "/atompub/alice/Notes",
                entry(
                    &format!("mail {i}"),
                    &format!("{who}<activity:object-type>email</activity:object-type>"),
                ),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let mut docs = Vec::new();
    // The collection, its first page inside, then pages by next until the end; prev goes back.
    let coll = as2(&app, &token, "/u/alice/stream.atom?limit=3", AS2).await;
    assert_eq!(coll["type"], "OrderedCollection");
    assert_eq!(coll["id"], app.url("/u/alice/stream.atom"));
    let first = &coll["first"];
    assert_eq!(first["type"], "OrderedCollectionPage");
    assert_eq!(first["partOf"], app.url("/u/alice/stream.atom"));
    let mut seen: Vec<String> = Vec::new();
    let mut next = first["next"].as_str().map(str::to_string);
    for item in first["orderedItems"].as_array().unwrap() {
        seen.push(item["object"]["name"].as_str().unwrap().to_string());
    }
    docs.push(coll.clone());
    let mut last_page = None;
    while let Some(url) = next {
        let page = as2(
            &app,
            &token,
            &url,
            r#"application/ld+json; profile="https://www.w3.org/ns/activitystreams""#,
        )
        .await;
        assert_eq!(page["type"], "OrderedCollectionPage");
        assert!(page["prev"].is_string(), "a later page links back: {page}");
        for item in page["orderedItems"].as_array().unwrap() {
            assert!(item["@context"].is_array(), "each item is a whole activity");
            seen.push(item["object"]["name"].as_str().unwrap().to_string());
        }
        next = page["next"].as_str().map(str::to_string);
        docs.push(page.clone());
        last_page = Some(page);
    }
    let expected: Vec<String> = (0..7)
        .rev()
        .map(|i| format!("mail {i}"))
        .chain(["Bob".to_string()])
        .collect();
    assert_eq!(seen, expected, "paging lost or repeated activities");
    // prev of the last page leads to newer activities than it holds.
    let last = last_page.unwrap();
    let back = as2(&app, &token, last["prev"].as_str().unwrap(), AS2).await;
    assert!(
        back["orderedItems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["object"]["name"] == "mail 1"),
        "{back}"
    );

    let item = &first["orderedItems"][0];
    assert_eq!(item["type"], "Create");
    assert_eq!(item["object"]["type"], "Message");
    assert_eq!(item["actor"]["id"], "mailto:bob@acme.example");
    assert_eq!(item["to"], json!(["tel:+14155550100"]));
    assert_eq!(item["target"]["name"], "Notes");
    // A timeline: provenance as a property.
    let timeline = as2(
        &app,
        &token,
        &format!("/u/alice/contacts/{bob}/timeline.atom?page=1"),
        AS2,
    )
    .await;
    let why = &timeline["orderedItems"][0]["why"][0];
    assert_eq!(
        (why["identity"].as_str(), why["role"].as_str()),
        (Some("mailto:bob@acme.example"), Some("actor"))
    );
    docs.push(timeline.clone());
    let mut items: Vec<Value> = Vec::new();
    for d in &docs {
        let page = if d["type"] == "OrderedCollection" {
            &d["first"]
        } else {
            d
        };
        items.extend(page["orderedItems"].as_array().unwrap().iter().cloned());
    }
    docs.extend(items);

    let Some(python) = python_with("pyld") else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/as2_expand.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&docs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pyld: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dropped"], json!([]), "terms JSON-LD drops: {report}");
    assert_eq!(report["expanded"].as_u64(), Some(docs.len() as u64), "{report}");
}

#[tokio::test]
async fn a_timeline_and_a_view_are_websub_topics_that_get_only_their_activities() {
    let (app, _stream_topic) = setup().await;
    let token = app.token("alice", "phone").await;
    app.collection("alice", "Notes").await;
    let bob = contact(
        &app,
        &token,
        json!({"name": "Bob", "identities": ["mailto:bob@acme.example"], "tags": ["customer"]}),
    )
    .await;
    let r = app
        .client
        .post(app.url("/api/views"))
        .bearer_auth(&token)
        .json(&json!({"name": "customers", "query": {"tags": ["customer"], "q": "quote"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = |feed: String| {
        let app = &app;
        let token = token.clone();
        async move {
            let v: Value = app.feed_key(&token, &feed).await.json().await.unwrap();
            v["url"].as_str().unwrap().to_string()
        }
    };
    let timeline_topic = key(format!("/u/alice/contacts/{bob}/timeline.atom")).await;
    let view_topic = key("/u/alice/views/customers.json".to_string()).await;
    // The feed names its hub, and its key URL is the topic.
    let feed = app.client.get(&timeline_topic).send().await.unwrap();
    assert!(crate::common::header(&feed, "link").contains("rel=\"hub\""));
    let (cb_base, cb) = callback_server().await;
    subscribe(&app, &timeline_topic, &format!("{cb_base}/timeline"), &[]).await;
    subscribe(&app, &view_topic, &format!("{cb_base}/view"), &[]).await;
    let mail = |title: &str, from: &str| entry(title, &format!("<author><name>X</name><email>{from}</email></author>"));
    app.post_entry(&token, "/atompub/alice/Notes", mail("not about bob", "carol@x.example"))
        .await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        mail("hello from bob", "bob@acme.example"),
    )
    .await;
    app.post_entry(&token, "/atompub/alice/Notes", mail("bob's quote", "bob@acme.example"))
        .await;
    eventually("the timeline's deliveries", async || {
        posts(&cb, "timeline")
            .iter()
            .any(|p| p.body.contains("bob&apos;s quote") || p.body.contains("bob's quote"))
    })
    .await;
    eventually("the view's delivery", async || !posts(&cb, "view").is_empty()).await;
    let timeline: String = posts(&cb, "timeline").iter().map(|p| p.body.clone()).collect();
    assert!(
        timeline.contains("hello from bob") && !timeline.contains("not about bob"),
        "{timeline}"
    );
    assert!(timeline.contains("<fm:why identity=\"mailto:bob@acme.example\" role=\"actor\""));
    let view: String = posts(&cb, "view").iter().map(|p| p.body.clone()).collect();
    assert!(
        view.contains("quote") && !view.contains("hello from bob") && !view.contains("not about bob"),
        "{view}"
    );
    assert!(posts(&cb, "view")[0].content_type.starts_with("application/feed+json"));
}
