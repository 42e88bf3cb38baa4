//! Folder sync through the hub (`feedmesh agent`): two and three devices on temporary
//! folders, real HTTP to a real hub, FeedSync on both sides.

use std::collections::BTreeMap;
use std::path::Path;

use feedmesh::agent::Agent;

use crate::common::process::*;
use crate::common::{TestApp, eventually_within};

/// Every synced file under `dir` (the agent's own `.feedmesh/` left out), with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel == ".feedmesh" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn text(t: &BTreeMap<String, Vec<u8>>, rel: &str) -> String {
    String::from_utf8(
        t.get(rel)
            .unwrap_or_else(|| panic!("{rel} missing: {:?}", t.keys()))
            .clone(),
    )
    .unwrap()
}

struct Device {
    dir: tempfile::TempDir,
    agent: Agent,
}

async fn device(app: &TestApp, name: &str) -> Device {
    let token = app.token("alice", name).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::connect(&app.base, &token, "Docs", dir.path()).await.unwrap();
    Device { dir, agent }
}

impl Device {
    fn path(&self) -> &Path {
        self.dir.path()
    }
    async fn sync(&self) -> feedmesh::agent::Report {
        self.agent.sync().await.unwrap()
    }
}

/// Syncs every device until nothing moves (each device pushes, then everyone pulls).
async fn settle(devices: &[&Device]) {
    for _ in 0..4 {
        for d in devices {
            d.sync().await;
        }
    }
}

#[tokio::test]
async fn two_devices_create_edit_move_delete_and_converge() {
    let app = TestApp::spawn().await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let (a, b) = (device(&app, "laptop").await, device(&app, "phone").await);

    write(a.path(), "a.txt", "first");
    write(a.path(), "docs/b.md", "# b\n");
    write(a.path(), "notes.txt.swp", "editor junk");
    let r = a.sync().await;
    assert_eq!((r.local_changes, r.pushed), (2, 2), "{r:?}");
    b.sync().await;
    let t = tree(b.path());
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["a.txt", "docs/b.md"],
        "editor temp files stay local"
    );
    assert_eq!(text(&t, "a.txt"), "first");

    // An edit on B reaches A.
    write(b.path(), "a.txt", "second, longer");
    b.sync().await;
    a.sync().await;
    assert_eq!(text(&tree(a.path()), "a.txt"), "second, longer");

    // A move between folders keeps the item and uploads nothing.
    std::fs::create_dir_all(a.path().join("notes")).unwrap();
    std::fs::rename(a.path().join("docs/b.md"), a.path().join("notes/b.md")).unwrap();
    let r = a.sync().await;
    assert_eq!((r.local_changes, r.uploaded_bytes), (1, 0), "{r:?}");
    b.sync().await;
    let t = tree(b.path());
    assert!(
        t.contains_key("notes/b.md") && !t.contains_key("docs/b.md"),
        "{:?}",
        t.keys()
    );
    assert!(!b.path().join("docs").exists(), "the emptied folder is removed");

    // A deletion reaches the other device.
    std::fs::remove_file(a.path().join("a.txt")).unwrap();
    a.sync().await;
    b.sync().await;
    assert!(!tree(b.path()).contains_key("a.txt"));
    std::fs::remove_file(a.path().join("notes.txt.swp")).unwrap();
    assert_eq!(tree(a.path()), tree(b.path()));

    // Unchanged content is not uploaded again, and a sync with nothing new moves nothing.
    let r = a.sync().await;
    assert_eq!((r.local_changes, r.pushed, r.pulled, r.uploaded_bytes), (0, 0, 0, 0));
}

#[tokio::test]
async fn concurrent_edits_become_conflict_copies_and_deleting_one_resolves() {
    let app = TestApp::spawn().await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let (a, b) = (device(&app, "laptop").await, device(&app, "phone").await);
    write(a.path(), "c.txt", "base");
    write(a.path(), "d.txt", "to be deleted and edited");
    settle(&[&a, &b]).await;

    // Both edit c.txt before either syncs.
    write(a.path(), "c.txt", "edit from A");
    write(b.path(), "c.txt", "edit from B!");
    // A deletes d.txt while B edits it: the edit wins.
    std::fs::remove_file(a.path().join("d.txt")).unwrap();
    write(b.path(), "d.txt", "kept by B's edit");
    settle(&[&a, &b]).await;

    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta, tb, "the folders differ");
    let copies: Vec<&String> = ta.keys().filter(|k| k.contains(".conflict-")).collect();
    assert_eq!(copies.len(), 1, "{:?}", ta.keys());
    assert!(
        copies[0].starts_with("c.conflict-alice-") && copies[0].ends_with(".txt"),
        "{copies:?}"
    );
    let both = [text(&ta, "c.txt"), text(&ta, copies[0])];
    assert!(both.contains(&"edit from A".to_string()) && both.contains(&"edit from B!".to_string()));
    assert_eq!(text(&ta, "d.txt"), "kept by B's edit");

    // Deleting the conflict copy on A resolves it everywhere; it does not come back.
    std::fs::remove_file(a.path().join(copies[0])).unwrap();
    settle(&[&a, &b]).await;
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta, tb);
    assert!(ta.keys().all(|k| !k.contains(".conflict-")), "{:?}", ta.keys());
}

#[tokio::test]
async fn a_file_and_a_folder_with_the_same_name_both_survive() {
    let app = TestApp::spawn().await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let (a, b) = (device(&app, "laptop").await, device(&app, "phone").await);
    // A makes a file `x`; B, not knowing, a folder `x` with a file in it.
    write(a.path(), "x", "the file x");
    write(b.path(), "x/y.txt", "in the folder x");
    settle(&[&a, &b]).await;
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta, tb, "the folders differ");
    assert_eq!(text(&ta, "x/y.txt"), "in the folder x");
    let aside: Vec<&String> = ta.keys().filter(|k| k.starts_with("x.conflict-")).collect();
    assert_eq!(aside.len(), 1, "the file is shown next to the folder: {:?}", ta.keys());
    assert_eq!(text(&ta, aside[0]), "the file x");
    assert_eq!(ta.len(), 2, "{:?}", ta.keys());

    // The folder goes: the file takes its name back everywhere.
    std::fs::remove_dir_all(b.path().join("x")).unwrap();
    settle(&[&a, &b]).await;
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta, tb, "the folders differ");
    assert_eq!(ta.keys().collect::<Vec<_>>(), ["x"]);
    assert_eq!(text(&ta, "x"), "the file x");
}

#[tokio::test]
async fn a_blob_that_arrives_corrupt_is_refused_and_the_rest_syncs() {
    let app = TestApp::spawn().await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let (a, b) = (device(&app, "laptop").await, device(&app, "phone").await);
    write(a.path(), "good.txt", "fine");
    write(a.path(), "bad.txt", "will rot on the hub");
    a.sync().await;
    // The hub's copy of bad.txt changes on disk (same size, other bytes).
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"will rot on the hub"));
    let stored = app.dir.path().join("blobs").join(&sha[..2]).join(&sha);
    std::fs::write(&stored, "WILL ROT ON THE HUB").unwrap();
    let r = b.sync().await;
    let t = tree(b.path());
    assert_eq!(t.keys().collect::<Vec<_>>(), ["good.txt"], "{r:?}");
    let tmp = b.path().join(".feedmesh/tmp");
    assert!(
        std::fs::read_dir(&tmp).map_or(true, |mut d| d.next().is_none()),
        "a refused download left a file"
    );
}

#[tokio::test]
async fn a_batch_over_the_hubs_limit_goes_in_smaller_feeds() {
    // Entries of at most 2 KB, so a posted feed holds at most 32 KB: far less than a batch.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("feedmesh.db").display());
    let app = TestApp::spawn_with(dir, db, |s| s.serve.max_entry_bytes = 2048).await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let (a, b) = (device(&app, "laptop").await, device(&app, "phone").await);
    for i in 0..120 {
        write(a.path(), &format!("many/file-{i:03}.txt"), &format!("file {i}"));
    }
    let r = a.sync().await;
    assert_eq!((r.local_changes, r.pushed), (120, 120), "{r:?}");
    b.sync().await;
    assert_eq!(tree(a.path()), tree(b.path()));
    assert_eq!(tree(b.path()).len(), 120);
}

/// An item another client wrote, with `name` as its file path.
fn file_item(id: &str, name: &str, sha: &str, size: usize) -> String {
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom" xmlns:sx="http://feedsync.org/2007/feedsync"><title>x</title><updated>2026-01-01T00:00:00Z</updated><fm:file xmlns:fm="urn:feedmesh:2026" sha256="{sha}" size="{size}" name="{name}"/><sx:sync id="{id}" updates="1"><sx:history sequence="1" when="2026-01-01T00:00:00Z" by="mallory"/></sx:sync></entry>"#
    )
}

#[tokio::test]
async fn paths_that_leave_the_folder_are_refused_and_nothing_is_applied() {
    let app = TestApp::spawn().await;
    let other = app.token("alice", "script").await;
    app.collection("alice", "Docs").await;
    let b = device(&app, "phone").await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), b.path().join("out")).unwrap();

    let body = "payload";
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let put = app
        .client
        .put(app.url(&format!("/api/blobs/{sha}")))
        .bearer_auth(&other)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    for (i, name) in [
        "../escape.txt",
        "/tmp/absolute.txt",
        "out/through-link.txt",
        "a/../../x.txt",
        ".feedmesh/index.db",
        &format!("{}.txt", "n".repeat(300)),
        "ok.txt",
    ]
    .iter()
    .enumerate()
    {
        let resp = app
            .post_entry(
                &other,
                "/atompub/alice/Docs",
                file_item(&format!("evil-{i}"), name, &sha, body.len()),
            )
            .await;
        assert!(resp.status().is_success(), "{name}: {}", resp.status());
    }
    b.sync().await;
    let t = tree(b.path());
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["ok.txt"],
        "only the safe path was written"
    );
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing went through the link"
    );
    assert!(!b.path().parent().unwrap().join("escape.txt").exists());
    assert!(!Path::new("/tmp/absolute.txt").exists());
}

fn hub_process(data: &Path, port: u16) -> Proc {
    Proc(serve_listening(data, &format!("127.0.0.1:{port}"), &[]).0)
}

fn agent_process(hub: &str, token: &str, dir: &Path) -> Proc {
    let child = std::process::Command::new(BIN)
        .args(["agent", "--hub", hub, "--collection", "Docs", "--rescan", "60", "--dir"])
        .arg(dir)
        .env("FEEDMESH_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A `feedmesh serve` process on a fixed free port (so it can be restarted on it), with
/// alice's collection Docs and tokens for two of her devices, made through the CLI.
struct ProcessHub {
    data: tempfile::TempDir,
    port: u16,
    url: String,
    process: Proc,
    laptop: String,
    phone: String,
}

async fn process_hub() -> ProcessHub {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    ok(d, &["user", "add", "alice"]);
    ok(d, &["collection", "add", "alice", "Docs"]);
    let token = |device: &str| {
        let out = ok(d, &["token", "add", "alice", "--device", device]);
        out.lines().last().unwrap().to_string()
    };
    let (laptop, phone) = (token("laptop"), token("phone"));
    // Port 0 first; restarts take the port it reported.
    let (child, url) = serve_with(d, &[]);
    let process = Proc(child);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    feedmesh::net::install_crypto();
    ProcessHub {
        data,
        port,
        url,
        process,
        laptop,
        phone,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_agents_sync_at_once_and_keep_offline_edits() {
    let ProcessHub {
        data,
        port,
        url: hub_url,
        process: mut hub,
        laptop: ta,
        phone: tb,
    } = process_hub().await;
    let d = data.path();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _agents = (
        agent_process(&hub_url, &ta, a.path()),
        agent_process(&hub_url, &tb, b.path()),
    );

    // A change on A reaches B through the watcher and the long-poll, not the 60 s rescan.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    write(a.path(), "hello.txt", "hi from A");
    eventually_within("hello.txt on B", 10, async || b.path().join("hello.txt").is_file()).await;
    assert_eq!(
        std::fs::read_to_string(b.path().join("hello.txt")).unwrap(),
        "hi from A"
    );

    // The hub goes away; edits made meanwhile are kept and go out when it is back.
    let _ = hub.0.kill();
    let _ = hub.0.wait();
    write(a.path(), "hello.txt", "edited while the hub was down");
    write(a.path(), "offline/new.txt", "made offline");
    eventually_within("the offline edits in A's index", 10, async || {
        ok(d, &["agent", "status", "--dir", a.path().to_str().unwrap()]).contains("pending:     2")
    })
    .await;
    hub = hub_process(d, port);
    eventually_within("the offline edits on B", 40, async || {
        std::fs::read_to_string(b.path().join("offline/new.txt")).is_ok_and(|s| s == "made offline")
            && std::fs::read_to_string(b.path().join("hello.txt")).is_ok_and(|s| s.contains("hub was down"))
    })
    .await;
    let status = ok(d, &["agent", "status", "--dir", a.path().to_str().unwrap()]);
    assert!(
        status.contains("pending:     0") && status.contains(&hub_url),
        "{status}"
    );
    assert_eq!(tree(a.path()), tree(b.path()));
    // SIGTERM stops a running agent promptly (it does not wait for its long-poll).
    let (mut a_proc, _b_proc) = _agents;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &a_proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    eventually_within("the agent to stop on SIGTERM", 5, async || {
        a_proc.0.try_wait().is_ok_and(|s| s.is_some())
    })
    .await;
    drop(hub);
}

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Rounds of random offline work on three devices (create, edit, delete, rename, move), each
/// followed by syncing everyone. After every round all folders are identical, and whatever a
/// device last wrote in that round survives: at its path or in a conflict copy.
#[tokio::test]
async fn three_devices_converge_under_random_concurrent_work() {
    let app = TestApp::spawn().await;
    app.token("alice", "setup").await;
    app.collection("alice", "Docs").await;
    let devices = [
        device(&app, "one").await,
        device(&app, "two").await,
        device(&app, "three").await,
    ];
    let refs: Vec<&Device> = devices.iter().collect();
    // FEEDMESH_AGENT_SEED and FEEDMESH_AGENT_ROUNDS explore further; the default is fixed.
    let seed = std::env::var("FEEDMESH_AGENT_SEED").ok().and_then(|s| s.parse().ok());
    let rounds = std::env::var("FEEDMESH_AGENT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut rng = Rng(seed.unwrap_or(0x5eed_f00d_1234_5678));
    let mut counter = 0;
    let names = ["a.txt", "b.txt", "dir/c.txt", "dir/d.md", "other/e.txt", "f"];
    let mut log: Vec<String> = Vec::new();
    for round in 0..rounds {
        for (di, d) in devices.iter().enumerate() {
            for _ in 0..1 + rng.below(4) {
                let files: Vec<String> = tree(d.path())
                    .into_keys()
                    .filter(|k| !k.contains(".conflict-"))
                    .collect();
                counter += 1;
                let content = format!("version {counter} (round {round})");
                match (rng.below(5), files.is_empty()) {
                    (0, _) | (_, true) => {
                        let to = names[rng.below(names.len())];
                        log.push(format!("round {round} device {di}: write {to} = {content}"));
                        write(d.path(), to, &content)
                    }
                    (1 | 2, false) => {
                        let to = &files[rng.below(files.len())];
                        log.push(format!("round {round} device {di}: edit {to} = {content}"));
                        write(d.path(), to, &content)
                    }
                    (3, false) => {
                        let f = &files[rng.below(files.len())];
                        log.push(format!("round {round} device {di}: delete {f}"));
                        std::fs::remove_file(d.path().join(f)).unwrap()
                    }
                    _ => {
                        let from = &files[rng.below(files.len())];
                        let to = names[rng.below(names.len())];
                        if !d.path().join(to).exists() {
                            log.push(format!("round {round} device {di}: rename {from} -> {to}"));
                            std::fs::create_dir_all(d.path().join(to).parent().unwrap()).unwrap();
                            std::fs::rename(d.path().join(from), d.path().join(to)).unwrap();
                        }
                    }
                }
            }
        }
        // What each device wrote this round and still had at its end (concurrent with the
        // others' work): none of it may be lost.
        let marker = format!("(round {round})");
        let written: Vec<Vec<u8>> = devices
            .iter()
            .flat_map(|d| tree(d.path()).into_values())
            .filter(|v| String::from_utf8_lossy(v).contains(&marker))
            .collect();
        settle(&refs).await;
        let first = tree(devices[0].path());
        for d in &devices[1..] {
            assert_eq!(
                tree(d.path()),
                first,
                "round {round}: the folders differ\n{}",
                log.join("\n")
            );
        }
        let present: Vec<&Vec<u8>> = first.values().collect();
        for w in &written {
            assert!(
                present.contains(&w),
                "round {round}: {:?} was lost; the folder has {:?}\n{}",
                String::from_utf8_lossy(w),
                first.keys(),
                log.join("\n")
            );
        }
    }
}

fn kill9(p: &mut Proc) {
    let _ = p.0.kill(); // SIGKILL on Unix
    let _ = p.0.wait();
}

/// Any file under `dir` (recursively) whose name passes `pred`.
fn any_file(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() { any_file(&p, pred) } else { pred(&p) }
    })
}

/// `kill -9` of an agent in the middle of an upload and of a download, and of the hub in the
/// middle of a sync: after restarts every folder converges and no file is cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_agents_and_hub_loses_and_corrupts_nothing() {
    let ProcessHub {
        data,
        port,
        url: hub_url,
        process: mut hub,
        laptop: ta,
        phone: tb,
    } = process_hub().await;
    let d = data.path();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 192 MiB of varied bytes: long enough on loopback to be caught mid-transfer.
    let big: Vec<u8> = (0..192u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(a.path().join("big.bin"), &big).unwrap();

    // Upload: killed while the hub is receiving the blob (in resumable parts).
    let mut agent_a = agent_process(&hub_url, &ta, a.path());
    let (hub_tmp, hub_partial) = (d.join("blobs").join("tmp"), d.join("blobs").join("partial"));
    eventually_within("the upload to start", 30, async || any_file(&hub_partial, &|_| true)).await;
    kill9(&mut agent_a);
    let _agent_a = agent_process(&hub_url, &ta, a.path());

    // Download: killed while B writes its temporary file.
    let mut agent_b = agent_process(&hub_url, &tb, b.path());
    let b_tmp = b.path().join(".feedmesh").join("tmp");
    eventually_within("the download to start", 60, async || any_file(&b_tmp, &|_| true)).await;
    kill9(&mut agent_b);
    assert!(!b.path().join("big.bin").exists(), "a half-downloaded file is visible");
    let _agent_b = agent_process(&hub_url, &tb, b.path());
    eventually_within("big.bin on B", 60, async || {
        std::fs::metadata(b.path().join("big.bin")).is_ok_and(|m| m.len() == big.len() as u64)
    })
    .await;
    assert!(
        std::fs::read(b.path().join("big.bin")).unwrap() == big,
        "big.bin is corrupt on B"
    );

    // The hub dies while A pushes 200 small files; after its restart everything arrives.
    for i in 0..200 {
        write(a.path(), &format!("many/{i:03}.txt"), &format!("file {i}"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    kill9(&mut hub);
    hub = hub_process(d, port);
    eventually_within("the 200 files on B", 60, async || {
        (0..200).all(|i| {
            std::fs::read_to_string(b.path().join(format!("many/{i:03}.txt"))).is_ok_and(|s| s == format!("file {i}"))
        })
    })
    .await;
    assert_eq!(tree(a.path()), tree(b.path()));
    assert!(!any_file(&hub_tmp, &|_| true), "the hub kept a temporary file");
    assert!(
        !any_file(&hub_partial, &|_| true),
        "the hub kept a finished upload's parts"
    );
    assert!(!any_file(&b_tmp, &|_| true), "the agent kept a cut-short download");
    drop(hub);
}
