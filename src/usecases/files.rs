//! A user's files by content (SHA-256): uploaded whole, in resumable parts or many small
//! ones at once, and read back. The bytes are shared on disk (`crate::blobs`); the store
//! records which user holds which, and each user sees only their own.

use bytes::Bytes;

use super::Core;
use crate::blobs::{Part, Upload};
use crate::error::{Error, Result};

/// A SHA-256 as files are named: 64 lowercase hex digits.
pub fn checked(sha256: &str) -> Result<&str> {
    let ok = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(sha256)
        .ok_or_else(|| Error::Invalid("a blob is named by its SHA-256 in 64 lowercase hex digits".into()))
}

/// What an upload came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Uploaded {
    /// The user already had this file: nothing was read.
    Already,
    /// Stored whole: its size.
    Stored(u64),
    /// A part was kept: the bytes held so far (where the next part starts).
    Partial(u64),
}

/// Uploads the file named `sha256` for the user, whole or (with `part`) one resumable part
/// of it. A body whose SHA-256 is not the one named is refused and nothing is kept.
pub async fn upload(
    core: &Core,
    user_id: i64,
    sha256: &str,
    part: Option<Part>,
    body: impl Upload,
) -> Result<Uploaded> {
    let sha256 = checked(sha256)?;
    let (store, blobs) = (&core.mesh.store, &core.mesh.blobs);
    if store.blob_size(user_id, sha256).await?.is_some() {
        return Ok(Uploaded::Already);
    }
    let size = match part {
        Some(part) => match blobs.put_part(user_id, sha256, part, body).await? {
            (_, Some(size)) => size,
            (held, None) => return Ok(Uploaded::Partial(held)),
        },
        None => blobs.put_expecting(body, Some(sha256)).await?.1,
    };
    store.record_blob(user_id, sha256, size).await?;
    Ok(Uploaded::Stored(size))
}

/// Of many small files uploaded at once, which were new to the user and which they had.
#[derive(Debug, Default, serde::Serialize)]
pub struct Batch {
    pub created: Vec<String>,
    pub present: Vec<String>,
}

/// Stores many small files (SHA-256, bytes) at once: every one is checked before any is
/// stored (a mismatch refuses them all).
pub async fn upload_many(core: &Core, user_id: i64, parts: Vec<(String, Bytes)>) -> Result<Batch> {
    for (sha, _) in &parts {
        checked(sha)?;
    }
    let blobs = core.mesh.blobs.clone();
    let parts = tokio::task::spawn_blocking(move || blobs.store_many(&parts).map(|()| parts))
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    let list: Vec<(String, u64)> = parts
        .iter()
        .map(|(sha, bytes)| (sha.clone(), bytes.len() as u64))
        .collect();
    let new = core.mesh.store.record_blobs(user_id, &list).await?;
    let mut batch = Batch::default();
    for ((sha, _), new) in list.into_iter().zip(new) {
        if new {
            batch.created.push(sha);
        } else if !batch.created.contains(&sha) {
            batch.present.push(sha);
        }
    }
    Ok(batch)
}

/// A file as the user may read it.
pub enum Held {
    /// Stored: where, and its size.
    Stored(std::path::PathBuf, u64),
    /// Not stored (yet): how much of a resumable upload is here to continue from.
    Partial(u64),
}

pub async fn find(core: &Core, user_id: i64, sha256: &str) -> Result<Held> {
    let sha256 = checked(sha256)?;
    let Some(size) = core.mesh.store.blob_size(user_id, sha256).await? else {
        return Ok(Held::Partial(core.mesh.blobs.partial_len(user_id, sha256).await));
    };
    let path = core.mesh.blobs.path(sha256).ok_or(Error::NotFound("blob"))?;
    Ok(Held::Stored(path, size))
}

/// Stores the files a pulled item carries as blobs of the user's and links each from its
/// entry (`rel="enclosure"`, its type, name and length), the blob's address relative to the
/// hub. A file already held is not written again.
pub async fn attach(
    core: &Core,
    user_id: i64,
    mut entry: crate::domain::entry::Entry,
    files: Vec<feedmesh_connector::Attachment>,
) -> Result<crate::domain::entry::Entry> {
    use sha2::{Digest, Sha256};
    if files.is_empty() {
        return Ok(entry);
    }
    let mut parts = Vec::with_capacity(files.len());
    for f in files {
        let sha = hex::encode(Sha256::digest(&f.bytes));
        entry.links.push(crate::domain::entry::Link {
            href: format!("/api/blobs/{sha}"),
            rel: Some("enclosure".into()),
            media_type: Some(f.media_type),
            title: (!f.name.is_empty()).then_some(f.name),
            length: Some(f.bytes.len() as u64),
        });
        parts.push((sha, Bytes::from(f.bytes)));
    }
    let mut new = Vec::new();
    for (sha, bytes) in parts {
        if core.mesh.store.blob_size(user_id, &sha).await?.is_none() {
            new.push((sha, bytes));
        }
    }
    if !new.is_empty() {
        upload_many(core, user_id, new).await?;
    }
    Ok(entry)
}
