//! OPML 2.0 out (the feeds a user can read, for any reader to import), and OPML 1.0/2.0
//! in, as feed readers export their subscriptions: the feeds (`xmlUrl`) and the
//! folder each sits in (its outermost enclosing outline). Read with the strict reader (no
//! DTDs, bounded depth and size).

use super::xml::{Node, Reader, XmlError, esc, xml_safe};

/// An OPML 2.0 document: one folder outline per group, one `rss` outline per feed
/// (title, feed URL), in the order given.
pub fn write(title: &str, created: &str, groups: &[(String, Vec<(String, String)>)]) -> String {
    let t = |s: &str| esc(&xml_safe(s)).into_owned();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<opml version=\"2.0\">\n<head>\n");
    out.push_str(&format!(
        "<title>{}</title>\n<dateCreated>{}</dateCreated>\n</head>\n<body>\n",
        t(title),
        t(created)
    ));
    for (group, feeds) in groups.iter().filter(|(_, f)| !f.is_empty()) {
        out.push_str(&format!("<outline text=\"{0}\" title=\"{0}\">\n", t(group)));
        for (title, url) in feeds {
            out.push_str(&format!(
                "<outline type=\"rss\" text=\"{0}\" title=\"{0}\" xmlUrl=\"{1}\"/>\n",
                t(title),
                t(url)
            ));
        }
        out.push_str("</outline>\n");
    }
    out.push_str("</body>\n</opml>\n");
    out
}

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
    fn what_is_written_reads_back() {
        let groups = vec![
            (
                "Stream".to_string(),
                vec![(
                    "Everything <&>".to_string(),
                    "https://h/u/a/stream.atom?key=fk_1&x=\"".to_string(),
                )],
            ),
            ("Empty".to_string(), vec![]),
        ];
        let doc = write("a's feeds", "Wed, 02 Dec 2026 00:00:00 GMT", &groups);
        let subs = read(doc.as_bytes()).unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].url, "https://h/u/a/stream.atom?key=fk_1&x=\"");
        assert_eq!(subs[0].title, "Everything <&>");
        assert_eq!(subs[0].folder.as_deref(), Some("Stream"));
        assert!(!doc.contains("Empty"));
    }

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
