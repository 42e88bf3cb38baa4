//! WebSub (../shared/specs/websub.md), both sides, built on the use cases below it:
//! - `protocol`: the wire format, pure (forms, checks, normalising, URLs, signatures);
//! - `requests`: `POST /hub` as a use case (hosted topics, rate limits, the durable queue);
//! - `hub`: the verification worker, and ending a subscription with a denial;
//! - `deliver`: content distribution (a feed's diff to each subscriber, lanes per host);
//! - `topics`: open-hub fetching of outside topics;
//! - `push` and `limits`: the delivery client and the request rate limits;
//! - `subscriber`: the other side, following outside feeds (the feed connector's runtime).
//!
//! Must never: be called by the use cases (they wake its workers through [`Core`]'s
//! notifications), nor build HTTP responses (the handlers in `web/` do).

pub mod deliver;
pub mod hub;
pub mod limits;
pub mod protocol;
pub mod push;
pub mod requests;
pub mod subscriber;
pub mod topics;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::HubSettings;
use crate::usecases::Core;

/// What the WebSub side adds to [`Core`]: its policy, its delivery client and rate limits,
/// and its workers' wake-ups. Dereferences to the core.
pub struct WebSub {
    pub core: Arc<Core>,
    pub hub: HubSettings,
    /// Content distribution's own client, under the outbound policy (see `push`).
    pub pusher: push::Pusher,
    /// Rates of hub requests per client, callback host and topic.
    pub limits: limits::RateLimits,
    /// Wakes the verification worker when a request is queued.
    pub hub_wake: Arc<Notify>,
    /// Wakes the open-hub topic fetcher when a ping marks a topic due.
    pub topic_wake: Arc<Notify>,
}

impl WebSub {
    pub fn new(core: Arc<Core>, hub: HubSettings, allow_private: bool) -> Self {
        WebSub {
            pusher: push::Pusher::new(allow_private, hub.timeout),
            limits: limits::RateLimits::new(hub.rate_limit),
            core,
            hub,
            hub_wake: Arc::new(Notify::new()),
            topic_wake: Arc::new(Notify::new()),
        }
    }
}

impl std::ops::Deref for WebSub {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}
