//! The CardDAV connector (RFC 6352): an address book synced both ways with the hub's
//! `Contacts`. It pulls with `sync-collection` (RFC 6578) from its sync token, then
//! `addressbook-multiget` for the cards that changed (a server without sync-collection is
//! listed whole with PROPFIND); deletions come back as [`Batch::gone`]. It pushes what
//! changed in the hub with `If-None-Match: *` (a new card) or `If-Match` (an edit, a
//! deletion); a 412 (the card changed at the server meanwhile) is read again and merged,
//! so neither side's edit is lost.
//!
//! A card's item id comes from its address in the book; its `remote_id` (JSON: address
//! and ETag) is what the hub records to send edits back.

#![forbid(unsafe_code)]

mod dav;

use async_trait::async_trait;
use feedmesh_connector::{
    Batch, ConfigError, Connector, ConnectorError, Cursor, Http, Method, OptionSpec, Options, Outgoing, Posted, Pulled,
    Request, Response, Secret,
};
use feedmesh_domain::entry::{Content, Entry, Text};
use sha2::{Digest, Sha256};

pub use dav::{Member, merge_cards};

/// The options of `feedmesh connector add USER carddav`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "url",
        required: true,
        secret: false,
        many: false,
        doc: "the address book's URL (https://dav.example/alice/contacts/)",
    },
    OptionSpec {
        name: "user",
        required: true,
        secret: false,
        many: false,
        doc: "the account's login",
    },
    OptionSpec {
        name: "password",
        required: true,
        secret: true,
        many: false,
        doc: "its password (sealed at rest)",
    },
];

/// The media type of a card.
pub const VCARD: &str = "text/vcard";
/// The largest card taken (a photo inside included).
pub const MAX_CARD: usize = 1024 * 1024;
/// The largest answer to a REPORT or PROPFIND.
const MAX_LISTING: usize = 64 * 1024 * 1024;
/// Cards asked for in one `addressbook-multiget`.
const MULTIGET: usize = 200;

#[derive(Clone, Debug)]
pub struct CardDavConfig {
    /// The address book's URL, ending in `/`.
    pub url: url::Url,
    pub user: String,
    pub password: Secret,
}

impl CardDavConfig {
    pub fn from_options(o: &Options) -> Result<Self, ConfigError> {
        let raw = o.get("url").unwrap_or_default();
        let mut url =
            url::Url::parse(raw).map_err(|e| ConfigError::new("url", format!("{raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(
                "url",
                format!("{raw:?}: an http or https address book URL"),
            ));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(CardDavConfig {
            url,
            user: o.get("user").unwrap_or_default().to_string(),
            password: o.secret("password").unwrap_or_else(|| Secret::new("")),
        })
    }
}

/// What the connector keeps between pulls.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The sync token of the last sync-collection; none before the first.
    #[serde(default)]
    pub token: Option<String>,
}

/// Where a card lives: its address and the ETag last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remote {
    pub href: String,
    #[serde(default)]
    pub etag: Option<String>,
    /// The card's UID at the server (an edit keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

pub struct CardDavConnector {
    config: CardDavConfig,
}

impl CardDavConnector {
    pub fn new(config: CardDavConfig) -> Self {
        CardDavConnector { config }
    }

    fn request(&self, method: Method, url: &str) -> Request {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.config.user,
            self.config.password.expose()
        ));
        Request {
            method,
            url: url.to_string(),
            max_bytes: MAX_LISTING,
            ..Request::default()
        }
        .header("Authorization", format!("Basic {basic}"))
    }

    fn xml(&self, method: Method, url: &str, depth: &str, body: String) -> Request {
        let mut r = self.request(method, url).header("Depth", depth);
        r.body = Some(("application/xml; charset=utf-8".into(), body.into_bytes()));
        r
    }

    /// The address of a card as an absolute URL (a server answers paths).
    fn absolute(&self, href: &str) -> Result<String, ConnectorError> {
        self.config
            .url
            .join(href)
            .map(|u| u.to_string())
            .map_err(|e| ConnectorError::Malformed(format!("a card address {href:?}: {e}")))
    }

    /// The changed members since `token` (sync-collection); `None` when the server has no
    /// sync-collection; `Err(Expired)` when it no longer knows the token.
    async fn changes(&self, http: &dyn Http, token: Option<&str>) -> Result<Option<dav::Listing>, ConnectorError> {
        let body = dav::sync_collection(token.unwrap_or(""));
        let r = http
            .send(self.xml(Method::Report, self.config.url.as_str(), "1", body))
            .await?;
        match r.status {
            207 => dav::parse_listing(&r.body).map(Some),
            403 | 409 if String::from_utf8_lossy(&r.body).contains("valid-sync-token") => Ok(Some(dav::Listing {
                expired: true,
                ..dav::Listing::default()
            })),
            400 | 403 | 405 | 501 => Ok(None),
            _ => Err(status_error(&r, "the address book")),
        }
    }

    /// Every member with its ETag (PROPFIND Depth 1).
    async fn members(&self, http: &dyn Http) -> Result<dav::Listing, ConnectorError> {
        let r = http
            .send(self.xml(Method::Propfind, self.config.url.as_str(), "1", dav::propfind_etags()))
            .await?;
        if r.status != 207 {
            return Err(status_error(&r, "the address book"));
        }
        let mut l = dav::parse_listing(&r.body)?;
        let me = self.config.url.path().to_string();
        l.members.retain(|m| !m.href.ends_with('/') && m.href != me);
        Ok(l)
    }

    /// The cards at `hrefs` (addressbook-multiget), with their ETags.
    async fn cards(&self, http: &dyn Http, hrefs: &[String]) -> Result<Vec<Member>, ConnectorError> {
        let mut out = Vec::new();
        for chunk in hrefs.chunks(MULTIGET) {
            let r = http
                .send(self.xml(Method::Report, self.config.url.as_str(), "1", dav::multiget(chunk)))
                .await?;
            if r.status != 207 {
                return Err(status_error(&r, "the address book"));
            }
            out.extend(
                dav::parse_listing(&r.body)?
                    .members
                    .into_iter()
                    .filter(|m| m.card.is_some()),
            );
        }
        Ok(out)
    }

    /// The item of a card read from the server.
    fn pulled(&self, m: Member) -> Pulled {
        let card = m.card.unwrap_or_default();
        let title = dav::property(&card, "FN").unwrap_or_else(|| "(a contact)".into());
        let uid = dav::property(&card, "UID");
        let mut p = Pulled::new(
            self.item_id(&m.href),
            Entry {
                title: Text::plain(title),
                content: Some(Content {
                    kind: VCARD.into(),
                    value: card,
                    src: None,
                }),
                object_type: Some("person".into()),
                ..Entry::default()
            },
        );
        p.remote_id = serde_json::to_string(&Remote {
            href: m.href,
            etag: m.etag,
            uid,
        })
        .ok();
        p
    }

    /// A card's item id: from its address (a path, the same however the server writes it).
    pub fn item_id(&self, href: &str) -> String {
        let path = self
            .config
            .url
            .join(href)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| href.to_string());
        let h = Sha256::digest(format!("{}\n{}", self.config.url.host_str().unwrap_or(""), path).as_bytes());
        format!("carddav-{}", &hex::encode(h)[..40])
    }

    /// PUTs `card` at `href` under `condition` (`If-Match` or `If-None-Match`); answers the
    /// status and the new ETag.
    async fn put(
        &self,
        http: &dyn Http,
        href: &str,
        card: &str,
        condition: (&str, &str),
    ) -> Result<(u16, Option<String>), ConnectorError> {
        let mut r = self
            .request(Method::Put, &self.absolute(href)?)
            .header(condition.0, condition.1);
        r.body = Some(("text/vcard; charset=utf-8".into(), card.as_bytes().to_vec()));
        r.max_bytes = 64 * 1024;
        let resp = http.send(r).await?;
        Ok((resp.status, resp.header("etag").map(str::to_string)))
    }

    /// GETs a card: its text and ETag (`None`: it is gone).
    async fn get(&self, http: &dyn Http, href: &str) -> Result<Option<(String, Option<String>)>, ConnectorError> {
        let mut r = self.request(Method::Get, &self.absolute(href)?);
        r.max_bytes = MAX_CARD;
        let resp = http.send(r).await?;
        match resp.status {
            200 => Ok(Some((
                String::from_utf8_lossy(&resp.body).into_owned(),
                resp.header("etag").map(str::to_string),
            ))),
            404 | 410 => Ok(None),
            _ => Err(status_error(&resp, "a card")),
        }
    }

    /// Writes `card` at `href`: as new, or over `etag`; a 412 is read again, merged, and
    /// written over the new ETag (a few times at most).
    async fn write(
        &self,
        http: &dyn Http,
        href: &str,
        card: &str,
        mut etag: Option<String>,
        mut uid: Option<String>,
    ) -> Result<Posted, ConnectorError> {
        let mut card = match &uid {
            Some(u) => dav::with_uid(card, u),
            None => card.to_string(),
        };
        for _ in 0..4 {
            let condition = match &etag {
                Some(e) => ("If-Match", e.as_str()),
                None => ("If-None-Match", "*"),
            };
            let (status, new_etag) = self.put(http, href, &card, condition).await?;
            match status {
                200 | 201 | 204 => {
                    let etag = match new_etag {
                        Some(e) => Some(e),
                        None => self.get(http, href).await?.and_then(|(_, e)| e),
                    };
                    return Ok(Posted {
                        remote_id: serde_json::to_string(&Remote {
                            href: href.to_string(),
                            etag,
                            uid: uid.or_else(|| dav::property(&card, "UID")),
                        })
                        .map_err(|e| ConnectorError::Malformed(e.to_string()))?,
                        url: None,
                    });
                }
                // Changed (or made, or removed) at the server since, or under another UID
                // (409): read it, merge (under its UID), again.
                412 | 404 | 409 => match self.get(http, href).await? {
                    Some((theirs, their_etag)) => {
                        card = merge_cards(&card, &theirs);
                        if let Some(u) = dav::property(&theirs, "UID") {
                            card = dav::with_uid(&card, &u);
                            uid = Some(u);
                        }
                        etag = their_etag;
                    }
                    None if status == 409 => {
                        return Err(ConnectorError::Permanent(
                            "the server refused the card (HTTP 409)".into(),
                        ));
                    }
                    None => etag = None,
                },
                401 | 403 => return Err(ConnectorError::Unauthorized(format!("PUT {href}: HTTP {status}"))),
                400 | 413 | 415 => {
                    return Err(ConnectorError::Permanent(format!(
                        "the server refused the card (HTTP {status})"
                    )));
                }
                _ => return Err(ConnectorError::Unreachable(format!("PUT {href}: HTTP {status}"))),
            }
        }
        Err(ConnectorError::Unreachable(format!(
            "{href} kept changing at the server; trying later"
        )))
    }
}

fn status_error(r: &Response, what: &str) -> ConnectorError {
    match r.status {
        401 | 403 => ConnectorError::Unauthorized(format!("{what}: HTTP {}", r.status)),
        404 | 410 => {
            ConnectorError::Permanent(format!("{what} is not there (HTTP {}): check the url option", r.status))
        }
        429 | 503 => ConnectorError::RateLimited(
            r.header("retry-after")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(60),
        ),
        s => ConnectorError::Unreachable(format!("{what}: HTTP {s}")),
    }
}

/// A safe file name for a new card: its UID, or the hub's key.
fn card_name(card: &str, key: &str) -> String {
    let uid = dav::property(card, "UID").unwrap_or_default();
    let pick = if !uid.is_empty() && uid.len() <= 100 {
        uid
    } else {
        key.to_string()
    };
    let name: String = pick
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{name}.vcf")
}

fn card_of(entry: &Entry) -> Result<&str, ConnectorError> {
    entry
        .content
        .as_ref()
        .filter(|c| c.kind.starts_with(VCARD))
        .map(|c| c.value.as_str())
        .ok_or(ConnectorError::Permanent("an item that is not a vCard".into()))
}

#[async_trait]
impl Connector for CardDavConnector {
    fn kind(&self) -> &'static str {
        "carddav"
    }

    async fn check(&self, http: &dyn Http) -> Result<String, ConnectorError> {
        let r = http
            .send(self.xml(Method::Propfind, self.config.url.as_str(), "0", dav::propfind_etags()))
            .await?;
        match r.status {
            207 => Ok(format!(
                "{}@{}",
                self.config.user,
                self.config.url.host_str().unwrap_or("")
            )),
            _ => Err(status_error(&r, "the address book")),
        }
    }

    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError> {
        let state: State = cursor
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut listing = self.changes(http, state.token.as_deref()).await?;
        if listing.as_ref().is_some_and(|l| l.expired) {
            // The server forgot the token: everything again (the hub changes what differs).
            listing = self.changes(http, None).await?;
        }
        let (listing, token) = match listing {
            Some(l) => {
                let t = l.token.clone();
                (l, t)
            }
            None => (self.members(http).await?, None),
        };
        let me = self.config.url.path().to_string();
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        for m in listing.members {
            if m.href.ends_with('/') || m.href == me {
                continue;
            }
            if m.gone {
                gone.push(self.item_id(&m.href));
            } else {
                changed.push(m.href);
            }
        }
        let mut items: Vec<Pulled> = self
            .cards(http, &changed)
            .await?
            .into_iter()
            .filter(|m| m.card.as_ref().is_some_and(|c| c.len() <= MAX_CARD))
            .map(|m| self.pulled(m))
            .collect();
        items.reverse();
        Ok(Batch {
            items,
            gone,
            cursor: Cursor {
                state: serde_json::to_string(&State { token }).ok(),
                ..Cursor::default()
            },
            url: self.config.url.to_string(),
            ..Batch::default()
        })
    }

    async fn push(&self, http: &dyn Http, item: Outgoing<'_>) -> Result<Posted, ConnectorError> {
        match item {
            Outgoing::Create { entry, idempotency_key } => {
                let card = card_of(entry)?;
                let href = self.absolute(&card_name(card, idempotency_key))?;
                let path = url::Url::parse(&href).map(|u| u.path().to_string()).unwrap_or(href);
                self.write(http, &path, card, None, None).await
            }
            Outgoing::Update { entry, remote_id } => {
                let card = card_of(entry)?;
                let remote: Remote = serde_json::from_str(remote_id)
                    .map_err(|_| ConnectorError::Permanent(format!("not a card's address: {remote_id}")))?;
                self.write(http, &remote.href, card, remote.etag, remote.uid).await
            }
            Outgoing::Delete { remote_id } => {
                let remote: Remote = serde_json::from_str(remote_id)
                    .map_err(|_| ConnectorError::Permanent(format!("not a card's address: {remote_id}")))?;
                let mut r = self.request(Method::Delete, &self.absolute(&remote.href)?);
                if let Some(e) = &remote.etag {
                    r = r.header("If-Match", e.as_str());
                }
                r.max_bytes = 64 * 1024;
                let resp = http.send(r).await?;
                match resp.status {
                    // 412: edited at the server since; kept, and its edit comes back in.
                    200 | 204 | 404 | 410 | 412 => Ok(Posted {
                        remote_id: remote_id.to_string(),
                        url: None,
                    }),
                    _ => Err(status_error(&resp, "a card")),
                }
            }
        }
    }

    fn pulled_id(&self, remote_id: &str) -> Option<String> {
        let remote: Remote = serde_json::from_str(remote_id).ok()?;
        Some(self.item_id(&remote.href))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<CardDavConfig, ConfigError> {
        let o = Options::new(
            OPTIONS,
            [("url", url), ("user", "alice"), ("password", "pw")].map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        CardDavConfig::from_options(&o)
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(
            config("http://dav.example/alice/contacts").unwrap().url.as_str(),
            "http://dav.example/alice/contacts/"
        );
        for bad in ["ftp://dav.example/", "not a url", "mailto:a@b.example"] {
            assert!(config(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_item_id_is_the_same_however_the_address_is_written() {
        let c = CardDavConnector::new(config("http://dav.example/alice/contacts/").unwrap());
        let a = c.item_id("/alice/contacts/c1.vcf");
        assert_eq!(a, c.item_id("http://dav.example/alice/contacts/c1.vcf"));
        assert_eq!(a, c.item_id("c1.vcf"));
        assert_ne!(a, c.item_id("/alice/contacts/c2.vcf"));
        assert_eq!(
            c.pulled_id(r#"{"href":"/alice/contacts/c1.vcf","etag":"\"x\""}"#),
            Some(a)
        );
    }

    #[test]
    fn a_new_card_is_named_by_its_uid_and_nothing_else() {
        assert_eq!(card_name("BEGIN:VCARD\r\nUID:ab-1\r\nEND:VCARD\r\n", "k"), "ab-1.vcf");
        assert_eq!(
            card_name("BEGIN:VCARD\r\nUID:../../etc\r\nEND:VCARD\r\n", "k"),
            "..-..-etc.vcf"
        );
        assert_eq!(
            card_name("BEGIN:VCARD\r\nEND:VCARD\r\n", "feedmesh-1-x"),
            "feedmesh-1-x.vcf"
        );
    }
}
