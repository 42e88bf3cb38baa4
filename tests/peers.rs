//! Real outside software reads what the hub serves: jing validates every Atom document
//! against RFC 4287's RELAX NG grammar; newsboat, feedparser and sfeed read the Atom and
//! RSS streams; JSON Feed 1.1 output is checked against the spec's schema.

use std::path::{Path, PathBuf};
use tokio::process::Command;

use crate::common::{ATOM_ENTRY, TestApp, node_with, peer, python_with, sync_entry};

struct Expected {
    title: &'static str,
    link: String,
    epoch: i64,
    text: String,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Six entries with titles, links, dates and content a reader must reproduce.
async fn published() -> (TestApp, String, Vec<Expected>, String) {
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    app.collection("alice", "Notes").await;
    let titles = [
        "Morning run",
        "Quote for Bob",
        "Fish & chips",
        "Über café",
        "Release 1.0",
        "Last one",
    ];
    let mut expected = Vec::new();
    for (i, title) in titles.iter().enumerate() {
        let day = i + 1;
        let link = format!("https://example.com/posts/{day}");
        let text = format!("Paragraph {day} with <b>bold</b> words");
        let body = format!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>{}</title><link href="{link}"/><updated>2026-03-0{day}T10:00:00Z</updated><content type="html">{}</content></entry>"#,
            title.replace('&', "&amp;"),
            format!("<p>{text}</p>")
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        );
        let r = app.post_entry(&token, "/atompub/alice/Notes", body).await;
        assert_eq!(r.status(), 201);
        expected.push(Expected {
            title,
            link,
            epoch: 1_772_359_200 + (i as i64) * 86_400,
            text: "bold".into(),
        });
    }
    let created: serde_json::Value = app.feed_key(&token, "/u/alice/stream.atom").await.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    (app, token, expected, key)
}

/// Fetches a URL on a blocking thread-free path: the test's own client.
async fn fetch(app: &TestApp, token: &str, path: &str) -> String {
    app.get(token, path).await.text().await.unwrap()
}

async fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().await.expect("run peer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// RFC 4287's Schematron rules, which RELAX NG cannot state: an author for the feed or
/// every entry, and content or an alternate link in every entry.
fn schematron_rules(doc: &str) {
    // Conflict versions inside sx:conflicts are extension content, not Atom entries.
    let mut doc = doc.to_string();
    while let (Some(a), Some(b)) = (doc.find("<sx:conflicts>"), doc.find("</sx:conflicts>")) {
        doc.replace_range(a..b + "</sx:conflicts>".len(), "");
    }
    let (head, entries) = doc.split_once("<entry").unwrap_or((&doc, ""));
    let feed_author = head.contains("<author>");
    for e in entries.split("<entry").filter(|e| !e.trim().is_empty()) {
        let own = e.split("<sx:sync").next().unwrap_or(e);
        assert!(feed_author || own.contains("<author>"), "entry without author: {own}");
        assert!(
            own.contains("<content") || own.contains("rel=\"alternate\""),
            "entry without content or alternate: {own}"
        );
    }
}

#[tokio::test]
async fn every_atom_document_validates_with_jing() {
    let Some(jing) = peer("jing") else { return };
    let (app, token, _, _) = published().await;
    // Add the hard cases: conflicts, a tombstone, a media resource, xhtml content.
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    app.post_entry(&token, "/atompub/alice/Notes", sync_entry("c1", 1, false, &base, "v1"))
        .await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        sync_entry(
            "c1",
            2,
            false,
            &[(2, "2026-01-01T10:05:00Z", "alice/laptop"), base[0]],
            "a",
        ),
    )
    .await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        sync_entry(
            "c1",
            2,
            false,
            &[(2, "2026-01-01T10:07:00Z", "alice/phone"), base[0]],
            "b",
        ),
    )
    .await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        sync_entry(
            "d1",
            2,
            true,
            &[(2, "2026-01-01T10:05:00Z", "alice/laptop"), base[0]],
            "gone",
        ),
    )
    .await;
    let media = app
        .client
        .post(app.url("/atompub/alice/Notes"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .header("slug", "photo.png")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    let member = media.headers()["location"].to_str().unwrap().to_string();
    let xhtml = r#"<entry xmlns="http://www.w3.org/2005/Atom"><title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">A <em>rich</em> title</div></title><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Rich <b>body</b></p></div></content></entry>"#;
    let r = app
        .client
        .post(app.url("/atompub/alice/Notes"))
        .bearer_auth(&token)
        .header("content-type", ATOM_ENTRY)
        .body(xhtml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // People: a contact, a mail from them, a view; their timeline, a search and the view
    // carry activity: and fm:why elements, which must stay valid Atom.
    let r = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Bob", "identities": ["mailto:bob@example.com"], "tags": ["vip"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bob = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mail = r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/"><title>Quote</title><author><name>Bob</name><email>bob@example.com</email></author><link rel="mentioned" href="tel:+14155550100" title="Ann"/><activity:object-type>email</activity:object-type><content type="text">the price</content></entry>"#;
    assert_eq!(app.post_entry(&token, "/atompub/alice/Notes", mail).await.status(), 201);
    let r = app
        .client
        .post(app.url("/api/views"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "vips", "query": {"tags": ["vip"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let dir = tempfile::tempdir().unwrap();
    let docs = [
        ("collection.atom", fetch(&app, &token, "/atompub/alice/Notes").await),
        (
            "timeline.atom",
            fetch(&app, &token, &format!("/u/alice/contacts/{bob}/timeline.atom")).await,
        ),
        ("search.atom", fetch(&app, &token, "/u/alice/search.atom?q=price").await),
        ("view.atom", fetch(&app, &token, "/u/alice/views/vips.atom").await),
        ("stream.atom", fetch(&app, &token, "/u/alice/stream.atom").await),
        (
            "endpoint.atom",
            fetch(&app, &token, "/u/alice/endpoints/laptop/stream.atom").await,
        ),
        ("member.atom", app.text(&token, &member).await),
        ("conflicted.atom", fetch(&app, &token, "/atompub/alice/Notes/c1").await),
    ];
    assert!(
        docs[0].1.contains("<sx:conflicts>") && docs[0].1.contains("deleted=\"true\"") && docs[0].1.contains("src=")
    );
    assert!(
        docs[1]
            .1
            .contains("<fm:why identity=\"mailto:bob@example.com\" role=\"actor\""),
        "{}",
        docs[1].1
    );
    assert!(docs[2].1.contains("<title type=\"text\">Quote</title>") && docs[3].1.contains("Quote"));
    for (name, doc) in &docs {
        let path = dir.path().join(name);
        std::fs::write(&path, doc).unwrap();
        let (ok, out) = run(Command::new(&jing).arg("-c").arg(fixture("atom.rnc")).arg(&path)).await;
        assert!(ok, "jing rejects {name}:\n{out}\n{doc}");
        schematron_rules(doc);
    }
    // The schema really checks: a feed without atom:id fails.
    let broken = docs[4].1.replacen("<id>", "<idx>", 1).replacen("</id>", "</idx>", 1);
    let path = dir.path().join("broken.atom");
    std::fs::write(&path, broken).unwrap();
    let (ok, _) = run(Command::new(&jing).arg("-c").arg(fixture("atom.rnc")).arg(&path)).await;
    assert!(!ok, "jing accepted a feed without an id");
}

#[tokio::test]
async fn feedparser_reads_atom_and_rss() {
    let Some(python) = python_with("feedparser") else {
        return;
    };
    let (app, _, expected, key) = published().await;
    let script = r#"
import feedparser, json, sys, calendar
d = feedparser.parse(sys.argv[1])
out = {"version": d.version, "bozo": d.bozo, "status": d.get("status"), "entries": []}
for e in d.entries:
    content = e.content[0].value if "content" in e else e.get("summary", "")
    date = e.get("updated_parsed") or e.get("published_parsed")
    out["entries"].append({"title": e.title, "link": e.link, "epoch": calendar.timegm(date), "content": content})
print(json.dumps(out))
"#;
    for (ext, version) in [("atom", "atom10"), ("rss", "rss20")] {
        let url = app.url(&format!("/u/alice/stream.{ext}?key={key}"));
        let (ok, out) = run(Command::new(&python).args(["-c", script, &url])).await;
        assert!(ok, "{out}");
        let parsed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(parsed["status"], 200, "{ext}");
        assert_eq!(parsed["version"], version, "{ext}");
        assert_eq!(parsed["bozo"], serde_json::json!(false), "{ext}: {out}");
        let entries = parsed["entries"].as_array().unwrap();
        assert_eq!(entries.len(), expected.len(), "{ext}");
        for exp in &expected {
            let e = entries
                .iter()
                .find(|e| e["title"] == exp.title)
                .unwrap_or_else(|| panic!("{ext}: {} missing: {out}", exp.title));
            assert_eq!(e["link"], exp.link.as_str(), "{ext}");
            assert_eq!(e["epoch"], exp.epoch, "{ext}: date of {}", exp.title);
            assert!(
                e["content"].as_str().unwrap().contains(&exp.text),
                "{ext}: content of {}",
                exp.title
            );
        }
    }
}

#[tokio::test]
async fn newsboat_reads_atom_and_rss() {
    let Some(newsboat) = peer("newsboat") else {
        return;
    };
    let Some(sqlite3) = peer("sqlite3") else {
        return;
    };
    let (app, _, expected, key) = published().await;
    for ext in ["atom", "rss"] {
        let home = tempfile::tempdir().unwrap();
        let url = app.url(&format!("/u/alice/stream.{ext}?key={key}"));
        std::fs::write(home.path().join("urls"), format!("{url}\n")).unwrap();
        let cache = home.path().join("cache.db");
        let url_file = home.path().join("urls");
        let (ok, out) = run(Command::new(&newsboat)
            .env("HOME", home.path())
            .arg("-u")
            .arg(&url_file)
            .arg("-c")
            .arg(&cache)
            .args(["-C", "/dev/null", "-x", "reload", "print-unread"]))
        .await;
        assert!(
            ok && out.contains(&format!("{} unread articles", expected.len())),
            "{ext}: {out}"
        );
        let (ok, rows) = run(Command::new(&sqlite3)
            .arg("-separator")
            .arg("\t")
            .arg(&cache)
            .arg("select title, url, pubDate, content from rss_item"))
        .await;
        assert!(ok, "{rows}");
        for exp in &expected {
            let row = rows
                .lines()
                .find(|l| l.starts_with(&format!("{}\t", exp.title)))
                .unwrap_or_else(|| panic!("{ext}: newsboat lacks {}: {rows}", exp.title));
            let cols: Vec<&str> = row.splitn(4, '\t').collect();
            assert_eq!(cols[1], exp.link, "{ext}");
            assert_eq!(
                cols[2].parse::<i64>().unwrap(),
                exp.epoch,
                "{ext}: date of {}",
                exp.title
            );
            assert!(cols[3].contains(&exp.text), "{ext}: content of {}: {row}", exp.title);
        }
    }
}

#[tokio::test]
async fn sfeed_reads_atom_and_rss() {
    let Some(sfeed) = peer("sfeed") else { return };
    let (app, token, expected, _) = published().await;
    for ext in ["atom", "rss"] {
        let body = fetch(&app, &token, &format!("/u/alice/stream.{ext}")).await;
        let mut child = Command::new(&sfeed)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let tsv = String::from_utf8(out.stdout).unwrap();
        assert_eq!(tsv.lines().count(), expected.len(), "{ext}: {tsv}");
        for exp in &expected {
            let row = tsv
                .lines()
                .find(|l| l.split('\t').nth(1) == Some(exp.title))
                .unwrap_or_else(|| panic!("{ext}: sfeed lacks {}: {tsv}", exp.title));
            let cols: Vec<&str> = row.split('\t').collect();
            assert_eq!(
                cols[0].parse::<i64>().unwrap(),
                exp.epoch,
                "{ext}: date of {}",
                exp.title
            );
            assert_eq!(cols[2], exp.link, "{ext}");
            assert!(cols[3].contains(&exp.text), "{ext}: content of {}", exp.title);
            assert_eq!(cols[4], "html", "{ext}");
        }
    }
}

#[tokio::test]
async fn json_feed_matches_the_1_1_schema_and_carries_every_item() {
    let Some(python) = python_with("jsonschema") else {
        return;
    };
    let (app, token, expected, _) = published().await;
    let body = fetch(&app, &token, "/u/alice/stream.json").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.json");
    std::fs::write(&path, &body).unwrap();
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1])); feed = json.load(open(sys.argv[2]))
jsonschema.validate(feed, schema, format_checker=jsonschema.FormatChecker())
print("valid")
"#;
    let schema = fixture("jsonfeed-1.1.schema.json");
    let (ok, out) = run(Command::new(&python).args(["-c", script]).arg(&schema).arg(&path)).await;
    assert!(ok, "{out}\n{body}");
    // The schema really checks: an item without id fails.
    let mut broken: serde_json::Value = serde_json::from_str(&body).unwrap();
    broken["items"][0].as_object_mut().unwrap().remove("id");
    std::fs::write(&path, broken.to_string()).unwrap();
    let (ok, _) = run(Command::new(&python).args(["-c", script]).arg(&schema).arg(&path)).await;
    assert!(!ok, "the schema accepted an item without id");

    let feed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = feed["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len());
    for exp in &expected {
        let item = items.iter().find(|i| i["title"] == exp.title).unwrap();
        assert_eq!(item["url"], exp.link.as_str());
        let date = chrono::DateTime::parse_from_rfc3339(item["date_modified"].as_str().unwrap()).unwrap();
        assert_eq!(date.timestamp(), exp.epoch);
        assert!(item["content_html"].as_str().unwrap().contains(&exp.text));
    }
}

#[tokio::test]
async fn feedsmith_reads_json_feed_atom_and_rss() {
    let Some((node, dir)) = node_with("feedsmith") else {
        return;
    };
    let (app, token, expected, _) = published().await;
    let script = r#"
import { parseFeed } from 'feedsmith';
import { readFileSync } from 'node:fs';
const { format, feed } = parseFeed(readFileSync(process.argv[1], 'utf8'));
const items = (feed.items || feed.entries || []).map((i) => ({
  title: typeof i.title === 'string' ? i.title : i.title?.value ?? i.title,
  link: i.url ?? i.link ?? (i.links || []).find((l) => !l.rel || l.rel === 'alternate')?.href,
  date: i.date_modified ?? i.pubDate ?? i.updated,
  content: i.content_html ?? i.description ?? i.content ?? '',
}));
console.log(JSON.stringify({ format, items }));
"#;
    let files = tempfile::tempdir().unwrap();
    for (ext, format) in [("json", "json"), ("atom", "atom"), ("rss", "rss")] {
        let path = files.path().join(format!("feed.{ext}"));
        std::fs::write(&path, fetch(&app, &token, &format!("/u/alice/stream.{ext}")).await).unwrap();
        let (ok, out) = run(Command::new(&node)
            .current_dir(&dir)
            .args(["--input-type=module", "-e", script])
            .arg(&path))
        .await;
        assert!(ok, "{ext}: {out}");
        let parsed: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{ext}: {e}: {out}"));
        assert_eq!(parsed["format"], format, "{ext}");
        let items = parsed["items"].as_array().unwrap();
        assert_eq!(items.len(), expected.len(), "{ext}: {out}");
        for exp in &expected {
            let item = items
                .iter()
                .find(|i| i["title"] == exp.title)
                .unwrap_or_else(|| panic!("{ext}: {} missing: {out}", exp.title));
            assert_eq!(item["link"], exp.link.as_str(), "{ext}");
            let date = item["date"].as_str().unwrap();
            let epoch = chrono::DateTime::parse_from_rfc3339(date)
                .or_else(|_| chrono::DateTime::parse_from_rfc2822(date))
                .unwrap_or_else(|e| panic!("{ext}: date {date}: {e}"))
                .timestamp();
            assert_eq!(epoch, exp.epoch, "{ext}: date of {}", exp.title);
            assert!(
                item["content"].to_string().contains(&exp.text),
                "{ext}: content of {}: {item}",
                exp.title
            );
        }
    }
}
