//! FeedSync 1.0.1 sync metadata and its algorithms (create, update, delete, merge, resolve).
//! Pure code: no IO, no clock (callers pass `now`), no knowledge of XML or storage.
//! Section numbers (§) refer to ../shared/specs/feedsync.md.

use std::fmt;

use super::time::Timestamp;

/// One `sx:history` entry. Invariant: `when` or `by` is present.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub sequence: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl History {
    /// §2.1 history subsumption: `self` is subsumed by `g`.
    pub fn is_subsumed_by(&self, g: &History) -> bool {
        match (&self.by, &g.by) {
            (Some(hb), Some(gb)) => hb == gb && g.sequence >= self.sequence,
            (None, None) => g.when == self.when && g.sequence == self.sequence,
            _ => false,
        }
    }
}

/// The `sx:sync` attributes and history of one version (without its conflicts).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncMeta {
    pub id: String,
    pub updates: u32,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub noconflicts: bool,
    /// Newest first: `history[0]` is the topmost entry.
    pub history: Vec<History>,
}

impl SyncMeta {
    pub fn topmost(&self) -> Option<&History> {
        self.history.first()
    }

    /// §2.1 version subsumption: this version's topmost change is already reflected in `other`.
    pub fn is_subsumed_by(&self, other: &SyncMeta) -> bool {
        match self.topmost() {
            Some(top) => other.history.iter().any(|g| top.is_subsumed_by(g)),
            None => false,
        }
    }
}

/// One concrete version of an item: sync metadata plus the shared payload.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Version<P> {
    pub sync: SyncMeta,
    pub payload: P,
}

/// A stored item: the current winner plus the losing concurrent versions (never nested).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Item<P> {
    pub current: Version<P>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Version<P>>,
}

impl<P> Item<P> {
    pub fn id(&self) -> &str {
        &self.current.sync.id
    }
    pub fn has_conflicts(&self) -> bool {
        !self.conflicts.is_empty()
    }
}

/// Why an incoming `sx:sync` was refused. Merging itself never fails: conflicts are data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("sx:sync id {0:?} is not a valid FeedSync id (RFC 2141 NSS characters, 1-512 long)")]
    BadId(String),
    #[error("sx:sync updates must be from 1 to 2147483647")]
    BadUpdates,
    #[error("sx:sync has no sx:history")]
    NoHistory,
    #[error("sx:history sequence must be from 1 to 2147483647")]
    BadSequence,
    #[error("sx:history needs a when or a by")]
    HistoryWithoutWhenOrBy,
    #[error("sx:history by {0:?} is not a valid endpoint id")]
    BadBy(String),
    #[error("a conflict version has the id {0:?}, not the item's")]
    ConflictIdMismatch(String),
    #[error("noconflicts=\"true\" but the item carries sx:conflicts")]
    NoConflictsWithConflicts,
    #[error("the incoming version's id {incoming:?} differs from the local item's {local:?}")]
    IdMismatch { local: String, incoming: String },
}

/// The largest `updates` or `sequence` accepted from outside, so that counting on never overflows.
pub const MAX_COUNT: u32 = i32::MAX as u32;

/// Checks the id against the RFC 2141 NSS character set (§1.2).
pub fn validate_id(id: &str) -> Result<(), SyncError> {
    let bytes = id.as_bytes();
    let ok_len = !id.is_empty() && id.len() <= 512;
    let mut i = 0;
    let mut ok_chars = true;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            if i + 2 >= bytes.len() || !(bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()) {
                ok_chars = false;
                break;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"()+,-.:=@;$_!*'/?#".contains(&c)) {
            ok_chars = false;
            break;
        }
        i += 1;
    }
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(SyncError::BadId(id.chars().take(80).collect()))
    }
}

/// Checks an endpoint id used as `by`: printable, no spaces, 1-256 bytes.
pub fn validate_by(by: &str) -> Result<(), SyncError> {
    if by.is_empty() || by.len() > 256 || by.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SyncError::BadBy(by.chars().take(80).collect()));
    }
    Ok(())
}

impl SyncMeta {
    /// Structural checks on metadata that came from outside (§1.2).
    pub fn validate(&self) -> Result<(), SyncError> {
        validate_id(&self.id)?;
        if !(1..=MAX_COUNT).contains(&self.updates) {
            return Err(SyncError::BadUpdates);
        }
        if self.history.is_empty() {
            return Err(SyncError::NoHistory);
        }
        for h in &self.history {
            if !(1..=MAX_COUNT).contains(&h.sequence) {
                return Err(SyncError::BadSequence);
            }
            if h.when.is_none() && h.by.is_none() {
                return Err(SyncError::HistoryWithoutWhenOrBy);
            }
            if let Some(by) = &h.by {
                validate_by(by)?;
            }
        }
        Ok(())
    }
}

impl<P> Item<P> {
    /// Validates the item and its conflict versions (same id, flat, noconflicts respected).
    pub fn validate(&self) -> Result<(), SyncError> {
        self.current.sync.validate()?;
        if self.current.sync.noconflicts && !self.conflicts.is_empty() {
            return Err(SyncError::NoConflictsWithConflicts);
        }
        for c in &self.conflicts {
            c.sync.validate()?;
            if c.sync.id != self.current.sync.id {
                return Err(SyncError::ConflictIdMismatch(c.sync.id.clone()));
            }
        }
        Ok(())
    }
}

/// §2.1 beats(X, W): whether candidate `x` replaces the current winner `w`.
pub fn beats(x: &SyncMeta, w: &SyncMeta) -> bool {
    if x.updates != w.updates {
        return x.updates > w.updates;
    }
    let (hx, hw) = (x.topmost(), w.topmost());
    let (xw, ww) = (hx.and_then(|h| h.when), hw.and_then(|h| h.when));
    match (xw, ww) {
        (Some(_), None) => return true,
        (None, Some(_)) => return false,
        (Some(a), Some(b)) if a != b => return a > b,
        _ => {}
    }
    let (xb, wb) = (hx.and_then(|h| h.by.as_deref()), hw.and_then(|h| h.by.as_deref()));
    match (xb, wb) {
        (Some(_), None) => true,
        (None, Some(_)) => false,
        // Ordinal comparison by code point (A2): Rust's str ordering is UTF-8 byte order.
        (Some(a), Some(b)) if a != b => a > b,
        _ => false,
    }
}

/// §2.2 create: a new item with one history entry by `by` at `now`.
pub fn create<P>(id: String, by: &str, now: Timestamp, noconflicts: bool, payload: P) -> Item<P> {
    Item {
        current: Version {
            sync: SyncMeta {
                id,
                updates: 1,
                deleted: false,
                noconflicts,
                history: vec![History {
                    sequence: 1,
                    when: Some(now),
                    by: Some(by.to_string()),
                }],
            },
            payload,
        },
        conflicts: Vec::new(),
    }
}

/// §2.3 update (and §2.4 delete with `delete = true`). On delete the last payload is kept
/// when `payload` is `None`.
pub fn update<P>(item: &mut Item<P>, me: &str, now: Timestamp, payload: Option<P>, delete: bool) {
    let sync = &mut item.current.sync;
    let mut updates = sync.updates.saturating_add(1);
    // Defensive guard (A13): never reuse a sequence for the same `by`.
    let highest_mine = sync
        .history
        .iter()
        .filter(|h| h.by.as_deref() == Some(me))
        .map(|h| h.sequence)
        .max()
        .unwrap_or(0);
    if highest_mine >= updates {
        tracing::warn!(id = %sync.id, by = me, "history already holds a higher sequence for this endpoint; raising");
        updates = highest_mine.saturating_add(1);
    }
    sync.updates = updates;
    sync.history.insert(
        0,
        History {
            sequence: updates,
            when: Some(now),
            by: Some(me.to_string()),
        },
    );
    // 1.0.1 step 3.2.4 (A1): drop conflicts the updated item now subsumes (this endpoint's
    // own earlier versions), and keep what they had seen: their history is copied in as a
    // resolution does (§2.8), or versions they superseded would come back as conflicts.
    let current_sync = sync.clone();
    let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut item.conflicts)
        .into_iter()
        .partition(|c| c.sync.is_subsumed_by(&current_sync));
    item.conflicts = kept;
    for c in dropped {
        copy_history(&mut item.current.sync.history, c.sync.history);
    }
    item.current.sync.deleted = delete;
    if let Some(p) = payload {
        item.current.payload = p;
    }
}

/// What a merge did to the local item (§2.5 step 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeKind {
    Added,
    Updated,
    Unchanged,
    Conflict,
}

impl fmt::Display for MergeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MergeKind::Added => "added",
            MergeKind::Updated => "updated",
            MergeKind::Unchanged => "unchanged",
            MergeKind::Conflict => "conflict",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Merged<P> {
    pub kind: MergeKind,
    pub item: Item<P>,
}

/// §2.5 merge of one incoming item into the local one (which may be absent).
/// Fails only on malformed input (T24); conflicts are part of the result, never an error.
pub fn merge<P: Clone>(local: Option<&Item<P>>, incoming: Item<P>) -> Result<Merged<P>, SyncError> {
    incoming.validate()?;
    let Some(local) = local else {
        return Ok(Merged {
            kind: MergeKind::Added,
            item: incoming,
        });
    };
    if local.id() != incoming.id() {
        return Err(SyncError::IdMismatch {
            local: local.id().to_string(),
            incoming: incoming.id().to_string(),
        });
    }
    if local.current.sync.history.is_empty() {
        return Err(SyncError::NoHistory);
    }

    let mut l: Vec<Option<Version<P>>> = local
        .conflicts
        .iter()
        .cloned()
        .chain(std::iter::once(local.current.clone()))
        .map(Some)
        .collect();
    let Item { current, conflicts } = incoming;
    let mut i: Vec<Option<Version<P>>> = conflicts
        .into_iter()
        .chain(std::iter::once(current))
        .map(Some)
        .collect();

    let mut m: Vec<Version<P>> = Vec::new();
    let mut winner: Option<usize> = None;
    pass(&mut l, &i, &mut m, &mut winner);
    pass(&mut i, &l, &mut m, &mut winner);

    // W is always assigned: a version can only be removed in pass 2 if a survivor of pass 1 subsumes it.
    let w = winner.expect("merge of two valid items always has a winner");
    let noconflicts = m[w].sync.noconflicts;
    let mut survivors = m;
    let winner_version = survivors.remove(w);
    let item = Item {
        conflicts: if noconflicts { Vec::new() } else { survivors },
        current: winner_version,
    };
    let kind = if same_metadata(local, &item) {
        MergeKind::Unchanged
    } else if item.has_conflicts() {
        MergeKind::Conflict
    } else {
        MergeKind::Updated
    };
    Ok(Merged { kind, item })
}

/// Whether `incoming` is an edit of `local` made by a client that kept `sx:sync` as it read
/// it: the same current version (id, updates, flags, history) with another payload. RFC 5023
/// asks clients to keep extension markup they do not understand, so a generic AtomPub editor
/// sends exactly this. Merged, it would be dropped (equal versions are taken to be equal);
/// it is an update by the sender instead.
pub fn is_edit_of<P: PartialEq>(local: &Item<P>, incoming: &Item<P>) -> bool {
    local.current.sync == incoming.current.sync && local.current.payload != incoming.current.payload
}

/// One pass of §2.5 step 5/6: removal in `outer` carries into the next pass (A5).
fn pass<P: Clone>(
    outer: &mut [Option<Version<P>>],
    inner: &[Option<Version<P>>],
    m: &mut Vec<Version<P>>,
    winner: &mut Option<usize>,
) {
    for slot in outer.iter_mut() {
        let Some(x) = slot.as_ref() else { continue };
        if inner.iter().flatten().any(|y| x.sync.is_subsumed_by(&y.sync)) {
            *slot = None;
            continue;
        }
        m.push(x.clone());
        let idx = m.len() - 1;
        match *winner {
            None => *winner = Some(idx),
            Some(w) if beats(&m[idx].sync, &m[w].sync) => *winner = Some(idx),
            _ => {}
        }
    }
}

/// Step 8: equal updates, deleted, ordered history and the set of conflict versions.
fn same_metadata<P>(a: &Item<P>, b: &Item<P>) -> bool {
    let sa = &a.current.sync;
    let sb = &b.current.sync;
    if sa.updates != sb.updates || sa.deleted != sb.deleted || sa.history != sb.history {
        return false;
    }
    a.conflicts.len() == b.conflicts.len()
        && a.conflicts.iter().all(|c| b.conflicts.iter().any(|d| d.sync == c.sync))
        && b.conflicts.iter().all(|d| a.conflicts.iter().any(|c| c.sync == d.sync))
}

/// Which conflicts a resolution settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    All,
}

/// §2.8 conflict resolution: the chosen payload (or deletion) becomes a new update by `me`,
/// and the resolved conflicts' history is copied in so the resolution spreads (T17, T18).
pub fn resolve<P>(item: &mut Item<P>, me: &str, now: Timestamp, payload: Option<P>, delete: bool, _which: Resolve) {
    let resolved = std::mem::take(&mut item.conflicts);
    update(item, me, now, payload, delete);
    for c in resolved {
        copy_history(&mut item.current.sync.history, c.sync.history);
    }
}

/// §2.8 step 3.2: inserts each entry of `from` that `history` does not subsume directly
/// below the topmost entry, without touching `updates`.
fn copy_history(history: &mut Vec<History>, from: Vec<History>) {
    for hc in from {
        if history.iter().any(|g| hc.is_subsumed_by(g)) {
            continue; // A8: go on with the next entry
        }
        history.insert(1, hc);
    }
}

/// §2.9 sparse purge: keep the highest sequence per `by`, every `by`-less entry and the topmost.
pub fn sparse_purge(sync: &mut SyncMeta) {
    let mut kept: Vec<History> = Vec::with_capacity(sync.history.len());
    for (idx, h) in sync.history.iter().enumerate() {
        let keep = match &h.by {
            None => true,
            Some(by) => {
                idx == 0
                    || !sync.history.iter().enumerate().any(|(j, g)| {
                        g.by.as_deref() == Some(by)
                            && (g.sequence > h.sequence || (g.sequence == h.sequence && j < idx))
                    })
            }
        };
        if keep {
            kept.push(h.clone());
        }
    }
    sync.history = kept;
}

#[cfg(test)]
#[path = "feedsync_tests.rs"]
mod tests;
