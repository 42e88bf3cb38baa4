//! Following outside feeds into a collection. The hub fetches the feed, discovers its WebSub
//! hub (`Link` headers, then the feed's own links), subscribes with a random secret and a
//! callback URL holding a random token, and from then on takes pushes, checking each
//! delivery's signature in constant time. The lease is renewed before it ends. When the
//! feed names no hub, or the subscription fails or is denied, it polls with conditional GETs.
//! Each entry becomes an item under a sync id derived from the feed URL and the entry id, so
//! fetching a feed again changes nothing that did not change.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;

use crate::domain::entry::{Category, Content, Entry, Link, Person, Text, TextKind};
use crate::domain::time::Timestamp;
use crate::fetch::{self, Conditions};
use crate::hub::{MAX_TOPIC_BYTES, Worker, now_ms};
use crate::store::{Collection, Follow, FollowState, Principal};
use crate::web::AppState;

/// Entries taken from one document at most (the newest ones, as feeds list them first).
const MAX_ENTRIES: usize = 500;

/// A followed feed's document, parsed.
pub struct FeedDoc {
    /// (the entry's own id, its payload), in document order.
    pub entries: Vec<(String, Entry)>,
    pub hubs: Vec<String>,
    pub self_url: Option<String>,
}

/// Parses Atom, RSS or JSON Feed (feed-rs), with the hub and self links of the document.
pub fn parse_feed(body: &[u8]) -> Result<FeedDoc, String> {
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
        // No date at all: the epoch, which `Mesh::ingest` replaces by the first-seen date.
        updated: e.updated.or(e.published).map_or(Timestamp::from_unix(0), at),
        media: None,
    }
}

/// The sync id of a followed entry: stable for one feed URL and entry id.
pub fn sync_id(feed_url: &str, entry_id: &str) -> String {
    let h = crate::secrets::hash_bytes(format!("{feed_url}\n{entry_id}").as_bytes());
    format!("feed-{}", &h[..32])
}

/// The callback URL a hub is given for this follow (S5: the token makes it unguessable).
pub fn callback_url(st: &AppState, f: &Follow) -> String {
    format!("{}/websub/callback/{}", st.base_url, f.callback_token)
}

/// Stores a document's entries in the follow's collection; returns how many changed.
pub async fn ingest(st: &AppState, f: &Follow, body: &[u8]) -> crate::error::AppResult<usize> {
    let doc = parse_feed(body).map_err(crate::error::AppError::BadRequest)?;
    Ok(ingest_entries(st, f, doc.entries).await?)
}

async fn ingest_entries(st: &AppState, f: &Follow, entries: Vec<(String, Entry)>) -> anyhow::Result<usize> {
    let (who, col) = writer(st, f).await?;
    let mut changed = 0;
    // Oldest first, so the collection's order follows the feed's.
    for (id, entry) in entries.into_iter().rev() {
        if st
            .mesh
            .ingest(&who, &col, &sync_id(&f.url, &id), entry)
            .await?
            .is_some()
        {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Who a follow writes as (an endpoint `feed-ID` of the user), and where.
async fn writer(st: &AppState, f: &Follow) -> anyhow::Result<(Principal, Collection)> {
    let store = &st.mesh.store;
    let user = store.user_by_id(f.user_id).await?;
    let endpoint = store.feed_endpoint(f.user_id, &format!("feed-{}", f.id)).await?;
    let col = store
        .collections(f.user_id)
        .await?
        .into_iter()
        .find(|c| c.id == f.collection_id)
        .ok_or_else(|| anyhow::anyhow!("the follow's collection is gone"))?;
    let who = Principal {
        user_id: f.user_id,
        user: user.name.to_string(),
        endpoint_id: endpoint.id,
        endpoint: endpoint.name,
        token_hash: String::new(),
    };
    Ok((who, col))
}

/// Runs the follow worker: looks at each follow when it is due (poll, subscribe, renew).
pub fn spawn(st: Arc<AppState>) -> Worker {
    Worker::spawn(async move {
        loop {
            let claim = st.hub.timeout.as_millis() as i64 * 3 + 5_000;
            let due = match st.mesh.store.follows_due(now_ms(), claim, 16).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim follows");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = st.follow_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for f in due {
                let st = st.clone();
                running.spawn(async move {
                    let id = f.id;
                    if let Err(e) = look(&st, f).await {
                        tracing::error!(error = %format!("{e:#}"), follow = id, "a follow failed");
                    }
                });
            }
            while running.join_next().await.is_some() {}
        }
    })
}

async fn look(st: &AppState, mut f: Follow) -> anyhow::Result<()> {
    let now = now_ms();
    if f.state == FollowState::Subscribed && now < f.lease_expires_at {
        // The lease ends soon: renew it (pushes keep coming meanwhile).
        return subscribe_at_hub(st, f).await;
    }
    if f.state == FollowState::Subscribing {
        f.last_error = Some("the hub did not verify the subscription in time".into());
    }
    f.state = FollowState::Polling;
    f.lease_expires_at = 0;
    let cond = Conditions {
        accept: None,
        etag: f.etag.as_deref(),
        last_modified: f.last_modified.as_deref(),
    };
    let fetched = fetch::get(&st.outbound, &f.url, &cond, MAX_TOPIC_BYTES).await;
    let reachable = fetched.is_ok();
    match fetched {
        Ok(got) => {
            let mut hubs = got.hubs.clone();
            let mut self_url = got.self_url.clone();
            if !got.not_modified {
                f.etag = got.etag.clone();
                f.last_modified = got.last_modified.clone();
                match parse_feed(&got.body) {
                    Ok(doc) => {
                        if hubs.is_empty() {
                            hubs = doc.hubs;
                        }
                        self_url = self_url.or(doc.self_url);
                        ingest_entries(st, &f, doc.entries).await?;
                        f.last_error = None;
                    }
                    Err(e) => f.last_error = Some(e),
                }
            }
            if let Some(hub) = hubs.first() {
                f.hub = hub.clone();
                f.topic = self_url.unwrap_or_else(|| got.url.clone());
            } else if !got.not_modified {
                f.hub.clear();
            }
        }
        Err(e) => f.last_error = Some(e.to_string()),
    }
    // A feed that cannot be fetched is not subscribed to either; it is polled again later.
    if f.hub.is_empty() || !reachable {
        f.next_at = now + st.hub.poll_interval.as_millis() as i64;
        return Ok(st.mesh.store.update_follow(&f).await?);
    }
    subscribe_at_hub(st, f).await
}

/// Asks the follow's hub for a subscription (or its renewal). The state is written first:
/// the hub may verify before it answers.
async fn subscribe_at_hub(st: &AppState, mut f: Follow) -> anyhow::Result<()> {
    let store = &st.mesh.store;
    let now = now_ms();
    if f.state != FollowState::Subscribed {
        f.state = FollowState::Subscribing;
    }
    f.next_at = now + st.hub.verify_wait.as_millis() as i64;
    store.update_follow(&f).await?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.topic", &f.topic)
        .append_pair("hub.callback", &callback_url(st, &f))
        .append_pair("hub.secret", &f.secret)
        .append_pair("hub.lease_seconds", &st.hub.default_lease.to_string())
        .finish();
    let refused = match st.outbound.request(Method::POST, &f.hub) {
        Ok(req) => {
            let req = req
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
            match st.outbound.send(req).await {
                Ok(resp) if resp.status().is_success() => None,
                Ok(resp) => Some(format!("the hub answered {}", resp.status())),
                Err(e) => Some(e.to_string()),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    match refused {
        // A failed renewal is tried again at next_at, until the lease ends.
        Some(why) if f.state == FollowState::Subscribing => {
            let next = now + st.hub.poll_interval.as_millis() as i64;
            store
                .follow_fallback(f.id, &format!("subscribing failed: {why}"), next)
                .await?;
        }
        Some(why) => tracing::warn!(follow = f.id, reason = %why, "renewing a subscription failed"),
        None => {}
    }
    Ok(())
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
        assert!(crate::domain::feedsync::validate_id(&sync_id("x", "y")).is_ok());
    }
}
