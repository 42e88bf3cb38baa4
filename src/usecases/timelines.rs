//! Activity feeds about people and searches: a contact's timeline, a company's, a search and
//! a saved view. Each is a filter over the user's activities (`store::ActivityFilter`),
//! rendered like the stream (`feeds::activity_document`), with why each entry is there.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::feeds::{FeedMeta, Of, Why};
use super::{Core, encode_segment};
use crate::domain::activity::Role;
use crate::domain::search::Query;
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::{self, Format};
use crate::store::{ActivityFilter, ChangeRecord, Page};

/// A search's filters, as a query string gives them and as a saved view stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Activities of contacts with any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A date filter: RFC 3339, or a day (`2026-12-01`, from its start, UTC).
fn date(name: &str, v: &str) -> Result<i64> {
    let v = v.trim();
    Timestamp::parse_rfc3339(v)
        .or_else(|| Timestamp::parse_rfc3339(&format!("{v}T00:00:00Z")))
        .map(Timestamp::unix)
        .ok_or_else(|| Error::Invalid(format!("{name}={v:?} is not a date (2026-12-01 or RFC 3339)")))
}

impl SearchQuery {
    /// The store's filter for this search; unknown collections and endpoints are 404s.
    pub async fn filter(&self, core: &Core, user_id: i64) -> Result<ActivityFilter> {
        let mut f = ActivityFilter::default();
        if let Some(q) = self.q.as_deref().filter(|q| !q.trim().is_empty()) {
            let q = Query::parse(q)?;
            f.text = Some((q.to_fts5(), q.to_tsquery()));
        }
        if let Some(c) = &self.collection {
            f.collection_id = Some(core.mesh.collection(user_id, c).await?.id);
        }
        if let Some(e) = &self.endpoint {
            f.endpoint_id = Some(core.mesh.store.endpoint(user_id, e).await?.id);
        }
        if let Some(k) = &self.kind {
            let k = k.trim();
            if k.is_empty() || k.len() > 64 || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::Invalid(format!(
                    "type={k:?} is not an activity or object type (Create, Note, Message…)"
                )));
            }
            let known = crate::domain::activity::as2_object_type(k).or_else(|| crate::domain::activity::as2_verb(k));
            f.kind = Some(known.map_or_else(|| k.to_string(), str::to_string));
        }
        f.since = self.since.as_deref().map(|v| date("since", v)).transpose()?;
        f.until = self.until.as_deref().map(|v| date("until", v)).transpose()?;
        f.contact = self.contact.clone();
        f.company = self.company.clone();
        if self.tags.len() > 50 {
            return Err(Error::Invalid("a search names at most 50 tags".into()));
        }
        f.tags = self.tags.clone();
        Ok(f)
    }
}

/// What a feed of people's activities is: its filter, its name, and whom `why` is about.
pub struct Resolved {
    pub filter: ActivityFilter,
    pub meta: FeedMeta,
    pub contact: Option<String>,
    pub company: Option<String>,
    /// The same filter, for judging one activity in memory (see [`first_page`]).
    pub judge: Judge,
}

/// What a filter asks of one activity, by name rather than by id, so a new activity can be
/// judged from its change alone.
#[derive(Clone, Debug, Default)]
pub struct Judge {
    pub text: Option<Query>,
    pub collection: Option<String>,
    pub endpoint: Option<String>,
}

impl Judge {
    fn of(query: &SearchQuery) -> Result<Judge> {
        Ok(Judge {
            text: query
                .q
                .as_deref()
                .filter(|q| !q.trim().is_empty())
                .map(Query::parse)
                .transpose()?,
            collection: query.collection.clone(),
            endpoint: query.endpoint.clone(),
        })
    }
}

/// The identities a feed's people filters ask for: every set must meet an activity's
/// parties; `owners` (of its contact or company) say why an activity is there.
#[derive(Default)]
pub struct People {
    required: Vec<std::collections::HashSet<String>>,
    owners: std::collections::HashMap<String, Vec<String>>,
}

async fn people(core: &Core, user_id: i64, r: &Resolved) -> Result<People> {
    let f = &r.filter;
    let store = &core.mesh.store;
    let mut out = People::default();
    let parts = [
        (f.contact.as_deref(), None, &[][..]),
        (None, f.company.as_deref(), &[][..]),
        (None, None, &f.tags[..]),
    ];
    for (i, (contact, company, tags)) in parts.into_iter().enumerate() {
        let wanted = match i {
            0 => contact.is_some(),
            1 => company.is_some(),
            _ => !tags.is_empty(),
        };
        if !wanted {
            continue;
        }
        let pairs = store.identities_of(user_id, contact, company, tags).await?;
        out.required.push(pairs.iter().map(|(id, _)| id.clone()).collect());
        if i < 2 && (contact == r.contact.as_deref() || company == r.company.as_deref()) {
            for (id, c) in pairs {
                out.owners.entry(id).or_default().push(c);
            }
        }
    }
    Ok(out)
}

/// A search's filters judging changes one at a time, in memory (a route's filter).
pub struct Matcher {
    resolved: Resolved,
    people: People,
}

impl Matcher {
    /// Checks the filters as a search would (a bad one is an error) and reads the contacts they name.
    pub async fn new(core: &Core, user_id: i64, user: &str, query: &SearchQuery) -> Result<Matcher> {
        let resolved = search(core, user_id, user, query, Format::Atom).await?;
        let people = people(core, user_id, &resolved).await?;
        Ok(Matcher { resolved, people })
    }

    pub fn passes(&self, change: &ChangeRecord, region: crate::domain::identity::Region) -> bool {
        judge(&self.resolved, &self.people, change, region).is_some()
    }
}

/// Whether one change passes the feed's filter, and why (the provenance `links` would give).
fn judge(
    r: &Resolved,
    people: &People,
    c: &ChangeRecord,
    region: crate::domain::identity::Region,
) -> Option<Vec<formats::Why>> {
    let f = &r.filter;
    let j = &r.judge;
    if j.collection.as_deref().is_some_and(|n| n != c.collection)
        || j.endpoint.as_deref().is_some_and(|n| c.endpoint.as_deref() != Some(n))
        || f.kind.as_deref().is_some_and(|k| c.object_type != k && c.verb != k)
        || f.since.is_some_and(|t| c.at.unix() < t)
        || f.until.is_some_and(|t| c.at.unix() >= t)
    {
        return None;
    }
    let row = super::activities::index_change(c, region);
    if let Some(q) = &j.text {
        let words: Vec<&str> = row.text.split(' ').filter(|w| !w.is_empty()).collect();
        if !q.matches(&words) {
            return None;
        }
    }
    if !people
        .required
        .iter()
        .all(|set| row.parties.iter().any(|(id, _, _)| set.contains(id)))
    {
        return None;
    }
    let mut why = Vec::new();
    for (id, role, _) in &row.parties {
        for contact in people.owners.get(id).into_iter().flatten() {
            why.push(formats::Why {
                identity: id.clone(),
                role: Role::parse(role).unwrap_or(Role::Recipient),
                contact: Some(contact.clone()),
            });
        }
    }
    why.sort_by(|a, b| (a.role.as_str(), &a.identity).cmp(&(b.role.as_str(), &b.identity)));
    Some(why)
}

/// The canonical URL of a timeline or view in one format.
pub fn feed_url(core: &Core, user: &str, of: Of<'_>, format: Format) -> String {
    let u = encode_segment(user);
    let ext = format.extension();
    match of {
        Of::Contact(id) => format!("{}/u/{u}/contacts/{}/timeline.{ext}", core.base_url, encode_segment(id)),
        Of::Company(slug) => format!(
            "{}/u/{u}/companies/{}/timeline.{ext}",
            core.base_url,
            encode_segment(slug)
        ),
        Of::View(name) => format!("{}/u/{u}/views/{}.{ext}", core.base_url, encode_segment(name)),
    }
}

/// Resolves a timeline or view of `user`; another user's (or an unknown) one is a 404.
pub async fn resolve(core: &Core, user_id: i64, user: &str, of: Of<'_>, format: Format) -> Result<Resolved> {
    let id = feed_url(core, user, of, format);
    let alternate_url = format!("{}/", core.base_url);
    match of {
        Of::Contact(contact) => {
            let c = core
                .mesh
                .store
                .contact(user_id, contact)
                .await?
                .ok_or(Error::NotFound("contact"))?;
            Ok(Resolved {
                filter: ActivityFilter {
                    contact: Some(c.id.clone()),
                    ..ActivityFilter::default()
                },
                meta: FeedMeta {
                    id,
                    title: format!("{user}: {}", c.name),
                    alternate_url,
                },
                contact: Some(c.id),
                company: None,
                judge: Judge::default(),
            })
        }
        Of::Company(slug) => {
            let company = core
                .mesh
                .store
                .companies(user_id)
                .await?
                .into_iter()
                .find(|c| c.slug == slug)
                .ok_or(Error::NotFound("company"))?;
            Ok(Resolved {
                filter: ActivityFilter {
                    company: Some(company.slug.clone()),
                    ..ActivityFilter::default()
                },
                meta: FeedMeta {
                    id,
                    title: format!("{user}: {}", company.name),
                    alternate_url,
                },
                contact: None,
                company: Some(company.slug),
                judge: Judge::default(),
            })
        }
        Of::View(name) => {
            let stored = core
                .mesh
                .store
                .view(user_id, name)
                .await?
                .ok_or(Error::NotFound("view"))?;
            let query: SearchQuery = serde_json::from_str(&stored)
                .map_err(|e| Error::Internal(anyhow::anyhow!("stored view {name}: {e}")))?;
            Ok(Resolved {
                filter: query.filter(core, user_id).await?,
                meta: FeedMeta {
                    id,
                    title: format!("{user}: {name}"),
                    alternate_url,
                },
                contact: query.contact.clone(),
                company: query.company.clone(),
                judge: Judge::of(&query)?,
            })
        }
    }
}

/// A search of `user`'s activities (`/u/{user}/search.{ext}?q=…`).
pub async fn search(core: &Core, user_id: i64, user: &str, query: &SearchQuery, format: Format) -> Result<Resolved> {
    let filter = query.filter(core, user_id).await?;
    Ok(Resolved {
        filter,
        meta: FeedMeta {
            id: format!(
                "{}/u/{}/search.{}",
                core.base_url,
                encode_segment(user),
                format.extension()
            ),
            title: format!("{user}: search {}", query.q.as_deref().unwrap_or("")),
            alternate_url: format!("{}/", core.base_url),
        },
        contact: query.contact.clone(),
        company: query.company.clone(),
        judge: Judge::of(query)?,
    })
}

/// The user's stream, or an endpoint's (`device`), as an activity feed.
pub async fn stream(core: &Core, user_id: i64, user: &str, device: Option<&str>, format: Format) -> Result<Resolved> {
    let endpoint_id = match device {
        Some(d) => Some(core.mesh.store.endpoint(user_id, d).await?.id),
        None => None,
    };
    Ok(Resolved {
        filter: ActivityFilter {
            endpoint_id,
            ..ActivityFilter::default()
        },
        meta: super::feeds::stream_meta(core, user, device, format),
        contact: None,
        company: None,
        judge: Judge {
            endpoint: device.map(str::to_string),
            ..Judge::default()
        },
    })
}

/// When an empty feed says it was updated: when its user was made.
pub async fn empty_updated(core: &Core, user_id: i64) -> Result<Timestamp> {
    Ok(core.mesh.store.user_by_id(user_id).await?.created_at)
}

/// A page of the feed's activities, and why each is there.
pub async fn page(core: &Core, user_id: i64, r: &Resolved, page: Page, limit: u32) -> Result<(Vec<ChangeRecord>, Why)> {
    let mut changes = core.mesh.store.activities(user_id, &r.filter, page, limit).await?;
    if matches!(page, Page::After(_)) {
        changes.reverse(); // feeds list the newest first
    }
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    let links = core
        .mesh
        .store
        .links(user_id, r.contact.as_deref(), r.company.as_deref(), &seqs)
        .await?;
    let mut why = Why::new();
    for l in links {
        why.entry(l.seq).or_default().push(formats::Why {
            identity: l.identity,
            role: Role::parse(&l.role).unwrap_or(Role::Recipient),
            contact: Some(l.contact_id),
        });
    }
    Ok((changes, why))
}

/// A first page kept with its rendered feed, to build the feed's next version from.
pub struct KeptPage {
    /// Every activity at or below this was seen when the page was read.
    pub upto: u64,
    /// The version of the contacts the page's filter depended on (see [`people_version`]).
    pub people: u64,
    pub changes: Vec<ChangeRecord>,
    pub why: Why,
    /// The identities the filter asked for at `people` (kept while the contacts stay).
    pub sets: Option<Arc<People>>,
}

/// The version of the people a feed's filter depends on: the `Contacts` collection's latest
/// change when it selects by contact, company or tag (a contact's identities decide what is
/// in it), else 0.
pub async fn people_version(core: &Core, user_id: i64, r: &Resolved) -> Result<u64> {
    let f = &r.filter;
    if f.contact.is_none() && f.company.is_none() && f.tags.is_empty() {
        return Ok(0);
    }
    match core.mesh.collection(user_id, super::activities::CONTACTS).await {
        Ok(c) => Ok(core.mesh.store.collection_head(c.id).await?),
        Err(Error::NotFound(_)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// The first page of a feed at `head`. Activities never change once written, so when the
/// contacts it depends on are as they were, the page is what arrived since `kept` (an earlier
/// version's first page), each new activity judged in memory against the filter, on top of
/// what `kept` held: a change costs reading and rendering what changed, not the page again.
pub async fn first_page(
    core: &Core,
    user_id: i64,
    r: &Resolved,
    kept: Option<&KeptPage>,
    head: u64,
    limit: u32,
) -> Result<KeptPage> {
    /// More changes than this since the kept version: read the page afresh.
    const SCAN: u32 = 1000;
    let people_now = people_version(core, user_id, r).await?;
    if let Some(k) = kept.filter(|k| k.people == people_now) {
        let sets = match &k.sets {
            Some(s) => s.clone(),
            None => Arc::new(people(core, user_id, r).await?),
        };
        let since = core.mesh.store.changes_after(user_id, None, k.upto, SCAN).await?;
        if since.len() < SCAN as usize {
            let mut changes = Vec::with_capacity(limit as usize);
            let mut why = Why::new();
            for c in since.iter().rev() {
                if changes.len() == limit as usize {
                    break;
                }
                if let Some(w) = judge(r, &sets, c, core.mesh.region) {
                    if !w.is_empty() {
                        why.insert(c.seq, w);
                    }
                    changes.push(c.clone());
                }
            }
            let room = limit as usize - changes.len();
            changes.extend(k.changes.iter().take(room).cloned());
            for c in &changes {
                if let Some(w) = k.why.get(&c.seq) {
                    why.entry(c.seq).or_insert_with(|| w.clone());
                }
            }
            let upto = head.max(since.last().map_or(0, |c| c.seq)).max(k.upto);
            return Ok(KeptPage {
                upto,
                people: people_now,
                changes,
                why,
                sets: Some(sets),
            });
        }
    }
    let (changes, why) = page(core, user_id, r, Page::Before(None), limit).await?;
    Ok(KeptPage {
        upto: head.max(changes.first().map_or(0, |c| c.seq)),
        people: people_now,
        changes,
        why,
        sets: None,
    })
}

/// Saves a view (a named search); its feed is `/u/{user}/views/{name}.{ext}`.
pub async fn save_view(core: &Core, user_id: i64, name: &str, query: &SearchQuery) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_alphanumeric() || "-_".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "view name {name:?}: letters, digits, - and _, at most 100"
        )));
    }
    // Checked now, so a view that cannot run is refused when saved, not when read.
    query.filter(core, user_id).await?;
    let json = serde_json::to_string(query).map_err(|e| Error::Internal(e.into()))?;
    Ok(core.mesh.store.put_view(user_id, name, &json).await?)
}

pub async fn views(core: &Core, user_id: i64) -> Result<Vec<(String, SearchQuery)>> {
    Ok(core
        .mesh
        .store
        .views(user_id)
        .await?
        .into_iter()
        .filter_map(|(n, q)| serde_json::from_str(&q).ok().map(|q| (n, q)))
        .collect())
}

pub async fn delete_view(core: &Core, user_id: i64, name: &str) -> Result<()> {
    if core.mesh.store.delete_view(user_id, name).await? {
        Ok(())
    } else {
        Err(Error::NotFound("view"))
    }
}
