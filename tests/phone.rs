//! The phone: texts and calls as a phone app sends them (`POST /api/activities`, AS2 JSON or
//! Atom) and as Android backups hold them (`feedmesh phone import`, "SMS Backup & Restore"
//! XML), landing in the contact's timeline by the number, whatever its notation.

use reqwest::header;
use serde_json::{Value, json};

use crate::common::process::{feedmesh, ok};

async fn post(app: &crate::common::TestApp, token: &str, ct: &str, body: String) -> (u16, Value, String) {
    let r = app
        .client
        .post(app.url("/api/activities"))
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        location,
    )
}

async fn timeline(app: &crate::common::TestApp, token: &str, contact: &str) -> Vec<String> {
    let feed: Value = app
        .get(token, &format!("/u/alice/contacts/{contact}/timeline.json"))
        .await
        .json()
        .await
        .unwrap();
    feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A phone app's texts and calls over the API: AS2 JSON (the same activity twice is one
/// item) and Atom; both land in the contact's timeline by number; bad input is 4xx.
#[tokio::test]
async fn a_phone_posts_texts_and_calls_into_contact_timelines() {
    let app = crate::common::TestApp::spawn().await;
    let laptop = app.token("alice", "laptop").await;
    let phone = app.token("alice", "phone").await;
    let r = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(&laptop)
        .json(&json!({"name": "Ann", "identities": ["tel:415-555-0100"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ann: Value = r.json().await.unwrap();
    let ann = ann["id"].as_str().unwrap().to_string();

    let text = json!({"type": "Create", "id": "sms-1", "actor": "tel:+1 (415) 555-0100",
        "object": {"type": "TextMessage", "content": "running late, 10 min"}, "published": "2026-12-01T09:00:00Z"});
    let (status, v, location) = post(&app, &phone, "application/activity+json", text.to_string()).await;
    assert_eq!(status, 201, "{v}");
    assert!(location.contains("/atompub/alice/phone/"), "{location}");
    let (status, again, _) = post(&app, &phone, "application/activity+json", text.to_string()).await;
    assert_eq!(
        (status, &again["id"]),
        (200, &v["id"]),
        "the same activity again is the same item"
    );
    let call = json!({"type": "Create", "object": {"type": "Call", "duration": 125, "direction": "outgoing"},
        "to": ["tel:4155550100"], "published": "2026-12-01T09:05:00Z"});
    assert_eq!(
        post(&app, &phone, "application/activity+json", call.to_string())
            .await
            .0,
        201
    );
    let atom = r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/">
<title>Voicemail from Ann</title><author><name>Ann</name><uri>tel:+14155550100</uri></author>
<activity:object-type>http://activitystrea.ms/schema/1.0/call</activity:object-type>
<updated>2026-12-01T09:10:00Z</updated><content type="text">voicemail call, 30 s</content></entry>"#;
    assert_eq!(
        post(&app, &phone, "application/atom+xml;type=entry", atom.into())
            .await
            .0,
        201
    );

    let titles = timeline(&app, &laptop, &ann).await;
    assert!(
        titles
            .iter()
            .any(|t| t == "Text from +14155550100: running late, 10 min"),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t == "Call to +14155550100 (2 min 5 s)"),
        "{titles:?}"
    );
    assert!(titles.iter().any(|t| t == "Voicemail from Ann"), "{titles:?}");
    assert_eq!(titles.len(), 4, "the three and Ann's own card: {titles:?}");
    for (ct, body, want) in [
        ("application/activity+json", "{not json".to_string(), 400),
        (
            "application/activity+json",
            json!({"object": {"type": "Call", "duration": "soon"}, "actor": "tel:+14155550100"}).to_string(),
            400,
        ),
        (
            "application/activity+json",
            json!({"type": "Delete", "object": {"type": "Note"}}).to_string(),
            400,
        ),
        ("text/plain", "hello".to_string(), 415),
        ("application/atom+xml", "<entry><oops".to_string(), 400),
    ] {
        let (status, v, _) = post(&app, &phone, ct, body.clone()).await;
        assert_eq!(status, want, "{ct} {body}: {v}");
    }
    let (status, _, _) = post(&app, "fm_wrong", "application/activity+json", text.to_string()).await;
    assert_eq!(status, 401);
    assert_eq!(
        timeline(&app, &laptop, &ann).await.len(),
        4,
        "bad input changed nothing"
    );
}

const BACKUP: &str = r#"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<?xml-stylesheet type="text/xsl" href="sms.xsl"?>
<smses count="3">
  <sms protocol="0" address="(415) 555-0100" date="1764579600000" type="1" subject="null" body="Lunch? &#127829;" toa="null" sc_toa="null" service_center="null" read="1" status="-1" locked="0" readable_date="Dec 1, 2025" contact_name="Ann" />
  <sms protocol="0" address="+14155550100" date="1764579660000" type="2" subject="null" body="Sure, at 1" read="1" status="-1" locked="0" contact_name="Ann" />
  <sms protocol="0" address="AMAZON" date="1764579720000" type="1" body="Your parcel" read="1" contact_name="(Unknown)" />
</smses>"#;

const CALLS: &str = r#"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<calls count="2">
  <call number="4155550100" duration="65" date="1764580000000" type="1" presentation="1" contact_name="Ann" />
  <call number="+14155550100" duration="0" date="1764580100000" type="3" presentation="1" contact_name="Ann" />
</calls>"#;

/// `feedmesh phone import`: a backup of texts and one of calls into Ann's timeline (her
/// number written three ways), an alphanumeric sender kept without an identity; the same
/// files again add nothing; a backup with a DTD, or that is no backup, changes nothing.
#[tokio::test]
async fn an_android_backup_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let card = d.join("ann.vcf");
    std::fs::write(
        &card,
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann\r\nTEL:+1 415 555 0100\r\nEND:VCARD\r\n",
    )
    .unwrap();
    ok(d, &["contact", "import", "alice", card.to_str().unwrap()]);
    let texts = d.join("sms-20251201.xml");
    let calls = d.join("calls-20251201.xml");
    std::fs::write(&texts, BACKUP).unwrap();
    std::fs::write(&calls, CALLS).unwrap();
    let (success, _, err) = feedmesh(d, &["phone", "import", "alice", texts.to_str().unwrap()]);
    assert!(success, "{err}");
    assert!(err.contains("3 records added, 0 already there"), "{err}");
    let (_, _, err) = feedmesh(d, &["phone", "import", "alice", calls.to_str().unwrap()]);
    assert!(err.contains("2 records added"), "{err}");
    let (_, _, err) = feedmesh(d, &["phone", "import", "alice", texts.to_str().unwrap()]);
    assert!(err.contains("0 records added, 3 already there"), "{err}");

    let bomb = d.join("bomb.xml");
    std::fs::write(&bomb, "<?xml version=\"1.0\"?><!DOCTYPE smses [<!ENTITY a \"aaaa\">]><smses><sms address=\"1\" date=\"1\" body=\"&a;\"/></smses>").unwrap();
    let html = d.join("page.xml");
    std::fs::write(&html, "<html><body>not a backup</body></html>").unwrap();
    for (f, why) in [
        (&bomb, "DTD"),
        (&html, "not an SMS Backup"),
        (&d.join("none.xml"), "cannot read"),
    ] {
        let (success, _, err) = feedmesh(d, &["phone", "import", "alice", f.to_str().unwrap()]);
        assert!(!success && err.contains(why) && !err.contains("panicked"), "{err}");
    }

    let url = format!("sqlite://{}", d.join("feedmesh.db").display());
    let store = feedmesh::store::open(&url, crate::common::sealer_of(d)).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let col = store.collection(user.id, "phone").await.unwrap();
    let items = store.items_since(col.id, 0, 100).await.unwrap();
    let titles: Vec<String> = items
        .iter()
        .map(|r| r.item.current.payload.title.value.clone())
        .collect();
    assert_eq!(items.len(), 5, "{titles:?}");
    for want in [
        "Text from Ann: Lunch? \u{1F355}",
        "Text to Ann: Sure, at 1",
        "Text from AMAZON: Your parcel",
        "Call from Ann (1 min 5 s)",
        "Missed call from Ann",
    ] {
        assert!(titles.iter().any(|t| t == want), "{want} in {titles:?}");
    }
    let amazon = items
        .iter()
        .find(|r| r.item.current.payload.title.value.contains("AMAZON"))
        .unwrap();
    assert!(
        amazon.item.current.payload.authors[0].uri.is_none(),
        "no identity for a sender name"
    );
    let ann = store.contacts(user.id).await.unwrap();
    let ann = &ann[0];
    let linked = store
        .changes(user.id, None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.collection == "phone")
        .filter(|c| {
            let row = feedmesh::usecases::activities::index_change(
                c,
                feedmesh::domain::identity::Region::parse("US").unwrap(),
            );
            row.parties.iter().any(|(id, _, _)| id == "tel:+14155550100")
        })
        .count();
    assert_eq!(linked, 4, "Ann's four, whatever the notation ({})", ann.name);
}

fn bulk_backup(n: usize) -> String {
    let mut x = format!("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<smses count=\"{n}\">\n");
    for i in 0..n {
        x.push_str(&format!(
            "  <sms protocol=\"0\" address=\"+1415555{:04}\" date=\"{}\" type=\"1\" body=\"bulk {i}\" read=\"1\" />\n",
            i % 1000,
            1_700_000_000_000u64 + i as u64 * 1000
        ));
    }
    x.push_str("</smses>\n");
    x
}

/// A backup cut in the middle: the import stops with a reason naming where, every record
/// before it is whole, and the whole file later adds the rest once. `kill -9` in the middle
/// of an import: importing again adds exactly what is missing.
#[tokio::test]
async fn a_cut_backup_and_a_killed_import_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    const N: usize = 20_000;
    let full = bulk_backup(N);
    let cut = d.join("cut.xml");
    let at = full.find("body=\"bulk 150\"").unwrap();
    std::fs::write(
        &cut,
        format!("{}<sms address=\"+14155550000\" date=\"1\" body=\"broken", &full[..at]),
    )
    .unwrap();
    let (success, _, err) = feedmesh(d, &["phone", "import", "alice", cut.to_str().unwrap()]);
    assert!(!success && !err.contains("panicked"), "{err}");
    assert!(
        err.to_lowercase().contains("line") || err.to_lowercase().contains("position") || err.contains("byte"),
        "names where: {err}"
    );
    let url = format!("sqlite://{}", d.join("feedmesh.db").display());
    let count = async || -> Vec<String> {
        let store = feedmesh::store::open(&url, crate::common::sealer_of(d)).await.unwrap();
        let user = store.user("alice").await.unwrap();
        let Ok(col) = store.collection(user.id, "phone").await else {
            return Vec::new();
        };
        let items = store.items_since(col.id, 0, 100_000).await.unwrap();
        items
            .iter()
            .map(|r| r.item.current.payload.title.value.clone())
            .collect()
    };
    let before = count().await;
    assert!(before.len() <= 150, "only records before the cut: {}", before.len());
    assert!(before.iter().all(|t| t.contains("bulk ")), "each whole: {before:?}");

    let path = d.join("full.xml");
    std::fs::write(&path, &full).unwrap();
    let mut child = std::process::Command::new(crate::common::process::BIN)
        .args(["phone", "import", "alice", path.to_str().unwrap()])
        .env("FEEDMESH_DATA_DIR", d)
        .env_remove("FEEDMESH_DATABASE_URL")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has written some, before it is done.
    let t = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if count().await.len() > before.len() + 100 || t.elapsed() > std::time::Duration::from_secs(30) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = count().await.len();
    assert!(at_kill < N, "killed midway ({at_kill})");
    let (success, _, err) = feedmesh(d, &["phone", "import", "alice", path.to_str().unwrap()]);
    assert!(success, "{err}");
    let mut all = count().await;
    assert_eq!(all.len(), N, "(killed at {at_kill}) {err}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), N, "each once");
}
