//! The web app's connectors page: each connector's state, last sync and last error, with
//! sync now, pause, resume, reconnect and remove; and a form that adds one, going through
//! the provider's login (OAuth) in the browser when its kind needs it. One use-case call
//! each (`usecases::connectors`), the same the JSON API and the CLI make.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::SharedState;
use super::pages::{Chrome, Viewer, render, render_refused};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::ConnectorState;
use crate::store::Principal;
use crate::usecases::connectors;
use crate::usecases::kinds::{KINDS, Kind};

/// A connector as its card shows it.
pub struct Card {
    pub id: i64,
    pub kind: String,
    pub account: String,
    pub collection: String,
    pub state: String,
    pub paused: bool,
    pub oauth: bool,
    pub last_sync: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage {
    chrome: Chrome,
    cards: Vec<Card>,
    kinds: &'static [Kind],
    error: String,
}

async fn page(st: &SharedState, headers: &HeaderMap, who: &Principal, error: String) -> Result<Response> {
    let collections = st.mesh.collections(who.user_id).await?;
    let mut cards = Vec::new();
    for c in connectors::list(&st.core, who.user_id).await? {
        let kind = crate::usecases::kinds::kind(&c.kind).ok();
        cards.push(Card {
            id: c.id,
            kind: c.kind.clone(),
            account: c.account.clone(),
            collection: collections
                .iter()
                .find(|x| x.id == c.collection_id)
                .map(|x| x.name.clone())
                .unwrap_or_default(),
            state: serde_json::to_value(c.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            paused: c.state == ConnectorState::Paused,
            oauth: kind.is_some_and(|k| k.oauth != crate::usecases::kinds::OAuth::No),
            last_sync: c
                .last_sync_at
                .map(|ms| {
                    Timestamp::from_unix(ms / 1000)
                        .datetime()
                        .format("%Y-%m-%d %H:%M")
                        .to_string()
                })
                .unwrap_or_default(),
            last_error: c.last_error.clone().unwrap_or_default(),
        });
    }
    render_refused(
        ConnectorsPage {
            chrome: Chrome::new(st, headers, who, "connectors")
                .with_conflicts(st, who.user_id)
                .await?,
            cards,
            kinds: KINDS,
            error: error.clone(),
        },
        &error,
        axum::http::StatusCode::BAD_REQUEST,
    )
}

#[derive(Template)]
#[template(path = "authorise.html")]
struct AuthorisePage {
    chrome: Chrome,
    kind: String,
    url: String,
}

/// The step to the provider's login: a link, not a redirect, since the pages' CSP lets
/// forms go only to this hub (`form-action 'self'` covers a form's redirects too).
async fn to_provider(
    st: &SharedState,
    headers: &HeaderMap,
    who: &crate::store::Principal,
    kind: &str,
    url: String,
) -> Result<Response> {
    render(AuthorisePage {
        chrome: Chrome::new(st, headers, who, "connectors")
            .with_conflicts(st, who.user_id)
            .await?,
        kind: kind.to_string(),
        url,
    })
}

/// `/connectors`.
pub async fn index(State(st): State<SharedState>, headers: HeaderMap, Viewer(who): Viewer) -> Result<Response> {
    page(&st, &headers, &who, String::new()).await
}

#[derive(serde::Deserialize)]
pub struct NewForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    collection: String,
    /// One `KEY=VALUE` per line.
    #[serde(default)]
    options: String,
}

/// `POST /connectors`: adds one; a kind authorised by OAuth goes on to its provider's login.
pub async fn add(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::Form(form): axum::Form<NewForm>,
) -> Result<Response> {
    let mut options = Vec::new();
    for line in form.options.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) => options.push((k.trim().to_string(), v.trim().to_string())),
            None => return page(&st, &headers, &who, format!("option {line:?} is not KEY=VALUE")).await,
        }
    }
    let collection = Some(form.collection.trim()).filter(|c| !c.is_empty());
    let allow_private = st.outbound.allows_private();
    match connectors::add(
        &st.core,
        who.user_id,
        form.kind.trim(),
        collection,
        options,
        allow_private,
    )
    .await
    {
        Ok(added) => match added.authorize_url {
            Some(url) => to_provider(&st, &headers, &who, &added.connector.kind, url).await,
            None => Ok(Redirect::to("/connectors").into_response()),
        },
        Err(Error::Invalid(why)) | Err(Error::Conflict(why)) => page(&st, &headers, &who, why).await,
        Err(Error::NotFound(what)) => page(&st, &headers, &who, format!("no such {what}")).await,
        Err(e) => Err(e),
    }
}

/// `POST /connectors/{id}/{action}`: sync, pause, resume, reconnect (the provider's login
/// again) or remove.
pub async fn act(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Response> {
    let core = &st.core;
    match action.as_str() {
        "sync" => drop(connectors::sync_now(core, who.user_id, id).await?),
        "pause" => drop(connectors::pause(core, who.user_id, id).await?),
        "resume" => drop(connectors::resume(core, who.user_id, id).await?),
        "remove" => connectors::remove(core, who.user_id, id).await?,
        "reconnect" => {
            let url = connectors::reconnect(core, who.user_id, id).await?;
            let kind = connectors::get(core, who.user_id, id).await?.kind;
            return to_provider(&st, &headers, &who, &kind, url).await;
        }
        _ => return Err(Error::NotFound("connector action")),
    }
    Ok(Redirect::to("/connectors").into_response())
}
