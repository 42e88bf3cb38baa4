//! The hub client of a sync: connecting (who the token is, which collection), waiting for
//! remote changes (long-poll), and moving files: uploads (resumable in parts) and downloads
//! (streamed to a temporary file, checked against their SHA-256, then put in place).

use super::*;
use crate::agent::index::Index;
use crate::agent::paths::STATE_DIR;
use crate::domain::entry::Media;
use crate::domain::time::Timestamp;
use crate::formats::atom_in::parse_feed_document;
use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::io::AsyncWriteExt;

impl Agent {
    /// Opens the folder's index and asks the hub who the token is and where the collection is.
    pub async fn connect(hub: &str, token: &str, collection: &str, root: &Path) -> anyhow::Result<Agent> {
        crate::net::install_crypto();
        let root = std::fs::canonicalize(root).with_context(|| format!("no folder {}", root.display()))?;
        let state = root.join(STATE_DIR);
        let index = Index::open(&state).await?;
        // Downloads a crash cut short: never renamed into place, so only leftovers.
        let _ = std::fs::remove_dir_all(state.join("tmp"));
        let hub = hub.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("feedmesh-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        let resp = http
            .get(format!("{hub}/api/collections"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {hub}"))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            bail!("the hub refused the token (401): check --token");
        }
        let me: WhoAmI = serde_json::from_slice(&resp.error_for_status()?.bytes().await?)?;
        let collection_url = me
            .collections
            .iter()
            .find(|c| c.name == collection)
            .map(|c| c.url.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = me.collections.iter().map(|c| c.name.as_str()).collect();
                anyhow!(
                    "{} has no collection {collection:?} (there are: {})",
                    me.user,
                    names.join(", ")
                )
            })?;
        for (k, v) in [("hub", hub.as_str()), ("collection", collection)] {
            index.set_meta(k, v).await?;
        }
        Ok(Agent {
            http,
            hub,
            token: token.to_string(),
            collection_url,
            by: format!("{}/{}", me.user, me.device),
            root,
            state,
            index,
            progress: None,
            own: OwnWrites::default(),
        })
    }

    /// Holds a request until the collection changes after our cursor, or `secs` pass.
    /// Says whether there is news (a change after the cursor).
    pub async fn wait_remote(&self, secs: u64) -> anyhow::Result<bool> {
        let cursor = self.index.meta("cursor").await?.unwrap_or_else(|| "0".into());
        let body = self
            .http
            .get(format!("{}?since={cursor}&limit=1&wait={secs}", self.collection_url))
            .bearer_auth(&self.token)
            .timeout(std::time::Duration::from_secs(secs + 15))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        Ok(!parse_feed_document(&body, Timestamp::now())?.is_empty())
    }

    /// Makes sure the hub holds the file's blob; returns the bytes sent. Large files go up
    /// in parts (`Content-Range`), continuing after whatever an earlier, interrupted run sent.
    pub(super) async fn upload(&self, m: &Media, abs: &Path) -> anyhow::Result<u64> {
        let url = format!("{}/api/blobs/{}", self.hub, m.sha256);
        let head = self.http.head(&url).bearer_auth(&self.token).send().await?;
        if head.status().is_success() {
            return Ok(0); // content-addressed: never uploaded twice
        }
        if m.size > PART {
            let mut offset = head
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut sent = 0;
            loop {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let len = PART.min(m.size - offset);
                let mut file = tokio::fs::File::open(abs).await?;
                file.seek(std::io::SeekFrom::Start(offset)).await?;
                let part = tokio_util::io::ReaderStream::with_capacity(file.take(len), crate::blobs::IO_CHUNK);
                let resp = self
                    .http
                    .put(&url)
                    .bearer_auth(&self.token)
                    .header(
                        "content-range",
                        format!("bytes {offset}-{}/{}", offset + len - 1, m.size),
                    )
                    .header("content-length", len)
                    .body(reqwest::Body::wrap_stream(part))
                    .send()
                    .await?;
                sent += len;
                match resp.status() {
                    StatusCode::CREATED | StatusCode::NO_CONTENT => return Ok(sent),
                    StatusCode::ACCEPTED => {
                        offset = resp
                            .headers()
                            .get("upload-offset")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| anyhow!("the hub did not say where the upload continues"))?;
                    }
                    s => bail!("{s} {}", resp.text().await.unwrap_or_default().trim()),
                }
            }
        }
        let file = tokio::fs::File::open(abs).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            crate::blobs::IO_CHUNK,
        ));
        let resp = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .header("content-length", m.size)
            .body(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("{} {}", resp.status(), resp.text().await.unwrap_or_default().trim());
        }
        Ok(m.size)
    }

    /// Downloads a blob to `dest` atomically: a temporary file in `.feedmesh/tmp`, its
    /// SHA-256 checked, fsynced, then renamed over `dest`. Returns the bytes fetched.
    pub(super) async fn download(&self, m: &Media, dest: &Path) -> anyhow::Result<u64> {
        let ready = self.prefetched(&m.sha256);
        if ready.exists() && self.place(&ready, dest).is_ok() {
            return Ok(0); // counted when it was fetched
        }
        let tmp = self.state.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let n = self.fetch_blob(m, &tmp, true).await?;
        if let Err(e) = self.place(&tmp, dest) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        Ok(n)
    }

    /// Fetches a blob to `dest` atomically (see `download`); fsynced when `durable` (else the
    /// caller makes a batch durable at once).
    pub(super) async fn fetch_blob(&self, m: &Media, dest: &Path, durable: bool) -> anyhow::Result<u64> {
        let tmp_dir = self.state.join("tmp");
        let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
        let mut resp = self
            .http
            .get(format!("{}/api/blobs/{}", self.hub, m.sha256))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?;
        if m.size <= SMALL {
            // Small: checked in memory, then written, fsynced and renamed in one blocking call.
            let mut body = Vec::with_capacity(m.size as usize);
            while let Some(chunk) = resp.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > m.size {
                    return Err(Corrupt(format!(
                        "the blob {} is longer than its {} bytes: refused",
                        m.sha256, m.size
                    ))
                    .into());
                }
            }
            let got = hex::encode(Sha256::digest(&body));
            if got != m.sha256 {
                return Err(Corrupt(format!("the blob {} arrived as {got}: refused", m.sha256)).into());
            }
            let dest = dest.to_path_buf();
            return tokio::task::spawn_blocking(move || {
                let written = (|| {
                    use std::io::Write;
                    std::fs::create_dir_all(&tmp_dir)?;
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(&body)?;
                    if durable {
                        f.sync_all()?;
                    }
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(&tmp, &dest)
                })();
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                written.map(|()| body.len() as u64)
            })
            .await?
            .map_err(Into::into);
        }
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let result = async {
            let file = tokio::fs::File::create(&tmp).await?;
            let mut file = tokio::io::BufWriter::with_capacity(4 * crate::blobs::IO_CHUNK, file);
            let mut hasher = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await? {
                hasher.update(&chunk);
                n += chunk.len() as u64;
                if n > m.size {
                    return Err(Corrupt(format!(
                        "the blob {} is longer than its {} bytes: refused",
                        m.sha256, m.size
                    ))
                    .into());
                }
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            if durable {
                file.get_mut().sync_all().await?;
            }
            let got = hex::encode(hasher.finalize());
            if got != m.sha256 {
                return Err(Corrupt(format!("the blob {} arrived as {got}: refused", m.sha256)).into());
            }
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, dest).await?;
            anyhow::Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

#[derive(serde::Deserialize)]
pub(super) struct WhoAmI {
    user: String,
    device: String,
    collections: Vec<NamedUrl>,
}

#[derive(serde::Deserialize)]
pub(super) struct NamedUrl {
    name: String,
    url: String,
}
