//! Push: the changed items go to the hub in batches, their blobs first (small ones many to
//! a request, large ones alone and resumable), then one FeedSync feed of entries with
//! `sx:sync`, which the hub merges and answers with the merged items.

use super::*;
use crate::agent::index::Row;
use crate::domain::feedsync;
use crate::domain::time::Timestamp;
use crate::formats::EntryView;
use crate::formats::atom_in::{Incoming, parse_feed_document};
use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;

impl Agent {
    /// Sends the dirty items, `BATCH` at a time: a batch's blobs first (small files many to a
    /// request, larger ones alone and resumable), then its items as one FeedSync feed. The hub
    /// answers with the merged items, in order, and each is applied here as the hub merged it.
    /// The next batches' blobs go up while a batch's feed is sent and applied, so other devices
    /// see the first changes early.
    pub(super) async fn push(&self, report: &mut Report) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let dirty: Vec<Row> = self.index.dirty().await?;
        if dirty.is_empty() {
            return Ok(());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let uploads = async {
            let mut done = futures_util::stream::iter(dirty.chunks(BATCH))
                .map(|chunk| async move { (chunk, self.upload_chunk(chunk).await) })
                .buffered(2);
            while let Some(chunk) = done.next().await {
                if tx.send(chunk).await.is_err() {
                    break; // sending failed: the push stops
                }
            }
            drop(tx);
        };
        let sends = async {
            while let Some((chunk, uploaded)) = rx.recv().await {
                let mut postponed = HashSet::new();
                for (row, rel, result) in uploaded {
                    match result {
                        Ok(bytes) => report.uploaded_bytes += bytes,
                        Err(e) => {
                            // Changed since the scan, or unreadable: the next scan sees it again.
                            tracing::warn!(path = %rel, error = %format!("{e:#}"), "upload postponed");
                            postponed.insert(row.sync_id.as_str());
                        }
                    }
                }
                self.show(report);
                let ready: Vec<&Row> = chunk
                    .iter()
                    .filter(|r| !postponed.contains(r.sync_id.as_str()))
                    .collect();
                self.send_changes(&ready, report).await?;
            }
            anyhow::Ok(())
        };
        let ((), sent) = tokio::join!(uploads, sends);
        sent
    }

    /// Makes sure the hub holds the blobs of a batch of rows; the result of each file.
    pub(super) async fn upload_chunk<'a>(&self, rows: &'a [Row]) -> Vec<(&'a Row, &'a String, anyhow::Result<u64>)> {
        use futures_util::StreamExt;
        let files: Vec<Upload<'a>> = rows
            .iter()
            .filter_map(|row| {
                let cur = &row.item.current;
                match (cur.sync.deleted, &cur.payload.media, &row.path) {
                    (false, Some(m), Some(rel)) => Some((row, m, rel)),
                    _ => None,
                }
            })
            .collect();
        let (small, large): (Vec<_>, Vec<_>) = files.into_iter().partition(|(_, m, _)| m.size <= BATCH_FILE);
        let mut batches: Vec<Vec<Upload>> = vec![Vec::new()];
        let mut bytes = 0;
        for f in small {
            if bytes + f.1.size > BATCH_BYTES {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += f.1.size;
            if let Some(b) = batches.last_mut() {
                b.push(f);
            }
        }
        let mut out = Vec::new();
        for batch in batches.into_iter().filter(|b| !b.is_empty()) {
            out.extend(self.upload_many(batch).await);
        }
        let mut large = futures_util::stream::iter(large)
            .map(|(row, m, rel)| async move { (row, rel, self.upload(m, &self.root.join(rel)).await) })
            .buffer_unordered(TRANSFERS);
        while let Some(r) = large.next().await {
            out.push(r);
        }
        out
    }

    /// Sends rows as one FeedSync feed and applies what the hub merged of each.
    pub(super) async fn send_changes(&self, batch: &[&Row], report: &mut Report) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let resp = self
            .http
            .post(&self.collection_url)
            .bearer_auth(&self.token)
            .header("content-type", "application/atom+xml;type=feed")
            .body(changes_feed(batch))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.bytes().await?;
        if status == StatusCode::PAYLOAD_TOO_LARGE && batch.len() > 1 {
            // Over the hub's limit for one feed (long histories, many conflicts): halves.
            let (first, second) = batch.split_at(batch.len() / 2);
            Box::pin(self.send_changes(first, report)).await?;
            return Box::pin(self.send_changes(second, report)).await;
        }
        if !status.is_success() {
            bail!(
                "the hub refused {} changes: {status} {}",
                batch.len(),
                String::from_utf8_lossy(&text).trim()
            );
        }
        let merged = parse_feed_document(&text, Timestamp::now())?;
        if merged.len() != batch.len() {
            bail!("the hub answered {} of {} changes", merged.len(), batch.len());
        }
        for (sent, parsed) in batch.iter().zip(merged) {
            let Incoming::Sync(merged) = parsed.into_incoming() else {
                bail!("the hub answered an entry without sx:sync");
            };
            if merged.id() != sent.sync_id {
                bail!("the hub answered {} for {}", merged.id(), sent.sync_id);
            }
            // The hub's merge may hold more than we sent (conflicts, a newer winner).
            let mut row = self.index.row(&sent.sync_id).await?.unwrap_or_else(|| (*sent).clone());
            let local = std::mem::replace(&mut row.item, merged.clone());
            row.item = feedsync::merge(Some(&local), merged)?.item;
            row.dirty = false;
            self.apply(&mut row, report).await?;
            report.pushed += 1;
            self.show(report);
        }
        Ok(())
    }

    /// Sends small files in one `POST /api/blobs` (multipart, each part named by its SHA-256);
    /// a file that no longer has the content the scan saw is left out (it syncs next time).
    /// Returns, per file, the bytes the hub took as new.
    pub(super) async fn upload_many<'a>(
        &self,
        files: Vec<Upload<'a>>,
    ) -> Vec<(&'a Row, &'a String, anyhow::Result<u64>)> {
        let paths: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(_, m, rel)| (self.root.join(rel), m.sha256.clone()))
            .collect();
        let read = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|(path, want)| {
                    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    let got = hex::encode(Sha256::digest(&bytes));
                    if got != want {
                        bail!("changed since the scan");
                    }
                    Ok(bytes)
                })
                .collect::<Vec<anyhow::Result<Vec<u8>>>>()
        })
        .await;
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                return files
                    .into_iter()
                    .map(|(row, _, rel)| (row, rel, Err(anyhow!("{e}"))))
                    .collect();
            }
        };
        let mut form = reqwest::multipart::Form::new();
        let mut sent = Vec::new();
        let mut out = Vec::new();
        for ((row, m, rel), bytes) in files.into_iter().zip(read) {
            match bytes {
                Ok(b) => {
                    form = form.part(m.sha256.clone(), reqwest::multipart::Part::bytes(b));
                    sent.push((row, m, rel));
                }
                Err(e) => out.push((row, rel, Err(e))),
            }
        }
        if sent.is_empty() {
            return out;
        }
        #[derive(serde::Deserialize)]
        struct Stored {
            created: Vec<String>,
        }
        let answer = async {
            let resp = self
                .http
                .post(format!("{}/api/blobs", self.hub))
                .bearer_auth(&self.token)
                .multipart(form)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if !status.is_success() {
                bail!("{status} {}", String::from_utf8_lossy(&body).trim());
            }
            Ok(serde_json::from_slice::<Stored>(&body)?.created)
        }
        .await;
        match answer {
            Ok(created) => {
                // Bytes the hub took as new: a content sent for several files counts once.
                let mut created: HashSet<String> = created.into_iter().collect();
                out.extend(sent.into_iter().map(|(row, m, rel)| {
                    let n = if created.remove(&m.sha256) { m.size } else { 0 };
                    (row, rel, Ok(n))
                }));
            }
            Err(e) => {
                let msg = format!("{e:#}");
                out.extend(sent.into_iter().map(|(row, _, rel)| (row, rel, Err(anyhow!("{msg}")))));
            }
        }
        out
    }
}

/// The FeedSync feed of a device's changes: each item as it stands here, with `sx:sync`.
pub(super) fn changes_feed(rows: &[&Row]) -> String {
    let entries = rows
        .iter()
        .map(|row| {
            let id = format!("urn:feedmesh:item:{}", row.sync_id);
            EntryView {
                id: id.clone(),
                version: &row.item.current,
                sync: Some((&row.item.current.sync, row.item.conflicts.as_slice())),
                edit_url: None,
                edit_media_url: None,
                fallback_link: id,
                tags: Vec::new(),
                media_url: None,
                author: None,
                activity: None,
            }
        })
        .collect();
    crate::formats::atom_out::feed(&crate::formats::FeedView {
        id: "urn:feedmesh:changes".into(),
        title: "changes".into(),
        self_url: "urn:feedmesh:changes".into(),
        alternate_url: "urn:feedmesh:changes".into(),
        hub_url: None,
        updated: Timestamp::now(),
        author: "feedmesh agent".into(),
        next_url: None,
        sharing: None,
        entries,
    })
}
