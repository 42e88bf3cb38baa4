//! Follows of outside feeds: `/api/follows` to add, list and remove them, and the WebSub
//! callback `/websub/callback/{token}` their hubs verify and deliver to.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Method;

use super::auth::principal;
use super::{AppState, SharedState};
use crate::error::{AppError, AppResult};
use crate::follow;
use crate::hub::{Form, MAX_TOPIC_BYTES, now_ms, signature_valid};
use crate::secrets;
use crate::store::{Follow, FollowState};

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

/// Adds a follow (the URL is checked like every outbound request) and wakes the worker.
pub async fn add(st: &AppState, user_id: i64, url: &str, collection: &str) -> AppResult<Follow> {
    crate::net::check_url(url, st.outbound.allows_private()).map_err(|e| AppError::BadRequest(format!("url: {e}")))?;
    let col = st.mesh.collection(user_id, collection).await?;
    let token = secrets::generate("")?;
    let secret = secrets::generate("")?;
    let f = st.mesh.store.add_follow(user_id, col.id, url, &token, &secret).await?;
    st.follow_wake.notify_one();
    Ok(f)
}

pub async fn create(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewFollow>,
) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    let f = add(&st, p.user_id, req.url.trim(), &req.collection).await?;
    Ok((StatusCode::CREATED, Json(out(&f, req.collection))).into_response())
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    let collections = st.mesh.store.collections(p.user_id).await?;
    let name = |id: i64| {
        collections
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.to_string())
            .unwrap_or_default()
    };
    let follows: Vec<FollowOut> = st
        .mesh
        .store
        .follows(p.user_id)
        .await?
        .iter()
        .map(|f| out(f, name(f.collection_id)))
        .collect();
    Ok(Json(follows).into_response())
}

pub async fn remove(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> AppResult<Response> {
    let p = principal(&st, &headers).await?;
    let f = st.mesh.store.remove_follow(p.user_id, id).await?;
    if !f.hub.is_empty() && f.state != FollowState::Polling {
        // Tell the hub; its verification GET finds no follow and confirms (see `verify`).
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("hub.mode", "unsubscribe")
            .append_pair("hub.topic", &f.topic)
            .append_pair("hub.callback", &follow::callback_url(&st, &f))
            .finish();
        if let Ok(req) = st.outbound.request(Method::POST, &f.hub) {
            let st = st.clone();
            let req = req
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
            tokio::spawn(async move {
                if let Err(e) = st.outbound.send(req).await {
                    tracing::warn!(error = %e, "unsubscribing from a hub failed");
                }
            });
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The hub's verification of intent (and denials) for a follow.
pub async fn verify(
    State(st): State<SharedState>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let f = st.mesh.store.follow_by_token(&token).await?;
    let challenge = form.first("hub.challenge").unwrap_or("").to_string();
    let echo = || {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            challenge.clone(),
        )
            .into_response()
    };
    let now = now_ms();
    match (form.first("hub.mode"), f) {
        (Some("subscribe"), Some(f)) if !challenge.is_empty() && form.first("hub.topic") == Some(f.topic.as_str()) => {
            let lease = form
                .first("hub.lease_seconds")
                .and_then(|l| l.parse::<i64>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(st.hub.default_lease as i64)
                .min(i64::MAX / 4000);
            // Renew when four fifths of the lease have passed.
            if st
                .mesh
                .store
                .follow_verified(f.id, now + lease * 1000, now + lease * 800)
                .await?
            {
                return Ok(echo());
            }
            Err(AppError::NotFound("pending subscription"))
        }
        // We asked to leave (the follow was removed): confirm.
        (Some("unsubscribe"), None) if !challenge.is_empty() => Ok(echo()),
        (Some("denied"), Some(f)) => {
            let reason = form.first("hub.reason").unwrap_or("no reason given");
            let reason: String = reason.chars().take(200).collect();
            st.mesh
                .store
                .follow_fallback(f.id, &format!("the hub denied the subscription: {reason}"), now)
                .await?;
            st.follow_wake.notify_one();
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(AppError::NotFound("pending subscription")),
    }
}

/// A hub's delivery for a follow: signature checked in constant time, entries stored.
/// A bad or missing signature is acknowledged (2xx, as WebSub asks) and ignored.
pub async fn receive(
    State(st): State<SharedState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Response> {
    let Some(f) = st.mesh.store.follow_by_token(&token).await? else {
        // H6: tells the hub this subscription is over.
        return Ok((StatusCode::GONE, "no such subscription\n").into_response());
    };
    let body = axum::body::to_bytes(body, MAX_TOPIC_BYTES)
        .await
        .map_err(|_| AppError::TooLarge(format!("deliveries are limited to {MAX_TOPIC_BYTES} bytes")))?;
    let sig = headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    if !signature_valid(sig, &f.secret, &body) {
        tracing::warn!(
            follow = f.id,
            "a WebSub delivery with a missing or wrong signature was dropped"
        );
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let changed = follow::ingest(&st, &f, &body).await?;
    tracing::debug!(follow = f.id, changed, "a WebSub delivery was stored");
    Ok(StatusCode::ACCEPTED.into_response())
}
