//! Listeners: connectors whose service pushes (Mastodon's streaming API) hold one long-lived
//! connection each, on one process, beside their runs. A process claims a listener with a
//! lease it renews while it listens (`claim_listeners`, `renew_listener`): a crashed process's
//! listeners are taken over when their leases run out, and a paused, removed or unauthorised
//! connector's listener ends at its next renewal. What comes is stored at once, as the
//! connector's endpoint, the way its pulls store items; the pulls go on (they catch up what
//! a dropped connection missed, and refresh tokens: a listener never refreshes one).

use std::sync::Arc;
use std::time::Duration;

use feedmesh_connector::{ConnectorError, ErrorKind, Pulled, Sink};

use super::Core;
use super::kinds::{build, kind, store_err, writer};
use crate::fetch::ConnectorHttp;
use crate::jobs::{Backoff, Stop, now_ms};
use crate::store::{Collection, ConnectorRow, Principal};

/// How long a listener's claim lasts unless renewed, and how often it is renewed.
const LEASE_MS: i64 = 60_000;
const RENEW: Duration = Duration::from_secs(20);

/// How often a process looks for listeners nobody holds.
const LOOK: Duration = Duration::from_secs(5);

/// Listeners claimed per look.
const CLAIMS: u32 = 64;

/// Waits between attempts of a listener that keeps failing: a second to five minutes.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
    jitter_percent: 20,
};

/// How long a connector whose service does not stream (or refused its credentials) is left
/// to its runs before its listener is tried again.
const NOT_BEFORE_MS: i64 = 3600 * 1000;

/// Holds the listeners of this process until `stop`, claiming those no process holds.
pub async fn run(core: Arc<Core>, stop: Stop) {
    let kinds: Vec<&'static str> = super::kinds::KINDS
        .iter()
        .filter(|k| k.listens)
        .map(|k| k.name)
        .collect();
    let owner = match crate::secrets::generate("ls") {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "no listener id; listeners are off");
            return;
        }
    };
    let mut held = tokio::task::JoinSet::new();
    loop {
        match core
            .mesh
            .store
            .claim_listeners(&owner, &kinds, now_ms(), LEASE_MS, CLAIMS)
            .await
        {
            Ok(claimed) => {
                for c in claimed {
                    held.spawn(listen(core.clone(), owner.clone(), c, stop.clone()));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim listeners"),
        }
        while held.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(LOOK) => {}
            _ = core.listener_check.notified() => {}
            _ = stop.stopped() => break,
        }
    }
    // Each lets its claim go on the stop; what does not end soon is cut.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while held.join_next().await.is_some() {}
    })
    .await;
    held.abort_all();
}

/// One connector's listener, while its claim holds: opens the connection, hands what comes
/// to the store, opens it again when it ends, backs off while it fails.
async fn listen(core: Arc<Core>, owner: String, claimed: ConnectorRow, stop: Stop) {
    let (user_id, id) = (claimed.user_id, claimed.id);
    let store = core.mesh.store.clone();
    let renewing = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RENEW) => {}
                _ = core.listener_check.notified() => {}
            }
            match store.renew_listener(user_id, id, &owner, now_ms() + LEASE_MS).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(connector = id, error = %e, "cannot renew a listener"),
            }
        }
    };
    let listening = async {
        let mut failures = 0u32;
        loop {
            let outcome = listen_once(&core, &owner, user_id, id).await;
            if let Err(e) = store.set_listening(user_id, id, &owner, None).await {
                tracing::warn!(connector = id, error = %e, "cannot record a listener's state");
            }
            match outcome {
                Ok(()) => failures = 0,
                Err(e) if matches!(e, ConnectorError::Unsupported(_)) || e.kind() == ErrorKind::Auth => {
                    tracing::info!(connector = id, reason = %e, "not listening; its runs go on");
                    return NOT_BEFORE_MS;
                }
                Err(e) if e.kind() == ErrorKind::Permanent => {
                    tracing::warn!(connector = id, error = %e, "a listener stopped");
                    return NOT_BEFORE_MS;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(connector = id, error = %e, failures, "a listener's connection failed");
                }
            }
            let wait = match failures {
                0 => Duration::from_secs(1),
                n => RETRY.delay_now(n),
            };
            tokio::time::sleep(wait).await;
        }
    };
    let not_before = tokio::select! {
        _ = renewing => 0,
        wait = listening => now_ms() + wait,
        _ = stop.stopped() => 0,
    };
    if let Err(e) = store.release_listener(user_id, id, &owner, not_before).await {
        tracing::warn!(connector = id, error = %e, "cannot release a listener");
    }
}

/// One connection, from the connector as it is stored now (its tokens may have changed).
async fn listen_once(core: &Core, owner: &str, user_id: i64, id: i64) -> Result<(), ConnectorError> {
    let c = core
        .mesh
        .store
        .connector(user_id, id)
        .await
        .map_err(|e| store_err(e.into()))?;
    let kind = kind(&c.kind).map_err(|e| ConnectorError::Permanent(e.to_string()))?;
    let connector = build(&c, kind, super::oauth::current_access_token(&c)?)?;
    let (who, col) = writer(core, &c).await.map_err(store_err)?;
    let mut sink = HubSink {
        core,
        owner,
        user_id,
        connector: id,
        who,
        col,
    };
    connector.listen(&ConnectorHttp(&core.outbound), &mut sink).await
}

/// Stores what a listener hands over, as the connector's endpoint into its collection.
struct HubSink<'a> {
    core: &'a Core,
    owner: &'a str,
    user_id: i64,
    connector: i64,
    who: Principal,
    col: Collection,
}

#[async_trait::async_trait]
impl Sink for HubSink<'_> {
    /// Connected: shown as listening, and a run is due now to catch up what came before.
    async fn ready(&mut self) {
        tracing::info!(connector = self.connector, "listening");
        let store = &self.core.mesh.store;
        match store
            .set_listening(self.user_id, self.connector, self.owner, Some(now_ms()))
            .await
        {
            Ok(()) => self.core.connector_wake.notify_one(),
            Err(e) => tracing::warn!(connector = self.connector, error = %e, "cannot record a listener's state"),
        }
    }

    async fn item(&mut self, item: Pulled) -> Result<(), ConnectorError> {
        let entry = super::files::attach(self.core, self.user_id, item.entry, item.files)
            .await
            .map_err(|e| store_err(e.into()))?;
        self.core
            .mesh
            .ingest(&self.who, &self.col, &item.id, entry)
            .await
            .map_err(|e| store_err(e.into()))?;
        Ok(())
    }

    async fn gone(&mut self, id: &str) -> Result<(), ConnectorError> {
        match self.core.mesh.delete(&self.who, &self.col, id, None).await {
            Ok(_) | Err(crate::error::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(store_err(e.into())),
        }
    }

    fn refused(&mut self, why: String) {
        tracing::warn!(connector = self.connector, why = %why, "a listener refused what its service sent");
    }
}
