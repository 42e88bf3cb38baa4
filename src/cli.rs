//! The command line: `serve`, and the admin commands that act on the store directly.
//! Human messages go to stderr; what a script wants (a token, a URL) is stdout's last line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::blobs::Blobs;
use crate::config::{DataArgs, HubSettings, ServeArgs, Settings};
use crate::error::Error;
use crate::jobs::shutdown_signal;
use crate::store::{Store, User};
use crate::usecases::items::Mesh;
use crate::usecases::{Core, accounts, connectors, contacts, follows, keys, logins, routes};
use crate::websub::WebSub;

/// feedmesh: link your devices and services through RSS/Atom feeds.
///
/// Start with `feedmesh serve`, then add a user, a device token and a collection.
#[derive(Parser, Debug)]
#[command(name = "feedmesh", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub data: DataArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the hub: AtomPub publishing, FeedSync merging and every feed over HTTP.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage device tokens (each token belongs to one device of one user).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage collections (FeedSync item sets, each an AtomPub collection).
    #[command(subcommand)]
    Collection(CollectionCmd),
    /// Manage feed keys: secret feed URLs for readers that cannot log in.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Follow outside feeds into a collection (WebSub push when the feed names a hub, polling
    /// with conditional GETs otherwise); a running `serve` picks changes up within a second.
    #[command(subcommand)]
    Follow(FollowCmd),
    /// Connect outside services (feeds, GitHub, …): each connector pulls into a collection of
    /// its own; a running `serve` runs a new or resumed one within a second.
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Route a collection into a connector's outbox: what arrives there (passing the filter)
    /// is posted by that connector, edits edit and deletions delete; loops post once.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Import what another program exported (`import opml`: a feed reader's subscriptions).
    #[command(subcommand)]
    Import(ImportCmd),
    /// The phone's texts and calls (`phone import`: an "SMS Backup & Restore" file).
    #[command(subcommand)]
    Phone(PhoneCmd),
    /// Register the hub as an OAuth 2.0 client at a provider, for connectors authorised by
    /// the OAuth round trip (the provider must allow BASE/oauth/callback as redirect URI).
    #[command(name = "oauth-client", subcommand)]
    OauthClient(OauthClientCmd),
    /// Manage contacts: people with identities (e-mail, phone, handles, profiles), kept as
    /// vCard 4 items of USER's Contacts collection; activities link to them by identity.
    #[command(subcommand)]
    Contact(ContactCmd),
    /// Keep a folder in sync with a collection through a hub (`agent status --dir DIR`: its
    /// last sync, pending changes and conflicts).
    Agent(crate::agent::AgentArgs),
}

/// The hub's public URL, for the commands that print or register URLs of it.
#[derive(clap::Args, Debug)]
pub struct BaseUrl {
    /// Public URL of the hub: in the URLs printed, and where an OAuth provider sends the
    /// browser back (BASE/oauth/callback).
    #[arg(
        long = "base-url",
        env = "FEEDMESH_BASE_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    url: String,
}

impl BaseUrl {
    /// Without a trailing slash.
    pub fn get(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }
}

#[derive(Subcommand, Debug)]
pub enum ContactCmd {
    /// Import a vCard file (3.0 or 4.0, any number of cards: what phones, Google and Apple
    /// export). A card whose UID or any identity a contact has updates that contact, so
    /// importing the same file twice adds nothing. A broken card fails the whole file.
    Import {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The .vcf file (`-` reads standard input).
        file: std::path::PathBuf,
    },
    /// Write every contact of USER as vCard 4.0 to standard output.
    Export {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// List USER's contacts, one line each: id, name, organisation, identities, tags.
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCmd {
    /// Add a connector of KIND for USER; its first pull starts as soon as `serve` sees it.
    #[command(after_long_help = crate::usecases::connectors::kinds_help())]
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The kind of service: feed, github, mastodon.
        kind: String,
        /// The collection it writes into (made if missing; default: the kind's name).
        #[arg(long, value_name = "NAME")]
        collection: Option<String>,
        /// An option of the kind, repeated as needed (see below); secret ones are sealed.
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        #[command(flatten)]
        base_url: BaseUrl,
        /// Let the URLs given (and a registration at a Mastodon instance) reach loopback and
        /// private addresses, as `serve --allow-private-network` lets its runs.
        #[arg(long, env = "FEEDMESH_ALLOW_PRIVATE_NETWORK")]
        allow_private_network: bool,
    },
    /// List USER's connectors: id, kind, account, state, last sync, last error.
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Remove connector ID of USER (what it brought stays in its collection).
    Remove {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The connector's id, as `feedmesh connector list` shows it.
        id: i64,
    },
    /// Pause connector ID of USER (no runs until resumed).
    Pause {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The connector's id, as `feedmesh connector list` shows it.
        id: i64,
    },
    /// Resume connector ID of USER (paused, or stopped by a permanent error): it runs at once.
    Resume {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The connector's id, as `feedmesh connector list` shows it.
        id: i64,
    },
    /// Authorise connector ID of USER again at its OAuth provider (after `needs-reconnect`,
    /// or a lost URL): prints the URL to open as the last line of stdout.
    Reconnect {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The connector's id, as `feedmesh connector list` shows it.
        id: i64,
        #[command(flatten)]
        base_url: BaseUrl,
    },
    /// Run connector ID of USER now.
    Sync {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The connector's id, as `feedmesh connector list` shows it.
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Route USER's collection FROM into connector TO's outbox, for what arrives from now
    /// on (e.g. `--from github --to 3 --filter q=released`: GitHub releases to Mastodon).
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The collection whose new items are routed (`feedmesh collection list`).
        #[arg(long, value_name = "COLLECTION")]
        from: String,
        /// The connector that posts them (one that posts: mastodon), as `connector list` shows it.
        #[arg(long, value_name = "CONNECTOR_ID")]
        to: i64,
        /// Only items passing this filter, repeated as needed; the search's filters:
        /// q=WORDS (the search language: words, "a phrase", prefix*, -word), type=TYPE
        /// (Note, Article, Message, Create…), contact=ID, company=SLUG, endpoint=DEVICE,
        /// since=DATE, until=DATE, tags=a,b.
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
    },
    /// List USER's routes: id, from, to (connector id and kind), filter.
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Remove route ID of USER (what it routed stays posted).
    Remove {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The route's id, as `feedmesh route list` shows it.
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PhoneCmd {
    /// Import an "SMS Backup & Restore" XML file (sms-….xml or calls-….xml; `-` reads
    /// standard input) into USER's collection `phone`: texts and calls become activities
    /// linked by their numbers (E.164, national numbers read in --default-region). Records
    /// already imported change nothing; a file that is not a backup changes nothing.
    Import {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The backup file.
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// Subscribe USER to every feed of an OPML file (what feed readers export): a feed
    /// connector each, in a collection named after its outermost folder. Feeds already
    /// followed are left alone, so importing the file again adds nothing.
    Opml {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The .opml file (`-` reads standard input).
        file: std::path::PathBuf,
        /// The collection of feeds outside any folder.
        #[arg(long, value_name = "NAME", default_value = "Feeds")]
        collection: String,
        /// Let feeds on loopback and private addresses in, as `serve --allow-private-network`.
        #[arg(long, env = "FEEDMESH_ALLOW_PRIVATE_NETWORK")]
        allow_private_network: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OauthClientCmd {
    /// Add (or replace) USER's client registration at PROVIDER (`github` has its endpoints
    /// known; for any other, --issuer reads them from the provider's metadata, or give
    /// --authorize-url and --token-url). Without --client-id, the hub registers itself at
    /// the issuer (RFC 7591 dynamic registration) for BASE/oauth/callback.
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The provider's name (github, or one of your own naming).
        provider: String,
        /// The client id the provider gave (omit it to have the hub register itself, with --issuer).
        #[arg(long, value_name = "ID")]
        client_id: Option<String>,
        /// The client secret the provider gave (`-` reads it from standard input); sealed at rest.
        #[arg(long, value_name = "SECRET")]
        client_secret: Option<String>,
        /// The authorization server's issuer URL: its endpoints (and registration endpoint)
        /// are read from its metadata (RFC 8414 or OpenID Connect Discovery).
        #[arg(long, value_name = "URL")]
        issuer: Option<String>,
        /// The provider's authorization endpoint.
        #[arg(long, value_name = "URL")]
        authorize_url: Option<String>,
        /// The provider's token endpoint.
        #[arg(long, value_name = "URL")]
        token_url: Option<String>,
        /// The provider's RFC 7009 revocation endpoint (tokens are revoked when a connector goes).
        #[arg(long, value_name = "URL")]
        revoke_url: Option<String>,
        /// The scopes asked for, space-separated (github: read:user by default).
        #[arg(long, value_name = "SCOPES")]
        scope: Option<String>,
        #[command(flatten)]
        base_url: BaseUrl,
        /// Let the issuer (and the endpoints given) be on loopback and private addresses.
        #[arg(long, env = "FEEDMESH_ALLOW_PRIVATE_NETWORK")]
        allow_private_network: bool,
    },
    /// List USER's client registrations (provider, client id, endpoints; never the secret).
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Remove USER's client registration at PROVIDER.
    Remove {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The provider's name.
        provider: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FollowCmd {
    /// Follow the feed at URL into USER's collection NAME.
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The feed's URL (Atom, RSS 2.0 or JSON Feed; http or https).
        url: String,
        /// The user's collection the feed's entries go into (`feedmesh collection add`).
        #[arg(long, value_name = "NAME")]
        collection: String,
    },
    /// List USER's follows (id, state, URL, last error).
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Stop following: remove follow ID of USER (`serve` then answers its hub 410 Gone).
    Remove {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The follow's id, as `feedmesh follow list` shows it.
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (name: a-z 0-9 - _ .).
    Add {
        /// The user's name: a-z 0-9 - _ . (it appears in URLs: /u/NAME/…).
        name: String,
    },
    /// List users.
    List,
    /// Set USER's account password, for the web app's login form and reader apps. Asked
    /// twice on a terminal; otherwise read from the first line of standard input (so
    /// `echo "$PW" | feedmesh user passwd alice` works). Stored as an argon2id hash; the
    /// user's browser sessions end.
    Passwd {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Make an app password for one reader app of USER and print it (once: only its hash is
    /// stored). Reader apps (Google Reader, Miniflux and Fever APIs) take it in place of the
    /// account password, and it can be revoked alone.
    AppPassword {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// What it is for (e.g. "newsboat on the laptop").
        #[arg(long)]
        name: String,
    },
    /// List USER's app passwords: id, name, prefix, created, last used, state.
    AppPasswords {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Revoke app password ID of USER: apps using it are refused from then on.
    RevokeAppPassword {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The app password's id (see `user app-passwords`).
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token for a device of USER and print it (once: only its hash is stored).
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The device the token is for; it becomes the endpoint USER/DEVICE.
        #[arg(long, value_name = "NAME")]
        device: String,
    },
    /// List USER's tokens (id, device, prefix, state).
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Revoke token ID of USER; requests with it get 401 at once.
    Revoke {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The token's id, as `feedmesh token list` shows it.
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum CollectionCmd {
    /// Add collection NAME for USER.
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The collection's name: 1-100 of A-Z a-z 0-9 - _ . (e.g. Documents).
        name: String,
    },
    /// List USER's collections.
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a key for one of USER's feeds (e.g. /u/alice/stream.atom) and print its URL.
    Add {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The feed's path on the hub: /u/USER/stream.atom, /u/USER/endpoints/DEVICE/stream.rss,
        /// /atompub/USER/COLLECTION …; the key opens it in every format.
        feed: String,
        #[command(flatten)]
        base_url: BaseUrl,
    },
    /// List USER's feed keys.
    List {
        /// The user (as made by `feedmesh user add`).
        user: String,
    },
    /// Revoke feed key ID of USER.
    Revoke {
        /// The user (as made by `feedmesh user add`).
        user: String,
        /// The key's id, as `feedmesh key list` shows it.
        id: i64,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(serve) => {
            let hub = HubSettings {
                signature: serve.websub_signature,
                rate_limit: serve.hub_rate_limit,
                open: serve.open_hub,
                strict_secrets: serve.websub_strict_secrets,
                strict_topic_hub_link: serve.websub_strict_topic_hub_link,
                poll_interval: std::time::Duration::from_secs(serve.poll_interval.max(1)),
                ..HubSettings::default()
            };
            let settings = Settings {
                data: cli.data,
                serve,
                hub,
            };
            let app = App::build(&settings).await?;
            tracing::info!(address = %app.local_addr(), base_url = app.base_url(), "feedmesh is serving");
            eprintln!(
                "feedmesh {} serving on http://{} (data: {})",
                env!("CARGO_PKG_VERSION"),
                app.local_addr(),
                settings.data.database_url()
            );
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::User(cmd) => {
            let store = cli.data.open_store().await?;
            match cmd {
                UserCmd::Add { name } => {
                    let user = accounts::add_user(store.as_ref(), &name)
                        .await
                        .with_context(|| format!("cannot add user {name}"))?;
                    eprintln!("added user {}", user.name);
                }
                UserCmd::List => {
                    for u in accounts::users(store.as_ref()).await? {
                        println!("{}\t{}", u.name, u.created_at);
                    }
                }
                UserCmd::Passwd { user } => {
                    let password = read_new_password(&user)?;
                    logins::set_password(store.as_ref(), &user, &password)
                        .await
                        .with_context(|| format!("cannot set the password of {user}"))?;
                    eprintln!("password of {user} set; their browser sessions have ended");
                }
                UserCmd::AppPassword { user, name } => {
                    let issued = logins::add_app_password(store.as_ref(), &user, &name)
                        .await
                        .with_context(|| format!("cannot make an app password for {user}"))?;
                    eprintln!(
                        "app password {} ({}) for {user}; it is shown once, only its hash is stored:",
                        issued.info.id, issued.info.name
                    );
                    println!("{}", issued.password);
                }
                UserCmd::AppPasswords { user } => {
                    let list = logins::app_passwords(store.as_ref(), &user)
                        .await
                        .with_context(|| format!("no user {user}"))?;
                    println!("ID\tNAME\tPREFIX\tCREATED\tLAST-USED\tSTATE");
                    for a in list {
                        let state = if a.revoked { "revoked" } else { "live" };
                        let used = a.last_used.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                        println!("{}\t{}\t{}…\t{}\t{used}\t{state}", a.id, a.name, a.prefix, a.created_at);
                    }
                }
                UserCmd::RevokeAppPassword { user, id } => {
                    logins::revoke_app_password(store.as_ref(), &user, id)
                        .await
                        .with_context(|| format!("cannot revoke app password {id} of {user}"))?;
                    eprintln!("revoked app password {id} of {user}");
                }
            }
            Ok(())
        }
        Command::Token(cmd) => {
            let store = cli.data.open_store().await?;
            match cmd {
                TokenCmd::Add { user, device } => {
                    let t = accounts::add_token(store.as_ref(), &user, &device)
                        .await
                        .with_context(|| format!("cannot add a token for {user}"))?;
                    eprintln!(
                        "token {} for {user}/{device}; it is shown once, only its hash is stored:",
                        t.info.id
                    );
                    println!("{}", t.token);
                }
                TokenCmd::List { user } => {
                    let tokens = accounts::tokens(store.as_ref(), &user)
                        .await
                        .with_context(|| format!("no user {user}"))?;
                    println!("ID\tDEVICE\tPREFIX\tCREATED\tSTATE");
                    for t in tokens {
                        let state = if t.revoked { "revoked" } else { "live" };
                        println!("{}\t{}\t{}…\t{}\t{state}", t.id, t.device, t.prefix, t.created_at);
                    }
                }
                TokenCmd::Revoke { user, id } => {
                    accounts::revoke_token(store.as_ref(), &user, id)
                        .await
                        .with_context(|| format!("cannot revoke token {id} of {user}"))?;
                    eprintln!("revoked token {id} of {user}");
                }
            }
            Ok(())
        }
        Command::Collection(cmd) => {
            let store = cli.data.open_store().await?;
            match cmd {
                CollectionCmd::Add { user, name } => {
                    let u = user_named(store.as_ref(), &user).await?;
                    accounts::add_collection(store.as_ref(), u.id, &name)
                        .await
                        .with_context(|| format!("cannot add collection {name} for {user}"))?;
                    eprintln!("added collection {name} for {user}");
                }
                CollectionCmd::List { user } => {
                    let u = user_named(store.as_ref(), &user).await?;
                    for c in accounts::collections(store.as_ref(), u.id).await? {
                        println!("{}\t{}", c.name, c.created_at);
                    }
                }
            }
            Ok(())
        }
        Command::Agent(args) => crate::agent::run(args).await,
        Command::Contact(cmd) => {
            let core = offline_core(&cli.data).await?;
            let store = core.mesh.store.as_ref();
            match cmd {
                ContactCmd::Import { user, file } => {
                    let u = user_named(store, &user).await?;
                    let body = if file.as_os_str() == "-" {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                        b
                    } else {
                        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
                    };
                    let who = crate::usecases::principal(&core, u.id, "cli").await?;
                    let bar = indicatif::ProgressBar::new(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cards {elapsed}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    let report = contacts::import(&core, &who, &body, |done, total| {
                        bar.set_length(total);
                        bar.set_position(done);
                    })
                    .await
                    .with_context(|| format!("cannot import {}", file.display()))?;
                    bar.finish_and_clear();
                    for s in &report.skipped {
                        eprintln!("skipped {s:?}: not an e-mail address, phone number, handle or profile URL");
                    }
                    eprintln!(
                        "{} created, {} updated, {} unchanged",
                        report.created, report.updated, report.unchanged
                    );
                }
                ContactCmd::Export { user } => {
                    let u = user_named(store, &user).await?;
                    print!("{}", contacts::export(&core, u.id).await?);
                }
                ContactCmd::List { user } => {
                    let u = user_named(store, &user).await?;
                    println!("ID\tNAME\tORG\tIDENTITIES\tTAGS");
                    for c in contacts::list(&core, u.id).await? {
                        let org = if c.org.is_empty() { "-" } else { c.org.as_str() };
                        let tags = if c.tags.is_empty() {
                            "-".to_string()
                        } else {
                            c.tags.join(",")
                        };
                        println!("{}\t{}\t{org}\t{}\t{tags}", c.id, c.name, c.identities.join(" "));
                    }
                }
            }
            Ok(())
        }
        Command::Connector(cmd) => {
            let mut core = offline_core(&cli.data).await?;
            let mut allow_private = false;
            if let ConnectorCmd::Reconnect { base_url, .. } = &cmd {
                core.base_url = base_url.get();
            }
            if let ConnectorCmd::Add {
                base_url,
                allow_private_network,
                ..
            } = &cmd
            {
                core.base_url = base_url.get();
                // What this command itself sends (a Mastodon app registration) and the URLs it
                // takes follow the same policy as serve's.
                allow_private = *allow_private_network;
                core.outbound = crate::net::Outbound::new(allow_private, std::time::Duration::from_secs(10))?;
            }
            let store = core.mesh.store.as_ref();
            let user_of = |c: &ConnectorCmd| match c {
                ConnectorCmd::Add { user, .. }
                | ConnectorCmd::List { user }
                | ConnectorCmd::Remove { user, .. }
                | ConnectorCmd::Pause { user, .. }
                | ConnectorCmd::Resume { user, .. }
                | ConnectorCmd::Reconnect { user, .. }
                | ConnectorCmd::Sync { user, .. } => user.clone(),
            };
            let user = user_of(&cmd);
            let u = user_named(store, &user).await?;
            let what = |id: i64| format!("connector {id} of {user}");
            match cmd {
                ConnectorCmd::Add {
                    kind,
                    collection,
                    options,
                    ..
                } => {
                    let pairs = options
                        .iter()
                        .map(|o| {
                            o.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .ok_or_else(|| anyhow::anyhow!("--option {o:?}: expected KEY=VALUE"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let added = connectors::add(&core, u.id, &kind, collection.as_deref(), pairs, allow_private)
                        .await
                        .map_err(|e| anyhow::Error::new(e).context(format!("cannot add a {kind} connector")))?;
                    let c = &added.connector;
                    let col = store
                        .collections(u.id)
                        .await?
                        .into_iter()
                        .find(|x| x.id == c.collection_id);
                    let col = col.map(|x| x.name.to_string()).unwrap_or_default();
                    eprintln!("connector {} ({kind}) of {user} into {user}/{col}", c.id);
                    println!("{}", c.id);
                    if let Some(url) = &added.authorize_url {
                        eprintln!("open this URL to authorise it (the provider sends the browser back to serve):");
                        println!("{url}");
                    }
                }
                ConnectorCmd::List { .. } => {
                    println!("ID\tKIND\tACCOUNT\tSTATE\tLAST SYNC\tLAST ERROR");
                    for c in connectors::list(&core, u.id).await? {
                        let synced = c.last_sync_at.map_or("-".to_string(), |ms| {
                            crate::domain::Timestamp::from_unix(ms / 1000).rfc3339()
                        });
                        let account = if c.account.is_empty() { "-" } else { c.account.as_str() };
                        let err = c.last_error.as_deref().unwrap_or("-").replace(['\t', '\n'], " ");
                        println!("{}\t{}\t{account}\t{}\t{synced}\t{err}", c.id, c.kind, c.state.as_str());
                    }
                }
                ConnectorCmd::Remove { id, .. } => {
                    connectors::remove(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot remove {}", what(id)))?;
                    eprintln!("removed {}", what(id));
                }
                ConnectorCmd::Pause { id, .. } => {
                    connectors::pause(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot pause {}", what(id)))?;
                    eprintln!("paused {}", what(id));
                }
                ConnectorCmd::Resume { id, .. } => {
                    connectors::resume(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot resume {}", what(id)))?;
                    eprintln!("resumed {}: it runs within a second where `serve` runs", what(id));
                }
                ConnectorCmd::Reconnect { id, .. } => {
                    let url = connectors::reconnect(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot reconnect {}", what(id)))?;
                    eprintln!("open this URL to authorise {} again:", what(id));
                    println!("{url}");
                }
                ConnectorCmd::Sync { id, .. } => {
                    connectors::sync_now(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot sync {}", what(id)))?;
                    eprintln!("{} runs within a second where `serve` runs", what(id));
                }
            }
            Ok(())
        }
        Command::Route(cmd) => {
            let core = offline_core(&cli.data).await?;
            let store = core.mesh.store.as_ref();
            match cmd {
                RouteCmd::Add {
                    user,
                    from,
                    to,
                    filters,
                } => {
                    let u = user_named(store, &user).await?;
                    let filter = routes::filter_of(&filters)?;
                    let r = routes::add(&core, u.id, &user, &from, to, filter)
                        .await
                        .with_context(|| format!("cannot route {user}/{from} to connector {to}"))?;
                    eprintln!("route {} of {user}: {from} to connector {to} ({})", r.id, r.to_kind);
                    println!("{}", r.id);
                }
                RouteCmd::List { user } => {
                    let u = user_named(store, &user).await?;
                    println!("ID\tFROM\tTO\tFILTER");
                    for r in routes::list(&core, u.id).await? {
                        let filter = routes::filter_text(&r.filter);
                        let filter = if filter.is_empty() { "-".to_string() } else { filter };
                        println!("{}\t{}\t{} ({})\t{filter}", r.id, r.from, r.to, r.to_kind);
                    }
                }
                RouteCmd::Remove { user, id } => {
                    let u = user_named(store, &user).await?;
                    routes::remove(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot remove route {id} of {user}"))?;
                    eprintln!("removed route {id} of {user}");
                }
            }
            Ok(())
        }
        Command::Phone(PhoneCmd::Import { user, file }) => {
            let core = offline_core(&cli.data).await?;
            let store = core.mesh.store.as_ref();
            let u = user_named(store, &user).await?;
            let (input, size): (Box<dyn std::io::BufRead + Send>, u64) = if file.as_os_str() == "-" {
                (Box::new(std::io::BufReader::new(std::io::stdin())), 0)
            } else {
                let f = std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Box::new(std::io::BufReader::with_capacity(256 * 1024, f)), size)
            };
            let who = crate::usecases::principal(&core, u.id, "phone-import").await?;
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {elapsed} (ETA {eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let shown = bar.clone();
            let report = crate::usecases::phone::import(&core, &who, input, move |at| shown.set_position(at))
                .await
                .with_context(|| format!("cannot import {}", file.display()))?;
            bar.finish_and_clear();
            eprintln!(
                "{} records added, {} already there, {} skipped (no date or address)",
                report.created, report.unchanged, report.skipped
            );
            Ok(())
        }
        Command::Import(ImportCmd::Opml {
            user,
            file,
            collection,
            allow_private_network,
        }) => {
            let core = offline_core(&cli.data).await?;
            let u = user_named(core.mesh.store.as_ref(), &user).await?;
            let body = if file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("cannot read standard input")?;
                b
            } else {
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let report = connectors::import_opml(&core, u.id, &body, &collection, allow_private_network)
                .await
                .with_context(|| format!("cannot import {}", file.display()))?;
            for (url, why) in &report.refused {
                eprintln!("skipped {url}: {why}");
            }
            eprintln!(
                "{} feeds added, {} already followed, {} skipped",
                report.added,
                report.known,
                report.refused.len()
            );
            Ok(())
        }
        Command::OauthClient(cmd) => {
            let core = offline_core(&cli.data).await?;
            let store = core.mesh.store.as_ref();
            match cmd {
                OauthClientCmd::Add {
                    user,
                    provider,
                    client_id,
                    client_secret,
                    issuer,
                    authorize_url,
                    token_url,
                    revoke_url,
                    scope,
                    base_url,
                    allow_private_network,
                } => {
                    let u = user_named(store, &user).await?;
                    let client_secret = match client_secret.as_deref() {
                        Some("-") => {
                            let mut s = String::new();
                            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                                .context("cannot read the client secret from standard input")?;
                            Some(s.trim().to_string())
                        }
                        other => other.map(str::to_string),
                    };
                    let c = crate::usecases::oauth::NewClient {
                        provider,
                        client_id,
                        client_secret,
                        issuer,
                        authorize_url,
                        token_url,
                        revoke_url,
                        scope,
                    };
                    // What this command itself asks of the issuer follows serve's policy.
                    let mut core = core;
                    core.base_url = base_url.get();
                    core.outbound =
                        crate::net::Outbound::new(allow_private_network, std::time::Duration::from_secs(10))?;
                    let made = crate::usecases::oauth::add_client(&core, u.id, c, allow_private_network)
                        .await
                        .context("cannot add the OAuth client")?;
                    if made.registration_url.is_some() {
                        eprintln!(
                            "OAuth client {} of {user} at {}: the hub registered itself for {}",
                            made.client_id,
                            made.provider,
                            crate::usecases::oauth::callback_url(&core)
                        );
                    } else {
                        eprintln!(
                            "OAuth client {} of {user} at {}; register BASE/oauth/callback as its redirect URI",
                            made.client_id, made.provider
                        );
                    }
                }
                OauthClientCmd::List { user } => {
                    let u = user_named(store, &user).await?;
                    println!("PROVIDER\tCLIENT ID\tAUTHORIZE URL\tTOKEN URL\tREVOKE URL\tSCOPE");
                    for c in crate::usecases::oauth::clients(&core, u.id).await? {
                        let revoke = c.revoke_url.as_deref().unwrap_or("-");
                        println!(
                            "{}\t{}\t{}\t{}\t{revoke}\t{}",
                            c.provider, c.client_id, c.authorize_url, c.token_url, c.scope
                        );
                    }
                }
                OauthClientCmd::Remove { user, provider } => {
                    let u = user_named(store, &user).await?;
                    crate::usecases::oauth::remove_client(&core, u.id, &provider)
                        .await
                        .with_context(|| format!("cannot remove the OAuth client of {user} at {provider}"))?;
                    eprintln!("removed the OAuth client of {user} at {provider}");
                }
            }
            Ok(())
        }
        Command::Follow(cmd) => {
            let core = offline_core(&cli.data).await?;
            let store = core.mesh.store.as_ref();
            match cmd {
                FollowCmd::Add { user, url, collection } => {
                    let u = user_named(store, &user).await?;
                    // Private addresses are judged by `serve`'s own setting when it fetches.
                    let (f, _) = follows::add(&core, u.id, &url, &collection, true)
                        .await
                        .map_err(|e| match e {
                            Error::NotFound("collection") => anyhow::anyhow!("no collection {collection:?} of {user}"),
                            e => anyhow::Error::new(e).context(format!("cannot follow {url:?}")),
                        })?;
                    eprintln!("follow {} of {url} into {user}/{collection}", f.id);
                }
                FollowCmd::List { user } => {
                    let u = user_named(store, &user).await?;
                    println!("ID\tSTATE\tURL\tLAST ERROR");
                    for (f, _) in follows::list(&core, u.id).await? {
                        let err = f.last_error.as_deref().unwrap_or("-");
                        println!("{}\t{}\t{}\t{err}", f.id, f.state.as_str(), f.url);
                    }
                }
                FollowCmd::Remove { user, id } => {
                    let u = user_named(store, &user).await?;
                    follows::remove(&core, u.id, id)
                        .await
                        .with_context(|| format!("cannot remove follow {id}"))?;
                    eprintln!("removed follow {id} of {user}");
                }
            }
            Ok(())
        }
        Command::Key(cmd) => {
            let core = std::sync::Arc::new(offline_core(&cli.data).await?);
            let store = core.mesh.store.as_ref();
            match cmd {
                KeyCmd::Add { user, feed, base_url } => {
                    let u = user_named(store, &user).await?;
                    let issued =
                        keys::create(store, u.id, &user, &feed, &base_url.get())
                            .await
                            .map_err(|e| match e {
                                Error::Invalid(_) => {
                                    anyhow::anyhow!(
                                        "{feed:?} is not a feed of {user}: give a path like /u/{user}/stream.atom"
                                    )
                                }
                                e => e.into(),
                            })?;
                    eprintln!("feed key {} for {}; the URL is shown once:", issued.id, issued.path);
                    println!("{}", issued.url);
                }
                KeyCmd::List { user } => {
                    let u = user_named(store, &user).await?;
                    println!("ID\tFEED\tCREATED\tSTATE");
                    for k in keys::list(store, u.id).await? {
                        let state = if k.revoked { "revoked" } else { "live" };
                        println!("{}\t{}\t{}\t{state}", k.id, k.feed_path, k.created_at);
                    }
                }
                KeyCmd::Revoke { user, id } => {
                    let u = user_named(store, &user).await?;
                    // Its subscriptions end now, with a denial to each subscriber, as by the API.
                    let ws = WebSub::new(core.clone(), HubSettings::default(), true);
                    crate::websub::hub::revoke_key(&ws, u.id, id, || {})
                        .await
                        .with_context(|| format!("cannot revoke key {id}"))?;
                    eprintln!("revoked feed key {id} of {user}");
                }
            }
            Ok(())
        }
    }
}

async fn user_named(store: &dyn Store, user: &str) -> anyhow::Result<User> {
    accounts::user(store, user)
        .await
        .with_context(|| format!("no user {user:?}"))
}

/// A new password: asked twice without echo on a terminal, else the first line of stdin.
fn read_new_password(user: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {user}: "))?;
        let again = rpassword::prompt_password("the same again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        anyhow::bail!("no password on standard input (its first line is the password)");
    }
    Ok(line.to_string())
}

/// The use cases' context for a command run beside (or without) `serve`: the same store and
/// files; nobody in this process to wake, and no URL of its own (`serve`'s workers pick up
/// what the command changed within a second).
async fn offline_core(data: &DataArgs) -> anyhow::Result<Core> {
    let store = data.open_store().await?;
    let blobs = Blobs::new(&data.data_dir, u64::MAX, u64::MAX)
        .with_context(|| format!("cannot use data directory {}", data.data_dir.display()))?;
    let outbound = crate::net::Outbound::new(true, std::time::Duration::from_secs(10))?;
    Ok(Core::new(
        Mesh::new(store, blobs).with_region(data.default_region),
        String::new(),
        String::new(),
        outbound,
    ))
}
