//! Activities: what each accepted change is (AS2 verb and object type), the people it names,
//! and the words it is found by; for an item of `Contacts`, the contact index too. Computed
//! here for every write (`Mesh::write`), stored in the change's transaction, so a timeline is
//! never behind the stream.

use super::Core;
use crate::domain::activity::{self, Change};
use crate::domain::entry::{Entry, StoredItem};
use crate::domain::identity::{self, Identity, Region};
use crate::error::Result;
use crate::formats::vcard;
use crate::store::{ActivityRow, ChangeKind, ContactRow};

/// The collection whose items are contacts (vCard 4 in the entry's content).
pub const CONTACTS: &str = "Contacts";
/// The collection of notes (a note about a contact mentions the contact's URN).
pub const NOTES: &str = "Notes";
/// The media type of a contact's payload.
pub const VCARD_TYPE: &str = "text/vcard";

/// The activity row of a change of `item` in collection `collection`.
pub fn index(collection: &str, item: &StoredItem, kind: ChangeKind, region: Region) -> ActivityRow {
    let contact = (collection == CONTACTS).then(|| contact_row(item, region));
    index_version(&item.current.payload, item.current.sync.deleted, kind, contact, region)
}

/// The activity row a change was indexed with (computed again from the change, the same way).
pub fn index_change(c: &crate::store::ChangeRecord, region: Region) -> ActivityRow {
    let contact = (c.collection == CONTACTS)
        .then(|| contact_row_of(&c.sync_id, &c.version.payload, c.version.sync.deleted, region));
    index_version(&c.version.payload, c.version.sync.deleted, c.kind, contact, region)
}

/// The activity row of one version (`entry`, deleted or not) changed by `kind`; `contact`:
/// the contact index row, for an item of `Contacts`.
fn index_version(
    entry: &Entry,
    deleted: bool,
    kind: ChangeKind,
    contact: Option<ContactRow>,
    region: Region,
) -> ActivityRow {
    let change = match kind {
        ChangeKind::Create => Change::Create,
        ChangeKind::Delete => Change::Delete,
        _ if deleted => Change::Delete,
        _ => Change::Update,
    };
    let mut facts = activity::facts(entry, change, region);
    if let Some(c) = &contact {
        facts.object_type = "Person".into();
        // A contact's own changes are in its timeline.
        facts.parties.push(activity::Party {
            identity: Identity::contact(&c.contact_id),
            role: activity::Role::Recipient,
            name: c.name.clone(),
        });
    }
    let text = activity::search_text(entry, &facts);
    ActivityRow {
        verb: facts.verb,
        object_type: facts.object_type,
        parties: facts
            .parties
            .into_iter()
            .map(|p| (p.identity.into_string(), p.role.as_str(), p.name))
            .collect(),
        text,
        contact,
    }
}

/// The vCard of a contact item's payload, if it has one.
pub fn card_of(entry: &Entry, region: Region) -> Option<vcard::Card> {
    let c = entry.content.as_ref()?;
    if !c.kind.starts_with(VCARD_TYPE) && !c.kind.starts_with("text/x-vcard") {
        return None;
    }
    vcard::parse_card(c.value.as_bytes(), region).ok()
}

/// What the contacts index keeps of a contact item (its vCard); a deleted item, or one
/// without a readable card, leaves the index.
fn contact_row(item: &StoredItem, region: Region) -> ContactRow {
    contact_row_of(item.id(), &item.current.payload, item.current.sync.deleted, region)
}

fn contact_row_of(id: &str, entry: &Entry, deleted: bool, region: Region) -> ContactRow {
    let id = id.to_string();
    let card = (!deleted).then(|| card_of(entry, region)).flatten();
    let Some(card) = card else {
        return ContactRow {
            contact_id: id,
            removed: true,
            ..ContactRow::default()
        };
    };
    let mut identities = card.identities.clone();
    // A contact is also known by its own URN and those of the contacts merged into it.
    for own in std::iter::once(&id).chain(card.merged.iter()) {
        identities.push(Identity::contact(own).into_string());
    }
    ContactRow {
        companies: companies(&card.org, &card.identities),
        contact_id: id,
        removed: false,
        name: card.name,
        org: card.org,
        tags: card.tags,
        identities,
    }
}

/// Indexes, newest first, the changes made before activities existed (the migration left a
/// mark per user); a batch at a time, each in one transaction, so a crash resumes where it
/// stopped. Contacts are indexed from their items as they are now, whatever the order.
pub async fn backfill(core: &Core, stop: &crate::jobs::Stop) -> Result<()> {
    const BATCH: u32 = 500;
    let store = &core.mesh.store;
    while !stop.is_stopped() {
        let Some((user_id, upto)) = store.backfill_due().await? else {
            return Ok(());
        };
        let changes = store.changes(user_id, None, Some(upto + 1), BATCH).await?;
        let contacts = match core.mesh.collection(user_id, CONTACTS).await {
            Ok(c) => Some(c),
            Err(crate::error::Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mut rows = Vec::with_capacity(changes.len());
        for c in &changes {
            let contact = match &contacts {
                Some(col) if c.collection == CONTACTS => {
                    let row = match store.item(col.id, &c.sync_id).await? {
                        Some(r) => contact_row(&r.item, core.mesh.region),
                        None => ContactRow {
                            contact_id: c.sync_id.clone(),
                            removed: true,
                            ..ContactRow::default()
                        },
                    };
                    Some(row)
                }
                _ => None,
            };
            rows.push((
                c.seq,
                index_version(
                    &c.version.payload,
                    c.version.sync.deleted,
                    c.kind,
                    contact,
                    core.mesh.region,
                ),
            ));
        }
        let next = match changes.last() {
            Some(last) if changes.len() == BATCH as usize => last.seq.saturating_sub(1),
            _ => 0,
        };
        store.backfill(user_id, &rows, next).await?;
        if next == 0 {
            tracing::info!(user_id, "activities of earlier changes indexed");
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Legal forms that do not name a company ("Acme Inc." is Acme).
const LEGAL: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "ltd",
    "limited",
    "corp",
    "corporation",
    "co",
    "company",
    "gmbh",
    "ag",
    "sa",
    "sas",
    "sarl",
    "bv",
    "nv",
    "plc",
    "pty",
    "oy",
    "ab",
    "as",
    "srl",
    "spa",
    "kg",
];

/// Two-part public suffixes, so that `acme.co.uk` is Acme.
const SECOND_LEVEL: &[&str] = &["co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"];

/// The slug of an organisation name: its words, lower case, without the legal form.
pub fn org_slug(org: &str) -> Option<String> {
    let mut text = String::new();
    activity::words(org, &mut text, 200);
    let mut words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1 && words.last().is_some_and(|w| LEGAL.contains(w)) {
        words.pop();
    }
    (!words.is_empty()).then(|| words.join("-"))
}

/// The slug of the organisation behind an e-mail domain (`mail.acme.co.uk` → `acme`).
pub fn domain_slug(domain: &str) -> Option<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    if n < 2 {
        return None;
    }
    let name = if n >= 3 && SECOND_LEVEL.contains(&labels[n - 2]) && labels[n - 1].len() == 2 {
        labels[n - 3]
    } else {
        labels[n - 2]
    };
    org_slug(name)
}

/// The companies a contact belongs to: its ORG, and the organisations of its e-mail domains
/// (free-mail domains say nothing). (slug, name).
pub fn companies(org: &str, identities: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(slug) = org_slug(org) {
        out.push((slug, org.trim().to_string()));
    }
    for id in identities {
        let Some(domain) = id
            .strip_prefix("mailto:")
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d)
        else {
            continue;
        };
        if identity::is_free_mail(domain) {
            continue;
        }
        if let Some(slug) = domain_slug(domain)
            && !out.iter().any(|(s, _)| *s == slug)
        {
            out.push((slug, domain.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companies_come_from_org_and_work_domains() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            companies("Acme Inc.", &ids(&["mailto:ann@acme.com", "mailto:ann@gmail.com"])),
            vec![("acme".to_string(), "Acme Inc.".to_string())]
        );
        assert_eq!(
            companies("", &ids(&["mailto:bob@mail.initech.co.uk", "tel:+14155550100"])),
            vec![("initech".to_string(), "mail.initech.co.uk".to_string())]
        );
        assert!(companies("", &ids(&["mailto:bob@gmail.com"])).is_empty());
        assert_eq!(org_slug("Globex Corporation"), Some("globex".into()));
        assert_eq!(org_slug("The Co"), Some("the".into()));
        assert_eq!(org_slug("  "), None);
    }
}
