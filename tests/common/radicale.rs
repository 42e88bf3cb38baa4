//! Radicale (Debian's, or the one in FEEDMESH_RADICALE) as ../shared/PEERS-connectors.md §1
//! configures it: htpasswd users in plain text, each seeing only their own collections,
//! storage under a scratch directory, on 127.0.0.1 port 0 (it logs the port it got).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "dav-pw-9qz";

pub struct Radicale {
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    child: Child,
    client: reqwest::Client,
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Radicale {
    /// A running Radicale with alice's empty address book `contacts`, or None (a skip)
    /// when it is not installed outside CI.
    pub async fn start() -> Option<Radicale> {
        feedmesh::net::install_crypto();
        let bin = std::env::var_os("FEEDMESH_RADICALE")
            .map(std::path::PathBuf::from)
            .or_else(|| super::peer("radicale"))?;
        let dir = tempfile::Builder::new().prefix("feedmesh-radicale").tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("users"), format!("{USER}:{PASSWORD}\nbob:bob-pw\n")).unwrap();
        std::fs::write(
            d.join("config"),
            format!(
                "[server]\nhosts = 127.0.0.1:0\n[auth]\ntype = htpasswd\nhtpasswd_filename = {}/users\n\
                 htpasswd_encryption = plain\ndelay = 0\n[rights]\ntype = owner_only\n[storage]\n\
                 filesystem_folder = {}/collections\n[web]\ntype = none\n",
                d.display(),
                d.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("-C")
            .arg(d.join("config"))
            .args(["--logging-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("radicale printed its address").unwrap();
            if let Some(rest) = line.split("Listening on '").nth(1) {
                let addr = rest.split('\'').next().unwrap().replace(['[', ']'], "");
                break format!("http://{addr}");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let r = Radicale {
            dir,
            base,
            child,
            client: reqwest::Client::new(),
        };
        let mk = r
            .request(reqwest::Method::from_bytes(b"MKCOL").unwrap(), "/alice/contacts/")
            .header("Content-Type", "application/xml")
            .body(
                "<?xml version=\"1.0\"?><d:mkcol xmlns:d=\"DAV:\" xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><d:set><d:prop>\
                 <d:resourcetype><d:collection/><card:addressbook/></d:resourcetype><d:displayname>Contacts</d:displayname>\
                 </d:prop></d:set></d:mkcol>",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(mk.status(), 201, "MKCOL the address book");
        Some(r)
    }

    /// The address book's URL.
    pub fn book(&self) -> String {
        format!("{}/alice/contacts/", self.base)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
    }

    /// PUTs a card as a phone would (a new one: `If-None-Match: *`); answers its ETag.
    pub async fn put(&self, name: &str, card: &str, etag: Option<&str>) -> (u16, String) {
        let mut r = self
            .request(reqwest::Method::PUT, &format!("/alice/contacts/{name}"))
            .header("Content-Type", "text/vcard; charset=utf-8")
            .body(card.to_string());
        r = match etag {
            Some(e) => r.header("If-Match", e),
            None => r.header("If-None-Match", "*"),
        };
        let resp = r.send().await.unwrap();
        let etag = resp
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (resp.status().as_u16(), etag)
    }

    /// A card's text and ETag, or None.
    pub async fn get(&self, name: &str) -> Option<(String, String)> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/alice/contacts/{name}"))
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return None;
        }
        assert_eq!(resp.status(), 200);
        let etag = resp.headers().get("etag").unwrap().to_str().unwrap().to_string();
        Some((resp.text().await.unwrap(), etag))
    }

    pub async fn delete(&self, name: &str) {
        let resp = self
            .request(reqwest::Method::DELETE, &format!("/alice/contacts/{name}"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }

    /// The names of the cards in the book and their texts.
    pub async fn cards(&self) -> Vec<(String, String)> {
        let dir = self.dir.path().join("collections/collection-root/alice/contacts");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some((text, _)) = self.get(&name).await {
                out.push((name, text));
            }
        }
        out.sort();
        out
    }
}

/// A vCard 3.0 as a phone writes one.
pub fn card(uid: &str, name: &str, extra: &[&str]) -> String {
    let (given, family) = name.split_once(' ').unwrap_or((name, ""));
    let mut c = format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{family};{given};;;\r\n");
    for e in extra {
        c.push_str(e);
        c.push_str("\r\n");
    }
    c.push_str("END:VCARD\r\n");
    c
}
