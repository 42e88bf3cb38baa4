//! HTML pages of the web app: server-rendered (askama), working without JavaScript, under a
//! strict Content-Security-Policy. Each handler makes one use-case call and renders it; the
//! page chrome (navigation, search box, logout form with its CSRF token) is [`Chrome`].

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

use super::auth::{Check, optional_principal};
use super::session::page_csrf;
use super::{SharedState, html};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::store::Principal;
use crate::usecases::lines::{self, Line};

pub(super) fn render(page: impl Template) -> Result<Response> {
    Ok(html(page.render().map_err(|e| Error::Internal(e.into()))?))
}

/// The navigation: (URL, label, key).
const NAV: &[(&str, &str, &str)] = &[
    ("/", "Stream", "stream"),
    ("/contacts", "Contacts", "contacts"),
    ("/search", "Search", "search"),
    ("/files", "Files", "files"),
    ("/conflicts", "Conflicts", "conflicts"),
    ("/devices", "Devices", "devices"),
    ("/connectors", "Connectors", "connectors"),
    ("/feeds", "Feeds", "feeds"),
];

/// What every page around its content shows.
pub struct Chrome {
    pub user: Option<String>,
    pub csrf: String,
    pub current: &'static str,
    pub nav: &'static [(&'static str, &'static str, &'static str)],
    pub conflicts: u64,
    pub query: String,
    pub version: &'static str,
    pub css: String,
    pub js: String,
}

impl Chrome {
    pub fn new(st: &super::AppState, headers: &HeaderMap, who: &Principal, current: &'static str) -> Chrome {
        Chrome {
            user: Some(who.user.clone()),
            csrf: page_csrf(st, headers),
            current,
            nav: NAV,
            conflicts: 0,
            query: String::new(),
            version: env!("CARGO_PKG_VERSION"),
            css: super::assets::url("app.css"),
            js: super::assets::url("app.js"),
        }
    }
}

impl Chrome {
    /// With the count of items in conflict, for the navigation's badge.
    pub async fn with_conflicts(mut self, st: &super::AppState, user_id: i64) -> Result<Chrome> {
        self.conflicts = crate::usecases::browse::conflict_count(&st.core, user_id).await?;
        Ok(self)
    }
}

/// The browser's user, as a page handler takes it: without a live credential, the page
/// answers a redirect to the login form (coming back here after it, for a GET), never a 401.
pub struct Viewer(pub Principal);

impl axum::extract::FromRequestParts<SharedState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &SharedState) -> Result<Self, Response> {
        match optional_principal(st, &parts.headers, Check::Cached).await {
            Ok(Some(p)) => Ok(Viewer(p)),
            _ => {
                let here = match parts.method {
                    axum::http::Method::GET => parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                    _ => "/",
                };
                let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(axum::response::Redirect::to(&format!("/login?next={next}")).into_response())
            }
        }
    }
}

/// A page that shows an error of the person's input: rendered, with that status.
pub(super) fn render_refused(page: impl Template, error: &str, status: axum::http::StatusCode) -> Result<Response> {
    let mut resp = render(page)?;
    if !error.is_empty() {
        *resp.status_mut() = status;
    }
    Ok(resp)
}

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    version: &'static str,
    base_url: String,
}

/// A day of the stream: its heading and its lines.
pub struct Day {
    pub label: String,
    pub lines: Vec<Line>,
}

/// Groups lines (newest first) by UTC day: "Today", "Yesterday", then the date.
pub fn by_day(lines: Vec<Line>, now: Timestamp) -> Vec<Day> {
    let today = now.datetime().date_naive();
    let mut days: Vec<Day> = Vec::new();
    for l in lines {
        let date = l.at.datetime().date_naive();
        let label = match (today - date).num_days() {
            0 => "Today".to_string(),
            1 => "Yesterday".to_string(),
            _ => date.format("%A %-d %B %Y").to_string(),
        };
        match days.last_mut() {
            Some(d) if d.label == label => d.lines.push(l),
            _ => days.push(Day { label, lines: vec![l] }),
        }
    }
    days
}

#[derive(Template)]
#[template(path = "stream.html")]
struct StreamPage {
    chrome: Chrome,
    /// The contact whose notes the lines may edit (none on the stream).
    note_of: String,
    days: Vec<Day>,
    older: Option<u64>,
    paged: bool,
    base_url: String,
}

#[derive(serde::Deserialize, Default)]
pub struct PageQuery {
    before: Option<u64>,
}

/// `/`: the user's stream once logged in; the public page otherwise.
pub async fn landing(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    // A bad credential on the landing page just shows the public page.
    let Some(who) = optional_principal(&st, &headers, Check::Cached).await.unwrap_or(None) else {
        return render(Landing {
            version: env!("CARGO_PKG_VERSION"),
            base_url: st.base_url.clone(),
        });
    };
    let page = lines::stream(&st.core, &who, q.before).await?;
    render(StreamPage {
        chrome: Chrome::new(&st, &headers, &who, "stream")
            .with_conflicts(&st, who.user_id)
            .await?,
        note_of: String::new(),
        days: by_day(page.lines, Timestamp::now()),
        older: page.older,
        paged: q.before.is_some(),
        base_url: st.base_url.clone(),
    })
}

/// `/events`: Server-Sent Events for the browser's user, one `change` event whenever their
/// stream has something new (the page then offers "N new"), a comment every 15 s to keep
/// proxies from closing it.
pub async fn events(
    State(st): State<SharedState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let who = optional_principal(&st, &headers, Check::Cached)
        .await?
        .ok_or(Error::Unauthorized)?;
    let mut heads = lines::heads(st.core.clone(), who.user_id);
    let stream = async_stream(move |tx| async move {
        while let Some(head) = heads.recv().await {
            let event = Event::default().event("change").data(head.to_string());
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task through a small channel (ends when the task or the client does).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub async fn health() -> &'static str {
    "ok\n"
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    chrome: Chrome,
    tokens: Vec<crate::store::TokenInfo>,
    /// A token just made: (device, token), shown this once.
    issued: Option<(String, String)>,
    error: String,
    base_url: String,
}

async fn devices_page(
    st: &SharedState,
    headers: &HeaderMap,
    who: &Principal,
    issued: Option<(String, String)>,
    error: String,
) -> Result<Response> {
    let tokens = crate::usecases::accounts::tokens(st.mesh.store.as_ref(), &who.user).await?;
    render_refused(
        DevicesPage {
            chrome: Chrome::new(st, headers, who, "devices"),
            tokens,
            issued,
            error: error.clone(),
            base_url: st.base_url.clone(),
        },
        &error,
        axum::http::StatusCode::BAD_REQUEST,
    )
}

/// `/devices`: the user's devices and their tokens.
pub async fn devices(State(st): State<SharedState>, headers: HeaderMap, Viewer(who): Viewer) -> Result<Response> {
    devices_page(&st, &headers, &who, None, String::new()).await
}

#[derive(serde::Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    device: String,
}

/// `POST /devices`: a token for a (new) device, shown once on the page that answers.
pub async fn add_device(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::Form(form): axum::Form<DeviceForm>,
) -> Result<Response> {
    // A device token may not make or revoke tokens, even through the page.
    super::auth::session_owner(&st, &headers).await?;
    let device = form.device.trim().to_string();
    match crate::usecases::accounts::add_token(st.mesh.store.as_ref(), &who.user, &device).await {
        Ok(t) => devices_page(&st, &headers, &who, Some((device, t.token)), String::new()).await,
        Err(Error::Invalid(why)) => devices_page(&st, &headers, &who, None, why).await,
        Err(e) => Err(e),
    }
}

/// `POST /devices/{id}/revoke`: the token stops working at once.
pub async fn revoke_device(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response> {
    // A device token may not make or revoke tokens, even through the page.
    super::auth::session_owner(&st, &headers).await?;
    crate::usecases::accounts::revoke_token(st.mesh.store.as_ref(), &who.user, id).await?;
    st.principals.clear();
    Ok(axum::response::Redirect::to("/devices").into_response())
}

/// A feed's URL with its self key: what a reader that cannot log in subscribes to.
async fn keyed(st: &super::AppState, user_id: i64, url: &str) -> Result<String> {
    let path = url.strip_prefix(&st.base_url).unwrap_or(url);
    let key = super::auth::self_key(st, user_id, path).await?;
    Ok(format!("{url}?key={key}"))
}

/// A feed as the feeds page shows it: title, URL, and the URL with its key.
pub struct FeedRow {
    /// The element id of its key URL (for its copy button).
    pub id: String,
    pub title: String,
    pub url: String,
    pub keyed: String,
}

#[derive(Template)]
#[template(path = "feeds.html")]
struct FeedsPage {
    chrome: Chrome,
    groups: Vec<(String, Vec<FeedRow>)>,
    contacts: usize,
    keys: Vec<crate::store::FeedKey>,
    opml: String,
}

/// `/feeds`: every feed URL with its key URL, the keys to revoke, and the OPML export.
pub async fn feeds(State(st): State<SharedState>, headers: HeaderMap, Viewer(who): Viewer) -> Result<Response> {
    let mut groups = Vec::new();
    let mut contacts = 0;
    for (group, links) in crate::usecases::feeds::directory(&st.core, who.user_id, &who.user).await? {
        // Contact timelines are on each contact's page and in the OPML export.
        if group == "Contacts" {
            contacts = links.len();
            continue;
        }
        let mut rows = Vec::with_capacity(links.len());
        for l in links {
            rows.push(FeedRow {
                id: format!("feed-{}-{}", groups.len(), rows.len()),
                keyed: keyed(&st, who.user_id, &l.url).await?,
                title: l.title,
                url: l.url,
            });
        }
        groups.push((group, rows));
    }
    let keys = crate::usecases::keys::list(st.mesh.store.as_ref(), who.user_id)
        .await?
        .into_iter()
        .filter(|k| !k.revoked)
        .collect();
    render(FeedsPage {
        chrome: Chrome::new(&st, &headers, &who, "feeds")
            .with_conflicts(&st, who.user_id)
            .await?,
        groups,
        contacts,
        keys,
        opml: format!("/u/{}/feeds.opml", who.user),
    })
}

/// `POST /feeds/keys/{id}/revoke`: the key's URL stops working (its self key is made anew).
pub async fn revoke_key(
    State(st): State<SharedState>,
    Viewer(who): Viewer,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Response> {
    let forget = || {
        st.feed_keys.remove_where(|k| k.id == id);
        st.self_keys.clear();
    };
    crate::websub::hub::revoke_key(&st.websub, who.user_id, id, forget).await?;
    Ok(axum::response::Redirect::to("/feeds").into_response())
}

/// `GET /u/{user}/feeds.opml`: every feed the user can read, with key URLs, in OPML 2.0.
pub async fn opml(
    State(st): State<SharedState>,
    headers: HeaderMap,
    axum::extract::Path(user): axum::extract::Path<String>,
) -> Result<Response> {
    let who = super::auth::owner(&st, &headers, &user, Check::Cached).await?;
    let mut groups = Vec::new();
    for (group, links) in crate::usecases::feeds::directory(&st.core, who.user_id, &who.user).await? {
        let mut feeds = Vec::with_capacity(links.len());
        for l in links {
            feeds.push((l.title, keyed(&st, who.user_id, &l.url).await?));
        }
        groups.push((group, feeds));
    }
    let doc = crate::formats::opml::write(
        &format!("{}'s feeds on feedmesh", who.user),
        &Timestamp::now().rfc2822(),
        &groups,
    );
    let mut resp = doc.into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/x-opml; charset=utf-8"),
    );
    h.insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"feedmesh.opml\""),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}
