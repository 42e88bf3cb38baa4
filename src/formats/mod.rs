//! Feed formats in and out: Atom (with FeedSync), RSS 2.0, JSON Feed 1.1, AtomPub documents.
//! No database and no HTTP here: the web layer hands in a [`FeedView`] and gets bytes back.

pub mod as2_out;
pub mod atom_in;
pub mod atom_out;
pub mod json_out;
pub mod opml;
pub mod rss_out;
pub mod sms_backup;
pub mod vcard;
pub mod xml;

use crate::domain::entry::Entry;
use crate::domain::feedsync::{SyncMeta, Version};
use crate::domain::time::Timestamp;

/// The formats every feed is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Atom,
    Rss,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Atom => "application/atom+xml; charset=utf-8",
            Format::Rss => "application/rss+xml; charset=utf-8",
            Format::Json => "application/feed+json; charset=utf-8",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Atom => "atom",
            Format::Rss => "rss",
            Format::Json => "json",
        }
    }
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "atom" => Some(Format::Atom),
            "rss" => Some(Format::Rss),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// FeedSync `sx:sharing` of a collection feed (§4.3): partial when `since` is set.
#[derive(Clone, Debug)]
pub struct Sharing {
    pub since: Option<String>,
    pub until: String,
    pub complete_url: Option<String>,
}

/// Everything a writer needs about a feed, already resolved to URLs and strings.
pub struct FeedView<'a> {
    pub id: String,
    pub title: String,
    pub self_url: String,
    pub alternate_url: String,
    /// The WebSub hub that pushes this feed (`rel="hub"`).
    pub hub_url: Option<String>,
    pub updated: Timestamp,
    pub author: String,
    /// RFC 5005 `rel="next"`.
    pub next_url: Option<String>,
    pub sharing: Option<Sharing>,
    pub entries: Vec<EntryView<'a>>,
}

/// One entry of a feed: a stored version plus the publisher-specific parts.
pub struct EntryView<'a> {
    pub id: String,
    pub version: &'a Version<Entry>,
    /// Written as `sx:sync` (with these conflicts) only in FeedSync feeds.
    pub sync: Option<(&'a SyncMeta, &'a [Version<Entry>])>,
    pub edit_url: Option<String>,
    pub edit_media_url: Option<String>,
    /// Used as the alternate link when the payload has none.
    pub fallback_link: String,
    /// Extra categories, e.g. the collection and the kind of change.
    pub tags: Vec<String>,
    /// The URL of the stored file, for media entries.
    pub media_url: Option<String>,
    /// Whom an entry document without authors of its own names as its author.
    pub author: Option<String>,
    /// In streams, timelines and searches: the activity the change is, and why it is here.
    pub activity: Option<ActivityView>,
}

/// An entry's activity as a stream shows it.
#[derive(Clone, Debug, Default)]
pub struct ActivityView {
    /// AS2 activity type (Create, Update, Delete, Like…).
    pub verb: String,
    /// AS2 or feedmesh object type (Note, Message, Call…).
    pub object_type: String,
    /// Provenance in a timeline: which identity matched, in which role, for which contact.
    pub why: Vec<Why>,
    /// The actor's identity, if the entry names one (else the endpoint acted).
    pub actor: Option<String>,
    /// The recipients' identities.
    pub to: Vec<String>,
    /// When the hub accepted the change.
    pub published: Option<Timestamp>,
    /// The collection (name, URL) the item is in: the activity's target.
    pub target: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Why {
    pub identity: String,
    pub role: crate::domain::activity::Role,
    pub contact: Option<String>,
}

impl EntryView<'_> {
    pub fn payload(&self) -> &Entry {
        &self.version.payload
    }
    pub fn link(&self) -> &str {
        self.payload().alternate().unwrap_or(&self.fallback_link)
    }
    pub fn deleted(&self) -> bool {
        self.version.sync.deleted
    }
}
