//! Feeds out: a collection's FeedSync feed (complete, or partial after `?since=`), and the
//! user's and each endpoint's stream of changes in Atom, RSS 2.0 and JSON Feed, paged.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri, header};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;

use super::SharedState;
use super::auth::{feed_reader, reader_self_key, self_url};
use super::cache::{CachedFeed, respond};
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::formats::as2_out;
use crate::store::Page;
use crate::usecases::encode_segment;
use crate::usecases::feeds::{self, Of, collection_document, stream_format};
use crate::usecases::timelines::{self, SearchQuery};

const STREAM_PAGE: u32 = 50;
const COLLECTION_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const MAX_WAIT: u64 = 60;

#[derive(serde::Deserialize)]
pub struct FeedParams {
    since: Option<String>,
    /// Long-poll: with `since`, wait up to this many seconds (at most 60) for a change.
    wait: Option<String>,
    before: Option<String>,
    /// Activity feeds: the page of activities newer than this cursor.
    after: Option<String>,
    /// AS2: `page=1` asks for the first page itself rather than the collection.
    page: Option<String>,
    limit: Option<String>,
    key: Option<String>,
}

fn cursor(name: &str, v: Option<&str>) -> Result<Option<u64>> {
    v.map(|s| {
        s.trim().parse::<u64>().map_err(|_| {
            Error::Invalid(format!(
                "{name}={s:?} is not a cursor (a whole number from a previous feed)"
            ))
        })
    })
    .transpose()
}

fn limit(v: Option<&str>, default: u32) -> Result<u32> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| Error::Invalid(format!("limit={s:?} must be a number from 1 to {MAX_PAGE}"))),
    }
}

/// `url?since=…` keeping the feed key, if the reader came with one.
fn page_url(base: &str, param: &str, value: u64, limit: Option<&str>, key: Option<&str>) -> String {
    let mut url = format!("{base}?{param}={value}");
    if let Some(l) = limit {
        url.push_str(&format!("&limit={}", encode_segment(l)));
    }
    if let Some(k) = key {
        url.push_str(&format!("&key={}", encode_segment(k)));
    }
    url
}

/// GET of an AtomPub collection: its FeedSync feed.
pub async fn collection(
    State(st): State<SharedState>,
    Path((user, collection)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let reader = feed_reader(&st, &headers, q.key.as_deref(), &user, uri.path()).await?;
    let since = cursor("since", q.since.as_deref())?;
    let page = limit(q.limit.as_deref(), COLLECTION_PAGE)?;
    let col = st.mesh.collection(reader.user_id, &collection).await?;
    if let (Some(after), Some(wait)) = (since, q.wait.as_deref()) {
        let secs: u64 = wait.parse().ok().filter(|s| *s <= MAX_WAIT).ok_or_else(|| {
            Error::Invalid(format!(
                "wait={wait:?} must be a number of seconds from 0 to {MAX_WAIT}"
            ))
        })?;
        feeds::wait_for_change(&st, col.id, after, Duration::from_secs(secs)).await?;
    }
    // After a wait the change may be another process's: read the head fresh, not cached.
    let head = match q.wait {
        Some(_) => feeds::fresh_head(&st, reader.user_id).await?,
        None => st.mesh.head(reader.user_id).await?,
    };
    // The self URL is part of the document: a cached one is used only with the same self key.
    let self_key = reader_self_key(&st, &reader, &uri).await?;
    let key = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
    let feed = st
        .cache
        .get_or_render(key, head, self_key.clone(), async || {
            let self_url = self_url(&st, &uri, self_key.as_deref());
            let records = feeds::collection_page(&st, &col, since.unwrap_or(0), page).await?;
            let url = st.collection_url(&user, &col.name);
            let until = records.last().map(|r| r.seq).unwrap_or(since.unwrap_or(0));
            let next = (records.len() == page as usize)
                .then(|| page_url(&url, "since", until, q.limit.as_deref(), q.key.as_deref()));
            let (body, updated) = collection_document(&st, &user, &col, &records, since, self_url.clone(), next);
            let hub = st.hub_url();
            Ok::<_, Error>(CachedFeed::new(
                head,
                body,
                updated,
                Format::Atom.content_type(),
                Some(until.to_string()),
                (&hub, &self_url),
                self_key.clone(),
            ))
        })
        .await?;
    Ok(respond(&headers, &feed))
}

fn parse_feed_name(file: &str) -> Result<Format> {
    stream_format(file).ok_or(Error::NotFound("feed"))
}

/// `/u/{user}/stream.{atom,rss,json}`: every change of the user, newest first; and
/// `/u/{user}/search.{atom,rss,json}?q=…`: a search of them.
pub async fn user_stream(
    State(st): State<SharedState>,
    Path((user, file)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    Query(search): Query<SearchParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    if let Some(format) = file.strip_prefix("search.").and_then(Format::from_extension) {
        return activity_feed(st, user, Source::Search(search.into_query()), format, q, uri, headers).await;
    }
    let format = parse_feed_name(&file)?;
    activity_feed(st, user, Source::Stream(None), format, q, uri, headers).await
}

/// `/u/{user}/endpoints/{device}/stream.{atom,rss,json}`: what that endpoint published.
pub async fn endpoint_stream(
    State(st): State<SharedState>,
    Path((user, device, file)): Path<(String, String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let format = parse_feed_name(&file)?;
    activity_feed(st, user, Source::Stream(Some(device)), format, q, uri, headers).await
}

/// `/u/{user}/contacts/{id}/timeline.{ext}` and `/u/{user}/companies/{slug}/timeline.{ext}`.
pub async fn timeline(
    State(st): State<SharedState>,
    Path((user, kind, id, file)): Path<(String, String, String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let format = file
        .strip_prefix("timeline.")
        .and_then(Format::from_extension)
        .ok_or(Error::NotFound("feed"))?;
    let source = match kind.as_str() {
        "contacts" => Source::Contact(id),
        "companies" => Source::Company(id),
        _ => return Err(Error::NotFound("feed")),
    };
    activity_feed(st, user, source, format, q, uri, headers).await
}

/// `/u/{user}/views/{name}.{ext}`: a saved view.
pub async fn view(
    State(st): State<SharedState>,
    Path((user, file)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let (name, ext) = file.rsplit_once('.').ok_or(Error::NotFound("feed"))?;
    let format = Format::from_extension(ext).ok_or(Error::NotFound("feed"))?;
    activity_feed(st, user, Source::View(name.to_string()), format, q, uri, headers).await
}

/// The filters of `/u/{user}/search.*` (see `timelines::SearchQuery`); `tags` is comma-separated.
#[derive(serde::Deserialize, Default)]
pub struct SearchParams {
    q: Option<String>,
    contact: Option<String>,
    company: Option<String>,
    collection: Option<String>,
    endpoint: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    tags: Option<String>,
}

impl SearchParams {
    fn into_query(self) -> SearchQuery {
        SearchQuery {
            q: self.q,
            contact: self.contact,
            company: self.company,
            collection: self.collection,
            endpoint: self.endpoint,
            kind: self.kind,
            since: self.since,
            until: self.until,
            tags: self
                .tags
                .map(|t| {
                    t.split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

enum Source {
    Stream(Option<String>),
    Contact(String),
    Company(String),
    View(String),
    Search(SearchQuery),
}

/// Whether the client asked for Activity Streams 2.0 (`application/activity+json`, or
/// JSON-LD with the AS2 profile) rather than the feed format the file name says.
fn wants_as2(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim().to_ascii_lowercase();
            t.starts_with("application/activity+json")
                || (t.starts_with("application/ld+json") && t.contains("https://www.w3.org/ns/activitystreams"))
        })
}

/// Any feed of activities: the stream, an endpoint's, a timeline, a view, a search; paged
/// newest first (`before`, `after`), served from the cache like every feed, in the format
/// its name says or as AS2 when asked.
async fn activity_feed(
    st: SharedState,
    user: String,
    source: Source,
    format: Format,
    q: FeedParams,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let reader = feed_reader(&st, &headers, q.key.as_deref(), &user, uri.path()).await?;
    let before = cursor("before", q.before.as_deref())?;
    let after = cursor("after", q.after.as_deref())?;
    let limit = limit(q.limit.as_deref(), STREAM_PAGE)?;
    let as2 = wants_as2(&headers);
    let head = st.mesh.head(reader.user_id).await?;
    // The self URL is part of the document: a cached one is used only with the same self key.
    let self_key = reader_self_key(&st, &reader, &uri).await?;
    let mut key = uri.path_and_query().map_or("", |p| p.as_str()).to_string();
    if as2 {
        key.push_str("#as2");
    }
    let first = before.is_none() && after.is_none();
    let feed = st
        .cache
        .get_or_render(key.clone(), head, self_key.clone(), async || {
            let self_url = self_url(&st, &uri, self_key.as_deref());
            let resolved = match &source {
                Source::Stream(device) => {
                    timelines::stream(&st, reader.user_id, &user, device.as_deref(), format).await?
                }
                Source::Contact(id) => timelines::resolve(&st, reader.user_id, &user, Of::Contact(id), format).await?,
                Source::Company(slug) => {
                    timelines::resolve(&st, reader.user_id, &user, Of::Company(slug), format).await?
                }
                Source::View(name) => timelines::resolve(&st, reader.user_id, &user, Of::View(name), format).await?,
                Source::Search(query) => timelines::search(&st, reader.user_id, &user, query, format).await?,
            };
            // A first page is built from the last version's when only new activities differ.
            let (changes, why, kept) = if first {
                let last = st
                    .cache
                    .latest(&key, self_key.as_deref())
                    .and_then(|f| f.page.clone())
                    .and_then(|p| p.downcast::<timelines::KeptPage>().ok());
                let mut k = timelines::first_page(&st, reader.user_id, &resolved, last.as_deref(), head, limit).await?;
                let changes = std::mem::take(&mut k.changes);
                let why = std::mem::take(&mut k.why);
                (changes, why, Some(k))
            } else {
                let page = match (before, after) {
                    (_, Some(a)) => Page::After(a),
                    (b, None) => Page::Before(b),
                };
                let (changes, why) = timelines::page(&st, reader.user_id, &resolved, page, limit).await?;
                (changes, why, None)
            };
            // Page links keep the query (search filters, key, limit) but the cursors.
            let link = |param: &str, value: u64| {
                let mut url = format!("{}{}?", st.base_url, uri.path());
                for pair in uri.query().unwrap_or("").split('&') {
                    let name = pair.split('=').next().unwrap_or("");
                    if !pair.is_empty() && !matches!(name, "before" | "after" | "page") {
                        url.push_str(pair);
                        url.push('&');
                    }
                }
                url.push_str(&format!("{param}={value}"));
                url
            };
            let full = changes.len() == limit as usize;
            let older = changes
                .last()
                .filter(|_| full || after.is_some())
                .map(|c| link("before", c.seq));
            let newer = changes
                .first()
                .filter(|_| before.is_some() || after.is_some())
                .map(|c| link("after", c.seq));
            let fallback = match changes.first() {
                Some(c) => c.at,
                None => timelines::empty_updated(&st, reader.user_id).await?,
            };
            let view = feeds::activity_feed_view(
                &st,
                &user,
                &resolved.meta,
                &changes,
                &why,
                self_url.clone(),
                older.clone(),
                fallback,
            );
            let (body, content_type) = if as2 {
                let links = as2_out::PageLinks {
                    id: if before.is_some() || after.is_some() {
                        self_url.clone()
                    } else {
                        link("page", 1)
                    },
                    part_of: resolved.meta.id.clone(),
                    next: older,
                    prev: newer,
                };
                let body = if before.is_none() && after.is_none() && q.page.is_none() {
                    as2_out::collection(&view, &links)
                } else {
                    as2_out::page(&view, &links)
                };
                (body, as2_out::CONTENT_TYPE)
            } else {
                (feeds::render(format, &view), format.content_type())
            };
            let hub = st.hub_url();
            let updated = view.updated;
            drop(view);
            let size = body.len();
            let feed = CachedFeed::new(
                head,
                body,
                updated,
                content_type,
                None,
                (&hub, &self_url),
                self_key.clone(),
            );
            Ok::<_, Error>(match kept {
                Some(mut k) => {
                    k.changes = changes;
                    k.why = why;
                    // Parsed records take about three times their rendered size.
                    feed.with_page(Arc::new(k), 3 * size)
                }
                None => feed,
            })
        })
        .await?;
    Ok(respond(&headers, &feed))
}
