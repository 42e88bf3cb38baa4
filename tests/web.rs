//! The web app over HTTP as a browser uses it: the login form, the session cookie, CSRF on
//! every state change, logout, the login bound, passwords from the CLI, app passwords, the
//! stream page, live updates and the devices page. (The real-browser tests drive Chromium.)

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use feedmesh::usecases::logins;

use crate::common::process::*;
use crate::common::{TestApp, entry};

/// A browser without JavaScript: keeps cookies, follows no redirect by itself.
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        (status, location.unwrap_or(body))
    }

    /// Posts a form; (status, Location for a redirect else the body).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        (status, location.unwrap_or(body))
    }

    /// Opens the login form and sends it; the status and where it leads.
    pub async fn log_in(&mut self, user: &str, password: &str) -> (u16, String) {
        let (status, form) = self.get("/login").await;
        assert_eq!(status, 200, "{form}");
        let csrf = csrf_of(&form);
        self.post("/login", &[("user", user), ("password", password), ("csrf", &csrf)])
            .await
    }
}

/// The CSRF token of the first form on a page.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

async fn with_password(app: &TestApp, user: &str, password: &str) -> String {
    let token = app.token(user, "laptop").await;
    logins::set_password(app.store.as_ref(), user, password).await.unwrap();
    token
}

#[tokio::test]
async fn a_password_set_from_a_script_logs_a_browser_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let passwd = |input: &str, user: &str| {
        let mut child = Command::new(BIN)
            .args(["user", "passwd", user])
            .env("FEEDMESH_DATA_DIR", d)
            .env_remove("FEEDMESH_DATABASE_URL")
            .env_remove("FEEDMESH_SECRET_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (success, err) = passwd("short\n", "alice");
    assert!(!success && err.contains("shorter than 8"), "{err}");
    let (success, err) = passwd("", "alice");
    assert!(!success && err.contains("standard input"), "{err}");
    let (success, err) = passwd("correct horse battery\n", "nobody");
    assert!(!success && err.contains("nobody"), "{err}");
    let (success, err) = passwd("correct horse battery\n", "alice");
    assert!(success, "{err}");
    assert!(!err.contains("correct horse"), "the password was echoed: {err}");
    // Only an argon2id hash is kept.
    let db = std::fs::read(d.join("feedmesh.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("correct horse battery"));

    let (_serve, base) = serve(d);
    let mut browser = Browser::new(&base);
    assert_eq!(
        browser.log_in("alice", "correct horse battery").await,
        (303, "/".into())
    );
    let (status, page) = browser.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>Stream</h1>") && page.contains("alice"), "{page}");
    // A wrong password is refused by the real server too.
    let mut wrong = Browser::new(&base);
    assert_eq!(wrong.log_in("alice", "not the password").await.0, 401);
}

#[tokio::test]
async fn login_sessions_csrf_and_logout() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    let mut b = Browser::new(&app.base);

    // Not logged in: pages send the browser to the form, keeping where it was going.
    assert_eq!(b.get("/devices").await, (303, "/login?next=%2Fdevices".into()));

    // The form's CSRF token belongs with its pre-session cookie.
    let (_, form) = b.get("/login").await;
    let csrf = csrf_of(&form);
    let pre = b.cookies.get("fm_pre").cloned().expect("a pre-session cookie");
    let mut other = Browser::new(&app.base);
    let (status, _) = other
        .post(
            "/login",
            &[
                ("user", "alice"),
                ("password", "correct horse battery"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, 403, "a login form posted without its cookie");
    let (status, body) = b
        .post(
            "/login",
            &[("user", "alice"), ("password", "wrong password"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("Wrong user name or password") && body.contains("value=\"alice\""));
    assert!(!body.contains("wrong password"), "the form echoed the password");

    // Session fixation: a session id planted before login is never the one after.
    b.cookies.insert("fm_session".into(), "fms_planted".into());
    let raw = b
        .client
        .post(format!("{}/login", app.base))
        .header("cookie", format!("fm_pre={pre}; fm_session=fms_planted"))
        .form(&[
            ("user", "alice"),
            ("password", "correct horse battery"),
            ("csrf", csrf.as_str()),
            ("next", "/devices"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 303);
    assert_eq!(raw.headers()["location"], "/devices");
    let set: Vec<String> = raw
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("fm_session="))
        .expect("a session cookie");
    assert!(!session.contains("fms_planted"));
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "Secure on a plain-http hub: {session}");
    b.keep(&raw);
    assert_ne!(b.cookies["fm_session"], "fms_planted");

    // A login form never sends the browser to another site.
    let mut c = Browser::new(&app.base);
    let (_, form) = c.get("/login?next=//evil.example/").await;
    assert!(form.contains("name=\"next\" value=\"/\""), "{form}");

    // Logged in: the stream, and state changes need the page's CSRF token.
    let (status, page) = b.get("/devices").await;
    assert_eq!(status, 200, "{page}");
    let page_csrf = csrf_of(&page);
    let before = app.store.tokens(&"alice".parse().unwrap()).await.unwrap().len();
    assert_eq!(b.post("/devices", &[("device", "phone")]).await.0, 403);
    assert_eq!(
        b.post("/devices", &[("device", "phone"), ("csrf", "forged")]).await.0,
        403
    );
    assert_eq!(
        app.store.tokens(&"alice".parse().unwrap()).await.unwrap().len(),
        before,
        "a refused form changed something"
    );
    // The JSON API takes the session too, with the token in a header.
    let api = |csrf: Option<&str>| {
        let mut r = b
            .client
            .post(format!("{}/api/contacts", app.base))
            .header("cookie", b.cookie_header())
            .json(&serde_json::json!({"name": "Bob", "identities": ["mailto:bob@example.com"]}));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    assert_eq!(api(None).await.unwrap().status(), 403);
    assert_eq!(api(Some(&page_csrf)).await.unwrap().status(), 201);
    // Another site's page cannot post even with a token it somehow had.
    let cross = b
        .client
        .post(format!("{}/api/contacts", app.base))
        .header("cookie", b.cookie_header())
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &page_csrf)
        .json(&serde_json::json!({"name": "Eve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    // The hub reached by another name than its base URL's (localhost for 127.0.0.1): the
    // browser's Origin is the host it addressed, which is this hub.
    let port = app.base.rsplit(':').next().unwrap();
    let local = b
        .client
        .post(format!("{}/api/contacts", app.base))
        .header("cookie", b.cookie_header())
        .header("host", format!("localhost:{port}"))
        .header("origin", format!("http://localhost:{port}"))
        .header("x-csrf-token", &page_csrf)
        .json(&serde_json::json!({"name": "Dora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 201);
    // Device tokens never ride in cookies: no CSRF token needed.
    let by_token = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Carol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 201);

    // Logout ends the session: the same cookie opens nothing afterwards.
    let cookie = b.cookies["fm_session"].clone();
    assert_eq!(b.post("/logout", &[("csrf", &page_csrf)]).await, (303, "/login".into()));
    let mut replay = Browser::new(&app.base);
    replay.cookies.insert("fm_session".into(), cookie);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the credential cache
    assert_eq!(replay.get("/devices").await.0, 303);
}

#[tokio::test]
async fn failed_logins_are_bounded() {
    let app = TestApp::spawn().await;
    with_password(&app, "alice", "correct horse battery").await;
    let mut b = Browser::new(&app.base);
    for _ in 0..10 {
        assert_eq!(b.log_in("alice", "guess").await.0, 401);
    }
    // The eleventh attempt is refused before any password is looked at, the right one too.
    let (status, body) = b.log_in("alice", "correct horse battery").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too many failed logins"), "{body}");
    // HTTP Basic with a password counts towards the same user's bound.
    let basic = app
        .client
        .get(app.url("/u/alice/stream.atom"))
        .basic_auth("alice", Some("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 429);
    assert!(basic.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn reader_apps_log_in_with_app_passwords_or_the_password() {
    let app = TestApp::spawn().await;
    with_password(&app, "alice", "correct horse battery").await;
    let issued = logins::add_app_password(app.store.as_ref(), "alice", "newsboat")
        .await
        .unwrap();
    let feed = |user: &str, pw: &str| {
        app.client
            .get(app.url("/u/alice/stream.atom"))
            .basic_auth(user, Some(pw.to_string()))
            .send()
    };
    assert_eq!(feed("alice", &issued.password).await.unwrap().status(), 200);
    assert_eq!(feed("alice", "correct horse battery").await.unwrap().status(), 200);
    assert_eq!(feed("alice", "wrong password").await.unwrap().status(), 401);
    // Another user's name with alice's app password is nobody.
    app.token("bob", "phone").await;
    assert_eq!(feed("bob", &issued.password).await.unwrap().status(), 401);
    // Fever's key is md5("alice:PASSWORD") of the app password.
    let fever = logins::fever_key("alice", &issued.password);
    let login = logins::fever_login(app.store.as_ref(), &fever).await.unwrap().unwrap();
    assert_eq!(login.user, "alice");
    let listed = logins::app_passwords(app.store.as_ref(), "alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used.is_some(), "{listed:?}");
    logins::revoke_app_password(app.store.as_ref(), "alice", issued.info.id)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the credential cache
    assert_eq!(feed("alice", &issued.password).await.unwrap().status(), 401);
    assert!(logins::fever_login(app.store.as_ref(), &fever).await.unwrap().is_none());
}

#[tokio::test]
async fn the_cli_makes_lists_and_revokes_app_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let out = ok(
        d,
        &["user", "app-password", "alice", "--name", "newsboat on the laptop"],
    );
    let password = out.lines().last().unwrap();
    assert!(password.starts_with("fma_") && password.len() > 40, "{out}");
    let list = ok(d, &["user", "app-passwords", "alice"]);
    assert!(
        list.contains("newsboat on the laptop") && list.contains("live"),
        "{list}"
    );
    assert!(!list.contains(password), "the list shows the password");
    let id = list.lines().nth(1).unwrap().split('\t').next().unwrap();
    ok(d, &["user", "revoke-app-password", "alice", id]);
    assert!(ok(d, &["user", "app-passwords", "alice"]).contains("revoked"));
    let (success, _, err) = feedmesh(d, &["user", "app-password", "alice", "--name", ""]);
    assert!(!success && err.contains("name"), "{err}");
}

#[tokio::test]
async fn the_stream_page_shows_activities_escaped_and_pages_hold_their_place() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    for i in 0..55 {
        let r = app
            .post_entry(&token, "/atompub/alice/Notes", entry(&format!("note {i}"), "body"))
            .await;
        assert_eq!(r.status(), 201);
    }
    let evil = r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>&lt;script&gt;alert('title')&lt;/script&gt;</title><content type="html">&lt;p&gt;hi&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;&lt;/p&gt;</content></entry>"#;
    assert_eq!(app.post_entry(&token, "/atompub/alice/Notes", evil).await.status(), 201);
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let resp = b
        .client
        .get(format!("{}/", app.base))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("&#60;script&#62;alert(") && !page.contains("<script>alert"),
        "{page}"
    );
    assert!(!page.contains("onerror") && !page.contains("alert(2)"), "{page}");
    assert!(page.contains("<p>hi"), "the sanitised HTML is shown: {page}");
    assert!(page.contains("Today") && page.contains("note 54"));
    // 50 a page; the next page starts below the last one shown, whatever arrives meanwhile.
    let older = page
        .split("href=\"/?before=")
        .nth(1)
        .expect("an older page")
        .split('"')
        .next()
        .unwrap();
    let title = |n: u32| format!("<span class=\"title\">note {n}</span>");
    assert!(
        page.contains(&title(6)) && !page.contains(&title(5)),
        "not 50 on the first page"
    );
    for i in 55..60 {
        app.post_entry(&token, "/atompub/alice/Notes", entry(&format!("note {i}"), "b"))
            .await;
    }
    let (_, second) = b.get(&format!("/?before={older}")).await;
    assert!(second.contains(&title(5)) && second.contains(&title(0)), "{second}");
    assert!(!second.contains(&title(55)) && !second.contains(&title(6)), "{second}");
    assert!(!second.contains("rel=\"next\""), "a third page of nothing");
}

#[tokio::test]
async fn the_stream_is_told_live_of_what_arrives() {
    use futures_util::StreamExt;
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let resp = b
        .client
        .get(format!("{}/events", app.base))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    // Another user's writes say nothing to alice's page.
    let bob = app.token("bob", "phone").await;
    app.collection("bob", "Notes").await;
    app.post_entry(&bob, "/atompub/bob/Notes", entry("bob's", "x")).await;
    app.post_entry(&token, "/atompub/alice/Notes", entry("hello", "x"))
        .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: change") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let head = app
        .store
        .user_head(app.store.user("alice").await.unwrap().id)
        .await
        .unwrap();
    assert!(seen.contains(&format!("data: {head}")), "{seen}");
    // Without a session there is no stream of events.
    let anon = app.client.get(app.url("/events")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
}

#[tokio::test]
async fn devices_are_added_with_a_token_shown_once_and_revoked() {
    let app = TestApp::spawn().await;
    with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (_, page) = b.get("/devices").await;
    let csrf = csrf_of(&page);
    let (status, page) = b.post("/devices", &[("device", "bad name!"), ("csrf", &csrf)]).await;
    assert_eq!(status, 400, "{page}");
    let (status, page) = b.post("/devices", &[("device", "phone"), ("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    let at = page.find("id=\"new-token\">").unwrap() + 15;
    let token = page[at..].split('<').next().unwrap().to_string();
    assert!(token.starts_with("fm_"), "{token}");
    assert!(page.contains(&format!("feedmesh agent --hub {} --token {token}", app.base)));
    let atompub = |t: String| app.client.get(app.url("/atompub")).bearer_auth(t).send();
    assert_eq!(atompub(token.clone()).await.unwrap().status(), 200);
    // Shown once: the list has its prefix only.
    let (_, list) = b.get("/devices").await;
    assert!(!list.contains(&token) && list.contains(&token[..7]));
    let id = app
        .store
        .tokens(&"alice".parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.device == "phone")
        .unwrap()
        .id;
    let (status, to) = b.post(&format!("/devices/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/devices"));
    assert_eq!(atompub(token).await.unwrap().status(), 401);
    // Another user's device is not found.
    app.token("bob", "tablet").await;
    let bobs = app.store.tokens(&"bob".parse().unwrap()).await.unwrap()[0].id;
    let (status, _) = b.post(&format!("/devices/{bobs}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_https_hub_marks_its_cookies_secure() {
    feedmesh::net::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    let mut settings = crate::common::settings(dir.path(), &url);
    settings.serve.base_url = Some("https://mesh.example".into());
    let app = feedmesh::app::App::build(&settings).await.unwrap();
    let addr = app.local_addr();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let resp = reqwest::get(format!("http://{addr}/login")).await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure") && cookie.starts_with("fm_pre="), "{cookie}");
    server.abort();
}

#[tokio::test]
async fn the_feeds_page_and_opml_list_every_feed_with_a_working_key_url() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    app.post_entry(&token, "/atompub/alice/Notes", entry("first", "x"))
        .await;
    let contact = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Bob <b>", "org": "Acme & Co", "identities": ["mailto:bob@acme.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(contact.status(), 201);
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (status, page) = b.get("/feeds").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("{}/u/alice/stream.atom?key=fk_", app.base)),
        "{page}"
    );
    assert!(page.contains(&format!("{}/atompub/alice/Notes?key=fk_", app.base)));
    assert!(page.contains("1 contact timelines"), "{page}");

    // The OPML export, imported by a real reader: newsboat -i (its exit code ignores
    // errors, so the URLs it wrote are what counts), then every feed fetched without a login.
    let opml = app
        .client
        .get(app.url("/u/alice/feeds.opml"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(opml.status(), 200);
    assert!(
        opml.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/x-opml")
    );
    let doc = opml.text().await.unwrap();
    assert!(
        doc.contains("Bob &lt;b&gt;") && doc.contains("<opml version=\"2.0\">"),
        "{doc}"
    );
    let nb = tempfile::tempdir().unwrap();
    std::fs::write(nb.path().join("feeds.opml"), &doc).unwrap();
    std::fs::write(nb.path().join("urls"), "").unwrap();
    let out = Command::new("newsboat")
        .env("HOME", nb.path())
        .arg("-u")
        .arg(nb.path().join("urls"))
        .arg("-c")
        .arg(nb.path().join("cache.db"))
        .arg("-C")
        .arg("/dev/null")
        .arg("-i")
        .arg(nb.path().join("feeds.opml"))
        .output()
        .expect("newsboat runs (apt-get install newsboat)");
    let urls = std::fs::read_to_string(nb.path().join("urls")).unwrap();
    let urls: Vec<&str> = urls
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.starts_with("http"))
        .collect();
    assert!(
        urls.len() >= 6,
        "newsboat imported {urls:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "/u/alice/stream.atom?key=",
        "/u/alice/stream.rss?key=",
        "/u/alice/stream.json?key=",
        "/u/alice/endpoints/laptop/stream.atom?key=",
        "/atompub/alice/Notes?key=",
        "/u/alice/companies/",
        "/u/alice/contacts/",
    ] {
        assert!(urls.iter().any(|u| u.contains(kind)), "no {kind} in {urls:?}");
    }
    let anonymous = reqwest::Client::new();
    for u in &urls {
        let r = anonymous.get(*u).send().await.unwrap();
        assert_eq!(r.status(), 200, "{u}");
    }
    // Another user's OPML is not there for alice.
    app.token("bob", "phone").await;
    let theirs = app
        .client
        .get(app.url("/u/bob/feeds.opml"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);

    // Revoking a key from the page: that URL stops working, the page shows the next one.
    let stream_key = urls
        .iter()
        .find(|u| u.contains("/u/alice/stream.atom?key="))
        .unwrap()
        .to_string();
    let (_, page) = b.get("/feeds").await;
    let csrf = csrf_of(&page);
    let listed = app.keys(&token).await;
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["feed"] == "/u/alice/stream" && k["revoked"] == false)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, to) = b.post(&format!("/feeds/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/feeds"));
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the credential cache
    assert_eq!(anonymous.get(&stream_key).send().await.unwrap().status(), 401);
    let (_, page) = b.get("/feeds").await;
    assert!(!page.contains(&stream_key) && page.contains("/u/alice/stream.atom?key=fk_"));
}

fn mail_from(name: &str, email: &str, title: &str) -> String {
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/"><title>{title}</title><author><name>{name}</name><email>{email}</email></author><activity:object-type>http://activitystrea.ms/schema/1.0/message</activity:object-type><content type="text">hello</content></entry>"#
    )
}

/// The contact ids on a page, in the order their links appear.
fn contact_links(page: &str) -> Vec<String> {
    page.split("href=\"/contacts/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|id| !id.contains('?') && !id.contains('/') && *id != "import")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn contacts_from_suggestions_notes_merge_and_undo_in_the_browser() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Mail").await;
    for i in 0..3 {
        app.post_entry(
            &token,
            "/atompub/alice/Mail",
            mail_from("Bob B", "bob@example.com", &format!("bob {i}")),
        )
        .await;
    }
    app.post_entry(
        &token,
        "/atompub/alice/Mail",
        mail_from("Robert", "robert@work.example", "from work"),
    )
    .await;
    app.post_entry(
        &token,
        "/atompub/alice/Mail",
        mail_from("&lt;script&gt;x&lt;/script&gt;", "evil@example.com", "evil"),
    )
    .await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (status, page) = b.get("/contacts").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("mailto:bob@example.com") && page.contains("seen 3 times"),
        "{page}"
    );
    assert!(!page.contains("<script>x"), "a name seen in mail ran: {page}");
    let csrf = csrf_of(&page);
    // Accept two suggestions.
    let (status, to) = b
        .post(
            "/contacts",
            &[
                ("identity", "mailto:bob@example.com"),
                ("name", "Bob B"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let bob = to.trim_start_matches("/contacts/").to_string();
    let (_, to) = b
        .post(
            "/contacts",
            &[
                ("identity", "mailto:robert@work.example"),
                ("name", "Robert"),
                ("csrf", &csrf),
            ],
        )
        .await;
    let robert = to.trim_start_matches("/contacts/").to_string();
    let (_, page) = b.get(&format!("/contacts/{bob}")).await;
    assert!(
        page.contains("bob 2") && page.contains("bob 0") && !page.contains("from work"),
        "{page}"
    );
    assert!(
        page.contains("Here because Bob B (mailto:bob@example.com) is its actor"),
        "{page}"
    );
    // A bad identity is a clear error on the page, nothing made.
    let (status, page) = b.post("/contacts", &[("identity", "tel:abc"), ("csrf", &csrf)]).await;
    assert_eq!(status, 400);
    assert!(page.contains("role=\"alert\""), "{page}");

    // Notes: added, shown in the timeline, edited in place; they are items of Notes.
    let (status, to) = b
        .post(
            &format!("/contacts/{bob}/notes"),
            &[("text", "Met at the conference"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!((status, to.clone()), (303, format!("/contacts/{bob}")));
    let (_, page) = b.get(&format!("/contacts/{bob}")).await;
    assert!(page.contains("Met at the conference"), "{page}");
    let needle = format!("action=\"/contacts/{bob}/notes/");
    let at = page.find(&needle).expect("an edit form") + needle.len();
    let note = page[at..].split('"').next().unwrap().to_string();
    let (status, _) = b
        .post(
            &format!("/contacts/{bob}/notes/{note}"),
            &[("text", "Met at the conference in Lisbon"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303);
    let notes = app.get(&token, "/atompub/alice/Notes").await.text().await.unwrap();
    assert!(notes.contains("Met at the conference in Lisbon"), "{notes}");

    // Merge Robert into Bob: one timeline with both; then undo: two again.
    let (status, to) = b
        .post(
            &format!("/contacts/{bob}/merge"),
            &[("other", &robert), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let (_, page) = b.get(&to).await;
    assert!(
        page.contains("Undo the merge") && page.contains("from work") && page.contains("bob 1"),
        "{page}"
    );
    assert!(page.contains("mailto:robert@work.example"));
    let at = page.find("action=\"/contacts/merges/").unwrap() + 25;
    let merge = page[at..].split('/').next().unwrap().to_string();
    let (status, to) = b
        .post(&format!("/contacts/merges/{merge}/undo"), &[("csrf", &csrf)])
        .await;
    assert_eq!((status, to), (303, format!("/contacts/{bob}")));
    let (_, page) = b.get(&format!("/contacts/{bob}")).await;
    assert!(!page.contains("from work") && page.contains("bob 1"), "{page}");
    let (status, page) = b.get(&format!("/contacts/{robert}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("from work"), "{page}");
    // Merging with itself: a clear error.
    let (status, page) = b
        .post(&format!("/contacts/{bob}/merge"), &[("other", &bob), ("csrf", &csrf)])
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("cannot be merged with itself"));

    // Another user's contact is not found.
    app.token("bob", "phone").await;
    let mut other = Browser::new(&app.base);
    logins::set_password(app.store.as_ref(), "bob", "another long password")
        .await
        .unwrap();
    other.log_in("bob", "another long password").await;
    assert_eq!(other.get(&format!("/contacts/{robert}")).await.0, 404);
    assert!(contact_links(&other.get("/contacts").await.1).is_empty());
}

#[tokio::test]
async fn vcards_are_imported_from_a_form_and_exported() {
    let app = TestApp::spawn().await;
    with_password(&app, "alice", "correct horse battery").await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (_, page) = b.get("/contacts").await;
    let csrf = csrf_of(&page);
    let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Carol Cell\r\nTEL:+1 415 555 0100\r\nEMAIL:carol@example.com\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:Dan\r\nEMAIL:dan@example.org\r\nEND:VCARD\r\n";
    let (client, cookie) = (b.client.clone(), b.cookie_header());
    let upload = |csrf: Option<String>, body: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(body.as_bytes()).file_name("contacts.vcf"),
        );
        let url = match csrf {
            Some(c) => format!("{}/contacts/import?csrf={c}", app.base),
            None => format!("{}/contacts/import", app.base),
        };
        client.post(url).header("cookie", cookie.clone()).multipart(form).send()
    };
    assert_eq!(upload(None, vcf).await.unwrap().status(), 403);
    let r = upload(Some(csrf.clone()), vcf).await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let (_, page) = b.get(&to).await;
    assert!(page.contains("Imported: 2 created, 0 updated, 0 unchanged"), "{page}");
    assert!(
        page.contains("Carol Cell") && page.contains("tel:+14155550100"),
        "{page}"
    );
    // A broken file changes nothing and says why.
    let r = upload(Some(csrf.clone()), "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\n")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("END:VCARD"));
    let (_, export) = b.get("/api/contacts/export").await;
    assert_eq!(export.matches("BEGIN:VCARD").count(), 2, "{export}");
}

#[tokio::test]
async fn search_from_the_box_saved_as_a_view_with_its_feeds() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    app.collection("alice", "Mail").await;
    app.post_entry(
        &token,
        "/atompub/alice/Notes",
        entry("invoice for march", "the numbers"),
    )
    .await;
    app.post_entry(
        &token,
        "/atompub/alice/Mail",
        mail_from("Bob", "bob@example.com", "invoice overdue"),
    )
    .await;
    app.post_entry(&token, "/atompub/alice/Notes", entry("holiday plans", "beach"))
        .await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (status, page) = b.get("/search?q=invoice").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("invoice for march") && page.contains("invoice overdue"),
        "{page}"
    );
    assert!(!page.contains("holiday plans"));
    let (_, page) = b.get("/search?q=invoice&collection=Mail").await;
    assert!(
        !page.contains("invoice for march") && page.contains("invoice overdue"),
        "{page}"
    );
    // Bad syntax and unknown filters: a 400 naming the problem, on the page.
    let (status, page) = b.get("/search?q=%22unbalanced").await;
    assert_eq!(status, 400);
    assert!(page.contains("role=\"alert\"") && page.contains("quote"), "{page}");
    let (status, page) = b.get("/search?q=x&collection=Nope").await;
    assert_eq!(status, 400);
    assert!(page.contains("no such collection"), "{page}");
    let (status, _) = b.get("/search?since=yesterday").await;
    assert_eq!(status, 400);

    // Saved as a view: its page, its feeds (which readers can follow), then deleted.
    let (_, page) = b.get("/search?q=invoice&collection=Mail").await;
    let csrf = csrf_of(&page);
    let (status, to) = b
        .post(
            "/views",
            &[
                ("q", "invoice"),
                ("collection", "Mail"),
                ("name", "billing"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!((status, to.as_str()), (303, "/views/billing"));
    let (status, page) = b.get("/views/billing").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("invoice overdue") && !page.contains("invoice for march"),
        "{page}"
    );
    let feed = format!("{}/u/alice/views/billing.atom", app.base);
    assert!(page.contains(&feed), "{page}");
    let atom = app
        .get(&token, "/u/alice/views/billing.atom")
        .await
        .text()
        .await
        .unwrap();
    assert!(atom.contains("invoice overdue"), "{atom}");
    let (status, page) = b
        .post("/views", &[("q", "x"), ("name", "bad name"), ("csrf", &csrf)])
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("view name"), "{page}");
    let (status, to) = b.post("/views/billing/delete", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (303, "/search"));
    assert_eq!(b.get("/views/billing").await.0, 404);
}

/// Two devices edit one note offline: the hub keeps both (laptop wins, phone's kept).
async fn a_conflict(app: &TestApp, laptop: &str) -> String {
    use crate::common::sync_entry;
    let phone = app.token("alice", "phone").await;
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    let body = |who: &str, at: &str, text: &str| {
        sync_entry("note-1", 2, false, &[(2, at, who), base[0]], text)
            .replace(&format!("{text} body"), &format!("shared line\n{text}\nlast line"))
    };
    app.post_entry(
        laptop,
        "/atompub/alice/Notes",
        sync_entry("note-1", 1, false, &base, "v1"),
    )
    .await;
    app.post_entry(
        laptop,
        "/atompub/alice/Notes",
        body("alice/laptop", "2026-01-01T10:05:00Z", "laptop words"),
    )
    .await;
    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/Notes",
            body("alice/phone", "2026-01-01T10:07:00Z", "phone words"),
        )
        .await;
    assert_eq!(r.headers()["feedmesh-change"], "conflict");
    phone
}

#[tokio::test]
async fn a_conflict_made_by_two_devices_is_settled_in_the_browser() {
    let app = TestApp::spawn().await;
    let laptop = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    let phone = a_conflict(&app, &laptop).await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (_, page) = b.get("/conflicts").await;
    assert!(page.contains("aria-label=\"1 in conflict\""), "the badge: {page}");
    assert!(
        page.contains("/conflicts/item?collection=Notes&amp;id=note-1"),
        "{page}"
    );
    let (status, page) = b.get("/conflicts/item?collection=Notes&id=note-1").await;
    assert_eq!(status, 200, "{page}");
    // Side by side: device and time of each, the lines only one side has marked.
    assert!(
        page.contains("by alice/phone") && page.contains("by alice/laptop"),
        "{page}"
    );
    assert!(
        page.contains("class=\"del\">- phone words") && page.contains("class=\"add\">+ laptop words"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let seq = page
        .split("name=\"seq\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Kept from a stale page: refused, nothing lost, the page shows it anew.
    let (status, _) = b
        .post(
            "/conflicts/resolve",
            &[
                ("collection", "Notes"),
                ("id", "note-1"),
                ("seq", "1"),
                ("keep", "conflict-0"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, 409);
    let (status, to) = b
        .post(
            "/conflicts/resolve",
            &[
                ("collection", "Notes"),
                ("id", "note-1"),
                ("seq", &seq),
                ("keep", "merged"),
                ("text", "shared line\nlaptop words\nphone words\nlast line"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!((status, to.as_str()), (303, "/files/Notes/item?id=note-1"), "{to}");
    // The FeedSync feed every device reads shows the resolution: no conflicts, the merged
    // text, the web endpoint's update on top and both devices' edits subsumed (§2.8).
    let feed = app.get(&phone, "/atompub/alice/Notes").await.text().await.unwrap();
    assert!(!feed.contains("<sx:conflicts>"), "{feed}");
    assert!(feed.contains("laptop words\nphone words"), "{feed}");
    assert!(
        feed.contains(r#"updates="3""#) && feed.contains(r#"by="alice/web""#),
        "{feed}"
    );
    assert!(
        feed.contains(r#"when="2026-01-01T10:05:00Z" by="alice/laptop""#),
        "{feed}"
    );
    assert!(
        feed.contains(r#"when="2026-01-01T10:07:00Z" by="alice/phone""#),
        "{feed}"
    );
    let (_, page) = b.get("/conflicts").await;
    assert!(
        page.contains("No conflicts") && !page.contains("in conflict\""),
        "{page}"
    );
    // The item's page: its history, who changed it when.
    let (_, page) = b.get("/files/Notes/item?id=note-1").await;
    assert!(
        page.contains("alice/web") && page.contains("alice/phone") && page.contains("alice/laptop"),
        "{page}"
    );
    let (_, page) = b.get("/files/Notes").await;
    assert!(page.contains("note-1") || page.contains("v1"), "{page}");
    assert_eq!(b.get("/files/Nope").await.0, 404);
}

#[tokio::test]
async fn a_synced_folder_is_a_tree_with_downloads() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Files").await;
    // A real folder, synced by the agent.
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("docs/old")).unwrap();
    for (path, body) in [
        ("docs/report.txt", "the report"),
        ("docs/old/draft.txt", "a draft"),
        ("top.txt", "top"),
    ] {
        std::fs::write(folder.path().join(path), body).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    // Not run on the test's own thread: the hub it talks to runs there.
    let out = tokio::process::Command::new(BIN)
        .args([
            "agent",
            "--hub",
            &app.base,
            "--token",
            &token,
            "--collection",
            "Files",
            "--once",
            "--dir",
        ])
        .arg(folder.path())
        .env("FEEDMESH_DATA_DIR", state.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (_, page) = b.get("/files").await;
    assert!(page.contains("href=\"/files/Files\""), "{page}");
    let (_, page) = b.get("/files/Files").await;
    assert!(page.contains("3 items"), "{page}");
    assert!(
        page.contains("▸ docs/</h2>") && page.contains("▸ docs/old/</h2>"),
        "a tree: {page}"
    );
    assert!(
        page.contains(">report.txt</a>") && page.contains(">draft.txt</a>"),
        "{page}"
    );
    let first = page.find("/files/Files/item?id=").unwrap() + 21;
    let id = page[first..].split('"').next().unwrap().to_string();
    let (status, item) = b.get(&format!("/files/Files/item?id={id}")).await;
    assert_eq!(status, 200, "{item}");
    let at = item.find("class=\"button\" href=\"").expect("a download link") + 21;
    let download = item[at..].split('"').next().unwrap().to_string();
    let (status, body) = b.get(download.trim_start_matches(&app.base)).await;
    assert_eq!(status, 200);
    assert!(["the report", "a draft", "top"].contains(&body.as_str()), "{body}");
}

#[tokio::test]
async fn every_page_action_is_a_json_api_call_too() {
    let app = TestApp::spawn().await;
    let laptop = with_password(&app, "alice", "correct horse battery").await;
    app.collection("alice", "Notes").await;
    let phone = a_conflict(&app, &laptop).await;
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (_, page) = b.get("/devices").await;
    let csrf = csrf_of(&page);
    let cookie = b.cookie_header();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = b
            .client
            .request(method, format!("{}{path}", app.base))
            .header("cookie", cookie.clone())
            .header("x-csrf-token", csrf.clone());
        if let Some(body) = body {
            r = r.json(&body);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::String(text)),
            )
        }
    };
    use reqwest::Method;
    // Devices: made (the token once), listed (its prefix only), revoked.
    let (status, made) = call(
        Method::POST,
        "/api/devices",
        Some(serde_json::json!({"device": "tablet"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert_eq!(app.get(&token, "/atompub").await.status(), 200);
    let (_, list) = call(Method::GET, "/api/devices", None).await;
    assert!(
        list.as_array().unwrap().iter().any(|t| t["device"] == "tablet"),
        "{list}"
    );
    assert!(!list.to_string().contains(&token));
    let (status, _) = call(Method::DELETE, &format!("/api/devices/{}", made["id"]), None).await;
    assert_eq!(status, 204);
    assert_eq!(app.get(&token, "/atompub").await.status(), 401);
    // App passwords the same way.
    let (status, pw) = call(
        Method::POST,
        "/api/app-passwords",
        Some(serde_json::json!({"name": "reader"})),
    )
    .await;
    assert_eq!(status, 201, "{pw}");
    let (_, list) = call(Method::GET, "/api/app-passwords", None).await;
    assert_eq!(list[0]["name"], "reader");
    let (status, _) = call(Method::DELETE, &format!("/api/app-passwords/{}", pw["id"]), None).await;
    assert_eq!(status, 204);
    // A device token (or an app password) may not mint credentials, by API or by page.
    for path in ["/api/devices", "/api/app-passwords"] {
        let r = app
            .client
            .post(app.url(path))
            .bearer_auth(&laptop)
            .json(&serde_json::json!({"device": "x", "name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = app
        .client
        .post(app.url("/devices"))
        .bearer_auth(&laptop)
        .form(&[("device", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Conflicts: listed, read, resolved; a stale seq is 412 and changes nothing.
    let (_, list) = call(Method::GET, "/api/conflicts", None).await;
    assert_eq!(list[0]["id"], "note-1", "{list}");
    assert_eq!(list[0]["versions"], 2);
    let (_, item) = call(Method::GET, "/api/conflicts/item?collection=Notes&id=note-1", None).await;
    assert_eq!(item["current"]["by"], "alice/phone", "{item}");
    assert_eq!(item["conflicts"][0]["by"], "alice/laptop");
    let seq = item["seq"].as_u64().unwrap();
    let resolve =
        |seq: u64, keep: &str| serde_json::json!({"collection": "Notes", "id": "note-1", "seq": seq, "keep": keep});
    let (status, _) = call(
        Method::POST,
        "/api/conflicts/resolve",
        Some(resolve(seq - 1, "conflict-0")),
    )
    .await;
    assert_eq!(status, 412);
    let (status, _) = call(Method::POST, "/api/conflicts/resolve", Some(resolve(seq, "sideways"))).await;
    assert_eq!(status, 400);
    let (status, done) = call(Method::POST, "/api/conflicts/resolve", Some(resolve(seq, "conflict-0"))).await;
    assert_eq!(status, 200, "{done}");
    let feed = app.get(&phone, "/atompub/alice/Notes").await.text().await.unwrap();
    assert!(
        !feed.contains("<sx:conflicts>") && feed.contains("laptop words"),
        "{feed}"
    );
    let (_, list) = call(Method::GET, "/api/conflicts", None).await;
    assert_eq!(list, serde_json::json!([]));
}

/// With more contacts than a picker lists (200), the contact page offers the likely matches
/// and takes any other contact's id, and the search form takes a contact id: the pages stay
/// small however many contacts there are.
#[tokio::test]
async fn pages_with_many_contacts_offer_likely_matches_and_take_an_id() {
    let app = TestApp::spawn().await;
    let token = with_password(&app, "alice", "correct horse battery").await;
    let mut cards = String::new();
    for i in 0..230 {
        cards.push_str(&format!(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Person {i:03}\r\nEMAIL:p{i}@example.org\r\nEND:VCARD\r\n"
        ));
    }
    cards.push_str(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zed Twin\r\nORG:Twins Ltd\r\nEMAIL:zed@twins.example\r\nEND:VCARD\r\n",
    );
    cards.push_str("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zed T.\r\nEMAIL:zed.t@else.example\r\nEND:VCARD\r\n");
    cards.push_str("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Other Twin\r\nORG:Twins Ltd\r\nEND:VCARD\r\n");
    let r = app
        .client
        .post(app.url("/api/contacts/import"))
        .bearer_auth(&token)
        .header("content-type", "text/vcard")
        .body(cards)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = app.get(&token, "/api/contacts").await.json().await.unwrap();
    let id_of = |name: &str| {
        list.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (zed, zed_t, person) = (id_of("Zed Twin"), id_of("Zed T."), id_of("Person 007"));
    let mut b = Browser::new(&app.base);
    b.log_in("alice", "correct horse battery").await;
    let (status, page) = b.get(&format!("/contacts/{zed}")).await;
    assert_eq!(status, 200);
    // The likely matches (same first word, same org) and no long list of everyone.
    assert!(page.contains("Zed T.") && page.contains("Other Twin"), "{page}");
    assert!(
        !page.contains("Person 007") && page.contains("name=\"other_id\""),
        "{page}"
    );
    // Anyone else, by id.
    let csrf = csrf_of(&page);
    let (status, to) = b
        .post(
            &format!("/contacts/{zed}/merge"),
            &[("other", ""), ("other_id", &person), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 303, "{to}");
    let (_, page) = b.get(&to).await;
    assert!(
        page.contains("p7@example.org") && page.contains("Undo the merge"),
        "{page}"
    );
    // The search form takes a contact's id instead of listing 232 names.
    let (status, page) = b.get(&format!("/search?q=&contact={zed_t}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("name=\"contact\" value=\"{zed_t}\"")) && !page.contains("Person 100"),
        "{page}"
    );
}
