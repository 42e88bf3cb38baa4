//! WebDAV's XML as CardDAV uses it: the request bodies (sync-collection, PROPFIND of
//! ETags, addressbook-multiget) and a reader of `207 Multi-Status` answers (each member's
//! address, ETag, card, or that it is gone; the new sync token). DTDs are refused; elements
//! are matched by local name, whatever prefix the server binds `DAV:` to. Also the little
//! of vCard the connector reads itself, and the merge of two versions of a card.

use feedmesh_connector::ConnectorError;
use quick_xml::events::Event;

/// One member of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub href: String,
    pub etag: Option<String>,
    pub card: Option<String>,
    /// 404 in a sync-collection answer: deleted.
    pub gone: bool,
}

/// A `207 Multi-Status` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub members: Vec<Member>,
    pub token: Option<String>,
    /// The server no longer knows the token asked from (`valid-sync-token`).
    pub expired: bool,
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

pub fn sync_collection(token: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><d:sync-collection xmlns:d=\"DAV:\"><d:sync-token>{}</d:sync-token>\
         <d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>",
        escape(token)
    )
}

pub fn propfind_etags() -> String {
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>"
        .to_string()
}

pub fn multiget(hrefs: &[String]) -> String {
    let mut b = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><card:addressbook-multiget xmlns:d=\"DAV:\" \
         xmlns:card=\"urn:ietf:params:xml:ns:carddav\"><d:prop><d:getetag/><card:address-data/></d:prop>",
    );
    for h in hrefs {
        b.push_str(&format!("<d:href>{}</d:href>", escape(h)));
    }
    b.push_str("</card:addressbook-multiget>");
    b
}

/// Reads a `207 Multi-Status` body.
pub fn parse_listing(body: &[u8]) -> Result<Listing, ConnectorError> {
    let bad = |e: String| ConnectorError::Malformed(format!("the address book answered XML that does not read: {e}"));
    let mut r = quick_xml::Reader::from_reader(body);
    let mut out = Listing::default();
    let mut path: Vec<String> = Vec::new();
    let mut cur: Option<Member> = None;
    // The status of the propstat (or response) being read.
    let mut status_ok = true;
    let mut text = String::new();
    let mut buf = Vec::new();
    let mut multistatus = false;
    loop {
        let ev = r.read_event_into(&mut buf).map_err(|e| bad(e.to_string()))?;
        match ev {
            Event::DocType(_) => return Err(bad("a DTD".into())),
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if path.len() > 64 {
                    return Err(bad("nested too deep".into()));
                }
                if name == "response" {
                    cur = Some(Member::default());
                }
                if name == "propstat" {
                    status_ok = true;
                }
                if path.is_empty() && (name == "multistatus" || name == "error") {
                    multistatus = true;
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                if name == "valid-sync-token" {
                    out.expired = true;
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content().map_err(|e| bad(e.to_string()))?),
            Event::CData(t) => text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?),
            Event::GeneralRef(g) => {
                if g.is_char_ref() {
                    if let Some(c) = g.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
                        text.push(c);
                    }
                } else {
                    let name = g.decode().map_err(|e| bad(e.to_string()))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => return Err(bad(format!("an unknown entity &{name};"))),
                    }
                }
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let value = std::mem::take(&mut text);
                match (name.as_str(), parent, cur.as_mut()) {
                    ("href", "response", Some(m)) => m.href = value.trim().to_string(),
                    ("status", "response", Some(m)) => m.gone = value.contains(" 404"),
                    ("status", "propstat", Some(_)) => status_ok = value.contains(" 200"),
                    ("getetag", _, Some(m)) if status_ok || m.etag.is_none() => {
                        m.etag = Some(value.trim().to_string()).filter(|e| !e.is_empty())
                    }
                    ("address-data", _, Some(m)) => m.card = Some(value).filter(|c| c.contains("BEGIN:VCARD")),
                    ("propstat", _, Some(m)) if !status_ok => {
                        // A property the server did not give: not the card's absence.
                        let _ = m;
                    }
                    ("response", _, _) => {
                        if let Some(m) = cur.take().filter(|m| !m.href.is_empty()) {
                            out.members.push(m);
                        }
                    }
                    ("sync-token", "multistatus", _) => out.token = Some(value.trim().to_string()),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !multistatus {
        return Err(bad("not a WebDAV multistatus".into()));
    }
    Ok(out)
}

/// The lines of a card with their folding undone (RFC 6350 §3.2).
fn unfolded(card: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in card.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        match (
            line.strip_prefix(' ').or_else(|| line.strip_prefix('\t')),
            out.last_mut(),
        ) {
            (Some(rest), Some(prev)) => prev.push_str(rest),
            _ if line.is_empty() => {}
            _ => out.push(line.to_string()),
        }
    }
    out
}

/// A line's property name (without group and parameters), upper-cased.
fn name_of(line: &str) -> String {
    let head = line.split(':').next().unwrap_or("");
    let head = head.split(';').next().unwrap_or("");
    head.rsplit('.').next().unwrap_or("").to_ascii_uppercase()
}

/// The value of a card's first `name` property, unescaped as far as a title needs.
pub fn property(card: &str, name: &str) -> Option<String> {
    unfolded(card)
        .into_iter()
        .find(|l| name_of(l) == name)
        .and_then(|l| {
            l.split_once(':')
                .map(|(_, v)| v.replace("\\,", ",").replace("\\;", ";").trim().to_string())
        })
        .filter(|v| !v.is_empty())
}

/// `card` with its UID set to `uid` (a server keeps a card's UID for good: an edit made in
/// the hub, where the contact has an id of its own, is written under the server's).
pub fn with_uid(card: &str, uid: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in unfolded(card) {
        if name_of(&l) == "UID" {
            if !done {
                out.push_str(&format!("UID:{uid}\r\n"));
                done = true;
            }
            continue;
        }
        let end = name_of(&l) == "END";
        if end && !done {
            out.push_str(&format!("UID:{uid}\r\n"));
            done = true;
        }
        out.push_str(&l);
        out.push_str("\r\n");
    }
    out
}

/// Properties a card has once: ours are kept, theirs dropped.
const SINGLE: [&str; 9] = ["BEGIN", "END", "VERSION", "UID", "PRODID", "REV", "FN", "N", "KIND"];

/// Merges two versions of a card: `ours` whole, and every property of `theirs` it does not
/// have (an e-mail or number added at the server survives an edit made in the hub).
pub fn merge_cards(ours: &str, theirs: &str) -> String {
    let mine = unfolded(ours);
    let normal = |l: &str| {
        let (head, value) = l.split_once(':').unwrap_or((l, ""));
        let name = name_of(head);
        (name, value.trim().to_ascii_lowercase())
    };
    let have: Vec<(String, String)> = mine.iter().map(|l| normal(l)).collect();
    let mut extra: Vec<String> = Vec::new();
    for l in unfolded(theirs) {
        let n = normal(&l);
        if SINGLE.contains(&n.0.as_str()) || n.0.is_empty() || have.contains(&n) {
            continue;
        }
        if !extra.contains(&l) {
            extra.push(l);
        }
    }
    let mut out = String::new();
    let end = mine.iter().rposition(|l| name_of(l) == "END").unwrap_or(mine.len());
    for l in &mine[..end] {
        out.push_str(l);
        out.push_str("\r\n");
    }
    for l in extra {
        out.push_str(&l);
        out.push_str("\r\n");
    }
    for l in &mine[end..] {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_answer_is_read_with_its_deletions_and_token() {
        let body = br#"<?xml version="1.0"?>
<multistatus xmlns="DAV:"><response><href>/alice/contacts/</href><propstat><prop><getetag>"c"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/alice/contacts/a%20b.vcf</href><propstat><prop><getetag>"e1"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/alice/contacts/old.vcf</href><status>HTTP/1.1 404 Not Found</status></response>
<sync-token>http://radicale.org/ns/sync/abc</sync-token></multistatus>"#;
        let l = parse_listing(body).unwrap();
        assert_eq!(l.token.as_deref(), Some("http://radicale.org/ns/sync/abc"));
        assert_eq!(l.members.len(), 3);
        assert_eq!(l.members[1].href, "/alice/contacts/a%20b.vcf");
        assert_eq!(l.members[1].etag.as_deref(), Some("\"e1\""));
        assert!(l.members[2].gone && !l.members[1].gone);
    }

    #[test]
    fn a_multiget_answer_carries_the_cards_and_hostile_xml_is_refused() {
        let body = b"<d:multistatus xmlns:d=\"DAV:\" xmlns:C=\"urn:ietf:params:xml:ns:carddav\"><d:response><d:href>/a/c.vcf</d:href>\
<d:propstat><d:prop><d:getetag>\"x\"</d:getetag><C:address-data>BEGIN:VCARD\r\nFN:Ann &amp; Bo\r\nEND:VCARD\r\n</C:address-data></d:prop>\
<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>";
        let l = parse_listing(body).unwrap();
        assert_eq!(
            property(l.members[0].card.as_deref().unwrap(), "FN").as_deref(),
            Some("Ann & Bo")
        );
        let bomb =
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><multistatus xmlns=\"DAV:\">&a;</multistatus>";
        assert!(parse_listing(bomb).is_err());
        assert!(parse_listing(b"<multistatus xmlns=\"DAV:\"><response>&nope;</response></multistatus>").is_err());
        let expired = b"<error xmlns=\"DAV:\"><valid-sync-token/></error>";
        assert!(parse_listing(expired).unwrap().expired);
        for junk in [
            &b""[..],
            b"xxxxxxxx",
            b"<html><body>an error page</body></html>",
            b"{\"a\": 1}",
        ] {
            assert!(parse_listing(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_uid_is_set_once() {
        assert_eq!(
            with_uid("BEGIN:VCARD\r\nUID:mine\r\nFN:A\r\nEND:VCARD\r\n", "theirs"),
            "BEGIN:VCARD\r\nUID:theirs\r\nFN:A\r\nEND:VCARD\r\n"
        );
        assert_eq!(
            with_uid("BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n", "u"),
            "BEGIN:VCARD\r\nFN:A\r\nUID:u\r\nEND:VCARD\r\n"
        );
    }

    #[test]
    fn a_merge_keeps_our_card_and_adds_what_only_theirs_has() {
        let ours = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nFN:Ann New\r\nEMAIL:ann@example.org\r\nEND:VCARD\r\n";
        let theirs = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u1\r\nFN:Ann Old\r\nEMAIL:ANN@example.org\r\nTEL;TYPE=CELL:+4412\r\n 34\r\nEND:VCARD\r\n";
        let m = merge_cards(ours, theirs);
        assert_eq!(
            m,
            "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nFN:Ann New\r\nEMAIL:ann@example.org\r\nTEL;TYPE=CELL:+441234\r\nEND:VCARD\r\n"
        );
    }
}
