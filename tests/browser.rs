//! The web app in a real browser: headless Chromium, driven by playwright-core through
//! tests/browser/app.mjs, against a real hub on 127.0.0.1 holding real data (a stream with
//! hostile content, contacts, a conflict made by two devices). axe-core checks every page;
//! screenshots of each page at desktop and phone widths go to target/screenshots/.

use crate::common::{TestApp, entry, node_with, peer, sync_entry};
use feedmesh::usecases::logins;

async fn contact(app: &TestApp, token: &str, name: &str, identity: &str) {
    let r = app
        .client
        .post(app.url("/api/contacts"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name, "identities": [identity]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_person_uses_the_web_app_in_chromium() {
    let Some((node, peers)) = node_with("@axe-core/playwright") else {
        return;
    };
    let Some(chromium) = peer("chromium") else {
        return;
    };
    let app = TestApp::spawn().await;
    let laptop = app.token("alice", "laptop").await;
    logins::set_password(app.store.as_ref(), "alice", "correct horse battery")
        .await
        .unwrap();
    app.collection("alice", "Notes").await;
    app.collection("alice", "Mail").await;
    app.post_entry(&laptop, "/atompub/alice/Notes", entry("Hello from the laptop", "hi"))
        .await;
    // What a hostile service might send: a script in a toot's HTML, an e-mail subject, a
    // file name. None of it may run in any page.
    let hostile = r#"<entry xmlns="http://www.w3.org/2005/Atom"><title>&lt;img src=x onerror="window.__pwned=1"&gt;</title><content type="html">&lt;p&gt;toot&lt;/p&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror="window.__pwned=1"&gt;</content></entry>"#;
    app.post_entry(&laptop, "/atompub/alice/Notes", hostile).await;
    let mail = |name: &str, email: &str, subject: &str| {
        format!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:activity="http://activitystrea.ms/spec/1.0/"><title>{subject}</title><author><name>{name}</name><email>{email}</email></author><activity:object-type>http://activitystrea.ms/schema/1.0/message</activity:object-type><content type="text">mail</content></entry>"#
        )
    };
    app.post_entry(
        &laptop,
        "/atompub/alice/Mail",
        mail("Bob Builder", "bob@example.com", "Quote for the roof"),
    )
    .await;
    app.post_entry(
        &laptop,
        "/atompub/alice/Mail",
        mail(
            "Eve",
            "eve@example.com",
            "&lt;script&gt;window.__pwned=1&lt;/script&gt;",
        ),
    )
    .await;
    contact(&app, &laptop, "Bob Builder", "mailto:bob@example.com").await;
    contact(&app, &laptop, "Robert B", "mailto:rob@work.example").await;
    // Two devices edit the shopping list offline.
    let phone = app.token("alice", "phone").await;
    let base = [(1, "2026-01-01T10:00:00Z", "alice/laptop")];
    app.post_entry(
        &laptop,
        "/atompub/alice/Notes",
        sync_entry("shop", 1, false, &base, "Shopping list"),
    )
    .await;
    let edit = |by: &str, at: &str, item: &str| {
        sync_entry("shop", 2, false, &[(2, at, by), base[0]], "Shopping list")
            .replace("Shopping list body", &format!("milk\n{item}\nbread"))
    };
    app.post_entry(
        &laptop,
        "/atompub/alice/Notes",
        edit("alice/laptop", "2026-01-01T10:05:00Z", "eggs"),
    )
    .await;
    let r = app
        .post_entry(
            &phone,
            "/atompub/alice/Notes",
            edit("alice/phone", "2026-01-01T10:07:00Z", "apples"),
        )
        .await;
    assert_eq!(r.headers()["feedmesh-change"], "conflict");

    // A GitHub account behind a real OAuth server (oidc-provider), connected in the browser.
    let provider = crate::connectors::oidc_provider(&format!("{}/oauth/callback", app.base), &[]).await;
    let (gh_api, gh) = crate::connectors::github().await;
    if let Some((issuer, _)) = &provider {
        // The GitHub API checks the tokens the OAuth server issued.
        gh.lock().unwrap().introspect = Some(format!("{issuer}/token/introspection"));
        let client = serde_json::json!({"provider": "github", "client_id": "hub", "client_secret": "hub-secret",
            "authorize_url": format!("{issuer}/auth"), "token_url": format!("{issuer}/token"),
            "revoke_url": format!("{issuer}/token/revocation"), "scope": "openid offline_access read:user"});
        let r = app
            .client
            .post(app.url("/api/oauth-clients"))
            .bearer_auth(&laptop)
            .json(&client)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    // Only this run's pictures (a failure's too) are left there.
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::process::Command::new(node)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/app.mjs"))
        .env("FM_BASE", &app.base)
        .env("FM_USER", "alice")
        .env("FM_PASSWORD", "correct horse battery")
        .env("FM_TOKEN", &laptop)
        .env("FM_PEERS", &peers)
        .env("FM_SHOTS", &shots)
        .env("FM_CHROMIUM", &chromium)
        .env("FM_GITHUB_API", if provider.is_some() { gh_api.as_str() } else { "" })
        .output()
        .await
        .expect("node runs");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser run failed:\n{said}");
    // Every page was checked, and has its screenshots.
    for page in [
        "login",
        "stream",
        "contacts",
        "contact",
        "search",
        "view",
        "conflicts",
        "conflict",
        "item",
        "files",
        "devices",
        "feeds",
    ] {
        assert!(said.contains(&format!("page: {page} ")), "{page} not checked:\n{said}");
        for width in ["desktop", "phone"] {
            assert!(
                shots.join(format!("{page}-{width}.png")).is_file(),
                "{page}-{width}.png"
            );
        }
    }
}
