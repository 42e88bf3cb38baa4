//! Feed keys: revocable secrets for one feed (in all its formats), for readers that cannot
//! send credentials. Created, listed and revoked alike by `feedmesh key …` and `/api/keys`.
//! Only a key's hash is stored; the key itself exists in clear in the answer that makes it.

use super::Core;
use crate::error::{Error, Result};
use crate::secrets;
use crate::store::{FeedKey, Store};

/// Which feed paths a user may hand out keys for.
pub fn owned_feed_path(user: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    (path.starts_with(&format!("/u/{user}/")) || path.starts_with(&format!("/atompub/{user}/"))) && !path.contains("..")
}

/// A feed key is bound to one feed in all its formats: its path without the extension.
pub fn feed_key_path(path: &str) -> &str {
    [".atom", ".rss", ".json"]
        .iter()
        .find_map(|ext| path.strip_suffix(ext))
        .unwrap_or(path)
}

/// A key just made: the only time it is seen in clear.
pub struct IssuedKey {
    pub id: i64,
    /// The feed's path (`/u/alice/stream.atom`).
    pub path: String,
    pub key: String,
    /// The feed's URL with the key: what a reader subscribes to.
    pub url: String,
}

/// Makes a key for one of `user`'s feeds. `feed` is a path or a URL under `base_url`.
pub async fn create(store: &dyn Store, user_id: i64, user: &str, feed: &str, base_url: &str) -> Result<IssuedKey> {
    let base_url = base_url.trim_end_matches('/');
    let path = feed.strip_prefix(base_url).unwrap_or(feed);
    if !owned_feed_path(user, path) {
        return Err(Error::Invalid(format!(
            "feed {feed:?} is not one of your feeds (expected /u/{user}/… or /atompub/{user}/…)"
        )));
    }
    let path = path.split('?').next().unwrap_or(path).to_string();
    let key = secrets::generate("fk_")?;
    let stored = store
        .add_feed_key(user_id, feed_key_path(&path), &secrets::hash(&key))
        .await?;
    Ok(IssuedKey {
        id: stored.id,
        url: format!("{base_url}{path}?key={key}"),
        path,
        key,
    })
}

pub async fn list(store: &dyn Store, user_id: i64) -> Result<Vec<FeedKey>> {
    Ok(store.feed_keys(user_id).await?)
}

/// Revokes one of the user's keys: it opens nothing from now on. (Its WebSub subscriptions
/// end too: `websub::hub::revoke_key` is this and that, and what the CLI and API call.)
pub async fn revoke(core: &Core, user_id: i64, id: i64) -> Result<()> {
    Ok(core.mesh.store.revoke_feed_key(user_id, id).await?)
}
