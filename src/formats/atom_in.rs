//! Reads Atom entries and feeds carrying FeedSync (`sx:sync`) into domain types.
//! Strict where sync depends on it (sx attributes), lenient on unknown extensions (skipped).

use crate::domain::activity::AS1_NS;
use crate::domain::entry::{Category, Content, Entry, Link, Person, Text, TextKind};
use crate::domain::feedsync::{History, Item, SyncMeta, Version};
use crate::domain::time::Timestamp;

use super::xml::{ATOM_NS, FM_NS, Node, Reader, SSE_093_NS, SX_NS, Start, XmlError};

/// One entry as received: its payload, and its sync metadata and conflicts if it had `sx:sync`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedEntry {
    pub entry: Entry,
    pub sync: Option<ParsedSync>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSync {
    pub meta: SyncMeta,
    pub conflicts: Vec<Version<Entry>>,
}

/// An entry as the hub treats it: a FeedSync item to merge, or a plain payload.
pub enum Incoming {
    Sync(Item<Entry>),
    Plain(Entry),
}

impl ParsedEntry {
    pub fn into_incoming(self) -> Incoming {
        match self.sync {
            Some(sync) => Incoming::Sync(Item {
                current: Version {
                    sync: sync.meta,
                    payload: self.entry,
                },
                conflicts: sync.conflicts,
            }),
            None => Incoming::Plain(self.entry),
        }
    }
}

impl ParsedEntry {
    /// Drops what the hub itself writes into an entry document it serves, the author it
    /// names when the entry has none (the owner or one of the owner's endpoints) and the
    /// alternate link to the member: a client that sends back what it read (RFC 5023 §9.3)
    /// then sends the payload as stored, and an unchanged entry stays unchanged.
    pub fn without_echo(mut self, member_url: &str, owner: &str) -> Self {
        let e = &mut self.entry;
        e.links
            .retain(|l| !(l.href == member_url && l.rel.as_deref().is_none_or(|r| r == "alternate")));
        let echoed_author = matches!(e.authors.as_slice(), [a] if a.email.is_none() && a.uri.is_none()
            && (a.name == owner || crate::domain::names::is_endpoint_of(&a.name, owner)));
        if echoed_author {
            e.authors.clear();
        }
        self
    }

    /// The `sx:sync` id, if the entry carries FeedSync metadata.
    pub fn sync_id(&self) -> Option<&str> {
        self.sync.as_ref().map(|s| s.meta.id.as_str())
    }
}

fn is_sx(s: &Start, name: &str) -> bool {
    (s.ns == SX_NS || s.ns == SSE_093_NS) && s.name == name
}

/// Parses a document whose root is `atom:entry` (an AtomPub POST or PUT body).
pub fn parse_entry_document(body: &[u8], now: Timestamp) -> Result<ParsedEntry, XmlError> {
    let mut r = Reader::new(body)?;
    let root = r.root()?;
    if !root.is(ATOM_NS, "entry") {
        return Err(XmlError::Invalid(format!(
            "expected an Atom <entry> (namespace {ATOM_NS}), found <{}>",
            root.name
        )));
    }
    let parsed = entry(&mut r, now, true)?;
    r.finish()?;
    Ok(parsed)
}

/// Parses an Atom feed document: every `atom:entry`, in document order.
pub fn parse_feed_document(body: &[u8], now: Timestamp) -> Result<Vec<ParsedEntry>, XmlError> {
    match parse_document(body, now)? {
        Document::Feed(entries) => Ok(entries),
        Document::Entry(_) => Err(XmlError::Invalid("expected an Atom <feed>, found <entry>".into())),
    }
}

/// A posted Atom document: one entry, or a feed of them (a device's FeedSync batch).
pub enum Document {
    Entry(Box<ParsedEntry>),
    Feed(Vec<ParsedEntry>),
}

/// Parses a document whose root is `atom:entry` or `atom:feed`.
pub fn parse_document(body: &[u8], now: Timestamp) -> Result<Document, XmlError> {
    let mut r = Reader::new(body)?;
    let root = r.root()?;
    let doc = if root.is(ATOM_NS, "entry") {
        Document::Entry(Box::new(entry(&mut r, now, true)?))
    } else if root.is(ATOM_NS, "feed") {
        let mut out = Vec::new();
        loop {
            match r.next_node()? {
                Node::Start(s) if s.is(ATOM_NS, "entry") => out.push(entry(&mut r, now, true)?),
                Node::Start(s) => r.skip(&s)?,
                Node::Text(_) => {}
                Node::End => break,
                Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
            }
        }
        Document::Feed(out)
    } else {
        return Err(XmlError::Invalid(format!(
            "expected an Atom <entry> or <feed> (namespace {ATOM_NS}), found <{}>",
            root.name
        )));
    };
    r.finish()?;
    Ok(doc)
}

fn entry(r: &mut Reader<'_>, now: Timestamp, allow_conflicts: bool) -> Result<ParsedEntry, XmlError> {
    let mut e = Entry {
        updated: now,
        ..Entry::default()
    };
    let mut title = None;
    let mut sync = None;
    loop {
        let s = match r.next_node()? {
            Node::Start(s) => s,
            Node::Text(_) => continue,
            Node::End => break,
            Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
        };
        if s.ns == ATOM_NS {
            match s.name.as_str() {
                "title" => title = Some(text_construct(r, &s)?),
                "summary" => e.summary = Some(text_construct(r, &s)?),
                "content" => e.content = Some(content(r, &s)?),
                "author" => e.authors.push(person(r)?),
                "updated" => e.updated = date(r, &s)?,
                "published" => e.published = Some(date(r, &s)?),
                "category" => {
                    let term = s
                        .attr("term")
                        .ok_or_else(|| XmlError::Invalid("atom:category needs a term".into()))?;
                    e.categories.push(Category {
                        term: term.to_string(),
                        scheme: s.attr("scheme").map(str::to_string),
                        label: s.attr("label").map(str::to_string),
                    });
                    r.skip(&s)?;
                }
                "link" => {
                    let href = s
                        .attr("href")
                        .ok_or_else(|| XmlError::Invalid("atom:link needs an href".into()))?;
                    let rel = s.attr("rel").map(str::to_string);
                    if !matches!(rel.as_deref(), Some("self" | "edit" | "edit-media")) {
                        e.links.push(Link {
                            href: href.to_string(),
                            rel,
                            media_type: s.attr("type").map(str::to_string),
                            title: s.attr("title").map(str::to_string),
                            length: s.attr("length").and_then(|l| l.parse().ok()),
                        });
                    }
                    r.skip(&s)?;
                }
                _ => r.skip(&s)?, // id, rights, source, contributor: publisher-specific or not kept
            }
        } else if s.ns == AS1_NS && (s.name == "verb" || s.name == "object-type") {
            let v: String = r.text(&s)?.trim().chars().take(200).collect();
            if !v.is_empty() {
                if s.name == "verb" {
                    e.verb = Some(v);
                } else {
                    e.object_type = Some(v);
                }
            }
        } else if s.ns == FM_NS && s.name == "file" {
            e.media = Some(file(&s)?);
            r.skip(&s)?;
        } else if is_sx(&s, "sync") {
            if sync.is_some() {
                return Err(XmlError::Invalid("an entry may carry only one sx:sync".into()));
            }
            sync = Some(sync_element(r, &s, now, allow_conflicts)?);
        } else {
            r.skip(&s)?;
        }
    }
    e.title = title.ok_or_else(|| XmlError::Invalid("the entry has no atom:title".into()))?;
    Ok(ParsedEntry { entry: e, sync })
}

/// `<fm:file sha256="…" size="…" type="…" name="…"/>`: the blob an item's payload is.
fn file(s: &Start) -> Result<crate::domain::entry::Media, XmlError> {
    let sha256 = s
        .attr("sha256")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| XmlError::Invalid("fm:file needs sha256, 64 lowercase hex digits".into()))?;
    let size = s
        .attr("size")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| XmlError::Invalid("fm:file needs size, a whole number of bytes".into()))?;
    Ok(crate::domain::entry::Media {
        sha256: sha256.to_string(),
        size,
        media_type: crate::domain::entry::parse_media_type(s.attr("type").unwrap_or("application/octet-stream"))
            .map_err(|e| XmlError::Invalid(format!("fm:file type: {e}")))?,
        slug: s.attr("name").map(str::to_string),
    })
}

fn text_construct(r: &mut Reader<'_>, s: &Start) -> Result<Text, XmlError> {
    let kind = match s.attr("type").unwrap_or("text") {
        "text" => TextKind::Text,
        "html" => TextKind::Html,
        "xhtml" => TextKind::Xhtml,
        other => {
            return Err(XmlError::Invalid(format!(
                "text construct type {other:?} is not text, html or xhtml"
            )));
        }
    };
    let value = if kind == TextKind::Xhtml {
        r.raw_inner(s)?.trim().to_string()
    } else {
        r.text(s)?
    };
    Ok(Text { kind, value })
}

fn content(r: &mut Reader<'_>, s: &Start) -> Result<Content, XmlError> {
    let kind = s.attr("type").unwrap_or("text").to_string();
    let src = s.attr("src").map(str::to_string);
    let value = if kind == "xhtml" || (kind.contains('/') && kind.ends_with("xml")) {
        r.raw_inner(s)?.trim().to_string()
    } else {
        r.text(s)?
    };
    Ok(Content { kind, value, src })
}

fn person(r: &mut Reader<'_>) -> Result<Person, XmlError> {
    let mut p = Person::default();
    loop {
        match r.next_node()? {
            Node::Start(s) if s.ns == ATOM_NS && s.name == "name" => p.name = r.text(&s)?,
            Node::Start(s) if s.ns == ATOM_NS && s.name == "email" => p.email = Some(r.text(&s)?),
            Node::Start(s) if s.ns == ATOM_NS && s.name == "uri" => p.uri = Some(r.text(&s)?),
            Node::Start(s) => r.skip(&s)?,
            Node::Text(_) => {}
            Node::End => return Ok(p),
            Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
        }
    }
}

fn date(r: &mut Reader<'_>, s: &Start) -> Result<Timestamp, XmlError> {
    let t = r.text(s)?;
    Timestamp::parse_rfc3339(&t)
        .ok_or_else(|| XmlError::Invalid(format!("atom:{} {:?} is not an RFC 3339 date", s.name, t.trim())))
}

/// A16: `true`/`false`/`1`/`0`, any case.
fn boolean(name: &str, v: Option<&str>) -> Result<bool, XmlError> {
    match v.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(XmlError::Invalid(format!("sx:sync {name}={v:?} is not a boolean"))),
    }
}

fn number(what: &str, v: Option<&str>) -> Result<u32, XmlError> {
    let v = v.ok_or_else(|| XmlError::Invalid(format!("{what} is missing")))?;
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| XmlError::Invalid(format!("{what}={v:?} is not a whole number from 1")))
}

fn sync_element(r: &mut Reader<'_>, s: &Start, now: Timestamp, allow_conflicts: bool) -> Result<ParsedSync, XmlError> {
    let id = s
        .attr("id")
        .ok_or_else(|| XmlError::Invalid("sx:sync has no id".into()))?
        .to_string();
    let mut meta = SyncMeta {
        id,
        updates: number("sx:sync updates", s.attr("updates"))?,
        deleted: boolean("deleted", s.attr("deleted"))?,
        noconflicts: boolean("noconflicts", s.attr("noconflicts"))?,
        history: Vec::new(),
    };
    let mut conflicts = Vec::new();
    loop {
        let c = match r.next_node()? {
            Node::Start(c) => c,
            Node::Text(_) => continue,
            Node::End => break,
            Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
        };
        if is_sx(&c, "history") {
            let when = match c.attr("when") {
                Some(w) => Some(
                    Timestamp::parse_rfc3339(w)
                        .ok_or_else(|| XmlError::Invalid(format!("sx:history when={w:?} is not an RFC 3339 date")))?,
                ),
                None => None,
            };
            meta.history.push(History {
                sequence: number("sx:history sequence", c.attr("sequence"))?,
                when,
                by: c.attr("by").map(str::to_string),
            });
            r.skip(&c)?;
        } else if is_sx(&c, "conflicts") {
            if !allow_conflicts {
                return Err(XmlError::Invalid("sx:conflicts may not be nested".into()));
            }
            loop {
                match r.next_node()? {
                    Node::Start(x) if x.is(ATOM_NS, "entry") => {
                        let p = entry(r, now, false)?;
                        let sync = p
                            .sync
                            .ok_or_else(|| XmlError::Invalid("a conflict entry has no sx:sync".into()))?;
                        conflicts.push(Version {
                            sync: sync.meta,
                            payload: p.entry,
                        });
                    }
                    Node::Start(x) => r.skip(&x)?,
                    Node::Text(_) => {}
                    Node::End => break,
                    Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
                }
            }
        } else {
            r.skip(&c)?;
        }
    }
    Ok(ParsedSync { meta, conflicts })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);

    #[test]
    fn reads_an_entry_with_sync_history_and_conflicts() {
        let doc = br#"<?xml version="1.0" encoding="utf-8"?>
<entry xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync">
  <title type="html">A &amp; B &lt;i&gt;</title>
  <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Hi<br/>there</p></div></content>
  <updated>2008-05-01T12:05:00+02:00</updated>
  <link rel="edit" href="http://other/edit"/><link href="http://example.com/a"/>
  <sx:sync id="item&#x31;" updates="2" deleted="FALSE">
    <sx:history sequence="2" when="2008-05-01T10:05:00Z" by="B"/>
    <sx:history sequence="1" by="A"></sx:history>
    <sx:conflicts>
      <entry><title>old</title><sx:sync id="item1" updates="2"><sx:history sequence="2" by="C"/></sx:sync></entry>
    </sx:conflicts>
  </sx:sync>
</entry>"#;
        let p = parse_entry_document(doc, NOW).unwrap();
        assert_eq!(p.entry.title.value, "A & B <i>");
        assert_eq!(p.entry.title.kind, TextKind::Html);
        let c = p.entry.content.as_ref().unwrap();
        assert!(
            c.value.starts_with("<div") && c.value.contains("<br/>") && c.value.ends_with("</div>"),
            "{}",
            c.value
        );
        assert_eq!(p.entry.updated.rfc3339(), "2008-05-01T10:05:00Z");
        assert_eq!(p.entry.links.len(), 1, "edit link is publisher-specific");
        let s = p.sync.unwrap();
        assert_eq!(s.meta.id, "item1");
        assert_eq!(s.meta.updates, 2);
        assert_eq!(s.meta.history.len(), 2);
        assert_eq!(s.meta.history[1].by.as_deref(), Some("A"));
        assert_eq!(s.conflicts.len(), 1);
        assert_eq!(s.conflicts[0].payload.title.value, "old");
    }

    #[test]
    fn refuses_bombs_and_nonsense() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><entry xmlns="http://www.w3.org/2005/Atom"><title>&lol2;</title></entry>"#;
        assert_eq!(parse_entry_document(bomb, NOW).unwrap_err(), XmlError::Doctype);
        let ext = br#"<entry xmlns="http://www.w3.org/2005/Atom"><title>&xxe;</title></entry>"#;
        assert!(matches!(
            parse_entry_document(ext, NOW),
            Err(XmlError::UnknownEntity(_))
        ));
        let bad = [
            &b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>x</title>"[..],
            b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><summary>no title</summary></entry>",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"/>",
            b"<entry><title>no namespace</title></entry>",
            b"\xff\xfe<entry/>",
            b"<entry xmlns=\"http://www.w3.org/2005/Atom\" xmlns:sx=\"http://feedsync.org/2007/feedsync\"><title>t</title><sx:sync id=\"a\" updates=\"zero\"/></entry>",
            b"<entry xmlns=\"http://www.w3.org/2005/Atom\" xmlns:sx=\"http://feedsync.org/2007/feedsync\"><title>t</title><sx:sync id=\"a\" updates=\"1\" deleted=\"maybe\"/></entry>",
            b"<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title><updated>yesterday</updated></entry>",
        ];
        for doc in bad {
            assert!(
                parse_entry_document(doc, NOW).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(doc)
            );
        }
        let deep = format!(
            "<entry xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title>{}{}</entry>",
            "<x>".repeat(100),
            "</x>".repeat(100)
        );
        assert_eq!(
            parse_entry_document(deep.as_bytes(), NOW).unwrap_err(),
            XmlError::TooDeep
        );
    }

    #[test]
    fn reads_every_entry_of_a_feed() {
        let doc = br#"<feed xmlns="http://www.w3.org/2005/Atom"><title>f</title>
          <entry><title>one</title></entry><entry><title>two</title></entry></feed>"#;
        let entries = parse_feed_document(doc, NOW).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.entry.title.value.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(entries[0].entry.updated, NOW);
    }
}
