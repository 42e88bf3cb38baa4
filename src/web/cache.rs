//! Rendered feeds, kept while the user's change sequence stays the same, and conditional
//! GET (RFC 9110): strong ETags from the body's SHA-256, Last-Modified, 304 answers; gzip
//! and Brotli encodings made once per cached version, when first asked for.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

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
    /// The body compressed, made at the first request that accepts each.
    gzip: OnceLock<Encoded>,
    br: OnceLock<Encoded>,
    /// What the next version of this feed may be built from (the records of a first page),
    /// so a change costs the render of what changed; opaque here.
    pub page: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// Bytes this entry holds besides its body (its page), for the cache's budget.
    pub extra_bytes: usize,
}

/// One compressed representation and its own strong ETag.
struct Encoded {
    body: Bytes,
    etag: HeaderValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The best encoding an `Accept-Encoding` allows: Brotli, then gzip, else none.
    pub fn choose(headers: &HeaderMap) -> Encoding {
        let mut gzip = false;
        let mut br = false;
        for v in headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for item in v.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                    })
                    .unwrap_or(1.0);
                if q <= 0.0 {
                    continue;
                }
                match coding.as_str() {
                    "br" => br = true,
                    "gzip" | "x-gzip" => gzip = true,
                    "*" => {
                        br = true;
                        gzip = true;
                    }
                    _ => {}
                }
            }
        }
        if br {
            Encoding::Brotli
        } else if gzip {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

fn compress(body: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::new(6));
            let _ = e.write_all(body);
            e.finish().unwrap_or_default()
        }
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 4);
            {
                // Quality 5: close to the best ratio for feeds at a fraction of 11's time.
                let mut w = brotli::CompressorWriter::new(&mut out, 16 * 1024, 5, 22);
                let _ = w.write_all(body);
            }
            out
        }
        Encoding::Identity => body.to_vec(),
    }
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
            gzip: OnceLock::new(),
            br: OnceLock::new(),
            page: None,
            extra_bytes: 0,
        }
    }

    /// Keeps what the next version can be built from.
    pub fn with_page(mut self, page: Arc<dyn std::any::Any + Send + Sync>, bytes: usize) -> Self {
        self.page = Some(page);
        self.extra_bytes = bytes;
        self
    }

    fn bytes(&self) -> usize {
        // The encodings, once made, are smaller than the body: counted as one more body.
        2 * self.body.len() + self.extra_bytes
    }

    /// The body and ETag in `encoding`, compressing once per cached version.
    fn encoded(&self, encoding: Encoding) -> (Bytes, HeaderValue) {
        let (cell, suffix) = match encoding {
            Encoding::Identity => return (self.body.clone(), self.etag.clone()),
            Encoding::Gzip => (&self.gzip, "gz"),
            Encoding::Brotli => (&self.br, "br"),
        };
        let e = cell.get_or_init(|| {
            let body = Bytes::from(compress(&self.body, encoding));
            let tag = self.etag.to_str().unwrap_or("\"0\"").trim_end_matches('"');
            let etag = HeaderValue::from_str(&format!("{tag}-{suffix}\"")).unwrap_or_else(|_| self.etag.clone());
            Encoded { body, etag }
        });
        (e.body.clone(), e.etag.clone())
    }
}

/// A small map of rendered feeds; cleared wholesale when full (feeds re-render cheaply).
/// Readers that miss the same version of a feed at once share one render.
pub struct FeedCache {
    map: Mutex<Entries>,
    /// Renders under way: (key, head, self key) → the one render every waiter gets.
    pending: Mutex<HashMap<PendingKey, Arc<tokio::sync::OnceCell<Arc<CachedFeed>>>>>,
    capacity: usize,
}

type PendingKey = (String, u64, Option<Arc<str>>);

/// The cached feeds and the bytes they hold.
#[derive(Default)]
struct Entries {
    feeds: HashMap<String, Arc<CachedFeed>>,
    bytes: usize,
}

/// What the cache may hold in all (bodies, encodings, pages) before it starts over.
const BYTE_BUDGET: usize = 32 << 20;

impl FeedCache {
    pub fn new(capacity: usize) -> Self {
        FeedCache {
            map: Mutex::new(Entries::default()),
            pending: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The feed cached under `key` at `head`, or the one `render` makes: concurrent misses of
    /// one version wait for a single render (a change costs one render per feed, not one
    /// per reader). A failed render is not kept; the next reader tries again.
    pub async fn get_or_render<E>(
        &self,
        key: String,
        head: u64,
        self_key: Option<Arc<str>>,
        render: impl AsyncFnOnce() -> Result<CachedFeed, E>,
    ) -> Result<Arc<CachedFeed>, E> {
        if let Some(hit) = self.get(&key, head, self_key.as_deref()) {
            return Ok(hit);
        }
        let pkey: PendingKey = (key, head, self_key);
        let cell = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.entry(pkey.clone()).or_default().clone()
        };
        let result = cell
            .get_or_try_init(async || {
                // Another render may have finished between the miss and joining.
                if let Some(hit) = self.get(&pkey.0, head, pkey.2.as_deref()) {
                    return Ok(hit);
                }
                Ok(self.put(pkey.0.clone(), render().await?))
            })
            .await
            .cloned();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.get(&pkey).is_some_and(|c| Arc::ptr_eq(c, &cell)) && cell.initialized() {
            pending.remove(&pkey);
        }
        result
    }

    /// The feed cached under `key`, if rendered at `head` with this self key.
    pub fn get(&self, key: &str, head: u64, self_key: Option<&str>) -> Option<Arc<CachedFeed>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.feeds
            .get(key)
            .filter(|f| f.head == head && f.self_key.as_deref() == self_key)
            .cloned()
    }

    /// The last version cached under `key` for this self key, whatever its head.
    pub fn latest(&self, key: &str, self_key: Option<&str>) -> Option<Arc<CachedFeed>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.feeds
            .get(key)
            .filter(|f| f.self_key.as_deref() == self_key)
            .cloned()
    }

    pub fn put(&self, key: String, feed: CachedFeed) -> Arc<CachedFeed> {
        let feed = Arc::new(feed);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.feeds.len() >= self.capacity || map.bytes + feed.bytes() > BYTE_BUDGET {
            map.feeds.clear();
            map.bytes = 0;
        }
        map.bytes += feed.bytes();
        if let Some(old) = map.feeds.insert(key, feed.clone()) {
            map.bytes = map.bytes.saturating_sub(old.bytes());
        }
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

/// 200 with the feed (compressed when the client accepts it), or 304 when the client's copy
/// is current.
pub fn respond(headers: &HeaderMap, feed: &CachedFeed) -> Response {
    let encoding = Encoding::choose(headers);
    let (body, etag) = feed.encoded(encoding);
    let fresh = not_modified(headers, &etag, feed.last_modified);
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(feed.content_type));
        match encoding {
            Encoding::Gzip => {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Encoding::Brotli => {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            }
            Encoding::Identity => {}
        }
    }
    h.insert(header::ETAG, etag);
    h.insert(header::LAST_MODIFIED, feed.last_modified_header.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Accept, Accept-Encoding"),
    );
    if let Some(link) = &feed.link {
        h.insert(header::LINK, link.clone());
    }
    if let Some(cursor) = feed.cursor.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("feedmesh-cursor", cursor);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn feed(head: u64, body: &str) -> CachedFeed {
        CachedFeed::new(
            head,
            body.into(),
            Timestamp::from_unix(1),
            "text/plain",
            None,
            ("h", "s"),
            None,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_missing_one_version_share_one_render() {
        let cache = Arc::new(FeedCache::new(16));
        let renders = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cache, renders) = (cache.clone(), renders.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_render("/f".into(), 7, None, async || {
                        renders.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok::<_, ()>(feed(7, "seven"))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(&t.await.unwrap().body[..], b"seven");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        // A new version renders again; a failed render is not kept.
        let failed = cache
            .get_or_render("/f".into(), 8, None, async || Err::<CachedFeed, _>("boom"))
            .await;
        assert!(failed.is_err());
        let ok = cache
            .get_or_render("/f".into(), 8, None, async || Ok::<_, ()>(feed(8, "eight")))
            .await;
        assert_eq!(&ok.unwrap().body[..], b"eight");
        assert!(
            cache.pending.lock().unwrap().is_empty(),
            "finished renders are forgotten"
        );
    }

    #[test]
    fn the_best_accepted_encoding_is_chosen() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(Encoding::choose(&HeaderMap::new()), Encoding::Identity);
        assert_eq!(Encoding::choose(&h("gzip, deflate")), Encoding::Gzip);
        assert_eq!(Encoding::choose(&h("gzip, deflate, br, zstd")), Encoding::Brotli);
        assert_eq!(Encoding::choose(&h("br;q=0, gzip;q=0.5")), Encoding::Gzip);
        assert_eq!(Encoding::choose(&h("identity")), Encoding::Identity);
        assert_eq!(Encoding::choose(&h("*")), Encoding::Brotli);
        assert_eq!(Encoding::choose(&h("gzip;q=0")), Encoding::Identity);
    }
}
