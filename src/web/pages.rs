//! HTML pages: the landing page (version, your feeds once logged in, how to start).

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::SharedState;
use super::auth::{Check, optional_principal};
use crate::error::{Error, Result};

pub struct FeedLink {
    pub title: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    version: &'static str,
    base_url: String,
    user: Option<String>,
    device: String,
    feeds: Vec<FeedLink>,
    collections: Vec<FeedLink>,
}

pub async fn landing(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    // A bad credential on the landing page just shows the public page.
    let who = optional_principal(&st, &headers, Check::Cached).await.unwrap_or(None);
    let mut page = Landing {
        version: env!("CARGO_PKG_VERSION"),
        base_url: st.base_url.clone(),
        user: None,
        device: String::new(),
        feeds: Vec::new(),
        collections: Vec::new(),
    };
    if let Some(p) = who {
        for ext in ["atom", "rss", "json"] {
            page.feeds.push(FeedLink {
                title: format!("Your stream ({ext})"),
                url: format!("{}/u/{}/stream.{ext}", st.base_url, p.user),
            });
        }
        page.feeds.push(FeedLink {
            title: format!("What {} published (atom)", p.by()),
            url: format!("{}/u/{}/endpoints/{}/stream.atom", st.base_url, p.user, p.endpoint),
        });
        for c in st.mesh.collections(p.user_id).await? {
            page.collections.push(FeedLink {
                url: st.collection_url(&p.user, &c.name),
                title: c.name,
            });
        }
        page.device = p.endpoint;
        page.user = Some(p.user);
    }
    let html = page.render().map_err(|e| Error::Internal(e.into()))?;
    Ok(Html(html).into_response())
}

/// Asks the browser for a user name and token (HTTP Basic), then shows the landing page.
pub async fn login(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    match optional_principal(&st, &headers, Check::Cached).await {
        Ok(Some(_)) => Ok(Redirect::to("/").into_response()),
        _ => Err(Error::Unauthorized),
    }
}

pub async fn health() -> &'static str {
    "ok\n"
}
