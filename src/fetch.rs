//! Fetching feeds served elsewhere: open-hub topics on a publish ping (G4) and followed
//! feeds (polling and WebSub discovery). Every hop goes through the outbound guard: a
//! redirect is followed by hand so each Location is checked like the first URL (S2).

use std::time::Duration;

use reqwest::{Method, StatusCode, header};

use crate::net::{Outbound, OutboundError};

/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 5;

/// What a conditional GET sends.
#[derive(Default)]
pub struct Conditions<'a> {
    /// `Accept`; the type seen last first (G4).
    pub accept: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// What a GET brought: the connector contract's type, which the hub's own fetches (open-hub
/// topics) use too.
pub use feedmesh_connector::Fetched;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("the server answered {0}")]
    Status(StatusCode),
    /// 429 or 503 with `Retry-After`: the seconds to wait.
    #[error("the server asks to wait {0} s")]
    Throttled(u64),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("a redirect without a usable Location")]
    BadRedirect,
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Body(String),
}

/// GETs `url`, following redirects with each hop re-checked, and reads at most `max_bytes`;
/// politely (`net::Hosts`): a few fetches of one host at once, none while it asked to wait.
pub async fn get(
    outbound: &Outbound,
    url: &str,
    cond: &Conditions<'_>,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    let mut url = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = outbound.request(Method::GET, &url)?;
        // Politeness: a few fetches of one host at once, none while it asked to wait.
        let host = crate::net::host_of(&url);
        let _slot = outbound
            .hosts()
            .enter(&host)
            .await
            .map_err(|wait| FetchError::Throttled(wait.as_secs().max(1)))?;
        let accept = match cond.accept {
            Some(last) if !last.is_empty() => {
                format!("{last}, application/atom+xml;q=0.9, application/rss+xml;q=0.9, */*;q=0.5")
            }
            _ => "application/atom+xml, application/rss+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5"
                .to_string(),
        };
        req = req.header(header::ACCEPT, accept);
        if let Some(etag) = cond.etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = cond.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm);
        }
        let mut resp = outbound.send(req).await?;
        let status = resp.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            url = next_hop(&url, resp.headers())?;
            continue;
        }
        let text = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (hubs, self_url) = discover_in_headers(resp.headers());
        let mut fetched = Fetched {
            url: url.clone(),
            max_age: text(header::CACHE_CONTROL).as_deref().and_then(max_age),
            not_modified: status == StatusCode::NOT_MODIFIED,
            content_type: text(header::CONTENT_TYPE),
            body: Vec::new(),
            etag: text(header::ETAG),
            last_modified: text(header::LAST_MODIFIED),
            hubs,
            self_url,
        };
        if fetched.not_modified {
            return Ok(fetched);
        }
        if !status.is_success() {
            if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                && let Some(wait) = text(header::RETRY_AFTER).as_deref().and_then(retry_after)
            {
                outbound.hosts().hold(&host, Duration::from_secs(wait));
                return Err(FetchError::Throttled(wait));
            }
            return Err(FetchError::Status(status));
        }
        fetched.body = read_body(&mut resp, max_bytes).await?;
        return Ok(fetched);
    }
    Err(FetchError::TooManyRedirects)
}

/// A response's whole body, refused past `max_bytes` (by its length up front, or as it comes).
async fn read_body(resp: &mut reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Body(e.to_string()))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A redirect's target, resolved against the URL that answered (the next hop is checked
/// by the outbound policy like the first).
fn next_hop(url: &str, headers: &header::HeaderMap) -> Result<String, FetchError> {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| url::Url::parse(url).ok()?.join(loc).ok())
        .map(|u| u.to_string())
        .ok_or(FetchError::BadRedirect)
}

/// `Retry-After` as seconds from now: a number of seconds, or an HTTP date; at most a day.
pub fn retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
            u64::try_from(at - chrono::Utc::now().timestamp()).unwrap_or(0)
        }
    };
    Some(secs.min(86_400))
}

/// `Cache-Control: max-age=N` (`no-cache` and `no-store` are 0).
pub fn max_age(v: &str) -> Option<u64> {
    let mut out = None;
    for d in v.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if d == "no-cache" || d == "no-store" {
            return Some(0);
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            out = n.trim_matches('"').parse().ok();
        }
    }
    out
}

/// `rel="hub"` URLs and the `rel="self"` URL of a response's `Link` headers.
pub fn discover_in_headers(headers: &header::HeaderMap) -> (Vec<String>, Option<String>) {
    let mut hubs = Vec::new();
    let mut self_url = None;
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        let Ok(links) = parse_link_header::parse_with_rel(value) else {
            continue;
        };
        for (rel, link) in links {
            for r in rel.split_ascii_whitespace() {
                match r.to_ascii_lowercase().as_str() {
                    "hub" => hubs.push(link.raw_uri.clone()),
                    "self" => self_url = Some(link.raw_uri.clone()),
                    _ => {}
                }
            }
        }
    }
    hubs.sort();
    hubs.dedup();
    (hubs, self_url)
}

/// The network a connector is handed: [`get`] under `Outbound`'s policy, its answers and
/// errors in the contract's terms. Connectors get nothing else (see `feedmesh_connector`).
pub struct ConnectorHttp<'a>(pub &'a Outbound);

#[async_trait::async_trait]
impl feedmesh_connector::Http for ConnectorHttp<'_> {
    async fn get(
        &self,
        url: &str,
        conditions: &feedmesh_connector::Conditions,
        max_bytes: usize,
    ) -> Result<feedmesh_connector::Fetched, feedmesh_connector::ConnectorError> {
        let cond = Conditions {
            accept: conditions.accept.as_deref(),
            etag: conditions.etag.as_deref(),
            last_modified: conditions.last_modified.as_deref(),
        };
        get(self.0, url, &cond, max_bytes).await.map_err(contract_error)
    }

    async fn send(
        &self,
        request: feedmesh_connector::Request,
    ) -> Result<feedmesh_connector::Response, feedmesh_connector::ConnectorError> {
        send(self.0, request).await.map_err(contract_error)
    }

    async fn open(
        &self,
        request: feedmesh_connector::Request,
        idle: Duration,
    ) -> Result<feedmesh_connector::Streamed, feedmesh_connector::ConnectorError> {
        open(self.0, request, idle).await.map_err(contract_error)
    }

    async fn dial(
        &self,
        to: &feedmesh_connector::Dial,
    ) -> Result<Box<dyn feedmesh_connector::Socket>, feedmesh_connector::ConnectorError> {
        crate::dial::dial(self.0, to).await
    }

    async fn start_tls(
        &self,
        plain: Box<dyn feedmesh_connector::Socket>,
        to: &feedmesh_connector::Dial,
    ) -> Result<Box<dyn feedmesh_connector::Socket>, feedmesh_connector::ConnectorError> {
        crate::dial::secure(plain, to).await
    }
}

/// A fetch's failure in the contract's terms.
fn contract_error(e: FetchError) -> feedmesh_connector::ConnectorError {
    use feedmesh_connector::ConnectorError;
    match e {
        e @ (FetchError::Outbound(OutboundError::Url(_)) | FetchError::TooManyRedirects | FetchError::BadRedirect) => {
            ConnectorError::Refused(e.to_string())
        }
        e @ FetchError::TooLarge(_) => ConnectorError::Malformed(e.to_string()),
        FetchError::Throttled(wait) => ConnectorError::RateLimited(wait),
        e @ FetchError::Status(StatusCode::GONE) => ConnectorError::Permanent(format!("{e}: it is gone for good")),
        e @ FetchError::Status(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            ConnectorError::Unauthorized(e.to_string())
        }
        e => ConnectorError::Unreachable(e.to_string()),
    }
}

/// Sends a connector's API request under the outbound policy and answers whatever status
/// comes back. A GET follows redirects, each hop re-checked; other methods never do (a
/// redirect is their answer). At most `max_bytes` of the body are read.
pub async fn send(
    outbound: &Outbound,
    r: feedmesh_connector::Request,
) -> Result<feedmesh_connector::Response, FetchError> {
    let (url, mut resp) = send_following(outbound, &r, None).await?;
    let headers = headers_of(&resp);
    let body = read_body(&mut resp, r.max_bytes).await?;
    Ok(feedmesh_connector::Response {
        status: resp.status().as_u16(),
        url,
        headers,
        body,
    })
}

/// How long a streamed response may stay open before it is opened again.
const STREAM_FOR: Duration = Duration::from_secs(6 * 3600);

/// Opens a connector's long-lived GET (Server-Sent Events) under the outbound policy: its
/// status and headers now, the body as it arrives, nothing for `idle` an error.
pub async fn open(
    outbound: &Outbound,
    r: feedmesh_connector::Request,
    idle: Duration,
) -> Result<feedmesh_connector::Streamed, FetchError> {
    let (_, resp) = send_following(outbound, &r, Some(STREAM_FOR)).await?;
    Ok(feedmesh_connector::Streamed {
        status: resp.status().as_u16(),
        headers: headers_of(&resp),
        body: Box::new(StreamedBody { resp, idle }),
    })
}

struct StreamedBody {
    resp: reqwest::Response,
    idle: Duration,
}

#[async_trait::async_trait]
impl feedmesh_connector::Chunks for StreamedBody {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, feedmesh_connector::ConnectorError> {
        use feedmesh_connector::ConnectorError;
        match tokio::time::timeout(self.idle, self.resp.chunk()).await {
            Err(_) => Err(ConnectorError::Unreachable(format!(
                "the stream was silent for {} s",
                self.idle.as_secs()
            ))),
            Ok(Err(e)) => Err(ConnectorError::Unreachable(format!("the stream broke: {e}"))),
            Ok(Ok(chunk)) => Ok(chunk.map(|b| b.to_vec())),
        }
    }
}

fn headers_of(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Sends `r` under the outbound policy (within `timeout` when given, else the policy's), a
/// GET following redirects, each hop re-checked; answers the URL that answered and the
/// response, its body unread.
async fn send_following(
    outbound: &Outbound,
    r: &feedmesh_connector::Request,
    timeout: Option<Duration>,
) -> Result<(String, reqwest::Response), FetchError> {
    use feedmesh_connector::Method as M;
    let method = match r.method {
        M::Get => Method::GET,
        M::Post => Method::POST,
        M::Put => Method::PUT,
        M::Patch => Method::PATCH,
        M::Delete => Method::DELETE,
        M::Propfind => Method::from_bytes(b"PROPFIND").expect("a valid method"),
        M::Report => Method::from_bytes(b"REPORT").expect("a valid method"),
    };
    let mut url = r.url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut req = outbound.request(method.clone(), &url)?;
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some((ct, body)) = &r.body {
            req = req.header(header::CONTENT_TYPE, ct.as_str()).body(body.clone());
        }
        let resp = outbound.send(req).await?;
        let status = resp.status();
        if method == Method::GET && status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            url = next_hop(&url, resp.headers())?;
            continue;
        }
        return Ok((url, resp));
    }
    Err(FetchError::TooManyRedirects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_max_age_are_read() {
        assert_eq!(retry_after("120"), Some(120));
        assert_eq!(retry_after(" 999999 "), Some(86_400));
        assert_eq!(retry_after("soon"), None);
        let later = (chrono::Utc::now() + chrono::Duration::seconds(600)).to_rfc2822();
        assert!(retry_after(&later).is_some_and(|s| (590..=600).contains(&s)), "{later}");
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(0));
        assert_eq!(max_age("public, max-age=7200"), Some(7200));
        assert_eq!(max_age("no-cache"), Some(0));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn hub_and_self_are_found_in_one_or_several_link_headers() {
        let mut h = header::HeaderMap::new();
        h.append(
            header::LINK,
            "<https://hub.example/>; rel=\"hub\", <https://pub.example/feed>; rel=\"self\""
                .parse()
                .unwrap(),
        );
        h.append(header::LINK, "<https://other.example/hub>; rel=hub".parse().unwrap());
        h.append(
            header::LINK,
            "<https://pub.example/next>; rel=\"next\"".parse().unwrap(),
        );
        let (hubs, me) = discover_in_headers(&h);
        assert_eq!(hubs, ["https://hub.example/", "https://other.example/hub"]);
        assert_eq!(me.as_deref(), Some("https://pub.example/feed"));
        let (hubs, me) = discover_in_headers(&header::HeaderMap::new());
        assert!(hubs.is_empty() && me.is_none());
    }
}
