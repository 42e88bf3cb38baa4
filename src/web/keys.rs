//! Feed keys: revocable secrets for one feed, for readers that cannot send credentials.
//! `POST /api/keys {"feed": "/u/alice/stream.atom"}` answers the key and the ready URL once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::{feed_key_path, principal};
use crate::error::{AppError, AppResult};
use crate::secrets;

#[derive(serde::Deserialize)]
pub struct NewKey {
    feed: String,
}

#[derive(serde::Serialize)]
struct KeyOut {
    id: i64,
    feed: String,
    created_at: String,
    revoked: bool,
    /// The feed's self key, advertised to credentialed readers as `rel="self"`.
    #[serde(rename = "self")]
    derived: bool,
}

/// Which feed paths a user may hand out keys for.
pub fn owned_feed_path(user: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    (path.starts_with(&format!("/u/{user}/")) || path.starts_with(&format!("/atompub/{user}/"))) && !path.contains("..")
}

pub async fn create(State(st): State<SharedState>, headers: HeaderMap, Json(req): Json<NewKey>) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    let path = req.feed.strip_prefix(&st.base_url).unwrap_or(&req.feed).to_string();
    if !owned_feed_path(&p.user, &path) {
        return Err(AppError::BadRequest(format!(
            "feed {:?} is not one of your feeds (expected /u/{}/… or /atompub/{}/…)",
            req.feed, p.user, p.user
        )));
    }
    let path = path.split('?').next().unwrap_or(&path).to_string();
    let key = secrets::generate("fk_")?;
    let stored = st
        .mesh
        .store
        .add_feed_key(p.user_id, feed_key_path(&path), &secrets::hash(&key))
        .await?;
    let body = serde_json::json!({
        "id": stored.id,
        "feed": path,
        "key": key,
        "url": format!("{}{}?key={}", st.base_url, path, key),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    let keys: Vec<KeyOut> = st
        .mesh
        .store
        .feed_keys(p.user_id)
        .await?
        .into_iter()
        .map(|k| KeyOut {
            id: k.id,
            feed: k.feed_path,
            created_at: k.created_at.rfc3339(),
            revoked: k.revoked,
            derived: k.derived,
        })
        .collect();
    Ok(Json(keys).into_response())
}

pub async fn revoke(State(st): State<SharedState>, Path(id): Path<i64>, headers: HeaderMap) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    st.mesh.store.revoke_feed_key(p.user_id, id).await?;
    st.feed_keys.remove_where(|k| k.id == id);
    st.self_keys.clear();
    // The key's WebSub subscriptions end now, with a denial to each subscriber.
    if let Err(e) = super::deliver::deny_revoked(&st).await {
        tracing::error!(error = %e, "cannot end WebSub subscriptions of a revoked key");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
