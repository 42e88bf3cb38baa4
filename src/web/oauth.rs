//! OAuth 2.0: the provider sends the browser back to `/oauth/callback` with `code` and
//! `state` (`usecases::oauth::complete`); `/api/oauth-clients` keeps each user's client
//! registrations (secrets never answered).

use std::collections::HashMap;

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::SharedState;
use super::auth::principal;
use crate::error::{Error, Result};
use crate::store::OAuthClient;
use crate::usecases::oauth;

#[derive(Template)]
#[template(path = "oauth.html")]
struct Page {
    title: String,
    message: String,
    ok: bool,
}

fn page(status: StatusCode, title: &str, message: String, ok: bool) -> Result<Response> {
    let html = Page {
        title: title.to_string(),
        message,
        ok,
    }
    .render()
    .map_err(|e| Error::Internal(e.into()))?;
    Ok((status, [("cache-control", "no-store")], Html(html)).into_response())
}

/// `GET /oauth/callback?code=…&state=…` (or `?error=…`): the end of the round trip.
pub async fn callback(State(st): State<SharedState>, Query(q): Query<HashMap<String, String>>) -> Result<Response> {
    if let Some(err) = q.get("error") {
        let why = q.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        let msg = format!("The provider did not authorise the connection ({err}{why}). Nothing was changed.");
        return page(StatusCode::BAD_REQUEST, "Not connected", msg, false);
    }
    let (Some(state), Some(code)) = (q.get("state"), q.get("code")) else {
        let msg = "This page needs the code and state the provider sends back.".to_string();
        return page(StatusCode::BAD_REQUEST, "Not connected", msg, false);
    };
    match oauth::complete(&st, state, code).await {
        Ok(c) => page(
            StatusCode::OK,
            "Connected",
            format!(
                "Connector {} ({}) is connected; its first sync starts now.",
                c.id, c.kind
            ),
            true,
        ),
        Err(Error::Invalid(why)) => page(StatusCode::BAD_REQUEST, "Not connected", why, false),
        Err(Error::NotFound(what)) => page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            format!("The {what} of this authorisation is gone."),
            false,
        ),
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
pub struct NewClient {
    provider: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    issuer: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    scope: Option<String>,
}

#[derive(serde::Serialize)]
struct ClientOut {
    provider: String,
    client_id: String,
    has_secret: bool,
    authorize_url: String,
    token_url: String,
    revoke_url: Option<String>,
    scope: String,
    /// The redirect URI to register at the provider.
    redirect_uri: String,
    /// The hub registered itself there (a Mastodon instance, RFC 7591).
    registered: bool,
}

fn out(st: &SharedState, c: OAuthClient) -> ClientOut {
    ClientOut {
        has_secret: c.client_secret.is_some(),
        provider: c.provider,
        client_id: c.client_id,
        authorize_url: c.authorize_url,
        token_url: c.token_url,
        revoke_url: c.revoke_url,
        scope: c.scope,
        redirect_uri: oauth::callback_url(st),
        registered: c.registration_url.is_some(),
    }
}

pub async fn create_client(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Json(req): Json<NewClient>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let c = oauth::NewClient {
        provider: req.provider,
        client_id: req.client_id,
        client_secret: req.client_secret,
        issuer: req.issuer,
        authorize_url: req.authorize_url,
        token_url: req.token_url,
        revoke_url: req.revoke_url,
        scope: req.scope,
    };
    let made = oauth::add_client(&st, p.user_id, c, st.outbound.allows_private()).await?;
    Ok((StatusCode::CREATED, Json(out(&st, made))).into_response())
}

pub async fn list_clients(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let all: Vec<ClientOut> = oauth::clients(&st, p.user_id)
        .await?
        .into_iter()
        .map(|c| out(&st, c))
        .collect();
    Ok(Json(all).into_response())
}

pub async fn remove_client(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    oauth::remove_client(&st, p.user_id, &provider).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
