//! The feed connector: an outside Atom, RSS 2.0 or JSON Feed document (read by feed-rs),
//! followed into a collection. A pull is a conditional GET through the hub's guarded HTTP;
//! a WebSub delivery is the same document pushed. Each entry's id is derived from the feed
//! URL and the entry's own id, so fetching the feed again changes nothing that did not
//! change. Read-only: it never pushes.

#![forbid(unsafe_code)]

use async_trait::async_trait;
use feedmesh_connector::{
    Batch, Conditions, ConfigError, Connector, ConnectorError, Cursor, Http, OptionSpec, Options, Pulled,
};
use feedmesh_domain::entry::{Category, Content, Entry, Link, Person, Text, TextKind};
use feedmesh_domain::time::Timestamp;
use sha2::{Digest, Sha256};

/// Bytes of a feed document read at most.
pub const MAX_FEED_BYTES: usize = 4 << 20;

/// The options of `feedmesh connector add USER feed`.
pub const OPTIONS: &[OptionSpec] = &[OptionSpec {
    name: "url",
    required: true,
    secret: false,
    many: false,
    doc: "the feed's URL (Atom, RSS 2.0 or JSON Feed; http or https)",
}];

/// What a feed connector is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// The feed's URL, as the user gave it.
    pub url: String,
}

impl FeedConfig {
    pub fn from_options(options: &Options) -> Result<Self, ConfigError> {
        let url = options.get("url").unwrap_or_default().trim().to_string();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) || url.len() > 2048 {
            return Err(ConfigError::new("url", format!("{url:?} is not an http(s) URL")));
        }
        Ok(FeedConfig { url })
    }
}

/// One followed feed.
pub struct FeedConnector {
    config: FeedConfig,
}

impl FeedConnector {
    pub fn new(config: FeedConfig) -> Self {
        FeedConnector { config }
    }

    fn batch(&self, doc: FeedDoc, url: String) -> Batch {
        Batch {
            items: doc
                .entries
                .into_iter()
                .map(|(id, entry)| Pulled::new(sync_id(&self.config.url, &id), entry))
                .collect(),
            hubs: doc.hubs,
            self_url: doc.self_url,
            url,
            ..Batch::default()
        }
    }
}

#[async_trait]
impl Connector for FeedConnector {
    fn kind(&self) -> &'static str {
        "feed"
    }

    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError> {
        let conditions = Conditions {
            accept: None,
            etag: cursor.etag.clone(),
            last_modified: cursor.last_modified.clone(),
        };
        let got = http.get(&self.config.url, &conditions, MAX_FEED_BYTES).await?;
        let mut batch = if got.not_modified {
            Batch {
                not_modified: true,
                cursor: cursor.clone(),
                url: got.url.clone(),
                ..Batch::default()
            }
        } else {
            let doc = parse_feed(&got.body).map_err(ConnectorError::Malformed)?;
            let mut b = self.batch(doc, got.url.clone());
            b.cursor = Cursor {
                etag: got.etag.clone(),
                last_modified: got.last_modified.clone(),
                ..Cursor::default()
            };
            b
        };
        batch.poll_after = poll_after(got.max_age, &batch.items);
        // The response's Link headers win over the document's own links (WebSub §4).
        if !got.hubs.is_empty() {
            batch.hubs = got.hubs;
        }
        if got.self_url.is_some() {
            batch.self_url = got.self_url;
        }
        Ok(batch)
    }

    fn receive(&self, body: &[u8]) -> Result<Batch, ConnectorError> {
        let doc = parse_feed(body).map_err(ConnectorError::Malformed)?;
        Ok(self.batch(doc, self.config.url.clone()))
    }
}

/// The longest a feed waits between polls, however slow its rhythm (a day).
pub const POLL_CEILING: u64 = 86_400;

/// How long to wait before polling again, by the feed's own rhythm: half the median gap
/// between its newest entries' dates, at least what `Cache-Control: max-age` says, at most
/// [`POLL_CEILING`]. None when the feed gives nothing to go by (the hub's interval then).
pub fn poll_after(max_age: Option<u64>, items: &[Pulled]) -> Option<u64> {
    let mut dates: Vec<i64> = items
        .iter()
        .map(|p| p.entry.published.unwrap_or(p.entry.updated).unix())
        .filter(|&t| t > 0)
        .collect();
    dates.sort_unstable_by(|a, b| b.cmp(a));
    dates.truncate(11);
    let mut gaps: Vec<u64> = dates.windows(2).map(|w| (w[0] - w[1]).unsigned_abs()).collect();
    gaps.sort_unstable();
    let rhythm = (!gaps.is_empty()).then(|| gaps[gaps.len() / 2] / 2);
    match (rhythm, max_age) {
        (None, None) => None,
        (r, m) => Some(r.unwrap_or(0).max(m.unwrap_or(0)).min(POLL_CEILING)),
    }
}

/// Entries taken from one document at most (the newest ones, as feeds list them first).
const MAX_ENTRIES: usize = 500;

/// A followed feed's document, parsed.
pub struct FeedDoc {
    /// (the entry's own id, its payload), in document order.
    pub entries: Vec<(String, Entry)>,
    pub hubs: Vec<String>,
    pub self_url: Option<String>,
}

/// Bytes of a document's start searched for a DTD's entity declarations.
const PROLOG: usize = 64 * 1024;

/// Parses Atom, RSS or JSON Feed (feed-rs), with the hub and self links of the document. A
/// document declaring entities in its DTD (an XML bomb's way; no feed needs one) is refused.
pub fn parse_feed(body: &[u8]) -> Result<FeedDoc, String> {
    let head = &body[..body.len().min(PROLOG)];
    if head.windows(8).any(|w| w.eq_ignore_ascii_case(b"<!ENTITY")) {
        return Err("a feed that declares entities (an XML bomb?) is not read".into());
    }
    let feed = feed_rs::parser::parse(body).map_err(|e| format!("not a feed: {e}"))?;
    let mut hubs = Vec::new();
    let mut self_url = None;
    for l in &feed.links {
        match l.rel.as_deref() {
            Some("hub") => hubs.push(l.href.clone()),
            Some("self") => self_url = Some(l.href.clone()),
            _ => {}
        }
    }
    let entries = feed
        .entries
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|e| (e.id.clone(), to_entry(e)))
        .collect();
    Ok(FeedDoc {
        entries,
        hubs,
        self_url,
    })
}

fn to_text(t: feed_rs::model::Text) -> Text {
    let kind = match t.content_type.subty().as_str() {
        "html" | "xhtml+xml" => TextKind::Html,
        _ => TextKind::Text,
    };
    Text { kind, value: t.content }
}

fn to_entry(e: feed_rs::model::Entry) -> Entry {
    let at = |d: chrono::DateTime<chrono::Utc>| Timestamp::from_unix(d.timestamp());
    let content = e.content.map(|c| {
        let essence = c.content_type.essence().to_string();
        let kind = match essence.as_str() {
            "text/html" | "application/xhtml+xml" => "html".to_string(),
            "text/plain" => "text".to_string(),
            _ => essence,
        };
        Content {
            kind,
            value: c.body.unwrap_or_default(),
            src: c.src.map(|l| l.href),
        }
    });
    Entry {
        title: e.title.map(to_text).unwrap_or_else(|| Text::plain("")),
        summary: e.summary.map(to_text),
        content,
        authors: e
            .authors
            .into_iter()
            .map(|p| Person {
                name: p.name,
                email: p.email,
                uri: p.uri,
            })
            .collect(),
        categories: e
            .categories
            .into_iter()
            .map(|c| Category {
                term: c.term,
                scheme: c.scheme,
                label: c.label,
            })
            .collect(),
        links: e
            .links
            .into_iter()
            .filter(|l| !matches!(l.rel.as_deref(), Some("self" | "edit" | "edit-media")))
            .map(|l| Link {
                href: l.href,
                rel: l.rel,
                media_type: l.media_type,
                title: l.title,
                length: l.length,
            })
            .collect(),
        published: e.published.map(at),
        // No date at all: the epoch, which the hub replaces by the date it first saw it.
        updated: e.updated.or(e.published).map_or(Timestamp::from_unix(0), at),
        media: None,
        verb: None,
        object_type: None,
    }
}

/// The sync id of a followed entry: stable for one feed URL and entry id.
pub fn sync_id(feed_url: &str, entry_id: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{feed_url}\n{entry_id}").as_bytes()));
    format!("feed-{}", &h[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_rss_and_json_feeds_give_entries_and_discovery_links() {
        let atom = br#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
            <updated>2026-01-02T03:04:05Z</updated>
            <link rel="hub" href="https://hub.example/"/><link rel="self" href="https://pub.example/f"/>
            <entry><id>urn:e1</id><title type="html">&lt;b&gt;One&lt;/b&gt;</title>
              <updated>2026-01-02T03:04:05Z</updated><content type="text">body</content>
              <link rel="alternate" href="https://pub.example/1"/><link rel="self" href="https://pub.example/e1"/>
              <author><name>Ann</name></author><category term="news"/></entry></feed>"#;
        let doc = parse_feed(atom).unwrap();
        assert_eq!(doc.hubs, ["https://hub.example/"]);
        assert_eq!(doc.self_url.as_deref(), Some("https://pub.example/f"));
        let (id, e) = &doc.entries[0];
        assert_eq!(id, "urn:e1");
        assert_eq!((e.title.kind, e.title.value.as_str()), (TextKind::Html, "<b>One</b>"));
        assert_eq!(e.content.as_ref().map(|c| c.value.as_str()), Some("body"));
        assert_eq!(e.alternate(), Some("https://pub.example/1"));
        assert_eq!(e.links.len(), 1, "self links are the publisher's own");
        assert_eq!(e.authors[0].name, "Ann");
        assert_eq!(e.categories[0].term, "news");
        assert_eq!(e.updated.rfc3339(), "2026-01-02T03:04:05Z");

        let rss = br#"<rss version="2.0"><channel><title>t</title><link>https://pub.example/</link>
            <description>d</description><item><guid>g1</guid><title>Two</title>
            <description>&lt;p&gt;hi&lt;/p&gt;</description></item></channel></rss>"#;
        let doc = parse_feed(rss).unwrap();
        assert_eq!(doc.entries[0].0, "g1");
        assert_eq!(doc.entries[0].1.updated, Timestamp::from_unix(0), "no date: first seen");

        let json = br#"{"version":"https://jsonfeed.org/version/1.1","title":"t",
            "hubs":[{"type":"WebSub","url":"https://hub.example/"}],
            "items":[{"id":"j1","content_text":"three","date_published":"2026-01-02T03:04:05Z"}]}"#;
        let doc = parse_feed(json).unwrap();
        assert_eq!(doc.entries[0].0, "j1");

        assert!(parse_feed(b"<html><body>no feed</body></html>").is_err());
        assert!(parse_feed(b"\xff\xfe garbage").is_err());
    }

    #[test]
    fn sync_ids_are_stable_per_feed_and_entry() {
        assert_eq!(sync_id("https://a/f", "1"), sync_id("https://a/f", "1"));
        assert_ne!(sync_id("https://a/f", "1"), sync_id("https://a/f", "2"));
        assert_ne!(sync_id("https://a/f", "1"), sync_id("https://b/f", "1"));
        assert!(feedmesh_domain::feedsync::validate_id(&sync_id("x", "y")).is_ok());
    }

    #[tokio::test]
    async fn the_connector_keeps_the_contract() {
        let atom = br#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
            <updated>2026-01-02T03:04:05Z</updated>
            <entry><id>urn:e1</id><title>One</title><updated>2026-01-02T03:04:05Z</updated></entry>
            <entry><id>urn:e2</id><title>Two</title><updated>2026-01-03T03:04:05Z</updated></entry></feed>"#;
        let http = feedmesh_connector::testkit::FixtureHttp::new(&atom[..], "application/atom+xml");
        let feed = FeedConnector::new(FeedConfig {
            url: "https://pub.example/f".into(),
        });
        feedmesh_connector::testkit::check_pull(&feed, &http).await;
        let bomb = b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>\
            <rss version=\"2.0\"><channel><title>&b;</title></channel></rss>";
        assert!(parse_feed(bomb).err().is_some_and(|e| e.contains("entities")));
        let netscape = b"<?xml version=\"1.0\"?><!DOCTYPE rss PUBLIC \"-//Netscape Communications//DTD RSS 0.91//EN\" \
            \"http://my.netscape.com/publish/formats/rss-0.91.dtd\"><rss version=\"0.91\"><channel><title>t</title>\
            <item><title>i</title><link>https://x.example/1</link></item></channel></rss>";
        assert_eq!(
            parse_feed(netscape).unwrap().entries.len(),
            1,
            "a DTD without entities is fine"
        );
        assert!(http.requests() >= 3);
        assert!(matches!(
            feed.push(
                &http,
                feedmesh_connector::Outgoing::Create {
                    entry: &Entry::default(),
                    idempotency_key: "k"
                }
            )
            .await,
            Err(ConnectorError::Unsupported(_))
        ));
    }
}
