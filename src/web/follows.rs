//! Follows of outside feeds: `/api/follows` to add, list and remove them (`usecases::follows`),
//! and the WebSub callback `/websub/callback/{token}` their hubs verify and deliver to
//! (`websub::subscriber`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::principal;
use crate::error::{Error, Result};
use crate::store::{Follow, FollowState};
use crate::usecases::follows;
use crate::websub::protocol::{Form, MAX_TOPIC_BYTES};
use crate::websub::subscriber::{self, Verified};

#[derive(serde::Deserialize)]
pub struct NewFollow {
    url: String,
    collection: String,
}

#[derive(serde::Serialize)]
struct FollowOut {
    id: i64,
    url: String,
    collection: String,
    state: FollowState,
    hub: Option<String>,
    /// RFC 3339, while subscribed.
    lease_expires_at: Option<String>,
    last_error: Option<String>,
}

fn out(f: &Follow, collection: String) -> FollowOut {
    FollowOut {
        id: f.id,
        url: f.url.clone(),
        collection,
        state: f.state,
        hub: (!f.hub.is_empty()).then(|| f.hub.clone()),
        lease_expires_at: (f.lease_expires_at > 0)
            .then(|| crate::domain::time::Timestamp::from_unix(f.lease_expires_at / 1000).rfc3339()),
        last_error: f.last_error.clone(),
    }
}

pub async fn create(State(st): State<SharedState>, headers: HeaderMap, Json(req): Json<NewFollow>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let allow_private = st.outbound.allows_private();
    let (f, _) = follows::add(&st, p.user_id, &req.url, &req.collection, allow_private).await?;
    Ok((StatusCode::CREATED, Json(out(&f, req.collection))).into_response())
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let follows: Vec<FollowOut> = follows::list(&st, p.user_id)
        .await?
        .into_iter()
        .map(|(f, collection)| out(&f, collection))
        .collect();
    Ok(Json(follows).into_response())
}

pub async fn remove(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    follows::remove(&st, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The hub's verification of intent (and denials) for a follow.
pub async fn verify(
    State(st): State<SharedState>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    match subscriber::verify(&st.websub, &token, &form).await? {
        Verified::Echo(challenge) => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
        }
        Verified::Noted => Ok(StatusCode::OK.into_response()),
    }
}

/// A hub's delivery for a follow (at most `MAX_TOPIC_BYTES`).
pub async fn receive(
    State(st): State<SharedState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Some(f) = subscriber::receiving(&st.websub, &token).await? else {
        // H6: tells the hub this subscription is over.
        return Ok((StatusCode::GONE, "no such subscription\n").into_response());
    };
    let body = axum::body::to_bytes(body, MAX_TOPIC_BYTES)
        .await
        .map_err(|_| Error::TooLarge(format!("deliveries are limited to {MAX_TOPIC_BYTES} bytes")))?;
    let sig = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    subscriber::receive(&st.websub, &f, sig, &body).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
