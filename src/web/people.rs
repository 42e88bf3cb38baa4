//! The web app's people pages: the contacts list (search, tags, companies, suggestions to
//! accept), a contact's page (identities, fields, counts, notes, the timeline with why each
//! item is there), merge and its undo, vCard import and export. Each form handler makes one
//! use-case call (`usecases::contacts`), the same the JSON API makes.

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::SharedState;
use super::pages::{Chrome, Day, Viewer, by_day, render_refused};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::store::Principal;
use crate::store::{ContactSummary, Suggestion};
use crate::usecases::contacts::{self, ContactDetail, ContactInput};
use crate::usecases::feeds::Of;
use crate::usecases::{lines, timelines};

/// Contacts per page of the list.
const PER_PAGE: usize = 100;

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage {
    chrome: Chrome,
    contacts: Vec<(ContactSummary, String)>,
    total: usize,
    q: String,
    tag: String,
    tags: Vec<String>,
    companies: Vec<crate::store::Company>,
    suggestions: Vec<Suggestion>,
    next: Option<String>,
    report: String,
    error: String,
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    page: usize,
    #[serde(default)]
    imported: String,
}

fn matches(c: &ContactSummary, q: &ListQuery) -> bool {
    let text = q.q.trim().to_lowercase();
    (text.is_empty()
        || c.name.to_lowercase().contains(&text)
        || c.org.to_lowercase().contains(&text)
        || c.identities.iter().any(|i| i.to_lowercase().contains(&text)))
        && (q.tag.is_empty() || c.tags.iter().any(|t| t == &q.tag))
        && (q.company.is_empty() || c.companies.iter().any(|s| s == &q.company))
}

async fn list_page(
    st: &SharedState,
    headers: &HeaderMap,
    who: &Principal,
    q: ListQuery,
    error: String,
) -> Result<Response> {
    let all = contacts::list(&st.core, who.user_id).await?;
    let mut tags: Vec<String> = all.iter().flat_map(|c| c.tags.iter().cloned()).collect();
    tags.sort();
    tags.dedup();
    let chosen: Vec<ContactSummary> = all.into_iter().filter(|c| matches(c, &q)).collect();
    let total = chosen.len();
    let start = q.page.saturating_mul(PER_PAGE).min(total);
    let mut shown = Vec::new();
    for c in chosen.into_iter().skip(start).take(PER_PAGE) {
        let last = contacts::last_interaction(&st.core, who.user_id, &c.id).await?;
        shown.push((
            c,
            last.map(|t| t.datetime().format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        ));
    }
    let next = (start + PER_PAGE < total).then(|| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q.q)
            .append_pair("tag", &q.tag)
            .append_pair("company", &q.company)
            .append_pair("page", &(q.page + 1).to_string())
            .finish();
        format!("/contacts?{query}")
    });
    let mut chrome = Chrome::new(st, headers, who, "contacts")
        .with_conflicts(st, who.user_id)
        .await?;
    chrome.query = String::new();
    let page = ContactsPage {
        chrome,
        contacts: shown,
        total,
        q: q.q.clone(),
        tag: q.tag.clone(),
        tags,
        companies: contacts::companies(&st.core, who.user_id).await?,
        suggestions: contacts::suggestions(&st.core, who.user_id)
            .await?
            .into_iter()
            .take(20)
            .collect(),
        next,
        report: q.imported.clone(),
        error: error.clone(),
    };
    render_refused(page, &error, axum::http::StatusCode::BAD_REQUEST)
}

/// `/contacts`: the list, with search, tag and company filters and suggestions.
pub async fn list(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    list_page(&st, &headers, &who, q, String::new()).await
}

#[derive(serde::Deserialize)]
pub struct NewContact {
    #[serde(default)]
    name: String,
    #[serde(default)]
    identity: String,
}

/// `POST /contacts`: a new contact (from a suggestion: its identity and the name seen).
pub async fn create(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    axum::Form(form): axum::Form<NewContact>,
) -> Result<Response> {
    let identities = (!form.identity.trim().is_empty()).then(|| vec![form.identity.trim().to_string()]);
    let name = match form.name.trim() {
        "" => form.identity.trim().to_string(),
        n => n.to_string(),
    };
    let input = ContactInput {
        name: Some(name),
        identities,
        ..ContactInput::default()
    };
    match contacts::create(&st.core, &who, input).await {
        Ok(c) => Ok(Redirect::to(&format!("/contacts/{}", c.id)).into_response()),
        Err(Error::Invalid(why)) => list_page(&st, &headers, &who, ListQuery::default(), why).await,
        Err(e) => Err(e),
    }
}

/// `POST /contacts/import?csrf=…`: a vCard file from a multipart form.
pub async fn import(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    mut form: Multipart,
) -> Result<Response> {
    let mut file = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| Error::Invalid(format!("the form is broken: {e}")))?
    {
        if field.name() == Some("file") {
            file = Some(
                field
                    .bytes()
                    .await
                    .map_err(|e| Error::Invalid(format!("the file did not arrive whole: {e}")))?,
            );
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return list_page(
            &st,
            &headers,
            &who,
            ListQuery::default(),
            "choose a vCard file to import".into(),
        )
        .await;
    };
    match contacts::import(&st.core, &who, &file, |_, _| {}).await {
        Ok(r) => {
            let said = format!(
                "{} created, {} updated, {} unchanged",
                r.created, r.updated, r.unchanged
            );
            let q: String = url::form_urlencoded::byte_serialize(said.as_bytes()).collect();
            Ok(Redirect::to(&format!("/contacts?imported={q}")).into_response())
        }
        Err(Error::Invalid(why)) => list_page(&st, &headers, &who, ListQuery::default(), why).await,
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "contact.html")]
struct ContactPage {
    chrome: Chrome,
    note_of: String,
    c: ContactDetail,
    days: Vec<Day>,
    older: Option<u64>,
    paged: bool,
    /// Contacts to merge in: (id, name, hint); `all_others` says whether that is everyone
    /// (else the form takes an id too).
    others: Vec<(String, String, String)>,
    all_others: bool,
    merged: Option<(String, String)>,
    counts: Vec<(&'static str, u64)>,
    error: String,
}

#[derive(serde::Deserialize, Default)]
pub struct ContactQuery {
    before: Option<u64>,
    /// A merge just made: its id, so the page offers its undo.
    #[serde(default)]
    merged: String,
}

async fn contact_page(
    st: &SharedState,
    headers: &HeaderMap,
    who: &Principal,
    id: &str,
    q: ContactQuery,
    error: String,
) -> Result<Response> {
    let c = contacts::detail(&st.core, who.user_id, &who.user, id).await?;
    let r = timelines::resolve(&st.core, who.user_id, &who.user, Of::Contact(id), Format::Atom).await?;
    let page = lines::page(&st.core, who.user_id, &r, q.before).await?;
    let others = contacts::merge_candidates(&st.core, who.user_id, id, &c.contact.name, &c.contact.org).await?;
    let merged = (!q.merged.is_empty()).then(|| (q.merged.clone(), String::new()));
    let counts = c.counts.iter().map(|(k, v)| (*k, *v)).collect();
    render_refused(
        ContactPage {
            chrome: Chrome::new(st, headers, who, "contacts")
                .with_conflicts(st, who.user_id)
                .await?,
            note_of: id.to_string(),
            c,
            days: by_day(page.lines, Timestamp::now()),
            older: page.older,
            paged: q.before.is_some(),
            others: others.choices,
            all_others: others.all,
            merged,
            counts,
            error: error.clone(),
        },
        &error,
        axum::http::StatusCode::BAD_REQUEST,
    )
}

/// `/contacts/{id}`: the person, their notes and their timeline.
pub async fn show(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(id): Path<String>,
    Query(q): Query<ContactQuery>,
) -> Result<Response> {
    contact_page(&st, &headers, &who, &id, q, String::new()).await
}

#[derive(serde::Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    text: String,
}

/// `POST /contacts/{id}/notes`: a note about the person (an item of `Notes`).
pub async fn add_note(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<NoteForm>,
) -> Result<Response> {
    match contacts::add_note(&st.core, &who, &id, &form.text).await {
        Ok(_) => Ok(Redirect::to(&format!("/contacts/{id}")).into_response()),
        Err(Error::Invalid(why)) => contact_page(&st, &headers, &who, &id, ContactQuery::default(), why).await,
        Err(e) => Err(e),
    }
}

/// `POST /contacts/{id}/notes/{note}`: a note's new text.
pub async fn edit_note(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path((id, note)): Path<(String, String)>,
    axum::Form(form): axum::Form<NoteForm>,
) -> Result<Response> {
    match contacts::edit_note(&st.core, &who, &note, &form.text).await {
        Ok(()) => Ok(Redirect::to(&format!("/contacts/{id}")).into_response()),
        Err(Error::Invalid(why)) => contact_page(&st, &headers, &who, &id, ContactQuery::default(), why).await,
        Err(e) => Err(e),
    }
}

#[derive(serde::Deserialize)]
pub struct MergeForm {
    #[serde(default)]
    other: String,
    /// The other contact's id, typed (when the page could not list everyone).
    #[serde(default)]
    other_id: String,
}

/// `POST /contacts/{id}/merge`: folds another contact into this one; the page then offers
/// the undo.
pub async fn merge(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Viewer(who): Viewer,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<MergeForm>,
) -> Result<Response> {
    let other = if form.other.trim().is_empty() {
        form.other_id.trim()
    } else {
        form.other.trim()
    };
    match contacts::merge(&st.core, &who, &id, other).await {
        Ok(merge_id) => Ok(Redirect::to(&format!("/contacts/{id}?merged={merge_id}")).into_response()),
        Err(Error::Invalid(why)) => contact_page(&st, &headers, &who, &id, ContactQuery::default(), why).await,
        Err(e) => Err(e),
    }
}

/// `POST /contacts/merges/{merge_id}/undo`: splits them back as they were.
pub async fn undo(
    State(st): State<SharedState>,
    Viewer(who): Viewer,
    Path(merge_id): Path<String>,
) -> Result<Response> {
    let kept = contacts::undo(&st.core, &who, &merge_id).await?;
    Ok(Redirect::to(&format!("/contacts/{}", kept.id)).into_response())
}
