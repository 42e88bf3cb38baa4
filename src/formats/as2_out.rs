//! Writes Activity Streams 2.0 (JSON-LD, `application/activity+json`): a feed as an
//! `OrderedCollection` whose pages are `OrderedCollectionPage`s, each item a whole activity
//! with its `@context`. feedmesh's own terms (`why`, `Message`, `TextMessage`, `Call`) are
//! defined in the context, so a JSON-LD processor keeps every one.

use serde_json::{Map, Value, json};

use super::{EntryView, FeedView};

/// The media type served (and `application/ld+json; profile="…activitystreams"`).
pub const CONTENT_TYPE: &str = "application/activity+json; charset=utf-8";

/// The context every document and item carries.
pub fn context() -> Value {
    json!([
        "https://www.w3.org/ns/activitystreams",
        {
            "fm": "urn:feedmesh:2026#",
            "why": "fm:why",
            "identity": {"@id": "fm:identity", "@type": "@id"},
            "role": "fm:role",
            "contact": "fm:contact",
            "Message": "fm:Message",
            "TextMessage": "fm:TextMessage",
            "Call": "fm:Call"
        }
    ])
}

/// One activity, whole.
pub fn activity(view: &FeedView<'_>, e: &EntryView<'_>) -> Value {
    let p = e.payload();
    let a = e.activity.clone().unwrap_or_default();
    let generator = json!({
        "type": "Application",
        "name": e.author.clone().unwrap_or_else(|| view.author.clone()),
    });
    let actor = match &a.actor {
        Some(id) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("Person"));
            o.insert("id".into(), json!(id));
            if let Some(name) = p.authors.first().map(|x| x.name.as_str()).filter(|n| !n.is_empty()) {
                o.insert("name".into(), json!(name));
            }
            Value::Object(o)
        }
        None => generator.clone(),
    };
    let mut object = Map::new();
    object.insert("id".into(), json!(e.fallback_link));
    object.insert(
        "type".into(),
        json!(if a.object_type.is_empty() {
            "Note"
        } else {
            &a.object_type
        }),
    );
    object.insert("name".into(), json!(p.title.value));
    if let Some((text, html)) = p.best_text() {
        object.insert("content".into(), json!(text));
        object.insert("mediaType".into(), json!(if html { "text/html" } else { "text/plain" }));
    }
    if let Some(s) = &p.summary {
        object.insert("summary".into(), json!(s.value));
    }
    object.insert("url".into(), json!(e.link()));
    object.insert("updated".into(), json!(p.updated.rfc3339()));
    if let Some(t) = p.published {
        object.insert("published".into(), json!(t.rfc3339()));
    }
    if let (Some(m), Some(url)) = (&p.media, &e.media_url) {
        object.insert(
            "attachment".into(),
            json!([{"type": "Document", "url": url, "mediaType": m.media_type, "name": m.slug.clone().unwrap_or_default()}]),
        );
    }
    let mut act = Map::new();
    act.insert("@context".into(), context());
    act.insert("id".into(), json!(e.id));
    act.insert("type".into(), json!(if a.verb.is_empty() { "Create" } else { &a.verb }));
    act.insert("actor".into(), actor);
    act.insert("object".into(), Value::Object(object));
    if let Some((name, url)) = &a.target {
        act.insert("target".into(), json!({"type": "Collection", "id": url, "name": name}));
    }
    if let Some(t) = a.published {
        act.insert("published".into(), json!(t.rfc3339()));
    }
    act.insert("generator".into(), generator);
    if !a.to.is_empty() {
        act.insert("to".into(), json!(a.to));
    }
    if !a.why.is_empty() {
        let why: Vec<Value> = a
            .why
            .iter()
            .map(|w| json!({"identity": w.identity, "role": w.role.as_str(), "contact": w.contact}))
            .collect();
        act.insert("why".into(), Value::Array(why));
    }
    Value::Object(act)
}

/// Links of a page: its id, the collection it is part of, and its neighbours.
pub struct PageLinks {
    pub id: String,
    pub part_of: String,
    /// Older activities.
    pub next: Option<String>,
    /// Newer activities.
    pub prev: Option<String>,
}

fn page_value(view: &FeedView<'_>, links: &PageLinks, with_context: bool) -> Value {
    let mut o = Map::new();
    if with_context {
        o.insert("@context".into(), context());
    }
    o.insert("id".into(), json!(links.id));
    o.insert("type".into(), json!("OrderedCollectionPage"));
    o.insert("partOf".into(), json!(links.part_of));
    if let Some(n) = &links.next {
        o.insert("next".into(), json!(n));
    }
    if let Some(p) = &links.prev {
        o.insert("prev".into(), json!(p));
    }
    let items: Vec<Value> = view.entries.iter().map(|e| activity(view, e)).collect();
    o.insert("orderedItems".into(), Value::Array(items));
    Value::Object(o)
}

/// One page of the feed.
pub fn page(view: &FeedView<'_>, links: &PageLinks) -> String {
    serde_json::to_string_pretty(&page_value(view, links, true)).unwrap_or_default()
}

/// The feed as a collection, its first page inside.
pub fn collection(view: &FeedView<'_>, first: &PageLinks) -> String {
    let doc = json!({
        "@context": context(),
        "id": view.id,
        "type": "OrderedCollection",
        "name": view.title,
        "updated": view.updated.rfc3339(),
        "first": page_value(view, first, false),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
