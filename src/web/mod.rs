//! HTTP: the one table of routes, shared state, and helpers. Handlers only translate a
//! request into one use-case call and its result into a response.

mod account;
mod assets;
mod atompub;
mod auth;
mod blobs;
mod cache;
mod collections;
mod connectors;
mod contacts;
mod error;
mod feeds;
mod fever;
mod files;
mod follows;
mod greader;
mod hub;
mod keys;
mod miniflux;
mod oauth;
mod pages;
mod people;
mod search;
mod services;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::store::{FeedKey, Principal};
use crate::ttl::TtlMap;
use crate::websub::WebSub;

pub use cache::FeedCache;

/// What the handlers share: the WebSub side (and through it the use cases' [`Core`]),
/// plus what only HTTP needs: the body limit, the feed cache and the credential caches.
/// Dereferences to [`WebSub`], which dereferences to [`Core`].
///
/// [`Core`]: crate::usecases::Core
pub struct AppState {
    pub websub: Arc<WebSub>,
    /// Largest Atom entry body accepted, in bytes.
    pub max_entry_bytes: usize,
    pub cache: FeedCache,
    /// Read-path credentials (token or key hash → who), trusted for at most a second.
    pub principals: TtlMap<[u8; 32], Principal>,
    pub feed_keys: TtlMap<[u8; 32], FeedKey>,
    /// Self keys by (user, hash of the feed key path), trusted for at most a second.
    pub self_keys: TtlMap<(i64, u64), Arc<str>>,
    /// Failed password attempts: 10 per client address and 10 per user name in 5 minutes.
    pub failed_logins: session::FailedLogins,
}

impl AppState {
    pub fn new(websub: Arc<WebSub>, max_entry_bytes: usize) -> Self {
        let second = std::time::Duration::from_secs(1);
        AppState {
            websub,
            max_entry_bytes,
            cache: FeedCache::new(4096),
            principals: TtlMap::new(second, 100_000),
            feed_keys: TtlMap::new(second, 100_000),
            self_keys: TtlMap::new(second, 100_000),
            failed_logins: session::FailedLogins::new(std::time::Duration::from_secs(300), 10, 10),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = WebSub;
    fn deref(&self) -> &WebSub {
        &self.websub
    }
}

pub type SharedState = Arc<AppState>;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/", get(pages::landing))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", axum::routing::post(session::logout))
        .route("/static/{file}", get(assets::file))
        .route("/healthz", get(pages::health))
        .route("/events", get(pages::events))
        .route("/devices", get(pages::devices).post(pages::add_device))
        .route("/devices/{id}/revoke", axum::routing::post(pages::revoke_device))
        .route("/contacts", get(people::list).post(people::create))
        .route(
            "/contacts/import",
            axum::routing::post(people::import).layer(axum::extract::DefaultBodyLimit::max(contacts::MAX_IMPORT)),
        )
        .route("/contacts/merges/{merge_id}/undo", axum::routing::post(people::undo))
        .route("/contacts/{id}", get(people::show))
        .route("/contacts/{id}/notes", axum::routing::post(people::add_note))
        .route("/contacts/{id}/notes/{note}", axum::routing::post(people::edit_note))
        .route("/contacts/{id}/merge", axum::routing::post(people::merge))
        .route("/search", get(search::search))
        .route("/views", axum::routing::post(search::save))
        .route("/views/{name}", get(search::view))
        .route("/views/{name}/delete", axum::routing::post(search::delete))
        .route("/files", get(collections::index))
        .route("/files/{collection}", get(collections::collection))
        .route("/files/{collection}/item", get(collections::item))
        .route("/conflicts", get(collections::conflicts))
        .route("/conflicts/item", get(collections::conflict))
        .route("/conflicts/resolve", axum::routing::post(collections::resolve))
        .route("/connectors", get(services::index).post(services::add))
        .route("/connectors/{id}/{action}", axum::routing::post(services::act))
        .route("/feeds", get(pages::feeds))
        .route("/feeds/keys/{id}/revoke", axum::routing::post(pages::revoke_key))
        .route("/u/{user}/feeds.opml", get(pages::opml))
        .route("/hub", axum::routing::post(hub::request))
        .route("/atompub", get(atompub::service))
        .route(
            "/atompub/{user}/{collection}",
            get(feeds::collection).post(atompub::create),
        )
        .route(
            "/atompub/{user}/{collection}/{id}",
            get(atompub::read).put(atompub::replace).delete(atompub::remove),
        )
        .route("/atompub/{user}/{collection}/{id}/media", get(atompub::media))
        .route("/u/{user}/{feed}", get(feeds::user_stream))
        .route("/u/{user}/endpoints/{device}/{feed}", get(feeds::endpoint_stream))
        .route("/u/{user}/views/{feed}", get(feeds::view))
        .route("/u/{user}/{kind}/{id}/{feed}", get(feeds::timeline))
        .route("/api/keys", get(keys::list).post(keys::create))
        .route("/api/devices", get(account::devices).post(account::add_device))
        .route("/api/devices/{id}", axum::routing::delete(account::revoke_device))
        .route(
            "/api/app-passwords",
            get(account::app_passwords).post(account::add_app_password),
        )
        .route(
            "/api/app-passwords/{id}",
            axum::routing::delete(account::revoke_app_password),
        )
        .route("/api/conflicts", get(account::conflicts))
        .route("/api/conflicts/item", get(account::conflict))
        .route("/api/conflicts/resolve", axum::routing::post(account::resolve))
        .route("/api/keys/{id}", axum::routing::delete(keys::revoke))
        .route(
            "/api/blobs",
            axum::routing::post(blobs::post_many).layer(axum::extract::DefaultBodyLimit::max(blobs::BATCH_BYTES)),
        )
        .route("/api/blobs/{sha256}", get(blobs::get).put(blobs::put))
        .route("/api/collections", get(atompub::collections))
        .route("/api/contacts", get(contacts::list).post(contacts::create))
        .route("/api/activities", axum::routing::post(contacts::post_activity))
        .route(
            "/api/contacts/import",
            axum::routing::post(contacts::import).layer(axum::extract::DefaultBodyLimit::max(contacts::MAX_IMPORT)),
        )
        .route("/api/contacts/export", get(contacts::export))
        .route("/api/contacts/suggestions", get(contacts::suggestions))
        .route(
            "/api/contacts/merges/{merge_id}/undo",
            axum::routing::post(contacts::undo),
        )
        .route(
            "/api/contacts/{id}",
            get(contacts::get).patch(contacts::patch).delete(contacts::delete),
        )
        .route("/api/contacts/{id}/merge", axum::routing::post(contacts::merge))
        .route("/api/contacts/{id}/notes", axum::routing::post(contacts::note))
        .route("/api/companies", get(contacts::companies))
        .route("/api/views", get(contacts::views).post(contacts::create_view))
        .route("/api/views/{name}", axum::routing::delete(contacts::delete_view))
        .route("/api/connectors", get(connectors::list).post(connectors::create))
        .route("/api/connectors/{id}", get(connectors::show).delete(connectors::remove))
        .route("/api/connectors/{id}/{action}", axum::routing::post(connectors::act))
        .route("/api/routes", get(connectors::list_routes).post(connectors::add_route))
        .route("/api/routes/{id}", axum::routing::delete(connectors::remove_route))
        .route(
            "/api/oauth-clients",
            get(oauth::list_clients).post(oauth::create_client),
        )
        .route(
            "/api/oauth-clients/{provider}",
            axum::routing::delete(oauth::remove_client),
        )
        .route("/oauth/callback", get(oauth::callback))
        .route("/api/follows", get(follows::list).post(follows::create))
        .route("/api/follows/{id}", axum::routing::delete(follows::remove))
        .route("/websub/callback/{token}", get(follows::verify).post(follows::receive))
        .route("/api/greader/{*rest}", axum::routing::any(greader::dispatch))
        .route("/api/fever", get(fever::call).post(fever::call))
        .route("/api/fever/", get(fever::call).post(fever::call))
        // Where FreshRSS serves it, which Fever clients such as freshrss-api hard-code.
        .route("/api/fever.php", get(fever::call).post(fever::call))
        .nest("/api/miniflux/v1", miniflux_routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), session::csrf))
        .with_state(state)
        .layer(axum::middleware::map_response(files::common_headers))
}

/// The Miniflux API v1 subset (`miniflux.rs`).
fn miniflux_routes() -> Router<SharedState> {
    use axum::routing::put;
    Router::new()
        .route("/me", get(miniflux::me))
        .route("/categories", get(miniflux::categories))
        .route("/categories/{id}/entries", get(miniflux::category_entries_route))
        .route("/feeds", get(miniflux::feeds))
        .route("/feeds/{id}", get(miniflux::feed))
        .route("/feeds/{id}/entries", get(miniflux::feed_entries))
        .route("/feeds/{id}/mark-all-as-read", put(miniflux::feed_read))
        .route("/entries", get(miniflux::entries).put(miniflux::set_status))
        .route("/entries/{id}", get(miniflux::entry))
        .route("/entries/{id}/bookmark", put(miniflux::bookmark))
}

/// What pages may load: only this hub's own stylesheet, script, images and forms.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An HTML page as a response: never cached by shared caches, under the page CSP.
pub fn html(body: String) -> Response {
    let mut resp = Html(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

/// A request body as the use cases take an upload: a stream of bytes, an interruption an
/// I/O error.
pub(crate) fn upload(body: axum::body::Body) -> impl crate::blobs::Upload {
    use futures_util::StreamExt;
    body.into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
}
