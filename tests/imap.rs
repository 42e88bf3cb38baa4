//! The IMAP connector against Dovecot (started per test under a scratch directory): real
//! RFC 5322 messages (plain, HTML-only, multipart with attachments, non-UTF-8 charsets, a
//! 20 MB attachment, a malformed header, 500 recipients) into contact timelines; IDLE; a
//! UIDVALIDITY change; CONDSTORE flag changes; `kill -9` in the middle of a sync; and
//! servers that send garbage, hang, close, or announce a 2 GB literal.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::dovecot::{Dovecot, PASSWORD};

pub fn message(from: &str, to: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{id}>\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

use crate::common::api;

/// The e-mails of a feed (a contact's timeline also holds the contact's own changes).
async fn mails(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let mut all = items(app, token, path).await;
    all.retain(|i| i["_feedmesh"]["object_type"] == "Message");
    all
}

/// A message from Bob to alice.
pub fn from_bob(subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    message("Bob <bob@example.org>", "alice@example.net", subject, id, extra, body)
}

async fn contact(app: &TestApp, token: &str, name: &str, email: &str) -> String {
    let (status, c) = api(
        app,
        token,
        Method::POST,
        "/api/contacts",
        Some(json!({"name": name, "identities": [format!("mailto:{email}")]})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

async fn items(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let (status, feed) = api(app, token, Method::GET, path, None).await;
    assert_eq!(status, 200, "{path}: {feed}");
    feed["items"].as_array().cloned().unwrap_or_default()
}

/// The titles of the `imap` collection's members (AtomPub: one entry per item), sorted.
pub async fn members(app: &TestApp, token: &str) -> Vec<String> {
    let xml = app.text(token, &app.url("/atompub/alice/imap")).await;
    let mut t: Vec<String> = xml
        .split("<entry")
        .skip(1)
        .map(|e| {
            let title = &e[e.find("<title").unwrap()..];
            let title = &title[title.find('>').unwrap() + 1..];
            title[..title.find("</title>").unwrap()].to_string()
        })
        .collect();
    t.sort();
    t
}

fn titles(items: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = items
        .iter()
        .map(|i| i["title"].as_str().unwrap_or("").to_string())
        .collect();
    t.sort();
    t
}

/// A connector added over the API (201), as the API answered it.
async fn added(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, c) = api(app, token, Method::POST, "/api/connectors", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    c
}

async fn add_imap(app: &TestApp, token: &str, dc: &Dovecot, extra: Value) -> i64 {
    let mut options = json!({
        "host": "127.0.0.1",
        "port": dc.port.to_string(),
        "tls": "none",
        "user": "alice",
        "password": PASSWORD,
    });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    let (status, c) = api(
        app,
        token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "imap", "options": options})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert!(!c.to_string().contains(PASSWORD), "the password is never answered: {c}");
    c["id"].as_i64().unwrap()
}

async fn synced(app: &TestApp, token: &str, id: i64) -> Value {
    let path = format!("/api/connectors/{id}");
    // Sync times are in whole seconds: one second on, this sync's time differs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = api(app, token, Method::GET, &path, None).await.1["last_sync_at"].clone();
    let (status, v) = api(app, token, Method::POST, &format!("{path}/sync"), None).await;
    assert!(status < 300, "{v}");
    let mut last = Value::Null;
    crate::common::eventually_within("a sync", 60, async || {
        last = api(app, token, Method::GET, &path, None).await.1;
        last["last_sync_at"] != before && last["last_sync_at"].is_string()
    })
    .await;
    last
}

/// Real messages of every shape into the mailbox; each lands as an e-mail activity in the
/// timelines of its sender and recipients; attachments are blobs; a sync again adds nothing.
#[tokio::test]
async fn mail_of_every_shape_lands_in_contact_timelines() {
    let Some(dc) = Dovecot::start() else { return };
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let bob = contact(&app, &token, "Bob", "bob@example.org").await;
    let r499 = contact(&app, &token, "Recipient 499", "r499@example.com").await;

    dc.deliver(
        "alice",
        "INBOX",
        &from_bob("Lunch on Friday?", "m1@example.org", "", "Shall we?"),
    );
    dc.deliver(
        "alice",
        "INBOX",
        &from_bob(
            "Re: Lunch on Friday?",
            "m3@example.org",
            "In-Reply-To: <m2@example.net>\r\nReferences: <m1@example.org> <m2@example.net>\r\n",
            "Noon then.",
        ),
    );
    // What alice wrote, in Sent: it links to Bob too.
    dc.deliver(
        "alice",
        "Sent",
        &message(
            "Alice <alice@example.net>",
            "Bob <bob@example.org>",
            "Re: Lunch on Friday?",
            "m2@example.net",
            "In-Reply-To: <m1@example.org>\r\nReferences: <m1@example.org>\r\n",
            "Yes! Noon?",
        ),
    );
    dc.deliver(
        "alice",
        "INBOX",
        &from_bob(
            "HTML only",
            "h1@example.org",
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n",
            "<p onclick=\"steal()\">Hello <script>alert(1)</script><b>Alice</b></p>",
        ),
    );
    dc.deliver(
        "alice",
        "INBOX",
        &message(
            "=?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>",
            "alice@example.net",
            "=?ISO-8859-1?Q?R=E9sum=E9_du_caf=E9?=",
            "latin1@example.fr",
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n",
            "Caf=E9 cr=E8me",
        ),
    );
    let pdf = b"%PDF-1.4\n% feedmesh test\n".repeat(10);
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    use base64::Engine;
    let b64 = |b: &[u8]| {
        base64::engine::general_purpose::STANDARD
            .encode(b)
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let multipart = |id: &str, name: &str, ct: &str, bytes: &[u8]| {
        from_bob(
            &format!("Attached: {name}"),
            id,
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n",
            &format!(
                "--zz\r\nContent-Type: multipart/alternative; boundary=\"yy\"\r\n\r\n--yy\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n--yy\r\nContent-Type: text/html\r\n\r\n<p>See the <i>file</i>.</p>\r\n--yy--\r\n--zz\r\nContent-Type: {ct}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--zz--",
                b64(bytes)
            ),
        )
    };
    dc.deliver(
        "alice",
        "INBOX",
        &multipart("pdf@example.org", "report.pdf", "application/pdf", &pdf),
    );
    dc.deliver(
        "alice",
        "INBOX",
        &multipart("big@example.org", "big.bin", "application/octet-stream", &big),
    );
    // A malformed header (no colon, an unterminated encoded word, a broken address).
    dc.deliver(
        "alice",
        "INBOX",
        b"From: Bob <bob@example.org\r\nTo: alice@example.net\r\nThis line is no header\r\nSubject: =?utf-8?B?broken\r\nMessage-ID: <broken@example.org>\r\n\r\nStill readable.\r\n",
    );
    let many: Vec<String> = (0..500).map(|i| format!("R{i} <r{i}@example.com>")).collect();
    dc.deliver(
        "alice",
        "INBOX",
        &message(
            "Bob <bob@example.org>",
            &many.join(",\r\n "),
            "To everyone",
            "many@example.org",
            "",
            "Hello all.",
        ),
    );

    let id = add_imap(&app, &token, &dc, json!({})).await;
    let c = synced(&app, &token, id).await;
    assert_eq!(c["last_error"], Value::Null, "{c}");
    assert_eq!(c["account"], "alice@127.0.0.1", "{c}");

    let all = items(&app, &token, "/u/alice/search.json?collection=imap&limit=100").await;
    assert_eq!(all.len(), 9, "{:#?}", titles(&all));
    let t = titles(&all);
    assert!(t.contains(&"Résumé du café".to_string()), "{t:?}");
    assert!(
        t.contains(&"(no subject)".to_string()) || t.iter().any(|x| x.contains("broken")),
        "the malformed one is kept: {t:?}"
    );

    // Bob's timeline: what he wrote and what alice wrote to him, the thread linked.
    let timeline = mails(
        &app,
        &token,
        &format!("/u/alice/contacts/{bob}/timeline.json?limit=100"),
    )
    .await;
    let bt = titles(&timeline);
    assert!(
        bt.iter().filter(|x| x.as_str() == "Re: Lunch on Friday?").count() == 2,
        "his reply and alice's: {bt:?}"
    );
    assert!(bt.contains(&"Lunch on Friday?".to_string()), "{bt:?}");
    let atom = app
        .text(
            &token,
            &app.url(&format!("/u/alice/contacts/{bob}/timeline.atom?limit=100")),
        )
        .await;
    assert!(
        atom.contains("mid:m1@example.org"),
        "the thread as related links: {atom}"
    );
    assert!(atom.contains("urn:feedmesh:thread"), "{atom}");

    // HTML sanitised; the text alternative preferred.
    let html = all.iter().find(|i| i["title"] == "HTML only").unwrap();
    let h = html["content_html"].as_str().unwrap();
    assert!(
        h.contains("<b>Alice</b>") && !h.contains("script") && !h.contains("onclick"),
        "{h}"
    );
    let pdf_item = all.iter().find(|i| i["title"] == "Attached: report.pdf").unwrap();
    assert_eq!(pdf_item["content_text"].as_str().map(str::trim), Some("See the file."));
    assert!(
        all.iter()
            .any(|i| i["content_text"].as_str().is_some_and(|t| t.contains("Café crème")))
    );

    // Attachments are the user's blobs, byte for byte (20 MB included).
    for (title, bytes) in [("Attached: report.pdf", &pdf), ("Attached: big.bin", &big)] {
        let item = all.iter().find(|i| i["title"] == title).unwrap();
        let att = &item["attachments"][0];
        assert_eq!(att["size_in_bytes"].as_u64(), Some(bytes.len() as u64), "{item}");
        let url = att["url"].as_str().unwrap();
        assert!(url.starts_with("/api/blobs/"), "{url}");
        let got = app.client.get(app.url(url)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert!(
            got.bytes().await.unwrap().as_ref() == bytes.as_slice(),
            "{title} comes back whole"
        );
        let eve = app.token("eve", "laptop").await;
        let theirs = app.client.get(app.url(url)).bearer_auth(&eve).send().await.unwrap();
        assert_eq!(theirs.status(), 404, "another user never sees alice's attachment");
    }

    // The 500th recipient's timeline has the message.
    let r = titles(&mails(&app, &token, &format!("/u/alice/contacts/{r499}/timeline.json")).await);
    assert_eq!(r, ["To everyone"]);

    // A sync again takes nothing twice.
    let seq = |v: &[Value]| {
        v.iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let before = seq(&items(&app, &token, "/u/alice/stream.json?limit=100").await);
    synced(&app, &token, id).await;
    let again = seq(&items(&app, &token, "/u/alice/stream.json?limit=100").await);
    assert_eq!(again, before, "no change made by a second sync");
}

/// IDLE: a message delivered while the connector listens is in the contact's timeline
/// within seconds with no sync asked; a flag set at the server (CONDSTORE) shows at the
/// next sync; a folder recreated (a new UIDVALIDITY) duplicates nothing.
#[tokio::test]
async fn idle_brings_new_mail_and_a_new_uidvalidity_duplicates_nothing() {
    let Some(dc) = Dovecot::start() else { return };
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let bob = contact(&app, &token, "Bob", "bob@example.org").await;
    dc.doveadm(&["mailbox", "create", "-u", "alice", "Projects"], None);
    for i in 0..3 {
        dc.deliver(
            "alice",
            "Projects",
            &from_bob(&format!("Project {i}"), &format!("p{i}@example.org"), "", "plan"),
        );
    }
    dc.deliver("alice", "INBOX", &from_bob("Before", "before@example.org", "", "first"));
    let id = add_imap(&app, &token, &dc, json!({"mailbox": ["INBOX", "Projects"]})).await;
    synced(&app, &token, id).await;
    let path = format!("/api/connectors/{id}");
    crate::common::eventually_within("listening", 30, async || {
        api(&app, &token, Method::GET, &path, None).await.1["listening"] == true
    })
    .await;
    let timeline = format!("/u/alice/contacts/{bob}/timeline.json?limit=100");
    assert_eq!(mails(&app, &token, &timeline).await.len(), 4);

    let delivered = Instant::now();
    dc.deliver("alice", "INBOX", &from_bob("Pushed", "pushed@example.org", "", "now"));
    crate::common::eventually_within("the pushed message", 20, async || {
        titles(&mails(&app, &token, &timeline).await).contains(&"Pushed".to_string())
    })
    .await;
    eprintln!("IDLE delivery to timeline: {:?}", delivered.elapsed());

    // A flag set at the server reaches the item at the next sync (CONDSTORE).
    dc.doveadm(
        &[
            "flags",
            "add",
            "-u",
            "alice",
            "\\Flagged",
            "mailbox",
            "INBOX",
            "HEADER",
            "Message-ID",
            "before@example.org",
        ],
        None,
    );
    synced(&app, &token, id).await;
    let all = items(&app, &token, "/u/alice/search.json?collection=imap&limit=100").await;
    let before = all.iter().find(|i| i["title"] == "Before").unwrap();
    assert!(
        before["tags"].as_array().unwrap().iter().any(|t| t == "flagged"),
        "{before}"
    );

    // The folder deleted and made again, the same messages and one more: a new UIDVALIDITY.
    dc.doveadm(&["mailbox", "delete", "-u", "alice", "Projects"], None);
    dc.doveadm(&["mailbox", "create", "-u", "alice", "Projects"], None);
    for i in 0..4 {
        dc.deliver(
            "alice",
            "Projects",
            &from_bob(&format!("Project {i}"), &format!("p{i}@example.org"), "", "plan"),
        );
    }
    synced(&app, &token, id).await;
    assert_eq!(
        members(&app, &token).await,
        ["Before", "Project 0", "Project 1", "Project 2", "Project 3", "Pushed"],
        "nothing twice"
    );
    let (_, c) = api(&app, &token, Method::GET, &path, None).await;
    assert_eq!(c["last_error"], Value::Null, "{c}");
    let _ = Duration::ZERO;
}

/// What the fake server does when the connector fetches a message's body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fake {
    /// Sends part of a literal, then nothing.
    HangMidLiteral,
    /// Announces a 2 GB literal and sends bytes without end.
    HugeLiteral,
    /// Answers garbage.
    Garbage,
    /// Closes the connection.
    Close,
    /// Serves the message.
    Good,
}

/// An IMAP server of a few canned answers (a real one cannot be made to misbehave so):
/// one folder, one message, and a body fetch that does what `mode` says.
async fn fake_imap(mode: std::sync::Arc<std::sync::Mutex<Fake>>) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let msg = from_bob("From the fake", "fake@example.org", "", "hi");
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let (mode, msg) = (mode.clone(), msg.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let (tag, cmd) = line.split_once(' ').unwrap_or((&line, ""));
                    let cmd = cmd.to_ascii_uppercase();
                    let out: Vec<u8> = if cmd.starts_with("LOGIN") {
                        format!("{tag} OK logged in\r\n").into_bytes()
                    } else if cmd.starts_with("CAPABILITY") {
                        format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n").into_bytes()
                    } else if cmd.starts_with("SELECT") {
                        format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 2] n\r\n{tag} OK [READ-WRITE] selected\r\n").into_bytes()
                    } else if cmd.starts_with("UID FETCH") && cmd.contains("RFC822.SIZE") {
                        format!("* 1 FETCH (UID 1 RFC822.SIZE {})\r\n{tag} OK done\r\n", msg.len()).into_bytes()
                    } else if cmd.starts_with("UID FETCH") {
                        let m = *mode.lock().unwrap();
                        match m {
                            Fake::Good => {
                                let mut o =
                                    format!("* 1 FETCH (UID 1 FLAGS () BODY[] {{{}}}\r\n", msg.len()).into_bytes();
                                o.extend_from_slice(&msg);
                                o.extend_from_slice(format!(")\r\n{tag} OK done\r\n").as_bytes());
                                o
                            }
                            Fake::HangMidLiteral => {
                                let _ = w
                                    .write_all(
                                        format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\nFrom: Bo", msg.len()).as_bytes(),
                                    )
                                    .await;
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                            Fake::HugeLiteral => {
                                let _ = w.write_all(b"* 1 FETCH (UID 1 BODY[] {2147483648}\r\n").await;
                                let junk = vec![b'x'; 1 << 16];
                                while w.write_all(&junk).await.is_ok() {}
                                return;
                            }
                            Fake::Garbage => b"\x00\xff garbage )))) {{{\r\n\r\n".to_vec(),
                            Fake::Close => return,
                        }
                    } else if cmd.starts_with("LOGOUT") {
                        format!("* BYE bye\r\n{tag} OK\r\n").into_bytes()
                    } else {
                        format!("{tag} BAD unknown\r\n").into_bytes()
                    };
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Servers that hang mid-literal, announce a 2 GB literal, send garbage or close: each
/// refused with a reason, the connector retried later, nothing written, its cursor kept
/// (the message arrives once the server behaves).
#[tokio::test]
async fn hostile_servers_are_refused_and_the_cursor_kept() {
    let mode = std::sync::Arc::new(std::sync::Mutex::new(Fake::HangMidLiteral));
    let port = fake_imap(mode.clone()).await;
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let options = json!({"host": "127.0.0.1", "port": port.to_string(), "tls": "none", "user": "alice",
        "password": "pw", "mailbox": "INBOX", "timeout": "2"});
    let c = added(&app, &token, json!({"kind": "imap", "options": options})).await;
    let id = c["id"].as_i64().unwrap();
    let path = format!("/api/connectors/{id}");
    for (m, why) in [
        (Fake::HangMidLiteral, "nothing for 2 s"),
        (Fake::HugeLiteral, "more than it was asked for"),
        (Fake::Garbage, "not IMAP"),
        (Fake::Close, "closed"),
    ] {
        *mode.lock().unwrap() = m;
        let started = Instant::now();
        let (status, v) = api(&app, &token, Method::POST, &format!("{path}/sync"), None).await;
        assert!(status < 300, "{v}");
        let mut c = Value::Null;
        crate::common::eventually_within(&format!("a refused sync ({m:?})"), 30, async || {
            c = api(&app, &token, Method::GET, &path, None).await.1;
            c["last_error"].as_str().is_some_and(|e| e.contains(why))
        })
        .await;
        assert!(
            matches!(c["state"].as_str(), Some("active" | "failing")) && c["next_run_at"].is_string(),
            "{m:?}: {c}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{m:?} took {:?}",
            started.elapsed()
        );
        assert!(members(&app, &token).await.is_empty(), "{m:?}: nothing written");
    }
    *mode.lock().unwrap() = Fake::Good;
    let c = synced(&app, &token, id).await;
    assert_eq!(c["last_error"], Value::Null, "{c}");
    assert_eq!(members(&app, &token).await, ["From the fake"]);
    synced(&app, &token, id).await;
    assert_eq!(members(&app, &token).await, ["From the fake"], "once");
}

/// `kill -9` of `serve` in the middle of the first sync of 3,000 messages: after a
/// restart every message is there, each once.
#[tokio::test]
async fn kill_9_in_the_middle_of_a_sync_loses_and_duplicates_nothing() {
    use crate::common::process::{Proc, ok, serve_with};
    let Some(dc) = Dovecot::start() else { return };
    const N: usize = 3000;
    dc.fill_inbox(
        "alice",
        (0..N).map(|i| from_bob(&format!("bulk {i}"), &format!("bulk{i}@example.org"), "", "x")),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::test_db(dir.path()).await;
    let d = dir.path();
    let run = |args: &[&str]| ok(d, &[args, &["--database", db.as_str()]].concat());
    run(&["user", "add", "alice"]);
    let port = dc.port.to_string();
    let out = run(&[
        "connector",
        "add",
        "alice",
        "imap",
        "--allow-private-network",
        "--option",
        "host=127.0.0.1",
        "--option",
        &format!("port={port}"),
        "--option",
        "tls=none",
        "--option",
        "user=alice",
        "--option",
        &format!("password={PASSWORD}"),
        "--option",
        "mailbox=INBOX",
    ]);
    assert!(out.lines().next().is_some_and(|l| l.parse::<i64>().is_ok()), "{out}");
    // One store for every look (a pool per look would use up PostgreSQL's connections).
    let store = feedmesh::store::open(&db, crate::common::sealer_of(d)).await.unwrap();
    let user = store.user("alice").await.unwrap();
    let count = async || -> usize {
        match store.collection(user.id, "imap").await {
            Ok(col) => store.items_since(col.id, 0, 100_000).await.unwrap().len(),
            Err(_) => 0,
        }
    };
    let (child, _) = serve_with(d, &["--allow-private-network", "--database", &db]);
    let mut hub = Proc(child);
    crate::common::eventually_within("part of the sync", 60, async || count().await > 0).await;
    let at_kill = count().await;
    hub.0.kill().unwrap();
    hub.0.wait().unwrap();
    assert!(at_kill < N, "killed midway ({at_kill} of {N})");
    let (child, _) = serve_with(d, &["--allow-private-network", "--database", &db]);
    let _hub = Proc(child);
    crate::common::eventually_within("the whole mailbox", 120, async || count().await >= N).await;
    let col = store.collection(user.id, "imap").await.unwrap();
    let all = store.items_since(col.id, 0, 100_000).await.unwrap();
    let mut titles: Vec<String> = all.iter().map(|r| r.item.current.payload.title.value.clone()).collect();
    titles.sort();
    titles.dedup();
    assert_eq!(
        (all.len(), titles.len()),
        (N, N),
        "every message once (killed at {at_kill})"
    );
}

/// TLS: implicit (IMAPS) and STARTTLS, each trusting the server's CA through `ca_file`; the
/// same server without `ca_file` is refused (its certificate is not one the system trusts).
#[tokio::test]
async fn tls_implicit_and_starttls_with_a_ca_file() {
    let Some(dc) = Dovecot::start_tls() else { return };
    let (imaps, ca) = dc.tls.clone().unwrap();
    dc.deliver("alice", "INBOX", &from_bob("Over TLS", "tls@example.org", "", "secret"));
    let app = TestApp::spawn().await;
    let token = app.token("alice", "laptop").await;
    let ca = ca.display().to_string();
    let base = json!({"host": "127.0.0.1", "user": "alice", "password": PASSWORD, "mailbox": "INBOX"});
    let with = |extra: Value| {
        let mut o = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    for (collection, options) in [
        (
            "imaps",
            with(json!({"port": imaps.to_string(), "tls": "implicit", "ca_file": ca})),
        ),
        (
            "starttls",
            with(json!({"port": dc.port.to_string(), "tls": "starttls", "ca_file": ca})),
        ),
    ] {
        let c = added(
            &app,
            &token,
            json!({"kind": "imap", "collection": collection, "options": options}),
        )
        .await;
        synced(&app, &token, c["id"].as_i64().unwrap()).await;
        let got = titles(&items(&app, &token, &format!("/u/alice/search.json?collection={collection}")).await);
        assert_eq!(got, ["Over TLS"], "{collection}");
    }
    let options = with(json!({"port": imaps.to_string(), "tls": "implicit"}));
    let (status, c) = api(
        &app,
        &token,
        Method::POST,
        "/api/connectors",
        Some(json!({"kind": "imap", "collection": "untrusted", "options": options})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let path = format!("/api/connectors/{}", c["id"]);
    crate::common::eventually_within("the certificate refused", 30, async || {
        let c = api(&app, &token, Method::GET, &path, None).await.1;
        c["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS") && e.to_ascii_lowercase().contains("certificate"))
    })
    .await;
}

/// XOAUTH2 with a token from the OAuth runtime: an OAuth client registered for the
/// provider (oidc-provider), the connector added with `oauth_provider` and no password,
/// the round trip through the browser, then Dovecot takes the bearer token (checked by
/// RFC 7662 introspection at the provider) and the mailbox is read.
#[tokio::test]
async fn xoauth2_with_a_token_from_the_oauth_runtime() {
    let app = TestApp::spawn().await;
    let Some((issuer, _provider)) =
        crate::connectors::oidc_provider(&format!("{}/oauth/callback", app.base), &[]).await
    else {
        return;
    };
    let introspection = format!(
        "{}/token/introspection",
        issuer.replace("http://", "http://hub:hub-secret@")
    );
    let Some(dc) = Dovecot::start_oauth(&introspection) else {
        return;
    };
    dc.deliver("alice", "INBOX", &from_bob("Via XOAUTH2", "x@example.org", "", "hi"));
    let token = app.token("alice", "laptop").await;
    let client = json!({"provider": "mailhost", "client_id": "hub", "client_secret": "hub-secret",
        "authorize_url": format!("{issuer}/auth"), "token_url": format!("{issuer}/token"),
        "scope": "openid offline_access"});
    let (status, v) = api(&app, &token, Method::POST, "/api/oauth-clients", Some(client)).await;
    assert_eq!(status, 201, "{v}");
    let options = json!({"host": "127.0.0.1", "port": dc.port.to_string(), "tls": "none", "user": "alice",
        "oauth_provider": "mailhost", "mailbox": "INBOX"});
    let c = added(&app, &token, json!({"kind": "imap", "options": options})).await;
    assert_eq!(c["state"], "needs-auth", "{c}");
    let back = crate::connectors::authorise_in_browser(c["authorize_url"].as_str().unwrap()).await;
    let page = app.client.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connected"), "{page}");
    let path = format!("/api/connectors/{}", c["id"]);
    let mut last = Value::Null;
    crate::common::eventually_within("a pull over XOAUTH2", 30, async || {
        last = api(&app, &token, Method::GET, &path, None).await.1;
        last["last_sync_at"].is_string()
    })
    .await;
    assert_eq!(last["last_error"], Value::Null, "{last}");
    assert_eq!(
        titles(&items(&app, &token, "/u/alice/search.json?collection=imap").await),
        ["Via XOAUTH2"]
    );
}
