//! Following outside feeds into a collection: the runtime of the feed connector
//! (`connectors/feed`). The connector fetches and reads the feed through the hub's guarded
//! HTTP; this module keeps its cursor, stores what it brings, and does the WebSub side: it
//! subscribes at the hub the feed names (`Link` headers, then the feed's own links) with a
//! random secret and a callback URL holding a random token, takes pushes whose signature it
//! checked in constant time, and renews the lease before it ends. When the feed names no
//! hub, or the subscription fails or is denied, it polls with conditional GETs.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;

use feedmesh_connector::{Connector, ConnectorError, Cursor, Pulled};
use feedmesh_connector_feed::{FeedConfig, FeedConnector};

use crate::fetch::ConnectorHttp;
use crate::hub::{Worker, now_ms};
use crate::store::{Collection, Follow, FollowState, Principal};
use crate::web::AppState;

/// The callback URL a hub is given for this follow (S5: the token makes it unguessable).
pub fn callback_url(st: &AppState, f: &Follow) -> String {
    format!("{}/websub/callback/{}", st.base_url, f.callback_token)
}

fn connector(f: &Follow) -> FeedConnector {
    FeedConnector::new(FeedConfig { url: f.url.clone() })
}

/// Stores a pushed document's entries in the follow's collection; returns how many changed.
pub async fn ingest(st: &AppState, f: &Follow, body: &[u8]) -> crate::error::AppResult<usize> {
    let batch = connector(f)
        .receive(body)
        .map_err(|e| crate::error::AppError::BadRequest(e.to_string()))?;
    Ok(store_items(st, f, batch.items).await?)
}

async fn store_items(st: &AppState, f: &Follow, items: Vec<Pulled>) -> anyhow::Result<usize> {
    let (who, col) = writer(st, f).await?;
    let mut changed = 0;
    // Oldest first, so the collection's order follows the feed's.
    for item in items.into_iter().rev() {
        if st.mesh.ingest(&who, &col, &item.id, item.entry).await?.is_some() {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Who a follow writes as (an endpoint `feed-ID` of the user), and where.
async fn writer(st: &AppState, f: &Follow) -> anyhow::Result<(Principal, Collection)> {
    let store = &st.mesh.store;
    let user = store.user_by_id(f.user_id).await?;
    let endpoint = store.feed_endpoint(f.user_id, &format!("feed-{}", f.id)).await?;
    let col = store
        .collections(f.user_id)
        .await?
        .into_iter()
        .find(|c| c.id == f.collection_id)
        .ok_or_else(|| anyhow::anyhow!("the follow's collection is gone"))?;
    let who = Principal {
        user_id: f.user_id,
        user: user.name.to_string(),
        endpoint_id: endpoint.id,
        endpoint: endpoint.name,
        token_hash: String::new(),
    };
    Ok((who, col))
}

/// Runs the follow worker: looks at each follow when it is due (poll, subscribe, renew).
pub fn spawn(st: Arc<AppState>) -> Worker {
    Worker::spawn(async move {
        loop {
            let claim = st.hub.timeout.as_millis() as i64 * 3 + 5_000;
            let due = match st.mesh.store.follows_due(now_ms(), claim, 16).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim follows");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = st.follow_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for f in due {
                let st = st.clone();
                running.spawn(async move {
                    let id = f.id;
                    if let Err(e) = look(&st, f).await {
                        tracing::error!(error = %format!("{e:#}"), follow = id, "a follow failed");
                    }
                });
            }
            while running.join_next().await.is_some() {}
        }
    })
}

async fn look(st: &AppState, mut f: Follow) -> anyhow::Result<()> {
    let now = now_ms();
    if f.state == FollowState::Subscribed && now < f.lease_expires_at {
        // The lease ends soon: renew it (pushes keep coming meanwhile).
        return subscribe_at_hub(st, f).await;
    }
    if f.state == FollowState::Subscribing {
        f.last_error = Some("the hub did not verify the subscription in time".into());
    }
    f.state = FollowState::Polling;
    f.lease_expires_at = 0;
    let cursor = Cursor {
        etag: f.etag.clone(),
        last_modified: f.last_modified.clone(),
    };
    let pulled = connector(&f).pull(&ConnectorHttp(&st.outbound), &cursor).await;
    let reachable = !matches!(
        pulled,
        Err(ConnectorError::Unreachable(_) | ConnectorError::Refused(_) | ConnectorError::Unauthorized(_))
    );
    match pulled {
        Ok(batch) => {
            if !batch.not_modified {
                f.etag = batch.cursor.etag;
                f.last_modified = batch.cursor.last_modified;
                store_items(st, &f, batch.items).await?;
                f.last_error = None;
            }
            if let Some(hub) = batch.hubs.first() {
                f.hub = hub.clone();
                f.topic = batch.self_url.unwrap_or(batch.url);
            } else if !batch.not_modified {
                f.hub.clear();
            }
        }
        // Fetched, but not a feed: nothing to subscribe to either.
        Err(e @ ConnectorError::Malformed(_)) => {
            f.last_error = Some(e.to_string());
            f.hub.clear();
        }
        Err(e) => f.last_error = Some(e.to_string()),
    }
    // A feed that cannot be fetched is not subscribed to either; it is polled again later.
    if f.hub.is_empty() || !reachable {
        f.next_at = now + st.hub.poll_interval.as_millis() as i64;
        return Ok(st.mesh.store.update_follow(&f).await?);
    }
    subscribe_at_hub(st, f).await
}

/// Asks the follow's hub for a subscription (or its renewal). The state is written first:
/// the hub may verify before it answers.
async fn subscribe_at_hub(st: &AppState, mut f: Follow) -> anyhow::Result<()> {
    let store = &st.mesh.store;
    let now = now_ms();
    if f.state != FollowState::Subscribed {
        f.state = FollowState::Subscribing;
    }
    f.next_at = now + st.hub.verify_wait.as_millis() as i64;
    store.update_follow(&f).await?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.topic", &f.topic)
        .append_pair("hub.callback", &callback_url(st, &f))
        .append_pair("hub.secret", &f.secret)
        .append_pair("hub.lease_seconds", &st.hub.default_lease.to_string())
        .finish();
    let refused = match st.outbound.request(Method::POST, &f.hub) {
        Ok(req) => {
            let req = req
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
            match st.outbound.send(req).await {
                Ok(resp) if resp.status().is_success() => None,
                Ok(resp) => Some(format!("the hub answered {}", resp.status())),
                Err(e) => Some(e.to_string()),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    match refused {
        // A failed renewal is tried again at next_at, until the lease ends.
        Some(why) if f.state == FollowState::Subscribing => {
            let next = now + st.hub.poll_interval.as_millis() as i64;
            store
                .follow_fallback(f.id, &format!("subscribing failed: {why}"), next)
                .await?;
        }
        Some(why) => tracing::warn!(follow = f.id, reason = %why, "renewing a subscription failed"),
        None => {}
    }
    Ok(())
}
