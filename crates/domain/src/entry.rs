//! The shared payload of an item (FeedSync Implementation Note 1): what every endpoint
//! publishes alike. Publisher-specific parts (self/edit links, feed-level data) are not here.

use super::feedsync::Item;
use super::time::Timestamp;

/// An Atom text construct: `text`, `html` or `xhtml` (for xhtml, `value` is the raw `<div>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Text {
    pub kind: TextKind,
    pub value: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextKind {
    #[default]
    Text,
    Html,
    Xhtml,
}

impl TextKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TextKind::Text => "text",
            TextKind::Html => "html",
            TextKind::Xhtml => "xhtml",
        }
    }
}

impl Text {
    pub fn plain(value: impl Into<String>) -> Self {
        Text {
            kind: TextKind::Text,
            value: value.into(),
        }
    }
}

/// `atom:content`: inline (`kind` is text/html/xhtml or a media type) or out of line (`src`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Category {
    pub term: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// A file held by the hub: content-addressed by SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Media {
    pub sha256: String,
    pub size: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
}

/// Longest media type kept (RFC 6838 allows 127 characters a side; parameters come on top).
pub const MAX_MEDIA_TYPE: usize = 255;

/// A media type as a file's type: `type/subtype` with optional parameters, printable ASCII,
/// at most [`MAX_MEDIA_TYPE`] bytes (it is echoed in a `Content-Type` header).
pub fn parse_media_type(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() > MAX_MEDIA_TYPE {
        return Err(format!(
            "a media type has at most {MAX_MEDIA_TYPE} characters, this one {}",
            s.len()
        ));
    }
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let well_formed = essence.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
        && s.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
    if !well_formed {
        return Err(format!(
            "{:?} is not a media type (type/subtype)",
            s.chars().take(60).collect::<String>()
        ));
    }
    Ok(s.to_string())
}

/// The shared data of an Atom entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub title: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<Person>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    /// Links other than the publisher-specific `self`, `edit` and `edit-media`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Timestamp>,
    pub updated: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// `activity:verb` (Atom Activity Streams 1.0), as the entry gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// `activity:object-type`, as the entry gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
}

impl Entry {
    /// Plain text of the summary or content, for formats that carry one description.
    pub fn best_text(&self) -> Option<(&str, bool)> {
        if let Some(c) = &self.content
            && c.src.is_none()
        {
            let html = c.kind == "html" || c.kind == "xhtml";
            if c.kind == "text" || html {
                return Some((c.value.as_str(), html));
            }
        }
        self.summary
            .as_ref()
            .map(|s| (s.value.as_str(), s.kind != TextKind::Text))
    }

    /// The first `alternate` link (a link with no rel is alternate).
    pub fn alternate(&self) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
            .map(|l| l.href.as_str())
    }
}

/// What the store keeps for one item: the FeedSync item with entry payloads.
pub type StoredItem = Item<Entry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_checked_and_capped() {
        assert_eq!(
            parse_media_type(" text/plain; charset=utf-8 ").unwrap(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            parse_media_type("application/vnd.oasis.opendocument.text").unwrap(),
            "application/vnd.oasis.opendocument.text"
        );
        for bad in [
            "",
            "text",
            "/plain",
            "text/",
            "te xt/plain",
            "text/plain\r\nX: y",
            "téxt/plain",
        ] {
            assert!(parse_media_type(bad).is_err(), "{bad:?}");
        }
        let long = format!("application/{}", "x".repeat(300));
        assert!(parse_media_type(&long).unwrap_err().contains("at most 255"));
    }
}
