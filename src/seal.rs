//! Secrets the hub must use again, not just compare (WebSub `hub.secret`s it signs with, the
//! secrets of its own subscriptions, the server secret keys derive from), sealed at rest
//! with ChaCha20-Poly1305. The key lives outside the database: `FEEDMESH_SECRET_KEY`, or a
//! `secret.key` file in the data directory, made (mode 0600) on first start. A dump of the
//! database alone reveals none of them.
//!
//! A sealed value is `v1.` and the URL-safe base64 of a random 96-bit nonce, the ciphertext
//! and its tag. A value that does not open under the key is a secret from before sealing
//! (stored in clear); `SqlStore` seals those on open, so they do not stay that way.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Where a key comes from when `FEEDMESH_SECRET_KEY` is not set.
pub const KEY_FILE: &str = "secret.key";

const PREFIX: &str = "v1.";
/// Binds every sealed value to this use (associated data).
const AAD: &[u8] = b"feedmesh secret v1";

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A key from 64 hex digits (32 bytes), as `openssl rand -hex 32` prints.
    pub fn from_hex(hex_key: &str) -> anyhow::Result<Sealer> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                anyhow::anyhow!("a secret key is 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`")
            })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| anyhow::anyhow!("unusable secret key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// A new random key, and its hex form.
    pub fn generate() -> anyhow::Result<(Sealer, String)> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
        let hex_key = hex::encode(bytes);
        Ok((Sealer::from_hex(&hex_key)?, hex_key))
    }

    /// The key given (`FEEDMESH_SECRET_KEY`), else the one in `DATA_DIR/secret.key`, made
    /// there with mode 0600 if there is none yet.
    pub fn load(given: Option<&str>, data_dir: &Path) -> anyhow::Result<Sealer> {
        if let Some(hex_key) = given {
            return Sealer::from_hex(hex_key).map_err(|e| anyhow::anyhow!("--secret-key/FEEDMESH_SECRET_KEY: {e}"));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Sealer::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
                let (sealer, hex_key) = Sealer::generate()?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(&path) {
                    Ok(mut file) => {
                        file.write_all(format!("{hex_key}\n").as_bytes())
                            .and_then(|()| file.sync_all())
                            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                        Ok(sealer)
                    }
                    // Another process made it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Sealer::load(None, data_dir),
                    Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
                }
            }
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// `plain`, sealed under a fresh random nonce.
    pub fn seal(&self, plain: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(plain.as_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| anyhow::anyhow!("cannot seal a secret"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The secret in a value sealed under this key; None for anything else (a value from
    /// before sealing, another key's, or a damaged one).
    pub fn open(&self, stored: &str) -> Option<String> {
        let mut bytes = URL_SAFE_NO_PAD.decode(stored.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut bytes[NONCE_LEN..])
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// The secret a stored value holds: opened when sealed, as it is when from before sealing.
    pub fn reveal(&self, stored: String) -> String {
        self.open(&stored).unwrap_or(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_under_their_key() {
        let (a, _) = Sealer::generate().unwrap();
        let (b, _) = Sealer::generate().unwrap();
        let sealed = a.seal("s3cret").unwrap();
        assert!(sealed.starts_with("v1.") && !sealed.contains("s3cret"), "{sealed}");
        assert_ne!(sealed, a.seal("s3cret").unwrap(), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).as_deref(), Some("s3cret"));
        assert_eq!(b.open(&sealed), None, "another key");
        assert_eq!(a.reveal("plain from before".into()), "plain from before");
        // Any change to a sealed value is refused.
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 1;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(&String::from_utf8(damaged).unwrap()), None);
        assert_eq!(a.open("v1."), None);
        assert_eq!(a.open("v1.!!"), None);
        assert_eq!(a.open(&a.seal("").unwrap()).as_deref(), Some(""));
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(Sealer::from_hex(&"ab".repeat(32)).is_ok());
        assert!(Sealer::from_hex(&format!("{}\n", "ab".repeat(32))).is_ok());
        for bad in ["", "xyz", &"ab".repeat(31), &"ab".repeat(33), &"zz".repeat(32)] {
            let e = Sealer::from_hex(bad).unwrap_err().to_string();
            assert!(e.contains("64 hex digits"), "{e}");
        }
    }

    #[test]
    fn the_key_file_is_made_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("feedmesh-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Sealer::load(None, &dir).unwrap();
        let path = dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = Sealer::load(None, &dir).unwrap();
        assert_eq!(
            b.open(&a.seal("x").unwrap()).as_deref(),
            Some("x"),
            "the same key again"
        );
        let given = "cd".repeat(32);
        let c = Sealer::load(Some(&given), &dir).unwrap();
        assert_eq!(c.open(&a.seal("x").unwrap()), None, "the given key wins over the file");
        std::fs::write(&path, "not a key").unwrap();
        let e = Sealer::load(None, &dir).unwrap_err().to_string();
        assert!(e.contains("secret.key") && e.contains("64 hex digits"), "{e}");
        let e = Sealer::load(Some("short"), &dir).unwrap_err().to_string();
        assert!(e.contains("FEEDMESH_SECRET_KEY"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
