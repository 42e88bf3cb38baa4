//! One sync of a folder with its collection: scan the folder for local changes and record
//! each as a FeedSync change of its item (create, update, delete; a rename keeps the item),
//! push the changed items in batches (their blobs first, then one FeedSync feed of entries
//! with `sx:sync`, which the hub merges), pull every change after the cursor a page at a time
//! and merge it here with the same algorithm, and apply the merged items to disk one by one
//! in the hub's order: atomic writes, conflict copies, moves and deletions.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::index::{Index, Row, Stat};
use super::paths::{self, Ignores, STATE_DIR};
use crate::domain::entry::{Entry, Media, StoredItem, Text};
use crate::domain::feedsync::{self, MergeKind, Resolve};
use crate::domain::time::Timestamp;
use crate::formats::EntryView;
use crate::formats::atom_in::{Incoming, parse_feed_document};

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

#[derive(serde::Deserialize)]
struct WhoAmI {
    user: String,
    device: String,
    collections: Vec<NamedUrl>,
}

#[derive(serde::Deserialize)]
struct NamedUrl {
    name: String,
    url: String,
}

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

    // ---- scan ----

    /// Records every local change since the last scan as a FeedSync change; returns how many.
    async fn scan(&self) -> anyhow::Result<usize> {
        let root = self.root.clone();
        let files = tokio::task::spawn_blocking(move || walk(&root)).await??;
        // What the index last saw at each path; whole rows are read only for what changed.
        let copies: HashMap<String, String> = self.index.conflicts().await?.into_iter().collect();
        let mut by_path: HashMap<String, Stat> = self
            .index
            .stats()
            .await?
            .into_iter()
            .map(|s| (s.path.clone(), s))
            .collect();
        let mut changes = 0;
        let mut new_files = Vec::new();
        let mut present = HashSet::new();
        let mut changed = Vec::new();
        for f in files {
            let own = by_path.contains_key(&f.rel);
            if copies.contains_key(&f.rel) || (paths::is_conflict_copy(&f.rel) && !own) {
                continue;
            }
            present.insert(f.rel.clone());
            match by_path.get(&f.rel) {
                Some(row) if unchanged(row, &f) => {}
                Some(_) => changed.push(f),
                None => new_files.push(f),
            }
        }
        // Every file that may have changed is read once, on all cores.
        let mut hashes = hash_files(changed.iter().chain(&new_files).map(|f| f.abs.clone()).collect()).await?;
        let mut out = Vec::new();
        for f in changed {
            let Some(mut row) = self.index.row_at(&f.rel).await? else {
                continue;
            };
            let sha = hashes.remove(&f.abs).unwrap_or_default();
            if row.sha256.as_deref() != Some(sha.as_str()) {
                self.change(&mut row, &f.rel, &sha, f.size, true).await?;
                changes += 1;
            }
            record(&mut row, &f);
            out.push(row);
        }
        // Gone from disk: deleted, or renamed (the same content under a new name).
        by_path.retain(|p, _| !present.contains(p));
        let gone: Vec<&str> = by_path.values().map(|s| s.sync_id.as_str()).collect();
        let mut missing: Vec<Row> = self.index.rows_of(&gone).await?;
        missing.retain(|r| !r.item.current.sync.deleted);
        for f in new_files {
            let sha = hashes.remove(&f.abs).unwrap_or_default();
            let mut row = match missing.iter().position(|r| r.sha256.as_deref() == Some(sha.as_str())) {
                // A rename: the same item (and blob) under its new path, nothing uploaded.
                Some(i) => {
                    let mut row = missing.swap_remove(i);
                    self.change(&mut row, &f.rel, &sha, f.size, false).await?;
                    row
                }
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    let entry = file_entry(&f.rel, &sha, f.size);
                    Row {
                        sync_id: id.clone(),
                        path: Some(f.rel.clone()),
                        sha256: Some(sha),
                        size: f.size,
                        mtime_ns: 0,
                        ino: 0,
                        seen_ns: 0,
                        item: feedsync::create(id, &self.by, Timestamp::now(), false, entry),
                        dirty: true,
                    }
                }
            };
            record(&mut row, &f);
            out.push(row);
            changes += 1;
        }
        for mut row in missing {
            feedsync::update(&mut row.item, &self.by, Timestamp::now(), None, true);
            row.path = None;
            row.sha256 = None;
            row.dirty = true;
            out.push(row);
            changes += 1;
        }
        self.index.put_many(&out).await?;
        // A conflict copy deleted here resolves its conflict: the file at the path wins.
        for (copy, sync_id) in &copies {
            if self.root.join(copy).exists() {
                continue;
            }
            if let Some(mut row) = self.index.row(sync_id).await?
                && row.item.has_conflicts()
            {
                let payload = row.item.current.payload.clone();
                let deleted = row.item.current.sync.deleted;
                feedsync::resolve(
                    &mut row.item,
                    &self.by,
                    Timestamp::now(),
                    Some(payload),
                    deleted,
                    Resolve::All,
                );
                row.dirty = true;
                self.index.put(&row).await?;
                changes += 1;
            }
            self.remove_copies(sync_id, &HashSet::new()).await?;
        }
        Ok(changes)
    }

    /// A local edit (or rename) of an item: an update, or a resolution when it has conflicts.
    async fn change(
        &self,
        row: &mut Row,
        rel: &str,
        sha: &str,
        size: u64,
        resolve_conflicts: bool,
    ) -> anyhow::Result<()> {
        let entry = file_entry(rel, sha, size);
        let now = Timestamp::now();
        if resolve_conflicts && row.item.has_conflicts() {
            feedsync::resolve(&mut row.item, &self.by, now, Some(entry), false, Resolve::All);
            self.remove_copies(&row.sync_id, &HashSet::new()).await?;
        } else {
            feedsync::update(&mut row.item, &self.by, now, Some(entry), false);
        }
        row.path = Some(rel.to_string());
        row.sha256 = Some(sha.to_string());
        row.size = size;
        row.dirty = true;
        Ok(())
    }

    // ---- push ----

    /// Sends the dirty items, `BATCH` at a time: a batch's blobs first (small files many to a
    /// request, larger ones alone and resumable), then its items as one FeedSync feed. The hub
    /// answers with the merged items, in order, and each is applied here as the hub merged it.
    /// The next batches' blobs go up while a batch's feed is sent and applied, so other devices
    /// see the first changes early.
    async fn push(&self, report: &mut Report) -> anyhow::Result<()> {
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
    async fn upload_chunk<'a>(&self, rows: &'a [Row]) -> Vec<(&'a Row, &'a String, anyhow::Result<u64>)> {
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
    async fn send_changes(&self, batch: &[&Row], report: &mut Report) -> anyhow::Result<()> {
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

    fn show(&self, r: &Report) {
        if let Some(p) = &self.progress {
            p.set_position(r.uploaded_bytes + r.downloaded_bytes);
            p.set_message(format!("{} files up, {} down", r.pushed, r.pulled));
        }
    }

    /// Sends small files in one `POST /api/blobs` (multipart, each part named by its SHA-256);
    /// a file that no longer has the content the scan saw is left out (it syncs next time).
    /// Returns, per file, the bytes the hub took as new.
    async fn upload_many<'a>(&self, files: Vec<Upload<'a>>) -> Vec<(&'a Row, &'a String, anyhow::Result<u64>)> {
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

    /// Makes sure the hub holds the file's blob; returns the bytes sent. Large files go up
    /// in parts (`Content-Range`), continuing after whatever an earlier, interrupted run sent.
    async fn upload(&self, m: &Media, abs: &Path) -> anyhow::Result<u64> {
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

    // ---- pull ----

    async fn pull(&self, report: &mut Report) -> anyhow::Result<()> {
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
    async fn prefetch(&self, items: &[StoredItem], report: &mut Report) -> anyhow::Result<()> {
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
    fn prefetched(&self, sha256: &str) -> PathBuf {
        self.state.join("tmp").join(format!("blob-{sha256}"))
    }

    /// Removes prefetched blobs no item took (a version already on disk, say).
    async fn drop_prefetched(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(self.state.join("tmp")).await else {
            return;
        };
        while let Ok(Some(e)) = dir.next_entry().await {
            if e.file_name().to_string_lossy().starts_with("blob-") {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
    }

    // ---- apply ----

    /// Applies `row`, then every item that may now take a path it gave up (an item shown under
    /// a conflict-copy name because another held its path moves back when that one leaves).
    async fn apply(&self, row: &mut Row, report: &mut Report) -> anyhow::Result<()> {
        let mut freed = Vec::new();
        let before = row.path.clone();
        self.apply_one(row, report).await?;
        if before.is_some() && before != row.path {
            freed.extend(before);
        }
        let mut rounds = 0;
        while let Some(path) = freed.pop() {
            rounds += 1;
            if rounds > 1000 {
                break;
            }
            for mut other in self.index.claiming(&path, "").await? {
                if other.path.as_deref() == Some(path.as_str()) {
                    continue;
                }
                let before = other.path.clone();
                self.apply_one(&mut other, report).await?;
                if before.is_some() && before != other.path {
                    freed.extend(before);
                }
            }
        }
        Ok(())
    }

    /// Makes the disk show `row.item`: the winner at its path, each live losing version in a
    /// conflict copy; then stores the row.
    async fn apply_one(&self, row: &mut Row, report: &mut Report) -> anyhow::Result<()> {
        // Edit beats delete: when a deletion won against concurrent edits, the best edit is
        // shown at the path. Its author's device makes that so in the item (an update, which
        // keeps the other edits as conflicts), so exactly one device writes the change.
        let cur = match shown(&row.item).cloned() {
            Some(edit) if row.item.current.sync.deleted => {
                if edit.sync.topmost().and_then(|h| h.by.as_deref()) == Some(self.by.as_str()) {
                    feedsync::update(
                        &mut row.item,
                        &self.by,
                        Timestamp::now(),
                        Some(edit.payload.clone()),
                        false,
                    );
                    row.dirty = true;
                }
                edit
            }
            _ => row.item.current.clone(),
        };
        let target = match (&cur.payload.media, cur.sync.deleted) {
            (Some(m), false) => match m.slug.as_deref().map(|rel| (rel, paths::resolve(&self.root, rel))) {
                Some((rel, Ok(abs))) => Some((rel.to_string(), abs, m.clone())),
                Some((rel, Err(e))) => {
                    tracing::error!(error = %e, path = rel, "refused a path from the hub; nothing applied");
                    self.index.put(row).await?;
                    return Ok(());
                }
                None => None,
            },
            _ => None,
        };
        let Some((mut rel, mut abs, media)) = target else {
            // Deleted (or not a file): remove what we wrote, unless it changed here since.
            if let Some(old) = row.path.take() {
                self.remove_if_unchanged(&old, row.sha256.as_deref()).await?;
            }
            row.sha256 = None;
            self.remove_copies(&row.sync_id, &HashSet::new()).await?;
            return self.index.put(row).await;
        };
        // Two items may name one path (both devices created `a.txt`): the FeedSync winner
        // keeps it, the other is shown next to it under a conflict-copy name.
        let wanted = rel.clone();
        let rivals = self.index.claiming(&rel, &row.sync_id).await?;
        if rivals.iter().any(|o| !keeps_path(row, o)) {
            let alt = alt_path(row, &rel);
            match paths::resolve(&self.root, &alt) {
                Ok(a) => (rel, abs) = (alt, a),
                Err(_) => return self.index.put(row).await,
            }
        } else {
            for mut o in rivals.into_iter().filter(|o| o.path.as_deref() == Some(rel.as_str())) {
                let alt = alt_path(&o, &rel);
                if let Ok(to) = paths::resolve(&self.root, &alt)
                    && self.place(&abs, &to).is_ok()
                {
                    o.path = Some(alt);
                    if let Ok(m) = std::fs::metadata(&to) {
                        stat(&mut o, &m);
                    }
                } else {
                    o.path = None;
                }
                self.index.put(&o).await?;
            }
        }
        // A folder where the file would go (one device made `x`, another `x/y.txt`): the
        // folder keeps the name, the file is shown next to it, as when an item holds its path.
        if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            let alt = alt_path(row, &wanted);
            match paths::resolve(&self.root, &alt) {
                Ok(a) => (rel, abs) = (alt, a),
                Err(_) => return self.index.put(row).await,
            }
        }
        // And the other way round: a synced file where a folder of this path would go moves
        // aside to its own shown-next-to name.
        if !self.clear_parents(&abs, &row.sync_id).await? {
            tracing::warn!(path = %rel, "a file that is not synced yet is where a folder of this path would go; applied later");
            return self.index.put(row).await;
        }
        let on_disk = match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {
                tracing::error!(path = %rel, "a folder is where this file would go; left as it is");
                return self.index.put(row).await;
            }
            // The file the index recorded at this path, untouched since by size, mtime and
            // inode: its hash is known. Trusted when that leaves the file as it is (the next
            // scan re-reads a racy file anyway), or when the record is not racy.
            Ok(m)
                if row.path.as_deref() == Some(rel.as_str())
                    && same_stat(row, &m)
                    && (row.sha256.as_deref() == Some(media.sha256.as_str())
                        || row.mtime_ns + 2_000_000_000 < row.seen_ns) =>
            {
                row.sha256.clone()
            }
            Ok(_) => Some(hash_file(&abs).await?),
            Err(_) => None,
        };
        if on_disk.as_deref() != Some(media.sha256.as_str()) {
            let ours = row.path.as_deref() == Some(rel.as_str()) && on_disk == row.sha256;
            if on_disk.is_some() && !ours && self.index_owner_changed(&rel, on_disk.as_deref()).await? {
                // Someone edited the file here and the scan has not seen it: not overwritten.
                tracing::warn!(path = %rel, "a local edit is newer; it syncs next and may conflict");
                return self.index.put(row).await;
            }
            let moved = match row.path.as_deref() {
                Some(old) if old != rel && row.sha256.as_deref() == Some(media.sha256.as_str()) => {
                    let from = self.root.join(old);
                    let done = self.place(&from, &abs).is_ok();
                    if done {
                        self.prune_empty_dirs(&from).await;
                    }
                    done
                }
                _ => false,
            };
            if !moved {
                match self.download(&media, &abs).await {
                    Ok(n) => report.downloaded_bytes += n,
                    Err(e) if e.is::<Corrupt>() => {
                        // Refused: the disk and the index stay as they were; nothing of this
                        // version is written. (Any other failure ends the sync, to be retried.)
                        tracing::error!(path = %rel, error = %e, "not applied: the content did not arrive intact");
                        return self.index.put(row).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(old) = row.path.as_deref()
            && old != rel
        {
            self.remove_if_unchanged(old, row.sha256.as_deref()).await?;
        }
        let meta = std::fs::metadata(&abs)?;
        row.path = Some(rel.clone());
        row.sha256 = Some(media.sha256.clone());
        stat(row, &meta);
        // Conflict copies: every live losing version whose content differs from the winner's,
        // next to the file, named alike on every device.
        let mut versions: Vec<(&str, Timestamp, u32, Media)> = Vec::new();
        for c in row.item.conflicts.iter().filter(|c| !c.sync.deleted) {
            let (Some(m), Some(top)) = (&c.payload.media, c.sync.topmost()) else {
                continue;
            };
            if m.sha256 == media.sha256 || versions.iter().any(|v| v.3.sha256 == m.sha256) {
                continue;
            }
            let by = top.by.as_deref().unwrap_or("unknown");
            versions.push((by, top.when.unwrap_or_default(), top.sequence, m.clone()));
        }
        // Versions by one device within one second would share a name: then each is told
        // apart by its sequence number, alike on every device.
        let plain = |v: &(&str, Timestamp, u32, Media)| paths::conflict_copy(&rel, v.0, v.1, None);
        let copies: Vec<(String, Media)> = versions
            .iter()
            .map(|v| {
                let shared = versions.iter().filter(|w| plain(w) == plain(v)).count() > 1;
                let tag = shared.then(|| format!("s{}", v.2));
                (paths::conflict_copy(&rel, v.0, v.1, tag.as_deref()), v.3.clone())
            })
            .collect();
        let mut keep = HashSet::new();
        for (name, m) in copies {
            let Ok(copy) = paths::resolve(&self.root, &name) else {
                continue;
            };
            let current = match copy.is_file() {
                true => Some(hash_file(&copy).await?),
                false => None,
            };
            if current.as_deref() != Some(m.sha256.as_str()) {
                match self.download(&m, &copy).await {
                    Ok(n) => report.downloaded_bytes += n,
                    Err(e) if e.is::<Corrupt>() => {
                        tracing::error!(path = %name, error = %e, "conflict copy not written: the content did not arrive intact");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.index.add_conflict(&name, &row.sync_id).await?;
            keep.insert(name);
        }
        self.remove_copies(&row.sync_id, &keep).await?;
        self.index.put(row).await
    }

    /// Makes every folder above `abs` a folder or absent: a synced file of another item in
    /// the way moves to its shown-next-to name (`alt_path`), where it stays until the folder
    /// is gone. False when an unsynced file is in the way (the next scan takes it up).
    async fn clear_parents(&self, abs: &Path, sync_id: &str) -> anyhow::Result<bool> {
        let mut above: Vec<&Path> = abs.ancestors().skip(1).take_while(|d| *d != self.root).collect();
        above.reverse();
        for d in above {
            match std::fs::symlink_metadata(d) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => {
                    let Some(rel) = paths::relative(&self.root, d) else {
                        return Ok(false);
                    };
                    let Some(mut o) = self.index.row_at(&rel).await?.filter(|o| o.sync_id != sync_id) else {
                        return Ok(false);
                    };
                    let alt = alt_path(&o, &rel);
                    let Ok(to) = paths::resolve(&self.root, &alt) else {
                        return Ok(false);
                    };
                    self.place(d, &to)?;
                    o.path = Some(alt);
                    if let Ok(m) = std::fs::metadata(&to) {
                        stat(&mut o, &m);
                    }
                    self.index.put(&o).await?;
                    return Ok(true); // the rest of the way does not exist yet
                }
                Err(_) => return Ok(true),
            }
        }
        Ok(true)
    }

    /// Whether the file at `rel` is not what the index last synced there (a local edit).
    async fn index_owner_changed(&self, rel: &str, on_disk: Option<&str>) -> anyhow::Result<bool> {
        Ok(match self.index.row_at(rel).await? {
            Some(r) => r.sha256.as_deref() != on_disk,
            None => true, // a file we never synced
        })
    }

    async fn remove_if_unchanged(&self, rel: &str, synced: Option<&str>) -> anyhow::Result<()> {
        let Ok(abs) = paths::resolve(&self.root, rel) else {
            return Ok(());
        };
        if !abs.is_file() {
            return Ok(());
        }
        if synced.is_some() && hash_file(&abs).await?.as_str() == synced.unwrap_or_default() {
            self.removing(&abs);
            std::fs::remove_file(&abs)?;
            self.prune_empty_dirs(&abs).await;
        }
        Ok(())
    }

    /// Removes the folders above a removed file that are now empty (not the root).
    async fn prune_empty_dirs(&self, removed: &Path) {
        let mut dir = removed.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) {
                break;
            }
            self.removing(&d);
            if std::fs::remove_dir(&d).is_err() {
                break; // not empty, or the folder itself
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }

    /// Removes this item's conflict copies except `keep` (resolved elsewhere or here).
    async fn remove_copies(&self, sync_id: &str, keep: &HashSet<String>) -> anyhow::Result<()> {
        let copies = self.index.conflicts().await?;
        let mut any = false;
        for (path, _) in copies.iter().filter(|(p, id)| id == sync_id && !keep.contains(p)) {
            if let Ok(abs) = paths::resolve(&self.root, path) {
                self.removing(&abs);
                let _ = std::fs::remove_file(abs);
            }
            any = true;
        }
        if any {
            self.index.drop_conflicts(sync_id).await?;
            for k in keep {
                self.index.add_conflict(k, sync_id).await?;
            }
        }
        Ok(())
    }

    /// Downloads a blob to `dest` atomically: a temporary file in `.feedmesh/tmp`, its
    /// SHA-256 checked, fsynced, then renamed over `dest`. Returns the bytes fetched.
    async fn download(&self, m: &Media, dest: &Path) -> anyhow::Result<u64> {
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

    /// Moves a file into place in the folder (creating its folders), noting it as the
    /// agent's own doing so the watcher does not take it for a local change.
    fn place(&self, from: &Path, dest: &Path) -> std::io::Result<()> {
        let mut new_dirs = Vec::new();
        let mut dir = dest.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(&self.root) && !d.exists()) {
            new_dirs.push(d.to_path_buf());
            dir = d.parent();
        }
        let meta = std::fs::symlink_metadata(from)?;
        {
            let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
            for d in &new_dirs {
                own.insert(d.clone(), Expect::Dir);
            }
            own.insert(dest.to_path_buf(), Expect::File(meta.len(), mtime_ns(&meta)));
            if from.starts_with(&self.root) && !from.starts_with(&self.state) {
                own.insert(from.to_path_buf(), Expect::Gone);
            }
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(from, dest)
    }

    /// Notes a file or folder the agent is about to remove (see `place`).
    fn removing(&self, path: &Path) {
        self.own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), Expect::Gone);
    }

    /// Fetches a blob to `dest` atomically (see `download`); fsynced when `durable` (else the
    /// caller makes a batch durable at once).
    async fn fetch_blob(&self, m: &Media, dest: &Path, durable: bool) -> anyhow::Result<u64> {
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

/// The FeedSync feed of a device's changes: each item as it stands here, with `sx:sync`.
fn changes_feed(rows: &[&Row]) -> String {
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

/// A blob that arrived other than its SHA-256 says: refused, and never written.
#[derive(Debug)]
struct Corrupt(String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

/// The version of an item the folder shows: the current one, or, when a deletion won over
/// concurrent edits, the best of those edits (by FeedSync's winner rule).
pub(super) fn shown(item: &StoredItem) -> Option<&crate::domain::feedsync::Version<Entry>> {
    if !item.current.sync.deleted {
        return Some(&item.current);
    }
    item.conflicts
        .iter()
        .filter(|c| !c.sync.deleted && c.payload.media.is_some())
        .reduce(|best, c| if feedsync::beats(&c.sync, &best.sync) { c } else { best })
}

/// Of two live items naming one path, whether `a` keeps it: FeedSync's winner rule on their
/// current versions, then the larger id, so every device decides alike.
fn keeps_path(a: &Row, b: &Row) -> bool {
    let sync = |r: &Row| shown(&r.item).map_or(&r.item.current.sync, |v| &v.sync).clone();
    let (x, y) = (sync(a), sync(b));
    if feedsync::beats(&x, &y) {
        return true;
    }
    if feedsync::beats(&y, &x) {
        return false;
    }
    a.sync_id > b.sync_id
}

/// Where an item that lost its path to another is shown instead: tagged with a hash of its
/// id, so it never takes the name of a conflict copy or of another such item.
fn alt_path(row: &Row, rel: &str) -> String {
    let top = shown(&row.item).map_or(&row.item.current.sync, |v| &v.sync).topmost();
    let tag = &crate::secrets::hash_bytes(row.sync_id.as_bytes())[..8];
    paths::conflict_copy(
        rel,
        top.and_then(|h| h.by.as_deref()).unwrap_or("unknown"),
        top.and_then(|h| h.when).unwrap_or_default(),
        Some(tag),
    )
}

/// The payload of a file item: its path (title and `fm:file` name) and content.
fn file_entry(rel: &str, sha: &str, size: u64) -> Entry {
    Entry {
        title: Text::plain(rel),
        updated: Timestamp::now(),
        media: Some(Media {
            sha256: sha.to_string(),
            size,
            media_type: media_type(rel).to_string(),
            slug: Some(rel.to_string()),
        }),
        ..Entry::default()
    }
}

fn media_type(rel: &str) -> &'static str {
    match rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("txt") => "text/plain",
        Some("md") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

struct Found {
    rel: String,
    abs: PathBuf,
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Whether a file is as recorded, without reading it: same size, mtime and inode (a rename
/// over the path changes the inode), and not "racy" (git's rule: a file modified within two
/// seconds of being recorded may change again within the same timestamp tick, so it is hashed).
fn unchanged(row: &Stat, f: &Found) -> bool {
    row.size == f.size && row.mtime_ns == f.mtime_ns && row.ino == f.ino && row.mtime_ns + 2_000_000_000 < row.seen_ns
}

/// Whether a file's size, mtime and inode are what the row recorded.
fn same_stat(row: &Row, m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    row.size == m.len() && row.mtime_ns == mtime_ns(m) && row.ino == m.ino()
}

/// Records what a scan found for a row's file.
fn record(row: &mut Row, f: &Found) {
    row.size = f.size;
    row.mtime_ns = f.mtime_ns;
    row.ino = f.ino;
    row.seen_ns = now_ns();
}

/// Records the metadata of a file the agent just wrote or moved.
fn stat(row: &mut Row, m: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    row.size = m.len();
    row.mtime_ns = mtime_ns(m);
    row.ino = m.ino();
    row.seen_ns = now_ns();
}

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Every regular file under `root` that is not ignored; symbolic links are never followed.
fn walk(root: &Path) -> anyhow::Result<Vec<Found>> {
    let ignores = Ignores::load(root);
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let ft = e.file_type()?;
            let abs = e.path();
            let Some(rel) = paths::relative(root, &abs) else {
                tracing::warn!(path = %abs.display(), "a name that is not UTF-8 is not synced");
                continue;
            };
            if ft.is_symlink() || ignores.ignored(&rel, ft.is_dir()) {
                continue;
            }
            if ft.is_dir() {
                dirs.push(abs);
            } else if ft.is_file() {
                let m = e.metadata()?;
                out.push(Found {
                    rel,
                    abs,
                    size: m.len(),
                    mtime_ns: mtime_ns(&m),
                    ino: std::os::unix::fs::MetadataExt::ino(&m),
                });
            }
        }
    }
    Ok(out)
}

/// The SHA-256 of each file, read on as many threads as there are cores.
async fn hash_files(files: Vec<PathBuf>) -> anyhow::Result<HashMap<PathBuf, String>> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(files.len());
        let per = files.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = files
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|p| Ok((p.clone(), hash_path(p)?)))
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = HashMap::with_capacity(files.len());
            for w in workers {
                out.extend(w.join().map_err(|_| anyhow!("a hashing thread panicked"))??);
            }
            Ok(out)
        })
    })
    .await?
}

fn hash_path(path: &Path) -> anyhow::Result<String> {
    crate::blobs::hash_file(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The SHA-256 of a file: a small one read inline (quicker than a hand-off to the blocking
/// pool, as are the other metadata calls and renames on the local disk in this module).
async fn hash_file(path: &Path) -> anyhow::Result<String> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= SMALL) {
        return hash_path(path);
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_path(&path)).await?
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
