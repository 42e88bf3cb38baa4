//! OPML 1.0/2.0 in, as feed readers export their subscriptions: the feeds (`xmlUrl`) and the
//! folder each sits in (its outermost enclosing outline). Read with the strict reader (no
//! DTDs, bounded depth and size).

use super::xml::{Node, Reader, XmlError};

/// One subscription of an OPML file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub url: String,
    pub title: String,
    /// The outermost folder it is in (None at the top level).
    pub folder: Option<String>,
}

/// The subscriptions of an OPML document, in document order.
pub fn read(body: &[u8]) -> Result<Vec<Subscription>, XmlError> {
    let mut r = Reader::new(body)?;
    let root = r.root()?;
    if root.name != "opml" || !root.ns.is_empty() {
        return Err(XmlError::Invalid(format!(
            "not OPML: the root element is <{}>",
            root.name
        )));
    }
    let mut out = Vec::new();
    // The titles of the outlines open around the current one (folders), outermost first.
    let mut open: Vec<Option<String>> = Vec::new();
    let mut in_body = false;
    loop {
        match r.next_node()? {
            Node::Start(s) if s.name == "body" && open.is_empty() => in_body = true,
            Node::Start(s) if s.name == "outline" && in_body => {
                let title = s.attr("title").or(s.attr("text")).unwrap_or("").trim().to_string();
                match s.attr("xmlUrl").map(str::trim).filter(|u| !u.is_empty()) {
                    Some(url) => {
                        out.push(Subscription {
                            url: url.to_string(),
                            title,
                            folder: open.iter().flatten().next().cloned(),
                        });
                        open.push(None);
                    }
                    None => open.push(Some(title).filter(|t| !t.is_empty())),
                }
            }
            Node::Start(s) => r.skip(&s)?,
            Node::End if !open.is_empty() => {
                open.pop();
            }
            Node::End => {
                if in_body {
                    in_body = false;
                } else {
                    break;
                }
            }
            Node::Text(_) => {}
            Node::Eof => return Err(XmlError::Syntax("the document ends inside <opml>".into())),
        }
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_and_their_folders_are_read() {
        let doc = br#"<?xml version="1.0"?><opml version="2.0"><head><title>x</title></head><body>
            <outline text="Tech" title="Tech"><outline text="Inner"><outline type="rss" text="A" xmlUrl="https://a.example/feed"/></outline>
            <outline type="rss" title="B" xmlUrl=" https://b.example/rss "/></outline>
            <outline type="rss" text="C &amp; D" xmlUrl="https://c.example/atom"/></body></opml>"#;
        let subs = read(doc).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = subs
            .iter()
            .map(|s| (s.url.as_str(), s.title.as_str(), s.folder.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("https://a.example/feed", "A", Some("Tech")),
                ("https://b.example/rss", "B", Some("Tech")),
                ("https://c.example/atom", "C & D", None)
            ]
        );
        for bad in [
            &b"<html/>"[..],
            b"<opml><body><outline>",
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><opml/>",
            b"\xff",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
    }
}
