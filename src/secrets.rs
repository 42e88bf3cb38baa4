//! Tokens and feed keys: generated from the OS's CSPRNG, shown once, stored only as SHA-256.
//! They are 256-bit random values, so a fast hash is enough (no password stretching needed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new secret with a readable prefix: `fm_…` for tokens, `fk_…` for feed keys.
pub fn generate(prefix: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A secret derived from the server secret and `info` (HMAC-SHA256): the same inputs give
/// the same key, so it need not be stored, only its hash, like every other key.
pub fn derive(prefix: &str, server_secret: &str, info: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(server_secret.as_bytes()).expect("any key length");
    m.update(info.as_bytes());
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

/// An HMAC algorithm, as WebSub names it in `X-Hub-Signature` (I4: sha256 unless a
/// subscriber base needs another).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Signature {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Signature {
    pub fn parse(alg: &str) -> Option<Signature> {
        match alg.to_ascii_lowercase().as_str() {
            "sha1" => Some(Signature::Sha1),
            "sha256" => Some(Signature::Sha256),
            "sha384" => Some(Signature::Sha384),
            "sha512" => Some(Signature::Sha512),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Signature::Sha1 => "sha1",
            Signature::Sha256 => "sha256",
            Signature::Sha384 => "sha384",
            Signature::Sha512 => "sha512",
        }
    }
    /// HMAC of `body` keyed with the secret's UTF-8 bytes.
    pub fn mac(self, secret: &str, body: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, KeyInit, Mac};
        macro_rules! hmac_of {
            ($digest:ty) => {{
                // HMAC accepts keys of any length, so this cannot fail.
                let mut m = <Hmac<$digest> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Signature::Sha1 => hmac_of!(sha1::Sha1),
            Signature::Sha256 => hmac_of!(sha2::Sha256),
            Signature::Sha384 => hmac_of!(sha2::Sha384),
            Signature::Sha512 => hmac_of!(sha2::Sha512),
        }
    }
}

/// What the database keeps: hex SHA-256 of the secret.
pub fn hash(secret: &str) -> String {
    hex::encode(digest(secret))
}

/// Hex SHA-256 of any bytes (content hashes).
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The raw SHA-256 of a secret (an allocation-free cache key).
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The first characters, to tell tokens apart in listings without revealing them.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(7).collect()
}

/// Compares two secrets (or hashes) in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let a = generate("fm_").unwrap();
        let b = generate("fm_").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("fm_") && a.len() == 46, "{a}");
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
        assert!(!same("abc", "abcd"));
        let k = derive("fk_", "server", "self\u{0}1");
        assert_eq!(k, derive("fk_", "server", "self\u{0}1"), "derivation is stable");
        assert_ne!(k, derive("fk_", "server", "self\u{0}2"));
        assert_ne!(k, derive("fk_", "other server", "self\u{0}1"));
        assert_eq!(k.len(), a.len());
    }
}

/// Shown in place of a secret by `Debug`.
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A database URL for logs and `Debug`: its password replaced by `<redacted>`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string().replacen(":redacted@", ":<redacted>@", 1)
        }
        Ok(_) => raw.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// A URL for `Debug`: the value of a `key` parameter (a feed key) replaced by `<redacted>`.
pub fn redact_key(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|p| if p.starts_with("key=") { "key=<redacted>" } else { p })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `Debug` for a struct holding secrets: the listed `secret` fields print as `<redacted>`
/// (or `None`), the `url` fields with their feed key redacted. Every field must be named, so
/// a field added later cannot leak unnoticed.
#[macro_export]
macro_rules! debug_redacted {
    ($ty:ident { $($field:ident),* $(,)? } $(url { $($url:ident),* $(,)? })? secret { $($secret:ident),* $(,)? }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $ty { $($field,)* $($($url,)*)? $($secret,)* } = self;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), $field))*
                    $($(.field(stringify!($url), &$crate::secrets::redact_key($url)))*)?
                    $(.field(stringify!($secret), &$crate::secrets::Shown::shown($secret)))*
                    .finish()
            }
        }
    };
}

/// How a secret field shows in `Debug`: present or not, never its value.
pub trait Shown {
    fn shown(&self) -> Option<Redacted>;
}

impl Shown for String {
    fn shown(&self) -> Option<Redacted> {
        Some(Redacted)
    }
}

impl Shown for Option<String> {
    fn shown(&self) -> Option<Redacted> {
        self.as_ref().map(|_| Redacted)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_feed_keys() {
        struct Sub {
            topic: String,
            id: i64,
            secret: Option<String>,
        }
        crate::debug_redacted!(Sub { id } url { topic } secret { secret });
        let shown = format!(
            "{:?}",
            Sub {
                topic: "http://h/u/a/stream.atom?x=1&key=fk_abc".into(),
                id: 7,
                secret: Some("s3cr3t".into())
            }
        );
        assert!(!shown.contains("fk_abc") && !shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("x=1&key=<redacted>") && shown.contains("id: 7"),
            "{shown}"
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact_url("postgres://u:hunter2@db/x"), "postgres://u:<redacted>@db/x");
        assert_eq!(redact_url("sqlite://data/feedmesh.db"), "sqlite://data/feedmesh.db");
    }
}
