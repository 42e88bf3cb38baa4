//! Content-addressed file storage on disk: `DATA_DIR/blobs/ab/abcdef…` named by SHA-256.
//! Uploads stream to a temporary file while hashing (never whole in memory), are fsynced,
//! then renamed into place, so a crash never leaves half a blob under its final name.

use std::path::{Path, PathBuf};

use axum::body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
    pub max_bytes: u64,
}

impl Blobs {
    pub fn new(data_dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Blobs { dir, max_bytes })
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
    pub async fn put(&self, body: Body) -> AppResult<(String, u64)> {
        self.put_expecting(body, None).await
    }

    /// Like `put`, but a body whose SHA-256 is not `expected` is refused and nothing is kept.
    pub async fn put_expecting(&self, body: Body, expected: Option<&str>) -> AppResult<(String, u64)> {
        let tmp = self.dir.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let result = self.write_tmp(&tmp, body).await;
        let (hash, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if let Some(want) = expected
            && want != hash
        {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(AppError::BadRequest(format!(
                "the body's SHA-256 is {hash}, not {want}: the upload was changed or cut short"
            )));
        }
        let Some(dest) = self.path(&hash) else {
            return Err(AppError::Internal(anyhow::anyhow!("bad hash")));
        };
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            tokio::fs::remove_file(&tmp).await.map_err(io)?; // deduplicated
        } else {
            tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
        }
        Ok((hash, size))
    }

    /// Where an interrupted upload of `sha256` by `user_id` waits to be resumed.
    fn partial(&self, user_id: i64, sha256: &str) -> Option<PathBuf> {
        self.path(sha256)?;
        Some(self.dir.join("partial").join(format!("{user_id}-{sha256}")))
    }

    /// Bytes of `sha256` already received from `user_id` in a resumable upload.
    pub async fn partial_len(&self, user_id: i64, sha256: &str) -> u64 {
        match self.partial(user_id, sha256) {
            Some(p) => tokio::fs::metadata(p).await.map_or(0, |m| m.len()),
            None => 0,
        }
    }

    /// One part of a resumable upload: `body` holds bytes `start..` of a `total`-byte blob.
    /// The part must start where the last one ended. Returns the bytes held so far, and the
    /// blob's size once the last part arrived and its SHA-256 matched (then it is stored and
    /// the partial file is gone; on a mismatch the partial file is dropped and 400 answered).
    pub async fn put_part(
        &self,
        user_id: i64,
        sha256: &str,
        start: u64,
        total: u64,
        mut body: Body,
    ) -> AppResult<(u64, Option<u64>)> {
        let path = self
            .partial(user_id, sha256)
            .ok_or_else(|| AppError::BadRequest("not a SHA-256".into()))?;
        if total > self.max_bytes {
            return Err(AppError::TooLarge(format!(
                "the file is larger than the limit of {} bytes",
                self.max_bytes
            )));
        }
        tokio::fs::create_dir_all(path.parent().unwrap_or(&self.dir))
            .await
            .map_err(io)?;
        let held = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        if start != held {
            return Err(AppError::Conflict(format!(
                "the upload continues at byte {held}, not {start} (Upload-Offset: {held})"
            )));
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io)?;
        let mut len = held;
        // Whatever arrived before an interruption is kept: the next part continues from it.
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else { continue };
            len += data.len() as u64;
            if len > total {
                drop(file);
                let _ = tokio::fs::remove_file(&path).await;
                return Err(AppError::BadRequest(format!("more than the {total} bytes announced")));
            }
            file.write_all(&data).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        if len < total {
            return Ok((len, None));
        }
        let whole = tokio::fs::File::open(&path).await.map_err(io)?;
        let result = self
            .put_expecting(
                Body::from_stream(tokio_util::io::ReaderStream::new(whole)),
                Some(sha256),
            )
            .await;
        let _ = tokio::fs::remove_file(&path).await;
        let (_, size) = result?;
        Ok((size, Some(size)))
    }

    async fn write_tmp(&self, tmp: &Path, mut body: Body) -> AppResult<(String, u64)> {
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| AppError::BadRequest(format!("upload interrupted: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > self.max_bytes {
                return Err(AppError::TooLarge(format!(
                    "the file is larger than the limit of {} bytes",
                    self.max_bytes
                )));
            }
            hasher.update(&data);
            file.write_all(&data).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        Ok((hex::encode(hasher.finalize()), size))
    }
}

fn io(e: std::io::Error) -> AppError {
    AppError::Internal(e.into())
}
