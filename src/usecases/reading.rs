//! The mesh as reader apps see it, whatever API they speak (Google Reader, Miniflux, Fever):
//! feeds with stable integer ids (the stream, each device, collection, view, company and
//! contact), entries (the activities, by their sequence number, which only grows), and the
//! user's read and starred marks, the same in every app.
//!
//! Read state is a watermark plus marks: every activity at or below the watermark is read
//! unless marked kept-unread; above it, unread unless marked read. "Mark all as read" of the
//! whole stream moves the watermark (one row, whatever the count); of one feed, it marks that
//! feed's activities one by one.

use std::collections::HashMap;
use std::sync::Arc;

use super::Core;
use super::timelines::{self, Resolved};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::store::{ActivityFilter, ChangeRecord, Page, ReadMark};

/// The whole stream's feed id: it is the first any user's reader lists.
pub const EVERYTHING: i64 = 1;
/// Most entries one call answers.
pub const MAX_ENTRIES: u32 = 1000;
/// Most activities one filtered call (unread only) looks through before it answers what it found.
const MAX_SCAN: usize = 20_000;

/// What a reader feed is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Everything,
    Device(String),
    Collection(String),
    View(String),
    Company(String),
    Contact(String),
}

impl Source {
    fn kind_key(&self) -> (&'static str, &str) {
        match self {
            Source::Everything => ("stream", ""),
            Source::Device(d) => ("device", d),
            Source::Collection(c) => ("collection", c),
            Source::View(v) => ("view", v),
            Source::Company(c) => ("company", c),
            Source::Contact(c) => ("contact", c),
        }
    }
}

/// A feed as reader apps list it.
#[derive(Clone, Debug)]
pub struct Feed {
    pub id: i64,
    pub source: Source,
    pub title: String,
    /// Its folder (a Google Reader label, a Miniflux category, a Fever group).
    pub group: &'static str,
    /// The hub's Atom feed of it (to read with the user's credentials).
    pub url: String,
    /// Where a person sees it in the web app.
    pub html_url: String,
}

/// The folders feeds are in, in order: (id, name).
pub const GROUPS: [(i64, &str); 6] = [
    (1, "Stream"),
    (2, "Devices"),
    (3, "Collections"),
    (4, "Views"),
    (5, "Companies"),
    (6, "Contacts"),
];

pub fn group_id(name: &str) -> i64 {
    GROUPS.iter().find(|(_, n)| *n == name).map(|(i, _)| *i).unwrap_or(0)
}

impl Source {
    fn from_kind_key(kind: &str, key: &str) -> Option<Source> {
        let key = key.to_string();
        Some(match kind {
            "stream" => Source::Everything,
            "device" => Source::Device(key),
            "collection" => Source::Collection(key),
            "view" => Source::View(key),
            "company" => Source::Company(key),
            "contact" => Source::Contact(key),
            _ => return None,
        })
    }
}

/// The feed `source` is, named `title`, with id `id`: its folder and URLs.
fn feed_of(core: &Core, user: &str, id: i64, source: Source, title: String) -> Feed {
    use super::feeds::{Of, stream_url};
    use super::timelines::feed_url;
    let base = &core.base_url;
    let enc = super::encode_segment;
    let (group, url, html_url) = match &source {
        Source::Everything => ("Stream", stream_url(core, user, None, Format::Atom), format!("{base}/")),
        Source::Device(d) => (
            "Devices",
            stream_url(core, user, Some(d), Format::Atom),
            format!("{base}/devices"),
        ),
        Source::Collection(c) => (
            "Collections",
            core.collection_url(user, c),
            format!("{base}/files/{}", enc(c)),
        ),
        Source::View(v) => (
            "Views",
            feed_url(core, user, Of::View(v), Format::Atom),
            format!("{base}/views/{}", enc(v)),
        ),
        Source::Company(c) => (
            "Companies",
            feed_url(core, user, Of::Company(c), Format::Atom),
            format!("{base}/search?company={}", enc(c)),
        ),
        Source::Contact(c) => (
            "Contacts",
            feed_url(core, user, Of::Contact(c), Format::Atom),
            format!("{base}/contacts/{}", enc(c)),
        ),
    };
    Feed {
        id,
        source,
        title,
        group,
        url,
        html_url,
    }
}

/// Every feed the user can read, each with its id (given now if it is new), by group.
pub async fn feeds(core: &Core, user_id: i64, user: &str) -> Result<Vec<Feed>> {
    use crate::domain::names::UserName;
    let store = &core.mesh.store;
    let name = UserName::parse(user)?;
    let mut found: Vec<(Source, String)> = vec![(Source::Everything, "Everything".into())];
    let mut devices: Vec<String> = store.tokens(&name).await?.into_iter().map(|t| t.device).collect();
    devices.sort();
    devices.dedup();
    for d in devices {
        let title = format!("What {d} published");
        found.push((Source::Device(d), title));
    }
    for c in core.mesh.collections(user_id).await? {
        found.push((Source::Collection(c.name.clone()), c.name));
    }
    for (v, _) in store.views(user_id).await? {
        found.push((Source::View(v.clone()), v));
    }
    for c in store.companies(user_id).await? {
        found.push((Source::Company(c.slug), c.name));
    }
    for c in store.contacts(user_id).await? {
        found.push((Source::Contact(c.id), c.name));
    }
    let wanted: Vec<(String, String)> = found
        .iter()
        .map(|(s, _)| {
            let (k, v) = s.kind_key();
            (k.to_string(), v.to_string())
        })
        .collect();
    let ids: HashMap<(String, String), i64> = store
        .reader_feeds(user_id, &wanted)
        .await?
        .into_iter()
        .map(|f| ((f.kind, f.key), f.id))
        .collect();
    Ok(found
        .into_iter()
        .zip(wanted)
        .filter_map(|((source, title), key)| ids.get(&key).map(|&id| feed_of(core, user, id, source, title)))
        .collect())
}

/// One of the user's feeds by id (as listed before); an unknown id (or another user's, or
/// one whose contact, view or collection is gone) is a 404.
pub async fn feed(core: &Core, user_id: i64, user: &str, id: i64) -> Result<Feed> {
    let store = &core.mesh.store;
    let row = store.reader_feed(user_id, id).await?.ok_or(Error::NotFound("feed"))?;
    let source = Source::from_kind_key(&row.kind, &row.key).ok_or(Error::NotFound("feed"))?;
    let title = match &source {
        Source::Everything => "Everything".to_string(),
        Source::Device(d) => format!("What {d} published"),
        Source::Collection(c) | Source::View(c) => c.clone(),
        Source::Company(slug) => store
            .companies(user_id)
            .await?
            .into_iter()
            .find(|c| &c.slug == slug)
            .map(|c| c.name)
            .ok_or(Error::NotFound("feed"))?,
        Source::Contact(c) => store.contact(user_id, c).await?.ok_or(Error::NotFound("feed"))?.name,
    };
    Ok(feed_of(core, user, id, source, title))
}

async fn resolve(core: &Core, user_id: i64, user: &str, source: &Source) -> Result<Resolved> {
    use super::feeds::Of;
    match source {
        Source::Everything => timelines::stream(core, user_id, user, None, Format::Atom).await,
        Source::Device(d) => timelines::stream(core, user_id, user, Some(d), Format::Atom).await,
        Source::Collection(name) => {
            let col = core.mesh.collection(user_id, name).await?;
            let mut r = timelines::stream(core, user_id, user, None, Format::Atom).await?;
            r.filter.collection_id = Some(col.id);
            Ok(r)
        }
        Source::View(v) => timelines::resolve(core, user_id, user, Of::View(v), Format::Atom).await,
        Source::Company(c) => timelines::resolve(core, user_id, user, Of::Company(c), Format::Atom).await,
        Source::Contact(c) => timelines::resolve(core, user_id, user, Of::Contact(c), Format::Atom).await,
    }
}

/// One activity as reader apps show it (strings still to be escaped by the wire format;
/// `html` is sanitised HTML).
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u64,
    /// The feed it was asked through, or (asked for all) its collection's feed.
    pub feed: Arc<Feed>,
    pub title: String,
    pub author: String,
    pub html: String,
    pub url: String,
    pub published: Timestamp,
    pub read: bool,
    pub starred: bool,
}

/// Which entries a call wants.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// A feed's id; None for the whole stream.
    pub feed: Option<i64>,
    pub unread_only: bool,
    pub read_only: bool,
    pub starred_only: bool,
    /// Entries with ids below this (newest first) …
    pub before: Option<u64>,
    /// … or above this, oldest first.
    pub after: Option<u64>,
    pub oldest_first: bool,
    /// Published at or after / before these (Unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: u32,
}

/// A page of entries and, when there are more, the id to continue from (as `before`, or
/// as `after` when oldest first).
pub struct Entries {
    pub entries: Vec<Entry>,
    pub next: Option<u64>,
}

/// The read state's shape for one user: the watermark, and the highest id at or below which
/// every activity is read (nothing kept unread there).
struct ReadState {
    upto: u64,
    all_read_upto: u64,
}

async fn read_state(core: &Core, user_id: i64) -> Result<ReadState> {
    let store = &core.mesh.store;
    let upto = store.read_upto(user_id).await?;
    let low = store.lowest_kept_unread(user_id).await?;
    let all_read_upto = match low {
        Some(k) if k <= upto => k - 1,
        _ => upto,
    };
    Ok(ReadState { upto, all_read_upto })
}

fn is_read(seq: u64, mark: Option<&ReadMark>, st: &ReadState) -> bool {
    match mark.and_then(|m| m.read) {
        Some(r) => r,
        None => seq <= st.upto,
    }
}

/// The entries `q` asks for.
pub async fn entries(core: &Core, user_id: i64, user: &str, q: &Query) -> Result<Entries> {
    let feed = match q.feed {
        Some(id) => Some(Arc::new(feed(core, user_id, user, id).await?)),
        None => None,
    };
    entries_of(core, user_id, user, feed, q).await
}

async fn entries_of(core: &Core, user_id: i64, user: &str, feed: Option<Arc<Feed>>, q: &Query) -> Result<Entries> {
    let limit = q.limit.clamp(1, MAX_ENTRIES);
    let st = read_state(core, user_id).await?;
    let store = &core.mesh.store;
    if q.starred_only {
        // Starred entries are few: from the marks, then each checked against the rest.
        let mut seqs = Vec::new();
        let mut before = q.before;
        loop {
            let batch = store.starred(user_id, before, 500).await?;
            let done = batch.len() < 500;
            before = batch.last().copied();
            seqs.extend(batch.into_iter().filter(|s| q.after.is_none_or(|a| *s > a)));
            if done || seqs.len() >= MAX_SCAN {
                break;
            }
        }
        let mut changes = store.changes_at(user_id, &seqs).await?;
        changes.retain(|c| q.since.is_none_or(|s| c.at.unix() >= s) && q.until.is_none_or(|u| c.at.unix() < u));
        if let Some(f) = feed.as_ref().filter(|f| f.source != Source::Everything) {
            let r = resolve(core, user_id, user, &f.source).await?;
            let mut kept = Vec::new();
            for c in changes {
                if in_feed(core, user_id, &r.filter, c.seq).await? {
                    kept.push(c);
                }
            }
            changes = kept;
        }
        if q.oldest_first {
            changes.reverse();
        }
        let more = changes.len() > limit as usize;
        changes.truncate(limit as usize);
        let next = more.then(|| changes.last().map(|c| c.seq)).flatten();
        let entries = build(core, user_id, user, feed, &changes, &st).await?;
        return Ok(Entries { entries, next });
    }
    let r = match &feed {
        Some(f) => resolve(core, user_id, user, &f.source).await?,
        None => resolve(core, user_id, user, &Source::Everything).await?,
    };
    let mut filter = r.filter.clone();
    filter.since = q.since;
    filter.until = q.until;
    let mut kept: Vec<ChangeRecord> = Vec::new();
    let mut marks: HashMap<u64, ReadMark> = HashMap::new();
    let batch = if q.unread_only || q.read_only { 500 } else { limit + 1 };
    let mut page = match (q.oldest_first, q.after) {
        (true, after) => {
            // Oldest unread first: nothing at or below `all_read_upto` can be unread.
            let from = after.unwrap_or(0);
            Page::After(if q.unread_only {
                from.max(st.all_read_upto)
            } else {
                from
            })
        }
        (false, _) => Page::Before(q.before),
    };
    let mut scanned = 0usize;
    let mut more = false;
    let mut cut = None;
    'scan: loop {
        let changes = store.activities(user_id, &filter, page, batch).await?;
        let full = changes.len() == batch as usize;
        scanned += changes.len();
        let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
        marks.extend(store.read_marks(user_id, &seqs).await?);
        let last = changes.last().map(|c| c.seq);
        for c in changes {
            if q.after.is_some_and(|a| c.seq <= a) && !q.oldest_first {
                break 'scan;
            }
            if q.unread_only && !q.oldest_first && c.seq <= st.all_read_upto {
                break 'scan;
            }
            let read = is_read(c.seq, marks.get(&c.seq), &st);
            if (q.unread_only && read) || (q.read_only && !read) {
                continue;
            }
            if kept.len() == limit as usize {
                more = true;
                break 'scan;
            }
            kept.push(c);
        }
        match last {
            Some(s) if full && scanned < MAX_SCAN => {
                page = if q.oldest_first {
                    Page::After(s)
                } else {
                    Page::Before(Some(s))
                };
            }
            Some(s) if full => {
                // Looked through enough for one call: the client goes on from here.
                cut = Some(s);
                break;
            }
            _ => break,
        }
    }
    let next = if more { kept.last().map(|c| c.seq) } else { cut };
    let entries = build(core, user_id, user, feed, &kept, &st).await?;
    Ok(Entries { entries, next })
}

/// The entries `q` asks for, of every feed in folder `group` (a Google Reader label, a
/// Miniflux category): `Stream` and `Collections` hold the whole stream; another folder is
/// the union of its first [`MAX_COUNTED_FEEDS`] feeds, each entry once.
pub async fn group_entries(core: &Core, user_id: i64, user: &str, group: &str, q: &Query) -> Result<Entries> {
    if !GROUPS.iter().any(|(_, g)| *g == group) {
        return Err(Error::NotFound("folder"));
    }
    if group == "Stream" || group == "Collections" {
        let q = Query {
            feed: None,
            ..q.clone()
        };
        return entries(core, user_id, user, &q).await;
    }
    let limit = q.limit.clamp(1, MAX_ENTRIES) as usize;
    let mut all = Vec::new();
    let mut more = false;
    for f in feeds(core, user_id, user)
        .await?
        .into_iter()
        .filter(|f| f.group == group)
        .take(MAX_COUNTED_FEEDS)
    {
        let fq = Query {
            feed: Some(f.id),
            ..q.clone()
        };
        let page = entries_of(core, user_id, user, Some(Arc::new(f)), &fq).await?;
        more |= page.next.is_some();
        all.extend(page.entries);
    }
    if q.oldest_first {
        all.sort_by_key(|e| e.id);
    } else {
        all.sort_by_key(|e| std::cmp::Reverse(e.id));
    }
    all.dedup_by_key(|e| e.id);
    more |= all.len() > limit;
    all.truncate(limit);
    let next = if more { all.last().map(|e| e.id) } else { None };
    Ok(Entries { entries: all, next })
}

/// Whether activity `seq` passes `filter`.
async fn in_feed(core: &Core, user_id: i64, filter: &ActivityFilter, seq: u64) -> Result<bool> {
    let found = core
        .mesh
        .store
        .activities(user_id, filter, Page::Before(Some(seq + 1)), 1)
        .await?;
    Ok(found.first().is_some_and(|c| c.seq == seq))
}

/// These entries by id (unknown ids left out), newest first.
pub async fn entries_by_id(core: &Core, user_id: i64, user: &str, ids: &[u64]) -> Result<Vec<Entry>> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(MAX_ENTRIES as usize);
    let st = read_state(core, user_id).await?;
    let changes = core.mesh.store.changes_at(user_id, &ids).await?;
    build(core, user_id, user, None, &changes, &st).await
}

async fn build(
    core: &Core,
    user_id: i64,
    user: &str,
    feed: Option<Arc<Feed>>,
    changes: &[ChangeRecord],
    st: &ReadState,
) -> Result<Vec<Entry>> {
    let store = &core.mesh.store;
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    let marks: HashMap<u64, ReadMark> = store.read_marks(user_id, &seqs).await?.into_iter().collect();
    // Asked for all: each entry is in its collection's feed (the whole stream's, if the
    // collection has no id yet).
    let mut homes: HashMap<String, Arc<Feed>> = HashMap::new();
    if feed.is_none() {
        for c in changes {
            if homes.contains_key(&c.collection) {
                continue;
            }
            let home = match store.reader_feed_id(user_id, "collection", &c.collection).await? {
                Some(id) => feed_of(
                    core,
                    user,
                    id,
                    Source::Collection(c.collection.clone()),
                    c.collection.clone(),
                ),
                None => feed_of(core, user, EVERYTHING, Source::Everything, "Everything".into()),
            };
            homes.insert(c.collection.clone(), Arc::new(home));
        }
    }
    let base = &core.base_url;
    Ok(changes
        .iter()
        .map(|c| {
            let line = super::lines::line(core, c, Vec::new());
            let mark = marks.get(&c.seq);
            let html = match (&line.body, line.html) {
                (Some(b), true) => b.clone(),
                (Some(b), false) => format!("<p>{}</p>", crate::formats::xml::esc(b)),
                (None, _) => String::new(),
            };
            let title = if line.title.trim().is_empty() {
                let text = line.body.as_deref().map(super::lines::plain).unwrap_or_default();
                match text.chars().count() {
                    0 => format!("{} {}", line.verb, line.object_type),
                    n if n > 80 => text.chars().take(79).collect::<String>() + "…",
                    _ => text,
                }
            } else {
                line.title.clone()
            };
            Entry {
                id: c.seq,
                feed: feed.clone().unwrap_or_else(|| homes[&c.collection].clone()),
                title,
                author: line.actor.clone(),
                html,
                url: line.source.clone().unwrap_or_else(|| {
                    format!(
                        "{base}/files/{}/item?id={}",
                        super::encode_segment(&c.collection),
                        super::encode_segment(&c.sync_id)
                    )
                }),
                published: c.at,
                read: is_read(c.seq, mark, st),
                starred: mark.is_some_and(|m| m.starred),
            }
        })
        .collect())
}

/// A change of marks a reader app asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Read,
    Unread,
    Starred,
    Unstarred,
}

/// Marks these entries (ids the user has no activity at are left alone).
pub async fn mark(core: &Core, user_id: i64, ids: &[u64], mark: Mark) -> Result<()> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let head = core.mesh.store.user_head(user_id).await?;
    ids.retain(|&i| i >= 1 && i <= head);
    let (read, starred) = match mark {
        Mark::Read => (Some(true), None),
        Mark::Unread => (Some(false), None),
        Mark::Starred => (None, Some(true)),
        Mark::Unstarred => (None, Some(false)),
    };
    Ok(core.mesh.store.set_marks(user_id, &ids, read, starred).await?)
}

/// Marks read every entry of a feed (the whole stream when None) published before `before`
/// (Unix seconds; everything when None).
pub async fn mark_all_read(
    core: &Core,
    user_id: i64,
    user: &str,
    feed: Option<i64>,
    before: Option<i64>,
) -> Result<()> {
    let all = feeds(core, user_id, user).await?;
    let source = match feed {
        Some(id) => all
            .iter()
            .find(|f| f.id == id)
            .ok_or(Error::NotFound("feed"))?
            .source
            .clone(),
        None => Source::Everything,
    };
    let store = &core.mesh.store;
    if source == Source::Everything {
        // The watermark: the newest activity published before `before`.
        let head = store.user_head(user_id).await?;
        let upto = match before {
            None => head,
            Some(t) => {
                let filter = ActivityFilter {
                    until: Some(t),
                    ..ActivityFilter::default()
                };
                let newest = store.activities(user_id, &filter, Page::Before(None), 1).await?;
                newest.first().map(|c| c.seq).unwrap_or(0)
            }
        };
        // Those above it published earlier (a backdated post) are marked one by one below.
        store.mark_read_upto(user_id, upto).await?;
        if before.is_none() {
            return Ok(());
        }
    }
    let r = resolve(core, user_id, user, &source).await?;
    let mut filter = r.filter.clone();
    filter.until = before;
    let mut page = Page::Before(None);
    let upto = store.read_upto(user_id).await?;
    loop {
        let changes = store.activities(user_id, &filter, page, 1000).await?;
        let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
        store.set_marks(user_id, &seqs, Some(true), None).await?;
        match changes.last() {
            Some(c) if changes.len() == 1000 && c.seq > upto => page = Page::Before(Some(c.seq)),
            _ => break,
        }
    }
    Ok(())
}

/// The unread entries' ids, newest first (at most `limit`).
pub async fn unread_ids(core: &Core, user_id: i64, user: &str, limit: u32) -> Result<Vec<u64>> {
    ids(core, user_id, user, limit, false).await
}

/// The starred entries' ids, newest first (at most `limit`).
pub async fn starred_ids(core: &Core, user_id: i64, user: &str, limit: u32) -> Result<Vec<u64>> {
    ids(core, user_id, user, limit, true).await
}

async fn ids(core: &Core, user_id: i64, user: &str, limit: u32, starred: bool) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let q = Query {
            unread_only: !starred,
            starred_only: starred,
            before,
            limit: MAX_ENTRIES.min(limit - out.len() as u32),
            ..Query::default()
        };
        let page = entries(core, user_id, user, &q).await?;
        out.extend(page.entries.iter().map(|e| e.id));
        match page.next {
            Some(n) if (out.len() as u32) < limit => before = Some(n),
            _ => return Ok(out),
        }
    }
}

/// Most feeds whose unread entries one `unread_counts` call counts (in their order: the
/// stream, devices, collections and views first), so a user with 10,000 contacts is
/// answered in bounded time.
pub const MAX_COUNTED_FEEDS: usize = 250;

/// Unread counts of each feed, counted over its newest `MAX_ENTRIES` entries (as Google
/// Reader did: "1000+"), with the time of its newest entry; the first
/// [`MAX_COUNTED_FEEDS`] feeds only.
pub async fn unread_counts(core: &Core, user_id: i64, user: &str) -> Result<Vec<(i64, u32, Option<Timestamp>)>> {
    let mut out = Vec::new();
    for f in feeds(core, user_id, user).await?.into_iter().take(MAX_COUNTED_FEEDS) {
        let q = Query {
            feed: Some(f.id),
            unread_only: true,
            limit: MAX_ENTRIES,
            ..Query::default()
        };
        let id = f.id;
        let page = entries_of(core, user_id, user, Some(Arc::new(f)), &q).await?;
        if !page.entries.is_empty() {
            let newest = page.entries.first().map(|e| e.published);
            out.push((id, page.entries.len() as u32, newest));
        }
    }
    Ok(out)
}
