//! The Mastodon connector: an account's home timeline, its notifications (mentions, boosts,
//! favourites, follows) and its own statuses, from the instance's REST API, as activities.
//! Accounts become identities: the profile URL (the account's `url`) as the actor, and
//! `acct:user@host` beside it, so a contact whose vCard has either gets that account's posts.
//! Statuses' HTML is sanitised (ammonia) before it is stored.
//!
//! Each list is read from its own cursor (`min_id`: the pages just newer than what was seen,
//! followed by `Link: rel="prev"`); a first pull takes only the newest page of each. The
//! hub authorises it with OAuth at the instance (the app registered by the hub itself).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use async_trait::async_trait;
use feedmesh_connector::{
    Batch, ConfigError, Connector, ConnectorError, Cursor, Http, Method, OptionSpec, Options, Outgoing, Posted, Pulled,
    Request, Response, Secret, Sink,
};
use feedmesh_domain::entry::{Category, Content, Entry, Link, Person, Text};
use feedmesh_domain::time::Timestamp;
use serde_json::Value;

/// The options of `feedmesh connector add USER mastodon`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "instance",
        required: true,
        secret: false,
        many: false,
        doc: "the instance's base URL (https://mastodon.social); the hub registers itself there and sends you to authorise it",
    },
    OptionSpec {
        name: "token",
        required: false,
        secret: true,
        many: false,
        doc: "an access token made at the instance (Preferences, Development, New application, scopes read and write), \
              instead of the OAuth round trip (sealed, never printed)",
    },
];

/// The scopes the hub asks an instance for.
pub const SCOPES: &str = "read write";

/// Bytes of one answer read at most (40 statuses with their accounts are about 200 KB).
const MAX_PAGE_BYTES: usize = 4 << 20;

/// Statuses per page (Mastodon's most).
const PAGE: usize = 40;

/// A stream that sends nothing, not even its heartbeat (every 15 s on Mastodon), this long is dead.
const STREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(90);

/// Bytes read from one stream before it is opened again (what one event may hold at most).
const STREAM_BYTES: usize = 32 << 20;

/// Characters of a status most instances take.
const STATUS_CHARS: usize = 500;

/// Pages followed per list and pull.
const MAX_PAGES: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MastodonConfig {
    /// Without a trailing slash.
    pub instance: String,
    pub token: Option<Secret>,
}

impl MastodonConfig {
    pub fn from_options(options: &Options) -> Result<Self, ConfigError> {
        let instance = options
            .get("instance")
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/')
            .to_string();
        match url::Url::parse(&instance) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" => {}
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                return Err(ConfigError::new(
                    "instance",
                    format!("{instance:?}: the instance's base URL, without a path"),
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    "instance",
                    format!("{instance:?} is not an http(s) URL"),
                ));
            }
        }
        Ok(MastodonConfig {
            instance,
            token: options.secret("token"),
        })
    }

    /// The instance's host (with its port), as `acct:` handles name it.
    pub fn host(&self) -> String {
        url::Url::parse(&self.instance)
            .ok()
            .and_then(|u| {
                Some(format!(
                    "{}{}",
                    u.host_str()?,
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                ))
            })
            .unwrap_or_default()
    }
}

pub struct MastodonConnector {
    config: MastodonConfig,
    token: Option<Secret>,
}

impl MastodonConnector {
    pub fn new(config: MastodonConfig) -> Self {
        let token = config.token.clone();
        MastodonConnector { config, token }
    }

    pub fn with_oauth_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    async fn get(&self, http: &dyn Http, url: String) -> Result<Response, ConnectorError> {
        self.call(http, Request::get(url, MAX_PAGE_BYTES)).await
    }

    async fn call(&self, http: &dyn Http, req: Request) -> Result<Response, ConnectorError> {
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| ConnectorError::Unauthorized("not authorised at the instance yet".into()))?;
        let req = req
            .header("Accept", "application/json")
            .header("Authorization", format!("Bearer {}", token.expose()));
        let resp = http.send(req).await?;
        check_status(&resp)?;
        Ok(resp)
    }

    /// A status's JSON body from an entry: its text (HTML content as text), else its
    /// title; an entry that points elsewhere (its `alternate` link: a release, a post routed
    /// from another service) ends with that link. Cut to the instance's usual 500 characters.
    fn status_body(entry: &Entry) -> Vec<u8> {
        let text = match entry.best_text() {
            Some((t, true)) => text_of(&clean(t)),
            Some((t, false)) => t.to_string(),
            None => String::new(),
        };
        let mut status = if text.trim().is_empty() {
            entry.title.value.clone()
        } else {
            text
        };
        let link = entry
            .links
            .iter()
            .find(|l| l.rel.as_deref().unwrap_or("alternate") == "alternate" && l.href.starts_with("http"))
            .map(|l| l.href.clone())
            .filter(|href| !status.contains(href.as_str()));
        let room = STATUS_CHARS - link.as_ref().map_or(0, |l| l.chars().count() + 1).min(STATUS_CHARS / 2);
        if status.chars().count() > room {
            status = short(&status, room - 1);
        }
        if let Some(l) = link {
            status = format!("{status}\n{l}");
        }
        serde_json::to_vec(&serde_json::json!({"status": status})).unwrap_or_default()
    }

    fn posted(resp: &Response) -> Result<Posted, ConnectorError> {
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| ConnectorError::Malformed(format!("the instance's status: {e}")))?;
        Ok(Posted {
            remote_id: s(&v, "id")
                .ok_or_else(|| ConnectorError::Malformed("a status without an id".into()))?
                .to_string(),
            url: s(&v, "url").map(str::to_string),
        })
    }

    /// One list's items newer than `since` (all of them, page after page), newest first,
    /// and the newest id seen.
    async fn pull_list(
        &self,
        http: &dyn Http,
        path: &str,
        since: Option<&str>,
        read: fn(&Value, &Ctx) -> Option<Pulled>,
        ctx: &Ctx,
    ) -> Result<(Vec<Pulled>, Option<String>, bool), ConnectorError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{}{path}{sep}limit={PAGE}", self.config.instance);
        if let Some(s) = since {
            url.push_str(&format!("&min_id={s}"));
        }
        let mut out = Vec::new();
        let mut newest = since.map(str::to_string);
        let mut more = false;
        for page in 0..MAX_PAGES {
            let resp = self.get(http, url.clone()).await?;
            let items: Vec<Value> = serde_json::from_slice(&resp.body)
                .map_err(|e| ConnectorError::Malformed(format!("{path}: not a list: {e}")))?;
            for v in &items {
                let Some(id) = v.get("id").and_then(Value::as_str) else {
                    continue;
                };
                if newest.as_deref().is_none_or(|n| newer(id, n)) {
                    newest = Some(id.to_string());
                }
                if let Some(p) = read(v, ctx) {
                    out.push(p);
                }
            }
            // A first pull takes the newest page only; later ones walk up to the present.
            match resp.link("prev") {
                Some(_) if since.is_some() && items.len() == PAGE && page + 1 == MAX_PAGES => more = true,
                Some(prev) if since.is_some() && items.len() == PAGE => url = prev,
                _ => break,
            }
        }
        Ok((out, newest, more))
    }
}

/// A status id as a path segment (the instance's own ids are alphanumeric).
fn path_id(id: &str) -> Result<&str, ConnectorError> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(ConnectorError::Permanent(format!("{id:?} is not a status id")))
    }
}

/// Whether id `a` is newer than `b` (Mastodon's ids are numbers in strings, growing).
fn newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

fn check_status(resp: &Response) -> Result<(), ConnectorError> {
    let s = resp.status;
    if (200..300).contains(&s) {
        return Ok(());
    }
    if s == 429 {
        let wait = resp
            .header("retry-after")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(60);
        return Err(ConnectorError::RateLimited(wait));
    }
    let message: String = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(Value::as_str)
                .map(|e| e.chars().take(200).collect())
        })
        .unwrap_or_default();
    Err(match s {
        // The instance refused this status (empty, too long): a failure of this item alone.
        422 => ConnectorError::Permanent(format!("the instance refused it: {message}")),
        401 | 403 => ConnectorError::Unauthorized(format!("the instance answered {s} {message}")),
        404 | 410 => ConnectorError::Permanent(format!("the instance answered {s} {message}")),
        _ => ConnectorError::Unreachable(format!("the instance answered {s} {message}")),
    })
}

/// What reading an item needs: the instance's host.
struct Ctx {
    host: String,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An account as a person: display name, profile URL; its `acct:` handle is answered too.
fn person(account: &Value, host: &str) -> Option<(Person, String)> {
    let username = s(account, "acct")?;
    let acct = if username.contains('@') {
        username.to_string()
    } else {
        format!("{username}@{host}")
    };
    let url = s(account, "url").filter(|u| u.starts_with("http://") || u.starts_with("https://"))?;
    let name = s(account, "display_name")
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(username);
    Some((
        Person {
            name: name.chars().take(200).collect(),
            email: None,
            uri: Some(url.to_string()),
        },
        format!("acct:{acct}"),
    ))
}

/// Sanitised HTML (links, paragraphs and line breaks kept; scripts, styles and handlers gone).
fn clean(html: &str) -> String {
    ammonia::clean(html)
}

/// The text of sanitised HTML, for a title.
fn text_of(html: &str) -> String {
    let t = ammonia::Builder::empty()
        .clean(&html.replace("</p>", " </p>").replace("<br", " <br"))
        .to_string();
    let t = t
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn short(t: &str, n: usize) -> String {
    let mut out: String = t.chars().take(n).collect();
    if t.chars().count() > n {
        out.push('…');
    }
    out
}

fn status_id(host: &str, id: &str) -> String {
    format!("mastodon-{host}-status-{id}")
}

/// A status as an entry: by its account (a boost: by the booster, `share`), its sanitised
/// HTML, its mentions as recipients, its page as the alternate link.
fn status(v: &Value, ctx: &Ctx) -> Option<Pulled> {
    let id = s(v, "id")?;
    let (by, by_acct) = person(v.get("account")?, &ctx.host)?;
    let (shown, verb, boosted) = match v.get("reblog").filter(|r| r.is_object()) {
        Some(inner) => (inner, "share", Some(person(inner.get("account")?, &ctx.host)?)),
        None => (
            v,
            if v.get("edited_at").is_some_and(|e| e.is_string()) {
                "update"
            } else {
                "post"
            },
            None,
        ),
    };
    let html = clean(s(shown, "content").unwrap_or(""));
    let text = text_of(&html);
    let spoiler = s(shown, "spoiler_text").filter(|t| !t.trim().is_empty());
    let title = match (&boosted, spoiler) {
        (Some((author, _)), _) => format!("{} boosted {}: {}", by.name, author.name, short(&text, 80)),
        (None, Some(cw)) => format!("{}: CW {}", by.name, short(cw, 80)),
        (None, None) => format!("{}: {}", by.name, short(&text, 80)),
    };
    let at = Timestamp::parse_rfc3339(s(v, "created_at")?)?;
    let updated = s(shown, "edited_at").and_then(Timestamp::parse_rfc3339).unwrap_or(at);
    let mut links = Vec::new();
    if let Some(page) = s(shown, "url").filter(|u| u.starts_with("http")) {
        links.push(Link {
            href: page.to_string(),
            rel: Some("alternate".into()),
            media_type: Some("text/html".into()),
            ..Link::default()
        });
    }
    let mut mention = |href: String| {
        if !links.iter().any(|l| l.href == href) {
            links.push(Link {
                href,
                rel: Some("mentioned".into()),
                ..Link::default()
            });
        }
    };
    mention(by_acct);
    if let Some((author, acct)) = &boosted {
        if let Some(u) = &author.uri {
            mention(u.clone());
        }
        mention(acct.clone());
    }
    for m in shown.get("mentions").and_then(Value::as_array).into_iter().flatten() {
        if let Some(u) = s(m, "url").filter(|u| u.starts_with("http")) {
            mention(u.to_string());
        }
        if let Some(a) = s(m, "acct") {
            let a = if a.contains('@') {
                a.to_string()
            } else {
                format!("{a}@{}", ctx.host)
            };
            mention(format!("acct:{a}"));
        }
    }
    Some(Pulled {
        id: status_id(&ctx.host, id),
        entry: Entry {
            title: Text::plain(title),
            content: Some(Content {
                kind: "html".into(),
                value: html,
                src: None,
            }),
            authors: vec![by],
            categories: vec![Category {
                term: if boosted.is_some() {
                    "boost".into()
                } else {
                    "status".into()
                },
                scheme: Some("https://docs.joinmastodon.org/entities/Status/".into()),
                ..Category::default()
            }],
            links,
            published: Some(at),
            updated,
            verb: Some(verb.into()),
            object_type: Some("note".into()),
            ..Entry::default()
        },
        files: Vec::new(),
        remote_id: None,
    })
}

/// A notification: a mention is its status; a favourite, boost or follow is an activity of
/// its own (`favorite`, `share`, `follow`) by the account that did it.
fn notification(v: &Value, ctx: &Ctx) -> Option<Pulled> {
    let kind = s(v, "type")?;
    if kind == "mention" {
        return status(v.get("status")?, ctx);
    }
    let id = s(v, "id")?;
    let (by, acct) = person(v.get("account")?, &ctx.host)?;
    let at = Timestamp::parse_rfc3339(s(v, "created_at")?)?;
    let (verb, what) = match kind {
        "favourite" => ("favorite", "favourited your post"),
        "reblog" => ("share", "boosted your post"),
        "follow" => ("follow", "followed you"),
        "poll" => ("post", "'s poll ended"),
        "update" => ("update", "edited a post you boosted"),
        _ => ("post", "notified you"),
    };
    let about = v
        .get("status")
        .and_then(|st| s(st, "content"))
        .map(|c| text_of(&clean(c)));
    let title = match &about {
        Some(t) => format!("{} {what}: {}", by.name, short(t, 80)),
        None => format!("{} {what}", by.name),
    };
    let mut links = vec![Link {
        href: acct,
        rel: Some("mentioned".into()),
        ..Link::default()
    }];
    if let Some(page) = v
        .get("status")
        .and_then(|st| s(st, "url"))
        .filter(|u| u.starts_with("http"))
    {
        links.push(Link {
            href: page.to_string(),
            rel: Some("related".into()),
            ..Link::default()
        });
    }
    Some(Pulled {
        id: format!("mastodon-{}-notification-{id}", ctx.host),
        entry: Entry {
            title: Text::plain(title),
            authors: vec![by],
            categories: vec![Category {
                term: kind.to_string(),
                scheme: Some("https://docs.joinmastodon.org/entities/Notification/".into()),
                ..Category::default()
            }],
            links,
            published: Some(at),
            updated: at,
            verb: Some(verb.into()),
            object_type: Some("note".into()),
            ..Entry::default()
        },
        files: Vec::new(),
        remote_id: None,
    })
}

#[async_trait]
impl Connector for MastodonConnector {
    fn kind(&self) -> &'static str {
        "mastodon"
    }

    async fn check(&self, http: &dyn Http) -> Result<String, ConnectorError> {
        let resp = self
            .get(
                http,
                format!("{}/api/v1/accounts/verify_credentials", self.config.instance),
            )
            .await?;
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| ConnectorError::Malformed(format!("verify_credentials: {e}")))?;
        let username = s(&v, "acct").or_else(|| s(&v, "username")).unwrap_or("");
        Ok(format!("{username}@{}", self.config.host()))
    }

    /// Posts, edits or deletes a status. A create carries the hub's `Idempotency-Key`, so
    /// asking again after a crash answers the status already made.
    async fn push(&self, http: &dyn Http, item: Outgoing<'_>) -> Result<Posted, ConnectorError> {
        let base = &self.config.instance;
        let json = |r: Request, body: Vec<u8>| Request {
            body: Some(("application/json".to_string(), body)),
            ..r
        };
        match item {
            Outgoing::Create { entry, idempotency_key } => {
                let mut r = json(
                    Request::get(format!("{base}/api/v1/statuses"), MAX_PAGE_BYTES),
                    Self::status_body(entry),
                )
                .header("Idempotency-Key", idempotency_key);
                r.method = Method::Post;
                Self::posted(&self.call(http, r).await?)
            }
            Outgoing::Update { entry, remote_id } => {
                let mut r = json(
                    Request::get(
                        format!("{base}/api/v1/statuses/{}", path_id(remote_id)?),
                        MAX_PAGE_BYTES,
                    ),
                    Self::status_body(entry),
                );
                r.method = Method::Put;
                Self::posted(&self.call(http, r).await?)
            }
            Outgoing::Delete { remote_id } => {
                let mut r = Request::get(
                    format!("{base}/api/v1/statuses/{}", path_id(remote_id)?),
                    MAX_PAGE_BYTES,
                );
                r.method = Method::Delete;
                match self.call(http, r).await {
                    // Gone already: what was asked is done.
                    Ok(_) | Err(ConnectorError::Permanent(_)) => Ok(Posted {
                        remote_id: remote_id.to_string(),
                        url: None,
                    }),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn pulled_id(&self, remote_id: &str) -> Option<String> {
        Some(status_id(&self.config.host(), remote_id))
    }

    /// The user stream (`/api/v1/streaming/user`, Server-Sent Events): new statuses of the
    /// home timeline and the account's own (`update`), notifications, edits
    /// (`status.update`) and deletions (`delete`), as the pulls would read them. An
    /// instance with streaming off (404) is only polled.
    async fn listen(&self, http: &dyn Http, sink: &mut dyn Sink) -> Result<(), ConnectorError> {
        use eventsource_stream::Eventsource;
        use futures_util::StreamExt;
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| ConnectorError::Unauthorized("not authorised at the instance yet".into()))?;
        let req = Request::get(format!("{}/api/v1/streaming/user", self.config.instance), 0)
            .header("Accept", "text/event-stream")
            .header("Authorization", format!("Bearer {}", token.expose()));
        let resp = http.open(req, STREAM_IDLE).await?;
        match resp.status {
            200..=299 => {}
            404 => return Err(ConnectorError::Unsupported("streaming (the instance has it off)")),
            s => {
                return Err(check_status(&Response {
                    status: s,
                    headers: resp.headers,
                    ..Response::default()
                })
                .err()
                .unwrap_or_else(|| ConnectorError::Unreachable(format!("the stream answered {s}"))));
            }
        }
        let ctx = Ctx {
            host: self.config.host(),
        };
        let chunks = futures_util::stream::unfold((resp.body, 0usize), |(mut body, read)| async move {
            if read > STREAM_BYTES {
                return None;
            }
            match body.next().await {
                Ok(Some(c)) => {
                    let n = read + c.len();
                    Some((Ok(c), (body, n)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), (body, usize::MAX))),
            }
        });
        let mut events = std::pin::pin!(chunks.eventsource());
        sink.ready().await;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => e,
                Err(eventsource_stream::EventStreamError::Transport(e)) => return Err(e),
                Err(e) => {
                    sink.refused(format!("a streamed event: {e}"));
                    continue;
                }
            };
            let read: fn(&Value, &Ctx) -> Option<Pulled> = match event.event.as_str() {
                "update" | "status.update" | "status_update" => status,
                "notification" => notification,
                "delete" => {
                    match path_id(event.data.trim()) {
                        Ok(id) => sink.gone(&status_id(&ctx.host, id)).await?,
                        Err(_) => sink.refused(format!("a delete of {:?}", short(&event.data, 40))),
                    }
                    continue;
                }
                _ => continue,
            };
            match serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|v| read(&v, &ctx))
            {
                Some(item) => sink.item(item).await?,
                None => sink.refused(format!("a streamed {} that is not one", event.event)),
            }
        }
        Ok(())
    }

    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError> {
        let mut state: BTreeMap<String, String> = cursor
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let ctx = Ctx {
            host: self.config.host(),
        };
        let account_id = match state.get("account_id") {
            Some(id) => id.clone(),
            None => {
                let resp = self
                    .get(
                        http,
                        format!("{}/api/v1/accounts/verify_credentials", self.config.instance),
                    )
                    .await?;
                let v: Value = serde_json::from_slice(&resp.body)
                    .map_err(|e| ConnectorError::Malformed(format!("verify_credentials: {e}")))?;
                s(&v, "id")
                    .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric()))
                    .ok_or_else(|| ConnectorError::Malformed("verify_credentials without an id".into()))?
                    .to_string()
            }
        };
        let own = format!("/api/v1/accounts/{account_id}/statuses");
        let lists: [(&str, &str, fn(&Value, &Ctx) -> Option<Pulled>); 3] = [
            ("home", "/api/v1/timelines/home", status),
            ("notifications", "/api/v1/notifications", notification),
            ("own", own.as_str(), status),
        ];
        let mut items: Vec<Pulled> = Vec::new();
        let mut more = false;
        for (key, path, read) in lists {
            let (got, newest, behind) = self
                .pull_list(http, path, state.get(key).map(String::as_str), read, &ctx)
                .await?;
            more |= behind;
            for p in got {
                if !items.iter().any(|i| i.id == p.id) {
                    items.push(p);
                }
            }
            if let Some(n) = newest {
                state.insert(key.to_string(), n);
            }
        }
        state.insert("account_id".into(), account_id);
        items.sort_by(|a, b| b.entry.updated.cmp(&a.entry.updated).then_with(|| b.id.cmp(&a.id)));
        Ok(Batch {
            not_modified: items.is_empty(),
            items,
            cursor: Cursor {
                state: serde_json::to_string(&state).ok(),
                ..Cursor::default()
            },
            url: self.config.instance.clone(),
            more,
            ..Batch::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance with an endless home timeline: every page after `min_id=N` holds the 40
    /// statuses above N and links `prev` to the next.
    struct Endless;

    #[async_trait]
    impl Http for Endless {
        async fn get(
            &self,
            _: &str,
            _: &feedmesh_connector::Conditions,
            _: usize,
        ) -> Result<feedmesh_connector::Fetched, ConnectorError> {
            Err(ConnectorError::Unsupported("feeds"))
        }
        async fn send(&self, r: Request) -> Result<Response, ConnectorError> {
            let url = url::Url::parse(&r.url).unwrap();
            let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let body = if url.path().ends_with("verify_credentials") {
                serde_json::json!({"id": "1", "acct": "alice"})
            } else if url.path() == "/api/v1/timelines/home" {
                let from: u64 = q.get("min_id").and_then(|m| m.parse().ok()).unwrap_or(0);
                let account = serde_json::json!({"acct": "bob", "url": "https://m.example/@bob"});
                serde_json::json!(
                    (1..=PAGE as u64)
                        .rev()
                        .map(|i| serde_json::json!({"id": (from + i).to_string(),
                    "created_at": "2026-01-01T00:00:00Z", "account": account, "content": "<p>x</p>"}))
                        .collect::<Vec<_>>()
                )
            } else {
                serde_json::json!([])
            };
            let from: u64 = q.get("min_id").and_then(|m| m.parse().ok()).unwrap_or(0);
            let link = format!(
                "<https://m.example{}?limit=40&min_id={}>; rel=\"prev\"",
                url.path(),
                from + PAGE as u64
            );
            Ok(Response {
                status: 200,
                url: r.url.clone(),
                headers: vec![("link".into(), link)],
                body: serde_json::to_vec(&body).unwrap(),
            })
        }
    }

    #[tokio::test]
    async fn a_backlog_past_the_page_limit_asks_to_be_run_again() {
        let c = MastodonConnector::new(MastodonConfig {
            instance: "https://m.example".into(),
            token: None,
        })
        .with_oauth_token(Secret::new("t"));
        let cursor = Cursor {
            state: Some(r#"{"home": "0", "account_id": "1"}"#.into()),
            ..Cursor::default()
        };
        let b = c.pull(&Endless, &cursor).await.unwrap();
        assert!(b.more, "ten full pages and more behind them");
        assert_eq!(b.items.len(), MAX_PAGES * PAGE);
        let state: BTreeMap<String, String> = serde_json::from_str(b.cursor.state.as_deref().unwrap()).unwrap();
        assert_eq!(
            state["home"],
            (MAX_PAGES * PAGE).to_string(),
            "the next run starts where this one stopped"
        );
    }

    /// A user stream that sends `wire` cut into chunks of `cut` bytes.
    struct Streaming {
        wire: Vec<u8>,
        cut: usize,
        status: u16,
    }

    struct Chunked(std::collections::VecDeque<Vec<u8>>);

    #[async_trait]
    impl feedmesh_connector::Chunks for Chunked {
        async fn next(&mut self) -> Result<Option<Vec<u8>>, ConnectorError> {
            Ok(self.0.pop_front())
        }
    }

    #[async_trait]
    impl Http for Streaming {
        async fn get(
            &self,
            _: &str,
            _: &feedmesh_connector::Conditions,
            _: usize,
        ) -> Result<feedmesh_connector::Fetched, ConnectorError> {
            Err(ConnectorError::Unsupported("feeds"))
        }
        async fn open(
            &self,
            r: Request,
            _: std::time::Duration,
        ) -> Result<feedmesh_connector::Streamed, ConnectorError> {
            assert!(r.url.ends_with("/api/v1/streaming/user"), "{}", r.url);
            assert!(r.headers.iter().any(|(k, v)| k == "Authorization" && v == "Bearer t"));
            Ok(feedmesh_connector::Streamed {
                status: self.status,
                headers: Vec::new(),
                body: Box::new(Chunked(self.wire.chunks(self.cut).map(<[u8]>::to_vec).collect())),
            })
        }
    }

    #[derive(Default)]
    struct Kept {
        ready: bool,
        items: Vec<Pulled>,
        gone: Vec<String>,
        refused: Vec<String>,
    }

    #[async_trait]
    impl Sink for Kept {
        async fn ready(&mut self) {
            self.ready = true;
        }
        async fn item(&mut self, item: Pulled) -> Result<(), ConnectorError> {
            self.items.push(item);
            Ok(())
        }
        async fn gone(&mut self, id: &str) -> Result<(), ConnectorError> {
            self.gone.push(id.to_string());
            Ok(())
        }
        fn refused(&mut self, why: String) {
            self.refused.push(why);
        }
    }

    fn streamer() -> MastodonConnector {
        MastodonConnector::new(MastodonConfig {
            instance: "https://m.example".into(),
            token: Some(Secret::new("t")),
        })
    }

    /// The stream's events, however the bytes are cut, become the pulls' items; what is
    /// not an event the connector knows, or not JSON, or a status without its fields, is
    /// refused and the stream goes on; heartbeats are nothing.
    #[tokio::test]
    async fn the_user_stream_is_read_whatever_it_holds() {
        let status = |id: &str, text: &str| {
            serde_json::json!({"id": id, "created_at": "2026-01-01T00:00:00Z", "content": format!("<p>{text}</p><script>x()</script>"),
                "account": {"acct": "bob", "url": "https://m.example/@bob"}, "url": format!("https://m.example/@bob/{id}")})
            .to_string()
        };
        let wire = format!(
            ":connected\n\n:thump\n\nevent: update\ndata: {}\n\nevent: status.update\r\ndata: {}\r\n\r\n\
             event: update\ndata: {{not json\n\nevent: update\ndata: {{\"id\": \"9\"}}\n\n\
             event: filters_changed\ndata: \n\nevent: delete\ndata: 107\n\nevent: delete\ndata: ../../x\n\n\
             event: notification\ndata: {}\n\n",
            status("107", "first"),
            status("107", "edited"),
            serde_json::json!({"id": "5", "type": "favourite", "created_at": "2026-01-01T00:00:00Z",
                "account": {"acct": "carol", "url": "https://m.example/@carol"}}),
        );
        for cut in [1, 7, 4096] {
            let mut kept = Kept::default();
            let http = Streaming {
                wire: wire.clone().into_bytes(),
                cut,
                status: 200,
            };
            streamer().listen(&http, &mut kept).await.unwrap();
            assert!(kept.ready, "cut {cut}");
            let ids: Vec<&str> = kept.items.iter().map(|p| p.id.as_str()).collect();
            assert_eq!(
                ids,
                [
                    "mastodon-m.example-status-107",
                    "mastodon-m.example-status-107",
                    "mastodon-m.example-notification-5"
                ],
                "cut {cut}"
            );
            let html = &kept.items[1].entry.content.as_ref().unwrap().value;
            assert!(html.contains("edited") && !html.contains("script"), "{html}");
            assert_eq!(kept.gone, ["mastodon-m.example-status-107"], "cut {cut}");
            assert_eq!(kept.refused.len(), 3, "cut {cut}: {:?}", kept.refused);
        }
        let mut kept = Kept::default();
        let off = Streaming {
            wire: Vec::new(),
            cut: 1,
            status: 404,
        };
        let e = streamer().listen(&off, &mut kept).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Unsupported(_)), "{e}");
        let refused = Streaming {
            wire: Vec::new(),
            cut: 1,
            status: 401,
        };
        assert_eq!(
            streamer().listen(&refused, &mut kept).await.unwrap_err().kind(),
            feedmesh_connector::ErrorKind::Auth
        );
        assert!(!kept.ready);
    }

    /// A status is the entry's text, else its title; an entry pointing elsewhere ends with
    /// the link; a long one is cut to fit 500 characters.
    #[test]
    fn a_status_is_made_from_an_entry() {
        let body = |e: &Entry| -> String {
            let v: Value = serde_json::from_slice(&MastodonConnector::status_body(e)).unwrap();
            v["status"].as_str().unwrap().to_string()
        };
        let mut e = Entry {
            title: feedmesh_domain::entry::Text::plain("v1.0 released".to_string()),
            ..Entry::default()
        };
        assert_eq!(body(&e), "v1.0 released");
        e.links.push(Link {
            href: "https://github.com/o/r/releases/tag/v1.0".into(),
            rel: Some("alternate".into()),
            ..Link::default()
        });
        assert_eq!(body(&e), "v1.0 released\nhttps://github.com/o/r/releases/tag/v1.0");
        e.content = Some(Content {
            kind: "text".into(),
            value: "word ".repeat(200),
            src: None,
        });
        let long = body(&e);
        assert!(long.chars().count() <= STATUS_CHARS, "{}", long.chars().count());
        assert!(
            long.ends_with("\nhttps://github.com/o/r/releases/tag/v1.0") && long.contains('…'),
            "{long}"
        );
    }

    #[test]
    fn the_instance_option_is_checked() {
        let opts = |v: &str| Options::new(OPTIONS, [("instance".to_string(), v.to_string())]).unwrap();
        assert_eq!(
            MastodonConfig::from_options(&opts("https://mastodon.example/"))
                .unwrap()
                .instance,
            "https://mastodon.example"
        );
        for bad in ["mastodon.example", "ftp://m.example", "https://m.example/@alice"] {
            assert_eq!(
                MastodonConfig::from_options(&opts(bad)).unwrap_err().option,
                "instance",
                "{bad}"
            );
        }
        assert_eq!(
            MastodonConfig::from_options(&opts("http://127.0.0.1:3000"))
                .unwrap()
                .host(),
            "127.0.0.1:3000"
        );
    }

    #[test]
    fn a_hostile_status_is_sanitised_and_odd_ones_skipped() {
        let ctx = Ctx {
            host: "m.example".into(),
        };
        let account = serde_json::json!({"acct": "bob", "url": "https://m.example/@bob", "display_name": "Bob"});
        let v = serde_json::json!({"id": "7", "created_at": "2026-01-01T00:00:00Z", "account": account,
            "content": "<p>hi <script>alert(1)</script><a href=\"https://x.example\" onclick=\"evil()\">x</a> &amp; bye</p>"});
        let p = status(&v, &ctx).unwrap();
        let html = &p.entry.content.as_ref().unwrap().value;
        assert!(!html.contains("script") && !html.contains("onclick"), "{html}");
        assert!(html.contains("https://x.example"), "{html}");
        assert_eq!(p.entry.title.value, "Bob: hi x & bye");
        assert!(p.entry.links.iter().any(|l| l.href == "acct:bob@m.example"));
        assert_eq!(p.entry.authors[0].uri.as_deref(), Some("https://m.example/@bob"));
        assert!(
            status(&serde_json::json!({"id": "8", "account": account}), &ctx).is_none(),
            "no date"
        );
        assert!(
            status(
                &serde_json::json!({"id": "9", "created_at": "2026-01-01T00:00:00Z", "account": {"acct": 3}}),
                &ctx
            )
            .is_none()
        );
        assert!(newer("10", "9") && !newer("9", "10") && newer("110", "109"));
    }
}
