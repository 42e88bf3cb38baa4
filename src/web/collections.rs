//! The web app's files and conflicts pages: each collection (a synced folder as a tree),
//! an item with its FeedSync history and download, the items in conflict, one conflict's
//! versions side by side, and its resolution. One use-case call each (`usecases::browse`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::SharedState;
use super::pages::{Chrome, Viewer, render, render_refused};
use crate::error::{Error, Result};
use crate::store::Principal;
use crate::usecases::browse::{self, Choice, Detail, Listed};
use crate::usecases::encode_segment;

#[derive(Template)]
#[template(path = "files.html")]
struct FilesPage {
    chrome: Chrome,
    collections: Vec<String>,
}

/// `/files`: the user's collections.
pub async fn index(State(st): State<SharedState>, headers: HeaderMap, Viewer(who): Viewer) -> Result<Response> {
    let collections = st
        .mesh
        .collections(who.user_id)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    render(FilesPage {
        chrome: Chrome::new(&st, &headers, &who, "files")
            .with_conflicts(&st, who.user_id)
            .await?,
        collections,
    })
}

/// A folder of a collection's tree and its items.
pub struct Folder {
    pub path: String,
    pub depth: usize,
    pub items: Vec<Listed>,
}

fn tree(items: Vec<Listed>) -> Vec<Folder> {
    let mut folders: Vec<Folder> = Vec::new();
    for l in items {
        match folders.last_mut() {
            Some(f) if f.path == l.folder => f.items.push(l),
            _ => folders.push(Folder {
                depth: if l.folder.is_empty() {
                    0
                } else {
                    l.folder.matches('/').count() + 1
                },
                path: l.folder.clone(),
                items: vec![l],
            }),
        }
    }
    folders
}

#[derive(Template)]
#[template(path = "collection.html")]
struct CollectionPage {
    chrome: Chrome,
    name: String,
    folders: Vec<Folder>,
    more: bool,
    count: usize,
}

/// `/files/{collection}`: its items as a folder tree.
pub async fn collection(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(name): Path<String>,
) -> Result<Response> {
    let (items, more) = browse::list(&st.core, who.user_id, &name).await?;
    let count = items.len();
    render(CollectionPage {
        chrome: Chrome::new(&st, &headers, &who, "files")
            .with_conflicts(&st, who.user_id)
            .await?,
        name,
        folders: tree(items),
        more,
        count,
    })
}

#[derive(serde::Deserialize)]
pub struct ItemQuery {
    #[serde(default)]
    collection: String,
    #[serde(default)]
    id: String,
}

#[derive(Template)]
#[template(path = "item.html")]
struct ItemPage {
    chrome: Chrome,
    d: Detail,
    download: Option<String>,
}

/// `/files/{collection}/item?id=ID`: an item, its FeedSync history, its download.
pub async fn item(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(name): Path<String>,
    Query(q): Query<ItemQuery>,
) -> Result<Response> {
    let d = browse::item(&st.core, who.user_id, &name, &q.id).await?;
    let download = d
        .current
        .media_sha256
        .as_ref()
        .map(|_| format!("{}/media", st.member_url(&who.user, &d.collection, &d.sync_id)));
    render(ItemPage {
        chrome: Chrome::new(&st, &headers, &who, "files")
            .with_conflicts(&st, who.user_id)
            .await?,
        d,
        download,
    })
}

#[derive(Template)]
#[template(path = "conflicts.html")]
struct ConflictsPage {
    chrome: Chrome,
    items: Vec<(String, Listed)>,
}

/// `/conflicts`: every item with `sx:conflicts`.
pub async fn conflicts(State(st): State<SharedState>, headers: HeaderMap, Viewer(who): Viewer) -> Result<Response> {
    render(ConflictsPage {
        chrome: Chrome::new(&st, &headers, &who, "conflicts")
            .with_conflicts(&st, who.user_id)
            .await?,
        items: browse::conflicts(&st.core, who.user_id).await?,
    })
}

#[derive(Template)]
#[template(path = "conflict.html")]
struct ConflictPage {
    chrome: Chrome,
    d: Detail,
    /// Each conflict with its line diff against the current version.
    versions: Vec<(browse::Shown, Vec<(char, String)>)>,
    error: String,
}

async fn conflict_page(
    st: &SharedState,
    headers: &HeaderMap,
    who: &Principal,
    q: &ItemQuery,
    error: String,
) -> Result<Response> {
    let d = browse::item(&st.core, who.user_id, &q.collection, &q.id).await?;
    if d.conflicts.is_empty() {
        return Ok(Redirect::to("/conflicts").into_response());
    }
    let versions = d
        .conflicts
        .iter()
        .map(|c| (c.clone(), browse::line_diff(&d.current.text, &c.text)))
        .collect();
    render_refused(
        ConflictPage {
            chrome: Chrome::new(st, headers, who, "conflicts")
                .with_conflicts(st, who.user_id)
                .await?,
            d,
            versions,
            error: error.clone(),
        },
        &error,
        axum::http::StatusCode::CONFLICT,
    )
}

/// `/conflicts/item?collection=C&id=ID`: the versions side by side, and the choice.
pub async fn conflict(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Query(q): Query<ItemQuery>,
) -> Result<Response> {
    conflict_page(&st, &headers, &who, &q, String::new()).await
}

#[derive(serde::Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    collection: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    seq: u64,
    /// `current`, `conflict-N` or `merged`.
    #[serde(default)]
    keep: String,
    #[serde(default)]
    text: String,
}

/// `POST /conflicts/resolve`: the choice, as a FeedSync resolution.
pub async fn resolve(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::Form(form): axum::Form<ResolveForm>,
) -> Result<Response> {
    let choice = match form.keep.as_str() {
        "current" => Choice::Current,
        "merged" => Choice::Merged(form.text.clone()),
        other => match other.strip_prefix("conflict-").and_then(|n| n.parse().ok()) {
            Some(n) => Choice::Conflict(n),
            None => return Err(Error::Invalid(format!("keep={other:?}: current, conflict-N or merged"))),
        },
    };
    let q = ItemQuery {
        collection: form.collection.clone(),
        id: form.id.clone(),
    };
    match browse::resolve(&st.core, &who, &form.collection, &form.id, form.seq, choice).await {
        Ok(_) => {
            let back: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id", &form.id)
                .finish();
            Ok(Redirect::to(&format!("/files/{}/item?{back}", encode_segment(&form.collection))).into_response())
        }
        Err(Error::Stale) => {
            conflict_page(
                &st,
                &headers,
                &who,
                &q,
                "The item changed while you looked at it: here it is now.".into(),
            )
            .await
        }
        Err(e) => Err(e),
    }
}
