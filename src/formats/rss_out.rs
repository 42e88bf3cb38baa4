//! Writes RSS 2.0 feeds for readers that want RSS; the same entries as the Atom feed.

use std::fmt::Write as _;

use super::FeedView;
use super::xml::{esc, xml_safe};

pub fn feed(view: &FeedView<'_>) -> String {
    let mut o = String::with_capacity(1024 + view.entries.len() * 1024);
    o.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n<channel>\n");
    let _ = writeln!(o, "<title>{}</title>", esc(&xml_safe(&view.title)));
    let _ = writeln!(o, "<link>{}</link>", esc(&view.alternate_url));
    let _ = writeln!(o, "<description>{}</description>", esc(&xml_safe(&view.title)));
    let _ = writeln!(
        o,
        "<atom:link rel=\"self\" type=\"application/rss+xml\" href=\"{}\"/>",
        esc(&view.self_url)
    );
    if let Some(hub) = &view.hub_url {
        let _ = writeln!(o, "<atom:link rel=\"hub\" href=\"{}\"/>", esc(hub));
    }
    if let Some(next) = &view.next_url {
        let _ = writeln!(
            o,
            "<atom:link rel=\"next\" type=\"application/rss+xml\" href=\"{}\"/>",
            esc(next)
        );
    }
    let _ = writeln!(o, "<lastBuildDate>{}</lastBuildDate>", view.updated.rfc2822());
    o.push_str("<generator>feedmesh</generator>\n");
    for e in &view.entries {
        let p = e.payload();
        o.push_str("<item>\n");
        let _ = writeln!(o, "<title>{}</title>", esc(&xml_safe(&p.title.value)));
        let _ = writeln!(o, "<link>{}</link>", esc(&xml_safe(e.link())));
        let _ = writeln!(o, "<guid isPermaLink=\"false\">{}</guid>", esc(&e.id));
        let _ = writeln!(o, "<pubDate>{}</pubDate>", p.updated.rfc2822());
        if let Some(a) = p.authors.first() {
            // RSS wants an e-mail address here; the name goes in parentheses per convention.
            let addr = a.email.as_deref().unwrap_or("nobody@invalid");
            let _ = writeln!(
                o,
                "<author>{} ({})</author>",
                esc(&xml_safe(addr)),
                esc(&xml_safe(&a.name))
            );
        }
        if let Some((text, html)) = p.best_text() {
            let body = if html { text.to_string() } else { esc(text).into_owned() };
            let _ = writeln!(o, "<description>{}</description>", esc(&xml_safe(&body)));
        }
        for c in p
            .categories
            .iter()
            .map(|c| c.term.as_str())
            .chain(e.tags.iter().map(String::as_str))
        {
            let _ = writeln!(o, "<category>{}</category>", esc(&xml_safe(c)));
        }
        if let (Some(m), Some(url)) = (&p.media, &e.media_url) {
            let _ = writeln!(
                o,
                "<enclosure url=\"{}\" length=\"{}\" type=\"{}\"/>",
                esc(url),
                m.size,
                esc(&m.media_type)
            );
        }
        o.push_str("</item>\n");
    }
    o.push_str("</channel>\n</rss>\n");
    o
}
