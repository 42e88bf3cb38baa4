//! The people half of the store (activities' identities, the contacts index, timelines,
//! search, companies, merges, views), one story on SQLite and PostgreSQL alike.

use feedmesh::domain::entry::{Entry, Text};
use feedmesh::domain::feedsync;
use feedmesh::domain::search::Query;
use feedmesh::domain::{CollectionName, Timestamp, UserName};
use feedmesh::store::{self, ActivityFilter, ActivityRow, ChangeKind, ContactRow, ItemWrite, MergeRecord, Page, Store};

use crate::common::{postgres_url, test_sealer};

struct Writer<'a> {
    store: &'a dyn Store,
    user_id: i64,
    collection_id: i64,
}

impl Writer<'_> {
    async fn write(&self, id: &str, at: i64, activity: ActivityRow) -> u64 {
        let entry = Entry {
            title: Text::plain(id),
            updated: Timestamp::from_unix(at),
            ..Entry::default()
        };
        let item = feedsync::create(id.into(), "x/y", Timestamp::from_unix(at), false, entry);
        let existing = self.store.item(self.collection_id, id).await.unwrap().map(|r| r.seq);
        self.store
            .write_item(ItemWrite {
                user_id: self.user_id,
                collection_id: self.collection_id,
                expected_seq: existing,
                item: &item,
                kind: ChangeKind::Create,
                endpoint_id: None,
                at: Timestamp::from_unix(at),
                live_token: None,
                activity: &activity,
            })
            .await
            .unwrap()
    }
}

fn act(object_type: &str, parties: &[(&str, &'static str)], text: &str) -> ActivityRow {
    ActivityRow {
        verb: "Create".into(),
        object_type: object_type.into(),
        parties: parties
            .iter()
            .map(|(i, r)| (i.to_string(), *r, "Name".to_string()))
            .collect(),
        text: text.into(),
        contact: None,
    }
}

fn contact(id: &str, identities: &[&str], tags: &[&str], companies: &[(&str, &str)]) -> ActivityRow {
    ActivityRow {
        verb: "Create".into(),
        object_type: "Person".into(),
        parties: Vec::new(),
        text: String::new(),
        contact: Some(ContactRow {
            contact_id: id.into(),
            removed: false,
            name: format!("Contact {id}"),
            org: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            identities: identities.iter().map(|t| t.to_string()).collect(),
            companies: companies.iter().map(|(s, n)| (s.to_string(), n.to_string())).collect(),
        }),
    }
}

async fn story(store: &dyn Store) {
    let alice = store.create_user(&UserName::parse("alice").unwrap()).await.unwrap();
    let bob = store.create_user(&UserName::parse("bob").unwrap()).await.unwrap();
    let col = |u: i64, n: &str| {
        let n = CollectionName::parse(n).unwrap();
        async move { store.create_collection(u, &n).await.unwrap().id }
    };
    let (a_contacts, a_notes, b_notes) = (
        col(alice.id, "Contacts").await,
        col(alice.id, "Notes").await,
        col(bob.id, "Notes").await,
    );
    let contacts = Writer {
        store,
        user_id: alice.id,
        collection_id: a_contacts,
    };
    let notes = Writer {
        store,
        user_id: alice.id,
        collection_id: a_notes,
    };
    let bobs = Writer {
        store,
        user_id: bob.id,
        collection_id: b_notes,
    };

    contacts
        .write(
            "c1",
            100,
            contact(
                "c1",
                &["mailto:ann@acme.example", "tel:+14155550100"],
                &["customer"],
                &[("acme", "Acme")],
            ),
        )
        .await;
    contacts
        .write(
            "c2",
            100,
            contact("c2", &["mailto:gus@acme.example"], &[], &[("acme", "Acme")]),
        )
        .await;
    let s1 = notes
        .write(
            "n1",
            1_000,
            act(
                "Message",
                &[("mailto:ann@acme.example", "actor")],
                "quote for next week",
            ),
        )
        .await;
    let s2 = notes
        .write(
            "n2",
            2_000,
            act("Call", &[("tel:+14155550100", "recipient")], "missed call"),
        )
        .await;
    let s3 = notes
        .write(
            "n3",
            3_000,
            act(
                "Message",
                &[
                    ("mailto:gus@acme.example", "actor"),
                    ("mailto:new@x.example", "recipient"),
                ],
                "invoice",
            ),
        )
        .await;
    notes
        .write(
            "n4",
            4_000,
            act("Note", &[("mailto:stranger@x.example", "actor")], "hello"),
        )
        .await;
    // The same identity in another user's mesh is not alice's.
    bobs.write(
        "b1",
        5_000,
        act("Message", &[("mailto:ann@acme.example", "actor")], "quote"),
    )
    .await;

    let seqs = |f: ActivityFilter| async move {
        store
            .activities(alice.id, &f, Page::Before(None), 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect::<Vec<_>>()
    };
    let ann = ActivityFilter {
        contact: Some("c1".into()),
        ..Default::default()
    };
    assert_eq!(seqs(ann.clone()).await, vec![s2, s1]);
    let acme = ActivityFilter {
        company: Some("acme".into()),
        ..Default::default()
    };
    assert_eq!(seqs(acme).await, vec![s3, s2, s1]);
    let tagged = ActivityFilter {
        tags: vec!["customer".into()],
        ..Default::default()
    };
    assert_eq!(seqs(tagged).await, vec![s2, s1]);
    let text = |q: &str| {
        let q = Query::parse(q).unwrap();
        ActivityFilter {
            text: Some((q.to_fts5(), q.to_tsquery())),
            ..Default::default()
        }
    };
    assert_eq!(seqs(text("quote")).await, vec![s1], "bob's quote is not alice's");
    assert_eq!(seqs(text("\"next week\"")).await, vec![s1]);
    assert_eq!(seqs(text("inv*")).await, vec![s3]);
    assert_eq!(seqs(text("call -quote")).await, vec![s2]);
    assert_eq!(
        seqs(ActivityFilter {
            kind: Some("Call".into()),
            ..Default::default()
        })
        .await,
        vec![s2]
    );
    assert_eq!(
        seqs(ActivityFilter {
            since: Some(2_000),
            until: Some(3_001),
            ..Default::default()
        })
        .await,
        vec![s3, s2]
    );
    assert_eq!(
        seqs(ActivityFilter {
            collection_id: Some(a_notes),
            ..ann.clone()
        })
        .await,
        vec![s2, s1]
    );
    // Pages: after a cursor, oldest first.
    let after: Vec<u64> = store
        .activities(alice.id, &ann, Page::After(s1), 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(after, vec![s2]);

    let links = store.links(alice.id, Some("c1"), None, &[s1, s2, s3]).await.unwrap();
    let got: Vec<(u64, &str, &str)> = links
        .iter()
        .map(|l| (l.seq, l.identity.as_str(), l.role.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (s1, "mailto:ann@acme.example", "actor"),
            (s2, "tel:+14155550100", "recipient")
        ]
    );

    let list = store.contacts(alice.id).await.unwrap();
    assert_eq!(list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["c1", "c2"]);
    assert_eq!(list[0].identities, vec!["mailto:ann@acme.example", "tel:+14155550100"]);
    assert_eq!(
        (list[0].tags.clone(), list[0].companies.clone()),
        (vec!["customer".to_string()], vec!["acme".to_string()])
    );
    assert!(store.contacts(bob.id).await.unwrap().is_empty());
    assert_eq!(
        store
            .contacts_with(alice.id, &["tel:+14155550100".into()])
            .await
            .unwrap(),
        vec!["c1"]
    );
    assert!(
        store
            .contacts_with(bob.id, &["tel:+14155550100".into()])
            .await
            .unwrap()
            .is_empty()
    );

    let s = store.suggestions(alice.id, 10).await.unwrap();
    let ids: Vec<&str> = s.iter().map(|x| x.identity.as_str()).collect();
    assert_eq!(ids, vec!["mailto:new@x.example", "mailto:stranger@x.example"]);
    assert_eq!(s[0].count, 1);

    let t = store.tally(alice.id, Some("c1"), None).await.unwrap();
    assert_eq!(t.last, Some(Timestamp::from_unix(2_000)));
    assert_eq!(t.by_type_month.iter().map(|(_, _, n)| n).sum::<u64>(), 2);
    let companies = store.companies(alice.id).await.unwrap();
    assert_eq!((companies[0].slug.as_str(), companies[0].people.len()), ("acme", 2));

    // An identity moves (a merge): the timeline follows it; removal leaves the index.
    contacts
        .write(
            "c1",
            100,
            contact(
                "c1",
                &["mailto:ann@acme.example", "tel:+14155550100", "mailto:gus@acme.example"],
                &[],
                &[],
            ),
        )
        .await;
    assert_eq!(seqs(ann.clone()).await, vec![s3, s2, s1]);
    let mut removed = contact("c2", &[], &[], &[]);
    removed.contact.as_mut().unwrap().removed = true;
    contacts.write("c2", 100, removed).await;
    assert_eq!(store.contacts(alice.id).await.unwrap().len(), 1);
    assert!(store.companies(alice.id).await.unwrap().is_empty());

    let m = MergeRecord {
        merge_id: "m1".into(),
        into_id: "c1".into(),
        other_id: "c2".into(),
        into_before: "A".into(),
        other_before: "B".into(),
        moved: String::new(),
        at: Timestamp::from_unix(9),
        undone: false,
    };
    store.record_merge(alice.id, &m).await.unwrap();
    assert_eq!(store.merge_record(alice.id, "m1").await.unwrap(), Some(m));
    assert!(store.merge_record(bob.id, "m1").await.unwrap().is_none());
    assert!(store.merge_undone(alice.id, "m1").await.unwrap());
    assert!(!store.merge_undone(alice.id, "m1").await.unwrap());

    store
        .put_view(alice.id, "customers", r#"{"tags":["customer"]}"#)
        .await
        .unwrap();
    store
        .put_view(alice.id, "customers", r#"{"tags":["vip"]}"#)
        .await
        .unwrap();
    assert_eq!(
        store.view(alice.id, "customers").await.unwrap().as_deref(),
        Some(r#"{"tags":["vip"]}"#)
    );
    assert!(store.view(bob.id, "customers").await.unwrap().is_none());
    assert_eq!(store.views(alice.id).await.unwrap().len(), 1);
    assert!(!store.delete_view(bob.id, "customers").await.unwrap());
    assert!(store.delete_view(alice.id, "customers").await.unwrap());
}

#[tokio::test]
async fn people_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("people.db").display());
    story(store::open(&url, test_sealer()).await.unwrap().as_ref()).await;
}

#[tokio::test]
async fn people_story_on_postgres() {
    let Some(url) = postgres_url().await else { return };
    story(store::open(&url, test_sealer()).await.unwrap().as_ref()).await;
}
