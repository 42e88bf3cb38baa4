//! The HTTP/1.1 client of WebSub content distribution: POSTs a notification to a callback
//! over a kept-alive connection taken from a per-origin pool, and drives that connection in
//! the sending task itself (hyper's connection-level API), so a delivery costs no hand-off
//! between tasks or threads. The fan-out to thousands of subscribers is the hub's hottest
//! path; everything else outbound goes through `net::Outbound` (reqwest).
//!
//! The outbound policy is the same as `net::Outbound`'s (S1, S2, S14): the URL is checked
//! before (`net::check_url`), every resolved address is checked (`net::resolve_allowed`),
//! the connection goes only to an address that passed, nothing is followed, and the answer
//! is read to at most 4 KiB. https callbacks are verified with the platform's roots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::either::Either;
use url::Url;

use crate::net::{OutboundError, UrlError, refused_or_failed, resolve_allowed};

/// The most of an answer that is read; a longer one ends its connection instead.
const ANSWER_BYTES: usize = 4096;
/// Idle connections kept at most, over all origins (each is a file descriptor).
const MAX_IDLE: usize = 1024;
/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(30);

type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;
type Body = Full<Bytes>;

/// scheme is https, host, port.
type Origin = (bool, String, u16);

/// One kept-alive connection: the sending half and the connection it must drive.
struct Conn {
    sender: SendRequest<Body>,
    conn: std::pin::Pin<Box<Connection<TokioIo<Stream>, Body>>>,
    idle_since: Instant,
}

/// Idle connections by origin, and how many there are in all.
#[derive(Default)]
struct Idle {
    by_origin: HashMap<Origin, Vec<Conn>>,
    count: usize,
}

/// Notification sender with a pool of kept-alive connections per origin.
pub struct Pusher {
    allow_private: bool,
    timeout: Duration,
    idle: Mutex<Idle>,
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl Pusher {
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        Pusher {
            allow_private,
            timeout,
            idle: Mutex::default(),
            tls: OnceLock::new(),
        }
    }

    /// POSTs `body` with `headers` to a URL checked by `net::check_url`; the answer's status.
    /// The whole exchange, connecting included, is bounded by the timeout (J4).
    pub async fn post(&self, url: &Url, headers: HeaderMap, body: Bytes) -> Result<StatusCode, OutboundError> {
        let origin = origin(url)?;
        let request = || -> Result<Request<Body>, OutboundError> {
            let bad = |e: hyper::http::Error| OutboundError::Request(e.to_string());
            let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
            let mut req = Request::post(target).body(Full::new(body.clone())).map_err(bad)?;
            let h = req.headers_mut();
            h.clone_from(&headers);
            h.insert(header::HOST, authority(url).map_err(bad)?);
            h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
            Ok(req)
        };
        let exchange = async {
            // A kept-alive connection may have been closed by the other side in the meantime:
            // a request that fails on a reused connection is sent once more on a new one.
            if let Some(mut conn) = self.take(&origin)
                && let Ok(answer) = exchange(&mut conn, request()?).await
            {
                return Ok(self.keep(origin, conn, answer));
            }
            let mut conn = self.connect(&origin).await?;
            let answer = exchange(&mut conn, request()?).await.map_err(OutboundError::Request)?;
            Ok(self.keep(origin.clone(), conn, answer))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(OutboundError::Request("the callback did not answer in time".into())))
    }

    /// Drops connections idle for too long (called now and then by the delivery loop).
    pub fn prune(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.by_origin.retain(|_, conns| {
            conns.retain(|c| c.idle_since.elapsed() < IDLE_FOR);
            !conns.is_empty()
        });
        idle.count = idle.by_origin.values().map(Vec::len).sum();
    }

    /// An idle connection to `origin` that is still open, if there is one.
    fn take(&self, origin: &Origin) -> Option<Conn> {
        let mut guard = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let idle = &mut *guard;
        let conns = idle.by_origin.get_mut(origin)?;
        while let Some(mut c) = conns.pop() {
            idle.count -= 1;
            // A connection the other side closed finishes at once when polled.
            if c.idle_since.elapsed() < IDLE_FOR && !c.sender.is_closed() && c.conn.as_mut().now_or_never().is_none() {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection to the pool when its answer was read whole; the status either way.
    fn keep(&self, origin: Origin, mut conn: Conn, (status, whole): (StatusCode, bool)) -> StatusCode {
        if whole {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.count < MAX_IDLE {
                conn.idle_since = Instant::now();
                idle.count += 1;
                idle.by_origin.entry(origin).or_default().push(conn);
            }
        }
        status
    }

    async fn connect(&self, (https, host, port): &Origin) -> Result<Conn, OutboundError> {
        let addrs = resolve_allowed(host, *port, self.allow_private)
            .await
            .map_err(|e| refused_or_failed(e.as_ref()))?;
        let mut last = String::new();
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(OutboundError::Request(last))?;
        let _ = tcp.set_nodelay(true);
        let stream = if *https {
            let tls = self
                .tls
                .get_or_init(tls_connector)
                .as_ref()
                .map_err(|e| OutboundError::Request(e.clone()))?;
            let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| OutboundError::Request(e.to_string()))?
                .to_owned();
            let tls = tls
                .connect(name, tcp)
                .await
                .map_err(|e| OutboundError::Request(e.to_string()))?;
            Either::Right(tls)
        } else {
            Either::Left(tcp)
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| OutboundError::Request(e.to_string()))?;
        Ok(Conn {
            sender,
            conn: Box::pin(conn),
            idle_since: Instant::now(),
        })
    }
}

const USER_AGENT: &str = concat!("feedmesh/", env!("CARGO_PKG_VERSION"), " (+WebSub hub)");

/// Sends one request on `c`, driving the connection meanwhile; the status, and whether the
/// answer was read whole (so the connection may carry the next request).
async fn exchange(c: &mut Conn, req: Request<Body>) -> Result<(StatusCode, bool), String> {
    let Conn { sender, conn, .. } = c;
    let mut work = std::pin::pin!(async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            read += frame?.data_ref().map_or(0, Bytes::len);
            if read > ANSWER_BYTES {
                return Ok((status, false));
            }
        }
        Ok::<_, hyper::Error>((status, true))
    });
    tokio::select! {
        biased;
        answer = &mut work => answer.map_err(|e| e.to_string()),
        // The connection ended (closed after its answer, or broken): what it read has been
        // handed over, so the answer, if it came whole, is still there to take.
        ended = conn.as_mut() => match (work.await, ended) {
            (Ok((status, _)), _) => Ok((status, false)),
            (Err(_), Err(e)) => Err(e.to_string()),
            (Err(e), Ok(())) => Err(format!("the callback closed the connection before answering ({e})")),
        },
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_platform_verifier::ConfigVerifierExt;
    crate::net::install_crypto();
    let mut config = rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn origin(url: &Url) -> Result<Origin, OutboundError> {
    let host = url.host_str().ok_or(OutboundError::Url(UrlError::NoHost))?;
    let port = url
        .port_or_known_default()
        .ok_or(OutboundError::Url(UrlError::NoHost))?;
    Ok((url.scheme() == "https", host.to_string(), port))
}

fn authority(url: &Url) -> Result<HeaderValue, hyper::http::Error> {
    let host = url.host_str().unwrap_or_default();
    Ok(match url.port() {
        Some(p) => HeaderValue::from_str(&format!("{host}:{p}"))?,
        None => HeaderValue::from_str(host)?,
    })
}
