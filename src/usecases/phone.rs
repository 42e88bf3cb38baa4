//! The phone: texts and calls into the user's mesh, so they land in the contacts' timelines
//! by the numbers they involve. A phone app POSTs each as it happens (`POST /api/activities`,
//! AS2 JSON or an Atom entry, with its device token); `feedmesh phone import` reads the
//! backups Android users have ("SMS Backup & Restore" XML). Both write into the collection
//! `phone` (made on first use), numbers as `tel:` identities in E.164.
//!
//! The activities: a text is a `TextMessage` (AS1 object type `text-message`), a call a `Call`
//! (`call`) with its direction and duration as categories (schemes `DIRECTION` and
//! `DURATION`). Received ones are by the other party; sent ones by the user, to the other.

use serde_json::Value;

use super::Core;
use crate::domain::entry::{Category, Content, Entry, Link, Person, Text};
use crate::domain::identity::{Identity, Region};
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::sms_backup::{self, Record};
use crate::store::Principal;

/// The collection texts and calls go into.
pub const PHONE: &str = "phone";

/// The category scheme of a call's direction (`incoming`, `outgoing`, `missed`, `voicemail`,
/// `rejected`, `blocked`, `answered-elsewhere`) and of its duration in seconds.
pub const DIRECTION: &str = "https://feedmesh.org/ns/call-direction";
pub const DURATION: &str = "https://feedmesh.org/ns/call-duration";

/// A party of a text or call: a `tel:` identity when the number is one, else just a name
/// (a short code, an alphanumeric sender).
fn party(number: &str, name: Option<&str>, region: Region) -> Person {
    let tel = Identity::parse(&format!("tel:{}", number.trim()), region)
        .ok()
        .map(Identity::into_string);
    let shown = name
        .map(str::to_string)
        .or_else(|| tel.as_deref().map(|t| t.trim_start_matches("tel:").to_string()))
        .unwrap_or_else(|| number.trim().to_string());
    Person {
        name: shown,
        email: None,
        uri: tel,
    }
}

fn mentioned(p: &Person) -> Option<Link> {
    p.uri.as_ref().map(|u| Link {
        href: u.clone(),
        rel: Some("mentioned".into()),
        ..Link::default()
    })
}

fn me(who: &Principal) -> Person {
    Person {
        name: who.user.clone(),
        email: None,
        uri: None,
    }
}

fn short(t: &str, n: usize) -> String {
    let one_line = t.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(n).collect();
    if one_line.chars().count() > n {
        out.push('…');
    }
    out
}

/// How long a call was, for people.
fn lasted(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}

/// A text: by `from` (received) or by the user to `to` (sent).
fn text_entry(who: &Principal, received: bool, other: Vec<Person>, body: &str, at: Timestamp, extra: &str) -> Entry {
    let names: Vec<&str> = other.iter().map(|p| p.name.as_str()).collect();
    let title = match received {
        true => format!("Text from {}: {}{extra}", names.first().unwrap_or(&""), short(body, 80)),
        false => format!("Text to {}: {}{extra}", names.join(", "), short(body, 80)),
    };
    let (authors, to) = match received {
        true => {
            let mut o = other.into_iter();
            (o.next().into_iter().collect(), o.collect::<Vec<_>>())
        }
        false => (vec![me(who)], other),
    };
    Entry {
        title: Text::plain(title),
        content: Some(Content {
            kind: "text".into(),
            value: body.to_string(),
            src: None,
        }),
        links: to.iter().filter_map(mentioned).collect(),
        authors,
        published: Some(at),
        updated: at,
        verb: Some("post".into()),
        object_type: Some("text-message".into()),
        ..Entry::default()
    }
}

/// A call with `other`, its direction and duration.
fn call_entry(who: &Principal, other: Person, direction: &str, seconds: i64, at: Timestamp) -> Entry {
    let n = other.name.clone();
    let title = match direction {
        "outgoing" => format!("Call to {n} ({})", lasted(seconds)),
        "missed" => format!("Missed call from {n}"),
        "voicemail" => format!("Voicemail from {n}"),
        "rejected" => format!("Rejected call from {n}"),
        "blocked" => format!("Blocked call from {n}"),
        _ => format!("Call from {n} ({})", lasted(seconds)),
    };
    let (authors, links) = match direction {
        "outgoing" => (vec![me(who)], mentioned(&other).into_iter().collect()),
        _ => (vec![other], Vec::new()),
    };
    Entry {
        title: Text::plain(title),
        content: Some(Content {
            kind: "text".into(),
            value: format!("{direction} call, {seconds} s"),
            src: None,
        }),
        authors,
        links,
        categories: vec![
            Category {
                term: direction.to_string(),
                scheme: Some(DIRECTION.into()),
                ..Category::default()
            },
            Category {
                term: seconds.to_string(),
                scheme: Some(DURATION.into()),
                ..Category::default()
            },
        ],
        published: Some(at),
        updated: at,
        verb: Some("post".into()),
        object_type: Some("call".into()),
        ..Entry::default()
    }
}

fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_unix(ms.div_euclid(1000))
}

/// A stable id from what makes a record itself, so importing it again changes nothing.
fn record_id(parts: &[&str]) -> String {
    format!("phone-{}", &crate::secrets::hash(&parts.join("\u{1f}"))[..32])
}

/// A backup record as its item: (sync id, entry).
fn from_record(who: &Principal, r: Record, region: Region) -> (String, Entry) {
    match r {
        Record::Sms {
            address,
            date,
            kind,
            body,
            contact_name,
        } => {
            let id = record_id(&["sms", &address, &date.to_string(), &kind.to_string(), &body]);
            let other = party(&address, contact_name.as_deref(), region);
            (id, text_entry(who, kind == 1, vec![other], &body, at_ms(date), ""))
        }
        Record::Mms {
            date,
            msg_box,
            addrs,
            text,
            attachments,
            m_id,
            contact_name,
        } => {
            let id = record_id(&["mms", &addrs[0].0, &date.to_string(), &msg_box.to_string(), &m_id]);
            let received = msg_box == 1;
            let single = addrs.len() <= 2;
            // Received: the sender (137) first, then the others; sent: everyone but the sender.
            let mut parties: Vec<Person> = Vec::new();
            let mut ordered = addrs.clone();
            ordered.sort_by_key(|(_, t)| *t != 137);
            for (a, t) in &ordered {
                if !received && *t == 137 {
                    continue;
                }
                let name = if single { contact_name.as_deref() } else { None };
                parties.push(party(a, name, region));
            }
            let extra = match attachments {
                0 => String::new(),
                1 => " (+1 attachment)".into(),
                n => format!(" (+{n} attachments)"),
            };
            (id, text_entry(who, received, parties, &text, at_ms(date), &extra))
        }
        Record::Call {
            number,
            date,
            duration,
            kind,
            contact_name,
        } => {
            let id = record_id(&["call", &number, &date.to_string(), &duration.to_string()]);
            let direction = match kind {
                2 => "outgoing",
                3 => "missed",
                4 => "voicemail",
                5 => "rejected",
                6 => "blocked",
                7 => "answered-elsewhere",
                _ => "incoming",
            };
            let other = party(&number, contact_name.as_deref(), region);
            (id, call_entry(who, other, direction, duration, at_ms(date)))
        }
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub created: usize,
    pub unchanged: usize,
    /// Records without what they need (a date, an address).
    pub skipped: usize,
}

/// Records on their way from the reading thread to the store, at most.
const IN_FLIGHT: usize = 256;

/// Records being written at once.
const WRITES_IN_FLIGHT: usize = 16;

/// Imports an "SMS Backup & Restore" file into the user's `phone` collection as `who`,
/// reading it on a thread of its own as a stream (memory stays bounded whatever its size);
/// `progress(bytes read)`. Records already imported change nothing. A file that is not a
/// backup (or has a DTD) is refused before anything is written; one broken midway keeps
/// what was read before the break, and says where it broke.
pub async fn import(
    core: &Core,
    who: &Principal,
    input: Box<dyn std::io::BufRead + Send>,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ImportReport> {
    let col = core.collection_made(who.user_id, PHONE).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Record>(IN_FLIGHT);
    let reading = tokio::task::spawn_blocking(move || sms_backup::read(input, |r| tx.blocking_send(r), progress));
    let mut report = ImportReport::default();
    // Several writes in flight, so the store commits them in groups.
    use futures_util::StreamExt;
    let records = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut stored = std::pin::pin!(
        records
            .map(|r| {
                let (id, entry) = from_record(who, r, core.mesh.region);
                let col = &col;
                async move { core.mesh.ingest(who, col, &id, entry).await }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
    );
    while let Some(done) = stored.next().await {
        match done? {
            Some(_) => report.created += 1,
            None => report.unchanged += 1,
        }
    }
    let read = reading
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("the reading thread failed: {e}")))?;
    match read {
        Ok(Ok((_, skipped))) => report.skipped = skipped,
        Ok(Err(_)) => return Err(Error::Internal(anyhow::anyhow!("the import stopped midway"))),
        Err(e) => {
            return Err(Error::Invalid(format!(
                "{e} ({} records stored before it)",
                report.created + report.unchanged
            )));
        }
    }
    Ok(report)
}

/// One activity a phone app POSTs, as AS2 JSON: its item (sync id, entry).
pub fn from_as2(who: &Principal, v: &Value, region: Region) -> Result<(String, Entry)> {
    let bad = |why: &str| Error::Invalid(format!("the activity: {why}"));
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("Create");
    if kind != "Create" {
        return Err(bad("only Create activities are taken (a text or a call that happened)"));
    }
    let object = v
        .get("object")
        .filter(|o| o.is_object())
        .ok_or_else(|| bad("no object"))?;
    let otype = object.get("type").and_then(Value::as_str).unwrap_or("Note");
    let at = v
        .get("published")
        .or(object.get("published"))
        .and_then(Value::as_str)
        .map(|p| Timestamp::parse_rfc3339(p).ok_or_else(|| bad("published is not an RFC 3339 time")))
        .transpose()?
        .unwrap_or_else(Timestamp::now);
    let ids = |key: &str| -> Vec<String> {
        match v.get(key).or(object.get(key)) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().or(x.get("id").and_then(Value::as_str)).map(str::to_string))
                .collect(),
            Some(o @ Value::Object(_)) => o
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    };
    let actor = ids("actor").into_iter().next();
    let strip = |s: &str| s.strip_prefix("tel:").unwrap_or(s).to_string();
    let content = object.get("content").and_then(Value::as_str).unwrap_or("");
    if content.len() > 64 * 1024 {
        return Err(bad("content over 64 KiB"));
    }
    let mut recipients: Vec<String> = ids("to");
    recipients.extend(ids("cc"));
    if recipients.len() > 500 {
        return Err(bad("more than 500 recipients"));
    }
    let received = actor.is_some();
    let entry = match otype {
        "Call" => {
            let direction = object.get("direction").and_then(Value::as_str).unwrap_or(if received {
                "incoming"
            } else {
                "outgoing"
            });
            if ![
                "incoming",
                "outgoing",
                "missed",
                "voicemail",
                "rejected",
                "blocked",
                "answered-elsewhere",
            ]
            .contains(&direction)
            {
                return Err(bad(&format!("direction {direction:?} is not a call's")));
            }
            let seconds = match object.get("duration") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .filter(|s| *s >= 0)
                    .ok_or_else(|| bad("a negative duration"))?,
                Some(Value::String(s)) => {
                    iso_seconds(s).ok_or_else(|| bad("duration is not an ISO 8601 duration (PT3M20S)"))?
                }
                Some(_) => return Err(bad("duration is not a number or an ISO 8601 duration")),
            };
            let other = match direction {
                "outgoing" => recipients.first().cloned(),
                _ => actor.clone(),
            }
            .ok_or_else(|| bad("a call needs the other party (actor, or to for an outgoing one)"))?;
            call_entry(who, party(&strip(&other), None, region), direction, seconds, at)
        }
        "TextMessage" | "Note" => {
            let others: Vec<Person> = match &actor {
                Some(a) => std::iter::once(a.clone()).chain(recipients.clone()).collect::<Vec<_>>(),
                None => recipients.clone(),
            }
            .iter()
            .map(|n| party(&strip(n), None, region))
            .collect();
            if others.is_empty() {
                return Err(bad("a text needs a party (actor, or to for a sent one)"));
            }
            let mut e = text_entry(who, received, others, content, at, "");
            if otype == "Note" {
                e.object_type = Some("note".into());
            }
            e
        }
        other => return Err(bad(&format!("object type {other:?}: TextMessage, Call or Note"))),
    };
    let id = match v.get("id").or(object.get("id")).and_then(Value::as_str) {
        Some(given) => record_id(&["as2", given]),
        None => record_id(&[
            "as2",
            otype,
            &actor.unwrap_or_default(),
            &recipients.join(","),
            &at.rfc3339(),
            content,
        ]),
    };
    Ok((id, entry))
}

/// Seconds of an ISO 8601 duration of hours, minutes and seconds (`PT1H2M3S`).
fn iso_seconds(s: &str) -> Option<i64> {
    let rest = s.trim().strip_prefix("PT")?;
    let (mut total, mut num) = (0i64, String::new());
    for c in rest.chars() {
        match c {
            '0'..='9' => num.push(c),
            'H' | 'M' | 'S' => {
                let n: i64 = num.parse().ok()?;
                total = total.checked_add(n.checked_mul(match c {
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                })?)?;
                num.clear();
            }
            _ => return None,
        }
    }
    num.is_empty().then_some(total)
}

/// Stores one activity a phone sent in its `phone` collection: AS2 JSON, or (`atom`) an
/// Atom entry, stored as an AtomPub POST would. Answers the sync id, and whether it was
/// new (the same AS2 activity again changes nothing).
pub async fn post(core: &Core, who: &Principal, body: &[u8], atom: bool) -> Result<(String, bool)> {
    let col = core.collection_made(who.user_id, PHONE).await?;
    if atom {
        let parsed = crate::formats::atom_in::parse_entry_document(body, Timestamp::now())?;
        let done = core.mesh.publish(who, &col, parsed).await?;
        return Ok((done.record.item.id().to_string(), done.created));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("not AS2 JSON: {e}")))?;
    let (id, entry) = from_as2(who, &v, core.mesh.region)?;
    let created = core.mesh.ingest(who, &col, &id, entry).await? == Some(crate::store::ChangeKind::Create);
    Ok((id, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            user_id: 1,
            user: "alice".into(),
            endpoint_id: 1,
            endpoint: "phone".into(),
            token_hash: String::new(),
        }
    }

    #[test]
    fn as2_texts_and_calls_become_entries() {
        let us = Region::parse("US").unwrap();
        let (id, e) = from_as2(
            &alice(),
            &serde_json::json!({"type": "Create", "actor": "tel:+1 (415) 555-0100",
                "object": {"type": "TextMessage", "content": "see you at 6"}, "to": ["tel:415-555-0199"],
                "published": "2026-12-01T10:00:00Z"}),
            us,
        )
        .unwrap();
        assert!(id.starts_with("phone-"));
        assert_eq!(e.authors[0].uri.as_deref(), Some("tel:+14155550100"));
        assert_eq!(e.links[0].href, "tel:+14155550199");
        assert_eq!(e.object_type.as_deref(), Some("text-message"));
        let (_, call) = from_as2(
            &alice(),
            &serde_json::json!({"object": {"type": "Call", "duration": "PT3M20S", "direction": "outgoing"},
                "to": "tel:+14155550100"}),
            us,
        )
        .unwrap();
        assert_eq!(call.title.value, "Call to +14155550100 (3 min 20 s)");
        assert!(
            call.categories
                .iter()
                .any(|c| c.term == "200" && c.scheme.as_deref() == Some(DURATION))
        );
        for bad in [
            serde_json::json!({"type": "Delete", "object": {"type": "Note"}}),
            serde_json::json!({"object": {"type": "Call", "duration": "soon"}, "actor": "tel:+14155550100"}),
            serde_json::json!({"object": {"type": "Call", "direction": "sideways"}, "actor": "tel:+14155550100"}),
            serde_json::json!({"object": {"type": "TextMessage", "content": "to nobody"}}),
            serde_json::json!({"object": {"type": "Video"}, "actor": "tel:+14155550100"}),
            serde_json::json!({"object": {"type": "Note"}, "actor": "x", "published": "yesterday"}),
            serde_json::json!({"actor": "tel:+14155550100"}),
        ] {
            assert!(matches!(from_as2(&alice(), &bad, us), Err(Error::Invalid(_))), "{bad}");
        }
        assert_eq!(iso_seconds("PT1H2M3S"), Some(3723));
        assert_eq!(iso_seconds("PT"), Some(0));
        assert_eq!(iso_seconds("P1D"), None);
    }
}
