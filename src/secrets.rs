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
