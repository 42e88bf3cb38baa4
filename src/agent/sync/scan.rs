//! Scan: walks the folder, compares each file with the index (size, mtime, inode; hashed
//! only when those changed), and records every local change as a FeedSync change of its
//! item: create, update, delete, and a rename that keeps the item.

use super::*;
use crate::agent::index::{Row, Stat};
use crate::agent::paths::{self, Ignores};
use crate::domain::entry::{Entry, Media, Text};
use crate::domain::feedsync::{self, Resolve};
use crate::domain::time::Timestamp;
use anyhow::{Context, anyhow};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

impl Agent {
    /// Records every local change since the last scan as a FeedSync change; returns how many.
    pub(super) async fn scan(&self) -> anyhow::Result<usize> {
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
    pub(super) async fn change(
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
}

/// The payload of a file item: its path (title and `fm:file` name) and content.
pub(super) fn file_entry(rel: &str, sha: &str, size: u64) -> Entry {
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

pub(super) fn media_type(rel: &str) -> &'static str {
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

pub(super) struct Found {
    pub(super) rel: String,
    pub(super) abs: PathBuf,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ino: u64,
}

pub(super) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Whether a file is as recorded, without reading it: same size, mtime and inode (a rename
/// over the path changes the inode), and not "racy" (git's rule: a file modified within two
/// seconds of being recorded may change again within the same timestamp tick, so it is hashed).
pub(super) fn unchanged(row: &Stat, f: &Found) -> bool {
    row.size == f.size && row.mtime_ns == f.mtime_ns && row.ino == f.ino && row.mtime_ns + 2_000_000_000 < row.seen_ns
}

/// Whether a file's size, mtime and inode are what the row recorded.
pub(super) fn same_stat(row: &Row, m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    row.size == m.len() && row.mtime_ns == mtime_ns(m) && row.ino == m.ino()
}

/// Records what a scan found for a row's file.
pub(super) fn record(row: &mut Row, f: &Found) {
    row.size = f.size;
    row.mtime_ns = f.mtime_ns;
    row.ino = f.ino;
    row.seen_ns = now_ns();
}

/// Records the metadata of a file the agent just wrote or moved.
pub(super) fn stat(row: &mut Row, m: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    row.size = m.len();
    row.mtime_ns = mtime_ns(m);
    row.ino = m.ino();
    row.seen_ns = now_ns();
}

pub(super) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Every regular file under `root` that is not ignored; symbolic links are never followed.
pub(super) fn walk(root: &Path) -> anyhow::Result<Vec<Found>> {
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
pub(super) async fn hash_files(files: Vec<PathBuf>) -> anyhow::Result<HashMap<PathBuf, String>> {
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

pub(super) fn hash_path(path: &Path) -> anyhow::Result<String> {
    crate::blobs::hash_file(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The SHA-256 of a file: a small one read inline (quicker than a hand-off to the blocking
/// pool, as are the other metadata calls and renames on the local disk in this module).
pub(super) async fn hash_file(path: &Path) -> anyhow::Result<String> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() <= SMALL) {
        return hash_path(path);
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_path(&path)).await?
}
