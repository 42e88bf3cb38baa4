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
