//! The WebSub wire protocol, pure (../shared/specs/websub.md): hub request forms and their
//! checks, topic-URL normalising, the verification and denial URLs, and `X-Hub-Signature`.
//! Nothing here does I/O; the hub side (`hub`, `deliver`, `topics`) and the subscriber side
//! (`subscriber`) use it.

use crate::config::HubSettings;
use crate::net::check_url;
use crate::secrets::Signature;
use crate::store::HubRequest;

/// `X-Hub-Signature` value: `alg=hex(HMAC(secret, body))` over the bytes sent (I1, I3).
pub fn signature(alg: Signature, secret: &str, body: &[u8]) -> String {
    format!("{}={}", alg.name(), hex::encode(alg.mac(secret, body)))
}

/// Whether an `X-Hub-Signature` header is a valid HMAC of `body` with `secret`, in any of
/// the four algorithms. The MACs are compared in constant time, after hex decoding (S6).
pub fn signature_valid(header: Option<&str>, secret: &str, body: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Some((alg, given)) = header.and_then(|h| h.trim().split_once('=')) else {
        return false;
    };
    let (Some(alg), Ok(given)) = (Signature::parse(alg), hex::decode(given)) else {
        return false;
    };
    bool::from(alg.mac(secret, body).ct_eq(&given))
}
/// Largest outside topic document fetched (open hub); larger ones are not distributed.
pub const MAX_TOPIC_BYTES: usize = 4 << 20;
/// A form-encoded hub request, every pair kept in order (A7: repeated keys, literal dots).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }
    pub fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A6: decodes percent-encoded unreserved characters (`%7E` is `~`), leaves the rest.
pub fn normalize_url(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a `%` may stand right before a multi-byte character.
        if b[i] == b'%'
            && let Some(v) = b.get(i + 1..i + 3).and_then(hex_byte)
            && (v.is_ascii_alphanumeric() || b"-._~".contains(&v))
        {
            out.push(v as char);
            i += 3;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Two hex digits as the byte they spell.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(two[0])? * 16 + digit(*two.get(1)?)?) as u8)
}

/// Why a hub request was refused (a 4xx with this text, B3).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("hub.mode {0:?} is not subscribe, unsubscribe or publish")]
    Mode(String),
    #[error("hub.callback: {0}")]
    Callback(String),
    #[error("hub.topic: {0}")]
    Topic(String),
    #[error("hub.secret must be shorter than 200 bytes")]
    Secret,
    #[error("hub.secret needs an https callback on this hub (strict secrets)")]
    PlainSecret,
    #[error("hub.lease_seconds {0:?} is not a positive whole number")]
    Lease(String),
}

/// The checked parameters of a subscribe or unsubscribe.
#[derive(PartialEq, Eq)]
pub struct Intent {
    pub subscribe: bool,
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    /// The lease granted, after clamping (C12).
    pub lease_seconds: u64,
}

crate::debug_redacted!(Intent { subscribe, callback, lease_seconds } url { topic } secret { secret });

pub enum Parsed {
    Intent(Intent),
    Publish(Vec<String>),
}

/// Parses and checks a hub request (A, B, E4, S1); the topic's hosting is checked apart.
pub fn parse_request(form: &Form, allow_private: bool, settings: &HubSettings) -> Result<Parsed, HubError> {
    let mode = form.first("hub.mode").ok_or(HubError::Missing("hub.mode"))?;
    let subscribe = match mode {
        "subscribe" => true,
        "unsubscribe" => false,
        "publish" => {
            let topics: Vec<String> = form
                .all("hub.topic")
                .chain(form.all("hub.url"))
                .filter(|t| !t.is_empty())
                .map(normalize_url)
                .collect();
            if topics.is_empty() {
                return Err(HubError::Missing("hub.topic (or hub.url)"));
            }
            return Ok(Parsed::Publish(topics));
        }
        other => return Err(HubError::Mode(other.chars().take(40).collect())),
    };
    let callback = form
        .first("hub.callback")
        .filter(|c| !c.is_empty())
        .ok_or(HubError::Missing("hub.callback"))?;
    let topic = form
        .first("hub.topic")
        .filter(|t| !t.is_empty())
        .ok_or(HubError::Missing("hub.topic"))?;
    let callback = normalize_url(callback);
    check_url(&callback, allow_private).map_err(|e| HubError::Callback(e.to_string()))?;
    let topic = normalize_url(topic);
    let secret = form.first("hub.secret").filter(|s| !s.is_empty()).map(str::to_string);
    if secret.as_ref().is_some_and(|s| s.len() >= 200) {
        return Err(HubError::Secret);
    }
    // B7, S10: a secret sent to a plain-http callback can be read on the way.
    if secret.is_some() && callback.starts_with("http:") {
        if settings.strict_secrets {
            return Err(HubError::PlainSecret);
        }
        tracing::warn!("a hub.secret was given with a plain-http callback");
    }
    let lease_seconds = match (subscribe, form.first("hub.lease_seconds")) {
        (true, Some(raw)) => {
            let asked: u64 = raw
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| HubError::Lease(raw.chars().take(40).collect()))?;
            asked.clamp(settings.min_lease, settings.max_lease)
        }
        _ => settings.default_lease, // B9: ignored on unsubscribe
    };
    Ok(Parsed::Intent(Intent {
        subscribe,
        topic,
        callback,
        secret,
        lease_seconds,
    }))
}

/// D2: the denial GET (no challenge); the callback's own query is kept as in C2.
pub fn denial_url(callback: &str, topic: &str, reason: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("hub.mode", "denied");
    q.append_pair("hub.topic", topic);
    q.append_pair("hub.reason", reason);
    join_query(callback, &q.finish())
}

fn join_query(callback: &str, query: &str) -> String {
    let sep = match callback.find('?') {
        None => "?",
        Some(_) if callback.ends_with('?') || callback.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{callback}{sep}{query}")
}

/// The verification URL: the callback's own query kept, the hub's parameters appended (C2).
pub fn verification_url(callback: &str, req: &HubRequest, challenge: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("hub.mode", if req.subscribe { "subscribe" } else { "unsubscribe" });
    q.append_pair("hub.topic", &req.topic);
    q.append_pair("hub.challenge", challenge);
    if req.subscribe {
        q.append_pair("hub.lease_seconds", &req.lease_seconds.to_string());
    }
    join_query(callback, &q.finish())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_hmac_vectors() {
        // RFC 2202 test case 2 (HMAC-SHA1) and RFC 4231 test case 2 (SHA-256/384/512).
        let (key, data) = ("Jefe", b"what do ya want for nothing?".as_slice());
        assert_eq!(
            signature(Signature::Sha1, key, data),
            "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            signature(Signature::Sha256, key, data),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature(Signature::Sha384, key, data),
            "sha384=af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"
        );
        assert_eq!(
            signature(Signature::Sha512, key, data),
            "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // Verification: any of the four algorithms, constant-time, refusing near misses.
        for alg in [Signature::Sha1, Signature::Sha256, Signature::Sha384, Signature::Sha512] {
            let good = signature(alg, key, data);
            assert!(signature_valid(Some(&good), key, data), "{good}");
            assert!(!signature_valid(Some(&good), "other", data));
            assert!(!signature_valid(Some(&good), key, b"what do ya want for nothing!"));
            assert!(
                !signature_valid(Some(&good[..good.len() - 2]), key, data),
                "a truncated MAC"
            );
        }
        assert!(!signature_valid(None, key, data));
        assert!(!signature_valid(Some("md5=abc"), key, data));
        assert!(!signature_valid(Some("sha256=zz"), key, data));
        assert!(!signature_valid(Some("sha256"), key, data));
    }

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes())
    }

    fn intent(s: &str) -> Result<Intent, HubError> {
        match parse_request(&form(s), false, &HubSettings::default())? {
            Parsed::Intent(i) => Ok(i),
            Parsed::Publish(_) => panic!("publish"),
        }
    }

    const OK: &str = "hub.mode=subscribe&hub.topic=https%3A%2F%2Fhub.example%2Fu%2Fa%2Fstream.atom&hub.callback=https%3A%2F%2Fsub.example%2Fcb";

    #[test]
    fn requests_parse_with_unknown_parameters_ignored() {
        let i = intent(&format!("{OK}&foo=bar&hub.foo=hub.bar")).unwrap();
        assert!(i.subscribe);
        assert_eq!(i.callback, "https://sub.example/cb");
        assert_eq!(i.lease_seconds, HubSettings::default().default_lease);
        assert_eq!(i.secret, None);
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(
            intent("hub.mode=subscribe&hub.topic=x").unwrap_err(),
            HubError::Missing("hub.callback")
        );
        assert!(matches!(
            intent("hub.mode=subscribe&hub.topic=x&hub.callback=").unwrap_err(),
            HubError::Missing(_)
        ));
        assert!(matches!(
            intent("hub.mode=watch&hub.topic=x&hub.callback=y").unwrap_err(),
            HubError::Mode(_)
        ));
        assert!(matches!(
            intent(&OK.replace("https%3A%2F%2Fsub", "ftp%3A%2F%2Fsub")).unwrap_err(),
            HubError::Callback(_)
        ));
        assert!(matches!(
            intent(&OK.replace("https%3A%2F%2Fsub.example", "http%3A%2F%2F127.0.0.1")).unwrap_err(),
            HubError::Callback(_)
        ));
        for lease in ["abc", "-5", "0", "1.5"] {
            assert!(matches!(
                intent(&format!("{OK}&hub.lease_seconds={lease}")).unwrap_err(),
                HubError::Lease(_)
            ));
        }
    }

    #[test]
    fn secrets_under_200_bytes_counted_as_utf8() {
        assert!(intent(&format!("{OK}&hub.secret={}", "a".repeat(199))).is_ok());
        assert_eq!(
            intent(&format!("{OK}&hub.secret={}", "a".repeat(200))).unwrap_err(),
            HubError::Secret
        );
        assert_eq!(
            intent(&format!("{OK}&hub.secret={}", "%C3%A9".repeat(100))).unwrap_err(),
            HubError::Secret
        );
    }

    #[test]
    fn strict_secrets_refuse_plain_http_callbacks() {
        let strict = HubSettings {
            strict_secrets: true,
            ..HubSettings::default()
        };
        let ask = |callback: &str, secret: &str, settings: &HubSettings| {
            let body = format!("hub.mode=subscribe&hub.topic=https://t/&hub.callback={callback}&hub.secret={secret}");
            parse_request(&form(&body), true, settings).map(|_| ())
        };
        assert_eq!(ask("http://cb/", "s", &strict), Err(HubError::PlainSecret));
        assert_eq!(ask("https://cb/", "s", &strict), Ok(()));
        assert_eq!(ask("http://cb/", "", &strict), Ok(()), "no secret, nothing to protect");
        assert_eq!(
            ask("http://cb/", "s", &HubSettings::default()),
            Ok(()),
            "accepted by default"
        );
    }

    #[test]
    fn leases_are_clamped_and_ignored_on_unsubscribe() {
        let s = HubSettings::default();
        assert_eq!(
            intent(&format!("{OK}&hub.lease_seconds=5")).unwrap().lease_seconds,
            s.min_lease
        );
        assert_eq!(
            intent(&format!("{OK}&hub.lease_seconds=999999999"))
                .unwrap()
                .lease_seconds,
            s.max_lease
        );
        let un = OK.replace("subscribe", "unsubscribe");
        assert_eq!(
            intent(&format!("{un}&hub.lease_seconds=abc")).unwrap().lease_seconds,
            s.default_lease
        );
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(normalize_url("http://h/a%7Eb%41%2F%C3%A9"), "http://h/a~bA%2F%C3%A9");
        assert_eq!(normalize_url("http://h/é%"), "http://h/é%");
        // A `%` before a multi-byte character (it once sliced inside the character).
        assert_eq!(normalize_url("http://x/%aé"), "http://x/%aé");
        assert_eq!(normalize_url("%é"), "%é");
        assert_eq!(normalize_url("%4"), "%4");
    }

    #[test]
    fn publish_takes_every_topic_and_url() {
        let Parsed::Publish(t) = parse_request(
            &form("hub.mode=publish&hub.url=http://a/x&hub.topic=http://a/y"),
            false,
            &HubSettings::default(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(t, ["http://a/y", "http://a/x"]);
    }

    #[test]
    fn verification_keeps_the_callback_query_first() {
        let req = HubRequest {
            id: 1,
            subscribe: true,
            topic: "http://hub/t?key=k".into(),
            callback: String::new(),
            user_id: Some(1),
            feed: String::new(),
            key_hash: String::new(),
            secret: None,
            lease_seconds: 60,
            attempts: 1,
        };
        let url = verification_url("http://s/cb?z=y&a=b&hub.challenge=imahacker", &req, "CH");
        assert!(
            url.starts_with("http://s/cb?z=y&a=b&hub.challenge=imahacker&hub.mode=subscribe&"),
            "{url}"
        );
        assert!(url.ends_with("&hub.challenge=CH&hub.lease_seconds=60"), "{url}");
        assert!(url.contains("hub.topic=http%3A%2F%2Fhub%2Ft%3Fkey%3Dk"), "{url}");
        assert!(verification_url("http://s/cb", &req, "CH").starts_with("http://s/cb?hub.mode="));
    }
}
