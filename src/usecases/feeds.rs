//! Feeds as documents: a collection's FeedSync feed and the user's and endpoints' streams
//! in Atom, RSS 2.0 and JSON Feed, rendered one way for a reader's GET and for a WebSub
//! delivery alike; and the one parser of feed paths (`/u/…`, `/atompub/…`) that feed keys,
//! hub topics and deliveries read.

use std::time::Duration;

use super::{Core, encode_segment};
use crate::domain::time::Timestamp;
use crate::error::Result;
use crate::formats::{self, EntryView, FeedView, Format, Sharing};
use crate::store::{ChangeRecord, Collection, ItemRecord};

/// A feed this hub serves, as its path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedPath<'a> {
    /// `/u/{user}/stream.{ext}` (device `None`) or `/u/{user}/endpoints/{device}/stream.{ext}`.
    Stream {
        user: &'a str,
        device: Option<&'a str>,
        format: Format,
    },
    /// `/atompub/{user}/{collection}`: a collection's FeedSync feed.
    Collection { user: &'a str, collection: &'a str },
    /// `/u/{user}/contacts/{id}/timeline.{ext}`, `/u/{user}/companies/{slug}/timeline.{ext}`,
    /// `/u/{user}/views/{name}.{ext}`: activity feeds of people and saved searches.
    Activities { user: &'a str, of: Of<'a>, format: Format },
}

/// Which activities a feed shows, as its path names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of<'a> {
    Contact(&'a str),
    Company(&'a str),
    View(&'a str),
}

impl<'a> FeedPath<'a> {
    /// Reads a path (a query, if any, is ignored); `None` for anything that is not a feed.
    pub fn parse(path: &'a str) -> Option<FeedPath<'a>> {
        let path = path.split('?').next().unwrap_or(path);
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let stream = |file: &str| file.strip_prefix("stream.").and_then(Format::from_extension);
        let timeline = |file: &str| file.strip_prefix("timeline.").and_then(Format::from_extension);
        match parts.as_slice() {
            ["u", user, file] => Some(FeedPath::Stream {
                user,
                device: None,
                format: stream(file)?,
            }),
            ["u", user, "endpoints", device, file] => Some(FeedPath::Stream {
                user,
                device: Some(device),
                format: stream(file)?,
            }),
            ["atompub", user, collection] => Some(FeedPath::Collection { user, collection }),
            ["u", user, "contacts", id, file] => Some(FeedPath::Activities {
                user,
                of: Of::Contact(id),
                format: timeline(file)?,
            }),
            ["u", user, "companies", slug, file] => Some(FeedPath::Activities {
                user,
                of: Of::Company(slug),
                format: timeline(file)?,
            }),
            ["u", user, "views", file] => {
                let (name, ext) = file.rsplit_once('.')?;
                Some(FeedPath::Activities {
                    user,
                    of: Of::View(name),
                    format: Format::from_extension(ext)?,
                })
            }
            _ => None,
        }
    }

    pub fn user(&self) -> &'a str {
        match self {
            FeedPath::Stream { user, .. } | FeedPath::Collection { user, .. } | FeedPath::Activities { user, .. } => {
                user
            }
        }
    }
}

/// Returns when the collection has a change after `after`, or at the deadline. Woken by this
/// process's writes at once; other processes' writes are seen within a second.
pub async fn wait_for_change(core: &Core, collection_id: i64, after: u64, wait: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = core.mesh.changed.subscribe();
    loop {
        if core.mesh.store.collection_head(collection_id).await? > after {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        let nap = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(nap, changed.changed()).await;
    }
}

/// The user's latest change, read from the store (not the second-long cache): after a
/// long-poll the change may be another process's.
pub async fn fresh_head(core: &Core, user_id: i64) -> Result<u64> {
    Ok(core.mesh.store.user_head(user_id).await?)
}

/// A page of a collection's FeedSync feed: its items changed after `since`, oldest first.
pub async fn collection_page(core: &Core, col: &Collection, since: u64, limit: u32) -> Result<Vec<ItemRecord>> {
    Ok(core.mesh.store.items_since(col.id, since, limit).await?)
}

/// The stream format a file name (`stream.atom`, `stream.rss`, `stream.json`) asks for.
pub fn stream_format(file: &str) -> Option<Format> {
    file.strip_prefix("stream.").and_then(Format::from_extension)
}

pub fn render(format: Format, view: &FeedView<'_>) -> String {
    match format {
        Format::Atom => formats::atom_out::feed(view),
        Format::Rss => formats::rss_out::feed(view),
        Format::Json => formats::json_out::feed(view),
    }
}

/// The canonical URL of a user's or an endpoint's stream in one format.
pub fn stream_url(st: &Core, user: &str, device: Option<&str>, format: Format) -> String {
    match device {
        Some(d) => format!(
            "{}/u/{}/endpoints/{}/stream.{}",
            st.base_url,
            encode_segment(user),
            encode_segment(d),
            format.extension()
        ),
        None => format!(
            "{}/u/{}/stream.{}",
            st.base_url,
            encode_segment(user),
            format.extension()
        ),
    }
}

/// A collection's FeedSync feed of `records` (complete, or partial after `since`); the same
/// document serves GET and WebSub deliveries. Returns the body and its `updated` time.
pub fn collection_document(
    st: &Core,
    user: &str,
    col: &Collection,
    records: &[ItemRecord],
    since: Option<u64>,
    self_url: String,
    next_url: Option<String>,
) -> (String, Timestamp) {
    let until = records.last().map(|r| r.seq).unwrap_or(since.unwrap_or(0));
    let url = st.collection_url(user, &col.name);
    let updated = records.iter().map(|r| r.changed_at).max().unwrap_or(col.created_at);
    let entries = records
        .iter()
        .map(|r| {
            let member = st.member_url(user, &col.name, r.item.id());
            EntryView {
                id: member.clone(),
                version: &r.item.current,
                sync: Some((&r.item.current.sync, r.item.conflicts.as_slice())),
                edit_url: Some(member.clone()),
                edit_media_url: r.item.current.payload.media.as_ref().map(|_| format!("{member}/media")),
                media_url: r.item.current.payload.media.as_ref().map(|_| format!("{member}/media")),
                fallback_link: member,
                tags: Vec::new(),
                author: None,
                activity: None,
            }
        })
        .collect();
    let view = FeedView {
        id: url.clone(),
        title: format!("{user}: {}", col.name),
        self_url,
        alternate_url: url.clone(),
        hub_url: Some(st.hub_url()),
        updated,
        author: user.to_string(),
        next_url,
        sharing: Some(Sharing {
            since: since.map(|s| s.to_string()),
            until: until.to_string(),
            complete_url: since.map(|_| url.clone()),
        }),
        entries,
    };
    (render(Format::Atom, &view), updated)
}

/// A stream of `changes` in `format`; the same document serves GET and WebSub deliveries.
#[allow(clippy::too_many_arguments)]
pub fn stream_document(
    st: &Core,
    user: &str,
    device: Option<&str>,
    format: Format,
    changes: &[ChangeRecord],
    self_url: String,
    next_url: Option<String>,
    fallback_updated: Timestamp,
) -> (String, Timestamp) {
    let meta = stream_meta(st, user, device, format);
    activity_document(
        st,
        user,
        &meta,
        format,
        changes,
        &Why::default(),
        self_url,
        next_url,
        fallback_updated,
    )
}

/// The name of a user's or an endpoint's stream.
pub fn stream_meta(st: &Core, user: &str, device: Option<&str>, format: Format) -> FeedMeta {
    let title = match device {
        Some(d) => format!("{user}/{d}: published"),
        None => format!("{user}: stream"),
    };
    FeedMeta {
        id: stream_url(st, user, device, format),
        title,
        alternate_url: format!("{}/", st.base_url),
    }
}

/// What names an activity feed: its id (canonical URL), title and home page.
pub struct FeedMeta {
    pub id: String,
    pub title: String,
    pub alternate_url: String,
}

/// Why each activity of a timeline is there, by sequence number.
pub type Why = std::collections::HashMap<u64, Vec<formats::Why>>;

/// A feed of activities (a stream, a timeline, a search, a view) in `format`; the same
/// document serves GET and WebSub deliveries.
#[allow(clippy::too_many_arguments)]
pub fn activity_document(
    st: &Core,
    user: &str,
    meta: &FeedMeta,
    format: Format,
    changes: &[ChangeRecord],
    why: &Why,
    self_url: String,
    next_url: Option<String>,
    fallback_updated: Timestamp,
) -> (String, Timestamp) {
    let view = activity_feed_view(st, user, meta, changes, why, self_url, next_url, fallback_updated);
    (render(format, &view), view.updated)
}

/// The writers' view of a feed of activities (for any format, AS2 included).
#[allow(clippy::too_many_arguments)]
pub fn activity_feed_view<'a>(
    st: &Core,
    user: &str,
    meta: &FeedMeta,
    changes: &'a [ChangeRecord],
    why: &Why,
    self_url: String,
    next_url: Option<String>,
    fallback_updated: Timestamp,
) -> FeedView<'a> {
    let updated = changes.iter().map(|c| c.at).max().unwrap_or(fallback_updated);
    let entries = changes
        .iter()
        .map(|c| {
            let member = st.member_url(user, &c.collection, &c.sync_id);
            let media = c.version.payload.media.as_ref().map(|_| format!("{member}/media"));
            let mut tags = vec![c.collection.clone(), c.kind.as_str().to_string()];
            if let Some(e) = &c.endpoint {
                tags.push(format!("{user}/{e}"));
            }
            EntryView {
                id: change_url(st, user, c.seq),
                version: &c.version,
                sync: None,
                edit_url: Some(member.clone()),
                edit_media_url: media.clone(),
                media_url: media,
                fallback_link: member,
                tags,
                author: c.endpoint.as_ref().map(|e| format!("{user}/{e}")),
                activity: Some(activity_view(st, user, c, why)),
            }
        })
        .collect();
    FeedView {
        id: meta.id.clone(),
        title: meta.title.clone(),
        self_url,
        alternate_url: meta.alternate_url.clone(),
        hub_url: Some(st.hub_url()),
        updated,
        author: user.to_string(),
        next_url,
        sharing: None,
        entries,
    }
}

fn activity_view(st: &Core, user: &str, c: &ChangeRecord, why: &Why) -> formats::ActivityView {
    use crate::domain::activity::{Change, Role, facts};
    let change = match c.verb.as_str() {
        "Delete" => Change::Delete,
        "Update" => Change::Update,
        _ => Change::Create,
    };
    let f = facts(&c.version.payload, change, st.mesh.region);
    formats::ActivityView {
        verb: c.verb.clone(),
        object_type: c.object_type.clone(),
        why: why.get(&c.seq).cloned().unwrap_or_default(),
        actor: f
            .parties
            .iter()
            .find(|p| p.role == Role::Actor)
            .map(|p| p.identity.to_string()),
        to: f
            .parties
            .iter()
            .filter(|p| p.role == Role::Recipient)
            .map(|p| p.identity.to_string())
            .collect(),
        published: Some(c.at),
        target: Some((c.collection.clone(), st.collection_url(user, &c.collection))),
    }
}

/// The URL naming one change (an activity's id).
pub fn change_url(st: &Core, user: &str, seq: u64) -> String {
    format!("{}/u/{}/changes/{}", st.base_url, encode_segment(user), seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_paths_parse_to_the_feed_they_name() {
        assert_eq!(
            FeedPath::parse("/u/alice/stream.rss?key=fk_x"),
            Some(FeedPath::Stream {
                user: "alice",
                device: None,
                format: Format::Rss
            })
        );
        assert_eq!(
            FeedPath::parse("/u/alice/endpoints/phone/stream.json"),
            Some(FeedPath::Stream {
                user: "alice",
                device: Some("phone"),
                format: Format::Json
            })
        );
        assert_eq!(
            FeedPath::parse("/atompub/alice/Notes"),
            Some(FeedPath::Collection {
                user: "alice",
                collection: "Notes"
            })
        );
        for not_a_feed in [
            "",
            "/",
            "u/alice/stream.atom",
            "/u/alice/stream.html",
            "/u/alice",
            "/atompub/alice/Notes/x",
            "/u/alice/endpoints/phone/feed.atom",
        ] {
            assert_eq!(FeedPath::parse(not_a_feed), None, "{not_a_feed:?}");
        }
        assert_eq!(FeedPath::parse("/atompub/bob/Notes").map(|f| f.user()), Some("bob"));
    }
}

/// One feed of a user's directory: what to call it and its URL (without a key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedLink {
    pub title: String,
    pub url: String,
}

/// The feeds a user can read, by group: the stream in three formats, each device's stream,
/// each collection, each saved view, each company's and each contact's timeline.
pub async fn directory(core: &Core, user_id: i64, user: &str) -> Result<Vec<(String, Vec<FeedLink>)>> {
    use super::timelines::feed_url;
    let store = &core.mesh.store;
    let name = crate::domain::names::UserName::parse(user)?;
    let link = |title: String, url: String| FeedLink { title, url };
    let stream = [Format::Atom, Format::Rss, Format::Json]
        .into_iter()
        .map(|f| {
            link(
                format!("Everything ({})", f.extension()),
                stream_url(core, user, None, f),
            )
        })
        .collect();
    let mut devices: Vec<String> = store.tokens(&name).await?.into_iter().map(|t| t.device).collect();
    devices.sort();
    devices.dedup();
    let devices = devices
        .into_iter()
        .map(|d| {
            link(
                format!("What {d} published"),
                stream_url(core, user, Some(&d), Format::Atom),
            )
        })
        .collect();
    let collections = core
        .mesh
        .collections(user_id)
        .await?
        .into_iter()
        .map(|c| link(c.name.clone(), core.collection_url(user, &c.name)))
        .collect();
    let views = store
        .views(user_id)
        .await?
        .into_iter()
        .map(|(v, _)| link(v.clone(), feed_url(core, user, Of::View(&v), Format::Atom)))
        .collect();
    let companies = store
        .companies(user_id)
        .await?
        .into_iter()
        .map(|c| link(c.name.clone(), feed_url(core, user, Of::Company(&c.slug), Format::Atom)))
        .collect();
    let contacts = store
        .contacts(user_id)
        .await?
        .into_iter()
        .map(|c| link(c.name.clone(), feed_url(core, user, Of::Contact(&c.id), Format::Atom)))
        .collect();
    Ok(vec![
        ("Stream".into(), stream),
        ("Devices".into(), devices),
        ("Collections".into(), collections),
        ("Views".into(), views),
        ("Companies".into(), companies),
        ("Contacts".into(), contacts),
    ])
}
