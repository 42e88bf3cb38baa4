//! The reading APIs with real reader apps (../shared/specs/reader-apis.md): newsboat 2.21
//! in its `feedhq` (Google Reader) and `miniflux` modes, and the PyPI clients
//! `google-reader`, `miniflux` and `freshrss-api` (Fever), all sharing one user's read and
//! starred state; then what a client never sends (bad tokens, another user's ids).

use std::path::Path;
use std::time::Duration;

use feedmesh::usecases::logins;
use serde_json::Value;
use tokio::process::Command;

use crate::common::{self, TestApp, entry, eventually};

const PASSWORD: &str = "reader pass 42";

/// Alice with a password, a laptop that wrote `n` notes, and its token.
async fn alice_with_notes(app: &TestApp, n: usize) -> String {
    let token = app.token("alice", "laptop").await;
    logins::set_password(app.store.as_ref(), "alice", PASSWORD)
        .await
        .unwrap();
    app.collection("alice", "Notes").await;
    for i in 1..=n {
        let title = if i == 1 {
            "&lt;script&gt;alert(1)&lt;/script&gt; note 1".to_string()
        } else {
            format!("note {i}")
        };
        let r = app
            .post_entry(&token, "/atompub/alice/Notes", entry(&title, "some text"))
            .await;
        assert_eq!(r.status(), 201);
    }
    token
}

async fn newsboat(home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("newsboat")
        .env("HOME", home)
        .args(args)
        .output()
        .await
        .expect("newsboat runs (apt-get install newsboat)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn newsboat_home(config: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".newsboat")).unwrap();
    std::fs::write(home.path().join(".newsboat/urls"), "").unwrap();
    std::fs::write(home.path().join(".newsboat/config"), config).unwrap();
    home
}

/// A Python client run as a script; its last line of output is JSON.
async fn python(py: &Path, script: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The ids the Google Reader API says are unread, for `auth`.
async fn unread_ids(app: &TestApp, auth: &str) -> Vec<String> {
    let r = app
        .client
        .get(app.url(
            "/api/greader/reader/api/0/stream/items/ids?s=user/-/state/com.google/reading-list&n=100&xt=user/-/state/com.google/read",
        ))
        .header("Authorization", format!("GoogleLogin auth={auth}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["itemRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// A Google Reader GET with a ClientLogin token.
async fn gr_get(app: &TestApp, auth: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("Authorization", format!("GoogleLogin auth={auth}"))
        .send()
        .await
        .unwrap()
}

async fn new_app_password(app: &TestApp, name: &str) -> String {
    logins::add_app_password(app.store.as_ref(), "alice", name)
        .await
        .unwrap()
        .password
}

async fn client_login(app: &TestApp, user: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/greader/accounts/ClientLogin"))
        .form(&[("Email", user), ("Passwd", password)])
        .send()
        .await
        .unwrap()
}

async fn auth_of(app: &TestApp) -> String {
    let body = client_login(app, "alice", PASSWORD).await.text().await.unwrap();
    body.lines().find_map(|l| l.strip_prefix("Auth=")).unwrap().to_string()
}

/// tmux on a socket of its own, for one interactive newsboat.
struct Tmux(String);

impl Tmux {
    async fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    async fn screen_shows(&self, what: &str) {
        for _ in 0..100 {
            if self.run(&["capture-pane", "-p", "-t", "nb"]).await.contains(what) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "newsboat never showed {what:?}: {}",
            self.run(&["capture-pane", "-p", "-t", "nb"]).await
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .arg("kill-server")
            .output();
    }
}

#[tokio::test]
async fn newsboat_reads_through_google_reader_marks_one_read_and_google_reader_sees_it() {
    if common::peer("newsboat").is_none() || common::peer("tmux").is_none() {
        return;
    }
    let Some(py) = common::python_with("google_reader") else {
        return;
    };
    let app = TestApp::spawn().await;
    alice_with_notes(&app, 3).await;
    let home = newsboat_home(&format!(
        "urls-source \"feedhq\"\nfeedhq-url \"{}/api/greader\"\nfeedhq-login \"alice\"\nfeedhq-password \"{PASSWORD}\"\n\
         feedhq-show-special-feeds no\nfeedhq-flag-star \"s\"\n",
        app.base
    ));
    let (ok, out) = newsboat(home.path(), &["-x", "reload", "print-unread"]).await;
    assert!(ok && out.contains("3 unread articles"), "{out}");
    // The entries as newsboat stored them: Google Reader's long ids, the title as sent.
    let db = home.path().join(".newsboat/cache.db");
    let titles = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("select guid || ' ' || title from rss_item order by guid")
        .output()
        .unwrap();
    let titles = String::from_utf8_lossy(&titles.stdout);
    assert!(
        titles.contains("tag:google.com,2005:reader/item/0000000000000001 <script>alert(1)</script> note 1"),
        "{titles}"
    );

    // Open the feed of Notes (after Everything and the laptop's), then its newest article:
    // newsboat marks it read on the hub (edit-tag).
    let tmux = Tmux(format!("feedmesh-{}", std::process::id()));
    let cmd = format!("env HOME={} newsboat", home.path().display());
    tmux.run(&["new-session", "-d", "-s", "nb", "-x", "150", "-y", "40", &cmd])
        .await;
    tmux.screen_shows("Your feeds").await;
    tmux.run(&["send-keys", "-t", "nb", "Down", "Down", "Enter"]).await;
    tmux.screen_shows("Articles in feed 'Notes'").await;
    tmux.run(&["send-keys", "-t", "nb", "Enter"]).await;
    tmux.screen_shows("Article 'note 3'").await;
    // Back to the list, then quit: newsboat has sent its marks by the time it is gone.
    tmux.run(&["send-keys", "-t", "nb", "q"]).await;
    tmux.screen_shows("Articles in feed 'Notes'").await;
    tmux.run(&["send-keys", "-t", "nb", "q", "q"]).await;
    let auth = auth_of(&app).await;
    eventually("newsboat's read mark reaches the hub", async || {
        unread_ids(&app, &auth).await == ["2", "1"]
    })
    .await;
    drop(tmux);

    // google-reader (PyPI) sees it read, the others unread.
    let script = r#"
import json, os, google_reader
c = google_reader.Client(os.environ["BASE"])
auth = c.login("alice", os.environ["PW"])
token = c.get_token(auth)
subs = c.list_subscriptions(auth)
unread = c.get_stream_items_ids(auth, "user/-/state/com.google/reading-list", limit=50, exclude_target="user/-/state/com.google/read")
items = c.get_stream_items_contents(auth, token, ["3", "1"])
print(json.dumps({
  "subs": [s.title for s in subs],
  "unread": [r.id for r in unread.item_refs],
  "items": [{"id": i.id, "title": i.title, "read": "user/-/state/com.google/read" in i.categories} for i in items.items],
  "user": c.get_user_info(auth).user_name,
}))
"#;
    let base = format!("{}/api/greader", app.base);
    let v = python(&py, script, &[("BASE", &base), ("PW", PASSWORD)]).await;
    assert_eq!(v["user"], "alice");
    assert_eq!(v["unread"], serde_json::json!(["2", "1"]), "{v}");
    let subs: Vec<&str> = v["subs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(subs.contains(&"Everything") && subs.contains(&"Notes"), "{subs:?}");
    assert_eq!(v["items"][0]["id"], "tag:google.com,2005:reader/item/0000000000000003");
    assert_eq!(v["items"][0]["read"], true);
    assert_eq!(v["items"][1]["read"], false);

    // newsboat reloads and takes the hub's state: 2 unread.
    let (_, out) = newsboat(home.path(), &["-x", "reload", "print-unread"]).await;
    assert!(out.contains("2 unread articles"), "{out}");
}

#[tokio::test]
async fn newsboat_and_the_miniflux_client_share_read_and_starred_state() {
    if common::peer("newsboat").is_none() {
        return;
    }
    let Some(py) = common::python_with("miniflux") else {
        return;
    };
    let app = TestApp::spawn().await;
    alice_with_notes(&app, 3).await;
    let app_password = new_app_password(&app, "miniflux").await;
    let home = newsboat_home(&format!(
        "urls-source \"miniflux\"\nminiflux-url \"{}/api/miniflux\"\nminiflux-login \"alice\"\nminiflux-password \"{PASSWORD}\"\n",
        app.base
    ));
    let (ok, out) = newsboat(home.path(), &["-x", "reload", "print-unread"]).await;
    assert!(ok && out.contains("3 unread articles"), "{out}");

    // The official client, once with the password (Basic) and once with an app password as
    // X-Auth-Token: marks one read and stars another.
    let script = r#"
import json, os, miniflux
base = os.environ["BASE"]
c = miniflux.Client(base, username="alice", password=os.environ["PW"])
me = c.me()
feeds = c.get_feeds()
unread = c.get_entries(status="unread", limit=10)
c.update_entries([unread["entries"][0]["id"]], status="read")
k = miniflux.Client(base, api_key=os.environ["APP"])
k.toggle_bookmark(unread["entries"][1]["id"])
after = k.get_entries(status="unread", limit=10)
starred = k.get_entries(starred=True)
print(json.dumps({"me": me["username"], "feeds": [f["title"] for f in feeds],
  "before": [e["id"] for e in unread["entries"]], "after": [e["id"] for e in after["entries"]],
  "starred": [e["id"] for e in starred["entries"]],
  "title": unread["entries"][2]["title"], "published": unread["entries"][0]["published_at"]}))
"#;
    let base = format!("{}/api/miniflux", app.base);
    let v = python(
        &py,
        script,
        &[("BASE", &base), ("PW", PASSWORD), ("APP", &app_password)],
    )
    .await;
    assert_eq!(v["me"], "alice");
    assert_eq!(v["before"], serde_json::json!([3, 2, 1]), "{v}");
    assert_eq!(v["after"], serde_json::json!([2, 1]), "{v}");
    assert_eq!(v["starred"], serde_json::json!([2]), "{v}");
    assert_eq!(v["title"], "<script>alert(1)</script> note 1");
    assert!(v["published"].as_str().unwrap().ends_with('Z'), "{v}");

    // newsboat sees the read mark on its next reload.
    let (_, out) = newsboat(home.path(), &["-x", "reload", "print-unread"]).await;
    assert!(out.contains("2 unread articles"), "{out}");

    // A wrong password: 401 with a JSON reason; newsboat says it found nothing and exits 1.
    let r = app
        .client
        .get(app.url("/api/miniflux/v1/feeds"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.unwrap()["error_message"].is_string());
}

#[tokio::test]
async fn fever_clients_read_mark_and_save_with_an_app_password() {
    let Some(py) = common::python_with("freshrss_api") else {
        return;
    };
    let app = TestApp::spawn().await;
    alice_with_notes(&app, 3).await;
    let app_password = new_app_password(&app, "fever").await;
    let script = r#"
import json, os
from freshrss_api import FreshRSSAPI
c = FreshRSSAPI(host=os.environ["BASE"], username="alice", password=os.environ["APP"])
groups = c.get_groups()
feeds = c.get_feeds()
unread = c.get_unreads()
r = c.set_mark(as_="read", id=unread[0].id)
s = c.set_mark(as_="saved", id=unread[1].id)
saved = c.get_saved()
try:
    FreshRSSAPI(host=os.environ["BASE"], username="alice", password="wrong")
    refused = False
except Exception:
    refused = True
print(json.dumps({"groups": [g["title"] for g in groups["groups"]],
  "feeds_groups": groups["feeds_groups"], "feeds": [f["title"] for f in feeds["feeds"]],
  "unread": sorted(i.id for i in unread), "after_read": r.get("unread_item_ids"),
  "after_save": s.get("saved_item_ids"), "saved": [i.id for i in saved],
  "titles": sorted(i.title for i in unread), "refused": refused}))
"#;
    let v = python(&py, script, &[("BASE", &app.base), ("APP", &app_password)]).await;
    assert!(v["groups"].as_array().unwrap().contains(&"Collections".into()), "{v}");
    assert!(v["feeds"].as_array().unwrap().contains(&"Notes".into()), "{v}");
    // feed_ids travel as a comma string.
    assert!(v["feeds_groups"][0]["feed_ids"].is_string(), "{v}");
    assert_eq!(v["unread"], serde_json::json!([1, 2, 3]), "{v}");
    let read_id = v["unread"][0].as_u64().unwrap();
    let after: Vec<u64> = v["after_read"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(after.len(), 2, "{v}");
    assert!(!after.contains(&read_id));
    assert_eq!(v["saved"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["refused"], true);
    assert!(v["titles"][0].as_str().unwrap().contains("<script>"), "{v}");

    // A wrong key is auth 0 with HTTP 200, as Fever clients expect.
    let r = app
        .client
        .post(app.url("/api/fever?api"))
        .form(&[("api_key", "0123456789abcdef0123456789abcdef")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["auth"], 0);
}

/// The read state's rules (on SQLite, and on PostgreSQL in the second pass): marks, "mark all as read" of the
/// stream (a watermark) and of one feed, kept-unread below the watermark, continuation,
/// and one user never touching another's marks.
#[tokio::test]
async fn read_state_survives_every_kind_of_mark_and_stays_per_user() {
    {
        // On the run's database: scripts/test's second pass is PostgreSQL.
        let app = TestApp::spawn().await;
        alice_with_notes(&app, 5).await;
        let auth = auth_of(&app).await;
        let post = async |path: &str, form: &[(&str, &str)]| {
            let r = app
                .client
                .post(app.url(&format!("/api/greader/reader/api/0/{path}")))
                .header("Authorization", format!("GoogleLogin auth={auth}"))
                .form(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        assert_eq!(unread_ids(&app, &auth).await, ["5", "4", "3", "2", "1"]);
        // Continuation: two pages of 3 and 2, nothing lost or repeated.
        let page = async |c: &str| -> Value {
            app.client
                .get(app.url(&format!(
                    "/api/greader/reader/api/0/stream/contents/user%2F-%2Fstate%2Fcom.google%2Freading-list?n=3&c={c}"
                )))
                .header("Authorization", format!("GoogleLogin auth={auth}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        };
        let first = page("").await;
        assert_eq!(first["items"].as_array().unwrap().len(), 3);
        let c = first["continuation"].as_str().unwrap().to_string();
        let second = page(&c).await;
        assert_eq!(second["items"].as_array().unwrap().len(), 2, "{second}");
        assert!(second.get("continuation").is_none());
        assert_eq!(
            second["items"][1]["id"],
            "tag:google.com,2005:reader/item/0000000000000001"
        );

        // Mark all read (a watermark), then keep one unread below it: exactly that one.
        assert_eq!(
            post("mark-all-as-read", &[("s", "user/-/state/com.google/reading-list")]).await,
            (200, "OK".into())
        );
        assert!(unread_ids(&app, &auth).await.is_empty());
        let edit = [
            ("i", "2"),
            ("r", "user/-/state/com.google/read"),
            ("a", "user/-/state/com.google/kept-unread"),
        ];
        assert_eq!(post("edit-tag", &edit).await, (200, "OK".into()));
        assert_eq!(unread_ids(&app, &auth).await, ["2"]);
        // Unread counts agree: the stream, the laptop's feed, Notes and the reading list each 1.
        let counts: Value = gr_get(&app, &auth, "/api/greader/reader/api/0/unread-count?output=json")
            .await
            .json()
            .await
            .unwrap();
        let mut got: Vec<(String, u64)> = counts["unreadcounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c["count"].as_u64().unwrap()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("feed/1".to_string(), 1),
                ("feed/2".to_string(), 1),
                ("feed/3".to_string(), 1),
                ("user/-/state/com.google/reading-list".to_string(), 1)
            ],
            "{counts}"
        );
        // Newer activity arrives unread; "mark all read" of the Notes feed reads it and the kept one.
        let token = app.token("alice", "laptop").await;
        app.post_entry(&token, "/atompub/alice/Notes", entry("note 6", "x"))
            .await;
        assert_eq!(unread_ids(&app, &auth).await, ["6", "2"]);
        assert_eq!(post("mark-all-as-read", &[("s", "feed/3")]).await, (200, "OK".into()));
        assert!(unread_ids(&app, &auth).await.is_empty());

        // Bob sees his own state and cannot mark alice's ids.
        app.token("bob", "phone").await;
        logins::set_password(app.store.as_ref(), "bob", PASSWORD).await.unwrap();
        let bob = client_login(&app, "bob", PASSWORD).await.text().await.unwrap();
        let bob = bob.lines().find_map(|l| l.strip_prefix("Auth=")).unwrap().to_string();
        assert!(unread_ids(&app, &bob).await.is_empty());
        let r = app
            .client
            .post(app.url("/api/greader/reader/api/0/edit-tag"))
            .header("Authorization", format!("GoogleLogin auth={bob}"))
            .form(&[("i", "2"), ("a", "user/-/state/com.google/kept-unread")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(unread_ids(&app, &auth).await.is_empty(), "bob's mark touched alice");
        let r = gr_get(&app, &bob, "/api/greader/reader/atom/feed%2F3").await;
        assert_eq!(r.status(), 404, "alice's feed 3 is not bob's");

        // What clients never send: a bad token, a wrong password, nonsense ids and numbers.
        let r = app
            .client
            .get(app.url("/api/greader/reader/api/0/subscription/list"))
            .header("Authorization", "GoogleLogin auth=fms_nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(common::header(&r, "google-bad-token"), "true");
        assert_eq!(client_login(&app, "alice", "wrong").await.status(), 401);
        assert_eq!(
            post("edit-tag", &[("i", "zz"), ("a", "user/-/state/com.google/read")])
                .await
                .0,
            200
        );
        let (status, body) = post("mark-all-as-read", &[("s", "feed/x")]).await;
        assert_eq!(status, 404, "{body}");
        let r = gr_get(&app, &auth, "/api/greader/reader/api/0/stream/contents/feed%2F1?n=lots").await;
        assert_eq!(r.status(), 400);
        // Miniflux: a body that is not the JSON it takes is a 400 with a JSON reason, and
        // marks nothing; an id of no entry changes nothing either.
        let put = async |body: &str| {
            let r = app
                .client
                .put(app.url("/api/miniflux/v1/entries"))
                .basic_auth("alice", Some(PASSWORD))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        let (status, body) = put("entry_ids=1&status=unread").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("error_message"), "{body}");
        assert_eq!(put(r#"{"entry_ids":[1],"status":"gone"}"#).await.0, 400);
        assert_eq!(put(r#"{"entry_ids":[999999],"status":"unread"}"#).await.0, 204);
        assert!(unread_ids(&app, &auth).await.is_empty());
        // Fever: ids that are not numbers, and more than 50 at once, are refused.
        let app_password = new_app_password(&app, "f").await;
        let key = logins::fever_key("alice", &app_password);
        for query in [
            "api&items&with_ids=1,x",
            "api&items&since_id=-3",
            "api&mark=item&as=read&id=x",
        ] {
            let r = app
                .client
                .post(app.url(&format!("/api/fever?{query}")))
                .form(&[("api_key", key.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{query}");
        }
        let many: Vec<String> = (1..=51).map(|i| i.to_string()).collect();
        let r = app
            .client
            .post(app.url(&format!("/api/fever?api&items&with_ids={}", many.join(","))))
            .form(&[("api_key", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(unread_ids(&app, &auth).await.is_empty());
    }
}

/// Reader apps listing their subscriptions at once for the first time (several devices
/// starting together): every call succeeds and every feed gets one id, the same in each.
#[tokio::test]
async fn first_listings_at_once_give_each_feed_one_id() {
    let app = TestApp::spawn().await;
    alice_with_notes(&app, 1).await;
    for name in ["Ann", "Ben", "Cid", "Dot"] {
        let r = app
            .client
            .post(app.url("/api/contacts"))
            .bearer_auth(app.token("alice", "laptop").await)
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let auth = auth_of(&app).await;
    let calls = (0..8).map(|_| gr_get(&app, &auth, "/api/greader/reader/api/0/subscription/list"));
    let mut lists = Vec::new();
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let mut subs: Vec<(String, String)> = v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["title"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        subs.sort();
        lists.push(subs);
    }
    let first = &lists[0];
    assert!(lists.iter().all(|l| l == first), "{lists:?}");
    let mut ids: Vec<&String> = first.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), first.len());
    // Everything, the laptop, Notes, Contacts and the four people.
    assert_eq!(first.len(), 8, "{first:?}");

    // A folder is the union of its feeds, each entry once: the Contacts folder holds each
    // person's timeline, where the card that made them is. Google Reader and Miniflux agree.
    let v: Value = gr_get(
        &app,
        &auth,
        "/api/greader/reader/api/0/stream/contents/user%2F-%2Flabel%2FContacts?n=10",
    )
    .await
    .json()
    .await
    .unwrap();
    let titles: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Dot", "Cid", "Ben", "Ann"], "{v}");
    let two = gr_get(
        &app,
        &auth,
        "/api/greader/reader/api/0/stream/contents/user%2F-%2Flabel%2FContacts?n=2",
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    let c = two["continuation"].as_str().unwrap().to_string();
    let rest: Value = gr_get(
        &app,
        &auth,
        &format!("/api/greader/reader/api/0/stream/contents/user%2F-%2Flabel%2FContacts?n=2&c={c}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(rest["items"][1]["title"], "Ann", "{rest}");
    let r = app
        .client
        .get(app.url("/api/miniflux/v1/categories/6/entries"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let mf: Value = r.json().await.unwrap();
    assert_eq!(mf["entries"].as_array().unwrap().len(), 4, "{mf}");
    let r = gr_get(
        &app,
        &auth,
        "/api/greader/reader/api/0/stream/contents/user%2F-%2Flabel%2FNope",
    )
    .await;
    assert_eq!(r.status(), 404);
}
