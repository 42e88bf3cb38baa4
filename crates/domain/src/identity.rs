//! Identities: the ways one person is known (`mailto:`, `tel:` in E.164, `acct:` handles,
//! profile URLs), each normalised to one URI, so that every spelling of one address,
//! number or handle is the same identity and contacts and activities meet on it.

use std::fmt;
use std::str::FromStr;

/// The longest identity kept (a URL in a profile field can be long; nothing real is longer).
pub const MAX_IDENTITY: usize = 2048;

/// The region national phone numbers are read in: an ISO 3166-1 alpha-2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region(phonenumber::country::Id);

impl Default for Region {
    fn default() -> Self {
        Region(phonenumber::country::Id::US)
    }
}

impl Region {
    pub fn parse(code: &str) -> Result<Region, IdentityError> {
        let upper = code.trim().to_ascii_uppercase();
        phonenumber::country::Id::from_str(&upper)
            .map(Region)
            .map_err(|_| IdentityError(format!("{code:?} is not an ISO 3166 region code (such as US, GB, DE)")))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

/// What kind of identity a URI is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Email,
    Phone,
    Handle,
    Profile,
    /// `urn:feedmesh:contact:ID`: a contact itself (what a note about a contact mentions).
    Contact,
}

/// A normalised identity URI.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity(String);

pub const CONTACT_URN: &str = "urn:feedmesh:contact:";

impl Identity {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }

    pub fn kind(&self) -> Kind {
        let s = self.0.as_str();
        if s.starts_with("mailto:") {
            Kind::Email
        } else if s.starts_with("tel:") {
            Kind::Phone
        } else if s.starts_with("acct:") {
            Kind::Handle
        } else if s.starts_with(CONTACT_URN) {
            Kind::Contact
        } else {
            Kind::Profile
        }
    }

    /// The identity of a contact itself.
    pub fn contact(id: &str) -> Identity {
        Identity(format!("{CONTACT_URN}{id}"))
    }

    /// The domain of an e-mail identity.
    pub fn email_domain(&self) -> Option<&str> {
        self.0
            .strip_prefix("mailto:")
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d)
    }

    /// Reads an identity: a `mailto:`, `tel:`, `acct:`, `http(s):` or contact URI, or a bare
    /// e-mail address, phone number or `@user@host` handle. National phone numbers are read
    /// in `region`.
    pub fn parse(input: &str, region: Region) -> Result<Identity, IdentityError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(IdentityError("an identity may not be empty".into()));
        }
        if s.len() > MAX_IDENTITY {
            return Err(IdentityError(format!(
                "an identity has at most {MAX_IDENTITY} characters"
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(IdentityError("an identity may not hold control characters".into()));
        }
        let lower = s.to_ascii_lowercase();
        if let Some(rest) = strip(s, &lower, "mailto:") {
            return Self::email(rest);
        }
        if let Some(rest) = strip(s, &lower, "tel:") {
            return Self::phone(rest, region);
        }
        if let Some(rest) = strip(s, &lower, "acct:") {
            return Self::handle(rest);
        }
        if let Some(rest) = strip(s, &lower, CONTACT_URN) {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(IdentityError(format!("{s:?} names no contact")));
            }
            return Ok(Identity::contact(rest));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Self::profile(s);
        }
        if s.starts_with('@') && s[1..].contains('@') {
            return Self::handle(&s[1..]);
        }
        if s.contains('@') && !s.contains(':') {
            return Self::email(s);
        }
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || " +-().\u{a0}/".contains(c)) {
            return Self::phone(s, region);
        }
        Err(IdentityError(format!(
            "{:?} is not an identity: use mailto:, tel:, acct: or an https:// profile URL",
            shorten(s)
        )))
    }

    /// An e-mail address, trimmed and case-folded whole (as mail providers treat it).
    pub fn email(address: &str) -> Result<Identity, IdentityError> {
        let a = address.trim();
        let a = a.strip_prefix('<').and_then(|x| x.strip_suffix('>')).unwrap_or(a);
        let a = a.split('?').next().unwrap_or(a); // mailto:a@b?subject=…
        let bad = || {
            IdentityError(format!(
                "{:?} is not an e-mail address (local@domain)",
                shorten(address)
            ))
        };
        let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !a.chars().any(|c| c.is_whitespace() || "<>,;\"".contains(c))
            && domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(bad());
        }
        Ok(Identity(format!("mailto:{}", a.to_lowercase())))
    }

    /// A phone number in E.164 (`tel:+14155550100`); a national number is read in `region`.
    /// Parsing by libphonenumber's rules takes tens of microseconds, and the same numbers
    /// come back in every activity of a conversation: results are remembered (a bounded map).
    pub fn phone(number: &str, region: Region) -> Result<Identity, IdentityError> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        type Memo = Mutex<HashMap<(String, Region), Result<Identity, IdentityError>>>;
        static MEMO: OnceLock<Memo> = OnceLock::new();
        const CAP: usize = 50_000;
        let memo = MEMO.get_or_init(Default::default);
        let key = (number.to_string(), region);
        if let Some(hit) = memo.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return hit.clone();
        }
        let result = Self::parse_phone(number, region);
        let mut m = memo.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CAP {
            m.clear();
        }
        m.insert(key, result.clone());
        result
    }

    fn parse_phone(number: &str, region: Region) -> Result<Identity, IdentityError> {
        let n = number.trim();
        let n = n.split(';').next().unwrap_or(n); // tel:+1…;ext=…
        let bad = || IdentityError(format!("{:?} is not a phone number", shorten(number)));
        let digits = n.chars().filter(char::is_ascii_digit).count();
        if !(3..=17).contains(&digits) || n.chars().any(|c| c.is_alphabetic()) {
            return Err(bad());
        }
        let parsed = phonenumber::parse(Some(region.0), n).map_err(|_| bad())?;
        if !phonenumber::is_viable(n) {
            return Err(bad());
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Identity(format!("tel:{e164}")))
    }

    /// A fediverse-style handle `user@host`, case-folded.
    pub fn handle(handle: &str) -> Result<Identity, IdentityError> {
        let h = handle.trim().trim_start_matches('@');
        let ok = h.split_once('@').is_some_and(|(u, host)| {
            !u.is_empty()
                && host.contains('.')
                && !host.contains('@')
                && h.chars().all(|c| c.is_alphanumeric() || "_-.@".contains(c))
        });
        if !ok {
            return Err(IdentityError(format!(
                "{:?} is not a handle (user@host)",
                shorten(handle)
            )));
        }
        Ok(Identity(format!("acct:{}", h.to_lowercase())))
    }

    /// A profile URL: scheme and host lower-cased, default port, fragment and a trailing
    /// slash dropped.
    pub fn profile(url: &str) -> Result<Identity, IdentityError> {
        let bad = || IdentityError(format!("{:?} is not a profile URL", shorten(url)));
        let mut u = url::Url::parse(url.trim()).map_err(|_| bad())?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        u.set_fragment(None);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let mut s = u.to_string();
        if s.ends_with('/') && u.query().is_none() {
            s.pop();
        }
        // http and https name the same profile.
        if let Some(rest) = s.strip_prefix("http://") {
            s = format!("https://{rest}");
        }
        Ok(Identity(s))
    }
}

fn strip<'a>(s: &'a str, lower: &str, prefix: &str) -> Option<&'a str> {
    lower.starts_with(prefix).then(|| &s[prefix.len()..])
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Domains of free mail services: an address there says nothing about an employer.
pub fn is_free_mail(domain: &str) -> bool {
    const FREE: &[&str] = &[
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "outlook.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "yandex.com",
        "yandex.ru",
        "mail.ru",
        "zoho.com",
        "fastmail.com",
        "fastmail.fm",
        "tutanota.com",
        "tuta.io",
        "hey.com",
        "qq.com",
        "163.com",
        "126.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "libero.it",
        "t-online.de",
        "comcast.net",
        "verizon.net",
        "att.net",
    ];
    FREE.contains(&domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        Identity::parse(s, Region::default())
            .map(Identity::into_string)
            .unwrap_or_else(|e| e.0)
    }

    #[test]
    fn every_spelling_of_a_number_is_one_identity() {
        for s in [
            "+1 (415) 555-0100",
            "415-555-0100",
            "tel:+14155550100",
            "TEL:+1-415-555-0100",
            "(415) 555 0100",
        ] {
            assert_eq!(id(s), "tel:+14155550100", "{s}");
        }
        let gb = Region::parse("gb").unwrap();
        assert_eq!(
            Identity::parse("020 7946 0018", gb).unwrap().as_str(),
            "tel:+442079460018"
        );
        assert_eq!(
            Identity::parse("+44 20 7946 0018", Region::default()).unwrap().as_str(),
            "tel:+442079460018"
        );
        for bad in ["tel:abc", "tel:", "tel:12", "tel:+1 415 555 01OO"] {
            assert!(Identity::parse(bad, Region::default()).is_err(), "{bad}");
        }
        assert!(Region::parse("XX").is_err());
    }

    #[test]
    fn addresses_handles_and_profiles_are_normalised() {
        assert_eq!(id("  Bob.Smith@Example.COM "), "mailto:bob.smith@example.com");
        assert_eq!(id("MAILTO:Bob@Example.com"), "mailto:bob@example.com");
        assert_eq!(id("mailto:<bob@example.com>"), "mailto:bob@example.com");
        for bad in [
            "mailto:",
            "mailto:bob",
            "mailto:@example.com",
            "mailto:bob@",
            "mailto:a b@c.d",
            "mailto:bob@localhost",
        ] {
            assert!(Identity::parse(bad, Region::default()).is_err(), "{bad}");
        }
        assert_eq!(id("acct:Bob@Social.Example"), "acct:bob@social.example");
        assert_eq!(id("@bob@social.example"), "acct:bob@social.example");
        assert!(Identity::parse("acct:bob", Region::default()).is_err());
        assert_eq!(
            id("HTTPS://Social.Example:443/@bob/#top"),
            "https://social.example/@bob"
        );
        assert_eq!(id("http://github.com/bob/"), "https://github.com/bob");
        assert!(Identity::parse("ftp://x.example/bob", Region::default()).is_err());
        assert!(Identity::parse("bob", Region::default()).is_err());
        assert_eq!(id("urn:feedmesh:contact:c-1"), "urn:feedmesh:contact:c-1");
        let e = Identity::parse("mailto:bob@example.com", Region::default()).unwrap();
        assert_eq!(e.email_domain(), Some("example.com"));
        assert_eq!(e.kind(), Kind::Email);
    }
}
