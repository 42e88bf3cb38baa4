//! `feedmesh agent`: keeps a folder in sync with a collection through the hub (issue 3).
//! Every file is an item whose payload names its path and content (`fm:file`); the hub holds
//! the merged complete copy; each device merges with the same FeedSync algorithm. The agent
//! syncs at start, then whenever the folder changes (a filesystem watcher, plus a rescan as a
//! safety net) or the hub has news (a long-poll), and keeps local edits while the hub is away.

mod index;
pub mod paths;
mod sync;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use notify::Watcher;

pub use sync::{Agent, Report};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCmd>,

    /// The hub's URL.
    #[arg(long, env = "FEEDMESH_HUB", value_name = "URL")]
    pub hub: Option<String>,

    /// A device token of the user (`feedmesh token add USER --device NAME`).
    #[arg(long, env = "FEEDMESH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The collection the folder mirrors.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,

    /// The folder to keep in sync (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Sync once and exit (for scripts and cron) instead of running.
    #[arg(long)]
    pub once: bool,

    /// Seconds between full rescans of the folder, a safety net: the watcher catches changes
    /// at once. Without a working watcher (say, too few inotify watches) it is at most 60.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub rescan: u64,
}

crate::debug_redacted!(AgentArgs { command, hub, collection, dir, once, rescan } secret { token });

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Show the folder's sync state: last sync, pending changes, conflicts.
    Status {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(AgentCmd::Status { dir }) = args.command {
        return status(&dir).await;
    }
    let missing = |what: &str| anyhow::anyhow!("feedmesh agent needs --{what} (see feedmesh agent --help)");
    let hub = args.hub.ok_or_else(|| missing("hub"))?;
    let token = args.token.ok_or_else(|| missing("token"))?;
    let collection = args.collection.ok_or_else(|| missing("collection"))?;
    let dir = args.dir.ok_or_else(|| missing("dir"))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut agent = Agent::connect(&hub, &token, &collection, &dir).await?;
    // On a terminal the first sync (often a whole folder) shows files and bytes moved;
    // elsewhere the logs stay quiet and structured.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}: {bytes} ({bytes_per_sec}), {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        agent.progress = Some(bar);
    }
    if args.once {
        let r = agent.sync().await?;
        if let Some(bar) = agent.progress.take() {
            bar.finish_and_clear();
        }
        eprintln!("{}", summary(&r));
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let own = agent.own.clone();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        // Reads (the agent's own scans and hashing open files), the agent's own state
        // directory and what the agent itself just wrote are not changes.
        let change = e.is_ok_and(|e| {
            !matches!(e.kind, notify::EventKind::Access(_))
                && !e
                    .paths
                    .iter()
                    .all(|p| p.components().any(|c| c.as_os_str() == paths::STATE_DIR) || sync::own_doing(&own, p))
        });
        if change {
            let _ = tx.send(());
        }
    })?;
    let mut rescan_secs = args.rescan.max(1);
    if let Err(e) = watcher.watch(agent.root(), notify::RecursiveMode::Recursive) {
        // Changes are still found, by rescanning more often.
        rescan_secs = rescan_secs.min(60);
        tracing::warn!(error = %e, rescan_secs, "the folder cannot be watched (raise fs.inotify.max_user_watches?); rescanning instead");
    }
    eprintln!(
        "feedmesh agent: {} <-> {hub} collection {collection} as {}",
        dir.display(),
        agent.by
    );
    let mut backoff = Duration::from_secs(1);
    // One shutdown listener for the whole run: a SIGTERM during a sync stops it at once (the
    // index and the folder are consistent at every await: rows are written one by one,
    // files appear by rename).
    let shutdown = crate::jobs::shutdown_signal();
    tokio::pin!(shutdown);
    // The folder is walked when the watcher saw a change (or a rescan is due), not when only
    // the hub has news.
    let mut scan = true;
    let every = Duration::from_secs(rescan_secs);
    let rescan = tokio::time::sleep(every);
    tokio::pin!(rescan);
    // Whether the hub may have news: a long-poll that ended with none needs no sync.
    let mut news = true;
    loop {
        // Changes seen while a sync failed (the hub away) are scanned on the retry.
        while rx.try_recv().is_ok() {
            scan = true;
        }
        let synced = if !(scan || news) {
            Ok(Report::default())
        } else {
            tokio::select! {
                r = agent.sync_after(scan) => r,
                _ = &mut shutdown => return Ok(()),
            }
        };
        match synced {
            Ok(r) => {
                scan = false;
                backoff = Duration::from_secs(1);
                if let Some(bar) = agent.progress.take() {
                    bar.finish_and_clear(); // only the first sync shows progress
                    eprintln!("feedmesh agent: first sync done: {}", summary(&r));
                }
                if r != Report::default() {
                    tracing::info!(summary = %summary(&r), "synced");
                }
            }
            Err(e) => {
                // Local changes stay in the index (dirty) and go out when the hub is back.
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "sync failed; local changes are kept");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = &mut shutdown => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        }
        tokio::select! {
            r = agent.wait_remote(25) => match r {
                Ok(n) => news = n,
                Err(e) => {
                    tracing::debug!(error = %e, "long-poll ended");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    news = true;
                }
            },
            Some(()) = rx.recv() => {
                // Let a burst of writes settle, then sync once for all of them.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                scan = true;
            },
            _ = &mut rescan => scan = true,
            _ = &mut shutdown => return Ok(()),
        }
        if scan {
            rescan.as_mut().reset(tokio::time::Instant::now() + every);
        }
    }
}

fn summary(r: &Report) -> String {
    format!(
        "{} local changes, {} pushed ({} bytes up), {} pulled ({} bytes down), {} conflict copies",
        r.local_changes, r.pushed, r.uploaded_bytes, r.pulled, r.downloaded_bytes, r.conflicts
    )
}

async fn status(dir: &Path) -> anyhow::Result<()> {
    let state = dir.join(paths::STATE_DIR);
    if !state.join("index.db").is_file() {
        anyhow::bail!(
            "{} is not synced by feedmesh agent (no {}/index.db)",
            dir.display(),
            paths::STATE_DIR
        );
    }
    let index = index::Index::open(&state).await?;
    let rows = index.rows().await?;
    let get = async |k: &str| index.meta(k).await.map(|v| v.unwrap_or_else(|| "-".into()));
    println!("hub:         {}", get("hub").await?);
    println!("collection:  {}", get("collection").await?);
    println!("last sync:   {}", get("last_sync").await?);
    println!("items:       {}", rows.iter().filter(|r| r.path.is_some()).count());
    let pending: Vec<_> = rows.iter().filter(|r| r.dirty).collect();
    println!("pending:     {}", pending.len());
    for r in pending {
        println!(
            "  {} ({})",
            r.path.as_deref().unwrap_or("(deleted)"),
            sync::describe(&r.item)
        );
    }
    let conflicts = index.conflicts().await?;
    println!("conflicts:   {}", conflicts.len());
    for (copy, id) in conflicts {
        let at = index.row(&id).await?.and_then(|r| r.path).unwrap_or_default();
        println!("  {copy} (of {at})");
    }
    Ok(())
}
