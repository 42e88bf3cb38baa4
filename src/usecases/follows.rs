//! Follows of outside feeds into a collection: added, listed and removed alike by
//! `feedmesh follow …` and `/api/follows`. The follow worker (`websub::subscriber`) does
//! the fetching, subscribing and, for a removed follow a hub pushes to, the unsubscribing.

use super::Core;
use crate::error::{Error, Result};
use crate::secrets;
use crate::store::{Collection, Follow};

/// Adds a follow of `url` into the user's `collection` and wakes the worker. The URL is
/// checked like every outbound request; `allow_private` is the serving hub's own setting
/// (the CLI passes true: `serve` judges private addresses when it fetches).
pub async fn add(
    core: &Core,
    user_id: i64,
    url: &str,
    collection: &str,
    allow_private: bool,
) -> Result<(Follow, Collection)> {
    let url = url.trim();
    crate::net::check_url(url, allow_private).map_err(|e| Error::Invalid(format!("url: {e}")))?;
    let col = core.mesh.collection(user_id, collection).await?;
    let token = secrets::generate("")?;
    let secret = secrets::generate("")?;
    let f = core
        .mesh
        .store
        .add_follow(user_id, col.id, url, &token, &secret)
        .await?;
    core.follow_wake.notify_one();
    Ok((f, col))
}

/// The user's follows, each with its collection's name.
pub async fn list(core: &Core, user_id: i64) -> Result<Vec<(Follow, String)>> {
    let store = &core.mesh.store;
    let collections = store.collections(user_id).await?;
    let name = |id: i64| {
        collections
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.to_string())
            .unwrap_or_default()
    };
    Ok(store
        .follows(user_id)
        .await?
        .into_iter()
        .map(|f| {
            let n = name(f.collection_id);
            (f, n)
        })
        .collect())
}

/// Removes a follow. One that a hub pushes to stays, `Leaving`, until the worker has told
/// the hub (so the CLI and the API end the outside subscription alike).
pub async fn remove(core: &Core, user_id: i64, id: i64) -> Result<()> {
    core.mesh.store.remove_follow(user_id, id).await?;
    core.follow_wake.notify_one();
    Ok(())
}
