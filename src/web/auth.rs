//! Who is asking: a device token (`Authorization: Bearer`), HTTP Basic (user name + token,
//! app password or account password, for feed readers), a browser's session cookie
//! (`session.rs`), or a revocable feed key in the URL (`?key=`, for one feed only).
//! Another user's resources answer 404, never their content.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::AppState;
use super::session::{SESSION_COOKIE, WEB_ENDPOINT, cookie};
use crate::error::{Error, Result};
use crate::secrets;
use crate::store::Principal;
use crate::usecases::keys::feed_key_path;
use crate::usecases::logins;

enum Credential {
    Bearer(String),
    Basic { user: String, token: String },
}

fn credential(headers: &HeaderMap) -> Result<Option<Credential>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::Unauthorized)?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(Error::Unauthorized)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(Credential::Bearer(rest.to_string())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| Error::Unauthorized)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Error::Unauthorized)?;
        let (user, token) = decoded.split_once(':').ok_or(Error::Unauthorized)?;
        return Ok(Some(Credential::Basic {
            user: user.to_string(),
            token: token.to_string(),
        }));
    }
    Err(Error::Unauthorized)
}

/// How recent a credential check must be. Writes always ask the store, so a revoked token
/// never writes; reads may trust a check made less than a second ago.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Fresh,
    Cached,
}

/// The principal behind the request's credential, if it sent one; a bad one is 401. A
/// request without `Authorization` may come from a browser's live session cookie.
pub async fn optional_principal(state: &AppState, headers: &HeaderMap, check: Check) -> Result<Option<Principal>> {
    let (token, claimed_user) = match credential(headers)? {
        None => return session_principal(state, headers, check).await,
        Some(Credential::Bearer(t)) => (t, None),
        Some(Credential::Basic { user, token }) => (token, Some(user)),
    };
    // A password is only good with its user name: the two together are the cache's key.
    let digest = match &claimed_user {
        None => secrets::digest(&token),
        Some(u) => secrets::digest(&format!("{u}\u{0}{token}")),
    };
    let cached = match check {
        Check::Cached => state.principals.get(&digest),
        Check::Fresh => None,
    };
    let principal = match cached {
        Some(p) => p,
        None => {
            let p = match state.mesh.store.principal(&secrets::hash(&token)).await? {
                Some(p) => p,
                None => match &claimed_user {
                    Some(user) => password_principal(state, user, &token).await?,
                    None => return Err(Error::Unauthorized),
                },
            };
            state.principals.put(digest, p.clone());
            p
        }
    };
    if claimed_user.is_some_and(|u| !secrets::same(&u, &principal.user)) {
        return Err(Error::Unauthorized);
    }
    Ok(Some(principal))
}

/// HTTP Basic with a password instead of a device token: an app password, or the account
/// password (argon2, so failures count towards the login bound of the user).
async fn password_principal(state: &AppState, user: &str, password: &str) -> Result<Principal> {
    if password.starts_with("fm_") {
        // A device token that is not (or no longer) live: no password starts so.
        return Err(Error::Unauthorized);
    }
    let login = reader_login(state, None, user, password).await?;
    crate::usecases::principal(&state.core, login.user_id, WEB_ENDPOINT)
        .await
        .map_err(Error::Internal)
}

/// A reader app's login with a user name and password (account or app password), bounded
/// like the login form: 10 failures per 5 minutes per address and per user name.
pub async fn reader_login(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    user: &str,
    password: &str,
) -> Result<crate::store::Login> {
    let store = state.mesh.store.as_ref();
    if let Some(l) = logins::check_app_password(store, user, password).await? {
        return Ok(l);
    }
    if let Some(wait) = state.failed_logins.wait(ip, user) {
        return Err(Error::RateLimited(
            format!("too many failed logins; try again in {wait} s"),
            wait,
        ));
    }
    match logins::check_password(store, user, password).await? {
        Some(l) => Ok(l),
        None => {
            state.failed_logins.failed(ip, user);
            tracing::info!(user = %user, "failed reader login");
            Err(Error::Unauthorized)
        }
    }
}

/// Who a session token speaks for (a browser's cookie, or the `Auth` a Google Reader
/// client got from ClientLogin); a stale one is 401.
pub async fn token_principal(state: &AppState, token: &str) -> Result<Principal> {
    let digest = secrets::digest(token);
    if let Some(p) = state.principals.get(&digest) {
        return Ok(p);
    }
    let login = logins::session(state.mesh.store.as_ref(), token)
        .await?
        .ok_or(Error::Unauthorized)?;
    let p = crate::usecases::principal(&state.core, login.user_id, WEB_ENDPOINT)
        .await
        .map_err(Error::Internal)?;
    state.principals.put(digest, p.clone());
    Ok(p)
}

/// The principal of a browser's live session cookie (a stale cookie is no credential).
async fn session_principal(state: &AppState, headers: &HeaderMap, check: Check) -> Result<Option<Principal>> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = secrets::digest(token);
    if check == Check::Cached
        && let Some(p) = state.principals.get(&digest)
    {
        return Ok(Some(p));
    }
    let Some(login) = logins::session(state.mesh.store.as_ref(), token).await? else {
        return Ok(None);
    };
    let p = crate::usecases::principal(&state.core, login.user_id, WEB_ENDPOINT)
        .await
        .map_err(Error::Internal)?;
    state.principals.put(digest, p.clone());
    Ok(Some(p))
}

/// The principal behind the request's token, checked against the store; no token is 401.
pub async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal> {
    optional_principal(state, headers, Check::Fresh)
        .await?
        .ok_or(Error::Unauthorized)
}

/// The principal of a browser session, for what mints or revokes credentials (devices, app
/// passwords): a device token or an app password may read and write, never make more of them.
pub async fn session_owner(state: &AppState, headers: &HeaderMap) -> Result<Principal> {
    if headers.contains_key(AUTHORIZATION) {
        return Err(Error::Forbidden(
            "devices and app passwords are managed from a logged-in browser session (or the CLI), not with a token or password".into(),
        ));
    }
    session_principal(state, headers, Check::Fresh)
        .await?
        .ok_or(Error::Unauthorized)
}

/// The principal, who must be `user` (else the resource does not exist for them).
pub async fn owner(state: &AppState, headers: &HeaderMap, user: &str, check: Check) -> Result<Principal> {
    let p = optional_principal(state, headers, check)
        .await?
        .ok_or(Error::Unauthorized)?;
    if p.user != user {
        return Err(Error::NotFound("user"));
    }
    Ok(p)
}

/// The user a feed may be read for: the owner's token, or a live key issued for this feed.
pub struct FeedReader {
    pub user_id: i64,
    /// Read with a token or password rather than a key in the URL.
    pub credentialed: bool,
}

/// The self key of one of the user's feeds: derived from the server secret, the feed and
/// its generation, so only its hash is stored. Revoking it makes the next one.
pub async fn self_key(state: &AppState, user_id: i64, path: &str) -> Result<std::sync::Arc<str>> {
    let feed = feed_key_path(path);
    // Looked up on every credentialed read: keyed by a hash of the path, no allocation.
    let cache_key = (user_id, {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(feed)
    });
    if let Some(k) = state.self_keys.get(&cache_key) {
        return Ok(k);
    }
    let derive = |generation: i64| {
        secrets::derive(
            "fk_",
            &state.server_secret,
            &format!("self-key\u{0}{user_id}\u{0}{feed}\u{0}{generation}"),
        )
    };
    let generation = state
        .mesh
        .store
        .self_key(user_id, feed, &|g| secrets::hash(&derive(g)))
        .await?;
    let key: std::sync::Arc<str> = derive(generation).into();
    state.self_keys.put(cache_key, key.clone());
    Ok(key)
}

/// The self key a feed read advertises: the feed's self key for a credentialed read, none
/// for a read with a key in the URL (that URL is already a capability).
pub async fn reader_self_key(
    state: &AppState,
    reader: &FeedReader,
    uri: &axum::http::Uri,
) -> Result<Option<std::sync::Arc<str>>> {
    match reader.credentialed {
        true => Ok(Some(self_key(state, reader.user_id, uri.path()).await?)),
        false => Ok(None),
    }
}

/// A feed's `rel="self"`: the URL as fetched, or, for a credentialed read, the same URL
/// with the feed's self key, so a WebSub hub or reader can use it without the credentials.
pub fn self_url(state: &AppState, uri: &axum::http::Uri, self_key: Option<&str>) -> String {
    match (self_key, uri.query()) {
        (None, _) => format!("{}{uri}", state.base_url),
        (Some(key), Some(q)) if !q.is_empty() => format!("{}{}?{q}&key={key}", state.base_url, uri.path()),
        (Some(key), _) => format!("{}{}?key={key}", state.base_url, uri.path()),
    }
}

pub async fn feed_reader(
    state: &AppState,
    headers: &HeaderMap,
    key: Option<&str>,
    user: &str,
    path: &str,
) -> Result<FeedReader> {
    if let Some(p) = optional_principal(state, headers, Check::Cached).await? {
        if p.user != user {
            return Err(Error::NotFound("feed"));
        }
        return Ok(FeedReader {
            user_id: p.user_id,
            credentialed: true,
        });
    }
    let Some(key) = key else {
        return Err(Error::Unauthorized);
    };
    let digest = secrets::digest(key);
    let k = match state.feed_keys.get(&digest) {
        Some(k) => k,
        None => {
            let k = state
                .mesh
                .store
                .feed_key(&hex::encode(digest))
                .await?
                .ok_or(Error::Unauthorized)?;
            state.feed_keys.put(digest, k.clone());
            k
        }
    };
    if k.user != user || !secrets::same(&k.feed_path, feed_key_path(path)) {
        return Err(Error::NotFound("feed"));
    }
    Ok(FeedReader {
        user_id: k.user_id,
        credentialed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `Authorization` as any client may send it: parsed or refused, never a panic.
        #[test]
        fn credentials_never_panic(v in prop::collection::vec(any::<u8>(), 0..60), s in "(Basic |Bearer |basic )?[A-Za-z0-9+/=:é ]{0,40}") {
            for value in [v.as_slice(), s.as_bytes()] {
                let mut h = HeaderMap::new();
                if let Ok(v) = axum::http::HeaderValue::from_bytes(value) {
                    h.insert(AUTHORIZATION, v);
                }
                let _ = credential(&h);
            }
        }
    }
}
