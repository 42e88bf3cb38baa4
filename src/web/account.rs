//! The JSON twins of the account and conflict pages, so every action of the web app is an
//! `/api/` call too (same use cases): `/api/devices` (tokens: list, add, revoke),
//! `/api/app-passwords` (list, add, revoke), `/api/conflicts` (list, one item's versions,
//! resolve). Devices and app passwords take a browser session only (`session_owner`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::{principal, session_owner};
use crate::error::{Error, Result};
use crate::usecases::browse::{self, Choice, Shown};
use crate::usecases::{accounts, logins};

#[derive(serde::Serialize)]
struct TokenOut {
    id: i64,
    device: String,
    prefix: String,
    created_at: String,
    revoked: bool,
}

/// `GET /api/devices`: the user's device tokens (prefixes only).
pub async fn devices(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    let list: Vec<TokenOut> = accounts::tokens(st.mesh.store.as_ref(), &p.user)
        .await?
        .into_iter()
        .map(|t| TokenOut {
            id: t.id,
            device: t.device,
            prefix: t.prefix,
            created_at: t.created_at.rfc3339(),
            revoked: t.revoked,
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(serde::Deserialize)]
pub struct NewDevice {
    device: String,
}

/// `POST /api/devices {"device": "tablet"}`: a token, answered once.
pub async fn add_device(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewDevice>,
) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    let t = accounts::add_token(st.mesh.store.as_ref(), &p.user, &req.device).await?;
    let body = serde_json::json!({"id": t.info.id, "device": t.info.device, "token": t.token});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/devices/{id}`: the token stops working at once.
pub async fn revoke_device(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    accounts::revoke_token(st.mesh.store.as_ref(), &p.user, id).await?;
    st.principals.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Serialize)]
struct AppPasswordOut {
    id: i64,
    name: String,
    prefix: String,
    created_at: String,
    last_used: Option<String>,
    revoked: bool,
}

/// `GET /api/app-passwords`.
pub async fn app_passwords(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    let list: Vec<AppPasswordOut> = logins::app_passwords(st.mesh.store.as_ref(), &p.user)
        .await?
        .into_iter()
        .map(|a| AppPasswordOut {
            id: a.id,
            name: a.name,
            prefix: a.prefix,
            created_at: a.created_at.rfc3339(),
            last_used: a.last_used.map(|t| t.rfc3339()),
            revoked: a.revoked,
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(serde::Deserialize)]
pub struct NewAppPassword {
    name: String,
}

/// `POST /api/app-passwords {"name": "newsboat"}`: the password, answered once.
pub async fn add_app_password(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewAppPassword>,
) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    let a = logins::add_app_password(st.mesh.store.as_ref(), &p.user, &req.name).await?;
    let body = serde_json::json!({"id": a.info.id, "name": a.info.name, "password": a.password});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/app-passwords/{id}`.
pub async fn revoke_app_password(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response> {
    let p = session_owner(&st, &headers).await?;
    logins::revoke_app_password(st.mesh.store.as_ref(), &p.user, id).await?;
    st.principals.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Serialize)]
struct ConflictOut {
    collection: String,
    id: String,
    title: String,
    versions: usize,
    changed_at: String,
}

/// `GET /api/conflicts`: the user's items in conflict.
pub async fn conflicts(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let list: Vec<ConflictOut> = browse::conflicts(&st.core, p.user_id)
        .await?
        .into_iter()
        .map(|(collection, l)| ConflictOut {
            collection,
            id: l.sync_id,
            title: l.title,
            versions: l.conflicts + 1,
            changed_at: l.changed.rfc3339(),
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(serde::Serialize)]
struct VersionOut {
    by: String,
    when: Option<String>,
    title: String,
    text: String,
    media_type: Option<String>,
    sha256: Option<String>,
    deleted: bool,
}

fn version(v: Shown) -> VersionOut {
    VersionOut {
        by: v.by,
        when: v.when.map(|t| t.rfc3339()),
        title: v.title,
        text: v.text,
        media_type: v.media_type,
        sha256: v.media_sha256,
        deleted: v.deleted,
    }
}

#[derive(serde::Deserialize)]
pub struct ItemRef {
    collection: String,
    id: String,
}

/// `GET /api/conflicts/item?collection=C&id=ID`: the versions (the current one first) and
/// the `seq` a resolution must name.
pub async fn conflict(State(st): State<SharedState>, headers: HeaderMap, Query(q): Query<ItemRef>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let d = browse::item(&st.core, p.user_id, &q.collection, &q.id).await?;
    let body = serde_json::json!({
        "collection": d.collection, "id": d.sync_id, "seq": d.seq,
        "current": version(d.current),
        "conflicts": d.conflicts.into_iter().map(version).collect::<Vec<_>>(),
    });
    Ok(Json(body).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    collection: String,
    id: String,
    seq: u64,
    /// `current`, `conflict-N` or `merged` (with `text`).
    keep: String,
    #[serde(default)]
    text: Option<String>,
}

/// `POST /api/conflicts/resolve`: a FeedSync resolution; a `seq` that is no longer the
/// item's is 412 (read it again).
pub async fn resolve(State(st): State<SharedState>, headers: HeaderMap, Json(r): Json<Resolution>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let choice = match (r.keep.as_str(), r.text) {
        ("current", None) => Choice::Current,
        ("merged", Some(text)) => Choice::Merged(text),
        (keep, None) if keep.starts_with("conflict-") => Choice::Conflict(
            keep["conflict-".len()..]
                .parse()
                .map_err(|_| Error::Invalid(format!("keep={keep:?}: conflict-N with N a number")))?,
        ),
        (keep, _) => {
            return Err(Error::Invalid(format!(
                "keep={keep:?}: current, conflict-N, or merged with a text (and text only with merged)"
            )));
        }
    };
    let seq = browse::resolve(&st.core, &p, &r.collection, &r.id, r.seq, choice).await?;
    Ok(Json(serde_json::json!({"seq": seq})).into_response())
}
