//! The Miniflux API v1 subset under `/api/miniflux/v1` that reader apps use: `me`,
//! categories, feeds, entries (by feed, by category, all), marking read and unread, and
//! bookmarks (stars). Basic auth (account or app password) or `X-Auth-Token` (an app
//! password or a device token). Timestamps in UTC with `Z` (newsboat drops an offset after a
//! fraction); `PUT` answers 204 with no body (newsboat takes a body for a failure).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::SharedState;
use crate::error::{Error, Result};
use crate::secrets;
use crate::store::Principal;
use crate::usecases::reading::{self, Entry, Feed, GROUPS, Mark, Query, group_id};

/// A JSON error body as Miniflux writes one.
fn refuse(e: Error) -> Response {
    let status = super::error::status(&e);
    if let Error::Internal(cause) = &e {
        tracing::error!(error = %format!("{cause:#}"), "internal error");
        return (status, Json(json!({"error_message": "internal error"}))).into_response();
    }
    (status, Json(json!({"error_message": e.to_string()}))).into_response()
}

async fn who(st: &SharedState, headers: &HeaderMap) -> Result<Principal> {
    if let Some(t) = headers.get("X-Auth-Token") {
        let t = t.to_str().map_err(|_| Error::Unauthorized)?.trim();
        if let Some(p) = st.mesh.store.principal(&secrets::hash(t)).await? {
            return Ok(p);
        }
        let login = st
            .mesh
            .store
            .app_password(&secrets::hash(t), false)
            .await?
            .ok_or(Error::Unauthorized)?;
        return crate::usecases::principal(&st.core, login.user_id, super::session::WEB_ENDPOINT)
            .await
            .map_err(Error::Internal);
    }
    super::auth::principal(st, headers).await
}

fn category(id: i64, title: &str, user_id: i64) -> Value {
    json!({"id": id, "title": title, "user_id": user_id, "hide_globals": false})
}

fn feed_json(f: &Feed, user_id: i64) -> Value {
    let g = group_id(f.group);
    json!({
        "id": f.id,
        "user_id": user_id,
        "title": f.title,
        "feed_url": f.url,
        "site_url": f.html_url,
        "checked_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "disabled": false,
        "parsing_error_count": 0,
        "parsing_error_message": "",
        "icon": null,
        "category": category(g, f.group, user_id),
    })
}

fn entry_json(e: &Entry, user_id: i64) -> Value {
    let at = e.published.rfc3339();
    json!({
        "id": e.id,
        "user_id": user_id,
        "feed_id": e.feed.id,
        "status": if e.read { "read" } else { "unread" },
        "hash": format!("{:016x}", e.id),
        "title": e.title,
        "url": e.url,
        "comments_url": "",
        "published_at": at,
        "created_at": at,
        "changed_at": at,
        "content": e.html,
        "author": e.author,
        "share_code": "",
        "starred": e.starred,
        "reading_time": 0,
        "enclosures": [],
        "tags": [],
        "feed": feed_json(&e.feed, user_id),
    })
}

/// `GET /v1/me`.
pub async fn me(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    match who(&st, &headers).await {
        Ok(p) => Json(json!({
            "id": p.user_id,
            "username": p.user,
            "is_admin": false,
            "theme": "system_serif",
            "language": "en_US",
            "timezone": "UTC",
            "entry_sorting_direction": "desc",
            "entries_per_page": 100,
        }))
        .into_response(),
        Err(e) => refuse(e),
    }
}

/// `GET /v1/categories`.
pub async fn categories(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    match who(&st, &headers).await {
        Ok(p) => Json(
            GROUPS
                .iter()
                .map(|(id, t)| category(*id, t, p.user_id))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => refuse(e),
    }
}

/// `GET /v1/feeds`.
pub async fn feeds(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let feeds = reading::feeds(&st.core, p.user_id, &p.user).await?;
        Ok::<_, Error>(Json(feeds.iter().map(|f| feed_json(f, p.user_id)).collect::<Vec<_>>()).into_response())
    };
    run.await.unwrap_or_else(refuse)
}

/// `GET /v1/feeds/{id}`.
pub async fn feed(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let id: i64 = id.parse().map_err(|_| Error::NotFound("feed"))?;
        let f = reading::feed(&st.core, p.user_id, &p.user, id).await?;
        Ok::<_, Error>(Json(feed_json(&f, p.user_id)).into_response())
    };
    run.await.unwrap_or_else(refuse)
}

/// The filters of an entries call (Miniflux's names).
#[derive(serde::Deserialize, Default)]
pub struct EntriesParams {
    status: Option<String>,
    starred: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
    direction: Option<String>,
    before: Option<i64>,
    after: Option<i64>,
    before_entry_id: Option<u64>,
    after_entry_id: Option<u64>,
    feed_id: Option<i64>,
    category_id: Option<i64>,
}

async fn list(st: &SharedState, p: &Principal, feed: Option<i64>, params: &EntriesParams) -> Result<Response> {
    let limit = params.limit.unwrap_or(100).clamp(1, reading::MAX_ENTRIES);
    let offset = params.offset.unwrap_or(0).min(10 * reading::MAX_ENTRIES);
    let statuses: Vec<&str> = params
        .status
        .as_deref()
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let mut q = Query {
        feed,
        unread_only: statuses == ["unread"],
        read_only: statuses == ["read"],
        starred_only: params
            .starred
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("true") || s == "1"),
        oldest_first: params.direction.as_deref() == Some("asc"),
        since: params.after.map(|a| a + 1),
        until: params.before,
        before: params.before_entry_id,
        after: params.after_entry_id,
        limit: reading::MAX_ENTRIES.min(limit + offset),
    };
    if q.after.is_some() && q.before.is_none() {
        q.oldest_first = true;
    }
    let mut entries = Vec::new();
    let mut more = true;
    while more && entries.len() < (offset + limit) as usize {
        let page = reading::entries(&st.core, p.user_id, &p.user, &q).await?;
        entries.extend(page.entries);
        match page.next {
            Some(n) if q.oldest_first => q.after = Some(n),
            Some(n) => q.before = Some(n),
            None => more = false,
        }
    }
    let total = entries.len() as u64 + u64::from(more);
    let shown: Vec<Value> = entries
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|e| entry_json(e, p.user_id))
        .collect();
    Ok(Json(json!({"total": total, "entries": shown})).into_response())
}

/// `GET /v1/entries` (`feed_id`, `category_id` for the folder Stream or Collections).
pub async fn entries(
    State(st): State<SharedState>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<EntriesParams>,
) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        if let Some(c) = params.category_id {
            return category_entries(&st, &p, c, &params).await;
        }
        list(&st, &p, params.feed_id, &params).await
    };
    run.await.unwrap_or_else(refuse)
}

/// `GET /v1/feeds/{id}/entries`.
pub async fn feed_entries(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<EntriesParams>,
) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let id: i64 = id.parse().map_err(|_| Error::NotFound("feed"))?;
        reading::feed(&st.core, p.user_id, &p.user, id).await?;
        list(&st, &p, Some(id), &params).await
    };
    run.await.unwrap_or_else(refuse)
}

/// `GET /v1/categories/{id}/entries`: the folders Stream and Collections are the whole
/// stream; another folder is its feeds' entries, newest first.
pub async fn category_entries_route(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    QueryParams(params): QueryParams<EntriesParams>,
) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        category_entries(&st, &p, id, &params).await
    };
    run.await.unwrap_or_else(refuse)
}

async fn category_entries(st: &SharedState, p: &Principal, id: i64, params: &EntriesParams) -> Result<Response> {
    let (_, name) = GROUPS
        .iter()
        .find(|(g, _)| *g == id)
        .ok_or(Error::NotFound("category"))?;
    if *name == "Stream" || *name == "Collections" {
        return list(st, p, None, params).await;
    }
    let q = Query {
        unread_only: params.status.as_deref() == Some("unread"),
        starred_only: params
            .starred
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("true") || s == "1"),
        limit: params.limit.unwrap_or(100).clamp(1, reading::MAX_ENTRIES),
        ..Query::default()
    };
    let page = reading::group_entries(&st.core, p.user_id, &p.user, name, &q).await?;
    let out: Vec<Value> = page.entries.iter().map(|e| entry_json(e, p.user_id)).collect();
    Ok(Json(json!({"total": out.len() as u64 + u64::from(page.next.is_some()), "entries": out})).into_response())
}

/// `GET /v1/entries/{id}`.
pub async fn entry(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let id: u64 = id.parse().map_err(|_| Error::NotFound("entry"))?;
        let found = reading::entries_by_id(&st.core, p.user_id, &p.user, &[id]).await?;
        let e = found.first().ok_or(Error::NotFound("entry"))?;
        Ok::<_, Error>(Json(entry_json(e, p.user_id)).into_response())
    };
    run.await.unwrap_or_else(refuse)
}

#[derive(serde::Deserialize)]
struct StatusBody {
    entry_ids: Vec<u64>,
    status: String,
}

/// `PUT /v1/entries` `{"entry_ids": […], "status": "read"|"unread"}`, read as JSON whatever
/// the Content-Type says (newsboat labels it form-encoded): 204, no body.
pub async fn set_status(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let b: StatusBody = serde_json::from_slice(&body).map_err(|e| {
            Error::Invalid(format!(
                "the body is not {{\"entry_ids\": [...], \"status\": ...}}: {e}"
            ))
        })?;
        let mark = match b.status.as_str() {
            "read" | "removed" => Mark::Read,
            "unread" => Mark::Unread,
            other => return Err(Error::Invalid(format!("unknown status {other:?}: read or unread"))),
        };
        if b.entry_ids.len() > 10_000 {
            return Err(Error::Invalid("at most 10,000 entry ids at once".into()));
        }
        reading::mark(&st.core, p.user_id, &b.entry_ids, mark).await?;
        Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(refuse)
}

/// `PUT /v1/entries/{id}/bookmark`: toggles the star; 204.
pub async fn bookmark(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let id: u64 = id.parse().map_err(|_| Error::NotFound("entry"))?;
        let found = reading::entries_by_id(&st.core, p.user_id, &p.user, &[id]).await?;
        let e = found.first().ok_or(Error::NotFound("entry"))?;
        let mark = if e.starred { Mark::Unstarred } else { Mark::Starred };
        reading::mark(&st.core, p.user_id, &[id], mark).await?;
        Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(refuse)
}

/// `PUT /v1/feeds/{id}/mark-all-as-read`: 204.
pub async fn feed_read(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let run = async {
        let p = who(&st, &headers).await?;
        let id: i64 = id.parse().map_err(|_| Error::NotFound("feed"))?;
        reading::mark_all_read(&st.core, p.user_id, &p.user, Some(id), None).await?;
        Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(refuse)
}
