//! vCard in and out (calcard): files of many cards, 3.0 or 4.0, read strictly enough to
//! refuse what is broken (a line that is not a property, a card without END) and leniently
//! enough for what phones and Google/Apple export; written as vCard 4.0 (RFC 6350).
//! Properties the hub does not model (addresses, anniversaries…) are kept as they came.

use calcard::vcard::{
    VCard, VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardValue,
    VCardValueType, VCardVersion,
};
use calcard::{Entry as CalEntry, Parser};

use crate::domain::identity::{Identity, Region};

/// The largest card kept (a photo that large belongs in a file, not a contact).
pub const MAX_CARD: usize = 256 * 1024;
/// Cards one file may hold.
pub const MAX_CARDS: usize = 100_000;

/// What the hub reads and writes of a contact; the rest of the card rides along in `extra`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Card {
    pub uid: Option<String>,
    pub name: String,
    /// Normalised identity URIs, in the card's order.
    pub identities: Vec<String>,
    pub org: String,
    pub title: String,
    /// A URI (`https:` or `data:`).
    pub photo: String,
    pub birthday: String,
    pub note: String,
    pub tags: Vec<String>,
    /// Contacts merged into this one (their notes and links follow it).
    pub merged: Vec<String>,
    /// Properties the hub does not model, kept as they came.
    pub extra: Vec<VCardEntry>,
    /// Values that were not identities (for the importer to report).
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VcardError(pub String);

const MERGED: &str = "X-FEEDMESH-MERGED";

/// Reads every card of a file (vCard 3.0 or 4.0). Any broken card fails the whole file, with
/// the card's number and the problem, so an import changes nothing or everything.
pub fn parse_cards(bytes: &[u8], region: Region) -> Result<Vec<Card>, VcardError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        VcardError(format!(
            "the file is not UTF-8 (invalid byte at offset {}); export it as UTF-8",
            e.valid_up_to()
        ))
    })?;
    if !text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("BEGIN:VCARD")
    {
        return Err(VcardError(
            "not a vCard file: it does not start with BEGIN:VCARD".into(),
        ));
    }
    let mut parser = Parser::new(text).strict();
    let mut out = Vec::new();
    loop {
        let n = out.len() + 1;
        match parser.entry() {
            CalEntry::Eof => break,
            CalEntry::VCard(v) => out.push(card_of(v, region).map_err(|e| VcardError(format!("card {n}: {e}")))?),
            CalEntry::InvalidLine(line) => {
                return Err(VcardError(format!(
                    "card {n}: {:?} is not a vCard property line (NAME:value)",
                    line.chars().take(80).collect::<String>()
                )));
            }
            CalEntry::UnterminatedComponent(_) => {
                return Err(VcardError(format!("card {n} has no END:VCARD")));
            }
            CalEntry::TooManyComponents => return Err(VcardError(format!("card {n}: too many nested components"))),
            _ => return Err(VcardError(format!("card {n}: not a vCard (BEGIN:VCARD … END:VCARD)"))),
        }
        if out.len() > MAX_CARDS {
            return Err(VcardError(format!("a file holds at most {MAX_CARDS} cards")));
        }
    }
    if out.is_empty() {
        return Err(VcardError("the file holds no vCard".into()));
    }
    Ok(out)
}

/// Reads exactly one card.
pub fn parse_card(bytes: &[u8], region: Region) -> Result<Card, VcardError> {
    let mut cards = parse_cards(bytes, region)?;
    if cards.len() != 1 {
        return Err(VcardError(format!("expected one vCard, found {}", cards.len())));
    }
    Ok(cards.remove(0))
}

fn text_of(v: &VCardValue) -> String {
    match v {
        VCardValue::Text(t) => t.clone(),
        VCardValue::Integer(i) => i.to_string(),
        VCardValue::Float(f) => f.to_string(),
        VCardValue::Boolean(b) => b.to_string(),
        VCardValue::PartialDateTime(d) => {
            let mut s = String::new();
            let _ = d.format_as_vcard(&mut s, &VCardValueType::DateAndOrTime);
            s
        }
        VCardValue::Component(parts) => parts.join(" "),
        _ => String::new(),
    }
}

fn first_text(e: &VCardEntry) -> String {
    e.values.first().map(text_of).unwrap_or_default().trim().to_string()
}

fn card_of(v: VCard, region: Region) -> Result<Card, VcardError> {
    let mut c = Card::default();
    let mut n_name = String::new();
    let push_identity = |c: &mut Card, value: &str, as_phone: bool| {
        let parsed = if as_phone {
            Identity::phone(value.trim_start_matches("tel:").trim_start_matches("TEL:"), region)
        } else {
            Identity::parse(value, region)
        };
        match parsed {
            Ok(id) if !c.identities.contains(&id.to_string()) => c.identities.push(id.into_string()),
            Ok(_) => {}
            Err(_) => c.skipped.push(value.to_string()),
        }
    };
    for e in v.entries {
        match &e.name {
            VCardProperty::Begin
            | VCardProperty::End
            | VCardProperty::Version
            | VCardProperty::Prodid
            | VCardProperty::Rev => {}
            VCardProperty::Uid => c.uid = Some(first_text(&e)).filter(|u| !u.is_empty()),
            VCardProperty::Fn => c.name = first_text(&e),
            VCardProperty::N => {
                // family; given; additional; prefixes; suffixes
                let parts: Vec<String> = e.values.iter().map(text_of).collect();
                let pick = |i: usize| parts.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
                n_name = [pick(3), pick(1), pick(2), pick(0), pick(4)]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                c.extra.push(e);
            }
            VCardProperty::Email => {
                let v = first_text(&e);
                if !v.is_empty() {
                    match Identity::email(&v) {
                        Ok(id) if !c.identities.contains(&id.to_string()) => c.identities.push(id.into_string()),
                        Ok(_) => {}
                        Err(_) => c.skipped.push(v),
                    }
                }
            }
            VCardProperty::Tel => {
                let v = first_text(&e);
                if !v.is_empty() {
                    push_identity(&mut c, &v, true);
                }
            }
            VCardProperty::Url | VCardProperty::Socialprofile | VCardProperty::Impp => {
                let v = first_text(&e);
                if v.starts_with("http") || v.starts_with("acct:") || v.starts_with('@') {
                    push_identity(&mut c, &v, false);
                } else {
                    c.extra.push(e);
                }
            }
            VCardProperty::Other(name) if name.eq_ignore_ascii_case("X-SOCIALPROFILE") => {
                let v = first_text(&e);
                push_identity(&mut c, &v, false);
            }
            VCardProperty::Other(name) if name.eq_ignore_ascii_case(MERGED) => {
                let v = first_text(&e);
                if !v.is_empty() && !c.merged.contains(&v) {
                    c.merged.push(v);
                }
            }
            VCardProperty::Org => c.org = e.values.first().map(text_of).unwrap_or_default().trim().to_string(),
            VCardProperty::Title => c.title = first_text(&e),
            VCardProperty::Bday => c.birthday = first_text(&e),
            VCardProperty::Note => c.note = first_text(&e),
            VCardProperty::Categories => {
                for t in e.values.iter().map(text_of) {
                    for t in t.split(',') {
                        let t = t.trim().to_string();
                        if !t.is_empty() && !c.tags.contains(&t) {
                            c.tags.push(t);
                        }
                    }
                }
            }
            VCardProperty::Photo => c.photo = photo_uri(&e),
            _ => c.extra.push(e),
        }
    }
    if c.name.is_empty() {
        c.name = n_name;
    }
    if c.name.is_empty() && !c.org.is_empty() {
        c.name = c.org.clone();
    }
    if c.name.is_empty() {
        c.name = c
            .identities
            .first()
            .map(|i| i.split_once(':').map_or(i.as_str(), |(_, v)| v).to_string())
            .ok_or_else(|| VcardError("a card needs a name (FN or N), an e-mail address or a phone number".into()))?;
    }
    let size = write(&c).len();
    if size > MAX_CARD {
        return Err(VcardError(format!(
            "the card of {:?} is {} KiB; a card may hold at most {} KiB (a photo that large belongs in a file)",
            c.name,
            size / 1024,
            MAX_CARD / 1024
        )));
    }
    Ok(c)
}

/// A photo as a URI: a link as it is, inline bytes (vCard 3.0 `ENCODING=b`) as a `data:` URI.
fn photo_uri(e: &VCardEntry) -> String {
    use base64::Engine as _;
    let media = e
        .params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (VCardParameterName::Type, VCardParameterValue::Text(t)) => {
                Some(format!("image/{}", t.to_ascii_lowercase()))
            }
            (VCardParameterName::Mediatype, VCardParameterValue::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "image/jpeg".into());
    match e.values.first() {
        Some(VCardValue::Binary(d)) => format!(
            "data:{};base64,{}",
            d.content_type.clone().unwrap_or(media),
            base64::engine::general_purpose::STANDARD.encode(&d.data)
        ),
        Some(VCardValue::Text(t)) if t.starts_with("http") || t.starts_with("data:") => t.clone(),
        Some(VCardValue::Text(t)) => format!(
            "data:{media};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(t.as_bytes())
        ),
        _ => String::new(),
    }
}

fn entry(name: VCardProperty, value: &str) -> VCardEntry {
    VCardEntry {
        group: None,
        name,
        params: Vec::new(),
        values: vec![VCardValue::Text(value.to_string())],
    }
}

/// The card as vCard 4.0.
pub fn write(c: &Card) -> String {
    let mut v = VCard { entries: Vec::new() };
    if let Some(uid) = &c.uid {
        v.entries.push(entry(VCardProperty::Uid, uid));
    }
    v.entries.push(entry(VCardProperty::Fn, &c.name));
    v.entries.extend(c.extra.iter().cloned());
    for id in &c.identities {
        if let Some(a) = id.strip_prefix("mailto:") {
            v.entries.push(entry(VCardProperty::Email, a));
        } else if id.starts_with("tel:") {
            let mut e = entry(VCardProperty::Tel, id);
            e.params.push(VCardParameter {
                name: VCardParameterName::Value,
                value: VCardParameterValue::ValueType(VCardValueType::Uri),
            });
            v.entries.push(e);
        } else if id.starts_with("acct:") {
            v.entries.push(entry(VCardProperty::Socialprofile, id));
        } else if !id.starts_with(crate::domain::identity::CONTACT_URN) {
            v.entries.push(entry(VCardProperty::Url, id));
        }
    }
    for (prop, value) in [
        (VCardProperty::Org, &c.org),
        (VCardProperty::Title, &c.title),
        (VCardProperty::Photo, &c.photo),
        (VCardProperty::Bday, &c.birthday),
        (VCardProperty::Note, &c.note),
    ] {
        if !value.is_empty() {
            v.entries.push(entry(prop, value));
        }
    }
    if !c.tags.is_empty() {
        v.entries.push(VCardEntry {
            group: None,
            name: VCardProperty::Categories,
            params: Vec::new(),
            values: c.tags.iter().map(|t| VCardValue::Text(t.clone())).collect(),
        });
    }
    for m in &c.merged {
        v.entries.push(entry(VCardProperty::Other(MERGED.into()), m));
    }
    let mut out = String::new();
    let _ = v.write_to(&mut out, VCardVersion::V4_0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARDS: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c1\r\nFN:Ann Example\r\nN:Example;Ann;;;\r\n\
        ORG:Acme Inc.;Sales\r\nTEL;TYPE=CELL:+1 415 555 0100\r\nEMAIL;TYPE=INTERNET:Ann@Acme.com\r\n\
        CATEGORIES:customer,vip\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ\r\nADR;TYPE=HOME:;;1 Main St;Springfield;;;\r\n\
        X-SOCIALPROFILE;type=twitter:https://twitter.com/ann\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:4.0\r\nN:Smith;Bob;;;\r\nTEL;VALUE=uri:tel:+14155550101\r\nBDAY:19850412\r\nEND:VCARD\r\n";

    #[test]
    fn cards_of_both_versions_are_read_and_written_as_4_0() {
        let cards = parse_cards(CARDS.as_bytes(), Region::default()).unwrap();
        assert_eq!(cards.len(), 2);
        let ann = &cards[0];
        assert_eq!(ann.name, "Ann Example");
        assert_eq!(ann.org, "Acme Inc.");
        assert_eq!(ann.tags, vec!["customer", "vip"]);
        assert_eq!(
            ann.identities,
            vec!["tel:+14155550100", "mailto:ann@acme.com", "https://twitter.com/ann"]
        );
        assert!(ann.photo.starts_with("data:image/jpeg;base64,"), "{}", ann.photo);
        assert_eq!(cards[1].name, "Bob Smith");
        assert_eq!(cards[1].birthday, "19850412");
        let out = write(ann);
        assert!(out.starts_with("BEGIN:VCARD\r\nVERSION:4.0\r\n"), "{out}");
        assert!(out.contains("ADR;TYPE=HOME:;;1 Main St;Springfield;;;"), "{out}");
        let again = parse_card(out.as_bytes(), Region::default()).unwrap();
        assert_eq!(again.identities, ann.identities);
        assert_eq!(again.photo, ann.photo);
        assert_eq!((again.name.as_str(), again.org.as_str()), ("Ann Example", "Acme Inc."));
    }

    #[test]
    fn broken_cards_are_refused_with_their_number() {
        let bad_line = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:B\r\nthis is no property\r\nEND:VCARD\r\n";
        let e = parse_cards(bad_line.as_bytes(), Region::default()).unwrap_err();
        assert!(
            e.0.starts_with("card 2:") && e.0.contains("not a vCard property"),
            "{e}"
        );
        let no_end = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\n";
        assert!(
            parse_cards(no_end.as_bytes(), Region::default())
                .unwrap_err()
                .0
                .contains("no END")
        );
        assert!(
            parse_cards(b"BEGIN:VCARD\r\nFN:\xff\r\nEND:VCARD\r\n", Region::default())
                .unwrap_err()
                .0
                .contains("UTF-8")
        );
        assert!(
            parse_cards(b"hello", Region::default())
                .unwrap_err()
                .0
                .contains("not a vCard")
        );
        let photo = format!(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nPHOTO:data:image/png;base64,{}\r\nEND:VCARD\r\n",
            "A".repeat(400_000)
        );
        assert!(
            parse_cards(photo.as_bytes(), Region::default())
                .unwrap_err()
                .0
                .contains("at most 256 KiB")
        );
        let nameless = "BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE:x\r\nEND:VCARD\r\n";
        assert!(
            parse_cards(nameless.as_bytes(), Region::default())
                .unwrap_err()
                .0
                .contains("needs a name")
        );
    }
}
