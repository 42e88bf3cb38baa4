//! TCP connections for connectors that speak something other than HTTP (IMAP): resolved
//! and refused under the outbound policy as HTTP is (`net::resolve_allowed`), TLS checked
//! against the system's roots (and a connector's own CA file), every read bounded by an
//! idle limit so a server that hangs cannot hold a run forever.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use feedmesh_connector::{ConnectorError, Dial, Socket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::net::{Outbound, UrlError, resolve_allowed};

/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(10);

/// Opens `to` for a connector: each allowed address in turn, TLS when asked.
pub async fn dial(outbound: &Outbound, to: &Dial) -> Result<Box<dyn Socket>, ConnectorError> {
    let addrs = resolve_allowed(&to.host, to.port, outbound.allows_private())
        .await
        .map_err(|e| match e.downcast_ref::<UrlError>() {
            Some(u) => ConnectorError::Refused(u.to_string()),
            None => ConnectorError::Unreachable(format!("{}: {e}", to.host)),
        })?;
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(CONNECT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                let plain = Idle::new(tcp, to.idle);
                return if to.tls {
                    secure(Box::new(plain), to).await
                } else {
                    Ok(Box::new(plain))
                };
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {} s", CONNECT.as_secs()),
        }
    }
    Err(ConnectorError::Unreachable(format!(
        "cannot connect to {}:{} ({last})",
        to.host, to.port
    )))
}

/// TLS over a connection already open (from the start, or after STARTTLS).
pub async fn secure(plain: Box<dyn Socket>, to: &Dial) -> Result<Box<dyn Socket>, ConnectorError> {
    let config = client_config(to.ca_file.as_deref())?;
    let host = to.host.trim_start_matches('[').trim_end_matches(']').to_string();
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| ConnectorError::Permanent(format!("{} is not a name TLS can check: {e}", to.host)))?;
    let tls = tokio::time::timeout(CONNECT, tokio_rustls::TlsConnector::from(config).connect(name, plain))
        .await
        .map_err(|_| ConnectorError::Unreachable(format!("{}: the TLS handshake did not finish", to.host)))?
        .map_err(|e| ConnectorError::Unreachable(format!("{}: TLS: {e}", to.host)))?;
    Ok(Box::new(tls))
}

fn client_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, ConnectorError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    crate::net::install_crypto();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ConnectorError::Permanent(format!("ca_file {path}: {e}")))?;
        for c in certs {
            extra.push(c.map_err(|e| ConnectorError::Permanent(format!("ca_file {path}: {e}")))?);
        }
        if extra.is_empty() {
            return Err(ConnectorError::Permanent(format!(
                "ca_file {path} holds no certificate"
            )));
        }
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| ConnectorError::Permanent(format!("TLS: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::Permanent(format!("TLS: {e}")))?
        .dangerous() // not dangerous: the platform's own verifier, with the extra roots
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A stream whose reads fail once nothing arrived for `idle` (writes pass through).
#[derive(Debug)]
pub struct Idle<S> {
    inner: S,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Idle<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        Idle {
            inner,
            idle: if idle.is_zero() { Duration::from_secs(60) } else { idle },
            timer: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                me.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = me.idle;
                let timer = me.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        me.timer = None;
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the server sent nothing for {} s", idle.as_secs()),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_silent_server_is_an_error_after_the_idle_limit() {
        let (a, _b) = tokio::io::duplex(64);
        let mut s = Idle::new(a, Duration::from_millis(100));
        let mut buf = [0u8; 4];
        let t = std::time::Instant::now();
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn each_read_restarts_the_idle_clock() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Idle::new(a, Duration::from_millis(150));
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                b.write_all(b"x").await.unwrap();
            }
        });
        let mut got = 0;
        let mut buf = [0u8; 1];
        while got < 4 {
            got += s.read(&mut buf).await.unwrap();
        }
        assert_eq!(got, 4);
    }
}
