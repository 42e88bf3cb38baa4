//! Contacts, automatic linking, timelines with provenance, merge and undo, companies,
//! search and saved views, through the HTTP API and the feeds, on the test database.

use serde_json::{Value, json};

use crate::common::{TestApp, alice_with_notes, default_db};

const ATOM: &str = "application/atom+xml;type=entry";

/// An entry by `author` (an e-mail) mentioning `to` (identity URIs).
fn mail(title: &str, text: &str, author: Option<&str>, to: &[&str]) -> String {
    let author = author
        .map(|a| format!("<author><name>Someone</name><email>{a}</email></author>"))
        .unwrap_or_default();
    let links: String = to
        .iter()
        .map(|t| format!(r#"<link rel="mentioned" href="{t}"/>"#))
        .collect();
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/">
<title>{title}</title><content type="text">{text}</content>{author}{links}
<activity:verb>http://activitystrea.ms/schema/1.0/post</activity:verb>
<activity:object-type>email</activity:object-type></entry>"#
    )
}

/// POST of an entry to alice's Notes.
async fn notes(app: &TestApp, token: &str, entry: String) -> reqwest::Response {
    app.post_entry(token, "/atompub/alice/Notes", entry).await
}

async fn post_json(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn json(app: &TestApp, token: &str, path: &str) -> Value {
    let resp = app.get(token, path).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

/// The titles of a feed's entries, newest first (all pages of up to 1000).
async fn titles(app: &TestApp, token: &str, path: &str) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = app.get(token, &format!("{path}{sep}limit=1000")).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    let body = resp.text().await.unwrap();
    let feed: Value = serde_json::from_str(&body).expect("a JSON feed");
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

async fn new_contact(app: &TestApp, token: &str, body: Value) -> Value {
    let resp = post_json(app, token, "/api/contacts", body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn activities_link_to_contacts_by_identity_with_provenance() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    // Before Bob is a contact: a toot of his handle, and a mail from an unknown address.
    notes(
        &app,
        &token,
        mail("Early toot", "hi", None, &["acct:Bob@Social.Example"]),
    )
    .await;
    notes(
        &app,
        &token,
        mail("From Carol", "hello", Some("carol@initech.example"), &[]),
    )
    .await;
    let bob = new_contact(
        &app,
        &token,
        json!({"name": "Bob Smith", "identities": ["Bob@Example.com", "+1 (415) 555-0100"], "org": "Acme Inc.", "tags": ["customer"]}),
    )
    .await;
    let id = bob["id"].as_str().unwrap().to_string();
    assert_eq!(bob["identities"], json!(["mailto:bob@example.com", "tel:+14155550100"]));

    let r = notes(&app, &token, mail("Quote", "the price", Some("BOB@example.com"), &[])).await;
    assert_eq!(r.status(), 201);
    notes(&app, &token, mail("Call me", "text", None, &["tel:415-555-0100"])).await;
    notes(&app, &token, mail("Unrelated", "x", Some("dan@elsewhere.example"), &[])).await;

    let timeline = format!("/u/alice/contacts/{id}/timeline");
    let got = titles(&app, &token, &format!("{timeline}.json")).await;
    assert!(
        got.starts_with(&["Call me".to_string(), "Quote".to_string()]),
        "{got:?}"
    );
    assert!(!got.contains(&"Unrelated".to_string()) && !got.contains(&"Early toot".to_string()));

    // Provenance: which identity, in which role, in Atom and JSON Feed.
    let atom = app.text(&token, &format!("{timeline}.atom")).await;
    assert!(
        atom.contains(r#"<fm:why identity="mailto:bob@example.com" role="actor""#),
        "{atom}"
    );
    assert!(
        atom.contains(r#"<fm:why identity="tel:+14155550100" role="recipient""#),
        "{atom}"
    );
    assert!(atom.contains("<activity:verb>http://activitystrea.ms/schema/1.0/post</activity:verb>"));
    let feed: Value = serde_json::from_str(&app.text(&token, &format!("{timeline}.json")).await).unwrap();
    let why = &feed["items"][0]["_feedmesh"]["why"][0];
    assert_eq!(
        (why["identity"].as_str(), why["role"].as_str()),
        (Some("tel:+14155550100"), Some("recipient"))
    );
    assert!(app.text(&token, &format!("{timeline}.rss")).await.contains("<rss"));

    // Adding an identity links the earlier activities that carry it; removing it unlinks.
    let resp = app
        .client
        .patch(app.url(&format!("/api/contacts/{id}")))
        .bearer_auth(&token)
        .json(&json!({"identities": ["mailto:bob@example.com", "tel:+14155550100", "@bob@social.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        titles(&app, &token, &format!("{timeline}.json"))
            .await
            .contains(&"Early toot".to_string())
    );
    let resp = app
        .client
        .patch(app.url(&format!("/api/contacts/{id}")))
        .bearer_auth(&token)
        .json(&json!({"identities": ["mailto:bob@example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = titles(&app, &token, &format!("{timeline}.json")).await;
    assert!(
        !got.contains(&"Early toot".to_string()) && !got.contains(&"Call me".to_string()),
        "{got:?}"
    );

    // Suggestions: identities seen that no contact holds.
    let s = json(&app, &token, "/api/contacts/suggestions").await;
    let ids: Vec<&str> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["identity"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"mailto:carol@initech.example") && ids.contains(&"acct:bob@social.example"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"mailto:bob@example.com"));

    // The contact's detail: counts by channel and the last interaction.
    let d = json(&app, &token, &format!("/api/contacts/{id}")).await;
    assert_eq!(d["counts"]["email"], json!(1), "{d}");
    assert!(d["last_interaction"].is_string());
    let list = json(&app, &token, "/api/contacts").await;
    assert_eq!(list[0]["name"], "Bob Smith");
    assert_eq!(list[0]["tags"], json!(["customer"]));

    // A note about Bob is an item of Notes in his timeline.
    let resp = post_json(
        &app,
        &token,
        &format!("/api/contacts/{id}/notes"),
        json!({"text": "Likes green tea"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert!(
        titles(&app, &token, &format!("{timeline}.json"))
            .await
            .contains(&"Likes green tea".to_string())
    );

    // Another user sees none of it.
    let eve = app.token("eve", "phone").await;
    assert_eq!(app.get(&eve, &format!("/api/contacts/{id}")).await.status(), 404);
    assert_eq!(app.get(&eve, &format!("{timeline}.atom")).await.status(), 404);
    assert_eq!(
        app.get(&eve, &format!("/u/eve/contacts/{id}/timeline.atom"))
            .await
            .status(),
        404
    );
    assert_eq!(json(&app, &eve, "/api/contacts").await, json!([]));
}

#[tokio::test]
async fn a_merge_keeps_both_timelines_and_its_undo_splits_them_back() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    let a = new_contact(
        &app,
        &token,
        json!({"name": "Ann", "identities": ["mailto:ann@acme.example"]}),
    )
    .await;
    let b = new_contact(
        &app,
        &token,
        json!({"name": "Ann (home)", "identities": ["mailto:ann@home.example"], "note": "home"}),
    )
    .await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    // Many activities on both sides, posted as one FeedSync feed each way.
    let n = 150;
    for (who, tag) in [("ann@acme.example", "work"), ("ann@home.example", "home")] {
        for i in 0..n {
            let r = notes(&app, &token, mail(&format!("{tag} {i}"), "x", Some(who), &[])).await;
            assert_eq!(r.status(), 201);
        }
    }
    let ta = format!("/u/alice/contacts/{a}/timeline.json");
    let tb = format!("/u/alice/contacts/{b}/timeline.json");
    let before_a = titles(&app, &token, &ta).await;
    let before_b = titles(&app, &token, &tb).await;
    assert_eq!((before_a.len(), before_b.len()), (n + 1, n + 1)); // + each contact's own creation

    // Bad merges change nothing.
    let r = post_json(&app, &token, &format!("/api/contacts/{a}/merge"), json!({"other": a})).await;
    assert_eq!(r.status(), 400);
    let eve = app.token("eve", "phone").await;
    let evil = new_contact(&app, &eve, json!({"name": "E", "identities": ["mailto:e@x.example"]})).await;
    let r = post_json(
        &app,
        &token,
        &format!("/api/contacts/{a}/merge"),
        json!({"other": evil["id"]}),
    )
    .await;
    assert_eq!(r.status(), 404);

    let r = post_json(&app, &token, &format!("/api/contacts/{a}/merge"), json!({"other": b})).await;
    assert_eq!(r.status(), 200);
    let merge_id = r.json::<Value>().await.unwrap()["merge_id"]
        .as_str()
        .unwrap()
        .to_string();
    let merged = titles(&app, &token, &ta).await;
    for t in before_a.iter().chain(before_b.iter()) {
        assert!(merged.contains(t), "the merged timeline lost {t:?}");
    }
    assert_eq!(app.get(&token, &tb).await.status(), 404);
    let ann = json(&app, &token, &format!("/api/contacts/{a}")).await;
    assert_eq!(
        ann["identities"],
        json!(["mailto:ann@acme.example", "mailto:ann@home.example"])
    );
    assert_eq!(ann["note"], "home");

    // Mail to the merged identity after the merge goes to the kept contact, and with undo to b.
    notes(&app, &token, mail("after merge", "x", Some("ann@home.example"), &[])).await;
    assert!(titles(&app, &token, &ta).await.contains(&"after merge".to_string()));

    let r = app
        .client
        .post(app.url(&format!("/api/contacts/merges/{merge_id}/undo")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after_a = titles(&app, &token, &ta).await;
    let after_b = titles(&app, &token, &tb).await;
    for t in &before_a {
        assert!(after_a.contains(t), "undo lost {t:?} of a");
    }
    for t in &before_b {
        assert!(after_b.contains(t), "undo lost {t:?} of b");
    }
    assert!(after_b.contains(&"after merge".to_string()) && !after_a.contains(&"after merge".to_string()));
    assert!(!after_a.iter().any(|t| t.starts_with("home ")), "a kept b's activities");
    let ann = json(&app, &token, &format!("/api/contacts/{a}")).await;
    assert_eq!(ann["identities"], json!(["mailto:ann@acme.example"]));
    assert_eq!(ann["note"], "");
    let home = json(&app, &token, &format!("/api/contacts/{b}")).await;
    assert_eq!(
        (home["name"].as_str(), home["note"].as_str()),
        (Some("Ann (home)"), Some("home"))
    );
    // Twice is refused.
    let r = app
        .client
        .post(app.url(&format!("/api/contacts/merges/{merge_id}/undo")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn companies_views_and_search_are_feeds() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    let bob = new_contact(
        &app,
        &token,
        json!({"name": "Bob", "identities": ["mailto:bob@globex.example"], "tags": ["customer"]}),
    )
    .await;
    new_contact(
        &app,
        &token,
        json!({"name": "Gina", "identities": ["tel:+14155550111"], "org": "Globex Corporation"}),
    )
    .await;
    new_contact(
        &app,
        &token,
        json!({"name": "Fred", "identities": ["mailto:fred@gmail.com"]}),
    )
    .await;
    for (title, text, from, to) in [
        (
            "Quarterly quote",
            "the invoice for next week",
            Some("bob@globex.example"),
            vec![],
        ),
        ("Dinner", "next to the station", Some("fred@gmail.com"), vec![]),
        ("Phone call", "about invoices", None, vec!["tel:+14155550111"]),
        ("Weekly sync", "sync notes", None, vec![]),
    ] {
        let r = notes(&app, &token, mail(title, text, from, &to)).await;
        assert_eq!(r.status(), 201);
    }
    // A company: Globex by ORG (Gina) and by domain (Bob); gmail.com makes none.
    let companies = json(&app, &token, "/api/companies").await;
    let slugs: Vec<&str> = companies
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["globex"], "{companies}");
    let got = titles(&app, &token, "/u/alice/companies/globex/timeline.json").await;
    assert!(
        got.contains(&"Quarterly quote".into()) && got.contains(&"Phone call".into()),
        "{got:?}"
    );
    assert!(!got.contains(&"Dinner".into()));

    // Search: words, phrases, prefixes, exclusions, filters.
    let q = |q: &str| format!("/u/alice/search.json?q={}", urlencode(q));
    let got = titles(&app, &token, &q("invoice")).await;
    assert_eq!(got, vec!["Quarterly quote"]);
    let got = titles(&app, &token, &q("invoice*")).await;
    assert_eq!(got, vec!["Phone call", "Quarterly quote"]);
    assert_eq!(titles(&app, &token, &q("\"next week\"")).await, vec!["Quarterly quote"]);
    assert_eq!(titles(&app, &token, &q("next -invoice")).await, vec!["Dinner"]);
    let got = titles(
        &app,
        &token,
        &format!("{}&contact={}", q("invoice*"), bob["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(got, vec!["Quarterly quote"]);
    let got = titles(&app, &token, &format!("{}&company=globex", q("invoice*"))).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        titles(&app, &token, "/u/alice/search.json?q=sync&type=Message").await,
        vec!["Weekly sync"]
    );
    assert!(
        titles(&app, &token, "/u/alice/search.json?q=sync&until=2000-01-01")
            .await
            .is_empty()
    );
    assert!(
        titles(&app, &token, "/u/alice/search.json?q=sync&collection=Notes")
            .await
            .len()
            == 1
    );
    // Bad searches: a 400 that names the problem.
    for (bad, why) in [
        (q("say \"hello"), "unbalanced"),
        (q(&vec!["w"; 10_000].join(" ")), "at most"),
        (format!("{}&since=yesterday", q("x")), "not a date"),
        (format!("{}&collection=Nope", q("x")), "not found"),
    ] {
        let r = app.get(&token, &bad).await;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(
            (400..500).contains(&status) && body.contains(why),
            "{bad}: {status} {body}"
        );
    }

    // A saved view of customers' activities is a feed.
    let r = post_json(
        &app,
        &token,
        "/api/views",
        json!({"name": "customers", "query": {"tags": ["customer"]}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    // Bob himself (his card is an activity of his) and what he sent.
    assert_eq!(
        titles(&app, &token, "/u/alice/views/customers.json").await,
        vec!["Quarterly quote", "Bob"]
    );
    let atom = app.text(&token, "/u/alice/views/customers.atom").await;
    assert!(atom.contains("rel=\"hub\""), "{atom}");
    let r = post_json(
        &app,
        &token,
        "/api/views",
        json!({"name": "bad", "query": {"q": "\"x"}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let eve = app.token("eve", "phone").await;
    assert_eq!(app.get(&eve, "/u/alice/views/customers.atom").await.status(), 404);
    assert_eq!(app.get(&eve, "/u/eve/views/customers.atom").await.status(), 404);
}

#[tokio::test]
async fn bad_contacts_are_refused_and_change_nothing() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    for (body, why) in [
        (json!({"name": "X", "identities": ["tel:abc"]}), "not a phone number"),
        (
            json!({"name": "X", "identities": ["mailto:bob"]}),
            "not an e-mail address",
        ),
        (json!({"name": "X", "identities": ["bob"]}), "not an identity"),
        (json!({"identities": []}), "needs a name"),
        (json!({"name": "X", "colour": "red"}), "unknown field"),
    ] {
        let r = post_json(&app, &token, "/api/contacts", body.clone()).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(text.contains(why), "{body}: {text}");
    }
    for (card, why) in [
        (
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nno colon here\r\nEND:VCARD\r\n".to_string(),
            "not a vCard property",
        ),
        ("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n".to_string(), "no END"),
        (
            format!(
                "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nPHOTO:data:image/png;base64,{}\r\nEND:VCARD\r\n",
                "A".repeat(10 << 20)
            ),
            "",
        ),
    ] {
        let r = app
            .client
            .post(app.url("/api/contacts"))
            .bearer_auth(&token)
            .header("content-type", "text/vcard")
            .body(card)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!((400..500).contains(&status) && text.contains(why), "{status} {text}");
    }
    let r = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(&token)
        .header("content-type", "text/vcard")
        .body(b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:\xff\xfe\r\nEND:VCARD\r\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(&app, &token, "/api/contacts").await, json!([]));
    assert_eq!(app.get(&token, "/api/contacts/nope").await.status(), 404);
    let _ = ATOM;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn changes_from_before_activities_are_indexed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path()).await;
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), db.clone(), |_| {}).await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let bob = new_contact(
        &app,
        &token,
        json!({"name": "Bob", "identities": ["mailto:bob@acme.example"]}),
    )
    .await;
    let id = bob["id"].as_str().unwrap().to_string();
    for i in 0..1200 {
        let r = notes(
            &app,
            &token,
            mail(
                &format!("old mail {i}"),
                "archived words",
                Some("bob@acme.example"),
                &[],
            ),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let gone = notes(&app, &token, mail("deleted one", "x", None, &[])).await;
    let gone = gone.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        app.client
            .delete(&gone)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    drop(app);
    // What a database from before activities holds: no index, every change a created Note.
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let clear_text = if db.starts_with("sqlite") {
        "INSERT INTO activity_text (activity_text) VALUES ('delete-all')"
    } else {
        "DELETE FROM activity_text"
    };
    for sql in [
        "DELETE FROM activity_people",
        clear_text,
        "DELETE FROM contacts",
        "DELETE FROM contact_identities",
        "DELETE FROM contact_tags",
        "DELETE FROM contact_companies",
        "UPDATE changes SET verb = 'Create', object_type = 'Note'",
        "INSERT INTO activity_backfill (user_id, upto) SELECT id, head_seq FROM users WHERE head_seq > 0",
    ] {
        sqlx::Executor::execute(&mut conn, sql).await.unwrap();
    }
    drop(conn);
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), db, |_| {}).await;
    crate::common::eventually("the earlier changes indexed", async || {
        app.store.backfill_due().await.unwrap().is_none()
    })
    .await;
    assert_eq!(json(&app, &token, "/api/contacts").await[0]["id"], id.as_str());
    let timeline = titles(&app, &token, &format!("/u/alice/contacts/{id}/timeline.json")).await;
    assert_eq!(timeline.len(), 1000, "a full page");
    assert_eq!(timeline[0], "old mail 1199");
    let found = titles(&app, &token, "/u/alice/search.json?q=archived").await;
    assert_eq!(found.len(), 1000);
    let stream = app.text(&token, "/u/alice/stream.atom?limit=1").await;
    assert!(
        stream.contains("<activity:verb>http://activitystrea.ms/schema/1.0/delete</activity:verb>"),
        "{stream}"
    );
}

#[tokio::test]
async fn a_device_syncs_contacts_as_vcard_items_and_the_api_sees_them() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    app.collection("alice", "Contacts").await;
    // A device's own FeedSync item in Contacts, its payload a vCard.
    let card = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Dora\r\nEMAIL:dora@acme.example\r\nEND:VCARD\r\n";
    let entry = format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync"><title>Dora</title><content type="text/vcard">{card}</content><updated>2026-01-01T00:00:00Z</updated><sx:sync id="dora-1" updates="1"><sx:history sequence="1" by="alice/phone"/></sx:sync></entry>"#
    );
    let r = app.post_entry(&token, "/atompub/alice/Contacts", entry).await;
    assert!(r.status().is_success(), "{}", r.status());
    let list = json(&app, &token, "/api/contacts").await;
    assert_eq!(list[0]["id"], "dora-1");
    assert_eq!(list[0]["identities"], json!(["mailto:dora@acme.example"]));
    // What the API changes, the device reads back in the collection's FeedSync feed.
    let r = app
        .client
        .patch(app.url("/api/contacts/dora-1"))
        .bearer_auth(&token)
        .json(&json!({"tags": ["friend"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let feed = app.text(&token, "/atompub/alice/Contacts").await;
    assert!(
        feed.contains("CATEGORIES:friend") && feed.contains("updates=\"2\""),
        "{feed}"
    );
    // Import by the API: the same card again changes nothing.
    let r = app
        .client
        .post(app.url("/api/contacts/import"))
        .bearer_auth(&token)
        .header("content-type", "text/vcard")
        .body(format!(
            "{card}BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Eve\r\nTEL:+1 415 555 0199\r\nEND:VCARD\r\n"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        (report["created"].as_u64(), report["unchanged"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let export = app.text(&token, "/api/contacts/export").await;
    assert!(
        export.contains("FN:Eve") && export.contains("TEL;VALUE=URI:tel:+14155550199"),
        "{export}"
    );
}

#[tokio::test]
async fn a_feed_built_from_its_last_version_is_the_feed_rendered_afresh() {
    let Some((app, token)) = alice_with_notes(default_db()).await else {
        return;
    };
    let bob = new_contact(
        &app,
        &token,
        json!({"name": "Bob", "identities": ["mailto:bob@acme.example", "tel:+14155550100"], "tags": ["vip"]}),
    )
    .await;
    let id = bob["id"].as_str().unwrap().to_string();
    for view in [
        json!({"name": "vips", "query": {"tags": ["vip"]}}),
        json!({"name": "mail", "query": {"type": "Message", "since": "2000-01-01", "collection": "Notes"}}),
    ] {
        assert_eq!(post_json(&app, &token, "/api/views", view).await.status(), 201);
    }
    let feeds = [
        "/u/alice/stream.json?limit=5".to_string(),
        "/u/alice/endpoints/laptop/stream.json?limit=5".to_string(),
        format!("/u/alice/contacts/{id}/timeline.json?limit=5"),
        "/u/alice/companies/acme/timeline.json?limit=5".to_string(),
        "/u/alice/views/vips.json?limit=5".to_string(),
        "/u/alice/views/mail.json?limit=5".to_string(),
        "/u/alice/search.json?q=word&limit=5".to_string(),
        "/u/alice/search.json?q=%22odd+word%22+-m3&limit=5".to_string(),
        format!("/u/alice/search.json?q=wor*&contact={id}&limit=5"),
    ];
    // The entries and why each is there, in order.
    let ids = |body: String| -> Vec<String> {
        let v: Value = serde_json::from_str(&body).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{} {}", i["id"].as_str().unwrap(), i["_feedmesh"]["why"]))
            .collect()
    };
    let mut n = 0;
    for round in 0..6 {
        for f in &feeds {
            let _ = app.text(&token, f).await; // the cached version the next one grows from
        }
        for _ in 0..round {
            n += 1;
            let from = if n % 2 == 0 {
                "bob@acme.example"
            } else {
                "carol@x.example"
            };
            let text = if n % 3 == 0 { "odd word" } else { "word odd" };
            let r = notes(
                &app,
                &token,
                mail(&format!("m{n}"), text, Some(from), &["tel:+14155550100"]),
            )
            .await;
            assert_eq!(r.status(), 201);
        }
        if round == 3 {
            // Carol becomes Bob's: the contacts changed, so his timeline and the view are read afresh.
            let r = app
                .client
                .patch(app.url(&format!("/api/contacts/{id}")))
                .bearer_auth(&token)
                .json(&json!({"identities": ["mailto:bob@acme.example", "tel:+14155550100", "mailto:carol@x.example"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        for (i, f) in feeds.iter().enumerate() {
            let grown = ids(app.text(&token, f).await);
            let fresh = ids(app.text(&token, &format!("{f}&fresh={round}{i}")).await);
            assert!(!fresh.is_empty() || round < 3, "{f} shows nothing");
            assert_eq!(grown, fresh, "{f} in round {round}");
        }
    }
}
