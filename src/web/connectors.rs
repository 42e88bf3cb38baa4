//! `/api/connectors`: a user's connectors, added, listed, paused, resumed, synced and
//! removed (`usecases::connectors`). Secret options are never answered. `/api/routes`: a
//! user's routes of a collection into a connector's outbox (`usecases::routes`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::principal;
use crate::domain::Timestamp;
use crate::error::Result;
use crate::store::{ConnectorRow, ConnectorState};
use crate::usecases::{connectors, routes};

#[derive(serde::Deserialize)]
pub struct NewConnector {
    kind: String,
    collection: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, OptionValue>,
}

/// An option's value: one, or a list for options given more than once (`mailbox`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OptionValue {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Serialize)]
struct ConnectorOut {
    id: i64,
    kind: String,
    collection: String,
    /// The collection whose items it posts, for kinds that post.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<String>,
    account: String,
    state: ConnectorState,
    /// The options that are not secret.
    options: BTreeMap<String, String>,
    last_sync_at: Option<String>,
    last_error: Option<String>,
    /// RFC 3339; absent when it will not run by itself (paused, stopped, waiting for its user).
    next_run_at: Option<String>,
    /// A push connection to its service is open (Mastodon's streaming API).
    listening: bool,
}

async fn out(st: &SharedState, c: &ConnectorRow) -> Result<ConnectorOut> {
    let collections = st.mesh.store.collections(c.user_id).await?;
    let name_of = |id: i64| collections.iter().find(|x| x.id == id).map(|x| x.name.to_string());
    let collection = name_of(c.collection_id).unwrap_or_default();
    let outbox = c.outbox_id.and_then(name_of);
    let at = |ms: i64| Timestamp::from_unix(ms / 1000).rfc3339();
    let runs = matches!(c.state, ConnectorState::Active | ConnectorState::Failing) && c.next_at < i64::MAX;
    Ok(ConnectorOut {
        id: c.id,
        kind: c.kind.clone(),
        collection,
        outbox,
        account: c.account.clone(),
        state: c.state,
        options: serde_json::from_str(&c.options).unwrap_or_default(),
        last_sync_at: c.last_sync_at.map(at),
        last_error: c.last_error.clone(),
        next_run_at: runs.then(|| at(c.next_at)),
        listening: c.listening(crate::jobs::now_ms()),
    })
}

pub async fn create(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewConnector>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let allow_private = st.outbound.allows_private();
    let added = connectors::add(
        &st,
        p.user_id,
        &req.kind,
        req.collection.as_deref(),
        req.options
            .into_iter()
            .flat_map(|(k, v)| match v {
                OptionValue::One(v) => vec![(k, v)],
                OptionValue::Many(vs) => vs.into_iter().map(|v| (k.clone(), v)).collect(),
            })
            .collect(),
        allow_private,
    )
    .await?;
    let mut body =
        serde_json::to_value(out(&st, &added.connector).await?).map_err(|e| crate::error::Error::Internal(e.into()))?;
    if let Some(url) = added.authorize_url {
        body["authorize_url"] = serde_json::Value::String(url);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let mut all = Vec::new();
    for c in connectors::list(&st, p.user_id).await? {
        all.push(out(&st, &c).await?);
    }
    Ok(Json(all).into_response())
}

pub async fn show(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let c = connectors::get(&st, p.user_id, id).await?;
    Ok(Json(out(&st, &c).await?).into_response())
}

pub async fn remove(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    connectors::remove(&st, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/connectors/{id}/pause|resume|sync|reconnect` (reconnect answers `authorize_url`).
pub async fn act(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let c = match action.as_str() {
        "pause" => connectors::pause(&st, p.user_id, id).await?,
        "resume" => connectors::resume(&st, p.user_id, id).await?,
        "sync" => connectors::sync_now(&st, p.user_id, id).await?,
        "reconnect" => {
            let url = connectors::reconnect(&st, p.user_id, id).await?;
            let c = connectors::get(&st, p.user_id, id).await?;
            let mut body =
                serde_json::to_value(out(&st, &c).await?).map_err(|e| crate::error::Error::Internal(e.into()))?;
            body["authorize_url"] = serde_json::Value::String(url);
            return Ok(Json(body).into_response());
        }
        _ => return Err(crate::error::Error::NotFound("connector action")),
    };
    Ok(Json(out(&st, &c).await?).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoute {
    from: String,
    to: i64,
    #[serde(default)]
    filter: crate::usecases::timelines::SearchQuery,
}

/// `POST /api/routes` `{"from": COLLECTION, "to": CONNECTOR_ID, "filter": {…}}`.
pub async fn add_route(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewRoute>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let r = routes::add(&st, p.user_id, &p.user, &req.from, req.to, req.filter).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

pub async fn list_routes(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(routes::list(&st, p.user_id).await?).into_response())
}

pub async fn remove_route(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    routes::remove(&st, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
