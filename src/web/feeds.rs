//! Feeds out: a collection's FeedSync feed (complete, or partial after `?since=`), and the
//! user's and each endpoint's stream of changes in Atom, RSS 2.0 and JSON Feed, paged.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use std::time::Duration;

use axum::response::Response;

use super::SharedState;
use super::auth::{feed_reader, reader_self_key, self_url};
use super::cache::{CachedFeed, respond};
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::usecases::encode_segment;
use crate::usecases::feeds::{self, collection_document, stream_document, stream_format, stream_url};

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
    let key = uri.path_and_query().map_or("", |p| p.as_str());
    if let Some(cached) = st.cache.get(key, head, self_key.as_deref()) {
        return Ok(respond(&headers, &cached));
    }
    let key = key.to_string();
    let self_url = self_url(&st, &uri, self_key.as_deref());
    let records = feeds::collection_page(&st, &col, since.unwrap_or(0), page).await?;
    let url = st.collection_url(&user, &col.name);
    let until = records.last().map(|r| r.seq).unwrap_or(since.unwrap_or(0));
    let next =
        (records.len() == page as usize).then(|| page_url(&url, "since", until, q.limit.as_deref(), q.key.as_deref()));
    let (body, updated) = collection_document(&st, &user, &col, &records, since, self_url.clone(), next);
    let hub = st.hub_url();
    let feed = CachedFeed::new(
        head,
        body,
        updated,
        Format::Atom.content_type(),
        Some(until.to_string()),
        (&hub, &self_url),
        self_key,
    );
    Ok(respond(&headers, &st.cache.put(key, feed)))
}

fn parse_feed_name(file: &str) -> Result<Format> {
    stream_format(file).ok_or(Error::NotFound("feed"))
}

/// `/u/{user}/stream.{atom,rss,json}`: every change of the user, newest first.
pub async fn user_stream(
    State(st): State<SharedState>,
    Path((user, file)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let format = parse_feed_name(&file)?;
    stream(st, user, None, format, q, uri, headers).await
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
    stream(st, user, Some(device), format, q, uri, headers).await
}

async fn stream(
    st: SharedState,
    user: String,
    device: Option<String>,
    format: Format,
    q: FeedParams,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let reader = feed_reader(&st, &headers, q.key.as_deref(), &user, uri.path()).await?;
    let before = cursor("before", q.before.as_deref())?;
    let page = limit(q.limit.as_deref(), STREAM_PAGE)?;
    let head = st.mesh.head(reader.user_id).await?;
    // The self URL is part of the document: a cached one is used only with the same self key.
    let self_key = reader_self_key(&st, &reader, &uri).await?;
    let key = uri.path_and_query().map_or("", |p| p.as_str());
    if let Some(cached) = st.cache.get(key, head, self_key.as_deref()) {
        return Ok(respond(&headers, &cached));
    }
    let key = key.to_string();
    let self_url = self_url(&st, &uri, self_key.as_deref());
    let (changes, fallback) = feeds::stream_page(&st, reader.user_id, &user, device.as_deref(), before, page).await?;
    let feed_url = stream_url(&st, &user, device.as_deref(), format);
    let next_url = (changes.len() == page as usize)
        .then(|| {
            changes
                .last()
                .map(|c| page_url(&feed_url, "before", c.seq, q.limit.as_deref(), q.key.as_deref()))
        })
        .flatten();
    let (body, updated) = stream_document(
        &st,
        &user,
        device.as_deref(),
        format,
        &changes,
        self_url.clone(),
        next_url,
        fallback,
    );
    let hub = st.hub_url();
    let feed = CachedFeed::new(
        head,
        body,
        updated,
        format.content_type(),
        None,
        (&hub, &self_url),
        self_key,
    );
    Ok(respond(&headers, &st.cache.put(key, feed)))
}
