//! Activities as a person reads them in the web app: one line each (who did what, on which
//! channel, when, why it is here), in pages that hold their place by sequence number, so an
//! activity arriving meanwhile never shifts what the next page shows.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Core;
use super::timelines::{self, Resolved};
use crate::domain::activity::{Change, Role, channel, facts};
use crate::domain::time::Timestamp;
use crate::error::Result;
use crate::formats::Format;
use crate::store::{ChangeRecord, Page, Principal};

/// One activity, ready to show (every string still to be escaped by the page).
#[derive(Clone, Debug)]
pub struct Line {
    pub seq: u64,
    pub at: Timestamp,
    /// AS2 activity and object types: Create, Note.
    pub verb: String,
    pub object_type: String,
    /// email, post, text, call or file; "device" for what a device wrote itself.
    pub channel: &'static str,
    /// Who did it: a contact's name when the actor is one, else what the entry said.
    pub actor: String,
    pub actor_contact: Option<String>,
    pub title: String,
    /// The content: plain text, or HTML already sanitised (`html` says which).
    pub body: Option<String>,
    pub html: bool,
    pub collection: String,
    pub sync_id: String,
    pub endpoint: Option<String>,
    /// The original on the service that sent it (a toot's URL), when it gave one.
    pub source: Option<String>,
    /// Why it is in this timeline: (identity, role, contact id, contact name).
    pub why: Vec<(String, Role, Option<String>, String)>,
}

/// A page of lines, newest first, and the cursor of the next (older) page.
pub struct Lines {
    pub lines: Vec<Line>,
    pub older: Option<u64>,
}

/// Items per page of the web app.
pub const PAGE: u32 = 50;

/// A page of the activities `r` selects, below `before` (from the top when None).
pub async fn page(core: &Core, user_id: i64, r: &Resolved, before: Option<u64>) -> Result<Lines> {
    let (changes, why) = timelines::page(core, user_id, r, Page::Before(before), PAGE + 1).await?;
    let more = changes.len() > PAGE as usize;
    let changes = &changes[..changes.len().min(PAGE as usize)];
    let mut names: HashMap<String, String> = HashMap::new();
    let mut lines = Vec::with_capacity(changes.len());
    for c in changes {
        let reasons = why.get(&c.seq).cloned().unwrap_or_default();
        let mut line_why = Vec::with_capacity(reasons.len());
        for w in reasons {
            let name = match &w.contact {
                Some(id) => contact_name(core, user_id, id, &mut names).await?,
                None => String::new(),
            };
            line_why.push((w.identity, w.role, w.contact, name));
        }
        lines.push(line(core, c, line_why));
    }
    // The actor's contact, where a link says who it is.
    for l in &mut lines {
        if let Some((_, _, Some(id), name)) = l.why.iter().find(|w| w.1 == Role::Actor) {
            l.actor_contact = Some(id.clone());
            if !name.is_empty() {
                l.actor = name.clone();
            }
        }
    }
    let older = more.then(|| changes.last().map(|c| c.seq)).flatten();
    Ok(Lines { lines, older })
}

/// A page of the user's whole stream.
pub async fn stream(core: &Core, who: &Principal, before: Option<u64>) -> Result<Lines> {
    let r = timelines::stream(core, who.user_id, &who.user, None, Format::Atom).await?;
    page(core, who.user_id, &r, before).await
}

/// The user's head each time it moves on (from any process sharing the database), until
/// the receiver is dropped: what live pages listen to.
pub fn heads(core: Arc<Core>, user_id: i64) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut changed = core.mesh.changed.subscribe();
        let Ok(mut last) = core.mesh.store.user_head(user_id).await else {
            return;
        };
        loop {
            tokio::select! {
                moved = changed.changed() => if moved.is_err() { return },
                _ = tx.closed() => return,
            }
            let Ok(head) = core.mesh.store.user_head(user_id).await else {
                continue;
            };
            if head > last {
                last = head;
                // A full channel means the page has not read the last one: it will see this.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(head) {
                    return;
                }
            }
        }
    });
    rx
}

async fn contact_name(core: &Core, user_id: i64, id: &str, names: &mut HashMap<String, String>) -> Result<String> {
    if let Some(n) = names.get(id) {
        return Ok(n.clone());
    }
    let name = core
        .mesh
        .store
        .contact(user_id, id)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    names.insert(id.to_string(), name.clone());
    Ok(name)
}

pub(crate) fn line(core: &Core, c: &ChangeRecord, why: Vec<(String, Role, Option<String>, String)>) -> Line {
    let entry = &c.version.payload;
    let change = match c.verb.as_str() {
        "Delete" => Change::Delete,
        "Update" => Change::Update,
        _ => Change::Create,
    };
    let f = facts(entry, change, core.mesh.region);
    let actor = f.parties.iter().find(|p| p.role == Role::Actor);
    let actor = match actor {
        Some(p) if !p.name.is_empty() => p.name.clone(),
        Some(p) => p.identity.to_string(),
        None => c.endpoint.clone().unwrap_or_default(),
    };
    let from_device = entry.object_type.is_none() && entry.verb.is_none() && f.parties.is_empty();
    let (body, html) = match entry.best_text() {
        Some((text, true)) => (Some(sanitise(text)), true),
        Some((text, false)) => (Some(text.to_string()), false),
        None => (None, false),
    };
    Line {
        seq: c.seq,
        at: c.at,
        verb: c.verb.clone(),
        object_type: c.object_type.clone(),
        channel: if from_device && channel(&c.object_type) == "post" {
            "device"
        } else {
            channel(&c.object_type)
        },
        actor,
        actor_contact: None,
        title: entry.title.value.clone(),
        body: body.filter(|b| !b.trim().is_empty()),
        html,
        collection: c.collection.clone(),
        sync_id: c.sync_id.clone(),
        endpoint: c.endpoint.clone(),
        source: entry.alternate().map(str::to_string),
        why,
    }
}

/// HTML a service sent, made safe to show: no scripts, no event handlers, no styles, links
/// opening without access to the page.
/// The text of some HTML, without its tags (for a title made of a post's first words).
pub fn plain(html: &str) -> String {
    let text = ammonia::Builder::empty().clean(html).to_string();
    let text = quick_xml::escape::unescape(&text)
        .map(|t| t.into_owned())
        .unwrap_or(text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn sanitise(html: &str) -> String {
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        // A relative URL would point at this hub, with the reader's cookies: dropped.
        .url_relative(ammonia::UrlRelative::Deny)
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitised_html_keeps_text_and_drops_what_runs() {
        let out = sanitise(
            r#"<p onclick="x()">hi <b>there</b><script>alert(1)</script><a href="javascript:alert(2)">a</a><img src=x onerror=alert(3)></p>"#,
        );
        assert!(out.contains("hi <b>there</b>"), "{out}");
        for bad in ["<script", "onclick", "javascript:", "onerror"] {
            assert!(!out.contains(bad), "{bad} in {out}");
        }
    }
}
