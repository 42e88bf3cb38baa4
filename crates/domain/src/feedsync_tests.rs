//! Every vector of specs/feedsync.md §3 (C1-C6, T1-T26) and property tests of §2.10.
//! Longer than most files on purpose: one test per vector of the spec, in the spec's order,
//! so the file reads side by side with specs/feedsync.md.

use super::*;

/// Parses the spec's notation: `u2 del nc [A#2@10:05, #1@10:00, B#3]`.
/// Times are on one fixed day; `hh:mm` or `hh:mm:ss`.
fn meta(spec: &str) -> SyncMeta {
    let (head, hist) = spec.split_once('[').expect("history in brackets");
    let mut sync = SyncMeta {
        id: "item1".into(),
        updates: 0,
        deleted: false,
        noconflicts: false,
        history: Vec::new(),
    };
    for word in head.split_whitespace() {
        match word {
            "del" => sync.deleted = true,
            "nc" => sync.noconflicts = true,
            w => sync.updates = w.strip_prefix('u').and_then(|n| n.parse().ok()).expect("uN"),
        }
    }
    for entry in hist
        .trim_end_matches(']')
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (who, when) = match entry.split_once('@') {
            Some((w, t)) => (w, Some(clock(t))),
            None => (entry, None),
        };
        let (by, seq) = who.split_once('#').expect("by#seq");
        sync.history.push(History {
            sequence: seq.parse().unwrap(),
            when,
            by: (!by.is_empty()).then(|| by.to_string()),
        });
    }
    sync
}

fn clock(t: &str) -> Timestamp {
    let parts: Vec<i64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    let secs = parts[0] * 3600 + parts[1] * 60 + parts.get(2).copied().unwrap_or(0);
    Timestamp::from_unix(1_209_600_000 + secs)
}

fn v(name: &'static str, spec: &str) -> Version<&'static str> {
    Version {
        sync: meta(spec),
        payload: name,
    }
}

fn item(current: Version<&'static str>, conflicts: Vec<Version<&'static str>>) -> Item<&'static str> {
    Item { current, conflicts }
}

fn one(version: Version<&'static str>) -> Item<&'static str> {
    item(version, vec![])
}

fn conflict_names(item: &Item<&'static str>) -> Vec<&'static str> {
    let mut names: Vec<_> = item.conflicts.iter().map(|c| c.payload).collect();
    names.sort();
    names
}

/// Merges and checks the kind, the winner's payload, the conflicts and `updates`.
fn check(
    local: Option<Item<&'static str>>,
    incoming: Item<&'static str>,
    kind: MergeKind,
    winner: &str,
    conflicts: &[&str],
    updates: u32,
) -> Item<&'static str> {
    let merged = merge(local.as_ref(), incoming).expect("valid merge");
    assert_eq!(merged.kind, kind, "merge kind");
    assert_eq!(merged.item.current.payload, winner, "winner");
    assert_eq!(conflict_names(&merged.item), conflicts, "conflicts");
    assert_eq!(merged.item.current.sync.updates, updates, "updates");
    merged.item
}

// ---- §3.1 create / update / delete ----

#[test]
fn c1_create() {
    let it = create("item1".into(), "A", clock("10:00"), false, "Av");
    assert_eq!(it.current.sync, meta("u1 [A#1@10:00]"));
    assert!(!it.has_conflicts());
}

#[test]
fn c2_update() {
    let mut it = one(v("Av", "u1 [A#1@10:00]"));
    update(&mut it, "B", clock("10:05"), Some("Bv"), false);
    assert_eq!(it.current.sync, meta("u2 [B#2@10:05, A#1@10:00]"));
    assert_eq!(it.current.payload, "Bv");
}

#[test]
fn c3_delete_keeps_payload() {
    let mut it = one(v("Bv", "u2 [B#2@10:05, A#1@10:00]"));
    update(&mut it, "A", clock("10:10"), None, true);
    assert_eq!(it.current.sync, meta("u3 del [A#3@10:10, B#2@10:05, A#1@10:00]"));
    assert_eq!(it.current.payload, "Bv");
}

#[test]
fn c4_undelete() {
    let mut it = one(v("Bv", "u3 del [A#3@10:10, B#2@10:05, A#1@10:00]"));
    update(&mut it, "B", clock("10:20"), Some("B2"), false);
    assert_eq!(it.current.sync, meta("u4 [B#4@10:20, A#3@10:10, B#2@10:05, A#1@10:00]"));
}

fn c5_start() -> Item<&'static str> {
    item(
        v("Bv", "u2 [B#2@10:07, X#1@10:00]"),
        vec![v("Av", "u2 [A#2@10:05, X#1@10:00]")],
    )
}

#[test]
fn c5_update_drops_conflicts_by_the_same_endpoint() {
    let mut it = c5_start();
    update(&mut it, "A", clock("10:40"), Some("A3"), false);
    assert_eq!(it.current.sync, meta("u3 [A#3@10:40, B#2@10:07, X#1@10:00]"));
    assert!(it.conflicts.is_empty());
}

#[test]
fn c6_update_keeps_conflicts_by_other_endpoints() {
    let mut it = c5_start();
    update(&mut it, "C", clock("10:40"), Some("C3"), false);
    assert_eq!(it.current.sync, meta("u3 [C#3@10:40, B#2@10:07, X#1@10:00]"));
    assert_eq!(conflict_names(&it), ["Av"]);
}

#[test]
fn an_update_dropping_its_own_conflict_keeps_what_that_version_had_seen() {
    // Found by the convergence property: the laptop's losing version had seen the phone's
    // edit (P#3); the laptop edits again, which drops that version (C5), and P#3 must stay
    // known, or a replica still holding the phone's version would see a conflict again.
    let mut it = item(
        v("Dv", "u4 del [D#4@10:00, D#3@10:00, D#2@10:00, A#1@10:00]"),
        vec![v("A4", "u4 [A#4@10:00, P#3@10:00, P#2@10:00, A#1@10:00]")],
    );
    update(&mut it, "A", clock("10:10"), Some("A5"), false);
    assert!(it.conflicts.is_empty());
    assert_eq!(
        it.current.sync,
        meta("u5 [A#5@10:10, P#3@10:00, D#4@10:00, D#3@10:00, D#2@10:00, A#1@10:00]")
    );
    let phone = one(v("P3", "u3 [P#3@10:00, P#2@10:00, A#1@10:00]"));
    check(Some(it), phone, MergeKind::Unchanged, "A5", &[], 5);
}

#[test]
fn delete_also_drops_conflicts_by_the_same_endpoint() {
    let mut it = c5_start();
    update(&mut it, "A", clock("10:40"), None, true);
    assert!(it.current.sync.deleted && it.conflicts.is_empty());
}

#[test]
fn update_never_reuses_a_sequence_for_the_same_by() {
    let mut it = one(v("Av", "u1 [A#3@10:00]"));
    update(&mut it, "A", clock("10:05"), Some("A2"), false);
    assert_eq!(it.current.sync.history[0].sequence, 4);
    assert_eq!(it.current.sync.updates, 4);
}

// ---- §3.2 merge ----

#[test]
fn t1_new_item() {
    check(None, one(v("Iv", "u1 [A#1@10:00]")), MergeKind::Added, "Iv", &[], 1);
}

#[test]
fn t2_fast_forward() {
    check(
        Some(one(v("Lv", "u1 [A#1@10:00]"))),
        one(v("Iv", "u2 [B#2@10:05, A#1@10:00]")),
        MergeKind::Updated,
        "Iv",
        &[],
        2,
    );
}

#[test]
fn t3_older_update_ignored() {
    check(
        Some(one(v("Lv", "u2 [B#2@10:05, A#1@10:00]"))),
        one(v("Iv", "u1 [A#1@10:00]")),
        MergeKind::Unchanged,
        "Lv",
        &[],
        2,
    );
}

#[test]
fn t4_echo_keeps_the_incoming_copy_and_is_unchanged() {
    check(
        Some(one(v("Lv", "u2 [B#2@10:05, A#1@10:00]"))),
        one(v("Iv", "u2 [B#2@10:05, A#1@10:00]")),
        MergeKind::Unchanged,
        "Iv",
        &[],
        2,
    );
}

#[test]
fn t5_more_updates_wins_over_later_when() {
    check(
        Some(one(v("Lv", "u3 [A#3@10:10, A#2@10:05, A#1@10:00]"))),
        one(v("Iv", "u2 [B#2@10:20, A#1@10:00]")),
        MergeKind::Conflict,
        "Lv",
        &["Iv"],
        3,
    );
}

#[test]
fn t6_equal_updates_later_when_wins() {
    check(
        Some(one(v("Av", "u2 [A#2@10:05, A#1@10:00]"))),
        one(v("Bv", "u2 [B#2@10:07, A#1@10:00]")),
        MergeKind::Conflict,
        "Bv",
        &["Av"],
        2,
    );
}

#[test]
fn t7_tie_on_when_by_decides_either_way_round() {
    let ep1 = || one(v("EP1v", "u2 [EP1#2@10:05, X#1@10:00]"));
    let ep2 = || one(v("EP2v", "u2 [EP2#2@10:05, X#1@10:00]"));
    check(Some(ep1()), ep2(), MergeKind::Conflict, "EP2v", &["EP1v"], 2);
    check(Some(ep2()), ep1(), MergeKind::Conflict, "EP2v", &["EP1v"], 2);
}

#[test]
fn t8_by_is_compared_ordinally() {
    check(
        Some(one(v("alice", "u2 [alice#2@10:05, X#1]"))),
        one(v("bob", "u2 [bob#2@10:05, X#1]")),
        MergeKind::Conflict,
        "bob",
        &["alice"],
        2,
    );
    check(
        Some(one(v("Zed", "u2 [Zed#2@10:05, X#1]"))),
        one(v("adam", "u2 [adam#2@10:05, X#1]")),
        MergeKind::Conflict,
        "adam",
        &["Zed"],
        2,
    );
}

#[test]
fn t9_when_present_beats_absent() {
    check(
        Some(one(v("Lv", "u2 [A#2@10:05, X#1@10:00]"))),
        one(v("Iv", "u2 [B#2, X#1@10:00]")),
        MergeKind::Conflict,
        "Lv",
        &["Iv"],
        2,
    );
}

#[test]
fn t10_no_when_anywhere_by_decides() {
    check(
        Some(one(v("Lv", "u2 [A#2, X#1]"))),
        one(v("Iv", "u2 [B#2, X#1]")),
        MergeKind::Conflict,
        "Iv",
        &["Lv"],
        2,
    );
}

#[test]
fn t11_when_only_fast_forward() {
    check(
        Some(one(v("Lv", "u1 [#1@10:00]"))),
        one(v("Iv", "u2 [#2@10:05, #1@10:00]")),
        MergeKind::Updated,
        "Iv",
        &[],
        2,
    );
}

#[test]
fn t12_when_only_concurrent() {
    check(
        Some(one(v("Lv", "u2 [#2@10:05, #1@10:00]"))),
        one(v("Iv", "u2 [#2@10:06, #1@10:00]")),
        MergeKind::Conflict,
        "Iv",
        &["Lv"],
        2,
    );
}

#[test]
fn t12b_by_less_history_not_subsumed_by_a_by_history() {
    check(
        Some(one(v("Lv", "u1 [#1@10:00]"))),
        one(v("Iv", "u1 [A#1@10:00]")),
        MergeKind::Conflict,
        "Iv",
        &["Lv"],
        1,
    );
}

#[test]
fn t13_later_delete_beats_concurrent_edit() {
    let it = check(
        Some(one(v("Lv", "u2 del [A#2@10:10, A#1@10:00]"))),
        one(v("Iv", "u2 [B#2@10:05, A#1@10:00]")),
        MergeKind::Conflict,
        "Lv",
        &["Iv"],
        2,
    );
    assert!(it.current.sync.deleted);
}

#[test]
fn t14_edit_with_more_updates_beats_delete() {
    let it = check(
        Some(one(v("Lv", "u2 del [A#2@10:10, A#1]"))),
        one(v("Iv", "u3 [B#3@10:06, B#2@10:05, A#1]")),
        MergeKind::Conflict,
        "Iv",
        &["Lv"],
        3,
    );
    assert!(!it.current.sync.deleted);
    assert!(it.conflicts[0].sync.deleted);
}

#[test]
fn t15_delete_propagates() {
    let it = check(
        Some(one(v("Lv", "u1 [A#1@10:00]"))),
        one(v("Iv", "u2 del [B#2@10:05, A#1@10:00]")),
        MergeKind::Updated,
        "Iv",
        &[],
        2,
    );
    assert!(it.current.sync.deleted);
}

#[test]
fn t16_concurrent_deletes_conflict() {
    let it = check(
        Some(one(v("EP1v", "u2 del [EP1#2@00:14:40, EP2#1@00:14:37]"))),
        one(v("EP2v", "u2 del [EP2#2@00:14:40, EP2#1@00:14:37]")),
        MergeKind::Conflict,
        "EP2v",
        &["EP1v"],
        2,
    );
    assert!(it.current.sync.deleted && it.conflicts[0].sync.deleted);
}

fn t17_before() -> Item<&'static str> {
    item(
        v(
            "EP2v",
            "u4 [EP2#4@00:14:39, EP2#3@00:14:38, EP1#2@00:14:38, EP1#1@00:14:37]",
        ),
        vec![v(
            "EP1v",
            "u4 [EP1#4@00:14:38, EP2#3@00:14:38, EP1#2@00:14:38, EP1#1@00:14:37]",
        )],
    )
}

fn t17_resolved() -> Item<&'static str> {
    let mut it = t17_before();
    resolve(&mut it, "EP2", clock("00:14:40"), None, false, Resolve::All);
    it
}

#[test]
fn sample3_cross_check_merge() {
    let local = one(v(
        "EP1v",
        "u4 [EP1#4@00:14:38, EP2#3@00:14:38, EP1#2@00:14:38, EP1#1@00:14:37]",
    ));
    let incoming = one(v(
        "EP2v",
        "u4 [EP2#4@00:14:39, EP2#3@00:14:38, EP1#2@00:14:38, EP1#1@00:14:37]",
    ));
    let merged = check(Some(local), incoming, MergeKind::Conflict, "EP2v", &["EP1v"], 4);
    assert_eq!(merged, t17_before());
}

#[test]
fn t17_resolution_copies_unsubsumed_history() {
    let it = t17_resolved();
    assert_eq!(
        it.current.sync,
        meta("u5 [EP2#5@00:14:40, EP1#4@00:14:38, EP2#4@00:14:39, EP2#3@00:14:38, EP1#2@00:14:38, EP1#1@00:14:37]")
    );
    assert_eq!(it.current.payload, "EP2v");
    assert!(it.conflicts.is_empty());
}

#[test]
fn t18_resolution_propagates_to_either_pre_resolution_state() {
    check(Some(t17_before()), t17_resolved(), MergeKind::Updated, "EP2v", &[], 5);
    let ep1v = one(v("EP1v", "u4 [EP1#4@00:14:38, EP2#3, EP1#2, EP1#1]"));
    check(Some(ep1v), t17_resolved(), MergeKind::Updated, "EP2v", &[], 5);
}

#[test]
fn t18_neg_skipping_the_history_copy_brings_the_conflict_back() {
    let ep1v = one(v("EP1v", "u4 [EP1#4, EP2#3, EP1#2, EP1#1]"));
    let bad = one(v("R", "u5 [EP2#5, EP2#4, EP2#3, EP1#2, EP1#1]"));
    check(Some(ep1v), bad, MergeKind::Conflict, "R", &["EP1v"], 5);
}

#[test]
fn t19_only_topmost_matters_pruned_histories_still_subsume() {
    let older = || one(v("Old", "u3 [B#3@10:10, A#2@10:05, A#1@10:00]"));
    let newer = || one(v("New", "u4 [C#4@10:20, B#3@10:10]"));
    check(Some(older()), newer(), MergeKind::Updated, "New", &[], 4);
    check(Some(newer()), older(), MergeKind::Unchanged, "New", &[], 4);
}

#[test]
fn t20_noconflicts_last_writer_wins() {
    let it = check(
        Some(one(v("Av", "nc u2 [A#2@10:05, A#1@10:00]"))),
        one(v("Bv", "nc u2 [B#2@10:07, A#1@10:00]")),
        MergeKind::Updated,
        "Bv",
        &[],
        2,
    );
    assert!(it.conflicts.is_empty());
}

#[test]
fn t20b_noconflicts_local_wins() {
    check(
        Some(one(v("Av", "nc u3 [A#3@10:10, A#2, A#1]"))),
        one(v("Bv", "nc u2 [B#2@10:20, A#1]")),
        MergeKind::Unchanged,
        "Av",
        &[],
        3,
    );
}

#[test]
fn t21_incoming_conflicts_are_flattened() {
    let incoming = item(
        v("Bv", "u2 [B#2@10:07, X#1@10:00]"),
        vec![v("Cv", "u2 [C#2@10:06, X#1@10:00]")],
    );
    let it = check(
        Some(one(v("Av", "u2 [A#2@10:05, X#1@10:00]"))),
        incoming,
        MergeKind::Conflict,
        "Bv",
        &["Av", "Cv"],
        2,
    );
    let order: Vec<_> = it.conflicts.iter().map(|c| c.payload).collect();
    assert_eq!(order, ["Av", "Cv"], "M order Av, Cv, Bv minus the winner");
}

fn t22_local() -> Item<&'static str> {
    item(
        v("Bv", "u2 [B#2@10:07, X#1@10:00]"),
        vec![v("Av", "u2 [A#2@10:05, X#1@10:00]")],
    )
}

#[test]
fn t22_local_conflicts_cleared_by_a_version_that_saw_them() {
    check(
        Some(t22_local()),
        one(v("A3", "u3 [A#3@10:30, B#2@10:07, X#1@10:00]")),
        MergeKind::Updated,
        "A3",
        &[],
        3,
    );
}

#[test]
fn t23_local_conflicts_survive_an_unrelated_newer_version() {
    check(
        Some(t22_local()),
        one(v("Cv", "u3 [C#3@10:30, B#2@10:07, X#1@10:00]")),
        MergeKind::Conflict,
        "Cv",
        &["Av"],
        3,
    );
}

#[test]
fn t24_no_history_is_rejected() {
    let local = one(v("Lv", "u1 [A#1]"));
    let mut bad = one(v("Iv", "u1 [A#1]"));
    bad.current.sync.history.clear();
    assert_eq!(merge(Some(&local), bad), Err(SyncError::NoHistory));
}

#[test]
fn t25_same_endpoint_backwards_clock_never_conflicts() {
    check(
        Some(one(v("Lv", "u2 [A#2@10:05, X#1@10:00]"))),
        one(v("Iv", "u3 [A#3@10:01, A#2@10:05, X#1@10:00]")),
        MergeKind::Updated,
        "Iv",
        &[],
        3,
    );
}

#[test]
fn t26_two_devices_sharing_one_by_lose_data_silently() {
    check(
        Some(one(v("laptop", "u2 [A#2@10:05, X#1@10:00]"))),
        one(v("phone", "u2 [A#2@10:07, X#1@10:00]")),
        MergeKind::Updated,
        "phone",
        &[],
        2,
    );
}

#[test]
fn validation_rejects_nonsense() {
    let mut s = meta("u1 [A#1@10:00]");
    s.id = "has space".into();
    assert!(matches!(s.validate(), Err(SyncError::BadId(_))));
    s.id = "ok%2".into();
    assert!(matches!(s.validate(), Err(SyncError::BadId(_))));
    s.id = "urn:uuid:1234-abcd%20x".into();
    assert_eq!(s.validate(), Ok(()));
    s.updates = 0;
    assert_eq!(s.validate(), Err(SyncError::BadUpdates));
    s.updates = u32::MAX;
    assert_eq!(s.validate(), Err(SyncError::BadUpdates));
    let mut s = meta("u1 [A#0@10:00]");
    assert_eq!(s.validate(), Err(SyncError::BadSequence));
    s.history[0].sequence = MAX_COUNT + 1;
    assert_eq!(s.validate(), Err(SyncError::BadSequence));
    s.history[0] = History {
        sequence: 1,
        when: None,
        by: None,
    };
    assert_eq!(s.validate(), Err(SyncError::HistoryWithoutWhenOrBy));
}

#[test]
fn sparse_purge_keeps_highest_per_by_and_all_by_less() {
    let mut s = meta("u5 [A#5@10:05, B#4, A#3, #2@10:00, B#1]");
    sparse_purge(&mut s);
    assert_eq!(s, meta("u5 [A#5@10:05, B#4, #2@10:00]"));
}

// ---- §2.10 property tests ----

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    type P = u32;

    /// A replica operation in a random mesh of three endpoints sharing one item.
    #[derive(Clone, Debug)]
    enum Op {
        Edit { at: usize, tick: i64 },
        Delete { at: usize, tick: i64 },
        Sync { from: usize, to: usize },
        Resolve { at: usize, tick: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..50i64).prop_map(|(at, tick)| Op::Edit { at, tick }),
            1 => (0..3usize, 0..50i64).prop_map(|(at, tick)| Op::Delete { at, tick }),
            3 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
            1 => (0..3usize, 0..50i64).prop_map(|(at, tick)| Op::Resolve { at, tick }),
        ]
    }

    const BY: [&str; 3] = ["alice/laptop", "alice/phone", "bob/desk"];

    struct Mesh {
        replicas: Vec<Item<P>>,
        /// Every version any endpoint ever produced.
        produced: Vec<SyncMeta>,
        next_payload: P,
    }

    impl Mesh {
        fn new() -> Self {
            let base = create("item1".into(), BY[0], Timestamp::from_unix(0), false, 0);
            Mesh {
                produced: vec![base.current.sync.clone()],
                replicas: vec![base.clone(), base.clone(), base],
                next_payload: 1,
            }
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Edit { at, tick } | Op::Delete { at, tick } => {
                    let p = self.next_payload;
                    self.next_payload += 1;
                    let delete = matches!(op, Op::Delete { .. });
                    update(
                        &mut self.replicas[at],
                        BY[at],
                        Timestamp::from_unix(tick),
                        Some(p),
                        delete,
                    );
                    self.produced.push(self.replicas[at].current.sync.clone());
                }
                Op::Resolve { at, tick } => {
                    if self.replicas[at].has_conflicts() {
                        resolve(
                            &mut self.replicas[at],
                            BY[at],
                            Timestamp::from_unix(tick),
                            None,
                            false,
                            Resolve::All,
                        );
                        self.produced.push(self.replicas[at].current.sync.clone());
                    }
                }
                Op::Sync { from, to } => {
                    let incoming = self.replicas[from].clone();
                    let merged = merge(Some(&self.replicas[to]), incoming).expect("valid");
                    self.replicas[to] = merged.item;
                }
            }
        }

        /// Gossip until nothing changes anywhere.
        fn settle(&mut self) {
            for _round in 0..10 {
                let mut changed = false;
                for from in 0..3 {
                    for to in 0..3 {
                        if from != to {
                            let merged = merge(Some(&self.replicas[to]), self.replicas[from].clone()).unwrap();
                            changed |= merged.kind != MergeKind::Unchanged;
                            self.replicas[to] = merged.item;
                        }
                    }
                }
                if !changed {
                    return;
                }
            }
            panic!("replicas did not settle in 10 rounds");
        }
    }

    fn conflict_set(item: &Item<P>) -> Vec<SyncMeta> {
        let mut v: Vec<SyncMeta> = item.conflicts.iter().map(|c| c.sync.clone()).collect();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn merge_is_idempotent(ops in prop::collection::vec(op(), 0..30)) {
            let mut mesh = Mesh::new();
            for o in &ops { mesh.apply(o); }
            for r in &mesh.replicas {
                let merged = merge(Some(r), r.clone()).unwrap();
                prop_assert_eq!(merged.kind, MergeKind::Unchanged);
                prop_assert_eq!(&merged.item.current.sync, &r.current.sync);
            }
        }

        #[test]
        fn merge_is_commutative_in_outcome(ops in prop::collection::vec(op(), 0..30)) {
            let mut mesh = Mesh::new();
            for o in &ops { mesh.apply(o); }
            for a in 0..3 {
                for b in 0..3 {
                    let ab = merge(Some(&mesh.replicas[a]), mesh.replicas[b].clone()).unwrap().item;
                    let ba = merge(Some(&mesh.replicas[b]), mesh.replicas[a].clone()).unwrap().item;
                    prop_assert_eq!(&ab.current.sync, &ba.current.sync);
                    prop_assert_eq!(ab.current.payload, ba.current.payload);
                    prop_assert_eq!(conflict_set(&ab), conflict_set(&ba));
                }
            }
        }

        #[test]
        fn replicas_converge_and_no_version_is_lost(ops in prop::collection::vec(op(), 0..40)) {
            let mut mesh = Mesh::new();
            for o in &ops { mesh.apply(o); }
            mesh.settle();
            let first = &mesh.replicas[0];
            for r in &mesh.replicas[1..] {
                prop_assert_eq!(&r.current.sync, &first.current.sync);
                prop_assert_eq!(conflict_set(r), conflict_set(first));
            }
            // Every version ever produced is the winner, a conflict, or subsumed by one of them.
            let kept: Vec<&SyncMeta> = std::iter::once(&first.current.sync).chain(first.conflicts.iter().map(|c| &c.sync)).collect();
            for p in &mesh.produced {
                prop_assert!(kept.iter().any(|k| p.is_subsumed_by(k)), "lost version {:?}", p);
            }
        }

        #[test]
        fn produced_versions_keep_the_invariants(ops in prop::collection::vec(op(), 0..30)) {
            let mut mesh = Mesh::new();
            for o in &ops { mesh.apply(o); }
            for p in &mesh.produced {
                prop_assert_eq!(p.history[0].sequence, p.updates);
                for by in BY {
                    let seqs: Vec<u32> = p.history.iter().filter(|h| h.by.as_deref() == Some(by)).map(|h| h.sequence).collect();
                    prop_assert!(seqs.windows(2).all(|w| w[0] > w[1]), "sequence not strictly increasing for {}", by);
                }
            }
            for r in &mesh.replicas {
                prop_assert!(!r.current.sync.noconflicts);
                prop_assert!(r.validate().is_ok());
            }
        }
    }
}
