//! Pull: every change after the cursor, a page at a time, merged here with the same FeedSync
//! algorithm as the hub; blobs fetched ahead of applying, several at once.

use super::*;
use crate::agent::index::Row;
use crate::domain::entry::{Media, StoredItem};
use crate::domain::feedsync::{self, MergeKind};
use crate::domain::time::Timestamp;
use crate::formats::atom_in::{Incoming, parse_feed_document};
use std::collections::HashMap;
use std::path::PathBuf;

impl Agent {
    pub(super) async fn pull(&self, report: &mut Report) -> anyhow::Result<()> {
        loop {
            let cursor = self.index.meta("cursor").await?.unwrap_or_else(|| "0".into());
            let resp = self
                .http
                .get(format!("{}?since={cursor}&limit={PAGE}", self.collection_url))
                .bearer_auth(&self.token)
                .send()
                .await?
                .error_for_status()?;
            let next = resp
                .headers()
                .get("feedmesh-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let entries = parse_feed_document(&resp.bytes().await?, Timestamp::now())?;
            let count = entries.len();
            let items: Vec<StoredItem> = entries
                .into_iter()
                .filter_map(|parsed| match parsed.into_incoming() {
                    Incoming::Sync(item) => Some(item),
                    Incoming::Plain(_) => None,
                })
                .collect();
            // The page's new content comes down several blobs at once; the items are then
            // applied one by one, in order, taking their content from what was fetched.
            self.prefetch(&items, report).await?;
            for incoming in items {
                let existing = self.index.row(incoming.id()).await?;
                let merged = feedsync::merge(existing.as_ref().map(|r| &r.item), incoming)?;
                if merged.kind == MergeKind::Unchanged {
                    continue;
                }
                let mut row = existing.unwrap_or_else(|| Row {
                    sync_id: merged.item.id().to_string(),
                    path: None,
                    sha256: None,
                    size: 0,
                    mtime_ns: 0,
                    ino: 0,
                    seen_ns: 0,
                    item: merged.item.clone(),
                    dirty: false,
                });
                row.item = merged.item;
                self.apply(&mut row, report).await?;
                report.pulled += 1;
                self.show(report);
            }
            self.drop_prefetched().await;
            if let Some(c) = next {
                self.index.set_meta("cursor", &c).await?;
            }
            if count < PAGE {
                return Ok(());
            }
        }
    }

    /// Fetches the blobs `items` show that this folder does not hold yet, `TRANSFERS` at a
    /// time, into `.feedmesh/tmp` (checked and fsynced, as `download` does), where `download`
    /// takes them from. A blob that fails here is fetched again when it is applied.
    pub(super) async fn prefetch(&self, items: &[StoredItem], report: &mut Report) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut wanted: HashMap<&str, &Media> = HashMap::new();
        let ids: Vec<&str> = items.iter().map(|i| i.id()).collect();
        let held = self.index.on_disk(&ids).await?;
        for item in items {
            let known = held.get(item.id());
            let versions = std::iter::once(&item.current).chain(item.conflicts.iter());
            for m in versions
                .filter(|v| !v.sync.deleted)
                .filter_map(|v| v.payload.media.as_ref())
            {
                if known != Some(&m.sha256) {
                    wanted.insert(&m.sha256, m);
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let mut fetches = futures_util::stream::iter(wanted.into_values())
            .map(|m| async move { (m, self.fetch_blob(m, &self.prefetched(&m.sha256), false).await) })
            .buffer_unordered(TRANSFERS);
        let mut fetched = false;
        while let Some((m, result)) = fetches.next().await {
            match result {
                Ok(n) => {
                    report.downloaded_bytes += n;
                    fetched = true;
                }
                Err(e) => tracing::debug!(blob = %m.sha256, error = %format!("{e:#}"), "prefetch failed"),
            }
            self.show(report);
        }
        drop(fetches);
        if fetched {
            // One flush for the whole page, before any of it is renamed into the folder.
            let tmp = self.state.join("tmp");
            tokio::task::spawn_blocking(move || crate::blobs::syncfs(&tmp)).await??;
        }
        Ok(())
    }

    /// Where `prefetch` keeps a blob until it is applied.
    pub(super) fn prefetched(&self, sha256: &str) -> PathBuf {
        self.state.join("tmp").join(format!("blob-{sha256}"))
    }

    /// Removes prefetched blobs no item took (a version already on disk, say).
    pub(super) async fn drop_prefetched(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(self.state.join("tmp")).await else {
            return;
        };
        while let Ok(Some(e)) = dir.next_entry().await {
            if e.file_name().to_string_lossy().starts_with("blob-") {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
    }
}
