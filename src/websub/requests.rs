//! `POST /hub` as a use case: a subscribe, unsubscribe or publish request, parsed and
//! checked, rate limited, and queued durably for the verification worker (B4, J6); the
//! answer never waits for verification. Hosted topics are a feed's key URL (`…?key=`);
//! outside topics are taken only in open-hub mode, where a publish ping makes the fetcher
//! GET the topic.

use std::net::IpAddr;

use super::WebSub;
use super::protocol::{Form, HubError, Parsed, parse_request};
use crate::error::{Error, Result};
use crate::jobs::now_ms;
use crate::secrets;
use crate::store::HubRequest;
use crate::usecases::feeds::FeedPath;
use crate::usecases::keys::feed_key_path;

/// A hosted topic, checked: its owner, its feed path and the hash of the key it carries.
struct Hosted {
    user_id: i64,
    feed: String,
    key_hash: String,
}

/// The user, feed and key hash a hosted topic URL names, if it carries a live key for it.
async fn hosted_topic(ws: &WebSub, topic: &str) -> Result<Hosted> {
    let refuse = |why: &str| Error::Invalid(HubError::Topic(why.to_string()).to_string());
    let rest = topic
        .strip_prefix(&ws.base_url)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| refuse("only feeds this hub serves can be subscribed to here"))?;
    let url = url::Url::parse(topic).map_err(|e| refuse(&e.to_string()))?;
    let path = rest.split('?').next().unwrap_or(rest);
    let feed_owner = FeedPath::parse(path)
        .map(|f| f.user())
        .ok_or_else(|| refuse("not a feed of this hub"))?;
    let key = url
        .query_pairs()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| refuse("subscribe to the feed's key URL (…?key=, from POST /api/keys)"))?;
    let key_hash = secrets::hash(&key);
    match ws.mesh.store.feed_key(&key_hash).await? {
        Some(k) if k.user == feed_owner && secrets::same(&k.feed_path, feed_key_path(path)) => Ok(Hosted {
            user_id: k.user_id,
            feed: path.to_string(),
            key_hash,
        }),
        _ => Err(refuse("the key in the topic URL is not a live key for this feed")),
    }
}

/// S3, G7: one client, one callback host, one topic get at most the configured rate.
fn within_rate(ws: &WebSub, keys: Vec<String>) -> Result<()> {
    ws.limits
        .check(&keys)
        .map_err(|wait| Error::RateLimited(format!("too many hub requests; try again in {wait} s"), wait))
}

/// Whether a topic URL is one of this hub's own (then it must be a live hosted topic).
fn is_hosted(ws: &WebSub, topic: &str) -> bool {
    topic.strip_prefix(&ws.base_url).is_some_and(|r| r.starts_with('/'))
}

/// Takes one hub request from `client`: checked, rate limited, and queued (or, for a
/// publish ping of an outside topic, marked for fetching).
pub async fn take(ws: &WebSub, client: IpAddr, form: &Form) -> Result<()> {
    let parsed =
        parse_request(form, ws.outbound.allows_private(), &ws.hub).map_err(|e| Error::Invalid(e.to_string()))?;
    match parsed {
        Parsed::Publish(topics) => {
            let mut keys = vec![format!("client {client}")];
            keys.extend(topics.iter().map(|t| format!("topic {t}")));
            within_rate(ws, keys)?;
            // Hosted topics change through AtomPub; a ping only has to name one of them.
            // An outside topic (open hub) is fetched, if anyone subscribes to it (G3, G4).
            let mut pinged = false;
            for t in &topics {
                if ws.hub.open && !is_hosted(ws, t) {
                    pinged |= ws.mesh.store.topic_ping(t, now_ms()).await?;
                } else {
                    hosted_topic(ws, t).await?;
                }
            }
            if pinged {
                ws.topic_wake.notify_one();
            }
        }
        Parsed::Intent(intent) => {
            let callback_host = url::Url::parse(&intent.callback)
                .map(|u| crate::net::host_key(&u))
                .unwrap_or_default();
            within_rate(
                ws,
                vec![format!("client {client}"), format!("callback {callback_host}")],
            )?;
            let hosted = if ws.hub.open && !is_hosted(ws, &intent.topic) {
                None
            } else {
                Some(hosted_topic(ws, &intent.topic).await?)
            };
            // E3: unsubscribing what is not subscribed changes nothing and calls nobody.
            let known = intent.subscribe
                || ws
                    .mesh
                    .store
                    .subscription(&intent.topic, &intent.callback)
                    .await?
                    .is_some();
            if known {
                let (user_id, feed, key_hash) = match hosted {
                    Some(h) => (Some(h.user_id), h.feed, h.key_hash),
                    None => (None, String::new(), String::new()),
                };
                let req = HubRequest {
                    id: 0,
                    subscribe: intent.subscribe,
                    topic: intent.topic,
                    callback: intent.callback,
                    user_id,
                    feed,
                    key_hash,
                    secret: intent.secret,
                    lease_seconds: i64::try_from(intent.lease_seconds).unwrap_or(i64::MAX),
                    attempts: 0,
                };
                ws.mesh.store.hub_enqueue(&req, 0).await?;
                ws.hub_wake.notify_one();
            }
        }
    }
    Ok(())
}
