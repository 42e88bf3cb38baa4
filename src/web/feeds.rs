//! Feeds out: a collection's FeedSync feed (complete, or partial after `?since=`), and the
//! user's and each endpoint's stream of changes in Atom, RSS 2.0 and JSON Feed, paged.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use std::time::Duration;

use axum::response::Response;

use super::auth::{feed_reader, reader_self_key, self_url};
use super::cache::{CachedFeed, respond};
use super::{AppState, SharedState, encode_segment};
use crate::domain::time::Timestamp;
use crate::error::{AppError, AppResult};
use crate::formats::{self, EntryView, FeedView, Format, Sharing};
use crate::store::{ChangeRecord, Collection, ItemRecord};

const STREAM_PAGE: u32 = 50;
const COLLECTION_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const MAX_WAIT: u64 = 60;

/// Returns when the collection has a change after `after`, or at the deadline. Woken by this
/// process's writes at once; other processes' writes are seen within a second.
async fn wait_for_change(st: &AppState, collection_id: i64, after: u64, wait: Duration) -> AppResult<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = st.mesh.changed.subscribe();
    loop {
        if st.mesh.store.collection_head(collection_id).await? > after {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let nap = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, changed.changed()).await;
    }
}

#[derive(serde::Deserialize)]
pub struct FeedParams {
    since: Option<String>,
    /// Long-poll: with `since`, wait up to this many seconds (at most 60) for a change.
    wait: Option<String>,
    before: Option<String>,
    limit: Option<String>,
    key: Option<String>,
}

fn cursor(name: &str, v: Option<&str>) -> AppResult<Option<u64>> {
    v.map(|s| {
        s.trim().parse::<u64>().map_err(|_| {
            AppError::BadRequest(format!(
                "{name}={s:?} is not a cursor (a whole number from a previous feed)"
            ))
        })
    })
    .transpose()
}

fn limit(v: Option<&str>, default: u32) -> AppResult<u32> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("limit={s:?} must be a number from 1 to {MAX_PAGE}"))),
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

fn render(format: Format, view: &FeedView<'_>) -> String {
    match format {
        Format::Atom => formats::atom_out::feed(view),
        Format::Rss => formats::rss_out::feed(view),
        Format::Json => formats::json_out::feed(view),
    }
}

/// GET of an AtomPub collection: its FeedSync feed.
pub async fn collection(
    State(st): State<SharedState>,
    Path((user, collection)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult<Response> {
    let reader = feed_reader(&st, &headers, q.key.as_deref(), &user, uri.path()).await?;
    let since = cursor("since", q.since.as_deref())?;
    let page = limit(q.limit.as_deref(), COLLECTION_PAGE)?;
    let col = st.mesh.collection(reader.user_id, &collection).await?;
    if let (Some(after), Some(wait)) = (since, q.wait.as_deref()) {
        let secs: u64 = wait.parse().ok().filter(|s| *s <= MAX_WAIT).ok_or_else(|| {
            AppError::BadRequest(format!(
                "wait={wait:?} must be a number of seconds from 0 to {MAX_WAIT}"
            ))
        })?;
        wait_for_change(&st, col.id, after, Duration::from_secs(secs)).await?;
    }
    // After a wait the change may be another process's: read the head fresh, not cached.
    let head = match q.wait {
        Some(_) => st.mesh.store.user_head(reader.user_id).await?,
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
    let records: Vec<ItemRecord> = st.mesh.store.items_since(col.id, since.unwrap_or(0), page).await?;
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

fn parse_feed_name(file: &str) -> AppResult<Format> {
    file.strip_prefix("stream.")
        .and_then(Format::from_extension)
        .ok_or(AppError::NotFound("feed"))
}

/// `/u/{user}/stream.{atom,rss,json}`: every change of the user, newest first.
pub async fn user_stream(
    State(st): State<SharedState>,
    Path((user, file)): Path<(String, String)>,
    Query(q): Query<FeedParams>,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult<Response> {
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
) -> AppResult<Response> {
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
) -> AppResult<Response> {
    let reader = feed_reader(&st, &headers, q.key.as_deref(), &user, uri.path()).await?;
    let before = cursor("before", q.before.as_deref())?;
    let page = limit(q.limit.as_deref(), STREAM_PAGE)?;
    let endpoint = match &device {
        Some(d) => Some(st.mesh.store.endpoint(reader.user_id, d).await?),
        None => None,
    };
    let head = st.mesh.head(reader.user_id).await?;
    // The self URL is part of the document: a cached one is used only with the same self key.
    let self_key = reader_self_key(&st, &reader, &uri).await?;
    let key = uri.path_and_query().map_or("", |p| p.as_str());
    if let Some(cached) = st.cache.get(key, head, self_key.as_deref()) {
        return Ok(respond(&headers, &cached));
    }
    let key = key.to_string();
    let self_url = self_url(&st, &uri, self_key.as_deref());
    let changes: Vec<ChangeRecord> = st
        .mesh
        .store
        .changes(reader.user_id, endpoint.as_ref().map(|e| e.id), before, page)
        .await?;
    let fallback = match changes.first() {
        Some(c) => c.at,
        None => st.mesh.store.user(&user).await?.created_at,
    };
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

/// The canonical URL of a user's or an endpoint's stream in one format.
pub(crate) fn stream_url(st: &AppState, user: &str, device: Option<&str>, format: Format) -> String {
    match device {
        Some(d) => format!(
            "{}/u/{}/endpoints/{}/stream.{}",
            st.base_url,
            encode_segment(user),
            encode_segment(d),
            format.extension()
        ),
        None => format!(
            "{}/u/{}/stream.{}",
            st.base_url,
            encode_segment(user),
            format.extension()
        ),
    }
}

/// A collection's FeedSync feed of `records` (complete, or partial after `since`); the same
/// document serves GET and WebSub deliveries. Returns the body and its `updated` time.
pub(crate) fn collection_document(
    st: &AppState,
    user: &str,
    col: &Collection,
    records: &[ItemRecord],
    since: Option<u64>,
    self_url: String,
    next_url: Option<String>,
) -> (String, Timestamp) {
    let until = records.last().map(|r| r.seq).unwrap_or(since.unwrap_or(0));
    let url = st.collection_url(user, &col.name);
    let updated = records.iter().map(|r| r.changed_at).max().unwrap_or(col.created_at);
    let entries = records
        .iter()
        .map(|r| {
            let member = st.member_url(user, &col.name, r.item.id());
            EntryView {
                id: member.clone(),
                version: &r.item.current,
                sync: Some((&r.item.current.sync, r.item.conflicts.as_slice())),
                edit_url: Some(member.clone()),
                edit_media_url: r.item.current.payload.media.as_ref().map(|_| format!("{member}/media")),
                media_url: r.item.current.payload.media.as_ref().map(|_| format!("{member}/media")),
                fallback_link: member,
                tags: Vec::new(),
                author: None,
            }
        })
        .collect();
    let view = FeedView {
        id: url.clone(),
        title: format!("{user}: {}", col.name),
        self_url,
        alternate_url: url.clone(),
        hub_url: Some(st.hub_url()),
        updated,
        author: user.to_string(),
        next_url,
        sharing: Some(Sharing {
            since: since.map(|s| s.to_string()),
            until: until.to_string(),
            complete_url: since.map(|_| url.clone()),
        }),
        entries,
    };
    (render(Format::Atom, &view), updated)
}

/// A stream of `changes` in `format`; the same document serves GET and WebSub deliveries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_document(
    st: &AppState,
    user: &str,
    device: Option<&str>,
    format: Format,
    changes: &[ChangeRecord],
    self_url: String,
    next_url: Option<String>,
    fallback_updated: Timestamp,
) -> (String, Timestamp) {
    let updated = changes.iter().map(|c| c.at).max().unwrap_or(fallback_updated);
    let entries = changes
        .iter()
        .map(|c| {
            let member = st.member_url(user, &c.collection, &c.sync_id);
            let media = c.version.payload.media.as_ref().map(|_| format!("{member}/media"));
            let mut tags = vec![c.collection.clone(), c.kind.as_str().to_string()];
            if let Some(e) = &c.endpoint {
                tags.push(format!("{user}/{e}"));
            }
            EntryView {
                id: format!("{}/u/{}/changes/{}", st.base_url, encode_segment(user), c.seq),
                version: &c.version,
                sync: None,
                edit_url: Some(member.clone()),
                edit_media_url: media.clone(),
                media_url: media,
                fallback_link: member,
                tags,
                author: c.endpoint.as_ref().map(|e| format!("{user}/{e}")),
            }
        })
        .collect();
    let title = match device {
        Some(d) => format!("{user}/{d}: published"),
        None => format!("{user}: stream"),
    };
    let view = FeedView {
        id: stream_url(st, user, device, format),
        title,
        self_url,
        alternate_url: format!("{}/", st.base_url),
        hub_url: Some(st.hub_url()),
        updated,
        author: user.to_string(),
        next_url,
        sharing: None,
        entries,
    };
    (render(format, &view), updated)
}
