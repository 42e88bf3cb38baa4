//! How people log in: the account password (argon2id), browser sessions, and app passwords
//! for reader apps. What `feedmesh user passwd|app-password` and the login form share.
//! Passwords are never logged and never kept: only their hashes are.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::domain::names::UserName;
use crate::error::{Error, Result};
use crate::secrets;
use crate::store::{AppPassword, Login, Store};

/// Shortest account password taken, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password looked at, in bytes (argon2 would take more; nobody types it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How long a browser session lasts.
pub const SESSION_SECONDS: i64 = 30 * 86_400;
/// The prefixes of the secrets made here, so a leaked one is recognisable.
const SESSION_PREFIX: &str = "fms_";
const APP_PASSWORD_PREFIX: &str = "fma_";

fn hasher() -> argon2::Argon2<'static> {
    // Argon2id v19, m = 19 MiB, t = 2, p = 1: OWASP's recommended minimum.
    argon2::Argon2::default()
}

fn check_length(password: &str) -> Result<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Sets USER's account password (ending their browser sessions).
pub async fn set_password(store: &dyn Store, user: &str, password: &str) -> Result<()> {
    let user = store.user(UserName::parse(user)?.as_str()).await?;
    check_length(password)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Invalid(format!(
            "the password is shorter than {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.trim() != password {
        return Err(Error::Invalid(
            "the password starts or ends with white space (a stray newline?)".into(),
        ));
    }
    let password = password.to_string();
    let phc = tokio::task::spawn_blocking(move || hasher().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing the password: {e}")))?;
    store.set_password(user.id, &phc).await?;
    Ok(())
}

/// A PHC string for a password nobody has, so a wrong user name costs what a wrong
/// password does (no timing tells which user names exist).
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hasher()
            .hash_password_with_salt(b"no such password", b"feedmesh-decoy-salt")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` is USER's account password; None for a wrong password, an unknown user
/// or a user without one (alike).
pub async fn check_password(store: &dyn Store, user: &str, password: &str) -> Result<Option<Login>> {
    if password.len() > MAX_PASSWORD_BYTES || UserName::parse(user).is_err() {
        return Ok(None);
    }
    let found = match store.user(user).await {
        Ok(u) => Some(u),
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let phc = match &found {
        Some(u) => store.password(u.id).await?,
        None => None,
    };
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| decoy().to_string());
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || hasher().verify_password(password.as_bytes(), phc.as_str()).is_ok())
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    Ok(match (ok && known, found) {
        (true, Some(u)) => Some(Login {
            user_id: u.id,
            user: u.name.to_string(),
        }),
        _ => None,
    })
}

/// A browser session just begun: the cookie's value, shown to the browser once.
pub struct NewSession {
    pub token: String,
    pub login: Login,
}

/// Begins a fresh session for a user who proved who they are.
pub async fn begin_session(store: &dyn Store, login: Login) -> Result<NewSession> {
    let token = secrets::generate(SESSION_PREFIX)?;
    let expires = chrono::Utc::now().timestamp() + SESSION_SECONDS;
    store
        .add_session(login.user_id, &secrets::hash(&token), expires)
        .await?;
    Ok(NewSession { token, login })
}

/// Who a session cookie speaks for, if it is a live session.
pub async fn session(store: &dyn Store, token: &str) -> Result<Option<Login>> {
    if !token.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    Ok(store
        .session(&secrets::hash(token), chrono::Utc::now().timestamp())
        .await?)
}

pub async fn end_session(store: &dyn Store, token: &str) -> Result<()> {
    Ok(store.end_session(&secrets::hash(token)).await?)
}

/// An app password just made: shown once.
pub struct IssuedAppPassword {
    pub info: AppPassword,
    pub password: String,
}

/// The Fever API key of a user name and password: md5 of `user:password`, in hex.
pub fn fever_key(user: &str, password: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(format!("{user}:{password}").as_bytes()))
}

/// Makes an app password named NAME for USER (a reader app's own login, revocable alone).
pub async fn add_app_password(store: &dyn Store, user: &str, name: &str) -> Result<IssuedAppPassword> {
    let user = store.user(UserName::parse(user)?.as_str()).await?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "an app password's name is 1 to 100 characters, none of them control characters".into(),
        ));
    }
    let password = secrets::generate(APP_PASSWORD_PREFIX)?;
    let fever = secrets::hash(&fever_key(user.name.as_str(), &password));
    let info = store
        .add_app_password(
            user.id,
            name,
            &secrets::hash(&password),
            &fever,
            &secrets::display_prefix(&password),
        )
        .await?;
    Ok(IssuedAppPassword { info, password })
}

pub async fn app_passwords(store: &dyn Store, user: &str) -> Result<Vec<AppPassword>> {
    let user = store.user(UserName::parse(user)?.as_str()).await?;
    Ok(store.app_passwords(user.id).await?)
}

pub async fn revoke_app_password(store: &dyn Store, user: &str, id: i64) -> Result<()> {
    let user = store.user(UserName::parse(user)?.as_str()).await?;
    Ok(store.revoke_app_password(user.id, id).await?)
}

/// Whether `password` is one of USER's live app passwords.
pub async fn check_app_password(store: &dyn Store, user: &str, password: &str) -> Result<Option<Login>> {
    if !password.starts_with(APP_PASSWORD_PREFIX) || password.len() > MAX_PASSWORD_BYTES {
        return Ok(None);
    }
    let login = store.app_password(&secrets::hash(password), false).await?;
    Ok(login.filter(|l| secrets::same(&l.user, user)))
}

/// The user whose app password makes this Fever API key.
pub async fn fever_login(store: &dyn Store, api_key: &str) -> Result<Option<Login>> {
    let key = api_key.trim().to_ascii_lowercase();
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(store.app_password(&secrets::hash(&key), true).await?)
}

/// A user name and a password from a reader app or the login form: the account password or
/// an app password.
pub async fn check_any_password(store: &dyn Store, user: &str, password: &str) -> Result<Option<Login>> {
    if let Some(login) = check_app_password(store, user, password).await? {
        return Ok(Some(login));
    }
    check_password(store, user, password).await
}

/// The CSRF token that goes with a browser's cookie (its session, or before login its
/// pre-session cookie): derived, so nothing is stored, and useless with another cookie.
pub fn csrf_token(server_secret: &str, cookie: &str) -> String {
    secrets::derive("", server_secret, &format!("csrf\u{0}{cookie}"))
}

/// Whether a CSRF token sent with a form or a header belongs with the cookie.
pub fn csrf_ok(server_secret: &str, cookie: &str, sent: &str) -> bool {
    secrets::same(&csrf_token(server_secret, cookie), sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fever_key_is_md5_of_user_colon_password() {
        // md5("alice:secret"), as `printf alice:secret | md5sum` prints it.
        assert_eq!(fever_key("alice", "secret"), "6f622058968bb90757e6c6ed79e5df81");
    }

    #[test]
    fn csrf_tokens_belong_to_their_cookie() {
        let t = csrf_token("server-secret", "fms_a");
        assert!(csrf_ok("server-secret", "fms_a", &t));
        assert!(!csrf_ok("server-secret", "fms_b", &t));
        assert!(!csrf_ok("other-secret", "fms_a", &t));
        assert!(!csrf_ok("server-secret", "fms_a", ""));
    }
}
