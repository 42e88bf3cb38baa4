//! The GitHub connector: what a user did (`/users/{login}/events`) and what the people and
//! repositories they follow did (`/users/{login}/received_events`), from GitHub's REST API,
//! as activities. Each event's actor becomes an identity (the profile URL, and the e-mail of
//! commits where a push carries them), so a contact whose vCard has the profile URL gets
//! that person's GitHub activity in their timeline.
//!
//! A pull asks each list with the `ETag` of its last answer (a 304 costs nothing against
//! the rate limit), follows `Link: rel="next"` until it reaches events seen before, and
//! honours `X-Poll-Interval`, `Retry-After` and the `X-RateLimit-*` headers. Read-only.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use async_trait::async_trait;
use feedmesh_connector::{
    Batch, ConfigError, Connector, ConnectorError, Cursor, Http, OptionSpec, Options, Pulled, Request, Response, Secret,
};
use feedmesh_domain::entry::{Category, Content, Entry, Link, Person, Text};
use feedmesh_domain::time::Timestamp;
use serde_json::Value;

/// The options of `feedmesh connector add USER github`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "login",
        required: true,
        secret: false,
        many: false,
        doc: "the GitHub user whose events are read (their own and those they receive)",
    },
    OptionSpec {
        name: "api",
        required: false,
        secret: false,
        many: false,
        doc: "the API's base URL (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3)",
    },
    OptionSpec {
        name: "token",
        required: false,
        secret: true,
        many: false,
        doc: "a personal access token, for those who prefer one to the OAuth round trip (sealed, never printed)",
    },
];

pub const DEFAULT_API: &str = "https://api.github.com";

/// Bytes of one page read at most (a page of 100 events is about 300 KB).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Pages followed per list and pull: GitHub keeps 300 events per list, 100 a page.
const MAX_PAGES: usize = 3;

/// The lists a pull reads, by their path under `/users/{login}/`.
const LISTS: [&str; 2] = ["events", "received_events"];

/// What a GitHub connector is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubConfig {
    pub login: String,
    /// Without a trailing slash.
    pub api: String,
    pub token: Option<Secret>,
}

impl GithubConfig {
    pub fn from_options(options: &Options) -> Result<Self, ConfigError> {
        let login = options.get("login").unwrap_or_default().trim().to_string();
        if !valid_login(&login) {
            return Err(ConfigError::new(
                "login",
                format!("{login:?} is not a GitHub login (letters, digits and single hyphens, at most 39)"),
            ));
        }
        let api = options
            .get("api")
            .unwrap_or(DEFAULT_API)
            .trim()
            .trim_end_matches('/')
            .to_string();
        match url::Url::parse(&api) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(ConfigError::new("api", format!("{api:?} is not an http(s) URL"))),
        }
        Ok(GithubConfig {
            login,
            api,
            token: options.secret("token"),
        })
    }

    /// The web site the API belongs to (profile and repository pages).
    pub fn web(&self) -> String {
        if self.api == DEFAULT_API {
            return "https://github.com".into();
        }
        match self.api.strip_suffix("/api/v3") {
            Some(site) => site.to_string(),
            None => self.api.clone(),
        }
    }
}

fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 39
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// What a pull keeps of each list: the ETag of its first page and the newest event seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ListState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default)]
    newest: u64,
}

type State = BTreeMap<String, ListState>;

pub struct GithubConnector {
    config: GithubConfig,
    /// The OAuth connection's access token, when the hub holds one (else the config's).
    oauth_token: Option<Secret>,
}

impl GithubConnector {
    pub fn new(config: GithubConfig) -> Self {
        GithubConnector {
            config,
            oauth_token: None,
        }
    }

    /// Uses an OAuth access token (the hub refreshes it and hands the current one).
    pub fn with_oauth_token(mut self, token: Secret) -> Self {
        self.oauth_token = Some(token);
        self
    }

    fn request(&self, url: String) -> Request {
        let mut r = Request::get(url, MAX_PAGE_BYTES)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "feedmesh");
        if let Some(t) = self.oauth_token.as_ref().or(self.config.token.as_ref()) {
            r = r.header("Authorization", format!("Bearer {}", t.expose()));
        }
        r
    }

    /// One list's events newer than `state.newest`, newest first, and its new state.
    async fn pull_list(
        &self,
        http: &dyn Http,
        list: &str,
        state: &ListState,
        poll_after: &mut Option<u64>,
    ) -> Result<(Vec<Pulled>, ListState), ConnectorError> {
        let mut url = format!("{}/users/{}/{list}?per_page=100", self.config.api, self.config.login);
        let mut out = Vec::new();
        let mut next_state = state.clone();
        for page in 0..MAX_PAGES {
            let mut req = self.request(url.clone());
            if page == 0
                && let Some(etag) = &state.etag
            {
                req = req.header("If-None-Match", etag.clone());
            }
            let resp = http.send(req).await?;
            if let Some(s) = resp
                .header("x-poll-interval")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                *poll_after = Some(poll_after.map_or(s, |p| p.max(s)));
            }
            if resp.status == 304 {
                return Ok((out, next_state));
            }
            check_status(&resp, &self.config.login)?;
            if page == 0 {
                next_state.etag = resp.header("etag").map(str::to_string);
            }
            let events: Vec<Value> = serde_json::from_slice(&resp.body)
                .map_err(|e| ConnectorError::Malformed(format!("GitHub {list}: not a list of events: {e}")))?;
            let mut reached_seen = events.is_empty();
            for ev in &events {
                let Some(id) = event_id(ev) else { continue };
                if id <= state.newest {
                    reached_seen = true;
                    continue;
                }
                next_state.newest = next_state.newest.max(id);
                if let Some(p) = to_pulled(ev, id, &self.config.web()) {
                    out.push(p);
                }
            }
            match resp.link("next") {
                Some(next) if !reached_seen => url = next,
                _ => break,
            }
        }
        Ok((out, next_state))
    }
}

/// Maps GitHub's answers to the contract's error kinds: 401 needs reconnecting; an
/// exhausted rate limit (403 or 429) or `Retry-After` waits; 404 is a login that does not
/// exist (permanent); anything else non-2xx is tried again later.
fn check_status(resp: &Response, login: &str) -> Result<(), ConnectorError> {
    let s = resp.status;
    if (200..300).contains(&s) {
        return Ok(());
    }
    if let Some(wait) = resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Err(ConnectorError::RateLimited(wait));
    }
    if (s == 403 || s == 429) && resp.header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        let reset = resp
            .header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let wait = (reset - Timestamp::now().unix()).clamp(1, 3600);
        return Err(ConnectorError::RateLimited(wait as u64));
    }
    let message = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(short))
        .unwrap_or_default();
    Err(match s {
        401 => ConnectorError::Unauthorized(format!("GitHub answered 401 {message}")),
        403 => ConnectorError::Unauthorized(format!("GitHub answered 403 {message}")),
        404 | 410 => ConnectorError::Permanent(format!("GitHub has no user {login} ({s})")),
        429 => ConnectorError::RateLimited(60),
        _ => ConnectorError::Unreachable(format!("GitHub answered {s} {message}")),
    })
}

/// Text from the service, cut to a length fit for a log line.
fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

fn event_id(ev: &Value) -> Option<u64> {
    match ev.get("id")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

/// One event as an entry: its actor as author (name and profile URL), a title saying what
/// happened, its text (commit messages, the comment or issue body) as plain text, a link to
/// the page on GitHub, its type as a category and as an AS1 verb and object type. An event
/// without an actor or a date is skipped.
fn to_pulled(ev: &Value, id: u64, web: &str) -> Option<Pulled> {
    let kind = ev.get("type")?.as_str()?;
    let login = str_at(ev, &["actor", "login"])?;
    if !valid_login(login.trim_end_matches("[bot]")) {
        return None;
    }
    let at = Timestamp::parse_rfc3339(str_at(ev, &["created_at"])?)?;
    let name = str_at(ev, &["actor", "display_login"]).unwrap_or(login);
    let repo = str_at(ev, &["repo", "name"]).unwrap_or("");
    let p = ev.get("payload").cloned().unwrap_or(Value::Null);
    let action = str_at(&p, &["action"]).unwrap_or("");
    let repo_url = format!("{web}/{repo}");
    let numbered = |key: &str| {
        let n = p.get(key)?.get("number")?.as_u64()?;
        let title = str_at(&p, &[key, "title"]).unwrap_or("");
        Some((n, title.to_string()))
    };
    let page = |key: &str| str_at(&p, &[key, "html_url"]).map(str::to_string);
    let mut mentioned: Vec<String> = Vec::new();
    let (title, text, href, verb, object) = match kind {
        "PushEvent" => {
            let branch = str_at(&p, &["ref"]).unwrap_or("").trim_start_matches("refs/heads/");
            let commits = p.get("commits").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut text = String::new();
            for c in commits.iter().take(20) {
                if let Some(m) = str_at(c, &["message"]) {
                    text.push_str(m.lines().next().unwrap_or(""));
                    text.push('\n');
                }
                if let Some(e) = str_at(c, &["author", "email"]).filter(|e| e.contains('@')) {
                    let uri = format!("mailto:{}", e.trim());
                    if !mentioned.contains(&uri) {
                        mentioned.push(uri);
                    }
                }
            }
            let title = format!("{name} pushed to {branch} in {repo}");
            (title, text, repo_url.clone(), "post", "note")
        }
        "IssuesEvent" | "PullRequestEvent" => {
            let key = if kind == "IssuesEvent" { "issue" } else { "pull_request" };
            let (n, t) = numbered(key).unwrap_or((0, String::new()));
            let what = if kind == "IssuesEvent" { "issue" } else { "pull request" };
            let body = str_at(&p, &[key, "body"]).unwrap_or("").to_string();
            let verb = if action == "opened" { "post" } else { "update" };
            let href = page(key).unwrap_or(repo_url.clone());
            (
                format!("{name} {action} {what} #{n} in {repo}: {t}"),
                body,
                href,
                verb,
                "article",
            )
        }
        "IssueCommentEvent" | "CommitCommentEvent" | "PullRequestReviewCommentEvent" => {
            let on = numbered("issue")
                .or_else(|| numbered("pull_request"))
                .map(|(n, t)| format!(" on #{n}: {t}"))
                .unwrap_or_default();
            let body = str_at(&p, &["comment", "body"]).unwrap_or("").to_string();
            let href = page("comment").unwrap_or(repo_url.clone());
            (format!("{name} commented in {repo}{on}"), body, href, "post", "comment")
        }
        "WatchEvent" => (
            format!("{name} starred {repo}"),
            String::new(),
            repo_url.clone(),
            "favorite",
            "bookmark",
        ),
        "ForkEvent" => {
            let href = str_at(&p, &["forkee", "html_url"])
                .map(str::to_string)
                .unwrap_or(repo_url.clone());
            (
                format!("{name} forked {repo}"),
                String::new(),
                href,
                "share",
                "bookmark",
            )
        }
        "CreateEvent" | "DeleteEvent" => {
            let ref_type = str_at(&p, &["ref_type"]).unwrap_or("repository");
            let r = str_at(&p, &["ref"]).map(|r| format!(" {r}")).unwrap_or_default();
            let (did, verb) = if kind == "CreateEvent" {
                ("created", "post")
            } else {
                ("deleted", "delete")
            };
            let text = str_at(&p, &["description"]).unwrap_or("").to_string();
            (
                format!("{name} {did} {ref_type}{r} in {repo}"),
                text,
                repo_url.clone(),
                verb,
                "note",
            )
        }
        "ReleaseEvent" => {
            let tag = str_at(&p, &["release", "name"])
                .filter(|n| !n.is_empty())
                .or_else(|| str_at(&p, &["release", "tag_name"]))
                .unwrap_or("");
            let body = str_at(&p, &["release", "body"]).unwrap_or("").to_string();
            let href = page("release").unwrap_or(repo_url.clone());
            (
                format!("{name} {action} release {tag} in {repo}"),
                body,
                href,
                "post",
                "article",
            )
        }
        "PublicEvent" => (
            format!("{name} made {repo} public"),
            String::new(),
            repo_url.clone(),
            "post",
            "note",
        ),
        "MemberEvent" => {
            let member = str_at(&p, &["member", "login"]).unwrap_or("someone");
            mentioned.push(format!("{web}/{member}"));
            (
                format!("{name} {action} {member} in {repo}"),
                String::new(),
                repo_url.clone(),
                "add",
                "person",
            )
        }
        other => {
            let what = other.trim_end_matches("Event");
            (
                format!("{name}: {what} in {repo}"),
                String::new(),
                repo_url.clone(),
                "post",
                "note",
            )
        }
    };
    let mut links = vec![Link {
        href,
        rel: Some("alternate".into()),
        media_type: Some("text/html".into()),
        ..Link::default()
    }];
    links.extend(mentioned.into_iter().map(|m| Link {
        href: m,
        rel: Some("mentioned".into()),
        ..Link::default()
    }));
    let entry = Entry {
        title: Text::plain(short(&title)),
        content: (!text.trim().is_empty()).then(|| Content {
            kind: "text".into(),
            value: text.trim().chars().take(64 * 1024).collect(),
            src: None,
        }),
        authors: vec![Person {
            name: name.to_string(),
            email: None,
            uri: Some(format!("{web}/{login}")),
        }],
        categories: vec![Category {
            term: kind.to_string(),
            scheme: Some("https://docs.github.com/en/rest/using-the-rest-api/github-event-types".into()),
            ..Category::default()
        }],
        links,
        published: Some(at),
        updated: at,
        verb: Some(verb.into()),
        object_type: Some(object.into()),
        ..Entry::default()
    };
    Some(Pulled {
        id: format!("github-event-{id}"),
        entry,
        files: Vec::new(),
        remote_id: None,
    })
}

#[async_trait]
impl Connector for GithubConnector {
    fn kind(&self) -> &'static str {
        "github"
    }

    /// `GET /users/{login}`: the user exists and the token (if any) is taken.
    async fn check(&self, http: &dyn Http) -> Result<String, ConnectorError> {
        let url = format!("{}/users/{}", self.config.api, self.config.login);
        let resp = http.send(self.request(url)).await?;
        check_status(&resp, &self.config.login)?;
        let v: Value =
            serde_json::from_slice(&resp.body).map_err(|e| ConnectorError::Malformed(format!("GitHub user: {e}")))?;
        Ok(str_at(&v, &["login"]).unwrap_or(&self.config.login).to_string())
    }

    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError> {
        let state: State = cursor
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut next = State::new();
        let mut items: Vec<Pulled> = Vec::new();
        let mut poll_after = None;
        for list in LISTS {
            let was = state.get(list).cloned().unwrap_or_default();
            let (got, now) = self.pull_list(http, list, &was, &mut poll_after).await?;
            for p in got {
                if !items.iter().any(|i| i.id == p.id) {
                    items.push(p);
                }
            }
            next.insert(list.to_string(), now);
        }
        // Newest first, as the contract asks (the lists interleave).
        items.sort_by(|a, b| b.entry.updated.cmp(&a.entry.updated).then_with(|| b.id.cmp(&a.id)));
        Ok(Batch {
            not_modified: items.is_empty() && next == state,
            items,
            cursor: Cursor {
                state: serde_json::to_string(&next).ok(),
                ..Cursor::default()
            },
            poll_after,
            url: format!("{}/users/{}", self.config.api, self.config.login),
            ..Batch::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Result<Options, ConfigError> {
        Options::new(OPTIONS, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn config_errors_name_the_option() {
        let e = options(&[]).unwrap_err();
        assert_eq!(e.option, "login");
        let e = options(&[("login", "octocat"), ("colour", "blue")]).unwrap_err();
        assert!(
            e.to_string().contains("colour") && e.to_string().contains("login, api, token"),
            "{e}"
        );
        for bad in ["-x", "a--b", "has space", "x".repeat(40).as_str()] {
            let e = GithubConfig::from_options(&options(&[("login", bad)]).unwrap()).unwrap_err();
            assert_eq!(e.option, "login", "{bad}");
        }
        let e = GithubConfig::from_options(&options(&[("login", "octocat"), ("api", "ftp://x")]).unwrap()).unwrap_err();
        assert_eq!(e.option, "api");
        let c =
            GithubConfig::from_options(&options(&[("login", "octocat"), ("token", "ghp_secret")]).unwrap()).unwrap();
        assert_eq!(c.api, DEFAULT_API);
        assert_eq!(c.web(), "https://github.com");
        assert!(!format!("{c:?}").contains("ghp_secret"), "the token shows in Debug");
        assert!(!format!("{:?}", options(&[("login", "o"), ("token", "ghp_secret")]).unwrap()).contains("ghp_secret"));
        let ghe =
            GithubConfig::from_options(&options(&[("login", "o"), ("api", "https://git.example/api/v3/")]).unwrap())
                .unwrap();
        assert_eq!(
            (ghe.api.as_str(), ghe.web().as_str()),
            ("https://git.example/api/v3", "https://git.example")
        );
    }

    #[test]
    fn an_event_without_actor_or_date_is_skipped_and_odd_fields_do_not_panic() {
        let web = "https://github.com";
        assert!(
            to_pulled(
                &serde_json::json!({"type": "PushEvent", "created_at": "2022-06-09T12:47:28Z"}),
                1,
                web
            )
            .is_none()
        );
        assert!(
            to_pulled(
                &serde_json::json!({"type": "PushEvent", "actor": {"login": "o"}}),
                1,
                web
            )
            .is_none()
        );
        let hostile = serde_json::json!({"type": "PushEvent", "actor": {"login": "o"}, "created_at": "2022-06-09T12:47:28Z",
            "payload": {"ref": 7, "commits": [{"message": null, "author": {"email": ["x"]}}, 3]}});
        let p = to_pulled(&hostile, 9, web).expect("odd payloads still make an entry");
        assert_eq!(p.id, "github-event-9");
        assert!(
            to_pulled(
                &serde_json::json!({"type": "X", "actor": {"login": "<script>"}, "created_at": "2022-06-09T12:47:28Z"}),
                1,
                web
            )
            .is_none()
        );
    }
}
