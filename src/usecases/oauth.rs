//! OAuth 2.0 for connectors: each user's client registration per provider (`feedmesh
//! oauth-client add`, `/api/oauth-clients`), the authorization-code flow with PKCE (S256) and
//! `state` back to the hub's own `BASE/oauth/callback`, tokens sealed at rest, refreshed
//! before they expire (a rotated refresh token kept), and revoked at the provider (RFC 7009)
//! when a connector goes. A refused refresh is the connector's `needs-reconnect`, never a
//! loop. Every request to a provider goes through the hub's outbound policy (the oauth2
//! crate is handed an adapter over `net::Outbound`).

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RevocationUrl, Scope, TokenResponse, TokenUrl,
};

use super::Core;
use crate::error::{Error, Result};
use crate::jobs::now_ms;
use crate::net::Outbound;
use crate::secrets;
use crate::store::{ConnectorRow, ConnectorState, OAuthClient};
use feedmesh_connector::{ConnectorError, Secret};

/// How long an authorisation may wait for its callback.
const PENDING_MS: i64 = 15 * 60 * 1000;

/// Tokens are refreshed when they have less than this left.
const REFRESH_AHEAD_MS: i64 = 60 * 1000;

/// Bytes of a provider's answer read at most.
const MAX_ANSWER: usize = 256 * 1024;

/// Providers whose endpoints the hub knows: (name, authorize, token, revoke, scope).
const KNOWN: &[(&str, &str, &str, Option<&str>, &str)] = &[(
    "github",
    "https://github.com/login/oauth/authorize",
    "https://github.com/login/oauth/access_token",
    None,
    "read:user",
)];

/// A client registration as given by its user; endpoints default to the known provider's,
/// or to what `issuer`'s metadata (RFC 8414) names; without a client id, the hub registers
/// itself at the issuer's registration endpoint (RFC 7591).
pub struct NewClient {
    pub provider: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub issuer: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revoke_url: Option<String>,
    pub scope: Option<String>,
}

/// What an authorization server says of itself (RFC 8414, or OpenID Connect Discovery).
#[derive(serde::Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    registration_endpoint: Option<String>,
}

/// Reads `issuer`'s metadata (`/.well-known/oauth-authorization-server`, else
/// `/.well-known/openid-configuration`), through the outbound policy; its `issuer` must be
/// the one asked (RFC 8414 §3.3).
async fn discover(core: &Core, issuer: &str) -> Result<Metadata> {
    let issuer = issuer.trim().trim_end_matches('/');
    let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("the issuer {issuer}: {e}"));
    let mut last = String::new();
    for well_known in ["oauth-authorization-server", "openid-configuration"] {
        let url = format!("{issuer}/.well-known/{well_known}");
        let req = feedmesh_connector::Request::get(url, MAX_ANSWER).header("Accept", "application/json");
        let resp = crate::fetch::send(&core.outbound, req).await.map_err(|e| bad(&e))?;
        if resp.status != 200 {
            last = format!("{well_known} answered {}", resp.status);
            continue;
        }
        let m: Metadata = serde_json::from_slice(&resp.body).map_err(|e| bad(&format!("its {well_known}: {e}")))?;
        if m.issuer.trim_end_matches('/') != issuer {
            return Err(bad(&format!("its metadata names another issuer, {:?}", m.issuer)));
        }
        return Ok(m);
    }
    Err(bad(&format!("no authorization server metadata ({last})")))
}

/// Registers the hub as a client at an RFC 7591 registration endpoint, for the hub's
/// callback: the client id and secret.
async fn register_dynamic(core: &Core, endpoint: &str, scope: &str) -> Result<(String, Option<String>)> {
    let bad = |e: &dyn std::fmt::Display| Error::Invalid(format!("cannot register the hub at {endpoint}: {e}"));
    let mut body = serde_json::json!({
        "client_name": "feedmesh",
        "redirect_uris": [callback_url(core)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    if !scope.is_empty() {
        body["scope"] = serde_json::Value::String(scope.to_string());
    }
    let mut req = feedmesh_connector::Request::get(endpoint, MAX_ANSWER).header("Accept", "application/json");
    req.method = feedmesh_connector::Method::Post;
    req.body = Some(("application/json".into(), body.to_string().into_bytes()));
    let resp = crate::fetch::send(&core.outbound, req).await.map_err(|e| bad(&e))?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    if !(200..300).contains(&resp.status) {
        let why = v
            .get("error_description")
            .or(v.get("error"))
            .and_then(|e| e.as_str())
            .unwrap_or("");
        return Err(bad(&format!("it answered {} {why}", resp.status)));
    }
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let id = field("client_id").ok_or_else(|| bad(&"no client_id in its answer"))?;
    Ok((id, field("client_secret")))
}

/// Adds (or replaces) the user's client registration at a provider.
pub async fn add_client(core: &Core, user_id: i64, c: NewClient, allow_private: bool) -> Result<OAuthClient> {
    let provider = c.provider.trim().to_ascii_lowercase();
    if provider.is_empty()
        || provider.len() > 64
        || !provider
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Err(Error::Invalid(format!(
            "provider {provider:?}: letters, digits, - _ . (at most 64)"
        )));
    }
    let meta = match c.issuer.as_deref().filter(|i| !i.trim().is_empty()) {
        Some(issuer) => {
            crate::net::check_url(issuer, allow_private).map_err(|e| Error::Invalid(format!("the issuer URL: {e}")))?;
            Some(discover(core, issuer).await?)
        }
        None => None,
    };
    let known = KNOWN.iter().find(|k| k.0 == provider);
    let pick = |given: Option<String>, found: Option<&str>, default: Option<&str>, what: &str| -> Result<String> {
        given
            .filter(|v| !v.trim().is_empty())
            .or(found.map(str::to_string))
            .or(default.map(str::to_string))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{what} (or --issuer) is needed for provider {provider:?} (the hub knows only github's)"
                ))
            })
    };
    let mut client = OAuthClient {
        authorize_url: pick(
            c.authorize_url,
            meta.as_ref().map(|m| m.authorization_endpoint.as_str()),
            known.map(|k| k.1),
            "--authorize-url",
        )?,
        token_url: pick(
            c.token_url,
            meta.as_ref().map(|m| m.token_endpoint.as_str()),
            known.map(|k| k.2),
            "--token-url",
        )?,
        revoke_url: c
            .revoke_url
            .filter(|v| !v.trim().is_empty())
            .or(meta.as_ref().and_then(|m| m.revocation_endpoint.clone()))
            .or(known.and_then(|k| k.3.map(str::to_string))),
        scope: c.scope.or(known.map(|k| k.4.to_string())).unwrap_or_default(),
        client_id: c.client_id.map(|i| i.trim().to_string()).unwrap_or_default(),
        client_secret: c.client_secret.filter(|s| !s.is_empty()),
        registration_url: None,
        registered_redirect: None,
        provider,
    };
    for (what, url) in [
        ("authorize", Some(&client.authorize_url)),
        ("token", Some(&client.token_url)),
        ("revoke", client.revoke_url.as_ref()),
    ] {
        if let Some(u) = url {
            crate::net::check_url(u, allow_private).map_err(|e| Error::Invalid(format!("the {what} URL: {e}")))?;
        }
    }
    if client.client_id.is_empty() {
        let Some(endpoint) = meta.as_ref().and_then(|m| m.registration_endpoint.clone()) else {
            return Err(Error::Invalid(
                "no client id given, and the provider registers no clients itself (no RFC 7591 \
                 registration endpoint in its metadata): register the hub there and give --client-id"
                    .into(),
            ));
        };
        crate::net::check_url(&endpoint, allow_private)
            .map_err(|e| Error::Invalid(format!("the registration URL: {e}")))?;
        let (id, secret) = register_dynamic(core, &endpoint, &client.scope).await?;
        client.client_id = id;
        client.client_secret = secret;
        client.registration_url = Some(endpoint);
        client.registered_redirect = Some(callback_url(core));
    }
    core.mesh.store.put_oauth_client(user_id, &client).await?;
    Ok(client)
}

/// A client the hub registered itself, registered again when the hub's callback URL is no
/// longer the one registered (its public URL changed): the same way, at the same place.
async fn registered_for_now(core: &Core, user_id: i64, c: OAuthClient) -> Result<OAuthClient> {
    let (Some(url), Some(was)) = (c.registration_url.clone(), c.registered_redirect.as_deref()) else {
        return Ok(c);
    };
    if was == callback_url(core) {
        return Ok(c);
    }
    tracing::info!(provider = %c.provider, was = %was, now = %callback_url(core), "the hub's URL changed: registering again");
    let fresh = if c.provider.starts_with("mastodon:") {
        let instance = url.trim_end_matches("/api/v1/apps").to_string();
        mastodon_registration(core, &instance, &c.provider).await?
    } else {
        let (id, secret) = register_dynamic(core, &url, &c.scope).await?;
        OAuthClient {
            client_id: id,
            client_secret: secret,
            registered_redirect: Some(callback_url(core)),
            ..c
        }
    };
    core.mesh.store.put_oauth_client(user_id, &fresh).await?;
    Ok(fresh)
}

pub async fn clients(core: &Core, user_id: i64) -> Result<Vec<OAuthClient>> {
    Ok(core.mesh.store.oauth_clients(user_id).await?)
}

pub async fn remove_client(core: &Core, user_id: i64, provider: &str) -> Result<()> {
    Ok(core.mesh.store.remove_oauth_client(user_id, provider).await?)
}

/// The hub's client at a Mastodon instance (provider `mastodon:HOST`): registered there
/// (`POST /api/v1/apps`, through the outbound policy) the first time one of the user's
/// connectors needs it, and again when the hub's URL changed; kept like any client
/// registration. Answers the provider's name.
pub async fn mastodon_app(core: &Core, user_id: i64, instance: &str) -> Result<String> {
    let instance = instance.trim_end_matches('/');
    let host = feedmesh_connector_mastodon::MastodonConfig {
        instance: instance.to_string(),
        token: None,
    }
    .host();
    if host.is_empty() {
        return Err(Error::Invalid(format!("option instance: {instance:?} is not a URL")));
    }
    let provider = format!("mastodon:{host}");
    if let Some(c) = core.mesh.store.oauth_client(user_id, &provider).await? {
        registered_for_now(core, user_id, c).await?;
        return Ok(provider);
    }
    let client = mastodon_registration(core, instance, &provider).await?;
    core.mesh.store.put_oauth_client(user_id, &client).await?;
    Ok(provider)
}

/// Registers the hub at a Mastodon instance (`POST /api/v1/apps`) for its callback.
async fn mastodon_registration(core: &Core, instance: &str, provider: &str) -> Result<OAuthClient> {
    let scopes = feedmesh_connector_mastodon::SCOPES;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_name", "feedmesh")
        .append_pair("redirect_uris", &callback_url(core))
        .append_pair("scopes", scopes)
        .append_pair("website", &core.base_url)
        .finish();
    let unreachable = |e: &dyn std::fmt::Display| Error::Invalid(format!("cannot register the hub at {instance}: {e}"));
    let apps = format!("{instance}/api/v1/apps");
    let req = core
        .outbound
        .request(reqwest::Method::POST, &apps)
        .map_err(|e| unreachable(&e))?
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form);
    let resp = core.outbound.send(req).await.map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let body = crate::net::read_capped(resp, MAX_ANSWER).await;
    if !status.is_success() {
        return Err(unreachable(&format!("it answered {status}")));
    }
    let app: serde_json::Value = serde_json::from_slice(&body).map_err(|e| unreachable(&e))?;
    let field = |k: &str| app.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Ok(OAuthClient {
        client_id: field("client_id").ok_or_else(|| unreachable(&"no client_id in its answer"))?,
        client_secret: field("client_secret"),
        authorize_url: format!("{instance}/oauth/authorize"),
        token_url: format!("{instance}/oauth/token"),
        revoke_url: Some(format!("{instance}/oauth/revoke")),
        scope: scopes.to_string(),
        provider: provider.to_string(),
        registration_url: Some(apps),
        registered_redirect: Some(callback_url(core)),
    })
}

/// The hub's callback URL, which every client registration must allow.
pub fn callback_url(core: &Core) -> String {
    format!("{}/oauth/callback", core.base_url)
}

type Client = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointMaybeSet,
    oauth2::EndpointSet,
>;

fn client_of(core: &Core, c: &OAuthClient) -> Result<Client> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Invalid(format!("the {what} URL of {}: {e}", c.provider));
    let mut client = BasicClient::new(ClientId::new(c.client_id.clone()))
        .set_auth_uri(AuthUrl::new(c.authorize_url.clone()).map_err(|e| bad("authorize", &e))?)
        .set_token_uri(TokenUrl::new(c.token_url.clone()).map_err(|e| bad("token", &e))?)
        .set_revocation_url_option(
            c.revoke_url
                .clone()
                .map(RevocationUrl::new)
                .transpose()
                .map_err(|e| bad("revoke", &e))?,
        )
        .set_redirect_uri(RedirectUrl::new(callback_url(core)).map_err(|e| bad("callback", &e))?);
    if let Some(s) = &c.client_secret {
        client = client.set_client_secret(ClientSecret::new(s.clone()));
    }
    Ok(client)
}

/// Starts the authorisation of a connector at `provider`: a PKCE verifier and a `state`
/// (USER_ID.RANDOM) kept for the callback; answers the URL the user opens.
pub async fn begin(core: &Core, user_id: i64, connector_id: i64, provider: &str) -> Result<String> {
    let c = core.mesh.store.oauth_client(user_id, provider).await?.ok_or_else(|| {
        Error::Invalid(format!(
            "no OAuth client for {provider}: feedmesh oauth-client add USER {provider} …"
        ))
    })?;
    let c = registered_for_now(core, user_id, c).await?;
    let client = client_of(core, &c)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = format!("{user_id}.{}", secrets::generate("").map_err(Error::Internal)?);
    let mut req = client
        .authorize_url(|| CsrfToken::new(state.clone()))
        .set_pkce_challenge(challenge);
    for s in c.scope.split_whitespace() {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, _) = req.url();
    core.mesh
        .store
        .add_oauth_pending(
            user_id,
            &secrets::hash(&state),
            connector_id,
            verifier.secret(),
            now_ms() + PENDING_MS,
        )
        .await?;
    core.mesh
        .store
        .set_connector_tokens(user_id, connector_id, provider, None, ConnectorState::NeedsAuth, 0)
        .await?;
    Ok(url.to_string())
}

/// The tokens kept for a connector (sealed at rest as this JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Tokens {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

fn tokens_of<T: TokenResponse>(t: &T, old_refresh: Option<String>) -> Tokens {
    Tokens {
        access_token: t.access_token().secret().clone(),
        // A provider that rotates sends a new one; one that does not keeps the old valid.
        refresh_token: t.refresh_token().map(|r| r.secret().clone()).or(old_refresh),
        expires_at: t.expires_in().map(|d| now_ms() + d.as_millis() as i64),
    }
}

fn to_json(t: &Tokens) -> Result<String> {
    serde_json::to_string(t).map_err(|e| Error::Internal(e.into()))
}

/// The provider's callback: takes the waiting authorisation its `state` names (once),
/// exchanges the code with the PKCE verifier, keeps the tokens sealed and makes the
/// connector active (its first pull starts at once). Answers the connector.
pub async fn complete(core: &Core, state: &str, code: &str) -> Result<ConnectorRow> {
    let unknown = || Error::Invalid("this authorisation is unknown, used already or expired: start again".into());
    let user_id: i64 = state
        .split_once('.')
        .and_then(|(u, _)| u.parse().ok())
        .ok_or_else(unknown)?;
    let (connector_id, verifier, expires_at) = core
        .mesh
        .store
        .take_oauth_pending(user_id, &secrets::hash(state))
        .await?
        .ok_or_else(unknown)?;
    if expires_at < now_ms() {
        return Err(unknown());
    }
    let row = core.mesh.store.connector(user_id, connector_id).await?;
    let provider = row.provider.clone().unwrap_or_default();
    let c = core
        .mesh
        .store
        .oauth_client(user_id, &provider)
        .await?
        .ok_or(Error::NotFound("OAuth client"))?;
    let client = client_of(core, &c)?;
    let out = core.outbound.clone();
    let http = move |r: oauth2::HttpRequest| oauth_http(out.clone(), r);
    let got = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await
        .map_err(|e| Error::Invalid(format!("{provider} refused the authorisation: {}", token_error(&e))))?;
    let tokens = to_json(&tokens_of(&got, None))?;
    core.mesh
        .store
        .set_connector_tokens(
            user_id,
            connector_id,
            &provider,
            Some(&tokens),
            ConnectorState::Active,
            0,
        )
        .await?;
    core.connector_wake.notify_one();
    core.listener_check.notify_waiters();
    Ok(core.mesh.store.connector(user_id, connector_id).await?)
}

/// The access token a connector's run uses: none without OAuth; refreshed first when it
/// expires within a minute (the new tokens kept, a rotated refresh token with them). A
/// refused refresh is `Unauthorized` (the connector then needs reconnecting).
pub async fn access_token(core: &Core, c: &ConnectorRow) -> Result<Option<Secret>, ConnectorError> {
    let Some(raw) = &c.tokens else { return Ok(None) };
    let t: Tokens =
        serde_json::from_str(raw).map_err(|e| ConnectorError::Permanent(format!("its tokens cannot be read: {e}")))?;
    if t.expires_at.is_none_or(|at| at > now_ms() + REFRESH_AHEAD_MS) {
        return Ok(Some(Secret::new(t.access_token)));
    }
    let Some(refresh) = t.refresh_token.clone() else {
        return Err(ConnectorError::Unauthorized(
            "the access token expired and there is no refresh token".into(),
        ));
    };
    let provider = c.provider.clone().unwrap_or_default();
    let client = core
        .mesh
        .store
        .oauth_client(c.user_id, &provider)
        .await
        .map_err(|e| ConnectorError::Unreachable(e.to_string()))?
        .ok_or_else(|| ConnectorError::Unauthorized(format!("no OAuth client for {provider} any more")))?;
    let client = client_of(core, &client).map_err(|e| ConnectorError::Permanent(e.to_string()))?;
    let out = core.outbound.clone();
    let http = move |r: oauth2::HttpRequest| oauth_http(out.clone(), r);
    let got = client
        .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
        .request_async(&http)
        .await
        .map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(_) => {
                ConnectorError::Unauthorized(format!("{provider} refused the refresh: {}", token_error(&e)))
            }
            other => ConnectorError::Unreachable(format!("refreshing at {provider}: {}", token_error(&other))),
        })?;
    let fresh = tokens_of(&got, Some(refresh));
    let access = fresh.access_token.clone();
    let json = to_json(&fresh).map_err(|e| ConnectorError::Unreachable(e.to_string()))?;
    core.mesh
        .store
        .set_connector_tokens(c.user_id, c.id, &provider, Some(&json), c.state, c.next_at)
        .await
        .map_err(|e| ConnectorError::Unreachable(e.to_string()))?;
    Ok(Some(Secret::new(access)))
}

/// The access token as it is, never refreshed (a listener's: only runs refresh, so a rotated
/// refresh token is never spent twice); one about to expire is `Unreachable` until a run
/// has refreshed it.
pub fn current_access_token(c: &ConnectorRow) -> Result<Option<Secret>, ConnectorError> {
    let Some(raw) = &c.tokens else { return Ok(None) };
    let t: Tokens =
        serde_json::from_str(raw).map_err(|e| ConnectorError::Permanent(format!("its tokens cannot be read: {e}")))?;
    if t.expires_at.is_none_or(|at| at > now_ms() + REFRESH_AHEAD_MS) {
        Ok(Some(Secret::new(t.access_token)))
    } else {
        Err(ConnectorError::Unreachable(
            "the access token expires: waiting for the next run to refresh it".into(),
        ))
    }
}

/// Revokes a connector's tokens at its provider (RFC 7009: a form POST with the client's
/// credentials; the oauth2 crate takes only https revocation URLs, and loopback providers
/// are plain http), where it offers revocation. The refresh token is revoked (providers
/// revoke its grant with it), else the access token. A failure is logged, not fatal.
pub async fn revoke(core: &Core, c: &ConnectorRow) {
    let (Some(raw), Some(provider)) = (&c.tokens, &c.provider) else {
        return;
    };
    let Ok(t) = serde_json::from_str::<Tokens>(raw) else {
        return;
    };
    let Ok(Some(client)) = core.mesh.store.oauth_client(c.user_id, provider).await else {
        return;
    };
    let Some(url) = &client.revoke_url else { return };
    let (token, hint) = match &t.refresh_token {
        Some(r) => (r.as_str(), "refresh_token"),
        None => (t.access_token.as_str(), "access_token"),
    };
    let form = format!(
        "token={}&token_type_hint={hint}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let sent = match core.outbound.request(reqwest::Method::POST, url) {
        Ok(req) => {
            let req = req
                .basic_auth(&client.client_id, client.client_secret.as_deref())
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
            core.outbound.send(req).await.map(|r| r.status())
        }
        Err(e) => Err(e),
    };
    match sent {
        Ok(s) if s.is_success() => {}
        Ok(s) => {
            tracing::warn!(connector = c.id, provider = %provider, status = %s, "the provider did not revoke the tokens")
        }
        Err(e) => tracing::warn!(connector = c.id, provider = %provider, error = %e, "revoking the tokens failed"),
    }
}

/// A token endpoint's refusal in a few words (never the tokens themselves).
fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => r.to_string(),
        oauth2::RequestTokenError::Request(r) => format!("request failed: {r}"),
        oauth2::RequestTokenError::Parse(_, _) => "its answer was not a token response".into(),
        oauth2::RequestTokenError::Other(o) => o.chars().take(200).collect(),
    }
}

#[derive(Debug, thiserror::Error)]
enum OAuthHttpError {
    #[error(transparent)]
    Outbound(#[from] crate::net::OutboundError),
    #[error(transparent)]
    Http(#[from] oauth2::http::Error),
}

/// oauth2's requests through the outbound policy (no redirects followed, answers capped).
async fn oauth_http(out: Outbound, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, OAuthHttpError> {
    let (parts, body) = req.into_parts();
    let mut rb = out.request(parts.method, &parts.uri.to_string())?;
    for (k, v) in &parts.headers {
        rb = rb.header(k, v);
    }
    let resp = out.send(rb.body(body)).await?;
    let mut b = oauth2::http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        b = b.header(k, v);
    }
    let bytes = crate::net::read_capped(resp, MAX_ANSWER).await;
    Ok(b.body(bytes)?)
}
