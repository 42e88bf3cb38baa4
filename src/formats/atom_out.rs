//! Writes Atom 1.0 (RFC 4287) feeds and entries with FeedSync metadata, and AtomPub
//! (RFC 5023) service documents.

use std::fmt::Write as _;

use crate::domain::activity;
use crate::domain::entry::{Entry, Text, TextKind};
use crate::domain::feedsync::{SyncMeta, Version};

use super::xml::{esc, xml_safe};
use super::{EntryView, FeedView};

const NAMESPACES: &str = r#"xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync" xmlns:activity="http://activitystrea.ms/spec/1.0/" xmlns:fm="urn:feedmesh:2026""#;

/// A whole feed document.
pub fn feed(view: &FeedView<'_>) -> String {
    let mut o = String::with_capacity(1024 + view.entries.len() * 1024);
    o.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed ");
    o.push_str(NAMESPACES);
    o.push_str(">\n");
    element(&mut o, "id", &view.id);
    element(&mut o, "title", &view.title);
    element(&mut o, "updated", &view.updated.rfc3339());
    let _ = writeln!(o, "<author><name>{}</name></author>", esc(&xml_safe(&view.author)));
    link(&mut o, "self", &view.self_url, Some("application/atom+xml"));
    link(&mut o, "alternate", &view.alternate_url, Some("text/html"));
    if let Some(hub) = &view.hub_url {
        link(&mut o, "hub", hub, None);
    }
    if let Some(next) = &view.next_url {
        link(&mut o, "next", next, Some("application/atom+xml"));
    }
    if let Some(s) = &view.sharing {
        o.push_str("<sx:sharing");
        if let Some(since) = &s.since {
            let _ = write!(o, " since=\"{}\"", esc(since));
        }
        let _ = write!(o, " until=\"{}\"", esc(&s.until));
        match &s.complete_url {
            Some(c) => {
                let _ = writeln!(o, "><sx:related link=\"{}\" type=\"complete\"/></sx:sharing>", esc(c));
            }
            None => o.push_str("/>\n"),
        }
    }
    for e in &view.entries {
        entry_body(&mut o, e, false);
    }
    o.push_str("</feed>\n");
    o
}

/// A standalone entry document (an AtomPub member).
pub fn entry_document(e: &EntryView<'_>) -> String {
    let mut o = String::with_capacity(2048);
    o.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    entry_body(&mut o, e, true);
    o
}

fn entry_body(o: &mut String, e: &EntryView<'_>, root: bool) {
    if root {
        let _ = writeln!(o, "<entry {NAMESPACES}>");
    } else {
        o.push_str("<entry>\n");
    }
    element(o, "id", &e.id);
    payload(
        o,
        e.payload(),
        e.media_url.as_deref(),
        e.deleted(),
        e.activity.is_none(),
    );
    if root && e.payload().authors.is_empty() {
        // RFC 4287 §4.1.2: outside a feed with an author, an entry needs its own.
        let by = e.author.as_deref().unwrap_or("feedmesh");
        let _ = writeln!(o, "<author><name>{}</name></author>", esc(&xml_safe(by)));
    }
    link(o, "alternate", e.link(), None);
    if let Some(edit) = &e.edit_url {
        link(o, "edit", edit, Some("application/atom+xml;type=entry"));
    }
    if let Some(m) = &e.edit_media_url {
        link(
            o,
            "edit-media",
            m,
            e.payload().media.as_ref().map(|m| m.media_type.as_str()),
        );
    }
    for tag in &e.tags {
        let _ = writeln!(o, "<category term=\"{}\"/>", esc(&xml_safe(tag)));
    }
    if let Some(a) = &e.activity {
        // What the change is (a delete of a post is a delete), not what the entry said.
        element(o, "activity:verb", &activity::as1_verb(&a.verb));
        element(o, "activity:object-type", &activity::as1_object_type(&a.object_type));
        for w in &a.why {
            let _ = write!(
                o,
                "<fm:why identity=\"{}\" role=\"{}\"",
                esc(&xml_safe(&w.identity)),
                w.role.as_str()
            );
            if let Some(c) = &w.contact {
                let _ = write!(o, " contact=\"{}\"", esc(&xml_safe(c)));
            }
            o.push_str("/>\n");
        }
    }
    if let Some((sync, conflicts)) = e.sync {
        sync_element(o, sync, conflicts, &e.id, e.media_url.as_deref());
    }
    o.push_str("</entry>\n");
}

/// The shared data (FeedSync Implementation Note 1) of one version.
/// `own_activity`: write the entry's own `activity:` elements (members and FeedSync feeds;
/// streams write the change's instead).
fn payload(o: &mut String, p: &Entry, media_url: Option<&str>, deleted: bool, own_activity: bool) {
    text(o, "title", &p.title);
    element(o, "updated", &p.updated.rfc3339());
    if let Some(published) = p.published {
        element(o, "published", &published.rfc3339());
    }
    for a in &p.authors {
        o.push_str("<author>");
        element_inline(o, "name", &a.name);
        if let Some(e) = &a.email {
            element_inline(o, "email", e);
        }
        if let Some(u) = &a.uri {
            element_inline(o, "uri", u);
        }
        o.push_str("</author>\n");
    }
    if own_activity {
        if let Some(v) = &p.verb {
            element(o, "activity:verb", v);
        }
        if let Some(t) = &p.object_type {
            element(o, "activity:object-type", t);
        }
    }
    for c in &p.categories {
        let _ = write!(o, "<category term=\"{}\"", esc(&xml_safe(&c.term)));
        if let Some(s) = &c.scheme {
            let _ = write!(o, " scheme=\"{}\"", esc(&xml_safe(s)));
        }
        if let Some(l) = &c.label {
            let _ = write!(o, " label=\"{}\"", esc(&xml_safe(l)));
        }
        o.push_str("/>\n");
    }
    for l in &p.links {
        let _ = write!(o, "<link href=\"{}\"", esc(&xml_safe(&l.href)));
        for (k, v) in [("rel", &l.rel), ("type", &l.media_type), ("title", &l.title)] {
            if let Some(v) = v {
                let _ = write!(o, " {k}=\"{}\"", esc(&xml_safe(v)));
            }
        }
        if let Some(len) = l.length {
            let _ = write!(o, " length=\"{len}\"");
        }
        o.push_str("/>\n");
    }
    let mut summary = p.summary.clone();
    if let Some(m) = &p.media {
        let _ = write!(
            o,
            "<fm:file xmlns:fm=\"{}\" sha256=\"{}\" size=\"{}\" type=\"{}\"",
            super::xml::FM_NS,
            esc(&m.sha256),
            m.size,
            esc(&xml_safe(&m.media_type))
        );
        if let Some(name) = &m.slug {
            let _ = write!(o, " name=\"{}\"", esc(&xml_safe(name)));
        }
        o.push_str("/>\n");
    }
    if let (Some(m), Some(url)) = (&p.media, media_url) {
        let _ = writeln!(o, "<content type=\"{}\" src=\"{}\"/>", esc(&m.media_type), esc(url));
        if summary.is_none() {
            let name = m.slug.as_deref().unwrap_or("file");
            summary = Some(Text::plain(format!("{name} ({} bytes, {})", m.size, m.media_type)));
        }
    } else if let Some(c) = &p.content {
        match &c.src {
            Some(src) => {
                let _ = writeln!(o, "<content type=\"{}\" src=\"{}\"/>", esc(&c.kind), esc(src));
                if summary.is_none() {
                    summary = Some(Text::plain(p.title.value.clone()));
                }
            }
            None if c.kind == "xhtml" || (c.kind.contains('/') && c.kind.ends_with("xml")) => {
                let _ = writeln!(o, "<content type=\"{}\">{}</content>", esc(&c.kind), xml_safe(&c.value));
            }
            None => {
                let _ = writeln!(
                    o,
                    "<content type=\"{}\">{}</content>",
                    esc(&c.kind),
                    esc(&xml_safe(&c.value))
                );
            }
        }
    } else if deleted && summary.is_none() {
        summary = Some(Text::plain("(deleted)"));
    }
    if let Some(s) = &summary {
        text(o, "summary", s);
    }
}

fn sync_element(o: &mut String, s: &SyncMeta, conflicts: &[Version<Entry>], id: &str, media_url: Option<&str>) {
    let _ = write!(
        o,
        "<sx:sync id=\"{}\" updates=\"{}\" deleted=\"{}\" noconflicts=\"{}\">",
        esc(&s.id),
        s.updates,
        s.deleted,
        s.noconflicts
    );
    for h in &s.history {
        let _ = write!(o, "<sx:history sequence=\"{}\"", h.sequence);
        if let Some(w) = h.when {
            let _ = write!(o, " when=\"{w}\"");
        }
        if let Some(b) = &h.by {
            let _ = write!(o, " by=\"{}\"", esc(b));
        }
        o.push_str("/>");
    }
    if !conflicts.is_empty() {
        o.push_str("<sx:conflicts>\n");
        for c in conflicts {
            o.push_str("<entry>\n");
            element(o, "id", id);
            payload(o, &c.payload, media_url, c.sync.deleted, true);
            sync_element(o, &c.sync, &[], id, media_url);
            o.push_str("</entry>\n");
        }
        o.push_str("</sx:conflicts>");
    }
    o.push_str("</sx:sync>\n");
}

fn text(o: &mut String, name: &str, t: &Text) {
    match t.kind {
        TextKind::Xhtml => {
            let _ = writeln!(o, "<{name} type=\"xhtml\">{}</{name}>", xml_safe(&t.value));
        }
        kind => {
            let _ = writeln!(
                o,
                "<{name} type=\"{}\">{}</{name}>",
                kind.as_str(),
                esc(&xml_safe(&t.value))
            );
        }
    }
}

fn element(o: &mut String, name: &str, value: &str) {
    element_inline(o, name, value);
    o.push('\n');
}

fn element_inline(o: &mut String, name: &str, value: &str) {
    let _ = write!(o, "<{name}>{}</{name}>", esc(&xml_safe(value)));
}

fn link(o: &mut String, rel: &str, href: &str, media_type: Option<&str>) {
    let _ = write!(o, "<link rel=\"{rel}\" href=\"{}\"", esc(&xml_safe(href)));
    if let Some(t) = media_type {
        let _ = write!(o, " type=\"{}\"", esc(t));
    }
    o.push_str("/>\n");
}

/// One collection of an AtomPub service document.
pub struct ServiceCollection {
    pub title: String,
    pub href: String,
}

/// The AtomPub service document (RFC 5023 §8): one workspace, one collection per collection.
pub fn service_document(workspace: &str, collections: &[ServiceCollection]) -> String {
    let mut o = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service xmlns=\"http://www.w3.org/2007/app\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n<workspace>\n",
    );
    let _ = writeln!(o, "<atom:title>{}</atom:title>", esc(workspace));
    for c in collections {
        let _ = writeln!(
            o,
            "<collection href=\"{}\">\n<atom:title>{}</atom:title>\n<accept>application/atom+xml;type=entry</accept>\n<accept>*/*</accept>\n</collection>",
            esc(&c.href),
            esc(&c.title)
        );
    }
    o.push_str("</workspace>\n</service>\n");
    o
}
