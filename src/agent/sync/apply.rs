//! Apply: merged items reach the disk one by one in the hub's order: atomic writes,
//! conflict copies next to the file that keeps the path, moves, and deletions that never
//! remove a local change the hub has not seen.

use super::*;
use crate::agent::index::Row;
use crate::agent::paths;
use crate::domain::entry::Media;
use crate::domain::feedsync;
use crate::domain::time::Timestamp;
use std::collections::HashSet;
use std::path::Path;

impl Agent {
    /// Applies `row`, then every item that may now take a path it gave up (an item shown under
    /// a conflict-copy name because another held its path moves back when that one leaves).
    pub(super) async fn apply(&self, row: &mut Row, report: &mut Report) -> anyhow::Result<()> {
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
    pub(super) async fn apply_one(&self, row: &mut Row, report: &mut Report) -> anyhow::Result<()> {
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
    pub(super) async fn clear_parents(&self, abs: &Path, sync_id: &str) -> anyhow::Result<bool> {
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
    pub(super) async fn index_owner_changed(&self, rel: &str, on_disk: Option<&str>) -> anyhow::Result<bool> {
        Ok(match self.index.row_at(rel).await? {
            Some(r) => r.sha256.as_deref() != on_disk,
            None => true, // a file we never synced
        })
    }

    pub(super) async fn remove_if_unchanged(&self, rel: &str, synced: Option<&str>) -> anyhow::Result<()> {
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
    pub(super) async fn prune_empty_dirs(&self, removed: &Path) {
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
    pub(super) async fn remove_copies(&self, sync_id: &str, keep: &HashSet<String>) -> anyhow::Result<()> {
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

    /// Moves a file into place in the folder (creating its folders), noting it as the
    /// agent's own doing so the watcher does not take it for a local change.
    pub(super) fn place(&self, from: &Path, dest: &Path) -> std::io::Result<()> {
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
    pub(super) fn removing(&self, path: &Path) {
        self.own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), Expect::Gone);
    }
}

/// A blob that arrived other than its SHA-256 says: refused, and never written.
#[derive(Debug)]
pub(super) struct Corrupt(pub(super) String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Of two live items naming one path, whether `a` keeps it: FeedSync's winner rule on their
/// current versions, then the larger id, so every device decides alike.
pub(super) fn keeps_path(a: &Row, b: &Row) -> bool {
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
pub(super) fn alt_path(row: &Row, rel: &str) -> String {
    let top = shown(&row.item).map_or(&row.item.current.sync, |v| &v.sync).topmost();
    let tag = &crate::secrets::hash_bytes(row.sync_id.as_bytes())[..8];
    paths::conflict_copy(
        rel,
        top.and_then(|h| h.by.as_deref()).unwrap_or("unknown"),
        top.and_then(|h| h.when).unwrap_or_default(),
        Some(tag),
    )
}
