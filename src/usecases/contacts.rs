//! Contacts: people with identities, kept as vCard 4 items of the user's `Contacts`
//! collection (created on first use), so devices sync them like any item; the store keeps an
//! index of them (identities, tags, companies) in the same transaction as each write. Import
//! and export of vCard files, the JSON API's fields, suggestions, merge and its undo, notes.

use serde::{Deserialize, Serialize};

use super::Core;
use super::activities::{CONTACTS, NOTES, VCARD_TYPE, card_of};
use crate::domain::entry::{Content, Entry, Link, Text};
use crate::domain::identity::Identity;
use crate::domain::time::Timestamp;
use crate::error::{Error, Result};
use crate::formats::vcard::{self, Card};
use crate::store::{Collection, ContactSummary, MergeRecord, Principal, Suggestion};

/// A contact as the API shows it: the index's fields and the card's.
#[derive(Clone, Debug, Serialize)]
pub struct ContactView {
    pub id: String,
    pub name: String,
    pub identities: Vec<String>,
    pub org: String,
    pub title: String,
    pub photo: String,
    pub birthday: String,
    pub note: String,
    pub tags: Vec<String>,
    pub companies: Vec<String>,
}

/// The fields of a contact a client sends (POST: all it has; PATCH: those to change).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    pub name: Option<String>,
    pub identities: Option<Vec<String>>,
    pub org: Option<String>,
    pub title: Option<String>,
    pub photo: Option<String>,
    pub birthday: Option<String>,
    pub note: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Values of the cards that are not identities (kept out of the identities).
    pub skipped: Vec<String>,
}

/// The user's `Contacts` collection, made on first use.
pub async fn collection(core: &Core, user_id: i64) -> Result<Collection> {
    core.collection_made(user_id, CONTACTS).await
}

fn checked(input: &str, what: &str, max: usize) -> Result<String> {
    let v = input.trim();
    if v.chars().count() > max {
        return Err(Error::Invalid(format!("{what} has at most {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::Invalid(format!("{what} may not hold control characters")));
    }
    Ok(v.to_string())
}

/// Applies the fields given to a card; identities are checked, each one named if it is not one.
fn apply(core: &Core, card: &mut Card, input: ContactInput) -> Result<()> {
    if let Some(n) = input.name {
        card.name = checked(&n, "name", 500)?;
    }
    if let Some(ids) = input.identities {
        if ids.len() > 500 {
            return Err(Error::Invalid("a contact has at most 500 identities".into()));
        }
        let mut out: Vec<String> = Vec::new();
        for i in ids {
            let id = Identity::parse(&i, core.mesh.region)?;
            if id.kind() == crate::domain::identity::Kind::Contact {
                return Err(Error::Invalid(format!(
                    "{i:?} names a contact, not a way to reach a person"
                )));
            }
            if !out.contains(&id.to_string()) {
                out.push(id.into_string());
            }
        }
        card.identities = out;
    }
    for (field, value, max) in [
        (&mut card.org, input.org, 500),
        (&mut card.title, input.title, 500),
        (&mut card.birthday, input.birthday, 40),
        (&mut card.note, input.note, 100_000),
    ] {
        if let Some(v) = value {
            *field = checked(&v, "a field", max)?;
        }
    }
    if let Some(p) = input.photo {
        let p = p.trim().to_string();
        if !(p.is_empty() || p.starts_with("https://") || p.starts_with("http://") || p.starts_with("data:image/")) {
            return Err(Error::Invalid(
                "photo must be an http(s) URL or a data:image/… URI".into(),
            ));
        }
        card.photo = p;
    }
    if let Some(tags) = input.tags {
        let mut out: Vec<String> = Vec::new();
        for t in tags {
            let t = checked(&t, "a tag", 100)?;
            if t.contains(',') || t.contains('\n') {
                return Err(Error::Invalid(format!(
                    "tag {t:?} may not hold a comma or a line break"
                )));
            }
            if !t.is_empty() && !out.contains(&t) {
                out.push(t);
            }
        }
        card.tags = out;
    }
    if card.name.is_empty() {
        card.name = card
            .identities
            .first()
            .map(|i| i.split_once(':').map_or(i.as_str(), |(_, v)| v).to_string())
            .ok_or_else(|| Error::Invalid("a contact needs a name or an identity".into()))?;
    }
    let size = vcard::write(card).len();
    if size > vcard::MAX_CARD {
        return Err(Error::TooLarge(format!(
            "this contact's card is {} KiB; at most {} KiB (a photo that large belongs in a file)",
            size / 1024,
            vcard::MAX_CARD / 1024
        )));
    }
    Ok(())
}

fn entry_of(card: &Card) -> Entry {
    Entry {
        title: Text::plain(card.name.clone()),
        content: Some(Content {
            kind: VCARD_TYPE.into(),
            value: vcard::write(card),
            src: None,
        }),
        updated: Timestamp::now(),
        ..Entry::default()
    }
}

fn view(id: &str, card: &Card, summary: Option<&ContactSummary>) -> ContactView {
    ContactView {
        id: id.to_string(),
        name: card.name.clone(),
        identities: card.identities.clone(),
        org: card.org.clone(),
        title: card.title.clone(),
        photo: card.photo.clone(),
        birthday: card.birthday.clone(),
        note: card.note.clone(),
        tags: card.tags.clone(),
        companies: summary.map(|s| s.companies.clone()).unwrap_or_default(),
    }
}

/// Writes a card under `id` (created when new, a FeedSync update otherwise).
async fn put(core: &Core, who: &Principal, col: &Collection, id: &str, card: &Card) -> Result<()> {
    let mut card = card.clone();
    card.uid = Some(id.to_string());
    core.mesh.ingest(who, col, id, entry_of(&card)).await?;
    Ok(())
}

/// A new contact from the API's fields.
pub async fn create(core: &Core, who: &Principal, input: ContactInput) -> Result<ContactView> {
    let mut card = Card::default();
    apply(core, &mut card, input)?;
    add(core, who, card).await
}

/// A new contact from one vCard.
pub async fn create_from_vcard(core: &Core, who: &Principal, body: &[u8]) -> Result<ContactView> {
    let card = vcard::parse_card(body, core.mesh.region)?;
    add(core, who, card).await
}

async fn add(core: &Core, who: &Principal, card: Card) -> Result<ContactView> {
    let col = collection(core, who.user_id).await?;
    let id = uuid::Uuid::now_v7().to_string();
    put(core, who, &col, &id, &card).await?;
    get(core, who.user_id, &id).await
}

/// One contact, read from its item (the card) and the index.
pub async fn get(core: &Core, user_id: i64, id: &str) -> Result<ContactView> {
    let (card, _) = card(core, user_id, id).await?;
    let summary = core.mesh.store.contact(user_id, id).await?;
    Ok(view(id, &card, summary.as_ref()))
}

/// A contact's card and its item's version (for If-Match).
pub async fn card(core: &Core, user_id: i64, id: &str) -> Result<(Card, u64)> {
    let col = collection(core, user_id).await?;
    let record = core
        .mesh
        .store
        .item(col.id, id)
        .await?
        .filter(|r| !r.item.current.sync.deleted)
        .ok_or(Error::NotFound("contact"))?;
    let card = card_of(&record.item.current.payload, core.mesh.region).ok_or(Error::NotFound("contact"))?;
    Ok((card, record.seq))
}

pub async fn list(core: &Core, user_id: i64) -> Result<Vec<ContactSummary>> {
    Ok(core.mesh.store.contacts(user_id).await?)
}

/// Most contacts a page's picker lists; with more, the page takes a contact's id instead.
pub const PICKER_MAX: u32 = 200;

/// The contacts a picker offers, as (id, name, hint: an identity or the org), and whether
/// they are all of them.
pub struct Picker {
    pub choices: Vec<(String, String, String)>,
    pub all: bool,
}

/// Every contact for a picker, when there are at most [`PICKER_MAX`].
pub async fn picker(core: &Core, user_id: i64) -> Result<Picker> {
    let mut choices = core.mesh.store.contact_names(user_id, None, PICKER_MAX + 1).await?;
    let all = choices.len() <= PICKER_MAX as usize;
    choices.truncate(PICKER_MAX as usize);
    Ok(Picker { choices, all })
}

/// The contacts to offer for merging into `id`: all of them when there are few, else those
/// likeliest to be the same person (a name starting alike, the same org).
pub async fn merge_candidates(core: &Core, user_id: i64, id: &str, name: &str, org: &str) -> Result<Picker> {
    let mut p = picker(core, user_id).await?;
    if !p.all {
        let first = name.split_whitespace().next().unwrap_or("");
        p.choices = core
            .mesh
            .store
            .contact_names(user_id, Some((first, org)), PICKER_MAX + 1)
            .await?;
    }
    p.choices.retain(|(c, ..)| c != id);
    p.choices.truncate(PICKER_MAX as usize);
    Ok(p)
}

/// Changes the fields given.
pub async fn patch(core: &Core, who: &Principal, id: &str, input: ContactInput) -> Result<ContactView> {
    let (mut card, _) = card(core, who.user_id, id).await?;
    apply(core, &mut card, input)?;
    let col = collection(core, who.user_id).await?;
    put(core, who, &col, id, &card).await?;
    get(core, who.user_id, id).await
}

pub async fn delete(core: &Core, who: &Principal, id: &str) -> Result<()> {
    card(core, who.user_id, id).await?;
    let col = collection(core, who.user_id).await?;
    core.mesh.delete(who, &col, id, None).await?;
    Ok(())
}

/// Every contact as one vCard 4 file.
pub async fn export(core: &Core, user_id: i64) -> Result<String> {
    let mut out = String::new();
    for c in list(core, user_id).await? {
        if let Ok((card, _)) = card(core, user_id, &c.id).await {
            let mut card = card;
            card.uid = Some(c.id.clone());
            out.push_str(&vcard::write(&card));
        }
    }
    Ok(out)
}

/// Reads a vCard file (3.0 or 4.0, many cards) into the contacts: every card is checked
/// first, so a broken file changes nothing. A card whose UID or any identity a contact
/// already has updates that contact (identities and tags joined, empty fields filled), so
/// importing the same file again adds nothing.
pub async fn import(
    core: &Core,
    who: &Principal,
    body: &[u8],
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport> {
    use futures_util::StreamExt;
    let cards = vcard::parse_cards(body, core.mesh.region)?;
    let col = collection(core, who.user_id).await?;
    let mut report = ImportReport::default();
    let total = cards.len() as u64;
    // First every card finds its contact (reads only), and cards of one person are folded
    // together, so the writes that follow never race for one contact.
    let mut plans: Vec<Plan> = Vec::new();
    let mut by_target: std::collections::HashMap<String, usize> = Default::default();
    let mut by_identity: std::collections::HashMap<String, usize> = Default::default();
    for card in cards {
        report.skipped.extend(card.skipped.iter().cloned());
        let in_file = card.identities.iter().find_map(|i| by_identity.get(i).copied());
        let target = match in_file {
            Some(_) => None,
            None => existing_contact(core, who.user_id, &col, &card).await?,
        };
        let slot = match (in_file, &target) {
            (Some(at), _) => Some(at),
            (None, Some(id)) => by_target.get(id).copied(),
            (None, None) => None,
        };
        let at = match slot {
            Some(at) => {
                fold(&mut plans[at].card, &card);
                plans[at].cards += 1;
                at
            }
            None => {
                let (id, current) = match target {
                    Some(id) => {
                        let (current, _) = self::card(core, who.user_id, &id).await?;
                        (id, Some(current))
                    }
                    None => (
                        card.uid
                            .clone()
                            .filter(|u| usable_id(u) && !by_target.contains_key(u))
                            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                        None,
                    ),
                };
                let mut merged = current.clone().unwrap_or_default();
                if current.is_some() {
                    fold(&mut merged, &card);
                } else {
                    merged = card.clone();
                }
                by_target.insert(id.clone(), plans.len());
                plans.push(Plan {
                    id,
                    card: merged,
                    before: current,
                    cards: 1,
                });
                plans.len() - 1
            }
        };
        for i in &plans[at].card.identities {
            by_identity.entry(i.clone()).or_insert(at);
        }
    }
    // Then the writes, many at once (one group commit takes them together).
    let mut done = 0u64;
    let mut writes = futures_util::stream::iter(plans)
        .map(|p: Plan| {
            let col = col.clone();
            async move {
                let changed = p.before.as_ref() != Some(&p.card);
                if changed {
                    put(core, who, &col, &p.id, &p.card).await?;
                }
                Ok::<_, Error>((p, changed))
            }
        })
        .buffer_unordered(64);
    while let Some(result) = writes.next().await {
        let (p, changed) = result?;
        match (&p.before, changed) {
            (None, _) => report.created += 1,
            (Some(_), true) => report.updated += 1,
            (Some(_), false) => report.unchanged += 1,
        }
        // Cards folded into another count as that contact's outcome, and as unchanged.
        report.unchanged += p.cards - 1;
        done += p.cards;
        progress(done, total);
    }
    Ok(report)
}

/// One contact an import writes: its id, its card after the import, as it was before.
struct Plan {
    id: String,
    card: Card,
    before: Option<Card>,
    /// How many cards of the file it takes.
    cards: u64,
}

/// The contact a card is (by its UID, else by any of its identities), if one exists.
async fn existing_contact(core: &Core, user_id: i64, col: &Collection, card: &Card) -> Result<Option<String>> {
    if let Some(uid) = card.uid.as_deref().filter(|u| usable_id(u))
        && core
            .mesh
            .store
            .item(col.id, uid)
            .await?
            .is_some_and(|r| !r.item.current.sync.deleted)
    {
        return Ok(Some(uid.to_string()));
    }
    Ok(core
        .mesh
        .store
        .contacts_with(user_id, &card.identities)
        .await?
        .into_iter()
        .next())
}

/// A vCard UID kept as the contact's id: short, printable, no path characters.
fn usable_id(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 200 && uid.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:@+".contains(c))
}

/// Folds `other` into `into`: identities, tags and merged ids joined, empty fields filled.
fn fold(into: &mut Card, other: &Card) {
    for i in &other.identities {
        if !into.identities.contains(i) {
            into.identities.push(i.clone());
        }
    }
    for t in &other.tags {
        if !into.tags.contains(t) {
            into.tags.push(t.clone());
        }
    }
    for m in &other.merged {
        if !into.merged.contains(m) {
            into.merged.push(m.clone());
        }
    }
    for (mine, theirs) in [
        (&mut into.org, &other.org),
        (&mut into.title, &other.title),
        (&mut into.photo, &other.photo),
        (&mut into.birthday, &other.birthday),
        (&mut into.note, &other.note),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    }
}

pub async fn suggestions(core: &Core, user_id: i64) -> Result<Vec<Suggestion>> {
    Ok(core.mesh.store.suggestions(user_id, 100).await?)
}

/// Folds contact `other` into `id`, which keeps its id; `other` is deleted. Both cards as
/// they were are recorded, so [`undo`] splits them back. Answers the merge's id.
pub async fn merge(core: &Core, who: &Principal, id: &str, other: &str) -> Result<String> {
    if id == other {
        return Err(Error::Invalid("a contact cannot be merged with itself".into()));
    }
    let (into, _) = card(core, who.user_id, id).await?;
    let (theirs, _) = card(core, who.user_id, other).await?;
    let mut merged = into.clone();
    fold(&mut merged, &theirs);
    if !merged.merged.contains(&other.to_string()) {
        merged.merged.push(other.to_string());
    }
    let merge_id = uuid::Uuid::now_v7().to_string();
    let record = MergeRecord {
        merge_id: merge_id.clone(),
        into_id: id.to_string(),
        other_id: other.to_string(),
        into_before: vcard::write(&into),
        other_before: vcard::write(&theirs),
        moved: String::new(),
        at: Timestamp::now(),
        undone: false,
    };
    // Recorded first: a crash between the writes leaves a merge that undo can still split.
    core.mesh.store.record_merge(who.user_id, &record).await?;
    let col = collection(core, who.user_id).await?;
    put(core, who, &col, id, &merged).await?;
    core.mesh.delete(who, &col, other, None).await?;
    Ok(merge_id)
}

/// Splits a merge: the other contact comes back as it was (its id, its card), and the kept
/// one loses what the merge brought (identities, tags, merged ids, fields it filled) but
/// keeps what was changed since. Activities follow the identities, so each timeline is
/// again what it was, with what arrived since for either identity.
pub async fn undo(core: &Core, who: &Principal, merge_id: &str) -> Result<ContactView> {
    let m = core
        .mesh
        .store
        .merge_record(who.user_id, merge_id)
        .await?
        .ok_or(Error::NotFound("merge"))?;
    if m.undone {
        return Err(Error::Conflict("this merge was already undone".into()));
    }
    let region = core.mesh.region;
    let before = vcard::parse_card(m.into_before.as_bytes(), region)?;
    let theirs = vcard::parse_card(m.other_before.as_bytes(), region)?;
    let (mut now, _) = card(core, who.user_id, &m.into_id).await?;
    now.identities
        .retain(|i| before.identities.contains(i) || !theirs.identities.contains(i));
    now.tags.retain(|t| before.tags.contains(t) || !theirs.tags.contains(t));
    now.merged
        .retain(|x| before.merged.contains(x) || (x != &m.other_id && !theirs.merged.contains(x)));
    for (mine, was, filled) in [
        (&mut now.org, &before.org, &theirs.org),
        (&mut now.title, &before.title, &theirs.title),
        (&mut now.photo, &before.photo, &theirs.photo),
        (&mut now.birthday, &before.birthday, &theirs.birthday),
        (&mut now.note, &before.note, &theirs.note),
    ] {
        if was.is_empty() && mine == filled {
            mine.clear();
        }
    }
    if !core.mesh.store.merge_undone(who.user_id, merge_id).await? {
        return Err(Error::Conflict("this merge was already undone".into()));
    }
    let col = collection(core, who.user_id).await?;
    put(core, who, &col, &m.other_id, &theirs).await?;
    put(core, who, &col, &m.into_id, &now).await?;
    get(core, who.user_id, &m.into_id).await
}

/// A note about a contact: an item of `Notes` that mentions the contact, so it is in the
/// contact's timeline (and follows it through merges) and syncs to devices like any note.
pub async fn add_note(core: &Core, who: &Principal, id: &str, text: &str) -> Result<String> {
    let (card, _) = card(core, who.user_id, id).await?;
    let text = checked(text, "a note", 100_000)?;
    if text.is_empty() {
        return Err(Error::Invalid("a note needs some text".into()));
    }
    let col = core.collection_made(who.user_id, NOTES).await?;
    let title: String = text.lines().next().unwrap_or("").chars().take(80).collect();
    let entry = Entry {
        title: Text::plain(title),
        content: Some(Content {
            kind: "text".into(),
            value: text,
            src: None,
        }),
        links: vec![Link {
            href: Identity::contact(id).into_string(),
            rel: Some("mentioned".into()),
            title: Some(card.name),
            ..Link::default()
        }],
        updated: Timestamp::now(),
        ..Entry::default()
    };
    let note_id = uuid::Uuid::now_v7().to_string();
    core.mesh.ingest(who, &col, &note_id, entry).await?;
    Ok(note_id)
}

/// Changes the text of a note about a contact (an update of its `Notes` item, which syncs).
pub async fn edit_note(core: &Core, who: &Principal, note_id: &str, text: &str) -> Result<()> {
    let text = checked(text, "a note", 100_000)?;
    if text.is_empty() {
        return Err(Error::Invalid("a note needs some text (delete it instead)".into()));
    }
    let col = core.mesh.collection(who.user_id, NOTES).await?;
    let current = core
        .mesh
        .store
        .item(col.id, note_id)
        .await?
        .filter(|i| !i.item.current.sync.deleted)
        .ok_or(Error::NotFound("note"))?;
    let mut entry = current.item.current.payload.clone();
    entry.title = Text::plain(text.lines().next().unwrap_or("").chars().take(80).collect::<String>());
    entry.content = Some(Content {
        kind: "text".into(),
        value: text,
        src: None,
    });
    entry.updated = Timestamp::now();
    core.mesh.ingest(who, &col, note_id, entry).await?;
    Ok(())
}

/// A contact with its numbers: activities by channel and by month, the last interaction.
#[derive(Clone, Debug, Serialize)]
pub struct ContactDetail {
    #[serde(flatten)]
    pub contact: ContactView,
    /// RFC 3339 of the last activity, if any.
    pub last_interaction: Option<String>,
    /// Activities by channel (email, post, text, call, file).
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    /// Activities by month (YYYY-MM).
    pub by_month: std::collections::BTreeMap<String, u64>,
    /// The contact's timeline feed.
    pub timeline: String,
}

pub async fn detail(core: &Core, user_id: i64, user: &str, id: &str) -> Result<ContactDetail> {
    use crate::domain::activity::{CHANNELS, channel};
    let contact = get(core, user_id, id).await?;
    let tally = core.mesh.store.tally(user_id, Some(id), None).await?;
    let mut counts: std::collections::BTreeMap<&'static str, u64> = CHANNELS.iter().map(|c| (*c, 0)).collect();
    let mut by_month = std::collections::BTreeMap::new();
    for (t, m, n) in &tally.by_type_month {
        *counts.entry(channel(t)).or_default() += n;
        *by_month.entry(m.clone()).or_default() += n;
    }
    let timeline = super::timelines::feed_url(core, user, super::feeds::Of::Contact(id), crate::formats::Format::Atom);
    Ok(ContactDetail {
        contact,
        last_interaction: tally.last.map(|t| t.rfc3339()),
        counts,
        by_month,
        timeline,
    })
}

/// When the contact's latest activity happened, if it has any.
pub async fn last_interaction(core: &Core, user_id: i64, id: &str) -> Result<Option<Timestamp>> {
    Ok(core.mesh.store.tally(user_id, Some(id), None).await?.last)
}

pub async fn companies(core: &Core, user_id: i64) -> Result<Vec<crate::store::Company>> {
    Ok(core.mesh.store.companies(user_id).await?)
}

/// Cards an address-book connector pulled, oldest first: each folded into the contact it
/// is (`take_card`), in waves of 16 that share no identity, so two cards of one person are
/// never folded at once and end in one contact.
pub async fn take_pulled_all(
    core: &Core,
    who: &Principal,
    connector: i64,
    pulled: Vec<feedmesh_connector::Pulled>,
) -> Result<()> {
    const WAVE: usize = 16;
    // Each card read once; one that does not parse is skipped, and the reason logged.
    let mut left = Vec::new();
    for p in pulled {
        let text = p.entry.content.as_ref().map(|c| c.value.as_bytes()).unwrap_or_default();
        match vcard::parse_card(text, core.mesh.region) {
            Ok(card) => left.push((p, card)),
            Err(e) => tracing::warn!(connector, item = %p.id, error = %e, "a card that does not parse was skipped"),
        }
    }
    while !left.is_empty() {
        let (mut wave, mut later) = (Vec::new(), Vec::new());
        // The identities of this wave, and of the cards left for later (a card after one of
        // its person's waits for it).
        let (mut seen, mut waiting) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for (p, card) in left {
            let ids: Vec<String> = card.identities.iter().cloned().chain([p.id.clone()]).collect();
            if wave.len() < WAVE && ids.iter().all(|i| !seen.contains(i) && !waiting.contains(i)) {
                seen.extend(ids);
                wave.push((p, card));
            } else {
                waiting.extend(ids);
                later.push((p, card));
            }
        }
        futures_util::future::try_join_all(
            wave.into_iter()
                .map(|(p, card)| take_card(core, who, connector, p, card)),
        )
        .await?;
        left = later;
    }
    Ok(())
}

/// One pulled card (`theirs`, of item `pulled`): folded into the contact it is, never a
/// second one. That contact is the one this card was taken into before (recorded with where
/// the card lives, so an edit made in the hub goes back there), else the one with its UID or
/// any of its identities, else a new one. A card seen before brings its fields (the
/// server's edit wins); one met for the first time only adds to the contact it matched.
async fn take_card(
    core: &Core,
    who: &Principal,
    connector: i64,
    pulled: feedmesh_connector::Pulled,
    theirs: Card,
) -> Result<()> {
    let store = &core.mesh.store;
    let col = collection(core, who.user_id).await?;
    let known = store
        .connector_post_pulled(who.user_id, &pulled.id)
        .await?
        .filter(|(c, _)| *c == connector)
        .map(|(_, id)| id);
    let live = async |id: &str| -> Result<Option<Card>> {
        match store.item(col.id, id).await? {
            Some(r) if !r.item.current.sync.deleted => Ok(Some(self::card(core, who.user_id, id).await?.0)),
            _ => Ok(None),
        }
    };
    let (id, merged, before) = match known {
        Some(id) => {
            let current = live(&id).await?;
            let mut merged = theirs.clone();
            if let Some(c) = &current {
                fold(&mut merged, c);
            }
            (id, merged, current)
        }
        None => match existing_contact(core, who.user_id, &col, &theirs).await? {
            Some(id) => {
                let current = live(&id).await?;
                let mut merged = current.clone().unwrap_or_default();
                fold(&mut merged, &theirs);
                (id, merged, current)
            }
            None => {
                let id = theirs
                    .uid
                    .clone()
                    .filter(|u| usable_id(u))
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                (id, theirs.clone(), None)
            }
        },
    };
    let mut same = merged.clone();
    same.uid = Some(id.clone());
    if before.as_ref() != Some(&same) {
        put(core, who, &col, &id, &merged).await?;
    }
    // The contact has more than the card: it goes back to the server.
    let mut server = theirs.clone();
    server.uid = Some(id.clone());
    let post = crate::store::ConnectorPost {
        remote_id: pulled.remote_id.unwrap_or_default(),
        remote_url: None,
        sent_seq: if server == same { 0 } else { super::kinds::RESEND },
        pulled_id: Some(pulled.id),
    };
    store.put_connector_post(who.user_id, connector, &id, &post).await?;
    Ok(())
}

/// A card an address-book connector saw deleted at its server: its contact is deleted (a
/// card never taken, or taken into a contact deleted since, changes nothing).
pub async fn pulled_gone(core: &Core, who: &Principal, connector: i64, pulled_id: &str) -> Result<()> {
    let store = &core.mesh.store;
    let Some((c, id)) = store.connector_post_pulled(who.user_id, pulled_id).await? else {
        return Ok(());
    };
    if c != connector {
        return Ok(());
    }
    let col = collection(core, who.user_id).await?;
    match core.mesh.delete(who, &col, &id, None).await {
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    store.remove_connector_post(who.user_id, connector, &id).await?;
    Ok(())
}
