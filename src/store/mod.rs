//! Persistence: the [`Store`] trait (no SQL in it) and its SQLite and PostgreSQL backends.
//! Only this module holds SQL. Callers never see a database error type.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::entry::{Entry, StoredItem};
use crate::domain::feedsync::Version;
use crate::domain::{CollectionName, DeviceName, Timestamp, UserName};
use crate::seal::Sealer;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// A concurrent write changed the row first; the caller re-reads and retries.
    #[error("concurrent write")]
    Conflict,
    /// The write's token was revoked before it could commit.
    #[error("token revoked")]
    Revoked,
    #[error("batched write failed: {0}")]
    Batch(String),
    /// A search the database refused (its syntax).
    #[error("bad search: {0}")]
    BadQuery(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot seal a secret: {0}")]
    Seal(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: UserName,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct TokenInfo {
    pub id: i64,
    pub device: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked: bool,
}

/// Who a credential speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub user: String,
    pub endpoint_id: i64,
    pub endpoint: String,
    /// The hash of the token this principal came from; item writes commit only while it is live.
    pub token_hash: String,
}

impl Principal {
    /// The FeedSync `by` of this endpoint: `alice/laptop`.
    pub fn by(&self) -> String {
        format!("{}/{}", self.user, self.endpoint)
    }
}

#[derive(Clone, Debug)]
pub struct FeedKey {
    pub id: i64,
    pub user_id: i64,
    pub user: String,
    pub feed_path: String,
    pub created_at: Timestamp,
    pub revoked: bool,
    /// A self key (derived, advertised as `rel="self"` of credentialed fetches).
    pub derived: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: i64,
    pub name: String,
}

/// An item as stored, with the sequence number of the change that last touched it.
#[derive(Clone, Debug)]
pub struct ItemRecord {
    pub seq: u64,
    /// When the hub accepted that change.
    pub changed_at: Timestamp,
    pub item: StoredItem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    Conflict,
    Resolve,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Conflict => "conflict",
            ChangeKind::Resolve => "resolve",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => ChangeKind::Create,
            "update" => ChangeKind::Update,
            "delete" => ChangeKind::Delete,
            "conflict" => ChangeKind::Conflict,
            "resolve" => ChangeKind::Resolve,
            _ => return None,
        })
    }
}

/// One accepted change, with the item's winning version right after it.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub seq: u64,
    pub collection: String,
    pub sync_id: String,
    pub endpoint: Option<String>,
    pub kind: ChangeKind,
    pub at: Timestamp,
    pub version: Version<Entry>,
    /// The activity it is: AS2 activity type and object type.
    pub verb: String,
    pub object_type: String,
}

/// A write of one item and the change it makes, done atomically.
pub struct ItemWrite<'a> {
    pub user_id: i64,
    pub collection_id: i64,
    /// `None`: the item must not exist yet. `Some(seq)`: it must still be at `seq`.
    pub expected_seq: Option<u64>,
    pub item: &'a StoredItem,
    pub kind: ChangeKind,
    pub endpoint_id: Option<i64>,
    pub at: Timestamp,
    /// When set, the write commits only if this token (hash) is still live at commit time:
    /// a token revoked a moment ago never writes, even if its check was cached.
    pub live_token: Option<&'a str>,
    /// What the change is as an activity, indexed in the same transaction.
    pub activity: &'a ActivityRow,
}

/// What a change is as an activity: written with the change, in its transaction.
#[derive(Clone, Debug, Default)]
pub struct ActivityRow {
    pub verb: String,
    pub object_type: String,
    /// (identity, role, name seen)
    pub parties: Vec<(String, &'static str, String)>,
    /// The words search finds it by.
    pub text: String,
    /// For an item of `Contacts`: the contact index as of this version.
    pub contact: Option<ContactRow>,
}

/// What the contacts index keeps of one contact (derived from its vCard).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactRow {
    pub contact_id: String,
    /// The item was deleted: the contact leaves the index.
    pub removed: bool,
    pub name: String,
    pub org: String,
    pub tags: Vec<String>,
    pub identities: Vec<String>,
    /// (slug, name)
    pub companies: Vec<(String, String)>,
}

/// Which activities a feed shows; every field narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    pub endpoint_id: Option<i64>,
    pub collection_id: Option<i64>,
    /// Activities naming an identity of this contact.
    pub contact: Option<String>,
    /// Activities naming an identity of a person of this company.
    pub company: Option<String>,
    /// Activities naming an identity of a contact with any of these tags.
    pub tags: Vec<String>,
    /// An AS2 activity type or object type.
    pub kind: Option<String>,
    /// Unix seconds: at or after `since`, before `until`.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Full text: the query compiled for each backend (FTS5, tsquery).
    pub text: Option<(String, String)>,
}

/// Where a page of activities starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// Newest first, below this sequence number (from the top when `None`).
    Before(Option<u64>),
    /// Oldest first, above this sequence number (deliveries).
    After(u64),
}

/// Why an activity is in a contact's or a company's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub identity: String,
    pub role: String,
    pub contact_id: String,
}

/// A contact as the index has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContactSummary {
    pub id: String,
    pub name: String,
    pub org: String,
    pub tags: Vec<String>,
    pub identities: Vec<String>,
    pub companies: Vec<String>,
}

/// An identity seen in activities that no contact holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Suggestion {
    pub identity: String,
    pub name: String,
    pub count: u64,
    /// RFC 3339
    pub last_seen: String,
}

/// Counts of a contact's or company's activities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// (object type, "YYYY-MM", count)
    pub by_type_month: Vec<(String, String, u64)>,
    pub last: Option<Timestamp>,
}

/// A merge of two contacts, as recorded for its undo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeRecord {
    pub merge_id: String,
    pub into_id: String,
    pub other_id: String,
    pub into_before: String,
    pub other_before: String,
    /// The identities that came from `other` (JSON array).
    pub moved: String,
    pub at: Timestamp,
    pub undone: bool,
}

/// A company: contacts grouped by organisation or e-mail domain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Company {
    pub slug: String,
    pub name: String,
    pub people: Vec<String>,
}

/// A verified WebSub subscription to a hosted feed.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub callback: String,
    /// None for an outside topic (open hub).
    pub user_id: Option<i64>,
    /// The hosted feed's path (`/u/alice/stream.atom`), what the topic URL names.
    pub feed: String,
    /// The hash of the feed key in the topic URL.
    pub key_hash: String,
    pub secret: Option<String>,
    pub lease_seconds: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// A subscription with news to deliver: its cursor is behind the user's head.
#[derive(Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: i64,
    pub topic: String,
    pub callback: String,
    /// None for an outside topic (open hub).
    pub user_id: Option<i64>,
    pub feed: String,
    pub key_hash: String,
    pub secret: Option<String>,
    pub delivered_seq: u64,
    pub attempts: i64,
}

/// An outside feed followed into a collection (by WebSub, or by polling).
#[derive(Clone, PartialEq, Eq)]
pub struct Follow {
    pub id: i64,
    pub user_id: i64,
    pub collection_id: i64,
    /// The URL as given.
    pub url: String,
    /// The feed's `rel="self"` once discovered: the topic subscribed to at `hub`.
    pub topic: String,
    pub hub: String,
    /// The random path segment of this follow's callback URL.
    pub callback_token: String,
    /// The `hub.secret` given to the hub; deliveries must be signed with it.
    pub secret: String,
    pub state: FollowState,
    /// Unix ms: when the hub's lease ends; when the worker next looks at this follow.
    pub lease_expires_at: i64,
    pub next_at: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_error: Option<String>,
    /// A feed connector's WebSub subscription, not a follow of the user's own.
    pub connector_id: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowState {
    /// Fetched with conditional GETs every poll interval.
    Polling,
    /// A subscription was requested; the hub has not verified it yet.
    Subscribing,
    /// The hub verified the subscription; it pushes, and the lease is renewed before it ends.
    Subscribed,
    /// Removed by its user: the worker tells the hub (unsubscribe), then it is deleted.
    /// Never listed; its callback answers deliveries with 410 Gone.
    Leaving,
}

impl FollowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowState::Polling => "polling",
            FollowState::Subscribing => "subscribing",
            FollowState::Subscribed => "subscribed",
            FollowState::Leaving => "leaving",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "subscribing" => FollowState::Subscribing,
            "subscribed" => FollowState::Subscribed,
            "leaving" => FollowState::Leaving,
            _ => FollowState::Polling,
        }
    }
}

/// An outside topic due for fetching (open hub).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFetch {
    pub id: i64,
    pub url: String,
    /// The type of the last fetch, preferred in `Accept` (G4); empty before the first.
    pub content_type: String,
}

/// An outside topic's content as last fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicContent {
    pub content_type: String,
    pub body: Vec<u8>,
    /// SHA-256 of the body, hex.
    pub hash: String,
    /// Bumped on every change of content; what subscribers' cursors count.
    pub version: u64,
}

/// A subscribe or unsubscribe waiting for its verification of intent.
#[derive(Clone, PartialEq, Eq)]
pub struct HubRequest {
    pub id: i64,
    pub subscribe: bool,
    pub topic: String,
    pub callback: String,
    /// None for an outside topic (open hub).
    pub user_id: Option<i64>,
    pub feed: String,
    pub key_hash: String,
    pub secret: Option<String>,
    pub lease_seconds: i64,
    pub attempts: i64,
}

crate::debug_redacted!(Subscription { callback, user_id, feed, key_hash, lease_seconds, expires_at } url { topic } secret { secret });
crate::debug_redacted!(DueDelivery { id, callback, user_id, feed, key_hash, delivered_seq, attempts } url { topic } secret { secret });
crate::debug_redacted!(HubRequest { id, subscribe, callback, user_id, feed, key_hash, lease_seconds, attempts } url { topic } secret { secret });
crate::debug_redacted!(Follow {
    id, user_id, collection_id, url, topic, hub, state, lease_expires_at, next_at, etag, last_modified, last_error, connector_id
} secret { callback_token, secret });

/// Users, their devices (endpoints and tokens), feed keys, collections and server secrets.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_user(&self, name: &UserName) -> Result<User>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn user(&self, name: &str) -> Result<User>;
    async fn user_by_id(&self, id: i64) -> Result<User>;
    /// Adds a token for the user's device, creating the endpoint on first use.
    async fn add_token(
        &self,
        user: &UserName,
        device: &DeviceName,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenInfo>;
    async fn tokens(&self, user: &UserName) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, user: &UserName, token_id: i64) -> Result<()>;
    /// The principal of a live (not revoked) token.
    async fn principal(&self, token_hash: &str) -> Result<Option<Principal>>;
    async fn endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint>;
    async fn add_feed_key(&self, user_id: i64, feed_path: &str, key_hash: &str) -> Result<FeedKey>;
    async fn feed_keys(&self, user_id: i64) -> Result<Vec<FeedKey>>;
    async fn revoke_feed_key(&self, user_id: i64, key_id: i64) -> Result<()>;
    /// A live (not revoked) feed key.
    async fn feed_key(&self, key_hash: &str) -> Result<Option<FeedKey>>;
    /// The generation of the live self key of (user, feed path), made (generation one past
    /// the last revoked one) when there is none. `hash_of(generation)` is the key's hash.
    async fn self_key(
        &self,
        user_id: i64,
        feed_path: &str,
        hash_of: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<i64>;
    /// A secret of this installation, shared by every process on the database: the one
    /// stored under `name`, or `fresh` (random, from the caller) stored now.
    async fn server_secret(&self, name: &str, fresh: &str) -> Result<String>;
    async fn create_collection(&self, user_id: i64, name: &CollectionName) -> Result<Collection>;
    async fn collections(&self, user_id: i64) -> Result<Vec<Collection>>;
    async fn collection(&self, user_id: i64, name: &str) -> Result<Collection>;
    /// The endpoint a followed feed writes as (created on first use).
    async fn feed_endpoint(&self, user_id: i64, name: &str) -> Result<Endpoint>;
}

/// An app password as listed (the password itself is shown once, when issued).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPassword {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: Timestamp,
    pub last_used: Option<Timestamp>,
    pub revoked: bool,
}

/// Who a browser session or an app password speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub user_id: i64,
    pub user: String,
}

/// How people log in: account passwords (argon2id PHC strings), browser sessions and app
/// passwords (both random, kept as SHA-256 hashes).
#[async_trait]
pub trait LoginStore: Send + Sync {
    /// Sets the user's password and ends every session of theirs.
    async fn set_password(&self, user_id: i64, phc: &str) -> Result<()>;
    async fn password(&self, user_id: i64) -> Result<Option<String>>;
    async fn add_session(&self, user_id: i64, token_hash: &str, expires_at: i64) -> Result<()>;
    /// The live session with this hash (expired ones are gone).
    async fn session(&self, token_hash: &str, now: i64) -> Result<Option<Login>>;
    async fn end_session(&self, token_hash: &str) -> Result<()>;
    async fn add_app_password(
        &self,
        user_id: i64,
        name: &str,
        hash: &str,
        fever_hash: &str,
        prefix: &str,
    ) -> Result<AppPassword>;
    async fn app_passwords(&self, user_id: i64) -> Result<Vec<AppPassword>>;
    async fn revoke_app_password(&self, user_id: i64, id: i64) -> Result<()>;
    /// The live app password with this hash (or, `fever`, this Fever key hash); marks it used.
    async fn app_password(&self, hash: &str, fever: bool) -> Result<Option<Login>>;
}

/// A feed as the reading APIs number it: `kind` and `key` say what it is (see
/// `usecases::reading`), `id` is its stable integer id for that user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderFeed {
    pub id: i64,
    pub kind: String,
    pub key: String,
}

/// What a user marked on one activity: `read` None means "as the watermark says".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadMark {
    pub read: Option<bool>,
    pub starred: bool,
}

/// What reader apps keep per user: feed ids, the read watermark, read and starred marks.
#[async_trait]
pub trait ReadingStore: Send + Sync {
    /// Gives each of `wanted` (kind, key) an id if it has none (the next free one, in
    /// order), and answers every feed id of the user.
    async fn reader_feeds(&self, user_id: i64, wanted: &[(String, String)]) -> Result<Vec<ReaderFeed>>;
    /// One feed by id.
    async fn reader_feed(&self, user_id: i64, feed_id: i64) -> Result<Option<ReaderFeed>>;
    /// The id of one feed, if it has one.
    async fn reader_feed_id(&self, user_id: i64, kind: &str, key: &str) -> Result<Option<i64>>;
    /// Every activity at or below this is read, unless marked otherwise (0 at first).
    async fn read_upto(&self, user_id: i64) -> Result<u64>;
    /// Raises the watermark to `upto` (never lowers it); marks at or below it that said
    /// read are dropped as said by it, those kept unread become read.
    async fn mark_read_upto(&self, user_id: i64, upto: u64) -> Result<()>;
    /// The marks of these activities (those without a row are default).
    async fn read_marks(&self, user_id: i64, seqs: &[u64]) -> Result<Vec<(u64, ReadMark)>>;
    /// Sets read (when given) and starred (when given) on each of `seqs`.
    async fn set_marks(&self, user_id: i64, seqs: &[u64], read: Option<bool>, starred: Option<bool>) -> Result<()>;
    /// Starred activities, newest first, below `before`.
    async fn starred(&self, user_id: i64, before: Option<u64>, limit: u32) -> Result<Vec<u64>>;
    /// The lowest activity kept unread at or below the watermark, if any.
    async fn lowest_kept_unread(&self, user_id: i64) -> Result<Option<u64>>;
    /// These changes of the user, by sequence number (newest first; unknown ones left out).
    async fn changes_at(&self, user_id: i64, seqs: &[u64]) -> Result<Vec<ChangeRecord>>;
}

/// Items and their changes: the FeedSync state of every collection, and the change log that feeds and streams read.
#[async_trait]
pub trait ItemStore: Send + Sync {
    async fn item(&self, collection_id: i64, sync_id: &str) -> Result<Option<ItemRecord>>;
    /// Writes the item and records the change; returns the change's sequence number.
    /// Fails with [`StoreError::Conflict`] when `expected_seq` no longer holds.
    async fn write_item(&self, write: ItemWrite<'_>) -> Result<u64>;
    /// Items of a collection changed after `after`, oldest change first.
    async fn items_since(&self, collection_id: i64, after: u64, limit: u32) -> Result<Vec<ItemRecord>>;
    /// The user's items in conflict, with their collection's name, latest change first.
    async fn conflicted(&self, user_id: i64, limit: u32) -> Result<Vec<(String, ItemRecord)>>;
    /// How many of the user's items are in conflict.
    async fn conflict_count(&self, user_id: i64) -> Result<u64>;
    /// The sequence number of the collection's latest change (0 if none).
    async fn collection_head(&self, collection_id: i64) -> Result<u64>;
    /// The user's changes (or one endpoint's), newest first, before `before` if given.
    async fn changes(
        &self,
        user_id: i64,
        endpoint_id: Option<i64>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>>;
    /// The user's latest sequence number (0 if none).
    async fn user_head(&self, user_id: i64) -> Result<u64>;
    /// The user's changes after `after`, oldest first, optionally of one endpoint.
    async fn changes_after(
        &self,
        user_id: i64,
        endpoint_id: Option<i64>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>>;
    /// Ticks whenever any process sharing the database commits an item write (PostgreSQL
    /// LISTEN/NOTIFY); `None` where this process is the only writer (SQLite).
    fn changes_elsewhere(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// The WebSub hub: queued verifications, subscriptions and their delivery cursors, outside topics (open hub).
#[async_trait]
pub trait WebSubStore: Send + Sync {
    /// Queues a verification of intent (`id` is ignored); runs at `run_at` (Unix ms).
    async fn hub_enqueue(&self, request: &HubRequest, run_at: i64) -> Result<i64>;
    /// Claims up to `limit` due requests for `lease_ms`; a crashed worker's claims expire.
    async fn hub_claim(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<HubRequest>>;
    async fn hub_done(&self, id: i64) -> Result<()>;
    async fn hub_retry(&self, id: i64, run_at: i64) -> Result<()>;
    /// Creates or replaces the (topic, callback) subscription; its delivery cursor starts at
    /// the user's head for a new one and is kept on renewal.
    async fn subscribe(&self, sub: &Subscription) -> Result<()>;
    /// Removes a subscription; false if there was none.
    async fn unsubscribe(&self, topic: &str, callback: &str) -> Result<bool>;
    async fn subscription(&self, topic: &str, callback: &str) -> Result<Option<Subscription>>;
    /// Claims up to `limit` live subscriptions whose cursor is behind their user's head and
    /// whose next attempt is due, for `lease_ms`.
    async fn deliveries_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DueDelivery>>;
    /// Records that these subscribers have everything up to `seq`; clears failures and claims.
    async fn delivered(&self, ids: &[i64], seq: u64) -> Result<()>;
    /// Records a failed attempt: try again at `next_at` (Unix ms).
    async fn delivery_failed(&self, id: i64, next_at: i64) -> Result<()>;
    async fn drop_subscription(&self, id: i64) -> Result<()>;
    /// Subscriptions whose feed key was revoked: (id, topic, callback).
    async fn revoked_subscriptions(&self, limit: u32) -> Result<Vec<(i64, String, String)>>;
    /// The subscriptions (id, callback) to an outside topic.
    async fn subscriptions_to(&self, topic: &str) -> Result<Vec<(i64, String)>>;
    /// Removes subscriptions whose lease ended before `now_ms`, and outside topics nobody
    /// subscribes to any more; returns how many subscriptions.
    async fn purge_expired(&self, now_ms: i64) -> Result<u64>;
    /// Open hub: marks an outside topic for fetching at `now_ms`; false when nobody
    /// subscribes to it (then nothing is fetched).
    async fn topic_ping(&self, url: &str, now_ms: i64) -> Result<bool>;
    /// Claims up to `limit` outside topics due for fetching, for `lease_ms`.
    async fn topic_fetches_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<TopicFetch>>;
    /// Records a fetch claimed at `claimed_at` (`None`: it failed). New content (by hash)
    /// becomes the next version; returns whether it did. A ping during the fetch stays due.
    async fn topic_fetched(&self, id: i64, claimed_at: i64, content: Option<TopicContent>) -> Result<bool>;
    /// The last fetched content of an outside topic.
    async fn topic_content(&self, url: &str) -> Result<Option<TopicContent>>;
}

/// Follows of outside feeds (the subscriber side of WebSub, and the feed connector's cursor).
#[async_trait]
pub trait FollowStore: Send + Sync {
    /// Follows `url` into a collection; due at once. A second follow of one URL by one user
    /// is `AlreadyExists`.
    async fn add_follow(
        &self,
        user_id: i64,
        collection_id: i64,
        url: &str,
        callback_token: &str,
        secret: &str,
    ) -> Result<Follow>;
    async fn follows(&self, user_id: i64) -> Result<Vec<Follow>>;
    async fn follow_by_token(&self, callback_token: &str) -> Result<Option<Follow>>;
    /// Removes one of the user's follows and returns it. One subscribed at a hub is only
    /// marked `Leaving` (due at once): the worker unsubscribes, then [`Store::drop_follow`].
    async fn remove_follow(&self, user_id: i64, id: i64) -> Result<Follow>;
    /// Deletes a `Leaving` follow (its hub was told).
    async fn drop_follow(&self, id: i64) -> Result<()>;
    /// Claims up to `limit` follows due at `now_ms`, for `lease_ms`.
    async fn follows_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<Follow>>;
    /// Writes a follow's state back and releases its claim, if its state is still `was` (the
    /// one the worker claimed it in); false, and nothing written, when a hub's verification
    /// or denial or a removal changed it meanwhile.
    async fn update_follow(&self, follow: &Follow, was: FollowState) -> Result<bool>;
    /// The hub verified (subscribe) a follow waiting for it: it is subscribed until
    /// `lease_expires_at` and looked at again (for renewal) at `next_at`. False if the follow
    /// is gone or was not waiting for a hub.
    async fn follow_verified(&self, id: i64, lease_expires_at: i64, next_at: i64) -> Result<bool>;
    /// The hub denied or could not take the subscription: back to polling at `next_at`.
    async fn follow_fallback(&self, id: i64, reason: &str, next_at: i64) -> Result<()>;
    /// Makes a new follow a feed connector's WebSub subscription at `hub` for `topic`, due now.
    async fn link_follow(&self, user_id: i64, id: i64, connector_id: i64, topic: &str, hub: &str) -> Result<()>;
    /// A feed connector's WebSub subscription, if it has one.
    async fn follow_of_connector(&self, user_id: i64, connector_id: i64) -> Result<Option<Follow>>;
}

/// A user's connection to an outside service (see `usecases::connectors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorRow {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub collection_id: i64,
    pub outbox_id: Option<i64>,
    pub account: String,
    /// The options that are not secret (JSON object).
    pub options: String,
    /// The secret options (JSON object), opened; sealed at rest.
    pub secrets: Option<String>,
    pub state: ConnectorState,
    /// The connector's cursor (JSON), as its last successful pull left it.
    pub cursor: Option<String>,
    /// Unix ms of the next run.
    pub next_at: i64,
    /// Runs failed in a row.
    pub failures: i64,
    /// Unix ms.
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// The OAuth provider it is authorised at, and its tokens (JSON), opened; sealed at rest.
    pub provider: Option<String>,
    pub tokens: Option<String>,
    /// How far it has read its outbox collection (a sequence number of the user's).
    pub outbox_seq: i64,
    /// The process holding its listener (a push connection to its service), and until when
    /// (Unix ms; with no owner, the time before which none may take it).
    pub listener_owner: Option<String>,
    pub listener_until: i64,
    /// Unix ms: when its listener's connection came up (None while not connected).
    pub listening_at: Option<i64>,
}

impl ConnectorRow {
    /// Whether a live listener of it is connected at `now_ms`.
    pub fn listening(&self, now_ms: i64) -> bool {
        self.listener_owner.is_some() && self.listener_until > now_ms && self.listening_at.is_some()
    }
}

/// An item a connector posted: its id and page at the service, and the item's sequence
/// number last sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorPost {
    pub remote_id: String,
    pub remote_url: Option<String>,
    pub sent_seq: i64,
    /// The id the connector's own pull gives what it posted (its echo, when it comes back).
    pub pulled_id: Option<String>,
}

/// A user's collection routed into a connector's outbox (see `usecases::routes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRow {
    pub id: i64,
    pub user_id: i64,
    pub from_collection_id: i64,
    pub connector_id: i64,
    /// The search filters an item must pass (JSON, `SearchQuery`).
    pub filter: String,
    /// How far it has read its collection (a sequence number of the user's).
    pub seq: i64,
    pub created_at: i64,
}

/// A user's registration of the hub as an OAuth 2.0 client at a provider.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub provider: String,
    pub client_id: String,
    /// Opened; sealed at rest.
    pub client_secret: Option<String>,
    pub authorize_url: String,
    pub token_url: String,
    /// RFC 7009, where the provider offers it.
    pub revoke_url: Option<String>,
    pub scope: String,
    /// Where the hub registered itself, when it did (a Mastodon instance's `/api/v1/apps`,
    /// an RFC 7591 registration endpoint), and the redirect URI it registered.
    pub registration_url: Option<String>,
    pub registered_redirect: Option<String>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("authorize_url", &self.authorize_url)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorState {
    /// Waits for its user to authorise it (the OAuth round trip).
    NeedsAuth,
    Active,
    /// Stopped by its user.
    Paused,
    /// The service refused its credentials: its user must connect it again.
    NeedsReconnect,
    /// Its last runs failed; still tried (with backoff) unless the failure was permanent.
    Failing,
}

impl ConnectorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::NeedsAuth => "needs-auth",
            ConnectorState::Active => "active",
            ConnectorState::Paused => "paused",
            ConnectorState::NeedsReconnect => "needs-reconnect",
            ConnectorState::Failing => "failing",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "needs-auth" => ConnectorState::NeedsAuth,
            "active" => ConnectorState::Active,
            "paused" => ConnectorState::Paused,
            "needs-reconnect" => ConnectorState::NeedsReconnect,
            "failing" => ConnectorState::Failing,
            _ => return None,
        })
    }
}

/// What a connector's run leaves: written back only while the connector is in the state
/// it was claimed in (a pause or removal meanwhile wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorRun {
    pub account: String,
    pub state: ConnectorState,
    pub cursor: Option<String>,
    pub next_at: i64,
    pub failures: i64,
    pub last_sync_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Connectors: each user's connections to outside services, claimed for runs with leases.
#[async_trait]
pub trait ConnectorStore: Send + Sync {
    /// Adds a connector, due at once; `secrets` (JSON) are sealed.
    #[allow(clippy::too_many_arguments)]
    async fn add_connector(
        &self,
        user_id: i64,
        kind: &str,
        collection_id: i64,
        outbox_id: Option<i64>,
        options: &str,
        secrets: Option<&str>,
        state: ConnectorState,
    ) -> Result<ConnectorRow>;
    async fn connectors(&self, user_id: i64) -> Result<Vec<ConnectorRow>>;
    /// One of the user's connectors (another user's is `NotFound`).
    async fn connector(&self, user_id: i64, id: i64) -> Result<ConnectorRow>;
    async fn remove_connector(&self, user_id: i64, id: i64) -> Result<()>;
    /// Sets a connector's state and next run (pause, resume, sync now); `NotFound` if not the user's.
    async fn set_connector_state(&self, user_id: i64, id: i64, state: ConnectorState, next_at: i64) -> Result<()>;
    /// Claims up to `limit` active or failing connectors due at `now_ms`, for `lease_ms`.
    async fn connectors_due(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<ConnectorRow>>;
    /// Writes a run's outcome and releases the claim, if the connector is still in state
    /// `was`; false (only the claim released) when its user changed it meanwhile.
    async fn finish_connector_run(&self, c: &ConnectorRow, was: ConnectorState, run: &ConnectorRun) -> Result<bool>;
    /// Sets a connector's provider, tokens (JSON, sealed here) and state; due at `next_at`.
    async fn set_connector_tokens(
        &self,
        user_id: i64,
        id: i64,
        provider: &str,
        tokens: Option<&str>,
        state: ConnectorState,
        next_at: i64,
    ) -> Result<()>;
    /// Adds or replaces the user's client registration at `client.provider`.
    async fn put_oauth_client(&self, user_id: i64, client: &OAuthClient) -> Result<()>;
    async fn oauth_client(&self, user_id: i64, provider: &str) -> Result<Option<OAuthClient>>;
    async fn oauth_clients(&self, user_id: i64) -> Result<Vec<OAuthClient>>;
    async fn remove_oauth_client(&self, user_id: i64, provider: &str) -> Result<()>;
    /// An authorisation waiting for its callback (the verifier is sealed here).
    async fn add_oauth_pending(
        &self,
        user_id: i64,
        state_hash: &str,
        connector_id: i64,
        verifier: &str,
        expires_at: i64,
    ) -> Result<()>;
    async fn connector_post(&self, user_id: i64, connector_id: i64, sync_id: &str) -> Result<Option<ConnectorPost>>;
    async fn put_connector_post(
        &self,
        user_id: i64,
        connector_id: i64,
        sync_id: &str,
        post: &ConnectorPost,
    ) -> Result<()>;
    async fn remove_connector_post(&self, user_id: i64, connector_id: i64, sync_id: &str) -> Result<()>;
    /// Makes due now every running connector whose outbox collection has items it has not
    /// read; answers how many.
    async fn wake_outbox_connectors(&self, now_ms: i64) -> Result<u64>;
    /// Records how far a connector has read its outbox.
    async fn set_outbox_seq(&self, user_id: i64, connector_id: i64, seq: i64) -> Result<()>;
    /// Takes (deletes and answers) a waiting authorisation: (connector id, verifier, expires at).
    async fn take_oauth_pending(&self, user_id: i64, state_hash: &str) -> Result<Option<(i64, String, i64)>>;
    /// What one of the user's connectors posted that a pull brings back as `pulled_id`: the
    /// connector and its outbox item's sync id.
    async fn connector_post_pulled(&self, user_id: i64, pulled_id: &str) -> Result<Option<(i64, String)>>;
    /// Adds a route, reading its collection from `seq`; `AlreadyExists` for the same pair.
    async fn add_route(
        &self,
        user_id: i64,
        from_collection_id: i64,
        connector_id: i64,
        filter: &str,
        seq: i64,
    ) -> Result<RouteRow>;
    async fn routes(&self, user_id: i64) -> Result<Vec<RouteRow>>;
    async fn remove_route(&self, user_id: i64, id: i64) -> Result<()>;
    async fn set_route_seq(&self, user_id: i64, id: i64, seq: i64) -> Result<()>;
    /// The copy (its sync id in the connector's outbox) a route made of a source item.
    async fn route_copy(&self, user_id: i64, route_id: i64, source_sync_id: &str) -> Result<Option<String>>;
    async fn put_route_copy(&self, user_id: i64, route_id: i64, source_sync_id: &str, copy_sync_id: &str)
    -> Result<()>;
    /// The route and source item a copy was made from.
    async fn route_copy_source(&self, user_id: i64, copy_sync_id: &str) -> Result<Option<(i64, String)>>;
    /// Claims for `owner` up to `limit` running connectors of `kinds` whose listener no
    /// process holds (and none is waited for), until `now_ms + lease_ms`.
    async fn claim_listeners(
        &self,
        owner: &str,
        kinds: &[&str],
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ConnectorRow>>;
    /// Keeps `owner`'s listener claim until `until_ms`; false when it lost it, or the
    /// connector stopped running (paused, removed, needs its user): the listener then ends.
    async fn renew_listener(&self, user_id: i64, id: i64, owner: &str, until_ms: i64) -> Result<bool>;
    /// Records that `owner`'s listener connected (`Some(now)`: and makes the connector due
    /// now, for a run to catch up what came before) or lost its connection (`None`).
    async fn set_listening(&self, user_id: i64, id: i64, owner: &str, now_ms: Option<i64>) -> Result<()>;
    /// Lets `owner`'s listener claim go; none is claimed again before `not_before_ms`.
    async fn release_listener(&self, user_id: i64, id: i64, owner: &str, not_before_ms: i64) -> Result<()>;
    /// Keeps a claimed run's lease until `until_ms` (a run longer than one lease).
    async fn renew_connector_claim(&self, user_id: i64, id: i64, until_ms: i64) -> Result<()>;
}

/// People: the activities' identities, the contacts index (kept by item writes), companies,
/// merges, saved views and search.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// The user's activities that pass `filter`, a page from `page`.
    async fn activities(
        &self,
        user_id: i64,
        filter: &ActivityFilter,
        page: Page,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>>;
    /// Why each of `seqs` is in the timeline of a contact or company: the identities that matched.
    async fn links(
        &self,
        user_id: i64,
        contact: Option<&str>,
        company: Option<&str>,
        seqs: &[u64],
    ) -> Result<Vec<Link>>;
    /// The user's contacts, by name.
    async fn contacts(&self, user_id: i64) -> Result<Vec<ContactSummary>>;
    /// At most `limit` contacts by name, as (id, name, hint: the first identity, else the
    /// org): all of them, or (`like`) those
    /// whose name starts with `like.0` or whose org is `like.1` (not empty), for pickers.
    async fn contact_names(
        &self,
        user_id: i64,
        like: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>>;
    async fn contact(&self, user_id: i64, contact_id: &str) -> Result<Option<ContactSummary>>;
    /// The identities of a contact, of a company's people, or of contacts with any of these
    /// tags (the first given), with the contact each belongs to: (identity, contact), sorted.
    async fn identities_of(
        &self,
        user_id: i64,
        contact: Option<&str>,
        company: Option<&str>,
        tags: &[String],
    ) -> Result<Vec<(String, String)>>;
    /// The contacts that hold any of these identities.
    async fn contacts_with(&self, user_id: i64, identities: &[String]) -> Result<Vec<String>>;
    /// Identities seen in activities that no contact holds, most seen first.
    async fn suggestions(&self, user_id: i64, limit: u32) -> Result<Vec<Suggestion>>;
    /// Counts by object type and month of a contact's (or company's) activities, and the last one.
    async fn tally(&self, user_id: i64, contact: Option<&str>, company: Option<&str>) -> Result<Tally>;
    async fn companies(&self, user_id: i64) -> Result<Vec<Company>>;
    async fn record_merge(&self, user_id: i64, merge: &MergeRecord) -> Result<()>;
    async fn merge_record(&self, user_id: i64, merge_id: &str) -> Result<Option<MergeRecord>>;
    /// Marks a merge undone; false when it already was.
    async fn merge_undone(&self, user_id: i64, merge_id: &str) -> Result<bool>;
    /// Creates or replaces a saved view (its query as JSON).
    async fn put_view(&self, user_id: i64, name: &str, query: &str) -> Result<()>;
    async fn views(&self, user_id: i64) -> Result<Vec<(String, String)>>;
    async fn view(&self, user_id: i64, name: &str) -> Result<Option<String>>;
    async fn delete_view(&self, user_id: i64, name: &str) -> Result<bool>;
    /// A user whose changes from before activities are not all indexed yet: (user, the
    /// highest sequence number still to do).
    async fn backfill_due(&self) -> Result<Option<(i64, u64)>>;
    /// Indexes old changes (seq, activity) of a user in one transaction, and records that
    /// what is at or below `upto` is still to do (0: done).
    async fn backfill(&self, user_id: i64, rows: &[(u64, ActivityRow)], upto: u64) -> Result<()>;
}

/// Which user uploaded which file (the bytes live on disk, see `crate::blobs`).
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Records that `user_id` uploaded the blob (stored on disk under its SHA-256).
    async fn record_blob(&self, user_id: i64, sha256: &str, size: u64) -> Result<()> {
        self.record_blobs(user_id, &[(sha256.to_string(), size)])
            .await
            .map(drop)
    }
    /// Records several uploaded blobs (SHA-256, size) in one transaction; says of each
    /// whether it is new to the user.
    async fn record_blobs(&self, user_id: i64, blobs: &[(String, u64)]) -> Result<Vec<bool>>;
    /// The size of a blob the user uploaded; None for any other blob.
    async fn blob_size(&self, user_id: i64, sha256: &str) -> Result<Option<u64>>;
}

/// Everything the hub keeps, by area; one implementation (`sql::SqlStore`) serves SQLite
/// and PostgreSQL. Callers bring the area's trait into scope (`use crate::store::areas::*`).
#[async_trait]
pub trait Store:
    AccountStore
    + LoginStore
    + ItemStore
    + WebSubStore
    + FollowStore
    + BlobStore
    + PeopleStore
    + ConnectorStore
    + ReadingStore
    + 'static
{
    /// Releases every claim on verifications and deliveries: for a process that owns the
    /// database alone (SQLite `serve`) starting after a crash, so nothing waits for a lease.
    async fn release_claims(&self) -> Result<()>;
}

/// The area traits, to bring into scope at once.
pub mod areas {
    pub use super::{
        AccountStore, BlobStore, ConnectorStore, FollowStore, ItemStore, LoginStore, PeopleStore, ReadingStore, Store,
        WebSubStore,
    };
}

/// Opens the store a URL names (`sqlite://PATH` or `postgres://...`) and runs its migrations.
/// `sealer` seals the secrets it keeps (see `crate::seal`); it must be the key the database
/// was first opened with, or opening fails.
pub async fn open(url: &str, sealer: Arc<Sealer>) -> anyhow::Result<Arc<dyn Store>> {
    let store = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        sqlite::open(path, sealer).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::open(url, sealer).await?
    } else {
        anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://USER@HOST/DB")
    };
    store.prepare_sealing().await?;
    Ok(Arc::new(store))
}
