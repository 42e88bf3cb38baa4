//! Outbound HTTP that cannot be turned against the hub's own network (WebSub S1, S2, S14).
//! Only http/https URLs without userinfo or fragment; every resolved address is checked and
//! the connection goes only to addresses that passed (reqwest connects to what our resolver
//! returns, so DNS rebinding cannot swap them); IP literals are checked before the request;
//! no redirects, no proxies, short timeouts, capped reads. `--allow-private-network` (tests,
//! trusted LANs) is the only way to reach loopback, private and link-local addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Client, Response, Url};

/// The longest URL the hub will request.
pub const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("the URL does not parse: {0}")]
    Parse(String),
    #[error("only http and https URLs are allowed, not {0}:")]
    Scheme(String),
    #[error("the URL may not carry a user name or password")]
    UserInfo,
    #[error("the URL may not carry a #fragment")]
    Fragment,
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is a loopback, private, link-local or reserved address (refused; see --allow-private-network)")]
    Private(IpAddr),
}

/// Whether an address is anything but a public unicast address: loopback, RFC 1918,
/// link-local (cloud metadata included), CGNAT, "this network", multicast, broadcast,
/// documentation and reserved ranges, and the IPv6 equivalents, IPv4-mapped forms included.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || a == 0                                   // 0.0.0.0/8 "this network"
        || (a == 100 && (64..128).contains(&b))     // 100.64.0.0/10 CGNAT
        || (a == 192 && b == 0 && c == 0)           // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // 198.18.0.0/15 benchmarking
        || a >= 240 // 240.0.0.0/4 reserved
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let seg = ip.segments();
    // IPv4-compatible ::a.b.c.d (deprecated) hides an IPv4 address too.
    if seg[..6].iter().all(|s| *s == 0) && !ip.is_loopback() && !ip.is_unspecified() {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return private_v4(Ipv4Addr::new(a, b, c, d));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00          // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80          // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0          // fec0::/10 site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // 2001:db8::/32 documentation
        || (seg[0] == 0x0064 && seg[1] == 0xff9b) // 64:ff9b::/96 NAT64 (embeds IPv4)
        || seg[0] == 0x2002 // 6to4 (embeds IPv4)
}

/// Parses and checks a URL the hub is asked to contact (a callback, a topic).
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(raw).map_err(|e| UrlError::Parse(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::UserInfo);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    match url.host() {
        None => return Err(UrlError::NoHost),
        Some(url::Host::Ipv4(ip)) if !allow_private && private_v4(ip) => return Err(UrlError::Private(ip.into())),
        Some(url::Host::Ipv6(ip)) if !allow_private && private_v6(ip) => return Err(UrlError::Private(ip.into())),
        _ => {}
    }
    Ok(url)
}

/// Resolves names and keeps only addresses the policy allows; none left is an error.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Addrs = Box::new(resolve_allowed(&host, 0, allow_private).await?.into_iter());
            Ok(addrs)
        })
    }
}

/// Resolves a host (name or IP literal) and keeps only the addresses the policy allows;
/// none left is an error naming why (a refused address, or no address at all).
pub async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    // An IPv6 literal arrives bracketed from a URL.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await?.collect();
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| allow_private || !is_private(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(match resolved.first() {
            Some(a) => Box::new(UrlError::Private(a.ip())),
            None => format!("{host} has no address").into(),
        });
    }
    Ok(allowed)
}

/// `host:port` of a URL, the unit of per-host limits ("" when it has none).
pub fn host_key(url: &Url) -> String {
    url.host_str()
        .map(|h| format!("{h}:{}", url.port_or_known_default().unwrap_or(0)))
        .unwrap_or_default()
}

/// Installs ring as the process's TLS provider (once; reqwest needs one before any client).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The hub's client for every request it makes on someone else's behalf.
#[derive(Clone)]
pub struct Outbound {
    client: Client,
    allow_private: bool,
    hosts: Arc<Hosts>,
}

/// Feed fetches at once per host, at most.
pub const PER_HOST: usize = 4;

/// Hosts remembered before idle ones are forgotten.
const HOSTS_KEPT: usize = 10_000;

/// Politeness toward the hosts the hub fetches feeds from: at most [`PER_HOST`] fetches of
/// one host at once, and none while a host asked to wait (a 429 or 503 with `Retry-After`
/// to any of its feeds holds them all).
#[derive(Default)]
pub struct Hosts {
    map: std::sync::Mutex<std::collections::HashMap<String, Host>>,
}

struct Host {
    slots: Arc<tokio::sync::Semaphore>,
    not_before: Option<std::time::Instant>,
}

impl Hosts {
    /// A slot for a fetch of `host` (waits while its slots are taken), or how long the host
    /// asked to wait.
    pub async fn enter(&self, host: &str) -> Result<tokio::sync::OwnedSemaphorePermit, Duration> {
        let slots = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > HOSTS_KEPT {
                let now = std::time::Instant::now();
                map.retain(|_, h| h.slots.available_permits() < PER_HOST || h.not_before.is_some_and(|t| t > now));
            }
            let h = map.entry(host.to_string()).or_insert_with(|| Host {
                slots: Arc::new(tokio::sync::Semaphore::new(PER_HOST)),
                not_before: None,
            });
            if let Some(wait) = h
                .not_before
                .and_then(|t| t.checked_duration_since(std::time::Instant::now()))
            {
                return Err(wait);
            }
            h.slots.clone()
        };
        slots.acquire_owned().await.map_err(|_| Duration::ZERO)
    }

    /// `host` asked to wait `wait`: no fetch of it before then.
    pub fn hold(&self, host: &str, wait: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get_mut(host) {
            let until = std::time::Instant::now() + wait;
            h.not_before = Some(h.not_before.map_or(until, |t| t.max(until)));
        }
    }
}

/// A URL's host and port, as politeness counts hosts.
pub fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("request failed: {0}")]
    Request(String),
}

impl Outbound {
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, OutboundError> {
        install_crypto();
        let client = Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("feedmesh/", env!("CARGO_PKG_VERSION"), " (+WebSub hub)"))
            .build()
            .map_err(|e| OutboundError::Request(e.to_string()))?;
        Ok(Outbound {
            client,
            allow_private,
            hosts: Arc::new(Hosts::default()),
        })
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// The politeness kept toward the hosts of feeds.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Checks the URL and returns a request builder for it.
    pub fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder, OutboundError> {
        let url = check_url(url, self.allow_private)?;
        Ok(self.client.request(method, url))
    }

    /// Sends a checked request; refusals of the policy come back as `Url` errors.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response, OutboundError> {
        req.send().await.map_err(|e| refused_or_failed(&e))
    }
}

/// A failed request as the caller sees it: a refusal of the policy (`resolve_allowed`'s
/// private address, however deep in the error's chain) or any other failure.
pub fn refused_or_failed(e: &(dyn std::error::Error + 'static)) -> OutboundError {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(UrlError::Private(ip)) = err.downcast_ref::<UrlError>() {
            return OutboundError::Url(UrlError::Private(*ip));
        }
        source = err.source();
    }
    OutboundError::Request(e.to_string())
}

/// Reads at most `limit` bytes of a response body (the rest is dropped with the connection).
pub async fn read_capped(mut resp: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_reserved_addresses_are_recognised() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "ff02::1",
        ];
        for ip in private {
            assert!(is_private(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        assert!(check_url("https://example.com/cb?x=1", false).is_ok());
        assert_eq!(
            check_url("ftp://example.com/", false),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(check_url("http://u:p@example.com/", false), Err(UrlError::UserInfo));
        assert_eq!(check_url("http://example.com/#x", false), Err(UrlError::Fragment));
        assert!(matches!(check_url("not a url", false), Err(UrlError::Parse(_))));
        assert_eq!(
            check_url(&format!("http://example.com/{}", "a".repeat(3000)), false),
            Err(UrlError::TooLong)
        );
        assert!(matches!(
            check_url("http://127.0.0.1:8080/cb", false),
            Err(UrlError::Private(_))
        ));
        assert!(matches!(
            check_url("http://[::ffff:7f00:1]/cb", false),
            Err(UrlError::Private(_))
        ));
        assert!(matches!(
            check_url("http://169.254.169.254/latest", false),
            Err(UrlError::Private(_))
        ));
        assert!(check_url("http://127.0.0.1:8080/cb", true).is_ok());
    }
}
