//! Content-addressed file storage on disk: `DATA_DIR/blobs/ab/abcdef…` named by SHA-256.
//! Uploads stream to a temporary file while hashing (never whole in memory), are fsynced,
//! then renamed into place, so a crash never leaves half a blob under its final name.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// An upload as it arrives: chunks of bytes, or the reason the transfer broke off. The HTTP
/// edge hands request bodies in as this, so the store of files knows nothing of HTTP.
pub trait Upload: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin {}
impl<S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin> Upload for S {}

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
    pub max_bytes: u64,
    /// What one user's unfinished resumable uploads may hold together.
    pub max_partial_bytes: u64,
}

/// One part of a resumable upload: bytes `start..end` of a `total`-byte file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

impl Blobs {
    pub fn new(data_dir: &Path, max_bytes: u64, max_partial_bytes: u64) -> std::io::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Blobs {
            dir,
            max_bytes,
            max_partial_bytes,
        })
    }

    /// Removes temporary files older than `age`: uploads a crash cut short (never renamed
    /// into place, so nothing refers to them); and resumable uploads left for over a week.
    pub fn clean_tmp(&self, age: std::time::Duration) {
        Self::clean(&self.dir.join("tmp"), age);
        Self::clean(&self.dir.join("partial"), std::time::Duration::from_secs(7 * 86_400));
    }

    fn clean(dir: &Path, age: std::time::Duration) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|el| el >= age));
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.dir.join(&sha256[..2]).join(sha256))
    }

    /// Streams a body into the store; returns its SHA-256 (hex) and size.
    pub async fn put(&self, body: impl Upload) -> Result<(String, u64)> {
        self.put_expecting(body, None).await
    }

    /// Like `put`, but a body whose SHA-256 is not `expected` is refused and nothing is kept.
    /// A small body is gathered in memory and stored in one go; a larger one streams.
    pub async fn put_expecting(&self, mut body: impl Upload, expected: Option<&str>) -> Result<(String, u64)> {
        let mut head = Vec::new();
        let mut whole = true;
        while let Some(data) = body.next().await {
            let data = data.map_err(interrupted)?;
            head.extend_from_slice(&data);
            self.within_limit(head.len() as u64)?;
            if head.len() >= IN_MEMORY {
                whole = false;
                break;
            }
        }
        let tmp = self.dir.join("tmp").join(uuid::Uuid::new_v4().to_string());
        if whole {
            let (dir, want) = (self.clone(), expected.map(str::to_string));
            return tokio::task::spawn_blocking(move || dir.store_small(&tmp, &head, want.as_deref()))
                .await
                .map_err(|e| Error::Internal(e.into()))?;
        }
        let (hash, size) = match self.write_tmp(&tmp, head, body).await {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let (dir, want) = (self.clone(), expected.map(str::to_string));
        tokio::task::spawn_blocking(move || dir.place(&tmp, &hash, want.as_deref()).map(|()| (hash, size)))
            .await
            .map_err(|e| Error::Internal(e.into()))?
    }

    fn within_limit(&self, size: u64) -> Result<()> {
        if size > self.max_bytes {
            return Err(Error::TooLarge(format!(
                "the file is larger than the limit of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Stores a whole body held in memory: hashed, written to `tmp`, fsynced, put in place.
    fn store_small(&self, tmp: &Path, bytes: &[u8], expected: Option<&str>) -> Result<(String, u64)> {
        let hash = hex::encode(Sha256::digest(bytes));
        refuse_mismatch(&hash, expected)?;
        // Written and made durable even when the content is already here (another user's,
        // as like as not): a shortcut would tell by its speed who holds which file.
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(tmp);
            return Err(io(e));
        }
        self.place(tmp, &hash, None)?;
        Ok((hash, bytes.len() as u64))
    }

    /// Stores many small blobs (SHA-256 named, bytes) at once: all are checked before any is
    /// written; then each new one goes to a temporary file, one `syncfs` makes them all
    /// durable, and they are renamed into place. Blocking: call from a blocking thread.
    pub fn store_many(&self, blobs: &[(String, Bytes)]) -> Result<()> {
        for (want, bytes) in blobs {
            refuse_mismatch(&hex::encode(Sha256::digest(bytes)), Some(want))?;
        }
        let mut written = Vec::new();
        let mut planned = std::collections::HashSet::new();
        let result = (|| {
            for (sha, bytes) in blobs {
                let dest = self.path(sha).ok_or_else(|| Error::Invalid("not a SHA-256".into()))?;
                // Content already here is written again all the same (see `store_small`).
                if planned.insert(sha.as_str()) {
                    let tmp = self.dir.join("tmp").join(uuid::Uuid::new_v4().to_string());
                    std::fs::write(&tmp, bytes).map_err(io)?;
                    written.push((tmp, dest));
                }
            }
            if !written.is_empty() {
                syncfs(&self.dir.join("tmp")).map_err(io)?;
            }
            for (tmp, dest) in &written {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::rename(tmp, dest).map_err(io)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (tmp, _) in &written {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Moves a complete, fsynced temporary file whose SHA-256 is `hash` to its place (or
    /// drops it when the store already holds that content, or when `expected` differs).
    fn place(&self, tmp: &Path, hash: &str, expected: Option<&str>) -> Result<()> {
        let result = (|| {
            refuse_mismatch(hash, expected)?;
            let dest = self
                .path(hash)
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("bad hash")))?;
            if dest.exists() {
                return Ok(()); // deduplicated
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::rename(tmp, &dest).map_err(io)
        })();
        let _ = std::fs::remove_file(tmp);
        result
    }

    /// Where an interrupted upload of `sha256` by `user_id` waits to be resumed.
    fn partial(&self, user_id: i64, sha256: &str) -> Option<PathBuf> {
        self.path(sha256)?;
        Some(self.dir.join("partial").join(format!("{user_id}-{sha256}")))
    }

    /// Bytes held by `user_id`'s unfinished uploads other than `except`.
    async fn partial_bytes(&self, user_id: i64, except: &Path) -> u64 {
        let prefix = format!("{user_id}-");
        let Ok(mut dir) = tokio::fs::read_dir(self.dir.join("partial")).await else {
            return 0;
        };
        let mut sum = 0u64;
        while let Ok(Some(e)) = dir.next_entry().await {
            if e.file_name().to_string_lossy().starts_with(&prefix) && e.path() != except {
                sum = sum.saturating_add(e.metadata().await.map_or(0, |m| m.len()));
            }
        }
        sum
    }

    /// Bytes of `sha256` already received from `user_id` in a resumable upload.
    pub async fn partial_len(&self, user_id: i64, sha256: &str) -> u64 {
        match self.partial(user_id, sha256) {
            Some(p) => tokio::fs::metadata(p).await.map_or(0, |m| m.len()),
            None => 0,
        }
    }

    /// One part of a resumable upload: `body` holds bytes `part.start..part.end` of a
    /// `part.total`-byte blob. The part must start where the last one ended, and may not hold
    /// more than its range (then it is dropped and 400 answered; the upload stays where it
    /// was). A user's unfinished uploads together may hold at most `max_partial_bytes`.
    /// Returns the bytes held so far, and the blob's size once the last part arrived and its
    /// SHA-256 matched (then it is stored and the partial file is gone; on a mismatch the
    /// partial file is dropped and 400 answered).
    pub async fn put_part(
        &self,
        user_id: i64,
        sha256: &str,
        part: Part,
        mut body: impl Upload,
    ) -> Result<(u64, Option<u64>)> {
        let Part { start, end, total } = part;
        let path = self
            .partial(user_id, sha256)
            .ok_or_else(|| Error::Invalid("not a SHA-256".into()))?;
        if total > self.max_bytes {
            return Err(Error::TooLarge(format!(
                "the file is larger than the limit of {} bytes",
                self.max_bytes
            )));
        }
        tokio::fs::create_dir_all(path.parent().unwrap_or(&self.dir))
            .await
            .map_err(io)?;
        let held = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        if start != held {
            return Err(Error::Conflict(format!(
                "the upload continues at byte {held}, not {start} (Upload-Offset: {held})"
            )));
        }
        let others = self.partial_bytes(user_id, &path).await;
        if others.saturating_add(total) > self.max_partial_bytes {
            return Err(Error::TooLarge(format!(
                "unfinished uploads may hold {} bytes per user; {others} are held by others of yours, \
                 and this file needs {total}: finish or give up one first",
                self.max_partial_bytes
            )));
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io)?;
        let mut file = tokio::io::BufWriter::with_capacity(4 * IO_CHUNK, file);
        let mut len = held;
        // Whatever arrived before an interruption is kept: the next part continues from it.
        while let Some(data) = body.next().await {
            let Ok(data) = data else { break };
            len += data.len() as u64;
            if len > end {
                // More than the range said: this part is dropped, the upload stays at `held`.
                drop(file);
                let cut = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(held));
                if cut.is_err() {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                return Err(Error::Invalid(format!(
                    "the part holds more than the {} bytes of its Content-Range ({start}-{}/{total})",
                    end - start,
                    end.saturating_sub(1)
                )));
            }
            file.write_all(&data).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.get_mut().sync_all().await.map_err(io)?;
        drop(file);
        if len < total {
            return Ok((len, None));
        }
        // Complete: its hash checked, the partial file itself becomes the blob.
        let (store, want) = (self.clone(), sha256.to_string());
        tokio::task::spawn_blocking(move || {
            let hash = hash_file(&path).map_err(io)?;
            store.place(&path, &hash, Some(&want))
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
        Ok((len, Some(len)))
    }

    /// Streams `head` and then the rest of `body` to `tmp`, hashing; fsynced at the end.
    async fn write_tmp(&self, tmp: &Path, head: Vec<u8>, mut body: impl Upload) -> Result<(String, u64)> {
        let file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut file = tokio::io::BufWriter::with_capacity(4 * IO_CHUNK, file);
        let mut hasher = Sha256::new();
        let mut size = head.len() as u64;
        hasher.update(&head);
        file.write_all(&head).await.map_err(io)?;
        while let Some(data) = body.next().await {
            let data = data.map_err(interrupted)?;
            size += data.len() as u64;
            self.within_limit(size)?;
            hasher.update(&data);
            file.write_all(&data).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.get_mut().sync_all().await.map_err(io)?;
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// Bytes read or written at a time when files stream (tokio's default of 4 KiB makes a
/// large file a quarter of a million blocking calls per gigabyte).
pub const IO_CHUNK: usize = 256 << 10;

/// Bodies up to this size are gathered in memory and stored in one blocking call.
const IN_MEMORY: usize = 1 << 20;

fn interrupted(e: std::io::Error) -> Error {
    Error::Invalid(format!("upload interrupted: {e}"))
}

fn refuse_mismatch(hash: &str, expected: Option<&str>) -> Result<()> {
    match expected {
        Some(want) if want != hash => Err(Error::Invalid(format!(
            "the body's SHA-256 is {hash}, not {want}: the upload was changed or cut short"
        ))),
        _ => Ok(()),
    }
}

/// The SHA-256 (hex) of a file, read in chunks of up to 1 MiB. Blocking.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata().map_or(1 << 20, |m| m.len() as usize + 1);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; len.min(1 << 20)];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Makes everything written to the filesystem holding `dir` durable: one call for many
/// files, where an fsync each would wait for the disk once per file.
pub fn syncfs(dir: &Path) -> std::io::Result<()> {
    let d = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(std::io::Error::from)
}

fn io(e: std::io::Error) -> Error {
    Error::Internal(e.into())
}
