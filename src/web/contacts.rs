//! `/api/contacts` (list, create from JSON or a vCard, read, patch, delete, merge and undo,
//! notes, suggestions, companies) and `/api/views`; each handler one use-case call.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::auth::principal;
use crate::error::{Error, Result};
use crate::usecases::contacts::{self, ContactInput};
use crate::usecases::timelines::{self, SearchQuery};

fn is_vcard(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("text/vcard") || t.starts_with("text/x-vcard") || t.starts_with("text/directory")
        })
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("the body is not the JSON expected: {e}")))
}

pub async fn list(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::list(&st, p.user_id).await?).into_response())
}

/// POST of JSON fields, or of one vCard (`text/vcard`).
pub async fn create(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let c = if is_vcard(&headers) {
        contacts::create_from_vcard(&st, &p, &body).await?
    } else {
        contacts::create(&st, &p, json_body(&body)?).await?
    };
    let location = format!("/api/contacts/{}", crate::usecases::encode_segment(&c.id));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(c)).into_response())
}

/// `POST /api/activities`: what a phone app sends as it happens (a text, a call), AS2 JSON
/// or an Atom entry, into the user's `phone` collection. 201 when new, 200 when the same
/// activity came before; `Location` is its AtomPub member.
pub async fn post_activity(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let atom = ct.starts_with("application/atom+xml");
    if !atom
        && !ct.starts_with("application/activity+json")
        && !ct.starts_with("application/ld+json")
        && !ct.starts_with("application/json")
    {
        return Err(Error::Unsupported(
            "send application/activity+json (AS2) or application/atom+xml;type=entry".into(),
        ));
    }
    let (id, created) = crate::usecases::phone::post(&st, &p, &body, atom).await?;
    let location = st.member_url(&p.user, crate::usecases::phone::PHONE, &id);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        [(header::LOCATION, location.clone())],
        Json(serde_json::json!({"id": id, "location": location})),
    )
        .into_response())
}

/// The largest vCard file `POST /api/contacts/import` takes (a phone's export with photos).
pub const MAX_IMPORT: usize = 64 << 20;

/// `POST /api/contacts/import`: a vCard file of many cards.
pub async fn import(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::import(&st, &p, &body, |_, _| {}).await?).into_response())
}

/// `GET /api/contacts/export`: every contact as one vCard 4 file.
pub async fn export(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let body = contacts::export(&st, p.user_id).await?;
    Ok(([(header::CONTENT_TYPE, "text/vcard; charset=utf-8")], body).into_response())
}

pub async fn get(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::detail(&st, p.user_id, &p.user, &id).await?).into_response())
}

pub async fn patch(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let input: ContactInput = json_body(&body)?;
    Ok(Json(contacts::patch(&st, &p, &id, input).await?).into_response())
}

pub async fn delete(State(st): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    contacts::delete(&st, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeRequest {
    other: String,
}

pub async fn merge(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let req: MergeRequest = json_body(&body)?;
    let merge_id = contacts::merge(&st, &p, &id, &req.other).await?;
    Ok(Json(serde_json::json!({ "merge_id": merge_id })).into_response())
}

pub async fn undo(State(st): State<SharedState>, headers: HeaderMap, Path(merge_id): Path<String>) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::undo(&st, &p, &merge_id).await?).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteRequest {
    text: String,
}

pub async fn note(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let req: NoteRequest = json_body(&body)?;
    let note = contacts::add_note(&st, &p, &id, &req.text).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": note, "collection": "Notes" })),
    )
        .into_response())
}

pub async fn suggestions(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::suggestions(&st, p.user_id).await?).into_response())
}

pub async fn companies(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    Ok(Json(contacts::companies(&st, p.user_id).await?).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewView {
    name: String,
    query: SearchQuery,
}

#[derive(serde::Serialize)]
struct ViewOut {
    name: String,
    query: SearchQuery,
    feed: String,
}

fn view_out(st: &SharedState, user: &str, name: String, query: SearchQuery) -> ViewOut {
    let feed = timelines::feed_url(
        st,
        user,
        crate::usecases::feeds::Of::View(&name),
        crate::formats::Format::Atom,
    );
    ViewOut { name, query, feed }
}

pub async fn create_view(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let req: NewView = json_body(&body)?;
    timelines::save_view(&st, p.user_id, &req.name, &req.query).await?;
    Ok((StatusCode::CREATED, Json(view_out(&st, &p.user, req.name, req.query))).into_response())
}

pub async fn views(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    let out: Vec<ViewOut> = timelines::views(&st, p.user_id)
        .await?
        .into_iter()
        .map(|(n, q)| view_out(&st, &p.user, n, q))
        .collect();
    Ok(Json(out).into_response())
}

pub async fn delete_view(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response> {
    let p = principal(&st, &headers).await?;
    timelines::delete_view(&st, p.user_id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
