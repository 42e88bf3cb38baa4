//! Collections as a person browses them (a synced folder as a tree, an item's FeedSync
//! history), and conflicts as a person settles them: the versions side by side with a line
//! diff, and the choice made a FeedSync resolution (§2.8) that every device then sees.

use super::Core;
use crate::domain::entry::{Content, Entry, Text};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::store::{ItemRecord, Principal};

/// Most items a collection's page lists.
pub const MAX_LISTED: usize = 20_000;

/// One item of a collection as listed: its path parts (a file's path, else its title).
#[derive(Clone, Debug)]
pub struct Listed {
    pub sync_id: String,
    pub title: String,
    pub folder: String,
    pub name: String,
    pub size: Option<u64>,
    pub changed: Timestamp,
    pub conflicts: usize,
    pub media: bool,
}

/// A collection's live items, sorted by folder then name; `true` when there were more than
/// [`MAX_LISTED`].
pub async fn list(core: &Core, user_id: i64, collection: &str) -> Result<(Vec<Listed>, bool)> {
    let col = core.mesh.collection(user_id, collection).await?;
    let mut out = Vec::new();
    let mut after = 0;
    let mut more = false;
    loop {
        let page = core.mesh.store.items_since(col.id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page.iter().filter(|r| !r.item.current.sync.deleted) {
            if out.len() == MAX_LISTED {
                more = true;
                break;
            }
            out.push(listed(r));
        }
        if more {
            break;
        }
    }
    out.sort_by(|a, b| (&a.folder, &a.name).cmp(&(&b.folder, &b.name)));
    Ok((out, more))
}

fn listed(r: &ItemRecord) -> Listed {
    let v = &r.item.current;
    let title = v.payload.title.value.clone();
    let (folder, name) = match title.rsplit_once('/') {
        Some((f, n)) => (f.to_string(), n.to_string()),
        None => (String::new(), title.clone()),
    };
    Listed {
        sync_id: v.sync.id.clone(),
        title,
        folder,
        name,
        size: v.payload.media.as_ref().map(|m| m.size),
        changed: r.changed_at,
        conflicts: r.item.conflicts.len(),
        media: v.payload.media.is_some(),
    }
}

/// One version of an item as shown: who made its last change, when, and its text.
#[derive(Clone, Debug)]
pub struct Shown {
    pub by: String,
    pub when: Option<Timestamp>,
    pub updates: u32,
    pub title: String,
    pub text: String,
    pub media_type: Option<String>,
    pub media_sha256: Option<String>,
    pub deleted: bool,
}

fn shown(v: &crate::domain::feedsync::Version<Entry>) -> Shown {
    let top = v.sync.history.first();
    Shown {
        by: top.and_then(|h| h.by.clone()).unwrap_or_else(|| "someone".into()),
        when: top.and_then(|h| h.when),
        updates: v.sync.updates,
        title: v.payload.title.value.clone(),
        text: v.payload.best_text().map(|(t, _)| t.to_string()).unwrap_or_default(),
        media_type: v.payload.media.as_ref().map(|m| m.media_type.clone()),
        media_sha256: v.payload.media.as_ref().map(|m| m.sha256.clone()),
        deleted: v.sync.deleted,
    }
}

/// An item with its history (newest first: sequence, device, time) and its versions.
pub struct Detail {
    pub collection: String,
    pub sync_id: String,
    pub seq: u64,
    pub current: Shown,
    pub conflicts: Vec<Shown>,
    pub history: Vec<(u32, String, Option<Timestamp>)>,
}

pub async fn item(core: &Core, user_id: i64, collection: &str, sync_id: &str) -> Result<Detail> {
    let col = core.mesh.collection(user_id, collection).await?;
    let r = core.mesh.member(&col, sync_id).await?;
    let v = &r.item.current;
    Ok(Detail {
        collection: col.name.clone(),
        sync_id: sync_id.to_string(),
        seq: r.seq,
        current: shown(v),
        conflicts: r.item.conflicts.iter().map(shown).collect(),
        history: v
            .sync
            .history
            .iter()
            .map(|h| (h.sequence, h.by.clone().unwrap_or_default(), h.when))
            .collect(),
    })
}

/// The user's items in conflict: (collection, the item as listed).
pub async fn conflicts(core: &Core, user_id: i64) -> Result<Vec<(String, Listed)>> {
    Ok(core
        .mesh
        .store
        .conflicted(user_id, 500)
        .await?
        .iter()
        .map(|(c, r)| (c.clone(), listed(r)))
        .collect())
}

pub async fn conflict_count(core: &Core, user_id: i64) -> Result<u64> {
    Ok(core.mesh.store.conflict_count(user_id).await?)
}

/// One line of a diff: `-` only in the left, `+` only in the right, ` ` in both.
pub fn line_diff(left: &str, right: &str) -> Vec<(char, String)> {
    let diff = similar::TextDiff::from_lines(left, right);
    diff.iter_all_changes()
        .map(|c| {
            let tag = match c.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            (tag, c.value().trim_end_matches('\n').to_string())
        })
        .collect()
}

/// What a person chose to keep.
pub enum Choice {
    /// The version that currently wins.
    Current,
    /// The conflict at this position.
    Conflict(usize),
    /// A text merged by hand.
    Merged(String),
}

/// Settles every conflict of the item with the chosen content, as a FeedSync resolution by
/// `who`; `seq` is the item as the person saw it (a change since is a 412, nothing lost).
pub async fn resolve(
    core: &Core,
    who: &Principal,
    collection: &str,
    sync_id: &str,
    seq: u64,
    choice: Choice,
) -> Result<u64> {
    let col = core.mesh.collection(who.user_id, collection).await?;
    let r = core.mesh.member(&col, sync_id).await?;
    if r.item.conflicts.is_empty() {
        return Err(Error::Conflict("this item is not in conflict (any more)".into()));
    }
    let mut entry = match &choice {
        Choice::Current | Choice::Merged(_) => r.item.current.payload.clone(),
        Choice::Conflict(n) => r
            .item
            .conflicts
            .get(*n)
            .ok_or(Error::NotFound("conflict"))?
            .payload
            .clone(),
    };
    if let Choice::Merged(text) = choice {
        if text.len() > 10 << 20 {
            return Err(Error::TooLarge("a merged text is at most 10 MiB".into()));
        }
        if entry.media.is_some() {
            return Err(Error::Invalid(
                "a file's versions cannot be merged as text; keep one of them".into(),
            ));
        }
        entry.content = Some(Content {
            kind: "text".into(),
            value: text.replace("\r\n", "\n"),
            src: None,
        });
        if entry.title.value.is_empty() {
            entry.title = Text::plain("merged");
        }
    }
    entry.updated = Timestamp::now();
    let accepted = core.mesh.resolve(who, &col, sync_id, Some(seq), entry).await?;
    Ok(accepted.record.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_marks_what_each_side_has() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            d,
            vec![
                (' ', "a".into()),
                ('-', "b".into()),
                ('+', "B".into()),
                (' ', "c".into())
            ]
        );
    }
}
