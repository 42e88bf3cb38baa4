//! An RFC 5322 message as an entry: what `mail-parser` reads of it, mapped to the hub's
//! activity vocabulary (an `email` post by its From, mentioning every To, Cc and Bcc).

use feedmesh_connector::Attachment;
use feedmesh_domain::Timestamp;
use feedmesh_domain::entry::{Category, Content, Entry, Link, Person, Text};
use mail_parser::{Address, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// The scheme of the category that names a message's thread (its first message's id).
pub const THREAD_SCHEME: &str = "urn:feedmesh:thread";
/// The scheme of the categories that carry a message's IMAP flags (`seen`, `flagged`…).
pub const FLAG_SCHEME: &str = "urn:feedmesh:imap-flag";

/// The longest text body kept in the entry (the whole message stays at the server).
const MAX_TEXT: usize = 256 * 1024;

/// The item id of a message: from its Message-ID (the same in every folder and after a
/// UIDVALIDITY change), or when it has none from its headers' bytes.
pub fn item_id(message_id: Option<&str>, raw: &[u8]) -> String {
    let mut h = Sha256::new();
    match message_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => {
            h.update(b"mid:");
            h.update(m.as_bytes());
        }
        None => {
            let end = header_end(raw);
            h.update(b"raw:");
            h.update(&raw[..end]);
        }
    }
    format!("imap-{}", &hex::encode(h.finalize())[..40])
}

fn header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len())
}

/// What a message comes to: its id, its entry and its attachments. `flags`: its IMAP
/// flags; `received`: INTERNALDATE (used when it has no Date); `cut`: only its first bytes
/// were fetched (it is larger than the connector keeps), `size` its whole size.
pub fn entry_of(
    raw: &[u8],
    flags: &[String],
    received: Option<i64>,
    cut: Option<u64>,
) -> (String, Entry, Vec<Attachment>) {
    let Some(msg) = MessageParser::default().parse(raw) else {
        // Not even headers: kept as what it is, so nothing is silently dropped.
        let text: String = String::from_utf8_lossy(&raw[..raw.len().min(4096)]).into_owned();
        let entry = Entry {
            title: Text::plain("(a message that could not be read)"),
            content: Some(Content {
                kind: "text".into(),
                value: text,
                src: None,
            }),
            updated: Timestamp::from_unix(received.unwrap_or(0)),
            published: received.map(Timestamp::from_unix),
            verb: Some("post".into()),
            object_type: Some("email".into()),
            ..Entry::default()
        };
        return (item_id(None, raw), entry, Vec::new());
    };
    let message_id = msg.message_id().map(str::to_string);
    let id = item_id(message_id.as_deref(), raw);
    let mut links = Vec::new();
    let mut mention = |addr: Option<&str>, name: Option<&str>| {
        if let Some(a) = addr.map(str::trim).filter(|a| a.contains('@') && a.len() <= 320) {
            let href = format!("mailto:{}", a.to_ascii_lowercase());
            if !links.iter().any(|l: &Link| l.href == href) {
                links.push(Link {
                    href,
                    rel: Some("mentioned".into()),
                    title: name
                        .map(|n| n.trim().chars().take(200).collect())
                        .filter(|n: &String| !n.is_empty()),
                    ..Link::default()
                });
            }
        }
    };
    for a in [msg.to(), msg.cc(), msg.bcc()].into_iter().flatten() {
        for addr in addresses(a) {
            mention(addr.address(), addr.name());
        }
    }
    // The thread: every message it answers, as related links; its first as the category.
    let mut refs: Vec<String> = Vec::new();
    for v in [msg.references(), msg.in_reply_to()] {
        let ids: Vec<String> = match v {
            mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        };
        for r in ids {
            let r = r.trim().trim_matches(['<', '>']).to_string();
            if !r.is_empty() && r.len() <= 500 && !refs.contains(&r) {
                refs.push(r);
            }
        }
    }
    for r in refs.iter().take(100) {
        links.push(Link {
            href: format!("mid:{}", mid_escape(r)),
            rel: Some("related".into()),
            ..Link::default()
        });
    }
    let root = refs.first().cloned().or(message_id.clone());
    let mut categories = Vec::new();
    if let Some(root) = root {
        categories.push(Category {
            term: format!("mid:{}", mid_escape(&root)),
            scheme: Some(THREAD_SCHEME.into()),
            label: Some("thread".into()),
        });
    }
    for f in flags {
        let f = f.trim_start_matches('\\').to_ascii_lowercase();
        if matches!(f.as_str(), "seen" | "answered" | "flagged" | "draft") {
            categories.push(Category {
                term: f,
                scheme: Some(FLAG_SCHEME.into()),
                label: None,
            });
        }
    }
    let authors = msg
        .from()
        .and_then(|a| addresses(a).into_iter().next())
        .map(|a| Person {
            name: a
                .name()
                .map(str::to_string)
                .or(a.address().map(str::to_string))
                .unwrap_or_default(),
            email: a
                .address()
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| e.contains('@')),
            uri: None,
        })
        .into_iter()
        .collect();
    let content = body(&msg, cut);
    let when = msg.date().map(|d| d.to_timestamp()).or(received);
    let mut files = Vec::new();
    for part in msg.attachments() {
        let media_type = part
            .content_type()
            .map(|c| match &c.c_subtype {
                Some(s) => format!("{}/{}", c.c_type, s).to_ascii_lowercase(),
                None => c.c_type.to_ascii_lowercase(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = part.attachment_name().unwrap_or_default();
        files.push(Attachment {
            name: name
                .chars()
                .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
                .take(255)
                .collect(),
            media_type,
            bytes: part.contents().to_vec(),
        });
    }
    let subject = msg
        .subject()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("(no subject)");
    let entry = Entry {
        title: Text::plain(subject.chars().take(1000).collect::<String>()),
        content,
        authors,
        categories,
        links,
        published: when.map(Timestamp::from_unix),
        updated: Timestamp::from_unix(when.unwrap_or(0)),
        verb: Some("post".into()),
        object_type: Some("email".into()),
        ..Entry::default()
    };
    (id, entry, files)
}

/// The addresses of a header, groups flattened.
fn addresses<'a>(a: &'a Address<'a>) -> Vec<&'a mail_parser::Addr<'a>> {
    a.iter().collect()
}

/// The text alternative when there is one; else the HTML, sanitised.
fn body(msg: &mail_parser::Message<'_>, cut: Option<u64>) -> Option<Content> {
    let found = text_or_html(msg);
    let Some(size) = cut else { return found };
    let mut content = found.unwrap_or(Content {
        kind: "text".into(),
        value: String::new(),
        src: None,
    });
    let note = format!(
        "[This message is {:.1} MB: only its headers were kept.]",
        size as f64 / (1024.0 * 1024.0)
    );
    content.value.push_str(&if content.kind == "html" {
        format!("<p>{note}</p>")
    } else {
        note
    });
    Some(content)
}

fn text_or_html(msg: &mail_parser::Message<'_>) -> Option<Content> {
    let plain = msg
        .text_bodies()
        .find(|p| !p.is_content_type("text", "html"))
        .and_then(|p| p.text_contents())
        .map(str::to_string);
    let mut content = match plain {
        Some(t) => Content {
            kind: "text".into(),
            value: t,
            src: None,
        },
        None => {
            let html = msg.html_bodies().next().and_then(|p| p.text_contents())?;
            Content {
                kind: "html".into(),
                value: ammonia::clean(html),
                src: None,
            }
        }
    };
    if content.value.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !content.value.is_char_boundary(end) {
            end -= 1;
        }
        content.value.truncate(end);
        content.value.push_str(if content.kind == "html" {
            "<p>[…]</p>"
        } else {
            "\n[…]"
        });
    }
    Some(content)
}

/// A Message-ID as a `mid:` URI (RFC 2392): characters outside the URI set escaped.
fn mid_escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &[u8] = b"From: Bob Example <Bob@Example.org>\r\nTo: Alice <alice@example.net>, carol@example.com\r\nCc: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>\r\nSubject: =?UTF-8?B?SMOpbGxv?= there\r\nDate: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <m2@example.org>\r\nIn-Reply-To: <m1@example.net>\r\nReferences: <m0@example.net> <m1@example.net>\r\n\r\nHi Alice,\r\nsee you.\r\n";

    #[test]
    fn a_plain_message_is_an_email_by_its_sender_to_its_recipients() {
        let (id, e, files) = entry_of(PLAIN, &["\\Seen".into()], None, None);
        assert!(id.starts_with("imap-") && files.is_empty());
        assert_eq!(e.title.value, "Héllo there");
        assert_eq!(e.authors[0].email.as_deref(), Some("bob@example.org"));
        assert_eq!(e.authors[0].name, "Bob Example");
        let mentioned: Vec<&str> = e
            .links
            .iter()
            .filter(|l| l.rel.as_deref() == Some("mentioned"))
            .map(|l| l.href.as_str())
            .collect();
        assert_eq!(
            mentioned,
            [
                "mailto:alice@example.net",
                "mailto:carol@example.com",
                "mailto:andre@example.fr"
            ]
        );
        let andre = e.links.iter().find(|l| l.href == "mailto:andre@example.fr").unwrap();
        assert_eq!(andre.title.as_deref(), Some("André"));
        let related: Vec<&str> = e
            .links
            .iter()
            .filter(|l| l.rel.as_deref() == Some("related"))
            .map(|l| l.href.as_str())
            .collect();
        assert_eq!(related, ["mid:m0@example.net", "mid:m1@example.net"]);
        let thread = e
            .categories
            .iter()
            .find(|c| c.scheme.as_deref() == Some(THREAD_SCHEME))
            .unwrap();
        assert_eq!(thread.term, "mid:m0@example.net");
        assert!(e.categories.iter().any(|c| c.term == "seen"));
        assert_eq!(e.updated, Timestamp::from_unix(1_796_115_600));
        assert_eq!(e.content.as_ref().unwrap().kind, "text");
        assert!(e.content.unwrap().value.contains("see you"));
        // The same message again (another folder, a new UIDVALIDITY) is the same item.
        assert_eq!(entry_of(PLAIN, &[], None, None).0, id);
    }

    #[test]
    fn html_only_is_sanitised_and_the_text_alternative_preferred() {
        let html = b"From: a@example.org\r\nSubject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p onclick=\"x()\">Hi <script>alert(1)</script><b>there</b></p>";
        let (_, e, _) = entry_of(html, &[], Some(5), None);
        let c = e.content.unwrap();
        assert_eq!(c.kind, "html");
        assert!(
            c.value.contains("<b>there</b>") && !c.value.contains("script") && !c.value.contains("onclick"),
            "{}",
            c.value
        );
        assert_eq!(e.updated, Timestamp::from_unix(5), "INTERNALDATE when there is no Date");
        let alt = b"From: a@example.org\r\nSubject: alt\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 plain\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Caf&eacute; html</p>\r\n--b--\r\n";
        let (_, e, _) = entry_of(alt, &[], None, None);
        let c = e.content.unwrap();
        assert_eq!((c.kind.as_str(), c.value.trim()), ("text", "Café plain"));
    }

    #[test]
    fn attachments_are_files_and_broken_messages_survive() {
        let m = b"From: a@example.org\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--x\r\nContent-Type: application/pdf; name=\"r\xc3\xa9port.pdf\"\r\nContent-Disposition: attachment; filename=\"../r\xc3\xa9port.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--x--\r\n";
        let (_, e, files) = entry_of(m, &[], None, None);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].media_type, "application/pdf");
        assert_eq!(files[0].bytes, b"%PDF-1.4\n");
        assert!(!files[0].name.contains('/'), "{}", files[0].name);
        assert!(e.content.unwrap().value.contains("see attached"));
        for broken in [
            &b"\x00\xff\xfe garbage"[..],
            b"Subject: =?utf-8?B?broken\r\nFrom: <<<>>>\r\n\r\nbody",
            b"",
        ] {
            let (id, e, _) = entry_of(broken, &[], None, None);
            assert!(id.starts_with("imap-"));
            assert!(!e.title.value.is_empty());
        }
    }
}
