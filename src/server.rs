//! The HTTP server's edge, where the hub faces the internet: it accepts connections up to a
//! bound (past it, a 503 and the connection closed), gives a client a bounded time to send
//! its request headers (slow clients are cut off), answers 431 to headers past a sane total,
//! and at shutdown lets requests in flight finish for a grace period. HTTP/1.1 by hyper.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How much a client may take of the server; `serve` takes them from its flags.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time a client has to send a request's headers, from its first byte (and, on a kept-alive
    /// connection, from the end of the previous response).
    pub header_timeout: Duration,
    /// Largest request line and headers together, in bytes (more: 431). At least 8 KiB.
    pub max_header_bytes: usize,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_connections: 4096,
        }
    }
}

/// hyper's smallest read buffer; a smaller header limit would not take effect.
const MIN_HEADER_BYTES: usize = 8192;

/// What a connection past the bound is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 43\r\n\r\ntoo many connections open; try again soon\r\n";

/// Serves `router` on `listener` until `shutdown` completes, then gives open requests `grace`
/// to finish. Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY a response written in two pieces (headers, then a body) waits
        // for the client's delayed ACK: 40 ms per small blob download.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        let app = router.clone();
        let max_head = limits.max_header_bytes;
        let service = tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                // hyper stops reading a head once its buffer passes the limit, but one read
                // may take it up to twice over: the exact total is checked here.
                if head_bytes(&req) > max_head {
                    return Ok(too_large());
                }
                Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {}))
            }
        });
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the grace period were closed");
    }
    Ok(())
}

/// The size of a request's line and headers as sent (near enough: separators counted).
fn head_bytes<B>(req: &axum::http::Request<B>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .fold(line, |n, (name, value)| n + name.as_str().len() + value.len() + 4)
}

fn too_large() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        [(axum::http::header::CONNECTION, "close")],
        "the request's headers are too large\n",
    )
        .into_response()
}

/// Tells a connection past the bound to come back later, without waiting on it for long.
async fn refuse(mut tcp: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(BUSY)).await;
    let _ = tcp.shutdown().await;
}
