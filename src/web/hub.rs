//! `POST /hub`: WebSub subscribe, unsubscribe and publish requests (form-encoded). The answer
//! (202) never waits for verification, which a worker does from the durable queue (B4, J6).
//! Hosted topics are a feed's capability URL (`…?key=`). Outside topics are accepted only
//! in open-hub mode (`--open-hub`): a publish ping then makes the fetcher GET the topic.

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::feed_key_path;
use super::{AppState, SharedState};
use crate::error::{AppError, AppResult};
use crate::hub::{Form, HubError, Parsed, parse_request};
use crate::secrets;
use crate::store::HubRequest;

const MAX_FORM_BYTES: usize = 16 * 1024;

/// The user, feed and key hash a hosted topic URL names, if it carries a live key for it.
async fn hosted_topic(st: &AppState, topic: &str) -> AppResult<(i64, String, String)> {
    let refuse = |why: &str| AppError::BadRequest(HubError::Topic(why.to_string()).to_string());
    let rest = topic
        .strip_prefix(&st.base_url)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| refuse("only feeds this hub serves can be subscribed to here"))?;
    let url = url::Url::parse(topic).map_err(|e| refuse(&e.to_string()))?;
    let path = rest.split('?').next().unwrap_or(rest);
    let feed_owner = {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["u", user, feed] if feed.starts_with("stream.") => Some(*user),
            ["u", user, "endpoints", _, feed] if feed.starts_with("stream.") => Some(*user),
            ["atompub", user, _collection] => Some(*user),
            _ => None,
        }
    }
    .ok_or_else(|| refuse("not a feed of this hub"))?;
    let key = url
        .query_pairs()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| refuse("subscribe to the feed's key URL (…?key=, from POST /api/keys)"))?;
    let key_hash = secrets::hash(&key);
    let found = st.mesh.store.feed_key(&key_hash).await?;
    match found {
        Some(k) if k.user == feed_owner && secrets::same(&k.feed_path, feed_key_path(path)) => {
            Ok((k.user_id, path.to_string(), key_hash))
        }
        _ => Err(refuse("the key in the topic URL is not a live key for this feed")),
    }
}

/// S3, G7: one client, one callback host, one topic get at most the configured rate.
fn within_rate(st: &AppState, keys: Vec<String>) -> AppResult<()> {
    st.limits
        .check(&keys)
        .map_err(|wait| AppError::TooManyRequests(format!("too many hub requests; try again in {wait} s"), wait))
}

/// Whether a topic URL is one of this hub's own (then it must be a live hosted topic).
fn is_hosted(st: &AppState, topic: &str) -> bool {
    topic.strip_prefix(&st.base_url).is_some_and(|r| r.starts_with('/'))
}

pub async fn request(
    State(st): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Response> {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Err(AppError::UnsupportedMediaType(
            "send hub requests as application/x-www-form-urlencoded".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::TooLarge(format!("hub requests are limited to {MAX_FORM_BYTES} bytes")))?;
    let form = Form::parse(&bytes);
    let parsed =
        parse_request(&form, st.outbound.allows_private(), &st.hub).map_err(|e| AppError::BadRequest(e.to_string()))?;
    match parsed {
        Parsed::Publish(topics) => {
            let mut keys = vec![format!("client {}", peer.ip())];
            keys.extend(topics.iter().map(|t| format!("topic {t}")));
            within_rate(&st, keys)?;
            // Hosted topics change through AtomPub; a ping only has to name one of them.
            // An outside topic (open hub) is fetched, if anyone subscribes to it (G3, G4).
            let mut pinged = false;
            for t in &topics {
                if st.hub.open && !is_hosted(&st, t) {
                    pinged |= st.mesh.store.topic_ping(t, crate::hub::now_ms()).await?;
                } else {
                    hosted_topic(&st, t).await?;
                }
            }
            if pinged {
                st.topic_wake.notify_one();
            }
        }
        Parsed::Intent(intent) => {
            within_rate(
                &st,
                vec![
                    format!("client {}", peer.ip()),
                    format!(
                        "callback {}",
                        url::Url::parse(&intent.callback)
                            .map(|u| crate::net::host_key(&u))
                            .unwrap_or_default()
                    ),
                ],
            )?;
            let (user_id, feed, key_hash) = if st.hub.open && !is_hosted(&st, &intent.topic) {
                (None, String::new(), String::new())
            } else {
                let (user_id, feed, key_hash) = hosted_topic(&st, &intent.topic).await?;
                (Some(user_id), feed, key_hash)
            };
            // E3: unsubscribing what is not subscribed changes nothing and calls nobody.
            let known = intent.subscribe
                || st
                    .mesh
                    .store
                    .subscription(&intent.topic, &intent.callback)
                    .await?
                    .is_some();
            if known {
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
                st.mesh.store.hub_enqueue(&req, 0).await?;
                st.hub_wake.notify_one();
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "accepted\n",
    )
        .into_response())
}
