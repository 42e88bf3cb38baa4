//! Unit tests of the sync's pure parts, stage by stage: what a scan finds and records, the
//! feed a push sends, which item keeps a contested path and where the other one goes.

use std::path::Path;

use super::apply::{alt_path, keeps_path};
use super::push::changes_feed;
use super::scan::{file_entry, media_type, unchanged, walk};
use super::{Expect, OwnWrites, describe, own_doing};
use crate::agent::index::{Row, Stat};
use crate::agent::paths::STATE_DIR;
use crate::domain::entry::StoredItem;
use crate::domain::feedsync;
use crate::domain::time::Timestamp;
use crate::formats::atom_in::{Incoming, parse_feed_document};

fn row(id: &str, by: &str, at: i64) -> Row {
    let item: StoredItem = feedsync::create(
        id.to_string(),
        by,
        Timestamp::from_unix(at),
        false,
        file_entry("notes/a.txt", &"ab".repeat(32), 3),
    );
    Row {
        sync_id: id.to_string(),
        path: Some("notes/a.txt".into()),
        sha256: Some("ab".repeat(32)),
        size: 3,
        mtime_ns: 0,
        ino: 0,
        seen_ns: 0,
        item,
        dirty: true,
    }
}

#[test]
fn a_scan_finds_files_but_not_links_nor_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
    for (rel, body) in [
        ("a.txt", "a"),
        ("sub/deeper/b.md", "bb"),
        (&format!("{STATE_DIR}/index.db") as &str, "x"),
    ] {
        std::fs::write(root.join(rel), body).unwrap();
    }
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("link.txt")).unwrap();
    let mut found: Vec<(String, u64)> = walk(root).unwrap().into_iter().map(|f| (f.rel, f.size)).collect();
    found.sort();
    assert_eq!(found, [("a.txt".to_string(), 1), ("sub/deeper/b.md".to_string(), 2)]);
}

#[test]
fn a_file_is_trusted_unchanged_only_when_its_stat_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "abc").unwrap();
    let f = walk(dir.path()).unwrap().remove(0);
    let stat = |seen_ns: i64| Stat {
        sync_id: "x".into(),
        path: "a.txt".into(),
        size: f.size,
        mtime_ns: f.mtime_ns,
        ino: f.ino,
        seen_ns,
    };
    assert!(unchanged(&stat(f.mtime_ns + 3_000_000_000), &f));
    // Seen within 2 s of its mtime: a write in the same tick could hide; hash it again.
    assert!(!unchanged(&stat(f.mtime_ns + 1_000_000_000), &f));
    let grown = Stat {
        size: f.size + 1,
        ..stat(f.mtime_ns + 3_000_000_000)
    };
    assert!(!unchanged(&grown, &f));
}

#[test]
fn files_are_named_and_typed_by_their_path() {
    assert_eq!(media_type("a/b.TXT"), "text/plain");
    assert_eq!(media_type("photo.JPeG"), "image/jpeg");
    assert_eq!(media_type("Makefile"), "application/octet-stream");
    let e = file_entry("docs/r.pdf", &"cd".repeat(32), 9);
    let m = e.media.unwrap();
    assert_eq!(
        (m.slug.as_deref(), m.size, m.media_type.as_str()),
        (Some("docs/r.pdf"), 9, "application/pdf")
    );
    assert_eq!(e.title.value, "docs/r.pdf");
}

#[test]
fn a_push_is_one_feedsync_feed_the_hub_reads_back_alike() {
    let (a, b) = (row("id-a", "alice/laptop", 100), row("id-b", "alice/laptop", 200));
    let feed = changes_feed(&[&a, &b]);
    let entries = parse_feed_document(feed.as_bytes(), Timestamp::now()).unwrap();
    let items: Vec<StoredItem> = entries
        .into_iter()
        .map(|e| match e.into_incoming() {
            Incoming::Sync(item) => item,
            Incoming::Plain(_) => panic!("an entry without sx:sync"),
        })
        .collect();
    assert_eq!(items.len(), 2);
    for (got, want) in items.iter().zip([&a, &b]) {
        assert_eq!(got.id(), want.sync_id);
        assert_eq!(got.current.sync, want.item.current.sync);
        assert_eq!(got.current.payload.media, want.item.current.payload.media);
    }
}

#[test]
fn of_two_items_on_one_path_exactly_one_keeps_it_on_every_device() {
    let early = row("id-1", "alice/laptop", 100);
    let mut late = row("id-2", "alice/phone", 200);
    feedsync::update(&mut late.item, "alice/phone", Timestamp::from_unix(300), None, false);
    assert!(keeps_path(&late, &early), "more updates win");
    assert!(!keeps_path(&early, &late));
    // A tie (same updates, same time, same device) goes to the larger id, either way round.
    let (x, y) = (row("id-x", "alice/laptop", 100), row("id-y", "alice/laptop", 100));
    assert!(keeps_path(&y, &x) && !keeps_path(&x, &y));
    // The one that loses is shown under a name of its own, tagged by its id.
    let (ax, ay) = (alt_path(&x, "notes/a.txt"), alt_path(&y, "notes/a.txt"));
    assert_ne!(ax, ay);
    assert!(
        ax.starts_with("notes/") && ax.ends_with(".txt") && ax.contains("laptop"),
        "{ax}"
    );
}

#[test]
fn the_agent_knows_its_own_writes_from_a_local_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "hub's").unwrap();
    let own: OwnWrites = Default::default();
    let meta = std::fs::metadata(&file).unwrap();
    let mtime = super::scan::mtime_ns(&meta);
    own.lock()
        .unwrap()
        .insert(file.clone(), Expect::File(meta.len(), mtime));
    own.lock().unwrap().insert(dir.path().join("gone.txt"), Expect::Gone);
    assert!(own_doing(&own, &file));
    assert!(own_doing(&own, &dir.path().join("gone.txt")));
    assert!(!own_doing(&own, Path::new("/never/written")));
    std::fs::write(&file, "a local edit").unwrap();
    assert!(!own_doing(&own, &file), "a different size is someone else's write");
}

#[test]
fn a_listing_names_the_last_change_and_its_device() {
    let r = row("id-1", "alice/laptop", 1_700_000_000);
    assert_eq!(describe(&r.item), "2023-11-14T22:13:20Z by alice/laptop");
}
