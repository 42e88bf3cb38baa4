//! The Fever API under `/api/fever` (FreshRSS's and Miniflux's flavour, reader-apis.md §5):
//! `POST ?api&<selectors>` with `api_key` = md5 of `user:password` of an app password (the
//! only password whose md5 the hub can know: it is made when the app password is issued).
//! A wrong key is `{"auth": 0}` with HTTP 200, as Fever clients expect.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::SharedState;
use crate::error::{Error, Result};
use crate::usecases::logins;
use crate::usecases::reading::{self, GROUPS, Mark, Query};

/// Most items one call answers, as Fever says.
const ITEMS: u32 = 50;
/// Most ids in `unread_item_ids` and `saved_item_ids`.
const IDS: u32 = 10_000;
/// Largest form read.
const MAX_BODY: usize = 64 * 1024;

/// `POST /api/fever` (GET too, for a client that puts everything in the query).
pub async fn call(State(st): State<SharedState>, req: Request<Body>) -> Response {
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if multipart {
        match Multipart::from_request(req, &()).await {
            Ok(mut m) => loop {
                match m.next_field().await {
                    Ok(Some(f)) => {
                        let name = f.name().unwrap_or("").to_string();
                        match f.text().await {
                            Ok(v) if v.len() <= MAX_BODY => params.push((name, v)),
                            _ => return Error::Invalid("a form field is too large or broken".into()).into_response(),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Error::Invalid(format!("bad multipart body: {e}")).into_response(),
                }
            },
            Err(e) => return Error::Invalid(format!("bad multipart body: {e}")).into_response(),
        }
    } else {
        match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
            Ok(b) => params.extend(url::form_urlencoded::parse(&b).into_owned()),
            Err(_) => return Error::TooLarge(format!("a Fever call is at most {MAX_BODY} bytes")).into_response(),
        }
    }
    match answer(&st, &params).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn get<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn has(params: &[(String, String)], key: &str) -> bool {
    params.iter().any(|(k, _)| k == key)
}

fn number<T: std::str::FromStr>(params: &[(String, String)], key: &str) -> Result<Option<T>> {
    get(params, key)
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| Error::Invalid(format!("{key} is a number")))
        })
        .transpose()
}

fn ids_string(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

async fn answer(st: &SharedState, params: &[(String, String)]) -> Result<Value> {
    let key = get(params, "api_key").unwrap_or("");
    let Some(login) = logins::fever_login(st.mesh.store.as_ref(), key).await? else {
        return Ok(json!({"api_version": 3, "auth": 0}));
    };
    let (core, user_id, user) = (&st.core, login.user_id, login.user.as_str());
    let mut out = Map::new();
    out.insert("api_version".into(), json!(3));
    out.insert("auth".into(), json!(1));
    out.insert("last_refreshed_on_time".into(), json!(chrono::Utc::now().timestamp()));

    // Writes first, so what the same call reads shows them.
    if let Some(what) = get(params, "mark") {
        let id: u64 = number(params, "id")?.ok_or_else(|| Error::Invalid("mark needs id".into()))?;
        let as_ = get(params, "as").unwrap_or("");
        match (what, as_) {
            ("item", "read" | "unread" | "saved" | "unsaved") => {
                let m = match as_ {
                    "read" => Mark::Read,
                    "unread" => Mark::Unread,
                    "saved" => Mark::Starred,
                    _ => Mark::Unstarred,
                };
                reading::mark(core, user_id, &[id], m).await?;
                let key = if matches!(m, Mark::Read | Mark::Unread) {
                    "unread_item_ids"
                } else {
                    "saved_item_ids"
                };
                let ids = match m {
                    Mark::Read | Mark::Unread => reading::unread_ids(core, user_id, user, IDS).await?,
                    _ => reading::starred_ids(core, user_id, user, IDS).await?,
                };
                out.insert(key.into(), json!(ids_string(&ids)));
            }
            ("feed" | "group", "read") => {
                let before: Option<i64> = number(params, "before")?;
                let id = i64::try_from(id).map_err(|_| Error::NotFound("feed"))?;
                if what == "feed" {
                    reading::mark_all_read(core, user_id, user, Some(id), before).await?;
                } else {
                    mark_group(st, user_id, user, id, before).await?;
                }
                let ids = reading::unread_ids(core, user_id, user, IDS).await?;
                out.insert("unread_item_ids".into(), json!(ids_string(&ids)));
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown mark {what:?} as {as_:?}: item read|unread|saved|unsaved, feed|group read"
                )));
            }
        }
    }

    let feeds = if has(params, "groups") || has(params, "feeds") || has(params, "items") {
        reading::feeds(core, user_id, user).await?
    } else {
        Vec::new()
    };
    if has(params, "groups") || has(params, "feeds") {
        let feeds_groups: Vec<Value> = GROUPS
            .iter()
            .map(|(g, name)| {
                let ids: Vec<String> = feeds
                    .iter()
                    .filter(|f| f.group == *name)
                    .map(|f| f.id.to_string())
                    .collect();
                json!({"group_id": g, "feed_ids": ids.join(",")})
            })
            .collect();
        if has(params, "groups") {
            let groups: Vec<Value> = GROUPS.iter().map(|(id, t)| json!({"id": id, "title": t})).collect();
            out.insert("groups".into(), json!(groups));
        }
        if has(params, "feeds") {
            let list: Vec<Value> = feeds
                .iter()
                .map(|f| {
                    json!({
                        "id": f.id,
                        "favicon_id": 0,
                        "title": f.title,
                        "url": f.url,
                        "site_url": f.html_url,
                        "is_spark": 0,
                        "last_updated_on_time": 0,
                    })
                })
                .collect();
            out.insert("feeds".into(), json!(list));
        }
        out.insert("feeds_groups".into(), json!(feeds_groups));
    }
    if has(params, "favicons") {
        out.insert("favicons".into(), json!([]));
    }
    if has(params, "links") {
        out.insert("links".into(), json!([]));
    }
    if has(params, "items") {
        let entries = if let Some(list) = get(params, "with_ids") {
            let ids: Vec<u64> = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| Error::Invalid("with_ids is a list of numbers".into()))
                })
                .collect::<Result<_>>()?;
            if ids.len() > ITEMS as usize {
                return Err(Error::Invalid(format!("with_ids names at most {ITEMS} items")));
            }
            let mut e = reading::entries_by_id(core, user_id, user, &ids).await?;
            e.reverse();
            e
        } else {
            let mut q = Query {
                limit: ITEMS,
                ..Query::default()
            };
            match (number::<u64>(params, "since_id")?, number::<u64>(params, "max_id")?) {
                (_, Some(max)) if max > 0 => q.before = Some(max),
                (_, Some(_)) => {}
                (since, None) => {
                    q.after = Some(since.unwrap_or(0));
                    q.oldest_first = true;
                }
            }
            reading::entries(core, user_id, user, &q).await?.entries
        };
        let items: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "feed_id": e.feed.id,
                    "title": e.title,
                    "author": e.author,
                    "html": e.html,
                    "url": e.url,
                    "is_saved": u8::from(e.starred),
                    "is_read": u8::from(e.read),
                    "created_on_time": e.published.unix(),
                })
            })
            .collect();
        out.insert("items".into(), json!(items));
        out.insert("total_items".into(), json!(st.mesh.store.user_head(user_id).await?));
    }
    if has(params, "unread_item_ids") {
        let ids = reading::unread_ids(core, user_id, user, IDS).await?;
        out.insert("unread_item_ids".into(), json!(ids_string(&ids)));
    }
    if has(params, "saved_item_ids") {
        let ids = reading::starred_ids(core, user_id, user, IDS).await?;
        out.insert("saved_item_ids".into(), json!(ids_string(&ids)));
    }
    Ok(Value::Object(out))
}

/// `mark=group&as=read`: group 0 (and the groups that are the whole stream) is everything.
async fn mark_group(st: &SharedState, user_id: i64, user: &str, id: i64, before: Option<i64>) -> Result<()> {
    let name = GROUPS.iter().find(|(g, _)| *g == id).map(|(_, n)| *n);
    match name {
        None if id == 0 => reading::mark_all_read(&st.core, user_id, user, None, before).await,
        None => Err(Error::NotFound("group")),
        Some("Stream" | "Collections") => reading::mark_all_read(&st.core, user_id, user, None, before).await,
        Some(name) => {
            for f in reading::feeds(&st.core, user_id, user).await? {
                if f.group == name {
                    reading::mark_all_read(&st.core, user_id, user, Some(f.id), before).await?;
                }
            }
            Ok(())
        }
    }
}
