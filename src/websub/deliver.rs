//! WebSub content distribution: each subscription whose cursor is behind its user's head is
//! claimed, sent the entries its feed gained since the cursor (a diff of the feed, rendered
//! exactly as GET renders it), and its cursor advanced. One claim per subscription at a time
//! keeps deliveries in order; the cursor makes them durable (a crash re-sends, never skips).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use axum::http::{HeaderMap, HeaderValue, header};

use super::WebSub;
use super::protocol::signature;
use crate::config::HubSettings;
use crate::formats::Format;
use crate::jobs::{Backoff, Stop, jitter_from, now_ms};
use crate::store::DueDelivery;
use crate::store::Page;
use crate::usecases::feeds::{FeedPath, activity_document, collection_document, stream_document};

/// How long a claim on a subscription holds: longer than one delivery attempt (the outbound
/// timeout), short enough that another process takes over soon after a crash.
fn claim_ms(settings: &HubSettings) -> i64 {
    (settings.timeout.as_millis() as i64 + 5_000).max(15_000)
}

/// Subscriptions claimed per round.
const BATCH: u32 = 1024;

/// Subscriptions claimed by the first round after the loop was idle.
const FIRST_BATCH: u32 = 128;

/// The most entries one notification carries; more follow in the next one.
const MAX_ENTRIES: u32 = 100;

/// Runs deliveries until the server stops: woken by every local change, and each second.
/// Claimed deliveries wait in one queue per callback host, served by at most `per_host`
/// lanes (J5): tasks that each send one notification after another, so a fan-out costs no
/// task per notification. The loop never waits for the database: the next batch is claimed
/// while the last one is still on the wire, and finished deliveries are recorded in the
/// background, in batches, one write per distinct cursor, while the next ones are sent.
pub async fn run(st: Arc<WebSub>, stop: Stop) {
    {
        let mut last_purge = 0i64;
        let mut changed = st.mesh.changed.subscribe();
        // J5/S4: deliveries wait in one queue per callback host, served by at most
        // `per_host` lanes, each sending one notification after another.
        let queues: Queues = Arc::default();
        let mut lanes = JoinSet::new();
        let (results, mut finished) = tokio::sync::mpsc::unbounded_channel();
        // Deliveries queued or in flight.
        let mut running = 0usize;
        // At most one claim and one record at a time; dropped (aborted) with the loop.
        let mut claiming: JoinSet<(u32, Vec<DueDelivery>)> = JoinSet::new();
        let mut recording: JoinSet<()> = JoinSet::new();
        let mut done: HashMap<u64, Vec<i64>> = HashMap::new();
        let mut done_count = 0usize;
        let mut oldest_done = Instant::now();
        // Whether a claim may find more: the last one came back full or a change happened
        // since; otherwise the loop looks once a second (retries come due).
        let mut more_due = true;
        let mut last_claim = Instant::now();
        loop {
            let now = now_ms();
            if now - last_purge >= st.hub.sweep_every.as_millis() as i64 {
                last_purge = now;
                if let Err(e) = st.mesh.store.purge_expired(now).await {
                    tracing::error!(error = %e, "cannot purge expired WebSub subscriptions");
                }
                st.limits.forget_idle();
                st.pusher.prune();
                if let Err(e) = super::hub::end_revoked(&st).await {
                    tracing::error!(error = %e, "cannot end WebSub subscriptions of revoked keys");
                }
            }
            if claiming.is_empty()
                && running < BATCH as usize
                && (more_due || last_claim.elapsed() >= Duration::from_secs(1))
            {
                more_due = false;
                last_claim = Instant::now();
                // From idle, a small claim first: its notifications are on the wire while
                // the next, full one is claimed.
                let limit = if running == 0 { FIRST_BATCH } else { BATCH };
                let st = st.clone();
                claiming.spawn(async move {
                    let lease = claim_ms(&st.hub);
                    let due = st
                        .mesh
                        .store
                        .deliveries_due(now_ms(), lease, limit)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "cannot claim WebSub deliveries");
                            Vec::new()
                        });
                    (limit, due)
                });
            }
            if recording.is_empty()
                && done_count > 0
                && (done_count >= BATCH as usize / 2 || oldest_done.elapsed() >= RECORD_WAIT)
            {
                let batch = std::mem::take(&mut done);
                done_count = 0;
                let st = st.clone();
                recording.spawn(async move { record(&st, batch).await });
            }
            let wait = if done_count > 0 {
                RECORD_WAIT
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                Some(claimed) = claiming.join_next() => {
                    let (limit, due) = claimed.unwrap_or_default();
                    more_due |= due.len() == limit as usize;
                    if !due.is_empty() {
                        // One render per (feed, cursor) and one key check per key in a batch:
                        // a fan-out to many subscribers of one feed renders its diff once.
                        let round = Arc::new(Round::default());
                        let per_host = st.hub.per_host.max(1);
                        // URLs are parsed before the lock that the lanes take too.
                        let due: Vec<_> = due
                            .into_iter()
                            .map(|d| {
                                let url = crate::net::check_url(&d.callback, st.outbound.allows_private()).ok();
                                (url.as_ref().map(crate::net::host_key).unwrap_or_default(), d, url)
                            })
                            .collect();
                        let mut queues_now = queues.lock().unwrap_or_else(|p| p.into_inner());
                        for (host, d, url) in due {
                            let queue = queues_now.entry(host.clone()).or_default();
                            queue.waiting.push_back((round.clone(), d, url));
                            running += 1;
                            if queue.lanes < per_host {
                                queue.lanes += 1;
                                let lane = Lane {
                                    queues: queues.clone(),
                                    host,
                                    released: false,
                                };
                                lanes.spawn(lane.run(st.clone(), results.clone()));
                            }
                        }
                    }
                }
                Some(first) = finished.recv() => {
                    // Take every other finished one too.
                    let mut all = vec![first];
                    while let Ok(more) = finished.try_recv() {
                        all.push(more);
                    }
                    running -= all.len();
                    for (id, upto) in all.into_iter().flatten() {
                        if done_count == 0 {
                            oldest_done = Instant::now();
                        }
                        done.entry(upto).or_default().push(id);
                        done_count += 1;
                    }
                }
                Some(ended) = lanes.join_next() => {
                    if let Err(e) = ended
                        && e.is_panic()
                    {
                        tracing::error!(error = %e, "a WebSub delivery lane panicked");
                    }
                }
                Some(_) = recording.join_next() => {}
                Ok(()) = changed.changed() => {
                    changed.borrow_and_update();
                    more_due = true;
                }
                _ = stop.stopped() => {
                    // Finished deliveries are recorded; the ones in flight are sent again
                    // by whoever claims them next (a delivery may repeat, never be lost).
                    record(&st, std::mem::take(&mut done)).await;
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// How long a finished delivery waits at most before its cursor is recorded.
const RECORD_WAIT: Duration = Duration::from_millis(20);

/// Advances the cursors of finished deliveries: one write per distinct position.
async fn record(st: &WebSub, done: HashMap<u64, Vec<i64>>) {
    for (upto, ids) in done {
        if let Err(e) = st.mesh.store.delivered(&ids, upto).await {
            tracing::error!(error = %e, "cannot record WebSub deliveries");
        }
    }
}

/// Deliveries waiting for one callback host (with their round and checked callback URL,
/// None when it fails the check), and the lanes serving them.
#[derive(Default)]
struct HostQueue {
    waiting: std::collections::VecDeque<(Arc<Round>, DueDelivery, Option<url::Url>)>,
    lanes: usize,
}

type Queues = Arc<std::sync::Mutex<HashMap<String, HostQueue>>>;

/// One of a callback host's lanes: sends its queue's notifications one after another until
/// the queue is empty. Its count is given back however it ends (done, aborted, panicked).
struct Lane {
    queues: Queues,
    host: String,
    released: bool,
}

/// Gives a lane's count back (when its queue is found empty, under the same lock, so that a
/// delivery queued meanwhile always finds its host's count without this lane) and drops the
/// queue when no lane is left and nothing waits.
fn release(queues: &mut HashMap<String, HostQueue>, host: &str) {
    if let Some(q) = queues.get_mut(host) {
        q.lanes -= 1;
        if q.lanes == 0 && q.waiting.is_empty() {
            queues.remove(host);
        }
    }
}

impl Lane {
    async fn run(mut self, st: Arc<WebSub>, results: tokio::sync::mpsc::UnboundedSender<Option<(i64, u64)>>) {
        loop {
            let next = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let next = queues.get_mut(&self.host).and_then(|q| q.waiting.pop_front());
                if next.is_none() {
                    release(&mut queues, &self.host);
                }
                next
            };
            let Some((round, d, url)) = next else {
                self.released = true;
                return;
            };
            let result = match deliver(&st, &round, &d, url).await {
                Ok(done) => done.map(|upto| (d.id, upto)),
                Err(e) => {
                    tracing::error!(error = %e, "WebSub delivery bookkeeping failed");
                    None
                }
            };
            if results.send(result).is_err() {
                return;
            }
        }
    }
}

impl Drop for Lane {
    /// A lane that did not end by finding its queue empty (aborted with the server, or
    /// panicked) gives its count back here.
    fn drop(&mut self) {
        if !self.released {
            release(&mut self.queues.lock().unwrap_or_else(|p| p.into_inner()), &self.host);
        }
    }
}

/// What one claim round shares between its deliveries.
#[derive(Default)]
struct Round {
    /// One cell per (feed, cursor): the first delivery renders, the others wait for it;
    /// different feeds render side by side.
    rendered: std::sync::Mutex<HashMap<(String, u64), RenderCell>>,
    live_keys: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>,
}

/// A notification body (empty: nothing for this subscriber), its type, and the cursor it
/// brings the subscriber up to.
struct Render {
    body: bytes::Bytes,
    content_type: std::borrow::Cow<'static, str>,
    upto: u64,
}

impl Render {
    fn nothing(upto: u64) -> Option<Render> {
        Some(Render {
            body: bytes::Bytes::new(),
            content_type: "".into(),
            upto,
        })
    }
    fn of(body: String, content_type: &'static str, upto: u64) -> Option<Render> {
        Some(Render {
            body: body.into(),
            content_type: content_type.into(),
            upto,
        })
    }
}

type Rendered = Arc<Option<Render>>;
type RenderCell = Arc<tokio::sync::OnceCell<Rendered>>;

impl Round {
    async fn render(&self, st: &WebSub, d: &DueDelivery) -> anyhow::Result<Rendered> {
        let cell = {
            let mut map = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
            // A hosted feed's path names it; an outside topic has no path, only its URL.
            let name = if d.user_id.is_some() { &d.feed } else { &d.topic };
            map.entry((name.clone(), d.delivered_seq)).or_default().clone()
        };
        let rendered = cell
            .get_or_try_init(|| async { render(st, d).await.map(Arc::new) })
            .await?;
        Ok(rendered.clone())
    }

    /// Whether a feed key is still live: one lookup per key and round, however many of the
    /// round's deliveries ask at once.
    async fn key_live(&self, st: &WebSub, key_hash: &str) -> anyhow::Result<bool> {
        if key_hash.is_empty() {
            return Ok(true); // an outside topic: no key
        }
        let cell = {
            let mut map = self.live_keys.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key_hash) {
                Some(cell) => cell.clone(),
                None => map.entry(key_hash.to_string()).or_default().clone(),
            }
        };
        let live = cell
            .get_or_try_init(|| async { anyhow::Ok(st.mesh.store.feed_key(key_hash).await?.is_some()) })
            .await?;
        Ok(*live)
    }
}

/// The notification for a subscriber at `d.delivered_seq`; None when the topic is gone.
async fn render(st: &WebSub, d: &DueDelivery) -> anyhow::Result<Option<Render>> {
    let Some(user_id) = d.user_id else {
        // An outside topic: its whole content as last fetched, byte for byte (H2, H11).
        return Ok(match st.mesh.store.topic_content(&d.topic).await? {
            None => None,
            Some(c) if c.version <= d.delivered_seq => Render::nothing(d.delivered_seq),
            Some(c) => Some(Render {
                body: c.body.into(),
                content_type: c.content_type.into(),
                upto: c.version,
            }),
        });
    };
    let head = st.mesh.store.user_head(user_id).await?;
    match FeedPath::parse(&d.feed) {
        Some(FeedPath::Collection { user, collection }) => {
            let col = st.mesh.store.collection(user_id, collection).await?;
            let records = st.mesh.store.items_since(col.id, d.delivered_seq, MAX_ENTRIES).await?;
            let upto = if records.len() == MAX_ENTRIES as usize {
                records.last().map_or(head, |r| r.seq)
            } else {
                head
            };
            if records.is_empty() {
                return Ok(Render::nothing(upto));
            }
            let (body, _) = collection_document(st, user, &col, &records, Some(d.delivered_seq), d.topic.clone(), None);
            Ok(Render::of(body, Format::Atom.content_type(), upto))
        }
        Some(FeedPath::Stream { user, device, format }) => {
            let endpoint = match device {
                Some(dev) => Some(st.mesh.store.endpoint(user_id, dev).await?.id),
                None => None,
            };
            let mut changes = st
                .mesh
                .store
                .changes_after(user_id, endpoint, d.delivered_seq, MAX_ENTRIES)
                .await?;
            let upto = if changes.len() == MAX_ENTRIES as usize {
                changes.last().map_or(head, |c| c.seq)
            } else {
                head.max(changes.last().map_or(0, |c| c.seq))
            };
            if changes.is_empty() {
                return Ok(Render::nothing(upto));
            }
            changes.reverse(); // feeds list the newest first
            let fallback = changes[0].at;
            let (body, _) = stream_document(st, user, device, format, &changes, d.topic.clone(), None, fallback);
            Ok(Render::of(body, format.content_type(), upto))
        }
        Some(FeedPath::Activities { user, of, format }) => {
            let r = match crate::usecases::timelines::resolve(st, user_id, user, of, format).await {
                Ok(r) => r,
                // The contact, company or view is gone: nothing to send, cursor to the head.
                Err(crate::error::Error::NotFound(_)) => return Ok(Render::nothing(head)),
                Err(e) => return Err(anyhow::anyhow!(e)),
            };
            let (changes, why) =
                crate::usecases::timelines::page(st, user_id, &r, Page::After(d.delivered_seq), MAX_ENTRIES).await?;
            // `page` lists the newest first; the oldest sent is the last.
            let upto = if changes.len() == MAX_ENTRIES as usize {
                changes.first().map_or(head, |c| c.seq)
            } else {
                head.max(changes.first().map_or(0, |c| c.seq))
            };
            if changes.is_empty() {
                return Ok(Render::nothing(upto));
            }
            let fallback = changes[0].at;
            let (body, _) = activity_document(
                st,
                user,
                &r.meta,
                format,
                &changes,
                &why,
                d.topic.clone(),
                None,
                fallback,
            );
            Ok(Render::of(body, format.content_type(), upto))
        }
        None => Ok(None),
    }
}

/// Sends one subscriber its notification. `Some(upto)` when its cursor may advance to `upto`
/// (the caller records those together); failures, 410 and denials are recorded here.
async fn deliver(st: &WebSub, round: &Round, d: &DueDelivery, url: Option<url::Url>) -> anyhow::Result<Option<u64>> {
    let store = &st.mesh.store;
    if !round.key_live(st, &d.key_hash).await? {
        // The key was revoked: nothing more is sent but the denial (D4).
        super::hub::deny(
            store.as_ref(),
            &st.outbound,
            d.id,
            &d.topic,
            &d.callback,
            super::hub::REVOKED,
        )
        .await?;
        return Ok(None);
    }
    let rendered = round.render(st, d).await?;
    let Some(Render {
        body,
        content_type,
        upto,
    }) = rendered.as_ref()
    else {
        // The feed no longer exists: the subscription is over (D3).
        store.drop_subscription(d.id).await?;
        return Ok(None);
    };
    if body.is_empty() {
        // Changes elsewhere in the mesh, none in this feed: nothing to send.
        return Ok(Some(*upto));
    }
    let Some(url) = url else {
        // The callback no longer passes the outbound checks.
        store.drop_subscription(d.id).await?;
        return Ok(None);
    };
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type)?);
    let link = format!("<{}>; rel=\"hub\", <{}>; rel=\"self\"", st.hub_url(), d.topic);
    headers.insert(header::LINK, HeaderValue::try_from(link)?);
    if let Some(secret) = &d.secret {
        headers.insert("x-hub-signature", signature(st.hub.signature, secret, body).parse()?);
    }
    match st.pusher.post(&url, headers, body.clone()).await {
        Ok(status) if status.is_success() => Ok(Some(*upto)),
        // H6: 410 Gone ends the subscription.
        Ok(reqwest::StatusCode::GONE) => {
            store.drop_subscription(d.id).await?;
            Ok(None)
        }
        _ if d.attempts + 1 >= st.hub.delivery_attempts => {
            // J2: give up on this notification, keep the subscription (H8).
            tracing::warn!(
                attempts = d.attempts + 1,
                "a WebSub notification was dropped after its last retry"
            );
            Ok(Some(*upto))
        }
        _ => {
            // J1: from the retry base, doubling, at most 6 hours, half of it random.
            let backoff = Backoff {
                base: st.hub.retry_base,
                cap: Duration::from_secs(6 * 3600),
                jitter_percent: 50,
            };
            let attempt = u32::try_from(d.attempts.clamp(0, 16)).unwrap_or(16) + 1;
            let delay = backoff.delay(attempt, jitter_from());
            store.delivery_failed(d.id, now_ms() + delay.as_millis() as i64).await?;
            Ok(None)
        }
    }
}
