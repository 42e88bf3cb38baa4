//! The server's edge, tried as hostile and careless clients would: slow headers are cut off,
//! oversize headers get 431, and connections past the bound get 503, all by the flags.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestApp;

async fn hub(tweak: impl FnOnce(&mut feedmesh::config::ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    TestApp::spawn_with(dir, url, |s| tweak(&mut s.serve)).await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes); what it sent.
async fn until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn get_status(addr: &str, extra_headers: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n{extra_headers}connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let got = until_closed(&mut tcp, Duration::from_secs(10))
        .await
        .expect("an answer");
    let text = String::from_utf8_lossy(&got);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// How many connections this process may open besides what the tests around it hold.
fn spare_descriptors(want: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse::<usize>().ok()))
        })
        .unwrap_or(1024);
    // Each loopback connection costs two descriptors here: the client's and the server's.
    want.min(limit.saturating_sub(400) / 2)
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_cut_off() {
    let app = hub(|s| s.header_timeout = 1).await;
    let addr = addr(&app);
    let n = spare_descriptors(1500);
    assert!(n >= 100, "too few file descriptors to try this ({n})");
    let mut slow = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"GET /healthz HT").await.unwrap();
        slow.push(tcp);
    }
    // While they dawdle, a well-behaved client is served.
    assert_eq!(get_status(&addr, "").await, 200);
    let started = Instant::now();
    let mut answers = Vec::new();
    for tcp in &mut slow {
        let got = until_closed(tcp, Duration::from_secs(10))
            .await
            .expect("a slow client is cut off within the header timeout");
        answers.push(got);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // hyper answers a timed-out head with 408 or just closes; never a 200.
    assert!(answers.iter().all(|a| !String::from_utf8_lossy(a).contains(" 200 ")));
    // One that sends nothing at all is cut off too.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(until_closed(&mut silent, Duration::from_secs(10)).await.is_some());
    assert_eq!(get_status(&addr, "").await, 200);
}

#[tokio::test]
async fn headers_past_the_limit_get_431() {
    let app = hub(|s| s.max_header_bytes = 64 << 10).await;
    let addr = addr(&app);
    let header = |bytes: usize| format!("x-filler: {}\r\n", "a".repeat(bytes));
    assert_eq!(get_status(&addr, &header(200 << 10)).await, 431, "a 200 KB header");
    // Many headers adding up past the limit too.
    let many: String = (0..40).map(|i| format!("x-h{i}: {}\r\n", "b".repeat(2000))).collect();
    assert_eq!(get_status(&addr, &many).await, 431, "80 KB of headers");
    // Big cookies and the like under the limit are fine.
    assert_eq!(get_status(&addr, &header(40 << 10)).await, 200, "a 40 KB header");

    // The limit is the flag's.
    let small = hub(|s| s.max_header_bytes = 16 << 10).await;
    assert_eq!(get_status(&self::addr(&small), &header(20 << 10)).await, 431);
}

#[tokio::test]
async fn connections_past_the_bound_are_refused_until_one_closes() {
    let app = hub(|s| s.max_connections = 8).await;
    let addr = addr(&app);
    let mut held = Vec::new();
    for _ in 0..8 {
        // Kept alive: each holds its slot after its answer.
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let got = until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("closed at once");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");

    drop(held.pop());
    // The freed slot is taken again as soon as the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get_status(&addr, "").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "a closed connection's slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
