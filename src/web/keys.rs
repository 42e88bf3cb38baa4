//! Feed keys: `POST /api/keys {"feed": "/u/alice/stream.atom"}` answers the key and the
//! ready URL once; `GET /api/keys` lists them; `DELETE /api/keys/{id}` revokes one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::principal;
use crate::error::Result;
use crate::usecases::keys;

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

pub async fn create(State(st): State<SharedState>, headers: HeaderMap, Json(req): Json<NewKey>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let k = keys::create(st.mesh.store.as_ref(), p.user_id, &p.user, &req.feed, &st.base_url).await?;
    let body = serde_json::json!({ "id": k.id, "feed": k.path, "key": k.key, "url": k.url });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let keys: Vec<KeyOut> = keys::list(st.mesh.store.as_ref(), p.user_id)
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

pub async fn revoke(State(st): State<SharedState>, Path(id): Path<i64>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    // This process's read caches forget it before its subscribers are told (others' caches
    // within their second).
    let forget = || {
        st.feed_keys.remove_where(|k| k.id == id);
        st.self_keys.clear();
    };
    crate::websub::hub::revoke_key(&st.websub, p.user_id, id, forget).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
