//! The Google Reader API under `/api/greader` (the base URL reader apps are given), as
//! FreshRSS and Miniflux serve it, with the quirks real clients need
//! (../shared/specs/reader-apis.md §1, §4, §9), plus the Atom form `reader/atom/<stream>`
//! that newsboat 2.21's `feedhq` backend reads. One handler routes by path, because stream
//! ids travel percent-encoded inside it (`feed%2F1`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::SharedState;
use super::auth::{reader_login, token_principal};
use crate::error::{Error, Result};
use crate::formats::xml::esc;
use crate::store::Principal;
use crate::usecases::logins;
use crate::usecases::reading::{self, Entry, Mark, Query};

pub const BASE: &str = "/api/greader";
const STATE: &str = "user/-/state/com.google/";
const LONG_ID: &str = "tag:google.com,2005:reader/item/";
/// Most item ids one `stream/items/ids` call answers.
const MAX_IDS: u32 = 10_000;

/// A form or query: repeated keys kept in order, values percent-decoded when they are
/// (newsboat sends them raw, `google-reader` encoded; both read the same).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(query: Option<&str>, body: &[u8]) -> Form {
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        pairs.extend(url::form_urlencoded::parse(body).into_owned());
        Form(pairs)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A failure as Google Reader clients read one.
fn refuse(e: Error) -> Response {
    match e {
        Error::Unauthorized => {
            let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            let h = r.headers_mut();
            h.insert("Google-Bad-Token", HeaderValue::from_static("true"));
            h.insert("X-Reader-Google-Bad-Token", HeaderValue::from_static("true"));
            r
        }
        e => e.into_response(),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn ok() -> Response {
    text("OK".into())
}

/// Every `/api/greader/…` request.
pub async fn dispatch(
    State(st): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix(BASE).unwrap_or("");
    let form = Form::parse(uri.query(), if method == Method::POST { &body } else { &[] });
    match route(&st, peer, &method, path, &headers, &form).await {
        Ok(r) => r,
        Err(e) => refuse(e),
    }
}

async fn route(
    st: &SharedState,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response> {
    if path == "/accounts/ClientLogin" {
        return client_login(st, peer, form).await;
    }
    let who = authenticate(st, headers, form, method == Method::POST).await?;
    if let Some(stream) = path.strip_prefix("/reader/atom/") {
        let stream = decode(stream)?;
        return atom(st, &who, &stream, form).await;
    }
    let Some(call) = path.strip_prefix("/reader/api/0/") else {
        return Err(Error::NotFound("Google Reader call"));
    };
    let post = method == Method::POST;
    match call {
        "token" => Ok(text(token_of(headers, form).unwrap_or_default())),
        "user-info" => Ok(axum::Json(json!({
            "userId": who.user_id.to_string(),
            "userName": who.user,
            "userProfileId": who.user_id.to_string(),
            "userEmail": who.user,
        }))
        .into_response()),
        "subscription/list" => subscriptions(st, &who).await,
        "tag/list" => tags(),
        "unread-count" => unread_count(st, &who).await,
        "stream/items/ids" => item_ids(st, &who, form).await,
        "stream/items/contents" => items_contents(st, &who, form).await,
        "edit-tag" if post => edit_tag(st, &who, form).await,
        "mark-all-as-read" if post => mark_all(st, &who, form).await,
        "edit-tag" | "mark-all-as-read" => Err(Error::Invalid(format!("{call} takes POST"))),
        _ => match call.strip_prefix("stream/contents") {
            Some(rest) => {
                let stream = match rest.strip_prefix('/') {
                    Some(s) if !s.is_empty() => decode(s)?,
                    _ => form
                        .get("s")
                        .unwrap_or("user/-/state/com.google/reading-list")
                        .to_string(),
                };
                stream_contents(st, &who, &stream, form).await
            }
            None => Err(Error::NotFound("Google Reader call")),
        },
    }
}

fn decode(s: &str) -> Result<String> {
    percent_decode(s).ok_or_else(|| Error::Invalid("the stream id is not percent-encoded UTF-8".into()))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `POST /accounts/ClientLogin` (`Email`, `Passwd`): a session token as `Auth`.
async fn client_login(st: &SharedState, peer: SocketAddr, form: &Form) -> Result<Response> {
    let user = form.get("Email").unwrap_or("").trim();
    let password = form.get("Passwd").unwrap_or("");
    if user.is_empty() || password.is_empty() {
        return Err(Error::Unauthorized);
    }
    let login = reader_login(st, Some(peer.ip()), user, password).await?;
    let session = logins::begin_session(st.mesh.store.as_ref(), login).await?;
    let t = session.token;
    if form.get("output") == Some("json") {
        return Ok(axum::Json(json!({ "SID": t, "LSID": "null", "Auth": t })).into_response());
    }
    Ok(text(format!("SID={t}\nLSID=null\nAuth={t}\n")))
}

/// The client's token: `Authorization: GoogleLogin auth=…`, else (on a POST, as Miniflux
/// reads it) the form's `T`, trimmed (newsboat sends the token's newline back).
fn token_of(headers: &HeaderMap, form: &Form) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("GoogleLogin").then_some(rest)
        })
        .and_then(|rest| rest.trim().strip_prefix("auth="))
        .map(|t| t.trim().to_string());
    from_header.or_else(|| form.get("T").map(|t| t.trim().to_string()))
}

async fn authenticate(st: &SharedState, headers: &HeaderMap, form: &Form, post: bool) -> Result<Principal> {
    let token = match token_of(headers, form) {
        Some(t) if headers.contains_key(header::AUTHORIZATION) || post => t,
        _ => {
            // Basic or a device token, as on the rest of the API.
            return super::auth::principal(st, headers).await;
        }
    };
    if token.is_empty() {
        return Err(Error::Unauthorized);
    }
    token_principal(st, &token).await
}

/// A stream id: a feed, the whole stream, the starred entries, or a folder.
enum Stream {
    Feed(i64),
    Everything,
    Starred,
    Label(String),
}

fn stream(id: &str) -> Result<Stream> {
    if let Some(n) = id.strip_prefix("feed/") {
        return n.parse().map(Stream::Feed).map_err(|_| Error::NotFound("feed"));
    }
    // `user/-/…` or `user/<id>/…`.
    let rest = id
        .strip_prefix("user/")
        .and_then(|r| r.split_once('/'))
        .map(|(_, r)| r)
        .ok_or_else(|| Error::Invalid(format!("unknown stream id {id:?}")))?;
    match rest {
        "state/com.google/reading-list" => Ok(Stream::Everything),
        "state/com.google/starred" => Ok(Stream::Starred),
        _ => match rest.strip_prefix("label/") {
            Some(l) => Ok(Stream::Label(l.to_string())),
            None => Err(Error::Invalid(format!("unknown stream id {id:?}"))),
        },
    }
}

fn long_id(id: u64) -> String {
    format!("{LONG_ID}{id:016x}")
}

/// An item id in any of its four forms: long, short (`…/item/<hex>`), 16 hex digits or decimal.
fn item_id(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix(LONG_ID) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if let Some((_, hex)) = s.rsplit_once("/item/") {
        return u64::from_str_radix(hex, 16).ok();
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(s, 16).ok();
    }
    None
}

async fn subscriptions(st: &SharedState, who: &Principal) -> Result<Response> {
    let feeds = reading::feeds(&st.core, who.user_id, &who.user).await?;
    let subs: Vec<Value> = feeds
        .iter()
        .map(|f| {
            json!({
                "id": format!("feed/{}", f.id),
                "title": f.title,
                "categories": [{"id": format!("user/-/label/{}", f.group), "label": f.group, "type": "folder"}],
                "url": f.url,
                "htmlUrl": f.html_url,
                "iconUrl": "",
            })
        })
        .collect();
    Ok(axum::Json(json!({ "subscriptions": subs })).into_response())
}

fn tags() -> Result<Response> {
    let mut tags = vec![json!({"id": format!("{STATE}starred")})];
    for (_, g) in reading::GROUPS {
        tags.push(json!({"id": format!("user/-/label/{g}"), "label": g, "type": "folder"}));
    }
    Ok(axum::Json(json!({ "tags": tags })).into_response())
}

async fn unread_count(st: &SharedState, who: &Principal) -> Result<Response> {
    let counts = reading::unread_counts(&st.core, who.user_id, &who.user).await?;
    let usec = |t: Option<crate::domain::time::Timestamp>| t.map(|t| (t.unix() * 1_000_000).to_string());
    let mut list: Vec<Value> = counts
        .iter()
        .map(
            |(id, n, newest)| json!({"id": format!("feed/{id}"), "count": n, "newestItemTimestampUsec": usec(*newest)}),
        )
        .collect();
    if let Some((_, n, newest)) = counts.iter().find(|(id, ..)| *id == reading::EVERYTHING) {
        list.push(json!({"id": format!("{STATE}reading-list"), "count": n, "newestItemTimestampUsec": usec(*newest)}));
    }
    Ok(axum::Json(json!({ "max": reading::MAX_ENTRIES, "unreadcounts": list })).into_response())
}

/// The query of a stream read: `n`, `r=o`, `ot`, `nt`, `xt`, `it`, `c`.
fn query_of(stream: &Stream, form: &Form, default_n: u32, max_n: u32) -> Result<Query> {
    let mut q = Query {
        limit: match form.get("n") {
            Some(n) => n
                .trim()
                .parse::<u32>()
                .map_err(|_| Error::Invalid("n is a number of items".into()))?
                .clamp(1, max_n),
            None => default_n,
        },
        oldest_first: form.get("r") == Some("o"),
        ..Query::default()
    };
    let secs = |k: &str| -> Result<Option<i64>> {
        form.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| Error::Invalid(format!("{k} is Unix seconds")))
            })
            .transpose()
    };
    q.since = secs("ot")?;
    q.until = secs("nt")?;
    if let Some(c) = form.get("c").filter(|c| !c.is_empty()) {
        let c: u64 = c
            .trim()
            .parse()
            .map_err(|_| Error::Invalid("bad continuation".into()))?;
        if q.oldest_first {
            q.after = Some(c);
        } else {
            q.before = Some(c);
        }
    }
    for x in form.all("xt") {
        if x.ends_with("/state/com.google/read") {
            q.unread_only = true;
        }
    }
    for i in form.all("it") {
        if i.ends_with("/state/com.google/starred") {
            q.starred_only = true;
        } else if i.ends_with("/state/com.google/read") {
            q.read_only = true;
        }
    }
    match stream {
        Stream::Feed(id) => q.feed = Some(*id),
        Stream::Everything => {}
        Stream::Starred => q.starred_only = true,
        // A folder: read through `reading::group_entries` (see `entries`).
        Stream::Label(_) => {}
    }
    Ok(q)
}

/// A stream's entries: a feed's, the whole stream's, the starred ones, or a folder's.
async fn entries(st: &SharedState, who: &Principal, stream: &Stream, q: &Query) -> Result<reading::Entries> {
    match stream {
        Stream::Label(l) => reading::group_entries(&st.core, who.user_id, &who.user, l, q).await,
        _ => reading::entries(&st.core, who.user_id, &who.user, q).await,
    }
}

async fn item_ids(st: &SharedState, who: &Principal, form: &Form) -> Result<Response> {
    let s = form
        .get("s")
        .ok_or_else(|| Error::Invalid("s (the stream id) is required".into()))?;
    let stream = stream(s)?;
    let mut q = query_of(&stream, form, 20, MAX_IDS)?;
    // Ids only: pages of the most entries one call reads, until `n`.
    let mut refs = Vec::new();
    let want = q.limit;
    let next = loop {
        q.limit = reading::MAX_ENTRIES.min(want - refs.len() as u32);
        let page = entries(st, who, &stream, &q).await?;
        refs.extend(page.entries.iter().map(|e| json!({"id": e.id.to_string(), "directStreamIds": [], "timestampUsec": (e.published.unix() * 1_000_000).to_string()})));
        match page.next {
            Some(n) if (refs.len() as u32) < want => {
                if q.oldest_first {
                    q.after = Some(n);
                } else {
                    q.before = Some(n);
                }
            }
            next => break next,
        }
    };
    let mut out = json!({ "itemRefs": refs });
    if let Some(n) = next {
        out["continuation"] = json!(n.to_string());
    }
    Ok(axum::Json(out).into_response())
}

fn item_json(e: &Entry) -> Value {
    let mut categories = vec![format!("{STATE}reading-list"), format!("user/-/label/{}", e.feed.group)];
    if e.read {
        categories.push(format!("{STATE}read"));
    }
    if e.starred {
        categories.push(format!("{STATE}starred"));
    }
    let secs = e.published.unix();
    json!({
        "id": long_id(e.id),
        "crawlTimeMsec": (secs * 1000).to_string(),
        "timestampUsec": (secs * 1_000_000).to_string(),
        "published": secs,
        "updated": secs,
        "title": e.title,
        "author": e.author,
        "canonical": [{"href": e.url}],
        "alternate": [{"href": e.url, "type": "text/html"}],
        "categories": categories,
        "origin": {
            "streamId": format!("feed/{}", e.feed.id),
            "title": e.feed.title,
            "htmlUrl": e.feed.html_url,
        },
        "summary": {"direction": "ltr", "content": e.html},
    })
}

fn contents(st: &SharedState, id: &str, title: &str, page: reading::Entries) -> Result<Response> {
    let items: Vec<Value> = page.entries.iter().map(item_json).collect();
    let updated = page.entries.first().map(|e| e.published.unix()).unwrap_or(0);
    let mut out = json!({
        "id": id,
        "title": title,
        "direction": "ltr",
        "updated": updated,
        "self": [{"href": format!("{}{BASE}/reader/api/0/stream/contents/{}", st.base_url, crate::usecases::encode_segment(id))}],
        "items": items,
    });
    if let Some(n) = page.next {
        out["continuation"] = json!(n.to_string());
    }
    Ok(axum::Json(out).into_response())
}

async fn stream_contents(st: &SharedState, who: &Principal, id: &str, form: &Form) -> Result<Response> {
    let stream = stream(id)?;
    let q = query_of(&stream, form, 20, reading::MAX_ENTRIES)?;
    let page = entries(st, who, &stream, &q).await?;
    contents(st, id, id, page)
}

async fn items_contents(st: &SharedState, who: &Principal, form: &Form) -> Result<Response> {
    let ids: Vec<u64> = form.all("i").filter_map(item_id).collect();
    if ids.is_empty() {
        return Err(Error::Invalid("i (item ids) is required".into()));
    }
    let entries = reading::entries_by_id(&st.core, who.user_id, &who.user, &ids).await?;
    let page = reading::Entries { entries, next: None };
    contents(st, &format!("{STATE}reading-list"), "", page)
}

async fn edit_tag(st: &SharedState, who: &Principal, form: &Form) -> Result<Response> {
    let ids: Vec<u64> = form.all("i").filter_map(item_id).collect();
    let mut marks = Vec::new();
    for a in form.all("a") {
        match a.rsplit('/').next() {
            Some("read") => marks.push(Mark::Read),
            Some("kept-unread") => marks.push(Mark::Unread),
            Some("starred") => marks.push(Mark::Starred),
            _ => {} // sharing, labels, tracking: not kept
        }
    }
    for r in form.all("r") {
        match r.rsplit('/').next() {
            Some("read") => marks.push(Mark::Unread),
            Some("starred") => marks.push(Mark::Unstarred),
            _ => {}
        }
    }
    // "Unread" arrives as r=read plus a=kept-unread: one change, whichever comes first.
    marks.dedup();
    if marks.contains(&Mark::Unread) {
        marks.retain(|m| *m != Mark::Read);
    }
    for m in marks {
        reading::mark(&st.core, who.user_id, &ids, m).await?;
    }
    Ok(ok())
}

async fn mark_all(st: &SharedState, who: &Principal, form: &Form) -> Result<Response> {
    let s = form
        .get("s")
        .ok_or_else(|| Error::Invalid("s (the stream id) is required".into()))?;
    // `ts`: seconds, or (16 digits and more) microseconds.
    let before = match form.get("ts").map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => {
            let n: i64 = t.parse().map_err(|_| Error::Invalid("ts is a time".into()))?;
            Some(if t.len() >= 16 { n / 1_000_000 } else { n } + 1)
        }
        None => None,
    };
    match stream(s)? {
        Stream::Feed(id) => reading::mark_all_read(&st.core, who.user_id, &who.user, Some(id), before).await?,
        Stream::Everything => reading::mark_all_read(&st.core, who.user_id, &who.user, None, before).await?,
        Stream::Label(l) if l == "Stream" || l == "Collections" => {
            reading::mark_all_read(&st.core, who.user_id, &who.user, None, before).await?
        }
        Stream::Label(l) => {
            for f in reading::feeds(&st.core, who.user_id, &who.user).await? {
                if f.group == l {
                    reading::mark_all_read(&st.core, who.user_id, &who.user, Some(f.id), before).await?;
                }
            }
        }
        Stream::Starred => {}
    }
    Ok(ok())
}

/// `GET /reader/atom/<stream>?n=`: the stream as Atom, each entry's read and starred state as
/// a Google Reader category (what newsboat 2.21 reads).
async fn atom(st: &SharedState, who: &Principal, id: &str, form: &Form) -> Result<Response> {
    let stream = stream(id)?;
    let q = query_of(&stream, form, 20, reading::MAX_ENTRIES)?;
    let page = entries(st, who, &stream, &q).await?;
    let title = match stream {
        Stream::Feed(n) => reading::feed(&st.core, who.user_id, &who.user, n).await?.title,
        _ => id.to_string(),
    };
    let updated = page
        .entries
        .first()
        .map(|e| e.published)
        .unwrap_or_else(crate::domain::time::Timestamp::now);
    let mut x =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">");
    x.push_str(&format!(
        "<id>{}</id><title>{}</title><updated>{}</updated>",
        esc(&format!(
            "{}{BASE}/reader/atom/{}",
            st.base_url,
            crate::usecases::encode_segment(id)
        )),
        esc(&title),
        updated.rfc3339()
    ));
    for e in &page.entries {
        x.push_str(&format!(
            "<entry><id>{}</id><title>{}</title><link href=\"{}\"/><updated>{}</updated><published>{}</published>\
             <author><name>{}</name></author><content type=\"html\">{}</content>",
            long_id(e.id),
            esc(&e.title),
            esc(&e.url),
            e.published.rfc3339(),
            e.published.rfc3339(),
            esc(&e.author),
            esc(&e.html)
        ));
        if e.read {
            x.push_str("<category scheme=\"http://www.google.com/reader/\" term=\"user/-/state/com.google/read\" label=\"read\"/>");
        }
        if e.starred {
            x.push_str("<category scheme=\"http://www.google.com/reader/\" term=\"user/-/state/com.google/starred\" label=\"starred\"/>");
        }
        x.push_str("</entry>");
    }
    x.push_str("</feed>");
    Ok(([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], x).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_in_all_four_forms_name_the_same_entry() {
        for form in [
            "tag:google.com,2005:reader/item/00000000000000ff",
            "tag:google.com,2005:reader/item/ff",
            "00000000000000ff",
            "255",
        ] {
            assert_eq!(item_id(form), Some(255), "{form}");
        }
        assert_eq!(long_id(255), "tag:google.com,2005:reader/item/00000000000000ff");
        assert_eq!(item_id("nonsense"), None);
        assert_eq!(item_id("tag:google.com,2005:reader/item/zz"), None);
    }

    #[test]
    fn raw_and_encoded_forms_read_alike_and_keys_repeat() {
        let raw = Form::parse(
            None,
            b"i=tag:google.com,2005:reader/item/1&a=user/-/state/com.google/read&a=x&T=tok\n",
        );
        let enc = Form::parse(
            Some("output=json"),
            b"i=tag%3Agoogle.com%2C2005%3Areader%2Fitem%2F1&a=user%2F-%2Fstate%2Fcom.google%2Fread&a=x&T=tok%0A",
        );
        for f in [&raw, &enc] {
            assert_eq!(f.get("i"), Some("tag:google.com,2005:reader/item/1"));
            assert_eq!(f.all("a").collect::<Vec<_>>(), ["user/-/state/com.google/read", "x"]);
            assert_eq!(f.get("T").map(str::trim), Some("tok"));
        }
        assert_eq!(percent_decode("feed%2F1").as_deref(), Some("feed/1"));
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn stream_ids() {
        assert!(matches!(stream("feed/3"), Ok(Stream::Feed(3))));
        assert!(matches!(
            stream("user/-/state/com.google/reading-list"),
            Ok(Stream::Everything)
        ));
        assert!(matches!(stream("user/1/state/com.google/starred"), Ok(Stream::Starred)));
        assert!(matches!(stream("user/-/label/Contacts"), Ok(Stream::Label(l)) if l == "Contacts"));
        assert!(stream("feed/x").is_err());
        assert!(stream("user/-/state/com.google/broadcast").is_err());
    }
}
