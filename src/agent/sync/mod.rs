//! One sync of a folder with its collection: scan the folder for local changes and record
//! each as a FeedSync change of its item (create, update, delete; a rename keeps the item),
//! push the changed items in batches (their blobs first, then one FeedSync feed of entries
//! with `sx:sync`, which the hub merges), pull every change after the cursor a page at a time
//! and merge it here with the same algorithm, and apply the merged items to disk one by one
//! in the hub's order: atomic writes, conflict copies, moves and deletions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod apply;
mod client;
mod pull;
mod push;
mod scan;

use super::index::{Index, Row, shown};
use crate::domain::entry::{Media, StoredItem};
use crate::domain::time::Timestamp;
use apply::Corrupt;
use scan::{hash_file, mtime_ns, same_stat, stat};

/// Entries asked for per page of the partial feed.
const PAGE: usize = 500;

/// Files larger than this go up in resumable parts of this size.
const PART: u64 = 16 << 20;

/// Changes sent in one FeedSync feed (the hub takes up to `mesh::MAX_FEED_ENTRIES`).
const BATCH: usize = 250;

/// Files up to this size come down in one piece.
const SMALL: u64 = 64 << 10;

/// Files up to this size go up many to a request (`POST /api/blobs`), at most `BATCH` files
/// and `BATCH_BYTES` bytes to one.
const BATCH_FILE: u64 = 1 << 20;
const BATCH_BYTES: u64 = 8 << 20;

/// A file to upload: its row, its content as the scan saw it, and its path.
type Upload<'a> = (&'a Row, &'a Media, &'a String);

/// Blobs moved at once each way.
const TRANSFERS: usize = 8;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub local_changes: usize,
    pub pushed: usize,
    pub uploaded_bytes: u64,
    pub pulled: usize,
    pub downloaded_bytes: u64,
    pub conflicts: usize,
}

pub struct Agent {
    http: reqwest::Client,
    hub: String,
    token: String,
    collection_url: String,
    /// The FeedSync `by` of this device: `user/device`, from the token.
    pub by: String,
    root: PathBuf,
    state: PathBuf,
    pub index: Index,
    /// Files and bytes moved, shown on a terminal (first runs move a whole folder).
    pub progress: Option<indicatif::ProgressBar>,
    /// What the agent itself did to the folder since the current sync began (see `own_doing`).
    pub own: OwnWrites,
}

/// What the agent left at a path it wrote to.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    File(u64, i64),
    Dir,
    Gone,
}

pub type OwnWrites = std::sync::Arc<std::sync::Mutex<HashMap<PathBuf, Expect>>>;

/// Whether the folder at `path` is as the agent left it (so a watcher event there is the
/// agent's own write, not a local change): the file it wrote, same size and mtime; the
/// folder it made; or nothing where it removed something.
pub fn own_doing(own: &OwnWrites, path: &Path) -> bool {
    let Some(expect) = own.lock().unwrap_or_else(|e| e.into_inner()).get(path).copied() else {
        return false;
    };
    match (expect, std::fs::symlink_metadata(path)) {
        (Expect::File(size, mtime), Ok(m)) => m.is_file() && m.len() == size && mtime_ns(&m) == mtime,
        (Expect::Dir, Ok(m)) => m.is_dir(),
        (Expect::Gone, Err(_)) => true,
        _ => false,
    }
}

impl Agent {
    /// The folder, as an absolute path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Scan, push, pull, apply.
    pub async fn sync(&self) -> anyhow::Result<Report> {
        self.sync_after(true).await
    }

    /// A sync; without `scan` the folder is not walked (nothing changed in it since the last
    /// scan; the hub did): local changes already recorded still go out.
    pub async fn sync_after(&self, scan: bool) -> anyhow::Result<Report> {
        self.own.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let started = std::time::Instant::now();
        let mut report = Report {
            local_changes: if scan { self.scan().await? } else { 0 },
            ..Report::default()
        };
        let scanned = started.elapsed();
        self.push(&mut report).await?;
        let pushed = started.elapsed();
        self.pull(&mut report).await?;
        tracing::debug!(?scanned, ?pushed, pulled = ?started.elapsed(), "sync phases (cumulative)");
        // An item shown elsewhere because another held its path takes it back once free.
        for mut row in self.index.displaced().await? {
            self.apply(&mut row, &mut report).await?;
        }
        report.conflicts = self.index.conflicts().await?.len();
        self.index.set_meta("last_sync", &Timestamp::now().rfc3339()).await?;
        Ok(report)
    }

    // ---- scan ----

    // ---- push ----

    fn show(&self, r: &Report) {
        if let Some(p) = &self.progress {
            p.set_position(r.uploaded_bytes + r.downloaded_bytes);
            p.set_message(format!("{} files up, {} down", r.pushed, r.pulled));
        }
    }

    // ---- pull ----

    // ---- apply ----
}

/// The item's versions as a local listing (for `agent status`).
pub fn describe(item: &StoredItem) -> String {
    let top = item.current.sync.topmost();
    format!(
        "{} by {}",
        top.and_then(|h| h.when).map(|w| w.rfc3339()).unwrap_or_default(),
        top.and_then(|h| h.by.clone()).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests;
