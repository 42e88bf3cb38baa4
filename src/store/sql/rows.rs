//! Rows to values: one function per table shape the queries read.

use crate::domain::{Timestamp, UserName};
use crate::store::{ChangeKind, ChangeRecord, Collection, FeedKey, ItemRecord, Result, StoreError, TokenInfo, User};
use sqlx::Row;
use sqlx::any::AnyRow;

pub(super) fn seq(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn sql_seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn user_row(r: &AnyRow) -> Result<User> {
    let name: String = r.try_get("name")?;
    Ok(User {
        id: r.try_get("id")?,
        name: UserName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
    })
}

pub(super) fn token_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        device: r.try_get("device")?,
        prefix: r.try_get("prefix")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

pub(super) fn key_row(r: &AnyRow) -> Result<FeedKey> {
    Ok(FeedKey {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        user: r.try_get("user_name")?,
        feed_path: r.try_get("feed_path")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        derived: r.try_get::<Option<i64>, _>("self_generation")?.is_some(),
    })
}

pub(super) fn collection_row(r: &AnyRow) -> Result<Collection> {
    Ok(Collection {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        created_at: Timestamp::from_unix(r.try_get("created_at")?),
    })
}

pub(super) fn item_row(r: &AnyRow) -> Result<ItemRecord> {
    let doc: String = r.try_get("document")?;
    Ok(ItemRecord {
        seq: seq(r.try_get("seq")?),
        changed_at: Timestamp::from_unix(r.try_get("changed_at")?),
        item: serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("item document: {e}")))?,
    })
}

pub(super) fn change_row(r: &AnyRow) -> Result<ChangeRecord> {
    let version: String = r.try_get("version")?;
    let kind: String = r.try_get("kind")?;
    Ok(ChangeRecord {
        seq: seq(r.try_get("seq")?),
        collection: r.try_get("collection")?,
        sync_id: r.try_get("sync_id")?,
        endpoint: r.try_get("endpoint")?,
        kind: ChangeKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
        at: Timestamp::from_unix(r.try_get("at")?),
        version: serde_json::from_str(&version).map_err(|e| StoreError::Corrupt(format!("change version: {e}")))?,
        verb: r.try_get("verb")?,
        object_type: r.try_get("object_type")?,
    })
}
