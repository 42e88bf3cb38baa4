//! Users, their devices' tokens and their collections: what `feedmesh user|token|collection`
//! do (and, later, the web app's account pages). Names are checked here, once.

use crate::domain::names::{CollectionName, DeviceName, UserName};
use crate::error::Result;
use crate::secrets;
use crate::store::{Collection, Store, TokenInfo, User};

pub async fn add_user(store: &dyn Store, name: &str) -> Result<User> {
    let name = UserName::parse(name)?;
    Ok(store.create_user(&name).await?)
}

pub async fn users(store: &dyn Store) -> Result<Vec<User>> {
    Ok(store.users().await?)
}

pub async fn user(store: &dyn Store, name: &str) -> Result<User> {
    Ok(store.user(name).await?)
}

/// A token just made: shown once, only its hash is stored.
pub struct IssuedToken {
    pub info: TokenInfo,
    pub token: String,
}

/// Makes a token for one of the user's devices (the device is its endpoint in the mesh).
pub async fn add_token(store: &dyn Store, user: &str, device: &str) -> Result<IssuedToken> {
    let user = UserName::parse(user)?;
    let device = DeviceName::parse(device)?;
    let token = secrets::generate("fm_")?;
    let info = store
        .add_token(&user, &device, &secrets::hash(&token), &secrets::display_prefix(&token))
        .await?;
    Ok(IssuedToken { info, token })
}

pub async fn tokens(store: &dyn Store, user: &str) -> Result<Vec<TokenInfo>> {
    let user = UserName::parse(user)?;
    store.user(user.as_str()).await?;
    Ok(store.tokens(&user).await?)
}

pub async fn revoke_token(store: &dyn Store, user: &str, id: i64) -> Result<()> {
    let user = UserName::parse(user)?;
    Ok(store.revoke_token(&user, id).await?)
}

pub async fn add_collection(store: &dyn Store, user_id: i64, name: &str) -> Result<Collection> {
    let name = CollectionName::parse(name)?;
    Ok(store.create_collection(user_id, &name).await?)
}

pub async fn collections(store: &dyn Store, user_id: i64) -> Result<Vec<Collection>> {
    Ok(store.collections(user_id).await?)
}
