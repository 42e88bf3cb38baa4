//! The one way tests run the `feedmesh` binary: admin commands, and `serve` as a process
//! that reports the address it bound (port 0, or the port of a restart).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_feedmesh");

pub fn feedmesh(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("FEEDMESH_DATA_DIR", dir)
        .env_remove("FEEDMESH_DATABASE_URL")
        .env_remove("FEEDMESH_SECRET_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = feedmesh(dir, args);
    assert!(success, "feedmesh {args:?} failed: {stderr}");
    stdout
}

/// Through the CLI: user alice, a laptop token (returned) and the collection Notes.
pub fn alice_with_notes(d: &Path) -> String {
    ok(d, &["user", "add", "alice"]);
    let token = ok(d, &["token", "add", "alice", "--device", "laptop"]);
    ok(d, &["collection", "add", "alice", "Notes"]);
    token.lines().last().unwrap().to_string()
}

/// Starts `feedmesh serve` on a free port; returns the process and its base URL.
pub fn serve(dir: &Path) -> (Child, String) {
    serve_with(dir, &[])
}

/// Starts `feedmesh serve` with extra flags.
pub fn serve_with(dir: &Path, extra: &[&str]) -> (Child, String) {
    serve_listening(dir, "127.0.0.1:0", extra)
}

/// Starts `feedmesh serve --listen ADDR` (a restart takes its predecessor's port) and
/// returns once it printed the address it serves on.
pub fn serve_listening(dir: &Path, listen: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", listen])
        .args(extra)
        .env("FEEDMESH_DATA_DIR", dir)
        .env_remove("FEEDMESH_DATABASE_URL")
        .env_remove("FEEDMESH_SECRET_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

/// Starts `feedmesh serve` on a free port with extra flags and environment, keeping
/// everything it logs (stderr) for the test to read.
pub fn serve_logged(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("FEEDMESH_DATA_DIR", dir)
        .env_remove("FEEDMESH_DATABASE_URL")
        .env_remove("FEEDMESH_SECRET_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        log.lock().unwrap().push_str(&line);
        log.lock().unwrap().push('\n');
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut l = keep.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    (child, url, log)
}

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
