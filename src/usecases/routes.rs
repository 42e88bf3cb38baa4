//! Routes: a user's collection routed into a connector's outbox (`feedmesh route add USER
//! --from COLLECTION --to CONNECTOR_ID [--filter …]`, `/api/routes`), so what one service
//! (or device) brings in, another posts out: GitHub releases reposted to Mastodon.
//!
//! A route is applied by its connector's run (claimed, so one process at a time): it reads
//! the user's changes after the place it has read to, and for each change of its collection
//! that passes its filter (the search's filters, judged in memory) a new item is copied into
//! the connector's outbox as the endpoint `route-ID`, under an id of its own
//! (`route-ID-SOURCE`); an edit of the source edits the copy, a deletion deletes it; the
//! connector then posts, edits and deletes as for any outbox item.
//!
//! Loops: before an item is copied, its provenance is walked back (the FeedSync history says
//! which endpoint wrote it; the hub's records say what each route copied and what each
//! connector posted, and the id its own pull gives that post when it comes back). An item
//! that already went out through the route's connector, or is that connector's own post
//! coming back, is not copied: A -> B -> A posts once.

use serde::Serialize;

use super::Core;
use super::timelines::{Matcher, SearchQuery};
use crate::error::{Error, Result};
use crate::store::{ChangeKind, ChangeRecord, Collection, ConnectorRow, Principal, RouteRow, StoreError};

/// A route as `route list` and the API show it.
#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    pub id: i64,
    pub from: String,
    pub to: i64,
    /// The connector's kind and account, for people.
    pub to_kind: String,
    pub filter: SearchQuery,
}

/// Makes a route's filter from `KEY=VALUE` pairs (the search's: `q`, `type`, `contact`,
/// `company`, `endpoint`, `since`, `until`, `tags` comma-separated).
pub fn filter_of(pairs: &[String]) -> Result<SearchQuery> {
    let mut q = SearchQuery::default();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            Error::Invalid(format!(
                "--filter {p:?}: KEY=VALUE (q, type, contact, company, endpoint, since, until, tags)"
            ))
        })?;
        let v = v.trim().to_string();
        let slot = match k.trim() {
            "q" => &mut q.q,
            "type" => &mut q.kind,
            "contact" => &mut q.contact,
            "company" => &mut q.company,
            "endpoint" => &mut q.endpoint,
            "since" => &mut q.since,
            "until" => &mut q.until,
            "tags" => {
                q.tags
                    .extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from));
                continue;
            }
            "collection" => {
                return Err(Error::Invalid(
                    "--filter collection=…: a route's collection is its --from".into(),
                ));
            }
            other => {
                return Err(Error::Invalid(format!(
                    "--filter {other}=…: no such filter (q, type, contact, company, endpoint, since, until, tags)"
                )));
            }
        };
        if slot.replace(v).is_some() {
            return Err(Error::Invalid(format!("--filter {k}=… is given twice")));
        }
    }
    Ok(q)
}

/// A filter as `--filter` pairs, space-separated (`q=released type=Article`).
pub fn filter_text(q: &SearchQuery) -> String {
    let pairs = [
        ("q", &q.q),
        ("type", &q.kind),
        ("contact", &q.contact),
        ("company", &q.company),
        ("endpoint", &q.endpoint),
        ("since", &q.since),
        ("until", &q.until),
    ];
    let mut out: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if !q.tags.is_empty() {
        out.push(format!("tags={}", q.tags.join(",")));
    }
    out.join(" ")
}

/// Routes the user's collection `from` into connector `to`'s outbox, for what arrives from
/// now on. The connector must post; the filter is checked as a search's would be.
pub async fn add(core: &Core, user_id: i64, user: &str, from: &str, to: i64, filter: SearchQuery) -> Result<RouteView> {
    if filter.collection.is_some() {
        return Err(Error::Invalid(
            "a route's filter names no collection: that is its from".into(),
        ));
    }
    let col = core.mesh.collection(user_id, from).await?;
    let c = core.mesh.store.connector(user_id, to).await?;
    let Some(outbox) = c.outbox_id else {
        let posting: Vec<&str> = super::kinds::KINDS.iter().filter(|k| k.posts).map(|k| k.name).collect();
        return Err(Error::Invalid(format!(
            "connector {to} ({}) posts nothing: a route goes to a connector that posts ({})",
            c.kind,
            posting.join(", ")
        )));
    };
    if outbox == col.id {
        return Err(Error::Invalid(format!(
            "{from} is connector {to}'s own outbox: what is written there is posted already"
        )));
    }
    Matcher::new(core, user_id, user, &filter).await?;
    let json = serde_json::to_string(&filter).map_err(|e| Error::Internal(e.into()))?;
    let head = core.mesh.head(user_id).await? as i64;
    let row = match core.mesh.store.add_route(user_id, col.id, to, &json, head).await {
        Err(StoreError::AlreadyExists(_)) => {
            return Err(Error::Conflict(format!(
                "{from} is routed to connector {to} already (feedmesh route list)"
            )));
        }
        other => other?,
    };
    core.connector_wake.notify_one();
    view(core, user_id, &row).await
}

async fn view(core: &Core, user_id: i64, r: &RouteRow) -> Result<RouteView> {
    let from = core
        .mesh
        .collections(user_id)
        .await?
        .into_iter()
        .find(|c| c.id == r.from_collection_id)
        .map_or_else(|| format!("#{}", r.from_collection_id), |c| c.name.to_string());
    let to_kind = core.mesh.store.connector(user_id, r.connector_id).await?.kind;
    Ok(RouteView {
        id: r.id,
        from,
        to: r.connector_id,
        to_kind,
        filter: serde_json::from_str(&r.filter).unwrap_or_default(),
    })
}

pub async fn list(core: &Core, user_id: i64) -> Result<Vec<RouteView>> {
    let mut out = Vec::new();
    for r in core.mesh.store.routes(user_id).await? {
        out.push(view(core, user_id, &r).await?);
    }
    Ok(out)
}

/// Removes a route; what it copied stays (and stays posted).
pub async fn remove(core: &Core, user_id: i64, id: i64) -> Result<()> {
    Ok(core.mesh.store.remove_route(user_id, id).await?)
}

/// Changes read per step.
const STEP: u32 = 500;

/// The id of a route's copy of `source`.
fn copy_id(route_id: i64, source: &str) -> String {
    let id = format!("route-{route_id}-{source}");
    if id.len() <= 512 {
        id
    } else {
        format!("route-{route_id}-{}", crate::secrets::hash(source))
    }
}

/// Applies the routes into connector `c` (its run holds the claim): copies into its outbox
/// what arrived in their collections since they last looked. Answers how many copies were
/// made, edited or deleted.
pub async fn apply(core: &Core, c: &ConnectorRow) -> anyhow::Result<usize> {
    let Some(outbox_id) = c.outbox_id else {
        return Ok(0);
    };
    let store = &core.mesh.store;
    let routes: Vec<RouteRow> = store
        .routes(c.user_id)
        .await?
        .into_iter()
        .filter(|r| r.connector_id == c.id)
        .collect();
    if routes.is_empty() {
        return Ok(0);
    }
    let user = store.user_by_id(c.user_id).await?;
    let collections = store.collections(c.user_id).await?;
    let outbox = collections
        .iter()
        .find(|x| x.id == outbox_id)
        .ok_or_else(|| anyhow::anyhow!("the connector's outbox collection is gone"))?;
    let mut done = 0;
    for route in routes {
        let Some(from) = collections.iter().find(|x| x.id == route.from_collection_id) else {
            continue;
        };
        let query: SearchQuery = serde_json::from_str(&route.filter)?;
        let matcher = match Matcher::new(core, c.user_id, user.name.as_str(), &query).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(route = route.id, error = %e, "a route's filter no longer holds; it waits");
                continue;
            }
        };
        let who = super::principal(core, c.user_id, &format!("route-{}", route.id)).await?;
        let mut seq = route.seq.max(0) as u64;
        loop {
            let changes = store.changes_after(c.user_id, None, seq, STEP).await?;
            let Some(last) = changes.last().map(|ch| ch.seq) else {
                break;
            };
            for ch in changes.iter().filter(|ch| ch.collection == from.name.as_str()) {
                done += copy(core, c, &route, from, outbox, &who, &matcher, ch).await? as usize;
            }
            seq = last;
            store.set_route_seq(c.user_id, route.id, seq as i64).await?;
        }
    }
    Ok(done)
}

/// One change of a route's collection, into the connector's outbox; true if it wrote.
#[allow(clippy::too_many_arguments)]
async fn copy(
    core: &Core,
    c: &ConnectorRow,
    route: &RouteRow,
    from: &Collection,
    outbox: &Collection,
    who: &Principal,
    matcher: &Matcher,
    ch: &ChangeRecord,
) -> anyhow::Result<bool> {
    let store = &core.mesh.store;
    let made = store.route_copy(c.user_id, route.id, &ch.sync_id).await?;
    let deleted = ch.kind == ChangeKind::Delete || ch.version.sync.deleted;
    match (made, deleted) {
        (None, true) => Ok(false),
        (Some(copy), true) => match core.mesh.delete(who, outbox, &copy, None).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(true),
            Err(e) => Err(e.into()),
        },
        (Some(copy), false) => {
            let gone = store
                .item(outbox.id, &copy)
                .await?
                .is_none_or(|r| r.item.current.sync.deleted);
            if gone {
                return Ok(false);
            }
            let entry = routed(core, who, from, ch);
            Ok(core.mesh.ingest(who, outbox, &copy, entry).await?.is_some())
        }
        (None, false) if ch.kind != ChangeKind::Create => Ok(false),
        (None, false) => {
            if !matcher.passes(ch, core.mesh.region) {
                return Ok(false);
            }
            if went_out_through(core, c, from.id, &ch.sync_id).await? {
                tracing::info!(
                    route = route.id,
                    connector = c.id,
                    item = %ch.sync_id,
                    "not routed: it went out through this connector already (a loop)"
                );
                return Ok(false);
            }
            let copy = copy_id(route.id, &ch.sync_id);
            store.put_route_copy(c.user_id, route.id, &ch.sync_id, &copy).await?;
            let entry = routed(core, who, from, ch);
            Ok(core.mesh.ingest(who, outbox, &copy, entry).await?.is_some())
        }
    }
}

/// A source version as its copy (written by `who`): the same entry, with a `via` link to
/// the source item.
fn routed(core: &Core, who: &Principal, from: &Collection, ch: &ChangeRecord) -> crate::domain::entry::Entry {
    let mut entry = ch.version.payload.clone();
    let via = core.member_url(&who.user, from.name.as_str(), &ch.sync_id);
    if !entry.links.iter().any(|l| l.href == via) {
        entry.links.push(crate::domain::entry::Link {
            href: via,
            rel: Some("via".into()),
            ..Default::default()
        });
    }
    entry
}

/// Deepest provenance walked (a chain of routes and posts longer than this is a loop).
const MAX_HOPS: usize = 16;

/// Whether the item `sync_id` of collection `collection_id` already went out through
/// connector `c` (it is, or comes from, an item of its outbox), walking back through what
/// routes copied and what connectors posted and pulled back again (a status posted by one
/// account comes back through every account that sees it).
async fn went_out_through(core: &Core, c: &ConnectorRow, collection_id: i64, sync_id: &str) -> anyhow::Result<bool> {
    let store = &core.mesh.store;
    let connectors = store.connectors(c.user_id).await?;
    let routes = store.routes(c.user_id).await?;
    let (mut col, mut id) = (collection_id, sync_id.to_string());
    for _ in 0..MAX_HOPS {
        if Some(col) == c.outbox_id {
            return Ok(true);
        }
        // An item of an outbox: a route's copy (walk to its source) or written there by a device.
        if connectors.iter().any(|k| k.outbox_id == Some(col)) {
            let Some((route_id, source)) = store.route_copy_source(c.user_id, &id).await? else {
                return Ok(false);
            };
            let Some(r) = routes.iter().find(|r| r.id == route_id) else {
                return Ok(false);
            };
            (col, id) = (r.from_collection_id, source);
            continue;
        }
        // A connector's post come back, pulled by it or by another that sees it?
        let Some((poster, posted)) = store.connector_post_pulled(c.user_id, &id).await? else {
            return Ok(false);
        };
        match connectors.iter().find(|k| k.id == poster).and_then(|k| k.outbox_id) {
            Some(outbox) => (col, id) = (outbox, posted),
            None => return Ok(false),
        }
    }
    Ok(true)
}
