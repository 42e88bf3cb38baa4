//! Following outside feeds into a collection: the runtime of the feed connector
//! (`connectors/feed`). The connector fetches and reads the feed through the hub's guarded
//! HTTP; this module keeps its cursor, stores what it brings, and does the WebSub side: it
//! subscribes at the hub the feed names (`Link` headers, then the feed's own links) with a
//! random secret and a callback URL holding a random token, takes pushes whose signature it
//! checked in constant time, and renews the lease before it ends. When the feed names no
//! hub, or the subscription fails or is denied, it polls with conditional GETs. A removed
//! follow (`leaving`) is unsubscribed at its hub, then deleted.

use std::sync::Arc;

use reqwest::Method;

use feedmesh_connector::{Connector, ConnectorError, Cursor, Pulled};
use feedmesh_connector_feed::{FeedConfig, FeedConnector};

use super::WebSub;
use super::protocol::{Form, signature_valid};
use crate::error::{Error, Result};
use crate::fetch::ConnectorHttp;
use crate::jobs::{self, Stop, now_ms};
use crate::store::{Collection, Follow, FollowState, Principal};

/// The callback URL a hub is given for this follow (S5: the token makes it unguessable).
pub fn callback_url(st: &WebSub, f: &Follow) -> String {
    format!("{}/websub/callback/{}", st.base_url, f.callback_token)
}

fn connector(f: &Follow) -> FeedConnector {
    FeedConnector::new(FeedConfig { url: f.url.clone() })
}

/// Stores a pushed document's entries in the follow's collection; returns how many changed.
pub async fn ingest(st: &WebSub, f: &Follow, body: &[u8]) -> Result<usize> {
    let batch = connector(f).receive(body).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(store_items(st, f, batch.items).await?)
}

async fn store_items(st: &WebSub, f: &Follow, items: Vec<Pulled>) -> anyhow::Result<usize> {
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

/// Who a follow writes as (an endpoint `feed-ID` of the user; a feed connector's
/// subscription, `connector-ID`, as the connector's pulls do), and where.
async fn writer(st: &WebSub, f: &Follow) -> anyhow::Result<(Principal, Collection)> {
    let name = match f.connector_id {
        Some(c) => format!("connector-{c}"),
        None => format!("feed-{}", f.id),
    };
    let who = crate::usecases::principal(st, f.user_id, &name).await?;
    let col = st
        .mesh
        .store
        .collections(f.user_id)
        .await?
        .into_iter()
        .find(|c| c.id == f.collection_id)
        .ok_or_else(|| anyhow::anyhow!("the follow's collection is gone"))?;
    Ok((who, col))
}

/// Runs the follow worker: looks at each follow when it is due (poll, subscribe, renew,
/// or tell the hub of a removed one), until `stop`.
pub async fn run(st: Arc<WebSub>, stop: Stop) {
    let wake = st.follow_wake.clone();
    let claim = st.hub.timeout.as_millis() as i64 * 3 + 5_000;
    let store = st.mesh.store.clone();
    jobs::claim_loop(
        "follows",
        stop,
        wake,
        || {
            let store = store.clone();
            async move { Ok(store.follows_due(now_ms(), claim, 16).await?) }
        },
        |f: Follow| {
            let st = st.clone();
            async move {
                let id = f.id;
                if let Err(e) = look(&st, f).await {
                    tracing::error!(error = %format!("{e:#}"), follow = id, "a follow failed");
                }
            }
        },
    )
    .await
}

/// A removed follow's hub is told (its verification GET then finds no follow and is
/// confirmed, see [`verify`]); the follow goes whether or not the hub could be reached.
async fn leave(st: &WebSub, f: Follow) -> anyhow::Result<()> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "unsubscribe")
        .append_pair("hub.topic", &f.topic)
        .append_pair("hub.callback", &callback_url(st, &f))
        .finish();
    if let Some(why) = ask_hub(st, &f.hub, form).await {
        tracing::warn!(reason = %why, follow = f.id, "unsubscribing from a hub failed");
    }
    Ok(st.mesh.store.drop_follow(f.id).await?)
}

/// POSTs a subscriber's request to a hub; `None` when it took it (2xx), else why not.
async fn ask_hub(st: &WebSub, hub: &str, form: String) -> Option<String> {
    let req = match st.outbound.request(Method::POST, hub) {
        Ok(req) => req
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form),
        Err(e) => return Some(e.to_string()),
    };
    match st.outbound.send(req).await {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("the hub answered {}", resp.status())),
        Err(e) => Some(e.to_string()),
    }
}

async fn look(st: &WebSub, mut f: Follow) -> anyhow::Result<()> {
    let now = now_ms();
    // Writes back only if nobody changed the state meanwhile (a denial must not be undone).
    let was = f.state;
    if f.state == FollowState::Leaving {
        return leave(st, f).await;
    }
    if f.state == FollowState::Subscribed && now < f.lease_expires_at {
        // The lease ends soon: renew it (pushes keep coming meanwhile).
        return subscribe_at_hub(st, f, was).await;
    }
    // A feed connector's subscription only subscribes: new, it asks the hub; failed, denied,
    // unverified or run out, it goes (the connector polls, and subscribes anew when its
    // feed next names the hub).
    if f.connector_id.is_some() {
        if f.state == FollowState::Polling && f.last_error.is_none() {
            return subscribe_at_hub(st, f, was).await;
        }
        tracing::info!(follow = f.id, connector = ?f.connector_id, reason = ?f.last_error, "a feed connector's WebSub subscription ended; it polls");
        return Ok(st.mesh.store.drop_follow(f.id).await?);
    }
    if f.state == FollowState::Subscribing {
        f.last_error = Some("the hub did not verify the subscription in time".into());
    }
    f.state = FollowState::Polling;
    f.lease_expires_at = 0;
    let cursor = Cursor {
        etag: f.etag.clone(),
        last_modified: f.last_modified.clone(),
        ..Cursor::default()
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
        st.mesh.store.update_follow(&f, was).await?;
        return Ok(());
    }
    subscribe_at_hub(st, f, was).await
}

/// Asks the follow's hub for a subscription (or its renewal). The state is written first
/// (the hub may verify before it answers), and only if it is still `was`.
async fn subscribe_at_hub(st: &WebSub, mut f: Follow, was: FollowState) -> anyhow::Result<()> {
    let store = &st.mesh.store;
    let now = now_ms();
    if f.state != FollowState::Subscribed {
        f.state = FollowState::Subscribing;
    }
    f.next_at = now + st.hub.verify_wait.as_millis() as i64;
    if !store.update_follow(&f, was).await? {
        return Ok(()); // denied, verified or removed meanwhile: that stands
    }
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.topic", &f.topic)
        .append_pair("hub.callback", &callback_url(st, &f))
        .append_pair("hub.secret", &f.secret)
        .append_pair("hub.lease_seconds", &st.hub.default_lease.to_string())
        .finish();
    match ask_hub(st, &f.hub, form).await {
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

/// How a hub's verification GET was answered.
pub enum Verified {
    /// Confirmed: the challenge, to echo.
    Echo(String),
    /// A denial, taken note of (the follow polls instead).
    Noted,
}

/// The hub's verification of intent (and denials) for the follow behind `token`.
pub async fn verify(st: &WebSub, token: &str, form: &Form) -> Result<Verified> {
    let f = st
        .mesh
        .store
        .follow_by_token(token)
        .await?
        .filter(|f| f.state != FollowState::Leaving);
    let challenge = form.first("hub.challenge").unwrap_or("").to_string();
    let now = now_ms();
    match (form.first("hub.mode"), f) {
        (Some("subscribe"), Some(f)) if !challenge.is_empty() && form.first("hub.topic") == Some(f.topic.as_str()) => {
            let lease = form
                .first("hub.lease_seconds")
                .and_then(|l| l.parse::<i64>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(st.hub.default_lease as i64)
                .min(i64::MAX / 4000);
            // Renew when four fifths of the lease have passed.
            if st
                .mesh
                .store
                .follow_verified(f.id, now + lease * 1000, now + lease * 800)
                .await?
            {
                return Ok(Verified::Echo(challenge));
            }
            Err(Error::NotFound("pending subscription"))
        }
        // We asked to leave (the follow was removed): confirm.
        (Some("unsubscribe"), None) if !challenge.is_empty() => Ok(Verified::Echo(challenge)),
        (Some("denied"), Some(f)) => {
            let reason = form.first("hub.reason").unwrap_or("no reason given");
            let reason: String = reason.chars().take(200).collect();
            st.mesh
                .store
                .follow_fallback(f.id, &format!("the hub denied the subscription: {reason}"), now)
                .await?;
            st.follow_wake.notify_one();
            Ok(Verified::Noted)
        }
        _ => Err(Error::NotFound("pending subscription")),
    }
}

/// The follow a delivery to `token` is for; `None` when there is none (any more): the hub
/// is then told the subscription is over (H6).
pub async fn receiving(st: &WebSub, token: &str) -> Result<Option<Follow>> {
    Ok(st
        .mesh
        .store
        .follow_by_token(token)
        .await?
        .filter(|f| f.state != FollowState::Leaving))
}

/// A hub's delivery for a follow: the signature checked in constant time, the entries
/// stored. A bad or missing signature is acknowledged (WebSub asks for a 2xx) and ignored.
pub async fn receive(st: &WebSub, f: &Follow, signature: Option<&str>, body: &[u8]) -> Result<()> {
    if !signature_valid(signature, &f.secret, body) {
        tracing::warn!(
            follow = f.id,
            "a WebSub delivery with a missing or wrong signature was dropped"
        );
        return Ok(());
    }
    let changed = ingest(st, f, body).await?;
    tracing::debug!(follow = f.id, changed, "a WebSub delivery was stored");
    Ok(())
}
