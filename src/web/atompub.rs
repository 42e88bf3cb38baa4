//! AtomPub (RFC 5023): the service document, collection POST (entries and media), and
//! member GET/PUT/DELETE with ETags; FeedSync metadata rides in every entry.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Check, owner, principal};
use super::cache::not_modified;
use super::{AppState, SharedState};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::EntryView;
use crate::formats::FeedView;
use crate::formats::atom_in::{Document, ParsedEntry, parse_document, parse_entry_document};
use crate::formats::atom_out::{self, ServiceCollection};
use crate::store::ItemRecord;
use crate::usecases::items::Accepted;

const ENTRY_TYPE: &str = "application/atom+xml;type=entry";

pub async fn service(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let collections = st.mesh.collections(p.user_id).await?;
    let list: Vec<ServiceCollection> = collections
        .iter()
        .map(|c| ServiceCollection {
            title: c.name.clone(),
            href: st.collection_url(&p.user, &c.name),
        })
        .collect();
    let body = atom_out::service_document(&p.user, &list);
    Ok(([(header::CONTENT_TYPE, "application/atomsvc+xml; charset=utf-8")], body).into_response())
}

/// `GET /api/collections`: the caller's collections and their URLs, as JSON (for agents).
pub async fn collections(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let list: Vec<serde_json::Value> = st
        .mesh
        .store
        .collections(p.user_id)
        .await?
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "url": st.collection_url(&p.user, &c.name) }))
        .collect();
    Ok(axum::Json(serde_json::json!({ "user": p.user, "device": p.endpoint, "collections": list })).into_response())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
}

fn is_atom_entry(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence == "application/atom+xml" && !ct.replace(' ', "").contains("type=feed")
}

/// A posted FeedSync feed may be this many times `--max-entry-bytes`.
const FEED_FACTOR: usize = 16;

fn entry_too_large(st: &AppState) -> Error {
    Error::TooLarge(format!(
        "the entry is larger than the limit of {} bytes",
        st.max_entry_bytes
    ))
}

/// A body of at most `limit` bytes (413 past it, declared or not).
async fn read_bounded(body: Body, headers: &HeaderMap, limit: usize, what: &str) -> Result<axum::body::Bytes> {
    let too_large = || Error::TooLarge(format!("the {what} is larger than the limit of {limit} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// Reads a bounded Atom entry body: 413 past the limit, 400 when it does not parse.
async fn read_entry(st: &AppState, headers: &HeaderMap, body: Body) -> Result<ParsedEntry> {
    let bytes = read_bounded(body, headers, st.max_entry_bytes, "entry")
        .await
        .map_err(|_| entry_too_large(st))?;
    Ok(parse_entry_document(&bytes, Timestamp::now())?)
}

fn slug(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("slug")?.to_str().ok()?;
    let decoded = percent_decode(raw);
    let clean: String = decoded
        .chars()
        .filter(|c| !crate::domain::names::is_hidden_control(*c) && *c != '/' && *c != '\\')
        .take(200)
        .collect();
    (!clean.trim().is_empty()).then(|| clean.trim().to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// POST to a collection: an Atom entry becomes an item; any other body a media resource.
pub async fn create(
    State(st): State<SharedState>,
    Path((user, collection)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    // Entry writes are re-checked at commit (`live_token`); files are checked up front so a
    // revoked token cannot leave one on disk.
    let who = owner(&st, &headers, &user, Check::Cached).await?;
    let col = st.mesh.collection(who.user_id, &collection).await?;
    let ct = content_type(&headers);
    let accepted = match ct.as_deref() {
        Some(ct) if is_atom_entry(ct) => {
            let parsed = read_entry(&st, &headers, body).await?;
            st.mesh.publish(&who, &col, parsed).await?
        }
        Some(ct) if ct.starts_with("application/atom+xml") => {
            // A FeedSync feed: a device's batch of changes (or a lone entry sent untyped).
            let bytes = read_bounded(body, &headers, st.max_entry_bytes * FEED_FACTOR, "feed").await?;
            match parse_document(&bytes, Timestamp::now())? {
                Document::Entry(_) if bytes.len() > st.max_entry_bytes => return Err(entry_too_large(&st)),
                Document::Entry(parsed) => st.mesh.publish(&who, &col, *parsed).await?,
                Document::Feed(parsed) => {
                    let records = st.merge_device_feed(&who, &user, &col, parsed).await?;
                    return Ok(merged_feed(&st, &user, &col.name, &records));
                }
            }
        }
        other => {
            let who = principal(&st, &headers).await?;
            let media_type = crate::domain::entry::parse_media_type(other.unwrap_or("application/octet-stream"))
                .map_err(|e| Error::Invalid(format!("Content-Type: {e}")))?;
            st.mesh
                .publish_media(&who, &col, super::upload(body), media_type, slug(&headers))
                .await?
        }
    };
    Ok(entry_response(&st, &user, &col.name, accepted))
}

fn etag(seq: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{seq}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-Match: "SEQ"` as a sequence number; `*` or absent is no condition.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| Error::Stale)?.trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(Some)
        .map_err(|_| Error::Stale)
}

fn member_view<'a>(st: &AppState, user: &str, collection: &str, record: &'a ItemRecord) -> EntryView<'a> {
    let member = st.member_url(user, collection, record.item.id());
    let media = record
        .item
        .current
        .payload
        .media
        .as_ref()
        .map(|_| format!("{member}/media"));
    EntryView {
        id: member.clone(),
        version: &record.item.current,
        sync: Some((&record.item.current.sync, record.item.conflicts.as_slice())),
        edit_url: Some(member.clone()),
        edit_media_url: media.clone(),
        media_url: media,
        fallback_link: member,
        tags: Vec::new(),
        author: Some(attributed(user, &record.item)),
        activity: None,
    }
}

/// Who a member entry without an author of its own is shown as written by: the endpoint of
/// its latest version when that is one of the owner's, else the owner. A merged item's
/// history may name anyone (`by` is whatever the sender wrote); it never shows as another
/// user's endpoint.
fn attributed(user: &str, item: &crate::domain::StoredItem) -> String {
    item.current
        .sync
        .topmost()
        .and_then(|h| h.by.as_deref())
        .filter(|by| crate::domain::names::is_endpoint_of(by, user))
        .unwrap_or(user)
        .to_string()
}

/// The answer to a posted FeedSync feed: the merged items, in the order they were sent.
fn merged_feed(st: &AppState, user: &str, collection: &str, records: &[ItemRecord]) -> Response {
    let url = st.collection_url(user, collection);
    let view = FeedView {
        id: url.clone(),
        title: format!("{user}: {collection}"),
        self_url: url.clone(),
        alternate_url: url,
        hub_url: None,
        updated: records
            .iter()
            .map(|r| r.changed_at)
            .max()
            .unwrap_or_else(Timestamp::now),
        author: user.to_string(),
        next_url: None,
        sharing: None,
        entries: records.iter().map(|r| member_view(st, user, collection, r)).collect(),
    };
    (
        [(header::CONTENT_TYPE, "application/atom+xml;type=feed;charset=utf-8")],
        atom_out::feed(&view),
    )
        .into_response()
}

fn entry_response(st: &AppState, user: &str, collection: &str, accepted: Accepted) -> Response {
    let record = &accepted.record;
    let body = atom_out::entry_document(&member_view(st, user, collection, record));
    let status = if accepted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/atom+xml;type=entry;charset=utf-8"),
    );
    h.insert(header::ETAG, etag(record.seq));
    let member = st.member_url(user, collection, record.item.id());
    if let Ok(loc) = HeaderValue::from_str(&member) {
        if accepted.created {
            h.insert(header::LOCATION, loc.clone());
        }
        h.insert(header::CONTENT_LOCATION, loc);
    }
    if let Some(kind) = accepted.change {
        h.insert("feedmesh-change", HeaderValue::from_static(kind.as_str()));
    }
    resp
}

pub async fn read(
    State(st): State<SharedState>,
    Path((user, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let who = owner(&st, &headers, &user, Check::Cached).await?;
    let col = st.mesh.collection(who.user_id, &collection).await?;
    let record = st.mesh.member(&col, &id).await?;
    let tag = etag(record.seq);
    if not_modified(&headers, &tag, record.changed_at) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let accepted = Accepted {
        record,
        change: None,
        created: false,
    };
    Ok(entry_response(&st, &user, &col.name, accepted))
}

#[derive(serde::Deserialize)]
pub struct ReplaceParams {
    resolve: Option<String>,
}

pub async fn replace(
    State(st): State<SharedState>,
    Path((user, collection, id)): Path<(String, String, String)>,
    Query(q): Query<ReplaceParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let who = owner(&st, &headers, &user, Check::Cached).await?;
    let col = st.mesh.collection(who.user_id, &collection).await?;
    if !content_type(&headers).is_some_and(|ct| is_atom_entry(&ct)) {
        return Err(Error::Unsupported(format!("PUT an Atom entry ({ENTRY_TYPE})")));
    }
    let expected = if_match(&headers)?;
    let resolve = matches!(q.resolve.as_deref(), Some("true" | "1" | "all"));
    let parsed = read_entry(&st, &headers, body).await?;
    let accepted = st
        .replace_member(&who, &user, &col, &id, expected, parsed, resolve)
        .await?;
    Ok(entry_response(&st, &user, &col.name, accepted))
}

pub async fn remove(
    State(st): State<SharedState>,
    Path((user, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let who = owner(&st, &headers, &user, Check::Cached).await?;
    let col = st.mesh.collection(who.user_id, &collection).await?;
    let expected = if_match(&headers)?;
    let accepted = st.mesh.delete(&who, &col, &id, expected).await?;
    Ok((StatusCode::NO_CONTENT, [(header::ETAG, etag(accepted.record.seq))]).into_response())
}

/// The media resource of a media-link entry: the stored file, streamed.
pub async fn media(
    State(st): State<SharedState>,
    Path((user, collection, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let who = owner(&st, &headers, &user, Check::Cached).await?;
    let col = st.mesh.collection(who.user_id, &collection).await?;
    let record = st.mesh.member(&col, &id).await?;
    let media = record
        .item
        .current
        .payload
        .media
        .ok_or(Error::NotFound("media resource"))?;
    let tag = HeaderValue::from_str(&format!("\"{}\"", media.sha256)).map_err(|e| Error::Internal(e.into()))?;
    if not_modified(&headers, &tag, record.changed_at) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let path = st
        .mesh
        .blobs
        .path(&media.sha256)
        .ok_or(Error::NotFound("media resource"))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("blob {} missing: {e}", media.sha256)))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        crate::blobs::IO_CHUNK,
    ));
    let mut extra = HeaderMap::new();
    extra.insert(header::ETAG, tag);
    Ok(super::files::stored_file(&media.media_type, media.size, extra, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(name: &'static str, value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.insert(name, v);
        }
        h
    }

    #[test]
    fn slugs_drop_controls_and_bidi_marks() {
        let h = headers("slug", b"report%E2%80%AEtxt.exe%0A%2F..");
        assert_eq!(slug(&h).as_deref(), Some("reporttxt.exe.."));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Request headers a client controls never panic their parsers.
        #[test]
        fn request_headers_never_panic(v in prop::collection::vec(any::<u8>(), 0..40), s in "[%0-9a-fA-FéW/\"*, ]{0,30}") {
            for value in [v.as_slice(), s.as_bytes()] {
                let _ = slug(&headers("slug", value));
                let _ = if_match(&headers("if-match", value));
                let _ = content_type(&headers("content-type", value)).map(|ct| is_atom_entry(&ct));
            }
            let _ = percent_decode(&s);
        }
    }
}
