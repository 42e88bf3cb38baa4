//! Property tests: every parser and normaliser that input from the network reaches takes
//! arbitrary strings and bytes without panicking (a panic is a crash under `panic = "abort"`,
//! and a log full of backtraces otherwise). Each input either parses or is refused.

use proptest::prelude::*;

use crate::domain::time::Timestamp;

/// URL-ish text: escapes, multi-byte characters and the delimiters parsers split on.
fn urlish() -> impl Strategy<Value = String> {
    "[%a-fA-F0-9é€😀\u{202E}/?&=:.#@\\[\\] +-]{0,48}"
}

/// XML-ish bytes: markup characters, entities and sx/atom names in any order.
fn xmlish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"<entry xmlns=\"http://www.w3.org/2005/Atom\">".to_vec()),
            Just(b"<feed xmlns=\"http://www.w3.org/2005/Atom\">".to_vec()),
            Just(b"<sx:sync xmlns:sx=\"http://feedsync.org/2007/feedsync\" id=\"a\" updates=\"1\">".to_vec()),
            Just(b"<sx:history sequence=\"1\" by=\"x\"/>".to_vec()),
            Just(b"<title>".to_vec()),
            Just(b"</title>".to_vec()),
            Just(b"</entry>".to_vec()),
            Just(b"&amp;&#x1F600;&#0;&nope;".to_vec()),
            Just(b"<![CDATA[x]]>".to_vec()),
            Just(b"<fm:file xmlns:fm=\"urn:feedmesh\" sha256=\"00\" size=\"-1\" type=\"\"/>".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hub_requests_never_panic(s in urlish(), t in any::<String>(), lease in any::<String>()) {
        let _ = crate::websub::protocol::normalize_url(&s);
        let _ = crate::websub::protocol::normalize_url(&t);
        let settings = crate::config::HubSettings::default();
        for mode in ["subscribe", "unsubscribe", "publish"] {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("hub.mode", mode).append_pair("hub.topic", &s).append_pair("hub.callback", &t)
                .append_pair("hub.url", &t).append_pair("hub.lease_seconds", &lease).append_pair("hub.secret", &s);
            let form = crate::websub::protocol::Form::parse(q.finish().as_bytes());
            let _ = crate::websub::protocol::parse_request(&form, false, &settings);
        }
        let _ = crate::websub::protocol::Form::parse(s.as_bytes());
        let _ = crate::websub::protocol::signature_valid(Some(&s), "secret", t.as_bytes());
    }

    #[test]
    fn outbound_urls_never_panic(s in urlish(), t in any::<String>()) {
        let _ = crate::net::check_url(&s, false);
        let _ = crate::net::check_url(&format!("http://{s}"), false);
        let _ = crate::net::check_url(&t, true);
    }

    #[test]
    fn atom_documents_never_panic(body in xmlish(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let now = Timestamp::from_unix(1_700_000_000);
        for b in [&body, &raw] {
            let _ = crate::formats::atom_in::parse_document(b, now);
            let _ = crate::formats::atom_in::parse_entry_document(b, now);
            let _ = crate::formats::atom_in::parse_feed_document(b, now);
            let _ = feedmesh_connector_feed::parse_feed(b);
        }
    }

    #[test]
    fn names_dates_and_types_never_panic(s in any::<String>(), u in urlish()) {
        for v in [&s, &u] {
            let _ = crate::domain::UserName::parse(v);
            let _ = crate::domain::DeviceName::parse(v);
            let _ = crate::domain::CollectionName::parse(v);
            let _ = crate::domain::feedsync::validate_id(v);
            let _ = crate::domain::feedsync::validate_by(v);
            let _ = Timestamp::parse_rfc3339(v);
            let _ = crate::domain::entry::parse_media_type(v);
            let _ = crate::usecases::keys::feed_key_path(v);
            let _ = crate::agent::paths::resolve(std::path::Path::new("/nonexistent-root"), v);
        }
    }

    #[test]
    fn link_headers_never_panic(s in "[<>;=,\" a-z:/.%é]{0,60}") {
        let mut h = axum::http::HeaderMap::new();
        if let Ok(v) = axum::http::HeaderValue::from_str(&s) {
            h.insert(axum::http::header::LINK, v);
        }
        let _ = crate::fetch::discover_in_headers(&h);
    }
}
