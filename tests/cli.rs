//! The `feedmesh` binary as users and scripts drive it: admin commands, `--help`, env vars,
//! `serve` as a real process, and no acknowledged write lost to `kill -9`.

use std::process::Command;

use crate::common::process::*;
use crate::common::{ATOM_ENTRY, entry};

#[test]
fn the_sealing_key_is_made_private_on_first_use_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let key_file = d.join("secret.key");
    let key = std::fs::read_to_string(&key_file).expect("the first command made DATA_DIR/secret.key");
    assert_eq!(key.trim().len(), 64, "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The same key given in the environment is the same key; another one is refused.
    let with_key = |k: &str| {
        let out = Command::new(BIN)
            .args(["user", "list"])
            .env("FEEDMESH_DATA_DIR", d)
            .env_remove("FEEDMESH_DATABASE_URL")
            .env("FEEDMESH_SECRET_KEY", k)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (success, err) = with_key(key.trim());
    assert!(success, "{err}");
    let (success, err) = with_key(&"ab".repeat(32));
    assert!(
        !success && err.contains("another key") && err.contains("FEEDMESH_SECRET_KEY"),
        "{err}"
    );
    let (success, err) = with_key("not-hex");
    assert!(
        !success && err.contains("FEEDMESH_SECRET_KEY") && err.contains("64 hex digits"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The key never shows in --help, even when set.
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .env("FEEDMESH_SECRET_KEY", key.trim())
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("FEEDMESH_SECRET_KEY") && !help.contains(key.trim()),
        "{help}"
    );
}

#[test]
fn admin_commands_manage_users_tokens_collections_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let (success, _, err) = feedmesh(d, &["user", "add", "alice"]);
    assert!(!success && err.contains("already exists"), "{err}");
    let (success, _, err) = feedmesh(d, &["user", "add", "Not Valid"]);
    assert!(
        !success && err.contains("user name") && err.contains("Not Valid"),
        "{err}"
    );
    assert!(ok(d, &["user", "list"]).starts_with("alice\t"));

    let out = ok(d, &["token", "add", "alice", "--device", "laptop"]);
    let token = out.lines().last().unwrap();
    assert!(token.starts_with("fm_") && token.len() > 40, "{out}");
    let db = std::fs::read(d.join("feedmesh.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(token),
        "the token is stored in clear"
    );
    let list = ok(d, &["token", "list", "alice"]);
    assert!(
        list.contains("laptop") && list.contains("live") && !list.contains(token),
        "{list}"
    );
    let (success, _, err) = feedmesh(d, &["token", "add", "nobody", "--device", "x"]);
    assert!(!success && err.contains("user not found"), "{err}");

    ok(d, &["collection", "add", "alice", "Notes"]);
    assert!(ok(d, &["collection", "list", "alice"]).starts_with("Notes\t"));
    let (success, _, err) = feedmesh(d, &["collection", "add", "alice", "Notes"]);
    assert!(!success && err.contains("already exists"), "{err}");

    let url = ok(
        d,
        &[
            "key",
            "add",
            "alice",
            "/u/alice/stream.atom",
            "--base-url",
            "http://hub.example",
        ],
    );
    assert!(
        url.lines()
            .last()
            .unwrap()
            .starts_with("http://hub.example/u/alice/stream.atom?key=fk_"),
        "{url}"
    );
    let (success, _, err) = feedmesh(d, &["key", "add", "alice", "/u/bob/stream.atom"]);
    assert!(!success && err.contains("not a feed of alice"), "{err}");
    assert!(ok(d, &["key", "list", "alice"]).contains("/u/alice/stream"));

    ok(
        d,
        &[
            "follow",
            "add",
            "alice",
            "https://blog.example/feed.xml",
            "--collection",
            "Notes",
        ],
    );
    let follows = ok(d, &["follow", "list", "alice"]);
    assert!(
        follows.contains("1\tpolling\thttps://blog.example/feed.xml"),
        "{follows}"
    );
    for (args, says) in [
        (
            vec!["follow", "add", "alice", "ftp://x/feed", "--collection", "Notes"],
            "cannot follow",
        ),
        (
            vec!["follow", "add", "alice", "https://x/feed", "--collection", "Nope"],
            "no collection",
        ),
        (
            vec![
                "follow",
                "add",
                "alice",
                "https://blog.example/feed.xml",
                "--collection",
                "Notes",
            ],
            "already exists",
        ),
        (vec!["follow", "remove", "alice", "99"], "cannot remove follow 99"),
    ] {
        let (success, _, err) = feedmesh(d, &args);
        assert!(!success && err.contains(says), "{args:?}: {err}");
    }
    ok(d, &["follow", "remove", "alice", "1"]);
    assert!(!ok(d, &["follow", "list", "alice"]).contains("blog.example"));

    let id = list.lines().nth(1).unwrap().split('\t').next().unwrap();
    ok(d, &["token", "revoke", "alice", id]);
    assert!(ok(d, &["token", "list", "alice"]).contains("revoked"));
    let (success, _, _) = feedmesh(d, &["token", "revoke", "alice", id]);
    assert!(!success, "revoking twice succeeded");
}

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["token", "add", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["collection", "add", "--help"],
        vec!["key", "add", "--help"],
        vec!["follow", "add", "--help"],
        vec!["connector", "add", "--help"],
        vec!["connector", "list", "--help"],
        vec!["oauth-client", "add", "--help"],
        vec!["import", "opml", "--help"],
    ] {
        let out = ok(dir.path(), &args);
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    let serve = ok(dir.path(), &["serve", "--help"]);
    for flag in [
        "--listen",
        "--database",
        "--data-dir",
        "--base-url",
        "--allow-private-network",
        "--websub-signature",
        "--hub-rate-limit",
        "--open-hub",
        "--poll-interval",
        "FEEDMESH_LISTEN",
        "FEEDMESH_BASE_URL",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    let (success, _, err) = feedmesh(dir.path(), &["serve", "--database", "mysql://x"]);
    assert!(!success && err.contains("unsupported database URL"), "{err}");
}

#[test]
fn serve_runs_from_the_cli_with_env_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = alice_with_notes(d);
    let (mut child, url) = serve(d);
    let client = http::Client::new();
    let r = client.get(&format!("{url}/atompub"), &token);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(r.contains(&format!("{url}/atompub/alice/Notes")), "{r}");
}

/// A tiny blocking HTTP/1.1 client over std, so process tests need no async runtime.
mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub struct Client;

    impl Client {
        pub fn new() -> Self {
            Client
        }
        pub fn get(&self, url: &str, token: &str) -> String {
            request(url, "GET", token, "", "")
        }
    }

    pub fn request(url: &str, method: &str, token: &str, content_type: &str, body: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
        let mut s = TcpStream::connect(host).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = alice_with_notes(d);
    let (mut child, url) = serve(d);

    // Four writers post as fast as they can; the hub is killed in the middle.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, token, acked, stop) = (url.clone(), token.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let title = format!("w{w}-{i}");
                    let target = format!("{url}/atompub/alice/Notes");
                    let resp = std::panic::catch_unwind(|| {
                        http::request(&target, "POST", &token, ATOM_ENTRY, &entry(&title, "x"))
                    });
                    match resp {
                        Ok(r) if r.starts_with("HTTP/1.1 201") => acked.lock().unwrap().push(title),
                        _ => break, // the hub is gone
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 150 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    let acked = acknowledged.lock().unwrap().clone();

    let (mut child, url) = serve(d);
    let mut titles = String::new();
    let mut next = Some(format!("{url}/atompub/alice/Notes?limit=1000"));
    while let Some(page) = next.take() {
        let body = http::Client::new().get(&page, &token);
        next = body
            .split("rel=\"next\" href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|s| s.replace("&amp;", "&"));
        titles.push_str(&body);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked.len() >= 150);
    for t in &acked {
        assert!(titles.contains(&format!(">{t}<")), "acknowledged entry {t} was lost");
    }
}

/// What phones and Google/Apple export: vCard 3.0 and 4.0 cards in one file.
const PHONE_EXPORT: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Example\r\nN:Example;Ann;;;\r\nORG:Acme Inc.\r\n\
TEL;TYPE=CELL:(415) 555-0100\r\nEMAIL;TYPE=INTERNET:Ann@Acme.com\r\nCATEGORIES:customer\r\nEND:VCARD\r\n\
BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn-bob-1\r\nFN:Bob Smith\r\nTEL;VALUE=uri:tel:+44-20-7946-0018\r\nEND:VCARD\r\n";

#[test]
fn contacts_import_list_and_export_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let file = d.join("contacts.vcf");
    std::fs::write(&file, PHONE_EXPORT).unwrap();
    let (success, _, err) = feedmesh(d, &["contact", "import", "alice", file.to_str().unwrap()]);
    assert!(success && err.contains("2 created, 0 updated, 0 unchanged"), "{err}");
    // The same file again adds nothing.
    let (success, _, err) = feedmesh(d, &["contact", "import", "alice", file.to_str().unwrap()]);
    assert!(success && err.contains("0 created, 0 updated, 2 unchanged"), "{err}");
    let list = ok(d, &["contact", "list", "alice"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[1].contains("Ann Example\tAcme Inc.\tmailto:ann@acme.com tel:+14155550100\tcustomer"),
        "{list}"
    );
    assert!(
        lines[2].starts_with("urn-bob-1\tBob Smith\t-\ttel:+442079460018"),
        "{list}"
    );
    // National numbers are read in --default-region: the same number, another region's spelling.
    std::fs::write(
        &file,
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bob S.\r\nTEL:020 7946 0018\r\nNOTE:met in London\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let (success, _, err) = feedmesh(
        d,
        &[
            "contact",
            "import",
            "alice",
            file.to_str().unwrap(),
            "--default-region",
            "GB",
        ],
    );
    assert!(success && err.contains("0 created, 1 updated"), "{err}");
    // One person twice in a file (an e-mail in common) is one contact with both cards' data.
    std::fs::write(
        &file,
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Carol\r\nEMAIL:carol@x.example\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Carol W.\r\nEMAIL:Carol@X.example\r\nTEL:+1 415 555 0177\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let (success, _, err) = feedmesh(d, &["contact", "import", "alice", file.to_str().unwrap()]);
    assert!(success && err.contains("1 created, 0 updated, 1 unchanged"), "{err}");
    let list = ok(d, &["contact", "list", "alice"]);
    assert!(
        list.contains("Carol\t-\tmailto:carol@x.example tel:+14155550177"),
        "{list}"
    );
    ok(d, &["contact", "import", "alice", file.to_str().unwrap()]);
    let export = ok(d, &["contact", "export", "alice"]);
    assert_eq!(export.matches("BEGIN:VCARD\r\nVERSION:4.0\r\n").count(), 3, "{export}");
    assert!(
        export.contains("EMAIL:ann@acme.com") && export.contains("UID:urn-bob-1"),
        "{export}"
    );
    assert!(
        export.contains("NOTE:met in London") && !export.contains("Bob S."),
        "{export}"
    );
    // A broken file is refused whole, naming the card; nothing changes.
    std::fs::write(
        &file,
        format!("{PHONE_EXPORT}BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Carol\r\nnot a property\r\nEND:VCARD\r\n"),
    )
    .unwrap();
    let (success, _, err) = feedmesh(d, &["contact", "import", "alice", file.to_str().unwrap()]);
    assert!(
        !success && err.contains("card 3") && err.contains("not a vCard property"),
        "{err}"
    );
    let (success, _, err) = feedmesh(d, &["contact", "import", "alice", "/nonexistent.vcf"]);
    assert!(!success && err.contains("cannot read /nonexistent.vcf"), "{err}");
    let (success, _, err) = feedmesh(d, &["contact", "list", "alice", "--default-region", "XX"]);
    assert!(!success && err.contains("not an ISO 3166 region code"), "{err}");
    assert_eq!(ok(d, &["contact", "list", "alice"]).lines().count(), 4);
}

#[test]
fn connectors_are_added_listed_paused_resumed_and_removed_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let help = ok(d, &["connector", "add", "--help"]);
    for needle in ["github", "--option login=", "(secret)", "feed", "--option url="] {
        assert!(help.contains(needle), "connector add --help lacks {needle}: {help}");
    }
    // Mistakes are named; nothing is made.
    for (args, named) in [
        (vec!["connector", "add", "alice", "gitlab"], "gitlab"),
        (vec!["connector", "add", "alice", "github"], "login"),
        (
            vec!["connector", "add", "alice", "github", "--option", "login"],
            "KEY=VALUE",
        ),
        (
            vec!["connector", "add", "alice", "feed", "--option", "url=gopher://x"],
            "url",
        ),
        (
            vec![
                "connector",
                "add",
                "nobody",
                "feed",
                "--option",
                "url=https://x.example/f",
            ],
            "nobody",
        ),
    ] {
        let (success, _, err) = feedmesh(d, &args);
        assert!(
            !success && err.contains(named) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    let secret = "ghp_cli_secret_0002";
    let id = ok(
        d,
        &[
            "connector",
            "add",
            "alice",
            "github",
            "--option",
            "login=octocat",
            "--option",
            &format!("token={secret}"),
        ],
    );
    let id = id.trim();
    assert!(id.parse::<i64>().is_ok(), "the id is printed: {id}");
    ok(
        d,
        &[
            "connector",
            "add",
            "alice",
            "feed",
            "--collection",
            "News",
            "--option",
            "url=https://blog.example/feed",
        ],
    );
    let list = ok(d, &["connector", "list", "alice"]);
    assert!(
        list.starts_with("ID\tKIND\tACCOUNT\tSTATE\tLAST SYNC\tLAST ERROR"),
        "{list}"
    );
    assert!(list.contains(&format!("{id}\tgithub\t-\tactive")), "{list}");
    assert!(list.contains("\tfeed\t-\tactive"), "{list}");
    assert!(!list.contains(secret), "the token is never printed: {list}");
    ok(d, &["connector", "pause", "alice", id]);
    assert!(ok(d, &["connector", "list", "alice"]).contains(&format!("{id}\tgithub\t-\tpaused")));
    let (success, _, err) = feedmesh(d, &["connector", "sync", "alice", id]);
    assert!(!success && err.contains("paused"), "{err}");
    ok(d, &["connector", "resume", "alice", id]);
    assert!(ok(d, &["connector", "list", "alice"]).contains(&format!("{id}\tgithub\t-\tactive")));
    ok(d, &["connector", "remove", "alice", id]);
    let (success, _, err) = feedmesh(d, &["connector", "remove", "alice", id]);
    assert!(!success && err.contains("not found"), "{err}");
    assert!(!ok(d, &["connector", "list", "alice"]).contains("github"));

    // OAuth: without a client registration a token-less github connector is refused; with
    // one, the authorization URL is the last line of stdout and the connector needs-auth.
    let (success, _, err) = feedmesh(d, &["connector", "add", "alice", "github", "--option", "login=octocat"]);
    assert!(!success && err.contains("oauth-client add"), "{err}");
    let (success, _, err) = feedmesh(d, &["oauth-client", "add", "alice", "gitea", "--client-id", "x"]);
    assert!(!success && err.contains("--authorize-url"), "{err}");
    // An issuer on a private address is refused unless allowed; unreachable, it is named.
    let (success, _, err) = feedmesh(
        d,
        &["oauth-client", "add", "alice", "idp", "--issuer", "http://10.0.0.1/"],
    );
    assert!(!success && err.contains("issuer") && err.contains("private"), "{err}");
    let (success, _, err) = feedmesh(
        d,
        &[
            "oauth-client",
            "add",
            "alice",
            "idp",
            "--issuer",
            "http://127.0.0.1:9",
            "--allow-private-network",
        ],
    );
    assert!(!success && err.contains("the issuer http://127.0.0.1:9"), "{err}");
    ok(
        d,
        &[
            "oauth-client",
            "add",
            "alice",
            "github",
            "--client-id",
            "Iv1.abc",
            "--client-secret",
            "cs_cli_0003",
        ],
    );
    let clients = ok(d, &["oauth-client", "list", "alice"]);
    assert!(
        clients.contains("github\tIv1.abc\thttps://github.com/login/oauth/authorize"),
        "{clients}"
    );
    assert!(!clients.contains("cs_cli_0003"), "{clients}");
    let out = ok(d, &["connector", "add", "alice", "github", "--option", "login=octocat"]);
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("https://github.com/login/oauth/authorize?"), "{out}");
    assert!(
        last.contains("code_challenge_method=S256") && last.contains("state="),
        "{last}"
    );
    assert!(ok(d, &["connector", "list", "alice"]).contains("\tgithub\t-\tneeds-auth"));
    let (success, _, err) = feedmesh(d, &["connector", "resume", "alice", out.lines().next().unwrap()]);
    assert!(!success && err.contains("needs-auth"), "{err}");
    let again = ok(d, &["connector", "reconnect", "alice", out.lines().next().unwrap()]);
    let url = again.lines().last().unwrap();
    assert!(
        url.starts_with("https://github.com/login/oauth/authorize?") && url != last,
        "a fresh URL: {again}"
    );
    ok(d, &["oauth-client", "remove", "alice", "github"]);
    assert!(!ok(d, &["oauth-client", "list", "alice"]).contains("Iv1.abc"));
}

#[test]
fn a_readers_opml_export_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let opml = d.join("subs.opml");
    std::fs::write(
        &opml,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Subscriptions</title></head><body>
  <outline text="Tech News" title="Tech News">
    <outline type="rss" text="A" xmlUrl="https://a.example/feed.xml" htmlUrl="https://a.example/"/>
    <outline text="Deeper"><outline type="rss" text="B" xmlUrl="https://b.example/atom"/></outline>
  </outline>
  <outline type="rss" text="C" xmlUrl="https://c.example/rss"/>
  <outline type="rss" text="Local" xmlUrl="http://127.0.0.1:9/feed"/>
  <outline type="rss" text="Odd" xmlUrl="gopher://d.example/"/>
</body></opml>"#,
    )
    .unwrap();
    let path = opml.to_str().unwrap();
    let (success, _, err) = feedmesh(d, &["import", "opml", "alice", path]);
    assert!(success, "{err}");
    assert!(err.contains("3 feeds added, 0 already followed, 2 skipped"), "{err}");
    assert!(
        err.contains("gopher://d.example/") && err.contains("127.0.0.1"),
        "the skipped are named: {err}"
    );
    let collections = ok(d, &["collection", "list", "alice"]);
    assert!(
        collections.contains("Tech-News") && collections.contains("Feeds"),
        "{collections}"
    );
    assert_eq!(ok(d, &["connector", "list", "alice"]).matches("\tfeed\t").count(), 3);
    // Again: nothing new.
    let (success, _, err) = feedmesh(d, &["import", "opml", "alice", path]);
    assert!(success && err.contains("0 feeds added, 3 already followed"), "{err}");
    // Not OPML: a clear error, nothing changed.
    std::fs::write(&opml, "<html><body>no</body></html>").unwrap();
    let (success, _, err) = feedmesh(d, &["import", "opml", "alice", path]);
    assert!(!success && err.contains("not OPML"), "{err}");
    assert_eq!(ok(d, &["connector", "list", "alice"]).matches("\tfeed\t").count(), 3);
}

#[test]
fn routes_are_added_listed_and_removed_by_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["user", "add", "alice"]);
    let help = ok(d, &["route", "add", "--help"]);
    for needle in [
        "--from <COLLECTION>",
        "--to <CONNECTOR_ID>",
        "--filter <KEY=VALUE>",
        "q=WORDS",
    ] {
        assert!(help.contains(needle), "route add --help lacks {needle}: {help}");
    }
    let feed = ok(
        d,
        &[
            "connector",
            "add",
            "alice",
            "feed",
            "--collection",
            "releases",
            "--option",
            "url=https://x.example/releases.atom",
        ],
    );
    let masto = ok(
        d,
        &[
            "connector",
            "add",
            "alice",
            "mastodon",
            "--option",
            "instance=https://m.example",
            "--option",
            "token=tok_cli_0003",
        ],
    );
    let (feed, masto) = (feed.trim(), masto.trim());
    assert!(
        !ok(d, &["connector", "list", "alice"]).contains("tok_cli_0003"),
        "a token is never printed"
    );
    for (args, named) in [
        (
            vec!["route", "add", "alice", "--from", "releases", "--to", feed],
            "posts nothing",
        ),
        (
            vec!["route", "add", "alice", "--from", "nowhere", "--to", masto],
            "nowhere",
        ),
        (
            vec!["route", "add", "alice", "--from", "releases", "--to", "999"],
            "connector",
        ),
        (
            vec![
                "route",
                "add",
                "alice",
                "--from",
                "releases",
                "--to",
                masto,
                "--filter",
                "colour=red",
            ],
            "colour",
        ),
        (
            vec![
                "route", "add", "alice", "--from", "releases", "--to", masto, "--filter", "released",
            ],
            "KEY=VALUE",
        ),
        (
            vec!["route", "add", "alice", "--from", "mastodon-outbox", "--to", masto],
            "own outbox",
        ),
        (
            vec!["route", "add", "nobody", "--from", "releases", "--to", masto],
            "nobody",
        ),
    ] {
        let (success, _, err) = feedmesh(d, &args);
        assert!(
            !success && err.contains(named) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        ok(d, &["route", "list", "alice"]).lines().count(),
        1,
        "nothing made by a mistake"
    );
    let id = ok(
        d,
        &[
            "route",
            "add",
            "alice",
            "--from",
            "releases",
            "--to",
            masto,
            "--filter",
            "q=released",
            "--filter",
            "type=Article",
        ],
    );
    let id = id.trim();
    assert!(id.parse::<i64>().is_ok(), "the id is printed: {id}");
    let (success, _, err) = feedmesh(d, &["route", "add", "alice", "--from", "releases", "--to", masto]);
    assert!(!success && err.contains("already"), "{err}");
    let list = ok(d, &["route", "list", "alice"]);
    assert!(list.starts_with("ID\tFROM\tTO\tFILTER"), "{list}");
    assert!(
        list.contains(&format!("{id}\treleases\t{masto} (mastodon)\tq=released type=Article")),
        "{list}"
    );
    ok(d, &["route", "remove", "alice", id]);
    assert_eq!(ok(d, &["route", "list", "alice"]).lines().count(), 1);
    let (success, _, err) = feedmesh(d, &["route", "remove", "alice", id]);
    assert!(!success && err.contains("not found"), "{err}");
}
