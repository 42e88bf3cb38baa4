//! The kinds of connector the hub runs, and what their runtime shares (the runs, the
//! listeners, the routes): how a stored connector is built, whom it writes as, and how a
//! failure of the hub's own store is told to it.

use std::collections::BTreeMap;

use feedmesh_connector::{ConfigError, Connector, ConnectorError, OptionSpec, Options, Secret};

use super::Core;
use crate::error::{Error, Result};
use crate::store::{ConnectorRow, Principal};

/// A kind of connector: its options and how it is built from them.
pub struct Kind {
    pub name: &'static str,
    pub options: &'static [OptionSpec],
    /// What `--help` and the API say it does.
    pub about: &'static str,
    /// How often it is pulled when the service says nothing (seconds).
    pub interval: u64,
    /// How it is authorised when no token option is given.
    pub oauth: OAuth,
    /// It posts the items of its outbox collection (`KIND-outbox`, made when it is added).
    pub posts: bool,
    /// It listens to what its service pushes (`Connector::listen`), beside its runs.
    pub listens: bool,
    /// Its items are contacts: it writes into `Contacts` (each card folded into the contact
    /// it is, `contacts::take_pulled_all`), and what changes there in the hub is its outbox.
    pub contacts: bool,
    /// Builds it from its options and, when authorised by OAuth, the current access token.
    pub(super) build: Build,
}

/// How a kind is authorised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuth {
    /// It is not (a public feed).
    No,
    /// At this provider, with the client its user registered (`feedmesh oauth-client add`).
    Provider(&'static str),
    /// At the provider the connector's option of this name gives (an IMAP server's
    /// XOAUTH2, `oauth_provider=google`), when it gives one; otherwise not.
    Named(&'static str),
    /// At the Mastodon instance its `instance` option names, where the hub registers
    /// itself as a client (`POST /api/v1/apps`) the first time.
    MastodonApp,
}

/// Builds a connector from its options and, when authorised by OAuth, its access token.
type Build = fn(&Options, Option<Secret>) -> Result<Box<dyn Connector>, ConfigError>;

/// A post's `sent_seq` when the hub's version differs from the service's and is to be sent
/// (an address book's card folded into a contact that had more).
pub const RESEND: i64 = -1;

/// The kinds this hub runs.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "feed",
        options: feedmesh_connector_feed::OPTIONS,
        about: "an RSS, Atom or JSON Feed document, polled with conditional GETs",
        interval: 15 * 60,
        oauth: OAuth::No,
        posts: false,
        listens: false,
        contacts: false,
        build: |o, _| {
            let c = feedmesh_connector_feed::FeedConfig::from_options(o)?;
            Ok(Box::new(feedmesh_connector_feed::FeedConnector::new(c)))
        },
    },
    Kind {
        name: "github",
        options: feedmesh_connector_github::OPTIONS,
        about: "a GitHub user's events and received events",
        interval: 5 * 60,
        oauth: OAuth::Provider("github"),
        posts: false,
        listens: false,
        contacts: false,
        build: |o, token| {
            let c = feedmesh_connector_github::GithubConfig::from_options(o)?;
            let mut g = feedmesh_connector_github::GithubConnector::new(c);
            if let Some(t) = token {
                g = g.with_oauth_token(t);
            }
            Ok(Box::new(g))
        },
    },
    Kind {
        name: "mastodon",
        options: feedmesh_connector_mastodon::OPTIONS,
        about: "a Mastodon account's home timeline, notifications and own posts",
        interval: 60,
        oauth: OAuth::MastodonApp,
        posts: true,
        listens: true,
        contacts: false,
        build: |o, token| {
            let c = feedmesh_connector_mastodon::MastodonConfig::from_options(o)?;
            let mut m = feedmesh_connector_mastodon::MastodonConnector::new(c);
            if let Some(t) = token {
                m = m.with_oauth_token(t);
            }
            Ok(Box::new(m))
        },
    },
    Kind {
        name: "imap",
        options: feedmesh_connector_imap::OPTIONS,
        about: "a mailbox's messages over IMAP (INBOX and Sent), as e-mail activities; IDLE for new mail",
        interval: 5 * 60,
        oauth: OAuth::Named("oauth_provider"),
        posts: false,
        listens: true,
        contacts: false,
        build: |o, token| {
            let c = feedmesh_connector_imap::ImapConfig::from_options(o)?;
            let mut m = feedmesh_connector_imap::ImapConnector::new(c);
            if let Some(t) = token {
                m = m.with_oauth_token(t);
            }
            Ok(Box::new(m))
        },
    },
    Kind {
        name: "carddav",
        options: feedmesh_connector_carddav::OPTIONS,
        about: "an address book on a CardDAV server, synced both ways with Contacts",
        interval: 15 * 60,
        oauth: OAuth::No,
        posts: true,
        listens: false,
        contacts: true,
        build: |o, _| {
            let c = feedmesh_connector_carddav::CardDavConfig::from_options(o)?;
            Ok(Box::new(feedmesh_connector_carddav::CardDavConnector::new(c)))
        },
    },
];

pub fn kind(name: &str) -> Result<&'static Kind> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        Error::Invalid(format!("no connector kind {name:?} (kinds: {})", names.join(", ")))
    })
}

/// The kinds and their options, for `feedmesh connector add --help`.
pub fn kinds_help() -> String {
    let mut out = String::from("Kinds and their options:\n");
    for k in KINDS {
        out.push_str(&format!("\n  {}: {}\n", k.name, k.about));
        for o in k.options {
            let mark = match (o.required, o.secret) {
                (true, true) => " (required, secret)",
                (true, false) => " (required)",
                (false, true) => " (secret)",
                (false, false) => "",
            };
            out.push_str(&format!("    --option {}=…{mark}: {}\n", o.name, o.doc));
        }
    }
    out
}

/// Builds a stored connector from its options and access token.
pub fn build(c: &ConnectorRow, kind: &Kind, token: Option<Secret>) -> Result<Box<dyn Connector>, ConnectorError> {
    match stored_options(c, kind).map(|o| (kind.build)(&o, token)) {
        Ok(Ok(connector)) => Ok(connector),
        Ok(Err(e)) => Err(ConnectorError::Permanent(e.to_string())),
        Err(e) => Err(ConnectorError::Permanent(format!(
            "its stored options cannot be read: {e}"
        ))),
    }
}

/// The options a connector was added with, secret ones included.
fn stored_options(c: &ConnectorRow, kind: &Kind) -> anyhow::Result<Options> {
    let mut pairs: BTreeMap<String, String> = serde_json::from_str(&c.options)?;
    if let Some(s) = &c.secrets {
        pairs.extend(serde_json::from_str::<BTreeMap<String, String>>(s)?);
    }
    Ok(Options::new(kind.options, pairs)?)
}

/// Who a connector writes as (the endpoint `connector-ID` of its user), and where.
pub async fn writer(core: &Core, c: &ConnectorRow) -> anyhow::Result<(Principal, crate::store::Collection)> {
    let who = super::principal(core, c.user_id, &format!("connector-{}", c.id)).await?;
    let col = core
        .mesh
        .store
        .collections(c.user_id)
        .await?
        .into_iter()
        .find(|col| col.id == c.collection_id)
        .ok_or_else(|| anyhow::anyhow!("the connector's collection is gone"))?;
    Ok((who, col))
}

pub fn store_err(e: anyhow::Error) -> ConnectorError {
    ConnectorError::Unreachable(format!("the hub's store failed: {e:#}"))
}
