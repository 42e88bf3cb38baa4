//! Folder sync through the hub (`feedmesh agent`): two and three devices on temporary
//! folders, real HTTP to a real hub, FeedSync on both sides.

use std::collections::BTreeMap;
use std::path::Path;

use feedmesh::agent::Agent;

use crate::common::TestApp;

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
