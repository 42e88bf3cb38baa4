//! Browser logins: the login form, the session cookie, CSRF on every state change made with
//! that cookie, logout, and a bound on failed password attempts. Device tokens and feed keys
//! (`auth.rs`) are untouched by any of this: they never ride in a cookie, so CSRF cannot
//! use them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{AppState, SharedState};
use crate::error::{Error, Result};
use crate::usecases::logins;

/// The session cookie (HttpOnly, SameSite=Lax, Secure on an https base URL).
pub const SESSION_COOKIE: &str = "fm_session";
/// Before login: a random cookie the login form's CSRF token belongs with.
pub const PRE_COOKIE: &str = "fm_pre";
/// The form field and the header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The endpoint a browser session writes as (notes, resolutions): `USER/web`.
pub const WEB_ENDPOINT: &str = "web";
/// Largest form body read for its CSRF token, in bytes.
const MAX_FORM_BYTES: usize = 1 << 20;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are URL-safe base64")
}

/// Failed password attempts, by client address and by user name: past the bound in the
/// window, attempts are refused before any password is checked (429 with Retry-After).
pub struct FailedLogins {
    window: Duration,
    per_address: u32,
    per_user: u32,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl FailedLogins {
    pub fn new(window: Duration, per_address: u32, per_user: u32) -> Self {
        FailedLogins {
            window,
            per_address,
            per_user,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The keys an attempt counts under, each with its bound (no address: the user's only).
    fn keys(&self, ip: Option<IpAddr>, user: &str) -> Vec<(String, u32)> {
        let mut keys = vec![(format!("user\u{0}{}", user.to_lowercase()), self.per_user)];
        if let Some(ip) = ip {
            keys.push((format!("ip\u{0}{ip}"), self.per_address));
        }
        keys
    }

    /// Seconds to wait when any key is over its bound; None to go ahead.
    pub fn wait(&self, ip: Option<IpAddr>, user: &str) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.keys(ip, user)
            .into_iter()
            .filter_map(|(k, bound)| {
                let (since, n) = seen.get(&k)?;
                let left = self.window.checked_sub(since.elapsed())?;
                (*n >= bound).then(|| left.as_secs().max(1))
            })
            .max()
    }

    pub fn failed(&self, ip: Option<IpAddr>, user: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            let window = self.window;
            seen.retain(|_, (since, _)| since.elapsed() < window);
        }
        for (k, _) in self.keys(ip, user) {
            let e = seen.entry(k).or_insert((Instant::now(), 0));
            if e.0.elapsed() >= self.window {
                *e = (Instant::now(), 0);
            }
            e.1 += 1;
        }
    }
}

/// Refuses a state change made with the session cookie unless it carries the CSRF token
/// that belongs with that cookie (in `X-CSRF-Token`, a `csrf` form field, or a `csrf` query
/// parameter for multipart forms), or whose `Origin` is another site's.
pub async fn csrf(State(st): State<SharedState>, req: Request<Body>, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // The login form checks its own token, against the pre-session cookie.
    let by_cookie = !req.headers().contains_key(AUTHORIZATION) && req.uri().path() != "/login";
    let session = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    let (Some(session), true, true) = (session, unsafe_method, by_cookie) else {
        return next.run(req).await;
    };
    if let Some(origin) = req.headers().get(axum::http::header::ORIGIN)
        && !same_site(origin.as_bytes(), &st.base_url, req.headers())
    {
        return refused();
    }
    let from_header = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
    });
    let sent = from_header.or(from_query);
    if let Some(sent) = sent {
        return match logins::csrf_ok(&st.server_secret, &session, &sent) {
            true => next.run(req).await,
            false => refused(),
        };
    }
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return refused();
    }
    // A form: its token is a field; the body is read once and handed on whole.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return Error::TooLarge("the form is too large".into()).into_response();
    };
    let sent = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match sent.is_some_and(|s| logins::csrf_ok(&st.server_secret, &session, &s)) {
        true => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        false => refused(),
    }
}

/// Whether a request's `Origin` is this hub: its public URL's origin, or the host the
/// browser addressed (a hub reached as `localhost` while its base URL says `127.0.0.1`).
fn same_site(origin: &[u8], base_url: &str, headers: &HeaderMap) -> bool {
    if origin == origin_of(base_url).as_bytes() {
        return true;
    }
    let host = headers.get(axum::http::header::HOST).map(|h| h.as_bytes());
    let addressed = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    matches!((addressed, host), (Some(a), Some(h)) if a == h)
}

fn origin_of(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => base_url.to_string(),
    }
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "the request lacks this page's CSRF token or comes from another site; reload the page and try again\n",
    )
        .into_response()
}

/// The CSRF token of the browser's current cookie, for the forms of a page.
pub fn page_csrf(state: &AppState, headers: &HeaderMap) -> String {
    cookie(headers, SESSION_COOKIE)
        .map(|c| logins::csrf_token(&state.server_secret, c))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    version: &'static str,
    csrf: &'a str,
    user: &'a str,
    next: &'a str,
    error: &'a str,
}

#[derive(serde::Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Where to go after login: a path on this hub, never another site.
fn local_next(next: &str) -> &str {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.contains("://");
    if ok { next } else { "/" }
}

fn render(page: impl Template) -> Result<String> {
    page.render().map_err(|e| Error::Internal(e.into()))
}

/// The login form; a browser already logged in goes on to its stream.
pub async fn login_form(
    State(st): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE)
        && logins::session(st.mesh.store.as_ref(), token).await?.is_some()
    {
        return Ok(Redirect::to(local_next(&q.next)).into_response());
    }
    let pre = match cookie(&headers, PRE_COOKIE) {
        Some(p) => p.to_string(),
        None => crate::secrets::generate("")?,
    };
    let csrf = logins::csrf_token(&st.server_secret, &pre);
    let html = render(LoginPage {
        version: env!("CARGO_PKG_VERSION"),
        csrf: &csrf,
        user: "",
        next: local_next(&q.next),
        error: "",
    })?;
    let mut resp = super::html(html);
    resp.headers_mut()
        .append(SET_COOKIE, set_cookie(&st, PRE_COOKIE, &pre, 3600));
    Ok(resp)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Checks the form, then the password; success is a new session (any earlier session
/// cookie is ended, so a planted one is worth nothing) and a redirect to the stream.
pub async fn login(
    State(st): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Result<Response> {
    let pre = cookie(&headers, PRE_COOKIE).unwrap_or("");
    if pre.is_empty() || !logins::csrf_ok(&st.server_secret, pre, &form.csrf) {
        return Ok(refused());
    }
    let user = form.user.trim();
    if let Some(wait) = st.failed_logins.wait(Some(peer.ip()), user) {
        return Err(Error::RateLimited(
            format!("too many failed logins; try again in {wait} s"),
            wait,
        ));
    }
    let store = st.mesh.store.as_ref();
    let Some(login) = logins::check_password(store, user, &form.password).await? else {
        st.failed_logins.failed(Some(peer.ip()), user);
        tracing::info!(user = %user, client = %peer.ip(), "failed login");
        let csrf = logins::csrf_token(&st.server_secret, pre);
        let html = render(LoginPage {
            version: env!("CARGO_PKG_VERSION"),
            csrf: &csrf,
            user,
            next: local_next(&form.next),
            error: "Wrong user name or password.",
        })?;
        let mut resp = super::html(html);
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(resp);
    };
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        logins::end_session(store, old).await?;
    }
    let session = logins::begin_session(store, login).await?;
    let mut resp = Redirect::to(local_next(&form.next)).into_response();
    let h = resp.headers_mut();
    h.append(
        SET_COOKIE,
        set_cookie(&st, SESSION_COOKIE, &session.token, logins::SESSION_SECONDS),
    );
    h.append(SET_COOKIE, set_cookie(&st, PRE_COOKIE, "", 0));
    Ok(resp)
}

/// Ends the browser's session (the CSRF layer has checked the form) and goes to the login form.
pub async fn logout(State(st): State<SharedState>, headers: HeaderMap) -> Result<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        logins::end_session(st.mesh.store.as_ref(), token).await?;
        st.principals.remove(&crate::secrets::digest(token));
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(SET_COOKIE, set_cookie(&st, SESSION_COOKIE, "", 0));
    Ok(resp)
}
