//! The web app's search page (one box and the search feed's filters) and saved views: save
//! a search as a view, a view's page with its feed URLs, delete it. One use-case call each
//! (`usecases::timelines`), the same the feeds and the JSON API make.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::SharedState;
use super::pages::{Chrome, Day, Viewer, by_day, render, render_refused};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::store::Principal;
use crate::usecases::feeds::Of;
use crate::usecases::timelines::{self, SearchQuery};
use crate::usecases::{contacts, lines};

/// The search form as a browser sends it: every field a string, empty when unused.
#[derive(serde::Deserialize, Default, Clone)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    collection: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    before: Option<u64>,
    /// Only when saving: the view's name.
    #[serde(default)]
    name: String,
}

impl SearchForm {
    fn query(&self) -> SearchQuery {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        SearchQuery {
            q: some(&self.q),
            contact: some(&self.contact),
            company: some(&self.company),
            collection: some(&self.collection),
            endpoint: some(&self.endpoint),
            kind: some(&self.kind),
            since: some(&self.since),
            until: some(&self.until),
            tags: self
                .tags
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.query() == SearchQuery::default()
    }

    /// The same search as a query string (for the next page's link and the feeds).
    fn query_string(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("contact", &self.contact),
            ("company", &self.company),
            ("collection", &self.collection),
            ("endpoint", &self.endpoint),
            ("type", &self.kind),
            ("since", &self.since),
            ("until", &self.until),
            ("tags", &self.tags),
        ] {
            if !v.trim().is_empty() {
                s.append_pair(k, v.trim());
            }
        }
        s.finish()
    }
}

/// The object types a search can ask for, as (value, label).
const TYPES: &[(&str, &str)] = &[
    ("Note", "Notes and posts"),
    ("Article", "Articles"),
    ("Message", "E-mails"),
    ("TextMessage", "Texts"),
    ("Call", "Calls"),
    ("Document", "Files"),
    ("Event", "Events"),
];

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    chrome: Chrome,
    note_of: String,
    form: SearchForm,
    searched: bool,
    days: Vec<Day>,
    older: Option<String>,
    contacts: Vec<(String, String)>,
    /// Whether `contacts` is everyone (else the form takes a contact id).
    all_contacts: bool,
    collections: Vec<String>,
    types: &'static [(&'static str, &'static str)],
    views: Vec<(String, String)>,
    feed: String,
    error: String,
}

async fn search_page(
    st: &SharedState,
    headers: &HeaderMap,
    who: &Principal,
    form: SearchForm,
    error: String,
) -> Result<Response> {
    let searched = !form.is_empty();
    let mut error = error;
    let (mut days, mut older) = (Vec::new(), None);
    if searched && error.is_empty() {
        let found = match timelines::search(&st.core, who.user_id, &who.user, &form.query(), Format::Atom).await {
            Ok(r) => lines::page(&st.core, who.user_id, &r, form.before).await.map(Some),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(page)) => {
                days = by_day(page.lines, Timestamp::now());
                older = page
                    .older
                    .map(|seq| format!("/search?{}&before={seq}", form.query_string()));
            }
            Ok(None) => {}
            Err(Error::Invalid(why)) => error = why,
            Err(Error::NotFound(what)) => error = format!("no such {what}"),
            Err(e) => return Err(e),
        }
    }
    let picker = contacts::picker(&st.core, who.user_id).await?;
    let all_contacts = picker.all;
    let contacts = picker.choices.into_iter().map(|(id, name, _)| (id, name)).collect();
    let collections = st
        .mesh
        .collections(who.user_id)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let views = timelines::views(&st.core, who.user_id)
        .await?
        .into_iter()
        .map(|(name, _)| {
            let url = timelines::feed_url(&st.core, &who.user, Of::View(&name), Format::Atom);
            (name, url)
        })
        .collect();
    let mut chrome = Chrome::new(st, headers, who, "search")
        .with_conflicts(st, who.user_id)
        .await?;
    chrome.query = form.q.clone();
    let feed = format!("{}/u/{}/search.atom?{}", st.base_url, who.user, form.query_string());
    render_refused(
        SearchPage {
            chrome,
            note_of: String::new(),
            form,
            searched,
            days,
            older,
            contacts,
            all_contacts,
            collections,
            types: TYPES,
            views,
            feed,
            error: error.clone(),
        },
        &error,
        axum::http::StatusCode::BAD_REQUEST,
    )
}

/// `/search?q=…&contact=…`: the filters of the search feed, and what they find.
pub async fn search(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Query(form): Query<SearchForm>,
) -> Result<Response> {
    search_page(&st, &headers, &who, form, String::new()).await
}

/// `POST /views`: saves the search as a view named NAME (then its page).
pub async fn save(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::Form(form): axum::Form<SearchForm>,
) -> Result<Response> {
    let name = form.name.trim().to_string();
    match timelines::save_view(&st.core, who.user_id, &name, &form.query()).await {
        Ok(()) => Ok(Redirect::to(&format!("/views/{name}")).into_response()),
        Err(Error::Invalid(why)) => search_page(&st, &headers, &who, form, why).await,
        Err(Error::NotFound(what)) => search_page(&st, &headers, &who, form, format!("no such {what}")).await,
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "view.html")]
struct ViewPage {
    chrome: Chrome,
    note_of: String,
    name: String,
    feeds: Vec<(&'static str, String)>,
    search: String,
    days: Vec<Day>,
    older: Option<u64>,
    paged: bool,
}

#[derive(serde::Deserialize, Default)]
pub struct PageQuery {
    before: Option<u64>,
}

/// `/views/{name}`: what the view shows now, and its feed URLs.
pub async fn view(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let r = timelines::resolve(&st.core, who.user_id, &who.user, Of::View(&name), Format::Atom).await?;
    let page = lines::page(&st.core, who.user_id, &r, q.before).await?;
    let saved = timelines::views(&st.core, who.user_id)
        .await?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, query)| query)
        .ok_or(Error::NotFound("view"))?;
    let search = serde_urlencoded_query(&saved);
    let feeds = [Format::Atom, Format::Rss, Format::Json]
        .into_iter()
        .map(|f| {
            (
                f.extension(),
                timelines::feed_url(&st.core, &who.user, Of::View(&name), f),
            )
        })
        .collect();
    render(ViewPage {
        chrome: Chrome::new(&st, &headers, &who, "search")
            .with_conflicts(&st, who.user_id)
            .await?,
        note_of: String::new(),
        name,
        feeds,
        search,
        days: by_day(page.lines, Timestamp::now()),
        older: page.older,
        paged: q.before.is_some(),
    })
}

/// A saved query as the search page's query string (to open it there and change it).
fn serde_urlencoded_query(q: &SearchQuery) -> String {
    let form = SearchForm {
        q: q.q.clone().unwrap_or_default(),
        contact: q.contact.clone().unwrap_or_default(),
        company: q.company.clone().unwrap_or_default(),
        collection: q.collection.clone().unwrap_or_default(),
        endpoint: q.endpoint.clone().unwrap_or_default(),
        kind: q.kind.clone().unwrap_or_default(),
        since: q.since.clone().unwrap_or_default(),
        until: q.until.clone().unwrap_or_default(),
        tags: q.tags.join(", "),
        ..SearchForm::default()
    };
    form.query_string()
}

/// `POST /views/{name}/delete`.
pub async fn delete(State(st): State<SharedState>, Viewer(who): Viewer, Path(name): Path<String>) -> Result<Response> {
    timelines::delete_view(&st.core, who.user_id, &name).await?;
    Ok(Redirect::to("/search").into_response())
}
