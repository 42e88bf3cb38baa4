//! A strict, bounded pull reader over quick-xml's namespace-aware reader, and XML escaping.
//! Refuses DTDs (so no entity expansion, no external entities: no XML bombs), resolves only
//! the five predefined and character entities, requires UTF-8, and caps depth and size.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const ATOM_NS: &str = "http://www.w3.org/2005/Atom";
pub const SX_NS: &str = "http://feedsync.org/2007/feedsync";
/// feedmesh's own extension elements (`fm:file`: the blob an item's payload is).
pub const FM_NS: &str = "urn:feedmesh:2026";
pub const APP_NS: &str = "http://www.w3.org/2007/app";
/// SSE 0.93, accepted on input only.
pub const SSE_093_NS: &str = "http://www.microsoft.com/schemas/sse";

const MAX_DEPTH: usize = 64;
const MAX_ELEMENTS: usize = 200_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("a DOCTYPE is not allowed")]
    Doctype,
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("malformed XML: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<quick_xml::Error> for XmlError {
    fn from(e: quick_xml::Error) -> Self {
        XmlError::Syntax(e.to_string())
    }
}

/// One element start: namespace URI (empty if none), local name, attributes (unprefixed
/// local names; prefixed attributes keep their qualified name).
#[derive(Debug)]
pub struct Start {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub empty: bool,
}

impl Start {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub enum Node {
    Start(Start),
    End,
    Text(String),
    Eof,
}

pub struct Reader<'a> {
    input: &'a str,
    inner: NsReader<&'a [u8]>,
    depth: usize,
    elements: usize,
    /// An `Empty` element yields a Start and then a synthetic End.
    pending_end: bool,
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Result<Self, XmlError> {
        let input = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
        let input = input.strip_prefix('\u{feff}').unwrap_or(input);
        let mut inner = NsReader::from_str(input);
        inner.config_mut().trim_text(false);
        inner.config_mut().check_end_names = true;
        Ok(Reader {
            input,
            inner,
            depth: 0,
            elements: 0,
            pending_end: false,
        })
    }

    pub fn next_node(&mut self) -> Result<Node, XmlError> {
        if self.pending_end {
            self.pending_end = false;
            self.depth -= 1;
            return Ok(Node::End);
        }
        let (ns, event) = self.inner.read_resolved_event()?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(XmlError::Syntax(format!(
                    "unknown namespace prefix {}",
                    String::from_utf8_lossy(&p)
                )));
            }
        };
        self.convert(ns, event)
    }

    fn convert(&mut self, ns: String, event: Event<'a>) -> Result<Node, XmlError> {
        let (start, empty) = match event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                self.depth = self.depth.saturating_sub(1);
                return Ok(Node::End);
            }
            Event::Text(t) => {
                return Ok(Node::Text(
                    t.xml10_content()
                        .map_err(|e| XmlError::Syntax(e.to_string()))?
                        .into_owned(),
                ));
            }
            Event::CData(t) => {
                return Ok(Node::Text(
                    t.decode().map_err(|e| XmlError::Syntax(e.to_string()))?.into_owned(),
                ));
            }
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    let c = r
                        .resolve_char_ref()?
                        .ok_or_else(|| XmlError::Syntax("bad character reference".into()))?;
                    return Ok(Node::Text(c.to_string()));
                }
                let name = r.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                return match quick_xml::escape::resolve_predefined_entity(&name) {
                    Some(s) => Ok(Node::Text(s.to_string())),
                    None => Err(XmlError::UnknownEntity(name.chars().take(40).collect())),
                };
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => return Ok(Node::Eof),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => return self.next_node(),
        };
        self.depth += 1;
        self.elements += 1;
        if self.depth > MAX_DEPTH {
            return Err(XmlError::TooDeep);
        }
        if self.elements > MAX_ELEMENTS {
            return Err(XmlError::TooManyElements);
        }
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        let mut attrs = Vec::new();
        for a in start.attributes() {
            let a = a.map_err(|e| XmlError::Syntax(e.to_string()))?;
            let key = a.key.as_ref();
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                continue;
            }
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| XmlError::Syntax(e.to_string()))?;
            attrs.push((String::from_utf8_lossy(key).into_owned(), value.into_owned()));
        }
        if empty {
            self.pending_end = true;
        }
        Ok(Node::Start(Start { ns, name, attrs, empty }))
    }

    /// The first element of the document.
    pub fn root(&mut self) -> Result<Start, XmlError> {
        loop {
            match self.next_node()? {
                Node::Start(s) => return Ok(s),
                Node::Text(t) if t.trim().is_empty() => continue,
                Node::Text(_) => {
                    return Err(XmlError::Syntax("text before the root element".into()));
                }
                Node::End | Node::Eof => return Err(XmlError::Syntax("no root element".into())),
            }
        }
    }

    /// After the root's end: only whitespace may follow.
    pub fn finish(&mut self) -> Result<(), XmlError> {
        loop {
            match self.next_node()? {
                Node::Eof => return Ok(()),
                Node::Text(t) if t.trim().is_empty() => continue,
                _ => return Err(XmlError::Syntax("content after the root element".into())),
            }
        }
    }

    /// Skips the rest of the element just started.
    pub fn skip(&mut self, start: &Start) -> Result<(), XmlError> {
        let mut level = 1usize;
        let _ = start;
        while level > 0 {
            match self.next_node()? {
                Node::Start(_) => level += 1,
                Node::End => level -= 1,
                Node::Text(_) => {}
                Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
            }
        }
        Ok(())
    }

    /// The text of the element just started; child elements are an error.
    pub fn text(&mut self, start: &Start) -> Result<String, XmlError> {
        let mut out = String::new();
        loop {
            match self.next_node()? {
                Node::Text(t) => out.push_str(&t),
                Node::End => return Ok(out),
                Node::Start(s) => {
                    return Err(XmlError::Invalid(format!(
                        "<{}> may not contain the element <{}>",
                        start.name, s.name
                    )));
                }
                Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
            }
        }
    }

    /// The raw inner markup of the element just started (for xhtml content).
    pub fn raw_inner(&mut self, start: &Start) -> Result<String, XmlError> {
        if start.empty {
            self.next_node()?; // the synthetic End
            return Ok(String::new());
        }
        let begin = self.inner.buffer_position() as usize;
        let mut level = 1usize;
        let mut end = begin;
        while level > 0 {
            let before = self.inner.buffer_position() as usize;
            match self.next_node()? {
                Node::Start(_) => level += 1,
                Node::End => {
                    level -= 1;
                    if level == 0 {
                        end = before;
                    }
                }
                Node::Text(_) => {}
                Node::Eof => return Err(XmlError::Syntax("unexpected end of document".into())),
            }
        }
        Ok(self.input.get(begin..end).unwrap_or_default().to_string())
    }
}

/// Escapes text for element content and attribute values.
pub fn esc(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Removes characters XML 1.0 cannot carry (controls other than tab, CR, LF).
pub fn xml_safe(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if s.chars().any(bad) {
        Cow::Owned(s.chars().filter(|&c| !bad(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}
