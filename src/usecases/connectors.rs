//! Connectors: each user's own connections to outside services, added, listed, paused,
//! resumed, synced and removed alike by `feedmesh connector …` and `/api/connectors`, and
//! run by the connector runtime ([`run`]). A connector is a crate under `connectors/`
//! behind the contract (`feedmesh_connector`): it sees no database and no network but the
//! guarded client the hub hands it; the hub keeps its options (secret ones sealed), its
//! cursor and its state, and writes what it pulls into its collection as the endpoint
//! `connector-ID`, so every pulled item is an ordinary FeedSync change and activity.
//!
//! A run is a claimed row (a lease; `SKIP LOCKED` on PostgreSQL), so several `serve`
//! processes share the connectors and a crashed run comes due again. Items are written
//! before the cursor moves, and each has a stable id, so a run cut short is done again
//! without duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use feedmesh_connector::{Connector, ConnectorError, Cursor, ErrorKind, Options};

use super::Core;
pub use super::kinds::{KINDS, Kind, OAuth, kind, kinds_help};
use super::kinds::{RESEND, build, store_err, writer};
use crate::error::{Error, Result};
use crate::fetch::ConnectorHttp;
use crate::jobs::{self, Backoff, Stop, now_ms};
use crate::store::{ConnectorRow, ConnectorRun, ConnectorState, Principal};

/// Options that name a server the connector will reach: checked like every outbound URL.
const URL_OPTIONS: [&str; 3] = ["url", "api", "instance"];

/// A connector just added, and the URL its user opens to authorise it (OAuth kinds given no
/// token); until then it is `needs-auth`.
pub struct Added {
    pub connector: ConnectorRow,
    pub authorize_url: Option<String>,
}

/// Adds a connector of `kind` for the user, writing into `collection` (default: the kind's
/// name; made if missing), and wakes the runtime: its first pull starts at once, or once
/// its user has authorised it at the provider.
pub async fn add(
    core: &Core,
    user_id: i64,
    kind_name: &str,
    collection: Option<&str>,
    pairs: Vec<(String, String)>,
    allow_private: bool,
) -> Result<Added> {
    let kind = kind(kind_name)?;
    let options = Options::new(kind.options, pairs).map_err(|e| Error::Invalid(e.to_string()))?;
    (kind.build)(&options, None).map_err(|e| Error::Invalid(e.to_string()))?;
    let provider = match kind.oauth {
        OAuth::Provider(p) => Some(p),
        OAuth::Named(option) => options.get(option),
        OAuth::No | OAuth::MastodonApp => None,
    };
    let oauth: Option<String> = match (kind.oauth, provider) {
        _ if options.get("token").is_some() => None,
        (OAuth::MastodonApp, _) => {
            let instance = options.get("instance").unwrap_or_default();
            Some(super::oauth::mastodon_app(core, user_id, instance).await?)
        }
        (_, None) => None,
        (_, Some(provider)) => {
            if core.mesh.store.oauth_client(user_id, provider).await?.is_none() {
                return Err(Error::Invalid(format!(
                    "a {} connector needs --option token=… or an OAuth client for {provider} \
                     (feedmesh oauth-client add USER {provider} --client-id … --client-secret …)",
                    kind.name
                )));
            }
            Some(provider.to_string())
        }
    };
    // A server named by its host (IMAP): an address literal on a private network is
    // refused now, as a URL's is; a name is checked when it is dialled.
    for (name, value) in options.iter().filter(|(n, _)| *n == "host") {
        crate::net::check_url(&format!("http://{value}/"), allow_private)
            .map_err(|e| Error::Invalid(format!("option {name}: {e}")))?;
    }
    for (name, value) in options.iter().filter(|(n, _)| URL_OPTIONS.contains(n)) {
        crate::net::check_url(value, allow_private).map_err(|e| Error::Invalid(format!("option {name}: {e}")))?;
    }
    let col_name = match (kind.contacts, collection) {
        (true, Some(c)) if c != super::activities::CONTACTS => {
            return Err(Error::Invalid(format!(
                "a {} connector syncs the collection {}; --collection {c:?} is not that",
                kind.name,
                super::activities::CONTACTS
            )));
        }
        (true, _) => super::activities::CONTACTS,
        (false, c) => c.unwrap_or(kind.name),
    };
    // One outbox per posting connector: `KIND-outbox`, or for a second account of the kind
    // (in a collection of its own) `COLLECTION-outbox`.
    let mut outbox_name = format!("{}-outbox", kind.name);
    if kind.posts && !kind.contacts {
        let mine = list(core, user_id).await?;
        let taken = async |name: &str| -> Result<Option<i64>> {
            match core.mesh.collection(user_id, name).await {
                Ok(o) => Ok(mine.iter().find(|c| c.outbox_id == Some(o.id)).map(|c| c.id)),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        };
        if let Some(other) = taken(&outbox_name).await? {
            outbox_name = format!("{col_name}-outbox");
            if col_name == kind.name || taken(&outbox_name).await?.is_some() {
                return Err(Error::Conflict(format!(
                    "{outbox_name} is the outbox of connector {other} already: give this one a collection of its own (--collection)"
                )));
            }
        }
    }
    let col = core.collection_made(user_id, col_name).await?;
    let outbox = match (kind.posts, kind.contacts) {
        // What changes in Contacts (but for its own writes) goes back to its server.
        (_, true) => Some(col.id),
        (true, false) => Some(core.collection_made(user_id, &outbox_name).await?.id),
        (false, false) => None,
    };
    let (mut plain, mut secret) = (BTreeMap::new(), BTreeMap::new());
    for (name, value) in options.iter() {
        let is_secret = kind.options.iter().any(|s| s.name == name && s.secret);
        if is_secret { &mut secret } else { &mut plain }.insert(name.to_string(), value.to_string());
    }
    let to_json = |m: &BTreeMap<String, String>| serde_json::to_string(m).map_err(|e| Error::Internal(e.into()));
    let secrets = if secret.is_empty() {
        None
    } else {
        Some(to_json(&secret)?)
    };
    let row = core
        .mesh
        .store
        .add_connector(
            user_id,
            kind.name,
            col.id,
            outbox,
            &to_json(&plain)?,
            secrets.as_deref(),
            // One waiting for its authorisation is never claimed by a run meanwhile.
            if oauth.is_some() {
                ConnectorState::NeedsAuth
            } else {
                ConnectorState::Active
            },
        )
        .await?;
    let authorize_url = match oauth {
        Some(provider) => match super::oauth::begin(core, user_id, row.id, &provider).await {
            Ok(url) => Some(url),
            Err(e) => {
                core.mesh.store.remove_connector(user_id, row.id).await?;
                return Err(e);
            }
        },
        None => None,
    };
    core.connector_wake.notify_one();
    core.listener_check.notify_waiters();
    let connector = core.mesh.store.connector(user_id, row.id).await?;
    Ok(Added {
        connector,
        authorize_url,
    })
}

/// What an OPML import did.
#[derive(Debug, Default)]
pub struct OpmlReport {
    pub added: usize,
    /// Feeds the user already had a feed connector for.
    pub known: usize,
    /// (URL, why) of the feeds not taken (not http(s), a private address).
    pub refused: Vec<(String, String)>,
}

/// A folder's name as a collection name: letters, digits, `-` `_` `.` (others become `-`).
fn collection_for(folder: &str) -> Option<String> {
    let mut name: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    (!name.is_empty()).then_some(name)
}

/// Subscribes the user to every feed of a reader's OPML export: a feed connector each, in
/// the collection named after its outermost folder (`default_collection` for feeds at the
/// top level). Feeds the user already follows are left as they are, so importing a file
/// again adds nothing; a file that is not OPML changes nothing.
pub async fn import_opml(
    core: &Core,
    user_id: i64,
    body: &[u8],
    default_collection: &str,
    allow_private: bool,
) -> Result<OpmlReport> {
    let subs = crate::formats::opml::read(body).map_err(|e| Error::Invalid(format!("the OPML file: {e}")))?;
    let mut known: std::collections::HashSet<String> = list(core, user_id)
        .await?
        .into_iter()
        .filter(|c| c.kind == "feed")
        .filter_map(|c| {
            serde_json::from_str::<BTreeMap<String, String>>(&c.options)
                .ok()?
                .remove("url")
        })
        .collect();
    let mut report = OpmlReport::default();
    for s in subs {
        if known.contains(&s.url) {
            report.known += 1;
            continue;
        }
        let collection = s
            .folder
            .as_deref()
            .and_then(collection_for)
            .unwrap_or_else(|| default_collection.to_string());
        match add(
            core,
            user_id,
            "feed",
            Some(&collection),
            vec![("url".into(), s.url.clone())],
            allow_private,
        )
        .await
        {
            Ok(_) => {
                report.added += 1;
                known.insert(s.url);
            }
            Err(Error::Invalid(why)) => report.refused.push((s.url, why)),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

pub async fn list(core: &Core, user_id: i64) -> Result<Vec<ConnectorRow>> {
    Ok(core.mesh.store.connectors(user_id).await?)
}

pub async fn get(core: &Core, user_id: i64, id: i64) -> Result<ConnectorRow> {
    Ok(core.mesh.store.connector(user_id, id).await?)
}

/// Removes a connector, revoking its tokens at its provider first where it offers that.
pub async fn remove(core: &Core, user_id: i64, id: i64) -> Result<()> {
    let c = core.mesh.store.connector(user_id, id).await?;
    end_websub(core, user_id, id).await?;
    core.mesh.store.remove_connector(user_id, id).await?;
    core.listener_check.notify_waiters();
    // Revoked once it is gone: a run still under way that the revocation fails writes no
    // needs-reconnect notice for a connector nobody has any more.
    super::oauth::revoke(core, &c).await;
    Ok(())
}

pub async fn pause(core: &Core, user_id: i64, id: i64) -> Result<ConnectorRow> {
    core.mesh.store.connector(user_id, id).await?;
    core.mesh
        .store
        .set_connector_state(user_id, id, ConnectorState::Paused, 0)
        .await?;
    core.listener_check.notify_waiters();
    end_websub(core, user_id, id).await?;
    get(core, user_id, id).await
}

/// Resumes a paused or stopped connector, or asks for a run now (`sync`): due at once.
pub async fn resume(core: &Core, user_id: i64, id: i64) -> Result<ConnectorRow> {
    let c = core.mesh.store.connector(user_id, id).await?;
    let state = match c.state {
        ConnectorState::NeedsAuth | ConnectorState::NeedsReconnect => {
            return Err(Error::Conflict(format!(
                "connector {id} is {}: connect it again first (feedmesh connector reconnect)",
                c.state.as_str()
            )));
        }
        _ => ConnectorState::Active,
    };
    core.mesh.store.set_connector_state(user_id, id, state, 0).await?;
    core.connector_wake.notify_one();
    core.listener_check.notify_waiters();
    get(core, user_id, id).await
}

/// Runs a connector now (it must not be paused).
pub async fn sync_now(core: &Core, user_id: i64, id: i64) -> Result<ConnectorRow> {
    let c = core.mesh.store.connector(user_id, id).await?;
    if c.state == ConnectorState::Paused {
        return Err(Error::Conflict(format!("connector {id} is paused: resume it to sync")));
    }
    resume(core, user_id, id).await
}

/// Starts the OAuth round trip again for a connector authorised by OAuth (one waiting for
/// its authorisation, one whose provider refused it, or any other to change the account):
/// answers the URL to open; the connector waits (`needs-auth`) until the callback.
pub async fn reconnect(core: &Core, user_id: i64, id: i64) -> Result<String> {
    let c = core.mesh.store.connector(user_id, id).await?;
    let provider = c.provider.clone().ok_or_else(|| {
        Error::Conflict(format!(
            "connector {id} is not authorised by OAuth: remove it and add it again with new options"
        ))
    })?;
    super::oauth::begin(core, user_id, id, &provider).await
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StoredCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
}

fn cursor_of(c: &ConnectorRow) -> Cursor {
    let s: StoredCursor = c
        .cursor
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    Cursor {
        etag: s.etag,
        last_modified: s.last_modified,
        state: s.state,
    }
}

fn stored_cursor(c: Cursor) -> Option<String> {
    serde_json::to_string(&StoredCursor {
        etag: c.etag,
        last_modified: c.last_modified,
        state: c.state,
    })
    .ok()
}

/// Retries of a failing connector: from a minute to six hours.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(60),
    cap: Duration::from_secs(6 * 3600),
    jitter_percent: 20,
};

/// Failures in a row after which a connector shows as `failing` (it is still retried).
const FAILING_AFTER: i64 = 3;

/// Runs one claimed connector: checks the account on its first run, pulls from its cursor,
/// stores what came (oldest first) and only then moves the cursor; an error is classified
/// by the contract's kinds. Returns the outcome written back.
pub async fn run_one(core: &Core, c: &ConnectorRow) -> anyhow::Result<ConnectorRun> {
    let now = now_ms();
    let mut run = ConnectorRun {
        account: c.account.clone(),
        state: c.state,
        cursor: c.cursor.clone(),
        next_at: now,
        failures: c.failures,
        last_sync_at: c.last_sync_at,
        last_error: c.last_error.clone(),
    };
    let kind = kind(&c.kind)?;
    let outcome = match super::oauth::access_token(core, c).await {
        Err(e) => Err(e),
        Ok(token) => match build(c, kind, token) {
            Ok(connector) => pull(core, c, connector.as_ref(), &mut run).await,
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok((poll_after, more)) => {
            run.state = ConnectorState::Active;
            run.failures = 0;
            run.last_sync_at = Some(now);
            run.last_error = None;
            // A backlog left at the page limit is read on at once; else the service's wait,
            // at least the kind's interval.
            run.next_at = match more {
                true => now,
                false => now + 1000 * poll_after.unwrap_or(0).max(kind.interval) as i64,
            };
        }
        Err(e) => {
            tracing::warn!(connector = c.id, kind = %c.kind, error = %e, "a connector's run failed");
            run.last_error = Some(e.to_string());
            run.failures = c.failures + 1;
            match e.kind() {
                ErrorKind::Auth => {
                    run.state = ConnectorState::NeedsReconnect;
                    if c.state != ConnectorState::NeedsReconnect
                        && let Err(n) = notice_reconnect(core, c, &e).await
                    {
                        tracing::warn!(connector = c.id, error = %format!("{n:#}"), "cannot write the reconnect notice");
                    }
                }
                ErrorKind::Permanent => {
                    run.state = ConnectorState::Failing;
                    run.next_at = i64::MAX;
                }
                ErrorKind::Transient => {
                    if run.failures >= FAILING_AFTER {
                        run.state = ConnectorState::Failing;
                    }
                    let wait = match e {
                        ConnectorError::RateLimited(s) => Duration::from_secs(s),
                        _ => RETRY.delay_now(run.failures as u32),
                    };
                    run.next_at = now + wait.as_millis() as i64;
                }
            }
        }
    }
    Ok(run)
}

/// The collection the hub writes its notices to a user into (made on first use).
pub const NOTICES: &str = "Notices";

/// Tells the user, in their stream, that a connector needs connecting again: an item of
/// `Notices` by the endpoint `hub`, one per connector and episode (a later episode, after
/// the connector ran well again, updates it: a new activity), with what was refused and
/// how to reconnect.
async fn notice_reconnect(core: &Core, c: &ConnectorRow, e: &ConnectorError) -> anyhow::Result<()> {
    use crate::domain::entry::{Content, Entry, Link, Text};
    // A connector removed while it ran (its tokens revoked as it went) needs nothing.
    match core.mesh.store.connector(c.user_id, c.id).await {
        Err(crate::store::StoreError::NotFound(_)) => return Ok(()),
        other => drop(other?),
    }
    let who = super::principal(core, c.user_id, "hub").await?;
    let col = core.collection_made(c.user_id, NOTICES).await?;
    let id = format!("connector-{}-needs-reconnect", c.id);
    // One notice an episode: a second refusal before the connector ever ran well again
    // (a run that overlapped the first) says nothing new.
    if let Some(had) = core.mesh.store.item(col.id, &id).await? {
        let since_ok = c.last_sync_at.unwrap_or(0) / 1000;
        if !had.item.current.sync.deleted && had.item.current.payload.updated.unix() >= since_ok {
            return Ok(());
        }
    }
    let account = if c.account.is_empty() {
        String::new()
    } else {
        format!(" {}", c.account)
    };
    let entry = Entry {
        title: Text::plain(format!("Connector {} ({}{account}) needs reconnecting", c.id, c.kind)),
        content: Some(Content {
            kind: "text".into(),
            value: format!(
                "{e}. It does not run until it is connected again: feedmesh connector reconnect {} {} \
                 (or POST /api/connectors/{}/reconnect).",
                who.user, c.id, c.id
            ),
            src: None,
        }),
        links: vec![Link {
            href: format!("{}/api/connectors/{}", core.base_url, c.id),
            rel: Some("related".into()),
            ..Link::default()
        }],
        updated: crate::domain::Timestamp::now(),
        verb: Some("update".into()),
        object_type: Some("service".into()),
        ..Entry::default()
    };
    core.mesh.ingest(&who, &col, &id, entry).await?;
    Ok(())
}

/// Items of a batch written at once.
const WRITES_IN_FLIGHT: usize = 16;

/// Batches one run pulls at most while a backlog is left (then the run ends and the
/// connector is due again at once, so its outbox and other connectors get their turn).
const BATCHES_PER_RUN: usize = 8;

/// The pull itself; answers the wait the service asked for, if any, and whether a backlog
/// is left behind at the connector's page limit. While a backlog is left, the next batch
/// is fetched as the last one is stored; the cursor moves only past what is stored.
async fn pull(
    core: &Core,
    c: &ConnectorRow,
    connector: &dyn Connector,
    run: &mut ConnectorRun,
) -> Result<(Option<u64>, bool), ConnectorError> {
    let http = ConnectorHttp(&core.outbound);
    if run.account.is_empty() {
        run.account = connector.check(&http).await?;
    }
    let (who, col) = writer(core, c).await.map_err(store_err)?;
    let contacts = kind(&c.kind).is_ok_and(|k| k.contacts);
    let store_items = async |items: Vec<feedmesh_connector::Pulled>| -> Result<(), ConnectorError> {
        if contacts {
            return super::contacts::take_pulled_all(core, &who, c.id, items.into_iter().rev().collect())
                .await
                .map_err(|e| store_err(e.into()));
        }
        // Oldest first, WRITES_IN_FLIGHT at once (the store commits them in groups).
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(items.into_iter().rev())
            .map(|item| {
                let (who, col) = (&who, &col);
                async move {
                    let entry = super::files::attach(core, c.user_id, item.entry, item.files)
                        .await
                        .map_err(|e| store_err(e.into()))?;
                    core.mesh
                        .ingest(who, col, &item.id, entry)
                        .await
                        .map_err(|e| store_err(e.into()))
                }
            })
            .buffered(WRITES_IN_FLIGHT)
            .try_for_each(|_| async { Ok(()) })
            .await
    };
    // What the batch brought, then what it says is gone at the service.
    let store = async |items: Vec<feedmesh_connector::Pulled>, gone: Vec<String>| -> Result<(), ConnectorError> {
        store_items(items).await?;
        for id in gone {
            let done = if contacts {
                super::contacts::pulled_gone(core, &who, c.id, &id).await
            } else {
                match core.mesh.delete(&who, &col, &id, None).await {
                    Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            done.map_err(|e| store_err(e.into()))?;
        }
        Ok(())
    };
    let mut batch = connector.pull(&http, &cursor_of(c)).await?;
    let hub = batch
        .hubs
        .first()
        .cloned()
        .map(|h| (h, batch.self_url.clone().unwrap_or(batch.url.clone())));
    let mut rounds = 1;
    let (mut poll_after, more) = loop {
        let (poll_after, more, cursor) = (batch.poll_after, batch.more, batch.cursor);
        if !more || rounds == BATCHES_PER_RUN {
            store(batch.items, batch.gone).await?;
            run.cursor = stored_cursor(cursor);
            break (poll_after, more);
        }
        let (stored, next) = tokio::join!(store(batch.items, batch.gone), connector.pull(&http, &cursor));
        stored?;
        run.cursor = stored_cursor(cursor);
        batch = next?;
        rounds += 1;
    };
    if let Some(outbox) = c.outbox_id {
        super::routes::apply(core, c).await.map_err(store_err)?;
        post_outbox(core, c, connector, &http, &who, outbox).await?;
    }
    if c.kind == "feed" && websub(core, c, hub).await.map_err(store_err)? {
        poll_after = Some(poll_after.unwrap_or(0).max(PUSHED_POLL));
    }
    Ok((poll_after, more))
}

/// How often a feed pushed to by WebSub is still polled (seconds): a safety net.
const PUSHED_POLL: u64 = 6 * 3600;

/// WebSub for a feed connector whose feed names a hub: a subscription of its own (a follow
/// linked to it, which the follow worker subscribes, renews and takes pushes for, writing
/// as the connector). Answers whether the hub pushes to it now.
async fn websub(core: &Core, c: &ConnectorRow, hub: Option<(String, String)>) -> anyhow::Result<bool> {
    let store = &core.mesh.store;
    if let Some(f) = store.follow_of_connector(c.user_id, c.id).await? {
        return Ok(f.state == crate::store::FollowState::Subscribed);
    }
    let Some((hub, topic)) = hub else { return Ok(false) };
    let url = serde_json::from_str::<BTreeMap<String, String>>(&c.options)?
        .remove("url")
        .unwrap_or_default();
    let token = crate::secrets::generate("")?;
    let secret = crate::secrets::generate("")?;
    match store
        .add_follow(c.user_id, c.collection_id, &url, &token, &secret)
        .await
    {
        Ok(f) => {
            store.link_follow(c.user_id, f.id, c.id, &topic, &hub).await?;
            core.follow_wake.notify_one();
        }
        // The user follows that feed already (`feedmesh follow`): that follow is pushed to.
        Err(crate::store::StoreError::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(false)
}

/// Ends a feed connector's WebSub subscription (its hub is told by the follow worker).
async fn end_websub(core: &Core, user_id: i64, id: i64) -> Result<()> {
    if let Some(f) = core.mesh.store.follow_of_connector(user_id, id).await? {
        match core.mesh.store.remove_follow(user_id, f.id).await {
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => core.follow_wake.notify_one(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Items read from the outbox per step.
const OUTBOX_STEP: u32 = 100;

/// Sends what changed in the connector's outbox since it last looked, oldest first: a new
/// item is posted (with an idempotency key of its own, so asking again after a crash posts
/// nothing twice), an edit edits, a deletion deletes. Where it went is recorded, then shown
/// in the item as a `rel="syndication"` link written by the connector's endpoint (whose own
/// writes it skips). The place it has read to moves after each item. An item the service
/// refuses is skipped (and logged); any other failure ends the run, to be tried again.
async fn post_outbox(
    core: &Core,
    c: &ConnectorRow,
    connector: &dyn Connector,
    http: &ConnectorHttp<'_>,
    who: &Principal,
    outbox_id: i64,
) -> Result<(), ConnectorError> {
    use feedmesh_connector::Outgoing;
    let store = &core.mesh.store;
    let me = who.by();
    let outbox = store
        .collections(c.user_id)
        .await
        .map_err(|e| store_err(e.into()))?
        .into_iter()
        .find(|x| x.id == outbox_id)
        .ok_or_else(|| ConnectorError::Permanent("its outbox collection is gone".into()))?;
    let two_way = kind(&c.kind).is_ok_and(|k| k.contacts);
    let mut from = c.outbox_seq.max(0) as u64;
    loop {
        let recs = store
            .items_since(outbox_id, from, OUTBOX_STEP)
            .await
            .map_err(|e| store_err(e.into()))?;
        if recs.is_empty() {
            return Ok(());
        }
        for rec in recs {
            from = rec.seq;
            let sync_id = rec.item.id().to_string();
            let by_me = rec.item.current.sync.topmost().and_then(|h| h.by.as_deref()) == Some(me.as_str());
            // Its own write is skipped, but one that folded what the hub had into what the
            // service sent (`RESEND`, written only for a contacts kind's cards): that goes back.
            let posted = if !by_me || two_way {
                store
                    .connector_post(c.user_id, c.id, &sync_id)
                    .await
                    .map_err(|e| store_err(e.into()))?
            } else {
                None
            };
            let resend = posted.as_ref().is_some_and(|p| p.sent_seq == RESEND);
            if !by_me || resend {
                let entry = &rec.item.current.payload;
                let key = format!("feedmesh-{}-{}", c.id, sync_id);
                let ask = match (&posted, rec.item.current.sync.deleted) {
                    (Some(p), true) => Some(Outgoing::Delete {
                        remote_id: &p.remote_id,
                    }),
                    (None, true) => None,
                    (None, false) => Some(Outgoing::Create {
                        entry,
                        idempotency_key: &key,
                    }),
                    (Some(p), false) if p.sent_seq != rec.seq as i64 => Some(Outgoing::Update {
                        entry,
                        remote_id: &p.remote_id,
                    }),
                    (Some(_), false) => None,
                };
                if let Some(ask) = ask {
                    let deleting = matches!(ask, Outgoing::Delete { .. });
                    match connector.push(http, ask).await {
                        Ok(_) if deleting => store
                            .remove_connector_post(c.user_id, c.id, &sync_id)
                            .await
                            .map_err(|e| store_err(e.into()))?,
                        Ok(done) => {
                            let post = crate::store::ConnectorPost {
                                pulled_id: connector.pulled_id(&done.remote_id),
                                remote_id: done.remote_id,
                                remote_url: done.url.clone(),
                                sent_seq: rec.seq as i64,
                            };
                            store
                                .put_connector_post(c.user_id, c.id, &sync_id, &post)
                                .await
                                .map_err(|e| store_err(e.into()))?;
                            if let Some(url) = done.url.filter(|u| !entry.links.iter().any(|l| &l.href == u)) {
                                let mut shown = entry.clone();
                                shown.links.push(crate::domain::entry::Link {
                                    href: url,
                                    rel: Some("syndication".into()),
                                    ..Default::default()
                                });
                                core.mesh
                                    .ingest(who, &outbox, &sync_id, shown)
                                    .await
                                    .map_err(|e| store_err(e.into()))?;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Permanent => {
                            tracing::warn!(connector = c.id, item = %sync_id, error = %e, "an outbox item was refused; skipped");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            store
                .set_outbox_seq(c.user_id, c.id, rec.seq as i64)
                .await
                .map_err(|e| store_err(e.into()))?;
        }
    }
}

/// How long a claimed run's lease lasts unless renewed (every third of it, while the run
/// goes on): a crashed process's runs are taken over within half a minute.
const LEASE_MS: i64 = 30 * 1000;

/// How long the runtime lets a burst of writes settle before it looks at the outboxes (so
/// a burst of posts goes out in one run).
const OUTBOX_SETTLE: Duration = Duration::from_millis(50);

/// The connector runtime: runs each connector when it is due, until `stop`; a write into a
/// connector's outbox (or a route's collection) makes it due at once (looked for
/// `OUTBOX_SETTLE` after writes).
pub async fn run(core: Arc<Core>, stop: Stop) {
    let (core_for_listeners, stop_for_listeners) = (core.clone(), stop.clone());
    let wake = core.connector_wake.clone();
    let store = core.mesh.store.clone();
    let outboxes = {
        let (core, stop) = (core.clone(), stop.clone());
        async move {
            let mut changed = core.mesh.changed.subscribe();
            loop {
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = stop.stopped() => return,
                }
                tokio::time::sleep(OUTBOX_SETTLE).await;
                changed.borrow_and_update();
                match core.mesh.store.wake_outbox_connectors(now_ms()).await {
                    Ok(0) => {}
                    Ok(_) => core.connector_wake.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "cannot look at the connectors' outboxes"),
                }
            }
        }
    };
    let runs = jobs::claim_loop(
        "connectors",
        stop,
        wake,
        || {
            let store = store.clone();
            async move { Ok(store.connectors_due(now_ms(), LEASE_MS, 16).await?) }
        },
        |c: ConnectorRow| {
            let core = core.clone();
            async move {
                let was = c.state;
                let renewing = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 / 3)).await;
                        if let Err(e) = core
                            .mesh
                            .store
                            .renew_connector_claim(c.user_id, c.id, now_ms() + LEASE_MS)
                            .await
                        {
                            tracing::warn!(error = %e, connector = c.id, "cannot renew a run's lease");
                        }
                    }
                };
                let ran = tokio::select! {
                    ran = run_one(&core, &c) => ran,
                    _ = renewing => unreachable!("the renewals never end"),
                };
                let outcome = match ran {
                    Ok(run) => core.mesh.store.finish_connector_run(&c, was, &run).await.map(|_| ()),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), connector = c.id, "a connector could not run");
                        Ok(())
                    }
                };
                if let Err(e) = outcome {
                    tracing::error!(error = %e, connector = c.id, "a connector's run could not be recorded");
                }
                // What was written into its outbox while it ran is not left for the next interval.
                if c.outbox_id.is_some()
                    && matches!(core.mesh.store.wake_outbox_connectors(now_ms()).await, Ok(n) if n > 0)
                {
                    core.connector_wake.notify_one();
                }
            }
        },
    );
    tokio::join!(
        runs,
        outboxes,
        super::listeners::run(core_for_listeners, stop_for_listeners)
    );
}
