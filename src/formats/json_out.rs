//! Writes JSON Feed 1.1 (https://jsonfeed.org/version/1.1).

use serde::Serialize;

use super::FeedView;

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: &'a str,
    feed_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_url: Option<&'a str>,
    authors: Vec<Author<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<Hub<'a>>,
    items: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
struct Hub<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
}

#[derive(Serialize)]
struct Author<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    id: &'a str,
    url: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_html: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_published: Option<String>,
    date_modified: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authors: Vec<Author<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment<'a>>,
    /// JSON Feed extension: the activity, and why the item is in this feed.
    #[serde(rename = "_feedmesh", skip_serializing_if = "Option::is_none")]
    feedmesh: Option<Extension<'a>>,
}

#[derive(Serialize)]
struct Extension<'a> {
    about: &'static str,
    activity: &'a str,
    object_type: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    why: Vec<WhyJson<'a>>,
}

#[derive(Serialize)]
struct WhyJson<'a> {
    identity: &'a str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<&'a str>,
}

#[derive(Serialize)]
struct Attachment<'a> {
    url: &'a str,
    mime_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_in_bytes: Option<u64>,
}

pub fn feed(view: &FeedView<'_>) -> String {
    let items = view
        .entries
        .iter()
        .map(|e| {
            let p = e.payload();
            let (mut content_html, mut content_text) = (None, None);
            match p.best_text() {
                Some((t, true)) => content_html = Some(t),
                Some((t, false)) => content_text = Some(t),
                None => content_text = Some(p.title.value.as_str()),
            }
            JsonItem {
                id: &e.id,
                url: e.link(),
                title: &p.title.value,
                content_html,
                content_text,
                summary: p.summary.as_ref().map(|s| s.value.as_str()),
                date_published: p.published.map(|t| t.rfc3339()),
                date_modified: p.updated.rfc3339(),
                authors: p.authors.iter().map(|a| Author { name: &a.name }).collect(),
                tags: p
                    .categories
                    .iter()
                    .map(|c| c.term.as_str())
                    .chain(e.tags.iter().map(String::as_str))
                    .collect(),
                attachments: match (&p.media, &e.media_url) {
                    (Some(m), Some(url)) => vec![Attachment {
                        url,
                        mime_type: &m.media_type,
                        title: None,
                        size_in_bytes: Some(m.size),
                    }],
                    _ => Vec::new(),
                }
                .into_iter()
                // An entry's enclosures (an e-mail's attachments) too.
                .chain(
                    p.links
                        .iter()
                        .filter(|l| l.rel.as_deref() == Some("enclosure"))
                        .map(|l| Attachment {
                            url: &l.href,
                            mime_type: l.media_type.as_deref().unwrap_or("application/octet-stream"),
                            title: l.title.as_deref(),
                            size_in_bytes: l.length,
                        }),
                )
                .collect(),
                feedmesh: e.activity.as_ref().map(|a| Extension {
                    about: "https://github.com/feedmesh/feedmesh#activities",
                    activity: &a.verb,
                    object_type: &a.object_type,
                    why: a
                        .why
                        .iter()
                        .map(|w| WhyJson {
                            identity: &w.identity,
                            role: w.role.as_str(),
                            contact: w.contact.as_deref(),
                        })
                        .collect(),
                }),
            }
        })
        .collect();
    let feed = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: &view.title,
        home_page_url: &view.alternate_url,
        feed_url: &view.self_url,
        next_url: view.next_url.as_deref(),
        authors: vec![Author { name: &view.author }],
        hubs: view.hub_url.iter().map(|url| Hub { kind: "WebSub", url }).collect(),
        items,
    };
    serde_json::to_string_pretty(&feed).unwrap_or_default()
}
