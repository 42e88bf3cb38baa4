//! The WebSub hub (../shared/specs/websub.md): subscription requests and verification of
//! intent. Requests are parsed and checked here (pure functions), queued durably in the
//! store, and verified by a worker that claims them, so a restart loses none.
//! Distribution to subscribers is the next step of issue 4; hosted feeds do not advertise
//! this hub until it delivers.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::sync::Notify;

use crate::net::{Outbound, OutboundError, check_url, read_capped};
use crate::secrets;
use crate::store::{HubRequest, Store, Subscription, TopicContent, TopicFetch};

/// The HMAC of `X-Hub-Signature` (I4: sha256 unless a subscriber base needs another).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Signature {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Signature {
    pub fn parse(alg: &str) -> Option<Signature> {
        match alg.to_ascii_lowercase().as_str() {
            "sha1" => Some(Signature::Sha1),
            "sha256" => Some(Signature::Sha256),
            "sha384" => Some(Signature::Sha384),
            "sha512" => Some(Signature::Sha512),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Signature::Sha1 => "sha1",
            Signature::Sha256 => "sha256",
            Signature::Sha384 => "sha384",
            Signature::Sha512 => "sha512",
        }
    }
    /// HMAC of `body` keyed with the secret's UTF-8 bytes.
    fn mac(self, secret: &str, body: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, KeyInit, Mac};
        macro_rules! hmac_of {
            ($digest:ty) => {{
                // HMAC accepts keys of any length, so this cannot fail.
                let mut m = <Hmac<$digest> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }};
        }
        match self {
            Signature::Sha1 => hmac_of!(sha1::Sha1),
            Signature::Sha256 => hmac_of!(sha2::Sha256),
            Signature::Sha384 => hmac_of!(sha2::Sha384),
            Signature::Sha512 => hmac_of!(sha2::Sha512),
        }
    }
}

/// `X-Hub-Signature` value: `alg=hex(HMAC(secret, body))` over the bytes sent (I1, I3).
pub fn signature(alg: Signature, secret: &str, body: &[u8]) -> String {
    format!("{}={}", alg.name(), hex::encode(alg.mac(secret, body)))
}

/// Whether an `X-Hub-Signature` header is a valid HMAC of `body` with `secret`, in any of
/// the four algorithms. The MACs are compared in constant time, after hex decoding (S6).
pub fn signature_valid(header: Option<&str>, secret: &str, body: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Some((alg, given)) = header.and_then(|h| h.trim().split_once('=')) else {
        return false;
    };
    let (Some(alg), Ok(given)) = (Signature::parse(alg), hex::decode(given)) else {
        return false;
    };
    bool::from(alg.mac(secret, body).ct_eq(&given))
}

/// Lease, retry and signing policy (F3, F4, C10, J1, I4); tests shorten the times.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub min_lease: u64,
    pub max_lease: u64,
    pub default_lease: u64,
    /// Attempts of a verification GET that fails by timeout, connection error or 5xx.
    pub verify_attempts: i64,
    /// Attempts of one notification before it is dropped (the subscription stays).
    pub delivery_attempts: i64,
    /// First retry delay of verifications and deliveries; doubles each time, with jitter.
    pub retry_base: Duration,
    pub signature: Signature,
    /// Requests per second per client address, callback host and topic (0: unlimited).
    pub rate_limit: u32,
    /// Accept outside topics (open hub); off by default (S12).
    pub open: bool,
    /// Refuse a `hub.secret` with a plain-http callback (B7); off: accepted with a warning.
    pub strict_secrets: bool,
    /// Open hub: an outside topic that no longer names this hub ends its subscriptions (K7).
    pub strict_topic_hub_link: bool,
    /// Deliveries in flight to one callback host at most (J5).
    pub per_host: usize,
    /// Connect-and-answer limit of every outbound request (J4).
    pub timeout: Duration,
    /// How often expired leases are purged and revoked keys' subscriptions denied (F7, D3).
    pub sweep_every: Duration,
    /// How often a followed feed without a working WebSub subscription is fetched.
    pub poll_interval: Duration,
    /// How long a follow waits for its hub's verification before it polls instead.
    pub verify_wait: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            min_lease: 3600,
            max_lease: 30 * 86_400,
            default_lease: 10 * 86_400,
            verify_attempts: 4,
            delivery_attempts: 10,
            retry_base: Duration::from_secs(30),
            signature: Signature::Sha256,
            rate_limit: 10,
            open: false,
            strict_secrets: false,
            strict_topic_hub_link: false,
            per_host: 128,
            timeout: Duration::from_secs(10),
            sweep_every: Duration::from_secs(10),
            poll_interval: Duration::from_secs(15 * 60),
            verify_wait: Duration::from_secs(60),
        }
    }
}

/// A form-encoded hub request, every pair kept in order (A7: repeated keys, literal dots).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }
    pub fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A6: decodes percent-encoded unreserved characters (`%7E` is `~`), leaves the rest.
pub fn normalize_url(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a `%` may stand right before a multi-byte character.
        if b[i] == b'%'
            && let Some(v) = b.get(i + 1..i + 3).and_then(hex_byte)
            && (v.is_ascii_alphanumeric() || b"-._~".contains(&v))
        {
            out.push(v as char);
            i += 3;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Two hex digits as the byte they spell.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(two[0])? * 16 + digit(*two.get(1)?)?) as u8)
}

/// Why a hub request was refused (a 4xx with this text, B3).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("hub.mode {0:?} is not subscribe, unsubscribe or publish")]
    Mode(String),
    #[error("hub.callback: {0}")]
    Callback(String),
    #[error("hub.topic: {0}")]
    Topic(String),
    #[error("hub.secret must be shorter than 200 bytes")]
    Secret,
    #[error("hub.secret needs an https callback on this hub (strict secrets)")]
    PlainSecret,
    #[error("hub.lease_seconds {0:?} is not a positive whole number")]
    Lease(String),
}

/// The checked parameters of a subscribe or unsubscribe.
#[derive(PartialEq, Eq)]
pub struct Intent {
    pub subscribe: bool,
    pub topic: String,
    pub callback: String,
    pub secret: Option<String>,
    /// The lease granted, after clamping (C12).
    pub lease_seconds: u64,
}

crate::debug_redacted!(Intent { subscribe, callback, lease_seconds } url { topic } secret { secret });

pub enum Parsed {
    Intent(Intent),
    Publish(Vec<String>),
}

/// Parses and checks a hub request (A, B, E4, S1); the topic's hosting is checked apart.
pub fn parse_request(form: &Form, allow_private: bool, settings: &HubSettings) -> Result<Parsed, HubError> {
    let mode = form.first("hub.mode").ok_or(HubError::Missing("hub.mode"))?;
    let subscribe = match mode {
        "subscribe" => true,
        "unsubscribe" => false,
        "publish" => {
            let topics: Vec<String> = form
                .all("hub.topic")
                .chain(form.all("hub.url"))
                .filter(|t| !t.is_empty())
                .map(normalize_url)
                .collect();
            if topics.is_empty() {
                return Err(HubError::Missing("hub.topic (or hub.url)"));
            }
            return Ok(Parsed::Publish(topics));
        }
        other => return Err(HubError::Mode(other.chars().take(40).collect())),
    };
    let callback = form
        .first("hub.callback")
        .filter(|c| !c.is_empty())
        .ok_or(HubError::Missing("hub.callback"))?;
    let topic = form
        .first("hub.topic")
        .filter(|t| !t.is_empty())
        .ok_or(HubError::Missing("hub.topic"))?;
    let callback = normalize_url(callback);
    check_url(&callback, allow_private).map_err(|e| HubError::Callback(e.to_string()))?;
    let topic = normalize_url(topic);
    let secret = form.first("hub.secret").filter(|s| !s.is_empty()).map(str::to_string);
    if secret.as_ref().is_some_and(|s| s.len() >= 200) {
        return Err(HubError::Secret);
    }
    // B7, S10: a secret sent to a plain-http callback can be read on the way.
    if secret.is_some() && callback.starts_with("http:") {
        if settings.strict_secrets {
            return Err(HubError::PlainSecret);
        }
        tracing::warn!("a hub.secret was given with a plain-http callback");
    }
    let lease_seconds = match (subscribe, form.first("hub.lease_seconds")) {
        (true, Some(raw)) => {
            let asked: u64 = raw
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| HubError::Lease(raw.chars().take(40).collect()))?;
            asked.clamp(settings.min_lease, settings.max_lease)
        }
        _ => settings.default_lease, // B9: ignored on unsubscribe
    };
    Ok(Parsed::Intent(Intent {
        subscribe,
        topic,
        callback,
        secret,
        lease_seconds,
    }))
}

/// D2: the denial GET (no challenge); the callback's own query is kept as in C2.
pub fn denial_url(callback: &str, topic: &str, reason: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("hub.mode", "denied");
    q.append_pair("hub.topic", topic);
    q.append_pair("hub.reason", reason);
    join_query(callback, &q.finish())
}

fn join_query(callback: &str, query: &str) -> String {
    let sep = match callback.find('?') {
        None => "?",
        Some(_) if callback.ends_with('?') || callback.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{callback}{sep}{query}")
}

/// The verification URL: the callback's own query kept, the hub's parameters appended (C2).
pub fn verification_url(callback: &str, req: &HubRequest, challenge: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("hub.mode", if req.subscribe { "subscribe" } else { "unsubscribe" });
    q.append_pair("hub.topic", &req.topic);
    q.append_pair("hub.challenge", challenge);
    if req.subscribe {
        q.append_pair("hub.lease_seconds", &req.lease_seconds.to_string());
    }
    join_query(callback, &q.finish())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a verification attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Confirmed,
    /// The subscriber said no (wrong echo, 404, another 4xx, a redirect): final.
    Refused,
    /// Timeout, connection error or 5xx: may be tried again.
    Failed,
}

/// Largest outside topic document fetched (open hub); larger ones are not distributed.
pub const MAX_TOPIC_BYTES: usize = 4 << 20;

/// Runs the open-hub fetcher: claims pinged outside topics, GETs each (redirects re-checked,
/// G4, S2), and stores new content as the topic's next version; `changed` then wakes the
/// delivery worker. Unchanged content (same SHA-256) is not distributed again.
pub fn spawn_topic_fetcher(
    store: Arc<dyn Store>,
    outbound: Outbound,
    wake: Arc<Notify>,
    strict_hub: Option<String>,
    changed: impl Fn() + Send + Sync + 'static,
) -> Worker {
    let changed = Arc::new(changed);
    Worker(tokio::spawn(async move {
        loop {
            let claimed_at = now_ms();
            let due = match store.topic_fetches_due(claimed_at, 60_000, 16).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim topic fetches");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for topic in due {
                let (store, outbound, changed) = (store.clone(), outbound.clone(), changed.clone());
                let strict_hub = strict_hub.clone();
                running.spawn(async move {
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
                });
            }
            while running.join_next().await.is_some() {}
        }
    }))
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
                content_type: f.content_type,
                body: f.body.to_vec(),
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

/// Stops the worker it holds when dropped (with the server that owns it).
pub struct Worker(tokio::task::JoinHandle<()>);

impl Worker {
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Worker {
        Worker(tokio::spawn(task))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the verification worker: claims due requests, verifies each (up to 16 at once), and
/// applies the outcome. Woken by `wake`, and every second anyway.
pub fn spawn_worker(store: Arc<dyn Store>, outbound: Outbound, settings: HubSettings, wake: Arc<Notify>) -> Worker {
    Worker(tokio::spawn(async move {
        loop {
            let claimed = match store.hub_claim(now_ms(), 60_000, 16).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim WebSub verifications");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for req in claimed {
                let (store, outbound, settings) = (store.clone(), outbound.clone(), settings.clone());
                running.spawn(async move { verify(store.as_ref(), &outbound, &settings, req).await });
            }
            while running.join_next().await.is_some() {}
        }
    }))
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
            let delay = settings.retry_base.as_millis() as i64 * (1 << (req.attempts - 1).clamp(0, 10));
            store.hub_retry(req.id, now_ms() + delay).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_hmac_vectors() {
        // RFC 2202 test case 2 (HMAC-SHA1) and RFC 4231 test case 2 (SHA-256/384/512).
        let (key, data) = ("Jefe", b"what do ya want for nothing?".as_slice());
        assert_eq!(
            signature(Signature::Sha1, key, data),
            "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            signature(Signature::Sha256, key, data),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature(Signature::Sha384, key, data),
            "sha384=af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"
        );
        assert_eq!(
            signature(Signature::Sha512, key, data),
            "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // Verification: any of the four algorithms, constant-time, refusing near misses.
        for alg in [Signature::Sha1, Signature::Sha256, Signature::Sha384, Signature::Sha512] {
            let good = signature(alg, key, data);
            assert!(signature_valid(Some(&good), key, data), "{good}");
            assert!(!signature_valid(Some(&good), "other", data));
            assert!(!signature_valid(Some(&good), key, b"what do ya want for nothing!"));
            assert!(
                !signature_valid(Some(&good[..good.len() - 2]), key, data),
                "a truncated MAC"
            );
        }
        assert!(!signature_valid(None, key, data));
        assert!(!signature_valid(Some("md5=abc"), key, data));
        assert!(!signature_valid(Some("sha256=zz"), key, data));
        assert!(!signature_valid(Some("sha256"), key, data));
    }

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes())
    }

    fn intent(s: &str) -> Result<Intent, HubError> {
        match parse_request(&form(s), false, &HubSettings::default())? {
            Parsed::Intent(i) => Ok(i),
            Parsed::Publish(_) => panic!("publish"),
        }
    }

    const OK: &str = "hub.mode=subscribe&hub.topic=https%3A%2F%2Fhub.example%2Fu%2Fa%2Fstream.atom&hub.callback=https%3A%2F%2Fsub.example%2Fcb";

    #[test]
    fn requests_parse_with_unknown_parameters_ignored() {
        let i = intent(&format!("{OK}&foo=bar&hub.foo=hub.bar")).unwrap();
        assert!(i.subscribe);
        assert_eq!(i.callback, "https://sub.example/cb");
        assert_eq!(i.lease_seconds, HubSettings::default().default_lease);
        assert_eq!(i.secret, None);
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(
            intent("hub.mode=subscribe&hub.topic=x").unwrap_err(),
            HubError::Missing("hub.callback")
        );
        assert!(matches!(
            intent("hub.mode=subscribe&hub.topic=x&hub.callback=").unwrap_err(),
            HubError::Missing(_)
        ));
        assert!(matches!(
            intent("hub.mode=watch&hub.topic=x&hub.callback=y").unwrap_err(),
            HubError::Mode(_)
        ));
        assert!(matches!(
            intent(&OK.replace("https%3A%2F%2Fsub", "ftp%3A%2F%2Fsub")).unwrap_err(),
            HubError::Callback(_)
        ));
        assert!(matches!(
            intent(&OK.replace("https%3A%2F%2Fsub.example", "http%3A%2F%2F127.0.0.1")).unwrap_err(),
            HubError::Callback(_)
        ));
        for lease in ["abc", "-5", "0", "1.5"] {
            assert!(matches!(
                intent(&format!("{OK}&hub.lease_seconds={lease}")).unwrap_err(),
                HubError::Lease(_)
            ));
        }
    }

    #[test]
    fn secrets_under_200_bytes_counted_as_utf8() {
        assert!(intent(&format!("{OK}&hub.secret={}", "a".repeat(199))).is_ok());
        assert_eq!(
            intent(&format!("{OK}&hub.secret={}", "a".repeat(200))).unwrap_err(),
            HubError::Secret
        );
        assert_eq!(
            intent(&format!("{OK}&hub.secret={}", "%C3%A9".repeat(100))).unwrap_err(),
            HubError::Secret
        );
    }

    #[test]
    fn strict_secrets_refuse_plain_http_callbacks() {
        let strict = HubSettings {
            strict_secrets: true,
            ..HubSettings::default()
        };
        let ask = |callback: &str, secret: &str, settings: &HubSettings| {
            let body = format!("hub.mode=subscribe&hub.topic=https://t/&hub.callback={callback}&hub.secret={secret}");
            parse_request(&form(&body), true, settings).map(|_| ())
        };
        assert_eq!(ask("http://cb/", "s", &strict), Err(HubError::PlainSecret));
        assert_eq!(ask("https://cb/", "s", &strict), Ok(()));
        assert_eq!(ask("http://cb/", "", &strict), Ok(()), "no secret, nothing to protect");
        assert_eq!(
            ask("http://cb/", "s", &HubSettings::default()),
            Ok(()),
            "accepted by default"
        );
    }

    #[test]
    fn leases_are_clamped_and_ignored_on_unsubscribe() {
        let s = HubSettings::default();
        assert_eq!(
            intent(&format!("{OK}&hub.lease_seconds=5")).unwrap().lease_seconds,
            s.min_lease
        );
        assert_eq!(
            intent(&format!("{OK}&hub.lease_seconds=999999999"))
                .unwrap()
                .lease_seconds,
            s.max_lease
        );
        let un = OK.replace("subscribe", "unsubscribe");
        assert_eq!(
            intent(&format!("{un}&hub.lease_seconds=abc")).unwrap().lease_seconds,
            s.default_lease
        );
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(normalize_url("http://h/a%7Eb%41%2F%C3%A9"), "http://h/a~bA%2F%C3%A9");
        assert_eq!(normalize_url("http://h/é%"), "http://h/é%");
        // A `%` before a multi-byte character (it once sliced inside the character).
        assert_eq!(normalize_url("http://x/%aé"), "http://x/%aé");
        assert_eq!(normalize_url("%é"), "%é");
        assert_eq!(normalize_url("%4"), "%4");
    }

    #[test]
    fn publish_takes_every_topic_and_url() {
        let Parsed::Publish(t) = parse_request(
            &form("hub.mode=publish&hub.url=http://a/x&hub.topic=http://a/y"),
            false,
            &HubSettings::default(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(t, ["http://a/y", "http://a/x"]);
    }

    #[test]
    fn verification_keeps_the_callback_query_first() {
        let req = HubRequest {
            id: 1,
            subscribe: true,
            topic: "http://hub/t?key=k".into(),
            callback: String::new(),
            user_id: Some(1),
            feed: String::new(),
            key_hash: String::new(),
            secret: None,
            lease_seconds: 60,
            attempts: 1,
        };
        let url = verification_url("http://s/cb?z=y&a=b&hub.challenge=imahacker", &req, "CH");
        assert!(
            url.starts_with("http://s/cb?z=y&a=b&hub.challenge=imahacker&hub.mode=subscribe&"),
            "{url}"
        );
        assert!(url.ends_with("&hub.challenge=CH&hub.lease_seconds=60"), "{url}");
        assert!(url.contains("hub.topic=http%3A%2F%2Fhub%2Ft%3Fkey%3Dk"), "{url}");
        assert!(verification_url("http://s/cb", &req, "CH").starts_with("http://s/cb?hub.mode="));
    }
}
