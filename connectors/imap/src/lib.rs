//! The IMAP connector: the messages of a mailbox's folders (INBOX and Sent by default) as
//! activities: From as the actor, To/Cc/Bcc as recipients (so what you wrote links to
//! Bob as well as what he wrote), the subject, the text body (HTML sanitised when it is
//! all there is), threaded by Message-ID/In-Reply-To/References, attachments as files the
//! hub stores.
//!
//! Its cursor per folder is UIDVALIDITY + the last UID taken (+ HIGHESTMODSEQ with
//! CONDSTORE, for flag changes). A message's id comes from its Message-ID, not its UID, so
//! a folder recreated (a new UIDVALIDITY) is read again without one duplicate. It listens
//! with IDLE on the first folder, so a message delivered arrives at once.
//!
//! MIME is parsed by `mail-parser` (encoded words, charsets, nested multiparts; broken
//! messages survive as what could be read). What a server sends is bounded: a folder's
//! new messages are read a page at a time, each no more than `max_message_mb`, and a
//! connection reads no more than it asked for plus a margin.

#![forbid(unsafe_code)]

mod mail;
mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use feedmesh_connector::{
    Batch, ConfigError, Connector, ConnectorError, Cursor, Http, OptionSpec, Options, Secret, Sink,
};

pub use mail::{entry_of, item_id};
use wire::{Capabilities, Imap};

/// The options of `feedmesh connector add USER imap`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "host",
        required: true,
        secret: false,
        many: false,
        doc: "the IMAP server's host name",
    },
    OptionSpec {
        name: "port",
        required: false,
        secret: false,
        many: false,
        doc: "its port (default 993 with tls=implicit, else 143)",
    },
    OptionSpec {
        name: "tls",
        required: false,
        secret: false,
        many: false,
        doc: "implicit (IMAPS, the default), starttls, or none (only on a trusted network)",
    },
    OptionSpec {
        name: "user",
        required: true,
        secret: false,
        many: false,
        doc: "the account's login",
    },
    OptionSpec {
        name: "password",
        required: false,
        secret: true,
        many: false,
        doc: "its password (sealed at rest); or authorise by OAuth for XOAUTH2",
    },
    OptionSpec {
        name: "token",
        required: false,
        secret: true,
        many: false,
        doc: "an OAuth access token for XOAUTH2 (sealed at rest), instead of a password",
    },
    OptionSpec {
        name: "oauth_provider",
        required: false,
        secret: false,
        many: false,
        doc: "the OAuth client (feedmesh oauth-client add) that authorises XOAUTH2 (google, microsoft…)",
    },
    OptionSpec {
        name: "mailbox",
        required: false,
        secret: false,
        many: true,
        doc: "a folder to read, once per folder (default: INBOX and the Sent folder)",
    },
    OptionSpec {
        name: "ca_file",
        required: false,
        secret: false,
        many: false,
        doc: "a PEM file of certificates to trust for this server (a self-signed one)",
    },
    OptionSpec {
        name: "max_message_mb",
        required: false,
        secret: false,
        many: false,
        doc: "the largest message kept whole, in MB (default 64); a larger one keeps its headers and text",
    },
    OptionSpec {
        name: "timeout",
        required: false,
        secret: false,
        many: false,
        doc: "seconds a silent server is waited for (default 60)",
    },
];

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Implicit,
    StartTls,
    None,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub user: String,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub oauth: bool,
    /// Empty: INBOX and the folder the server marks `\Sent` (or names Sent).
    pub mailboxes: Vec<String>,
    pub ca_file: Option<String>,
    pub max_message: usize,
    pub timeout: Duration,
}

impl ImapConfig {
    pub fn from_options(o: &Options) -> Result<Self, ConfigError> {
        let tls = match o.get("tls").unwrap_or("implicit") {
            "implicit" | "ssl" | "imaps" => Tls::Implicit,
            "starttls" => Tls::StartTls,
            "none" | "plain" => Tls::None,
            other => {
                return Err(ConfigError::new(
                    "tls",
                    format!("{other:?}: implicit, starttls or none"),
                ));
            }
        };
        let port = match o.get("port") {
            None => {
                if tls == Tls::Implicit {
                    993
                } else {
                    143
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConfigError::new("port", format!("{p:?} is not a port")))?,
        };
        let host = o.get("host").unwrap_or_default().trim().to_string();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(ConfigError::new("host", format!("{host:?} is not a host name")));
        }
        let number = |name: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match o.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| ConfigError::new(name, format!("{v:?}: a whole number from 1 to {max}"))),
            }
        };
        let oauth = o.get("oauth_provider").is_some();
        let (password, token) = (o.secret("password"), o.secret("token"));
        if password.is_none() && token.is_none() && !oauth {
            return Err(ConfigError::new(
                "password",
                "required (or --option token=… or --option oauth_provider=… for XOAUTH2)",
            ));
        }
        let mailboxes: Vec<String> = o.all("mailbox").into_iter().map(str::to_string).collect();
        for m in &mailboxes {
            if m.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                return Err(ConfigError::new(
                    "mailbox",
                    format!("{m:?}: a folder name without quotes or control characters"),
                ));
            }
        }
        Ok(ImapConfig {
            host,
            port,
            tls,
            user: o.get("user").unwrap_or_default().to_string(),
            password,
            token,
            oauth,
            mailboxes,
            ca_file: o.get("ca_file").map(str::to_string),
            max_message: number("max_message_mb", 64, 1024)? as usize * 1024 * 1024,
            timeout: Duration::from_secs(number("timeout", 60, 3600)?),
        })
    }
}

/// What the connector keeps between pulls: per folder, where it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    #[serde(default)]
    pub boxes: BTreeMap<String, BoxState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoxState {
    pub validity: u32,
    /// The highest UID taken.
    pub uid: u32,
    /// HIGHESTMODSEQ when every change up to it was taken (CONDSTORE); 0 when unknown.
    #[serde(default)]
    pub modseq: u64,
}

/// Messages one pull reads of a folder at most (the rest: `Batch::more`, the hub pulls
/// again at once, the cursor past what was stored).
pub const PAGE: usize = 500;
/// Bytes one pull reads at most, whatever the count.
pub const PAGE_BYTES: usize = 96 * 1024 * 1024;

pub struct ImapConnector {
    config: ImapConfig,
    /// The access token the OAuth runtime gave (XOAUTH2).
    oauth_token: Option<Secret>,
}

impl ImapConnector {
    pub fn new(config: ImapConfig) -> Self {
        ImapConnector {
            config,
            oauth_token: None,
        }
    }
    pub fn with_oauth_token(mut self, token: Secret) -> Self {
        self.oauth_token = Some(token);
        self
    }

    async fn open(&self, http: &dyn Http) -> Result<Imap, ConnectorError> {
        let token = self.oauth_token.as_ref().or(self.config.token.as_ref());
        Imap::open(http, &self.config, token).await
    }

    /// The folders to read: those configured, or INBOX and the Sent folder.
    async fn folders(&self, imap: &mut Imap) -> Result<Vec<String>, ConnectorError> {
        if !self.config.mailboxes.is_empty() {
            return Ok(self.config.mailboxes.clone());
        }
        let mut out = vec!["INBOX".to_string()];
        if let Some(sent) = imap.sent_folder().await? {
            out.push(sent);
        }
        Ok(out)
    }
}

#[async_trait]
impl Connector for ImapConnector {
    fn kind(&self) -> &'static str {
        "imap"
    }

    async fn check(&self, http: &dyn Http) -> Result<String, ConnectorError> {
        let mut imap = self.open(http).await?;
        let folders = self.folders(&mut imap).await?;
        for f in &folders {
            imap.select(f).await?;
        }
        imap.logout().await;
        Ok(format!("{}@{}", self.config.user, self.config.host))
    }

    async fn pull(&self, http: &dyn Http, cursor: &Cursor) -> Result<Batch, ConnectorError> {
        let mut state: State = match cursor.state.as_deref() {
            Some(s) => serde_json::from_str(s).unwrap_or_default(),
            None => State::default(),
        };
        let mut imap = self.open(http).await?;
        let folders = self.folders(&mut imap).await?;
        let mut items = Vec::new();
        let mut more = false;
        let mut budget = Budget {
            messages: PAGE,
            bytes: PAGE_BYTES,
        };
        for folder in &folders {
            if budget.spent() {
                more = true;
                break;
            }
            let was = state.boxes.get(folder).cloned().unwrap_or_default();
            let (now, left) = imap
                .take_folder(folder, &was, self.config.max_message, &mut budget, &mut items)
                .await?;
            more |= left;
            state.boxes.insert(folder.clone(), now);
        }
        imap.logout().await;
        // Taken oldest first; a batch lists newest first.
        items.reverse();
        Ok(Batch {
            items,
            cursor: Cursor {
                state: Some(serde_json::to_string(&state).map_err(|e| ConnectorError::Malformed(e.to_string()))?),
                ..Cursor::default()
            },
            more,
            url: format!("imap://{}@{}:{}/", self.config.user, self.config.host, self.config.port),
            ..Batch::default()
        })
    }

    async fn listen(&self, http: &dyn Http, sink: &mut dyn Sink) -> Result<(), ConnectorError> {
        let mut imap = self.open(http).await?;
        if !imap.capabilities().idle {
            return Err(ConnectorError::Unsupported("listening (the server has no IDLE)"));
        }
        let folder = self.folders(&mut imap).await?.remove(0);
        imap.listen(&folder, self.config.max_message, sink).await
    }
}

/// What is left of one pull's reading.
#[derive(Debug)]
pub struct Budget {
    pub messages: usize,
    pub bytes: usize,
}

impl Budget {
    fn spent(&self) -> bool {
        self.messages == 0 || self.bytes == 0
    }
}

impl std::fmt::Debug for ImapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConnector")
            .field("host", &self.config.host)
            .field("user", &self.config.user)
            .finish_non_exhaustive()
    }
}

#[doc(hidden)]
pub fn capabilities_of(list: &[&str]) -> Capabilities {
    Capabilities::of(list.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<ImapConfig, ConfigError> {
        let o = Options::new(OPTIONS, pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        ImapConfig::from_options(&o)
    }

    #[test]
    fn options_are_checked_and_defaulted() {
        let c = opts(&[("host", "mail.example"), ("user", "u"), ("password", "p")]).unwrap();
        assert_eq!((c.port, c.tls), (993, Tls::Implicit));
        assert!(c.mailboxes.is_empty());
        let c = opts(&[
            ("host", "mail.example"),
            ("user", "u"),
            ("password", "p"),
            ("tls", "starttls"),
            ("mailbox", "INBOX"),
            ("mailbox", "Sent Items"),
        ])
        .unwrap();
        assert_eq!((c.port, c.tls), (143, Tls::StartTls));
        assert_eq!(c.mailboxes, ["INBOX", "Sent Items"]);
        for bad in [
            vec![("host", "mail.example"), ("user", "u")],
            vec![
                ("host", "mail.example"),
                ("user", "u"),
                ("password", "p"),
                ("tls", "maybe"),
            ],
            vec![
                ("host", "mail.example"),
                ("user", "u"),
                ("password", "p"),
                ("port", "99999"),
            ],
            vec![("host", "a b"), ("user", "u"), ("password", "p")],
            vec![("host", "h"), ("user", "u"), ("password", "p"), ("mailbox", "a\"b")],
            vec![("host", "h"), ("user", "u"), ("password", "p"), ("max_message_mb", "0")],
        ] {
            assert!(opts(&bad).is_err(), "{bad:?}");
        }
        let e = Options::new(
            OPTIONS,
            [("user", "a"), ("user", "b")].map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
