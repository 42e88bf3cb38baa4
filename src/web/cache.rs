//! Rendered feeds, kept while the user's change sequence stays the same, and conditional
//! GET (RFC 9110): strong ETags from the body's SHA-256, Last-Modified, 304 answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::domain::time::Timestamp;

pub struct CachedFeed {
    /// The user's head sequence number when this was rendered.
    pub head: u64,
    pub body: Bytes,
    pub etag: HeaderValue,
    pub last_modified: Timestamp,
    pub last_modified_header: HeaderValue,
    pub content_type: &'static str,
    /// FeedSync cursor for the next sync (collection feeds).
    pub cursor: Option<String>,
    /// WebSub discovery: `<hub>; rel="hub", <self>; rel="self"`.
    pub link: Option<HeaderValue>,
    /// The self key in the document's self URL (credentialed reads).
    pub self_key: Option<Arc<str>>,
}

impl CachedFeed {
    pub fn new(
        head: u64,
        body: String,
        last_modified: Timestamp,
        content_type: &'static str,
        cursor: Option<String>,
        hub_and_self: (&str, &str),
        self_key: Option<Arc<str>>,
    ) -> Self {
        let (hub, this) = hub_and_self;
        let link = HeaderValue::from_str(&format!("<{hub}>; rel=\"hub\", <{this}>; rel=\"self\"")).ok();
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        CachedFeed {
            head,
            body: Bytes::from(body),
            etag: HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
            last_modified,
            last_modified_header: HeaderValue::from_str(&last_modified.http_date())
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            content_type,
            cursor,
            link,
            self_key,
        }
    }
}

/// A small map of rendered feeds; cleared wholesale when full (feeds re-render cheaply).
pub struct FeedCache {
    map: Mutex<HashMap<String, Arc<CachedFeed>>>,
    capacity: usize,
}

impl FeedCache {
    pub fn new(capacity: usize) -> Self {
        FeedCache {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The feed cached under `key`, if rendered at `head` with this self key.
    pub fn get(&self, key: &str, head: u64, self_key: Option<&str>) -> Option<Arc<CachedFeed>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|f| f.head == head && f.self_key.as_deref() == self_key)
            .cloned()
    }

    pub fn put(&self, key: String, feed: CachedFeed) -> Arc<CachedFeed> {
        let feed = Arc::new(feed);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, feed.clone());
        feed
    }
}

/// Whether the request's validators say the client already has this representation.
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue, last_modified: Timestamp) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let ours = etag.to_str().unwrap_or_default();
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == ours);
    }
    if let Some(ims) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok())
        && let Ok(since) = httpdate::parse_http_date(ims)
    {
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        return last_modified.unix() <= since;
    }
    false
}

/// 200 with the feed, or 304 when the client's copy is current.
pub fn respond(headers: &HeaderMap, feed: &CachedFeed) -> Response {
    let fresh = not_modified(headers, &feed.etag, feed.last_modified);
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        feed.body.clone().into_response()
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(feed.content_type));
    }
    h.insert(header::ETAG, feed.etag.clone());
    h.insert(header::LAST_MODIFIED, feed.last_modified_header.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Authorization"));
    if let Some(link) = &feed.link {
        h.insert(header::LINK, link.clone());
    }
    if let Some(cursor) = feed.cursor.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("feedmesh-cursor", cursor);
    }
    resp
}
