//! "SMS Backup & Restore" XML, the backups Android users have of their texts and calls:
//! `<smses>` of `<sms/>` and `<mms>` (with `<parts>` and `<addrs>`), `<calls>` of `<call/>`.
//! Read as a stream (one element at a time, whatever the file's size); times are Java
//! epoch milliseconds. A document with a DTD, or that is not well-formed, is refused.

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};

/// One record of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Sms {
        address: String,
        /// Unix ms.
        date: i64,
        /// 1 received, 2 sent, 3 draft, 4 outbox, 5 failed, 6 queued.
        kind: i64,
        body: String,
        contact_name: Option<String>,
    },
    Mms {
        date: i64,
        /// 1 received, 2 sent, 3 draft, 4 outbox.
        msg_box: i64,
        /// (address, type: 137 from, 151 to, 130 cc, 129 bcc)
        addrs: Vec<(String, i64)>,
        /// The text parts, joined.
        text: String,
        /// Parts that are not text (images, audio…).
        attachments: usize,
        m_id: String,
        contact_name: Option<String>,
    },
    Call {
        number: String,
        date: i64,
        /// Seconds.
        duration: i64,
        /// 1 incoming, 2 outgoing, 3 missed, 4 voicemail, 5 rejected, 6 blocked, 7 answered elsewhere.
        kind: i64,
        contact_name: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a well-formed backup at byte {at}: {why}")]
    Xml { at: u64, why: String },
    #[error("a backup with a DTD is not read")]
    Doctype,
    #[error("the root is <{0}>, not <smses> or <calls>: not an SMS Backup & Restore file")]
    Root(String),
}

/// Reads a backup, handing each record to `each` (which may stop the reading by failing)
/// and the bytes read so far to `progress`; answers how many records were read. A record
/// lacking what it needs (a date, an address) is skipped and counted in the second number.
pub fn read<R: BufRead, E>(
    input: R,
    mut each: impl FnMut(Record) -> Result<(), E>,
    mut progress: impl FnMut(u64),
) -> Result<Result<(usize, usize), E>, BackupError> {
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().expand_empty_elements = false;
    let mut buf = Vec::new();
    let mut root = None::<String>;
    let mut mms: Option<MmsAcc> = None;
    let (mut read, mut skipped) = (0usize, 0usize);
    let mut last_progress = 0u64;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| BackupError::Xml { at, why: e.to_string() })?;
        let name_of = |e: &BytesStart| String::from_utf8_lossy(e.local_name().as_ref()).to_string();
        let record = match &event {
            Event::DocType(_) => return Err(BackupError::Doctype),
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let name = name_of(e);
                let empty = matches!(event, Event::Empty(_));
                let a = attrs(e);
                match (root.as_deref(), name.as_str()) {
                    (None, "smses" | "calls") => {
                        root = Some(name);
                        None
                    }
                    (None, other) => return Err(BackupError::Root(other.to_string())),
                    (Some(_), "sms") => Some(sms(&a)),
                    (Some(_), "call") => Some(call(&a)),
                    (Some(_), "mms") => {
                        let acc = MmsAcc::start(&a);
                        if empty {
                            Some(acc.finish())
                        } else {
                            mms = Some(acc);
                            None
                        }
                    }
                    (Some(_), "part") => {
                        if let Some(m) = mms.as_mut() {
                            m.part(&a);
                        }
                        None
                    }
                    (Some(_), "addr") => {
                        if let Some(m) = mms.as_mut() {
                            m.addr(&a);
                        }
                        None
                    }
                    _ => None,
                }
            }
            Event::End(e) if e.local_name().as_ref() == b"mms" => mms.take().map(MmsAcc::finish),
            _ => None,
        };
        buf.clear();
        if let Some(r) = record {
            match r {
                Some(r) => {
                    read += 1;
                    if let Err(e) = each(r) {
                        return Ok(Err(e));
                    }
                }
                None => skipped += 1,
            }
        }
        let pos = reader.buffer_position();
        if pos - last_progress > 256 * 1024 {
            progress(pos);
            last_progress = pos;
        }
    }
    if root.is_none() {
        return Err(BackupError::Root(String::new()));
    }
    progress(reader.buffer_position());
    Ok(Ok((read, skipped)))
}

/// An element's attributes, unescaped (character references included), by name.
fn attrs(e: &BytesStart) -> Vec<(String, String)> {
    e.attributes()
        .flatten()
        .filter(|a| a.key.local_name().as_ref() != b"data")
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).to_string();
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).to_string());
            (key, value)
        })
        .collect()
}

fn get<'a>(a: &'a [(String, String)], key: &str) -> Option<&'a str> {
    a.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty() && *v != "null")
}

fn num(a: &[(String, String)], key: &str) -> Option<i64> {
    get(a, key).and_then(|v| v.trim().parse().ok())
}

fn name(a: &[(String, String)]) -> Option<String> {
    get(a, "contact_name").filter(|n| *n != "(Unknown)").map(str::to_string)
}

fn sms(a: &[(String, String)]) -> Option<Record> {
    Some(Record::Sms {
        address: get(a, "address")?.to_string(),
        date: num(a, "date")?,
        kind: num(a, "type").unwrap_or(1),
        body: get(a, "body").unwrap_or("").to_string(),
        contact_name: name(a),
    })
}

fn call(a: &[(String, String)]) -> Option<Record> {
    Some(Record::Call {
        number: get(a, "number")?.to_string(),
        date: num(a, "date")?,
        duration: num(a, "duration").unwrap_or(0).max(0),
        kind: num(a, "type").unwrap_or(1),
        contact_name: name(a),
    })
}

/// An `<mms>` being read: its attributes, then its parts and addresses.
struct MmsAcc {
    date: Option<i64>,
    msg_box: i64,
    address: Option<String>,
    m_id: String,
    contact_name: Option<String>,
    addrs: Vec<(String, i64)>,
    text: Vec<String>,
    attachments: usize,
}

impl MmsAcc {
    fn start(a: &[(String, String)]) -> MmsAcc {
        MmsAcc {
            date: num(a, "date"),
            msg_box: num(a, "msg_box").unwrap_or(1),
            address: get(a, "address").map(str::to_string),
            m_id: get(a, "m_id").unwrap_or("").to_string(),
            contact_name: name(a),
            addrs: Vec::new(),
            text: Vec::new(),
            attachments: 0,
        }
    }

    fn part(&mut self, a: &[(String, String)]) {
        match get(a, "ct") {
            Some("text/plain") => {
                if let Some(t) = get(a, "text") {
                    self.text.push(t.to_string());
                }
            }
            Some("application/smil") | None => {}
            Some(_) => self.attachments += 1,
        }
    }

    fn addr(&mut self, a: &[(String, String)]) {
        if let Some(addr) = get(a, "address") {
            self.addrs.push((addr.to_string(), num(a, "type").unwrap_or(151)));
        }
    }

    fn finish(mut self) -> Option<Record> {
        if self.addrs.is_empty() {
            // Older files: the parties only as `address`, several joined with `~`.
            let from = if self.msg_box == 1 { 137 } else { 151 };
            for a in self
                .address
                .as_deref()
                .unwrap_or("")
                .split('~')
                .filter(|a| !a.trim().is_empty())
            {
                self.addrs.push((a.trim().to_string(), from));
            }
        }
        if self.addrs.is_empty() {
            return None;
        }
        Some(Record::Mms {
            date: self.date?,
            msg_box: self.msg_box,
            addrs: self.addrs,
            text: self.text.join("\n"),
            attachments: self.attachments,
            m_id: self.m_id,
            contact_name: self.contact_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(xml: &str) -> Result<(Vec<Record>, usize), BackupError> {
        let mut out = Vec::new();
        let (_, skipped) = read(
            xml.as_bytes(),
            |r| -> Result<(), ()> {
                out.push(r);
                Ok(())
            },
            |_| {},
        )?
        .unwrap();
        Ok((out, skipped))
    }

    #[test]
    fn texts_mms_and_calls_are_read() {
        let xml = r#"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<?xml-stylesheet type="text/xsl" href="sms.xsl"?>
<smses count="4" backup_set="b" backup_date="1700000000000" type="full">
  <sms protocol="0" address="(415) 555-0100" date="1700000000123" type="1" subject="null" body="Hi &amp; &#128512;" toa="null" sc_toa="null" service_center="null" read="1" status="-1" locked="0" readable_date="x" contact_name="Ann" />
  <sms address="+14155550101" date="1700000001000" type="2" body="sent one" contact_name="(Unknown)" />
  <sms address="" date="1700000002000" type="1" body="no address" />
  <mms date="1700000003000" msg_box="1" address="+14155550100~+14155550102" m_id="&lt;m1@x&gt;" contact_name="Ann, Bo">
    <parts>
      <part seq="-1" ct="application/smil" text="&lt;smil/&gt;" />
      <part seq="0" ct="image/jpeg" name="a.jpg" data="/9j/4AAQSkZJRgABAQ==" />
      <part seq="1" ct="text/plain" chset="106" text="look at this" />
    </parts>
    <addrs>
      <addr address="+14155550100" type="137" charset="106" />
      <addr address="+14155550102" type="151" charset="106" />
    </addrs>
  </mms>
</smses>"#;
        let (records, skipped) = all(xml).unwrap();
        assert_eq!(skipped, 1, "the one without an address");
        assert_eq!(
            records[0],
            Record::Sms {
                address: "(415) 555-0100".into(),
                date: 1_700_000_000_123,
                kind: 1,
                body: "Hi & \u{1F600}".into(),
                contact_name: Some("Ann".into()),
            }
        );
        assert!(matches!(
            &records[1],
            Record::Sms {
                kind: 2,
                contact_name: None,
                ..
            }
        ));
        match &records[2] {
            Record::Mms {
                addrs,
                text,
                attachments,
                m_id,
                ..
            } => {
                assert_eq!(
                    addrs,
                    &[("+14155550100".to_string(), 137), ("+14155550102".to_string(), 151)]
                );
                assert_eq!(
                    (text.as_str(), *attachments, m_id.as_str()),
                    ("look at this", 1, "<m1@x>")
                );
            }
            other => panic!("{other:?}"),
        }
        let calls = r#"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<calls count="2"><call number="4155550100" duration="200" date="1700000004000" type="2" presentation="1" contact_name="Ann" />
<call number="+14155550103" duration="0" date="1700000005000" type="3" /></calls>"#;
        let (records, _) = all(calls).unwrap();
        assert_eq!(
            records,
            [
                Record::Call {
                    number: "4155550100".into(),
                    date: 1_700_000_004_000,
                    duration: 200,
                    kind: 2,
                    contact_name: Some("Ann".into()),
                },
                Record::Call {
                    number: "+14155550103".into(),
                    date: 1_700_000_005_000,
                    duration: 0,
                    kind: 3,
                    contact_name: None,
                },
            ]
        );
    }

    #[test]
    fn what_is_no_backup_is_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE smses [<!ENTITY a "aaaa">]><smses><sms address="1" date="1" body="&a;"/></smses>"#;
        assert!(matches!(all(bomb), Err(BackupError::Doctype)));
        assert!(matches!(all("<html><body/></html>"), Err(BackupError::Root(r)) if r == "html"));
        assert!(matches!(
            all("<smses><sms address=\"1\" date=\"1\"></smses>"),
            Err(BackupError::Xml { .. })
        ));
        assert!(matches!(all(""), Err(BackupError::Root(_))));
        assert!(all("\u{0}\u{1}garbage").is_err());
    }
}
