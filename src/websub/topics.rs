//! Open hub (`--open-hub`): outside topics are fetched when a publisher pings them, and a
//! new version is distributed like a hosted feed's changes.

use std::sync::Arc;

use super::hub::deny;
use super::protocol::MAX_TOPIC_BYTES;
use crate::jobs::{self, Stop, now_ms};
use crate::net::Outbound;
use crate::secrets;
use crate::store::{Store, TopicContent, TopicFetch};

/// Runs the open-hub fetcher until `stop`: claims pinged outside topics, GETs each
/// (redirects re-checked, G4, S2), and stores new content as the topic's next version;
/// `changed` then wakes the delivery worker. Unchanged content (same SHA-256) is not
/// distributed again.
pub async fn run(
    store: Arc<dyn Store>,
    outbound: Outbound,
    wake: Arc<tokio::sync::Notify>,
    strict_hub: Option<String>,
    changed: Arc<dyn Fn() + Send + Sync>,
    stop: Stop,
) {
    let claimer = store.clone();
    // The claim's time is the version's: a ping after it makes the topic due again.
    let claimed_at = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let at = claimed_at.clone();
    jobs::claim_loop(
        "topic fetcher",
        stop,
        wake,
        || {
            let (store, at) = (claimer.clone(), at.clone());
            async move {
                let now = now_ms();
                at.store(now, std::sync::atomic::Ordering::SeqCst);
                Ok(store.topic_fetches_due(now, 60_000, 16).await?)
            }
        },
        |topic: TopicFetch| {
            let (store, outbound, changed) = (store.clone(), outbound.clone(), changed.clone());
            let strict_hub = strict_hub.clone();
            let claimed_at = claimed_at.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                let (mut content, hubs) = fetch_topic(&outbound, &topic).await;
                if let Some(me) = strict_hub.as_deref()
                    && content.is_some()
                    && !hubs.iter().any(|h| h.trim_end_matches('/') == me.trim_end_matches('/'))
                {
                    // K7: the topic no longer names this hub: its subscriptions end (D3).
                    content = None;
                    deny_topic(&store, &outbound, &topic.url).await;
                }
                match store.topic_fetched(topic.id, claimed_at, content).await {
                    Ok(true) => changed(),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "cannot record a topic fetch"),
                }
            }
        },
    )
    .await
}

/// An outside topic's content, and the hubs it names (its `Link` headers, then its own
/// `rel="hub"` links).
async fn fetch_topic(outbound: &Outbound, topic: &TopicFetch) -> (Option<TopicContent>, Vec<String>) {
    let cond = crate::fetch::Conditions {
        accept: Some(&topic.content_type),
        ..Default::default()
    };
    match crate::fetch::get(outbound, &topic.url, &cond, MAX_TOPIC_BYTES).await {
        Ok(f) if !f.body.is_empty() => {
            let mut hubs = f.hubs.clone();
            if let Ok(doc) = feedmesh_connector_feed::parse_feed(&f.body) {
                hubs.extend(doc.hubs);
            }
            let content = TopicContent {
                hash: secrets::hash_bytes(&f.body),
                content_type: f.content_type.unwrap_or_default(),
                body: f.body,
                version: 0,
            };
            (Some(content), hubs)
        }
        Ok(_) => {
            tracing::warn!("an outside topic answered with an empty body; nothing distributed");
            (None, Vec::new())
        }
        Err(e) => {
            // S13: the topic URL may be personal; the reason is enough to act on.
            tracing::warn!(error = %e, "fetching an outside topic failed");
            (None, Vec::new())
        }
    }
}

/// K7, D3: every subscription to an outside topic that no longer names this hub ends, and
/// its subscriber is told (the answer to the denial is ignored, D2).
async fn deny_topic(store: &Arc<dyn Store>, outbound: &Outbound, topic: &str) {
    let subs = match store.subscriptions_to(topic).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot list a topic's subscriptions");
            return;
        }
    };
    for (id, callback) in subs {
        let denied = deny(
            store.as_ref(),
            outbound,
            id,
            topic,
            &callback,
            "the topic no longer names this hub",
        );
        if let Err(e) = denied.await {
            tracing::error!(error = %e, "cannot end a subscription");
        }
    }
    tracing::info!("an outside topic no longer names this hub; its subscriptions ended");
}
