//! The compliance test every connector runs against a document of its service: the rules of
//! the contract that the hub relies on and cannot check itself. The hub's own integration
//! tests drive connectors over real HTTP; this kit checks a connector alone, with
//! [`FixtureHttp`] answering as a server with ETags would.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::{Conditions, Connector, ConnectorError, Cursor, Fetched, Http};

/// Serves one body for every URL, with a strong ETag, and answers 304 to a matching
/// `If-None-Match`: what a well-behaved feed server does. Counts the requests it got.
pub struct FixtureHttp {
    pub body: Vec<u8>,
    pub content_type: String,
    pub etag: String,
    /// `Link` header discovery to report.
    pub hubs: Vec<String>,
    requests: Mutex<u32>,
}

impl FixtureHttp {
    pub fn new(body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        let body = body.into();
        FixtureHttp {
            etag: format!("\"{}-{}\"", body.len(), body.iter().map(|b| u32::from(*b)).sum::<u32>()),
            body,
            content_type: content_type.to_string(),
            hubs: Vec::new(),
            requests: Mutex::new(0),
        }
    }

    pub fn requests(&self) -> u32 {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Http for FixtureHttp {
    async fn get(&self, url: &str, conditions: &Conditions, max_bytes: usize) -> Result<Fetched, ConnectorError> {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if conditions.etag.as_deref() == Some(self.etag.as_str()) {
            return Ok(Fetched {
                url: url.to_string(),
                not_modified: true,
                etag: Some(self.etag.clone()),
                hubs: self.hubs.clone(),
                ..Fetched::default()
            });
        }
        if self.body.len() > max_bytes {
            return Err(ConnectorError::Malformed(format!("larger than {max_bytes} bytes")));
        }
        Ok(Fetched {
            url: url.to_string(),
            not_modified: false,
            body: self.body.clone(),
            content_type: Some(self.content_type.clone()),
            etag: Some(self.etag.clone()),
            last_modified: None,
            hubs: self.hubs.clone(),
            self_url: None,
            max_age: None,
        })
    }
}

/// Checks the contract on `connector` pulling from `http` (which must hold a document with at
/// least one item): ids are unique and stable across pulls, a pull from the cursor it gave
/// back is not-modified with no items, a pushed copy of the document gives the same items,
/// and bytes that are no document are refused as malformed, never a panic.
pub async fn check_pull(connector: &dyn Connector, http: &FixtureHttp) {
    let first = connector
        .pull(http, &Cursor::default())
        .await
        .expect("a first pull works");
    assert!(!first.not_modified, "a first pull has no cursor to be unchanged from");
    assert!(!first.items.is_empty(), "the fixture document has items");
    let ids: Vec<&str> = first.items.iter().map(|p| p.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "item ids repeat within one pull: {ids:?}");
    assert!(ids.iter().all(|id| !id.is_empty()), "an item has no id");

    let again = connector
        .pull(http, &Cursor::default())
        .await
        .expect("a second pull works");
    assert_eq!(
        again.items, first.items,
        "pulling the same document again gave other items"
    );

    let unchanged = connector
        .pull(http, &first.cursor)
        .await
        .expect("a conditional pull works");
    assert!(
        unchanged.not_modified && unchanged.items.is_empty(),
        "a pull from the cursor just given found changes in an unchanged source"
    );

    let pushed = connector
        .receive(&http.body)
        .expect("a pushed copy of the document is read");
    assert_eq!(
        pushed.items, first.items,
        "a pushed document gave other items than a pull"
    );

    for junk in [
        &b""[..],
        b"\xff\xfe\x00garbage",
        b"<html><body>not this</body></html>",
        b"{\"a\":",
    ] {
        match connector.receive(junk) {
            Err(ConnectorError::Malformed(_)) => {}
            other => panic!("{junk:?} was not refused as malformed: {other:?}"),
        }
    }
}
