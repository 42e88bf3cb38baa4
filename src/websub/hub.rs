//! The hub's verification of intent (C, F): a worker claims queued subscribe and unsubscribe
//! requests from the store (so a restart loses none), asks each callback to echo a
//! challenge, and applies the outcome. Also how a subscription is ended with a denial (D2).

use std::sync::Arc;

use reqwest::Method;

use super::WebSub;
use super::protocol::{denial_url, verification_url};
use crate::config::HubSettings;
use crate::jobs::{self, Backoff, Stop, now_ms};
use crate::net::{Outbound, OutboundError, read_capped};
use crate::secrets;
use crate::store::{HubRequest, Store, Subscription};

/// How a verification attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Confirmed,
    /// The subscriber said no (wrong echo, 404, another 4xx, a redirect): final.
    Refused,
    /// Timeout, connection error or 5xx: may be tried again.
    Failed,
}
/// D2/D3: a subscription ends and its subscriber is told why. The answer to the denial is
/// ignored (D2); failing to reach the subscriber changes nothing.
pub async fn deny(
    store: &dyn Store,
    outbound: &Outbound,
    id: i64,
    topic: &str,
    callback: &str,
    reason: &str,
) -> anyhow::Result<()> {
    if let Ok(req) = outbound.request(reqwest::Method::GET, &denial_url(callback, topic, reason)) {
        let _ = outbound.send(req).await;
    }
    Ok(store.drop_subscription(id).await?)
}
/// Why the subscriptions of a revoked feed key end (D3).
pub const REVOKED: &str = "the feed key in the topic URL was revoked";

/// D2/D3: every subscription whose key was revoked (here or by another process) ends, and
/// its subscriber is told. Run by the delivery worker's sweep, and at once by
/// [`revoke_key`].
pub async fn end_revoked(ws: &WebSub) -> anyhow::Result<()> {
    for (id, topic, callback) in ws.mesh.store.revoked_subscriptions(100).await? {
        deny(ws.mesh.store.as_ref(), &ws.outbound, id, &topic, &callback, REVOKED).await?;
    }
    Ok(())
}

/// Revokes one of the user's feed keys, and ends its WebSub subscriptions with a denial to
/// each subscriber before it answers (the CLI and `DELETE /api/keys/{id}` alike).
/// `forget` runs between the two: the caller's read caches must drop the key before any
/// subscriber is told, or one that fetches the feed at once would still get it.
pub async fn revoke_key(ws: &WebSub, user_id: i64, id: i64, forget: impl FnOnce()) -> crate::error::Result<()> {
    crate::usecases::keys::revoke(ws, user_id, id).await?;
    forget();
    if let Err(e) = end_revoked(ws).await {
        tracing::error!(error = %format!("{e:#}"), "cannot end WebSub subscriptions of a revoked key");
    }
    Ok(())
}

/// Runs the verification worker until `stop`: claims due requests, verifies each (up to 16
/// at once), and applies the outcome. Woken by `wake`, and every second anyway.
pub async fn run(
    store: Arc<dyn Store>,
    outbound: Outbound,
    settings: HubSettings,
    wake: Arc<tokio::sync::Notify>,
    stop: Stop,
) {
    let claimer = store.clone();
    jobs::claim_loop(
        "websub verification",
        stop,
        wake,
        || {
            let store = claimer.clone();
            async move { Ok(store.hub_claim(now_ms(), 60_000, 16).await?) }
        },
        |req: HubRequest| {
            let (store, outbound, settings) = (store.clone(), outbound.clone(), settings.clone());
            async move { verify(store.as_ref(), &outbound, &settings, req).await }
        },
    )
    .await
}

async fn verify(store: &dyn Store, outbound: &Outbound, settings: &HubSettings, req: HubRequest) {
    let challenge = match secrets::generate("") {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for a WebSub challenge");
            return;
        }
    };
    let sent_at = now_ms();
    let outcome = attempt(outbound, &verification_url(&req.callback, &req, &challenge), &challenge).await;
    let result = match outcome {
        Outcome::Confirmed if req.subscribe => {
            let lease = req.lease_seconds;
            let sub = Subscription {
                topic: req.topic.clone(),
                callback: req.callback.clone(),
                user_id: req.user_id,
                feed: req.feed.clone(),
                key_hash: req.key_hash.clone(),
                secret: req.secret.clone(),
                lease_seconds: lease,
                // F6: the lease counts from when the verification was sent.
                expires_at: sent_at + lease * 1000,
            };
            match store.subscribe(&sub).await {
                Ok(()) => store.hub_done(req.id).await,
                Err(e) => Err(e),
            }
        }
        Outcome::Confirmed => match store.unsubscribe(&req.topic, &req.callback).await {
            Ok(_) => store.hub_done(req.id).await,
            Err(e) => Err(e),
        },
        // C9: a refusal leaves the state as it was.
        Outcome::Refused => store.hub_done(req.id).await,
        Outcome::Failed if req.attempts >= settings.verify_attempts => store.hub_done(req.id).await,
        Outcome::Failed => {
            // C10: from the retry base, doubling, at most 1024 times the base.
            let backoff = Backoff {
                base: settings.retry_base,
                cap: settings.retry_base.saturating_mul(1024),
                jitter_percent: 0,
            };
            let attempt = u32::try_from(req.attempts.clamp(1, 11)).unwrap_or(1);
            store
                .hub_retry(req.id, now_ms() + backoff.delay_now(attempt).as_millis() as i64)
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot record a WebSub verification");
    }
}

async fn attempt(outbound: &Outbound, url: &str, challenge: &str) -> Outcome {
    let req = match outbound.request(Method::GET, url) {
        Ok(r) => r,
        Err(_) => return Outcome::Refused,
    };
    match outbound.send(req).await {
        Err(OutboundError::Url(_)) => Outcome::Refused,
        Err(OutboundError::Request(_)) => Outcome::Failed,
        Ok(resp) if resp.status().is_server_error() => Outcome::Failed,
        // C6: any 2xx whose body is exactly the challenge; C7: redirects are not followed.
        Ok(resp) if resp.status().is_success() => {
            let body = read_capped(resp, challenge.len() + 64).await;
            if body == challenge.as_bytes() {
                Outcome::Confirmed
            } else {
                Outcome::Refused
            }
        }
        Ok(_) => Outcome::Refused,
    }
}
