//! Items: publish, update, delete, merge, upload and ingest, one function each, called
//! alike by the AtomPub handlers, the follow worker and (later) the connectors. Every write
//! is a read-merge-write with compare-and-swap on the item's sequence number, retried on a
//! lost race (the store's `Conflict`, never an error of this layer's).

use std::sync::Arc;
use std::time::Duration;

use crate::blobs::{Blobs, Upload};
use crate::domain::entry::{Entry, Media, StoredItem, Text};
use crate::domain::feedsync::{self, MergeKind, Resolve};
use crate::domain::identity::Region;
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::atom_in::{Incoming, ParsedEntry};
use crate::jobs::Backoff;
use crate::store::{ChangeKind, Collection, ItemRecord, ItemWrite, Principal, Store, StoreError};
use crate::ttl::TtlMap;

const MAX_RETRIES: u32 = 40;
/// Entries one posted FeedSync feed may hold.
pub const MAX_FEED_ENTRIES: usize = 1000;
const HEAD_TTL: Duration = Duration::from_secs(1);

pub struct Mesh {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    /// Each user's latest change sequence number, refreshed by every local write and
    /// re-read from the store at most a second after another process's write.
    heads: TtlMap<i64, u64>,
    /// Collections by (user, name); they are never renamed or removed, so a second is safe.
    collections: TtlMap<(i64, String), Collection>,
    /// Counts accepted writes; every waiter (WebSub delivery, long-polls) sees it move.
    pub changed: tokio::sync::watch::Sender<u64>,
    /// Where national phone numbers are read (`--default-region`).
    pub region: Region,
}

/// The outcome of a write: the item as stored now, and what happened.
pub struct Accepted {
    pub record: ItemRecord,
    /// `None` when nothing changed (an echo of what the hub already had).
    pub change: Option<ChangeKind>,
    pub created: bool,
}

/// What to do to an existing item, given its current state.
enum Edit<'a> {
    Update(Entry),
    Delete,
    Resolve(Entry),
    Merge(&'a StoredItem),
}

impl Mesh {
    pub fn new(store: Arc<dyn Store>, blobs: Blobs) -> Self {
        Mesh {
            store,
            blobs,
            heads: TtlMap::new(HEAD_TTL, 100_000),
            collections: TtlMap::new(HEAD_TTL, 100_000),
            changed: tokio::sync::watch::Sender::new(0),
            region: Region::default(),
        }
    }

    /// Reads national phone numbers in `region`.
    pub fn with_region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// Another process changed the mesh: forget cached heads and wake every waiter.
    pub fn changed_elsewhere(&self) {
        self.heads.clear();
        self.changed.send_modify(|n| *n += 1);
    }

    /// A collection of the user, by name.
    pub async fn collection(&self, user_id: i64, name: &str) -> Result<Collection> {
        let key = (user_id, name.to_string());
        if let Some(c) = self.collections.get(&key) {
            return Ok(c);
        }
        let c = self.store.collection(user_id, name).await?;
        self.collections.put(key, c.clone());
        Ok(c)
    }

    /// The user's latest change sequence number (what feed caches are keyed by).
    /// The user's collections.
    pub async fn collections(&self, user_id: i64) -> Result<Vec<Collection>> {
        Ok(self.store.collections(user_id).await?)
    }

    /// One item of a collection, as stored now.
    pub async fn member(&self, col: &Collection, sync_id: &str) -> Result<ItemRecord> {
        self.store.item(col.id, sync_id).await?.ok_or(Error::NotFound("entry"))
    }

    pub async fn head(&self, user_id: i64) -> Result<u64> {
        if let Some(head) = self.heads.get(&user_id) {
            return Ok(head);
        }
        let head = self.store.user_head(user_id).await?;
        self.heads.upsert(user_id, head, |h| *h = (*h).max(head));
        Ok(head)
    }

    /// AtomPub POST of an entry: a new item (FeedSync create), or, when the entry carries
    /// `sx:sync`, a merge with whatever the hub holds under that id.
    pub async fn publish(&self, who: &Principal, col: &Collection, parsed: ParsedEntry) -> Result<Accepted> {
        self.check_files(col.user_id, &parsed).await?;
        match parsed.into_incoming() {
            Incoming::Sync(incoming) => self.merge(who, col, incoming).await,
            Incoming::Plain(entry) => self.create_new(who, col, Timestamp::now(), entry).await,
        }
    }

    /// POST of a FeedSync feed (a device sending its local changes): every entry must carry
    /// `sx:sync` and name only uploaded files; all are checked before any is merged, so a bad
    /// entry changes nothing. Each is then merged as `merge` does, several at once (distinct
    /// items commit together), and the merged items come back in the order sent.
    pub async fn merge_feed(
        &self,
        who: &Principal,
        col: &Collection,
        parsed: Vec<ParsedEntry>,
    ) -> Result<Vec<ItemRecord>> {
        use futures_util::StreamExt;
        if parsed.len() > MAX_FEED_ENTRIES {
            return Err(Error::TooLarge(format!(
                "a posted feed holds at most {MAX_FEED_ENTRIES} entries, this one {}",
                parsed.len()
            )));
        }
        let mut items = Vec::with_capacity(parsed.len());
        for (i, p) in parsed.into_iter().enumerate() {
            self.check_files(col.user_id, &p).await?;
            let Incoming::Sync(item) = p.into_incoming() else {
                return Err(Error::Invalid(format!(
                    "entry {} of the feed has no sx:sync (a posted feed is a FeedSync feed)",
                    i + 1
                )));
            };
            item.validate()?;
            items.push(item);
        }
        let merged: Vec<Result<Accepted>> = futures_util::stream::iter(items)
            .map(|item| self.merge(who, col, item))
            .buffered(16)
            .collect()
            .await;
        merged.into_iter().map(|m| m.map(|a| a.record)).collect()
    }

    /// AtomPub POST of a file: a media resource plus its media-link entry (RFC 5023 §9.6).
    pub async fn publish_media(
        &self,
        who: &Principal,
        col: &Collection,
        body: impl Upload,
        media_type: String,
        slug: Option<String>,
    ) -> Result<Accepted> {
        let (sha256, size) = self.blobs.put(body).await?;
        self.store.record_blob(col.user_id, &sha256, size).await?;
        let title = slug.clone().unwrap_or_else(|| format!("file {}", &sha256[..12]));
        let now = Timestamp::now();
        let entry = Entry {
            title: Text::plain(title),
            updated: now,
            media: Some(Media {
                sha256,
                size,
                media_type,
                slug,
            }),
            ..Entry::default()
        };
        self.create_new(who, col, now, entry).await
    }

    /// A new item (FeedSync create) under a fresh, time-ordered id.
    async fn create_new(&self, who: &Principal, col: &Collection, now: Timestamp, entry: Entry) -> Result<Accepted> {
        let item = feedsync::create(uuid::Uuid::now_v7().to_string(), &who.by(), now, false, entry);
        let seq = self
            .write(who, col, None, &item, ChangeKind::Create)
            .await?
            .ok_or_else(taken)?;
        Ok(Accepted {
            record: ItemRecord {
                seq,
                changed_at: now,
                item,
            },
            change: Some(ChangeKind::Create),
            created: true,
        })
    }

    /// AtomPub PUT: an edit by this endpoint (FeedSync update), a merge if the body carries
    /// `sx:sync`, or with `resolve` a conflict resolution that keeps the body's content.
    pub async fn replace(
        &self,
        who: &Principal,
        col: &Collection,
        sync_id: &str,
        if_match: Option<u64>,
        parsed: ParsedEntry,
        resolve: bool,
    ) -> Result<Accepted> {
        self.check_files(col.user_id, &parsed).await?;
        match parsed.into_incoming() {
            Incoming::Sync(incoming) => {
                if incoming.id() != sync_id {
                    return Err(Error::Invalid(format!(
                        "sx:sync id {:?} does not match the member's id {sync_id:?}",
                        incoming.id()
                    )));
                }
                self.edit(who, col, sync_id, if_match, Edit::Merge(&incoming)).await
            }
            Incoming::Plain(entry) if resolve => self.edit(who, col, sync_id, if_match, Edit::Resolve(entry)).await,
            Incoming::Plain(entry) => self.edit(who, col, sync_id, if_match, Edit::Update(entry)).await,
        }
    }

    /// A FeedSync conflict resolution (§2.8) by this endpoint: `entry` becomes the item's
    /// content and every conflict is settled, so every device sees the resolution.
    pub async fn resolve(
        &self,
        who: &Principal,
        col: &Collection,
        sync_id: &str,
        if_match: Option<u64>,
        entry: Entry,
    ) -> Result<Accepted> {
        self.edit(who, col, sync_id, if_match, Edit::Resolve(entry)).await
    }

    /// AtomPub DELETE: a FeedSync tombstone, kept so the deletion propagates.
    pub async fn delete(
        &self,
        who: &Principal,
        col: &Collection,
        sync_id: &str,
        if_match: Option<u64>,
    ) -> Result<Accepted> {
        self.edit(who, col, sync_id, if_match, Edit::Delete).await
    }

    /// Every file an entry's versions name (`fm:file`) must be one the user uploaded, with
    /// the size it has: an item never points at a blob the hub does not hold for them.
    async fn check_files(&self, user_id: i64, parsed: &ParsedEntry) -> Result<()> {
        let mut files: Vec<Media> = parsed.entry.media.iter().cloned().collect();
        if let Some(s) = &parsed.sync {
            files.extend(s.conflicts.iter().filter_map(|c| c.payload.media.clone()));
        }
        for m in &files {
            match self.store.blob_size(user_id, &m.sha256).await? {
                Some(size) if size == m.size => {}
                Some(size) => {
                    return Err(Error::Invalid(format!(
                        "fm:file {} says {} bytes, the blob has {size}",
                        m.sha256, m.size
                    )));
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "fm:file {0} is not uploaded: PUT /api/blobs/{0} first",
                        m.sha256
                    )));
                }
            }
        }
        Ok(())
    }

    /// An entry of a followed feed, kept under `sync_id` (derived from the feed and the
    /// entry's own id): created when new, updated when its payload changed, and left alone
    /// when not, so fetching the same feed again changes nothing. An entry without a date
    /// (`updated` at the epoch) keeps the date it was first seen with.
    pub async fn ingest(
        &self,
        who: &Principal,
        col: &Collection,
        sync_id: &str,
        mut entry: Entry,
    ) -> Result<Option<ChangeKind>> {
        for attempt in 0..MAX_RETRIES {
            backoff(attempt).await;
            let current = self.store.item(col.id, sync_id).await?;
            if entry.updated == Timestamp::from_unix(0) {
                entry.updated = current
                    .as_ref()
                    .map_or_else(Timestamp::now, |c| c.item.current.payload.updated);
            }
            let Some(current) = current else {
                let item = feedsync::create(sync_id.to_string(), &who.by(), Timestamp::now(), false, entry.clone());
                match self.write(who, col, None, &item, ChangeKind::Create).await? {
                    Some(_) => return Ok(Some(ChangeKind::Create)),
                    None => continue,
                }
            };
            let now = &current.item.current;
            if now.payload == entry && !now.sync.deleted {
                return Ok(None);
            }
            return Ok(self.edit(who, col, sync_id, None, Edit::Update(entry)).await?.change);
        }
        Err(Error::Conflict("the item kept changing; try again".into()))
    }

    /// Merges an incoming FeedSync item (§2.5) into the collection.
    pub async fn merge(&self, who: &Principal, col: &Collection, incoming: StoredItem) -> Result<Accepted> {
        incoming.validate()?;
        for attempt in 0..MAX_RETRIES {
            backoff(attempt).await;
            let local = self.store.item(col.id, incoming.id()).await?;
            if local.is_none() {
                let change = kind_of(MergeKind::Added, &incoming);
                match self.write(who, col, None, &incoming, change).await? {
                    Some(seq) => {
                        return Ok(Accepted {
                            record: ItemRecord {
                                seq,
                                changed_at: Timestamp::now(),
                                item: incoming,
                            },
                            change: Some(change),
                            created: true,
                        });
                    }
                    None => continue,
                }
            }
            match self.edit(who, col, incoming.id(), None, Edit::Merge(&incoming)).await {
                Err(Error::NotFound(_)) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict("too many concurrent writes to this item; retry".into()))
    }

    async fn edit(
        &self,
        who: &Principal,
        col: &Collection,
        sync_id: &str,
        if_match: Option<u64>,
        edit: Edit<'_>,
    ) -> Result<Accepted> {
        for attempt in 0..MAX_RETRIES {
            backoff(attempt).await;
            let Some(current) = self.store.item(col.id, sync_id).await? else {
                return Err(Error::NotFound("entry"));
            };
            if if_match.is_some_and(|etag| etag != current.seq) {
                return Err(Error::Stale);
            }
            let mut item = current.item.clone();
            let now = Timestamp::now();
            let by = who.by();
            let change = match &edit {
                Edit::Update(entry) => {
                    let entry = with_media(entry, &item);
                    feedsync::update(&mut item, &by, now, Some(entry), false);
                    ChangeKind::Update
                }
                Edit::Delete => {
                    feedsync::update(&mut item, &by, now, None, true);
                    ChangeKind::Delete
                }
                Edit::Resolve(entry) => {
                    let entry = with_media(entry, &item);
                    feedsync::resolve(&mut item, &by, now, Some(entry), false, Resolve::All);
                    ChangeKind::Resolve
                }
                Edit::Merge(incoming) if feedsync::is_edit_of(&item, incoming) => {
                    let deleted = incoming.current.sync.deleted;
                    let entry = with_media(&incoming.current.payload, &item);
                    feedsync::update(&mut item, &by, now, Some(entry), deleted);
                    if deleted {
                        ChangeKind::Delete
                    } else {
                        ChangeKind::Update
                    }
                }
                Edit::Merge(incoming) => {
                    let merged = feedsync::merge(Some(&item), (*incoming).clone())?;
                    if merged.kind == MergeKind::Unchanged {
                        return Ok(Accepted {
                            record: current,
                            change: None,
                            created: false,
                        });
                    }
                    item = merged.item;
                    kind_of(merged.kind, &item)
                }
            };
            match self.write(who, col, Some(current.seq), &item, change).await? {
                Some(seq) => {
                    return Ok(Accepted {
                        record: ItemRecord {
                            seq,
                            changed_at: now,
                            item,
                        },
                        change: Some(change),
                        created: false,
                    });
                }
                None if if_match.is_some() => return Err(Error::Stale),
                None => continue,
            }
        }
        Err(Error::Conflict("too many concurrent writes to this item; retry".into()))
    }

    /// Writes `item` if the stored one is still at `expected_seq` (absent for `None`); `None`
    /// when another write got there first.
    async fn write(
        &self,
        who: &Principal,
        col: &Collection,
        expected_seq: Option<u64>,
        item: &StoredItem,
        kind: ChangeKind,
    ) -> Result<Option<u64>> {
        let activity = super::activities::index(&col.name, item, kind, self.region);
        let write = ItemWrite {
            activity: &activity,
            user_id: col.user_id,
            collection_id: col.id,
            expected_seq,
            item,
            kind,
            endpoint_id: Some(who.endpoint_id),
            at: Timestamp::now(),
            // Internal writers (followed feeds) have no token to check.
            live_token: (!who.token_hash.is_empty()).then_some(who.token_hash.as_str()),
        };
        match self.store.write_item(write).await {
            Ok(seq) => {
                self.heads.upsert(col.user_id, seq, |h| *h = (*h).max(seq));
                self.changed.send_modify(|n| *n += 1);
                Ok(Some(seq))
            }
            // Another write got there first: the caller reads again and retries.
            Err(StoreError::Conflict) => Ok(None),
            Err(StoreError::Revoked) => Err(Error::Unauthorized),
            Err(e) => Err(e.into()),
        }
    }
}

/// The items' use cases that name members by URL: what the hub itself wrote into an entry
/// it served (the fallback author, the alternate link to the member) is dropped before the
/// entry is compared with the stored one, so a generic client that sends back what it got
/// changes nothing, and one that changed it makes an edit (see `ParsedEntry::without_echo`).
impl super::Core {
    /// PUT of a member by a client (If-Match: `if_match`; `resolve`: a FeedSync resolution).
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_member(
        &self,
        who: &Principal,
        user: &str,
        col: &Collection,
        sync_id: &str,
        if_match: Option<u64>,
        parsed: ParsedEntry,
        resolve: bool,
    ) -> Result<Accepted> {
        let parsed = parsed.without_echo(&self.member_url(user, &col.name, sync_id), user);
        self.mesh.replace(who, col, sync_id, if_match, parsed, resolve).await
    }

    /// A device's changes as one FeedSync feed (see `Mesh::merge_feed`).
    pub async fn merge_device_feed(
        &self,
        who: &Principal,
        user: &str,
        col: &Collection,
        parsed: Vec<ParsedEntry>,
    ) -> Result<Vec<ItemRecord>> {
        let parsed = parsed
            .into_iter()
            .map(|p| match p.sync_id().map(|id| self.member_url(user, &col.name, id)) {
                Some(member) => p.without_echo(&member, user),
                None => p,
            })
            .collect();
        self.mesh.merge_feed(who, col, parsed).await
    }
}

/// Before retry `attempt` of a lost race: nothing the first time, then a random pause of up
/// to 2^attempt × 100 µs (capped at 50 ms), so writers of one hot item spread out.
async fn backoff(attempt: u32) {
    const RACE: Backoff = Backoff {
        base: Duration::from_micros(200),
        cap: Duration::from_millis(50),
        jitter_percent: 100,
    };
    if attempt > 0 {
        tokio::time::sleep(RACE.delay_now(attempt)).await;
    }
}

/// A new item's id was taken meanwhile (a UUID clash: practically never).
fn taken() -> Error {
    Error::Conflict("concurrent write".into())
}

/// A media-link entry keeps its file when an edit sends only new metadata.
fn with_media(entry: &Entry, current: &StoredItem) -> Entry {
    let mut e = entry.clone();
    if e.media.is_none() {
        e.media = current.current.payload.media.clone();
    }
    e
}

fn kind_of(kind: MergeKind, item: &StoredItem) -> ChangeKind {
    match kind {
        MergeKind::Conflict => ChangeKind::Conflict,
        MergeKind::Added if !item.current.sync.deleted => ChangeKind::Create,
        _ if item.current.sync.deleted => ChangeKind::Delete,
        _ => ChangeKind::Update,
    }
}
