//! Validated names: users, devices and collections (parse, don't validate).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {rule}")]
pub struct NameError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

fn check(
    kind: &'static str,
    value: &str,
    rule: &'static str,
    ok: impl Fn(char) -> bool,
    max: usize,
) -> Result<(), NameError> {
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && value.len() <= max && value.chars().all(ok) {
        Ok(())
    } else {
        Err(NameError {
            kind,
            value: value.chars().take(80).collect(),
            rule,
        })
    }
}

/// Characters a name shown to people must not hold: controls, and the invisible marks that
/// reorder or hide text (bidi embeddings, overrides and isolates, zero-width marks), with
/// which `report\u{202E}txt.exe` shows as `reportexe.txt`.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

macro_rules! name_type {
    ($name:ident, $kind:literal, $rule:literal, $ok:expr, $max:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                check($kind, value, $rule, $ok, $max).map(|()| $name(value.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    };
}

fn slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
}

name_type!(
    UserName,
    "user name",
    "1-64 characters a-z 0-9 - _ . starting with a letter or digit",
    slug_char,
    64
);
name_type!(
    DeviceName,
    "device name",
    "1-64 characters a-z 0-9 - _ . starting with a letter or digit",
    slug_char,
    64
);
name_type!(
    CollectionName,
    "collection name",
    "1-100 characters A-Z a-z 0-9 - _ . starting with a letter or digit",
    |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.',
    100
);

/// Whether a sync identity (`by`) names one of `user`'s endpoints (`alice/…` for `alice`).
pub fn is_endpoint_of(by: &str, user: &str) -> bool {
    by.strip_prefix(user).is_some_and(|rest| rest.starts_with('/'))
}

/// The sync identity (`by`) of a user's endpoint: `alice/laptop`.
pub fn endpoint_id(user: &UserName, device: &DeviceName) -> String {
    format!("{user}/{device}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_belong_to_their_user_only() {
        assert!(is_endpoint_of("alice/laptop", "alice"));
        assert!(!is_endpoint_of("alicebob/laptop", "alice"));
        assert!(!is_endpoint_of("alice", "alice"));
        assert!(!is_endpoint_of("bob/laptop", "alice"));
    }

    #[test]
    fn names_parse_or_say_why() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("Alice").is_err());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("../etc").is_err());
        assert!(CollectionName::parse("Notes").is_ok());
        assert!(CollectionName::parse("My Notes").is_err());
        let err = DeviceName::parse("lap top").unwrap_err().to_string();
        assert!(err.contains("device name") && err.contains("lap top"), "{err}");
    }
}
