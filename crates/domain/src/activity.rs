//! Activities: what an accepted change of an item is in Activity Streams 2.0 terms. An
//! entry may say so itself in the Atom Activity Streams 1.0 vocabulary (`activity:verb`,
//! `activity:object-type`), name its actor in `<author>` and its recipients in
//! `<link rel="mentioned">` (as OStatus did); an entry that says nothing is a
//! Create/Update/Delete of a Note by its endpoint.

use crate::entry::Entry;
use crate::identity::{Identity, Region};

/// The namespace of the Atom Activity Streams 1.0 elements.
pub const AS1_NS: &str = "http://activitystrea.ms/spec/1.0/";
/// The base of Activity Streams 1.0 verb and object-type URIs.
pub const AS1_SCHEMA: &str = "http://activitystrea.ms/schema/1.0/";

/// The kind of change an activity comes from (the store's change kinds, without its types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Delete,
}

/// In which role an identity appears in an activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Actor,
    Recipient,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Actor => "actor",
            Role::Recipient => "recipient",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "actor" => Some(Role::Actor),
            "recipient" => Some(Role::Recipient),
            _ => None,
        }
    }
}

/// One person an activity names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub identity: Identity,
    pub role: Role,
    /// The display name the entry gave (the author's name, the link's title); may be empty.
    pub name: String,
}

/// What the hub reads of an item's version as an activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The AS2 activity type: Create, Update, Delete, Announce, Like, Follow…
    pub verb: String,
    /// The AS2 (or feedmesh) object type: Note, Article, Message, TextMessage, Call, Document…
    pub object_type: String,
    /// The actor first (if the entry names one), then the recipients; each identity once per role.
    pub parties: Vec<Party>,
}

/// How many people one activity may name (a mail to 500 recipients is kept whole; more is
/// not a conversation).
pub const MAX_PARTIES: usize = 1000;

/// The activity a change of `entry` (its winning version) is.
pub fn facts(entry: &Entry, change: Change, region: Region) -> Facts {
    let verb = match change {
        Change::Delete => "Delete".to_string(),
        Change::Update => "Update".to_string(),
        Change::Create => entry.verb.as_deref().and_then(as2_verb).unwrap_or("Create").to_string(),
    };
    let object_type = object_type(entry).to_string();
    let mut parties: Vec<Party> = Vec::new();
    let mut push = |identity: Identity, role: Role, name: &str| {
        if parties.len() < MAX_PARTIES && !parties.iter().any(|p| p.identity == identity && p.role == role) {
            parties.push(Party {
                identity,
                role,
                name: name.trim().chars().take(200).collect(),
            });
        }
    };
    if let Some(a) = entry.authors.first() {
        let id = a
            .email
            .as_deref()
            .and_then(|e| Identity::email(e).ok())
            .or_else(|| a.uri.as_deref().and_then(|u| Identity::parse(u, region).ok()));
        if let Some(id) = id {
            push(id, Role::Actor, &a.name);
        }
    }
    for l in &entry.links {
        if l.rel.as_deref().is_some_and(is_mention) {
            // What is not an identity (a typo, a hostile value) is not linked; the entry stays.
            if let Ok(id) = Identity::parse(&l.href, region) {
                push(id, Role::Recipient, l.title.as_deref().unwrap_or(""));
            }
        }
    }
    Facts {
        verb,
        object_type,
        parties,
    }
}

/// `rel` values that name a recipient.
pub fn is_mention(rel: &str) -> bool {
    matches!(
        rel,
        "mentioned" | "ostatus:attention" | "http://ostatus.org/schema/1.0/attention"
    )
}

/// The last segment of an AS1 URI, or the value itself.
fn short(v: &str) -> String {
    v.trim().rsplit('/').next().unwrap_or("").to_ascii_lowercase()
}

/// An AS1 verb (or an AS2 activity type) as an AS2 activity type.
pub fn as2_verb(v: &str) -> Option<&'static str> {
    Some(match short(v).as_str() {
        "post" | "create" | "send" | "receive" | "make" | "author" => "Create",
        "update" => "Update",
        "delete" => "Delete",
        "share" | "announce" => "Announce",
        "like" | "favorite" | "favourite" => "Like",
        "follow" => "Follow",
        "join" => "Join",
        "leave" => "Leave",
        "save" | "add" | "tag" => "Add",
        "remove" => "Remove",
        "rsvp-yes" | "accept" => "Accept",
        "rsvp-no" | "reject" => "Reject",
        "rsvp-maybe" | "tentativeaccept" => "TentativeAccept",
        "invite" => "Invite",
        "listen" => "Listen",
        "read" => "Read",
        "watch" | "view" | "play" => "View",
        "block" => "Block",
        "flag" => "Flag",
        "arrive" | "checkin" => "Arrive",
        "offer" => "Offer",
        "question" => "Question",
        _ => return None,
    })
}

/// An AS2 activity type as the AS1 verb URI written in Atom.
pub fn as1_verb(as2: &str) -> String {
    let v = match as2 {
        "Create" => "post",
        "Announce" => "share",
        "Like" => "favorite",
        "Add" => "save",
        "Accept" => "rsvp-yes",
        "Reject" => "rsvp-no",
        "TentativeAccept" => "rsvp-maybe",
        "View" => "watch",
        "Arrive" => "checkin",
        other => return format!("{AS1_SCHEMA}{}", other.to_ascii_lowercase()),
    };
    format!("{AS1_SCHEMA}{v}")
}

/// The object type of an entry: what it says (AS1 or AS2 names), else what its file is, else Note.
pub fn object_type(entry: &Entry) -> &'static str {
    if let Some(t) = entry.object_type.as_deref().and_then(as2_object_type) {
        return t;
    }
    match &entry.media {
        Some(m) if m.media_type.starts_with("image/") => "Image",
        Some(m) if m.media_type.starts_with("video/") => "Video",
        Some(m) if m.media_type.starts_with("audio/") => "Audio",
        Some(_) => "Document",
        None => "Note",
    }
}

/// An AS1 object type (or an AS2 / feedmesh one) as the AS2 / feedmesh name.
pub fn as2_object_type(t: &str) -> Option<&'static str> {
    Some(match short(t).replace('_', "-").as_str() {
        "note" | "comment" | "status" | "post" => "Note",
        "article" | "blog-entry" | "blogentry" => "Article",
        "bookmark" | "page" | "link" => "Page",
        "file" | "document" => "Document",
        "image" | "photo" => "Image",
        "video" => "Video",
        "audio" => "Audio",
        "event" => "Event",
        "person" => "Person",
        "group" => "Group",
        "organization" => "Organization",
        "place" => "Place",
        "question" => "Question",
        "message" | "email" | "e-mail" | "mail" => "Message",
        "textmessage" | "text-message" | "sms" | "mms" | "text" | "chat" => "TextMessage",
        "call" | "phone-call" | "phonecall" => "Call",
        "service" | "application" => "Service",
        _ => return None,
    })
}

/// An AS2 / feedmesh object type as the AS1 object-type URI written in Atom.
pub fn as1_object_type(as2: &str) -> String {
    let t = match as2 {
        "Page" => "bookmark",
        "Document" => "file",
        "Image" => "image",
        "TextMessage" => "text-message",
        other => return format!("{AS1_SCHEMA}{}", other.to_ascii_lowercase()),
    };
    format!("{AS1_SCHEMA}{t}")
}

/// The channel an object type comes through, for counts per contact.
pub fn channel(object_type: &str) -> &'static str {
    match object_type {
        "Message" => "email",
        "TextMessage" => "text",
        "Call" => "call",
        "Document" | "Image" | "Video" | "Audio" => "file",
        _ => "post",
    }
}

/// The channels, in the order counts list them.
pub const CHANNELS: [&str; 5] = ["email", "post", "text", "call", "file"];

/// The words of a text as the search index and queries see them: lower-cased runs of
/// letters and digits (the same on SQLite and PostgreSQL, which index these words as they are).
pub fn words(text: &str, out: &mut String, budget: usize) {
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut String| {
        if !w.is_empty() && out.len() + w.len() < budget {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(w);
        }
        w.clear();
    };
    let mut in_tag = false;
    for c in text.chars() {
        // Markup is not text: skip what is inside `<…>`.
        if c == '<' {
            in_tag = true;
            flush(&mut word, out);
            continue;
        }
        if in_tag {
            in_tag = c != '>';
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            if word.len() > 64 {
                flush(&mut word, out);
            }
        } else {
            flush(&mut word, out);
        }
    }
    flush(&mut word, out);
}

/// The searchable text of an activity: title, summary, content and the people's names.
pub fn search_text(entry: &Entry, facts: &Facts) -> String {
    const BUDGET: usize = 32 * 1024;
    let mut out = String::new();
    words(&entry.title.value, &mut out, BUDGET);
    if let Some(s) = &entry.summary {
        words(&s.value, &mut out, BUDGET);
    }
    if let Some(c) = &entry.content
        && c.src.is_none()
        && (c.kind == "text" || c.kind == "html" || c.kind == "xhtml" || c.kind.starts_with("text/"))
    {
        words(&c.value, &mut out, BUDGET);
    }
    for a in &entry.authors {
        words(&a.name, &mut out, BUDGET);
    }
    for p in &facts.parties {
        words(&p.name, &mut out, BUDGET);
    }
    if let Some(m) = &entry.media
        && let Some(slug) = &m.slug
    {
        words(slug, &mut out, BUDGET);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Link, Person, Text};

    #[test]
    fn an_entry_that_says_nothing_is_a_note_by_its_endpoint() {
        let e = Entry {
            title: Text::plain("hello"),
            ..Entry::default()
        };
        let f = facts(&e, Change::Create, Region::default());
        assert_eq!((f.verb.as_str(), f.object_type.as_str()), ("Create", "Note"));
        assert!(f.parties.is_empty());
        assert_eq!(facts(&e, Change::Delete, Region::default()).verb, "Delete");
    }

    #[test]
    fn actors_and_recipients_come_from_author_and_mentions() {
        let e = Entry {
            title: Text::plain("Quote"),
            verb: Some(format!("{AS1_SCHEMA}post")),
            object_type: Some("email".into()),
            authors: vec![Person {
                name: "Bob".into(),
                email: Some("Bob@Example.com".into()),
                uri: None,
            }],
            links: vec![
                Link {
                    href: "tel:415-555-0100".into(),
                    rel: Some("mentioned".into()),
                    title: Some("Ann".into()),
                    ..Link::default()
                },
                Link {
                    href: "tel:abc".into(),
                    rel: Some("mentioned".into()),
                    ..Link::default()
                },
                Link {
                    href: "https://x.example/".into(),
                    rel: None,
                    ..Link::default()
                },
            ],
            ..Entry::default()
        };
        let f = facts(&e, Change::Create, Region::default());
        assert_eq!(f.object_type, "Message");
        let got: Vec<(&str, Role, &str)> = f
            .parties
            .iter()
            .map(|p| (p.identity.as_str(), p.role, p.name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("mailto:bob@example.com", Role::Actor, "Bob"),
                ("tel:+14155550100", Role::Recipient, "Ann")
            ]
        );
        assert_eq!(as1_verb("Create"), "http://activitystrea.ms/schema/1.0/post");
        assert_eq!(as2_verb(&as1_verb("Like")), Some("Like"));
        assert_eq!(as2_object_type(&as1_object_type("TextMessage")), Some("TextMessage"));
    }

    #[test]
    fn words_are_lowercased_and_markup_is_skipped() {
        let mut out = String::new();
        words("<p>Hello, <b>Wörld</b>!</p> rock'n'roll 42", &mut out, 1000);
        assert_eq!(out, "hello wörld rock n roll 42");
    }
}
