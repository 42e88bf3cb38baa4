//! UTC timestamps in whole seconds, as FeedSync 1.0.1 requires (A3); RFC 3339 in and out.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// Seconds since the Unix epoch, UTC. Parsing accepts any RFC 3339 offset and fraction
/// and truncates to whole seconds; formatting always writes `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp())
    }
    pub fn unix(self) -> i64 {
        self.0
    }
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| Timestamp(d.timestamp()))
    }
    pub fn datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0, 0).unwrap_or_default()
    }
    pub fn rfc3339(self) -> String {
        self.datetime().to_rfc3339_opts(SecondsFormat::Secs, true)
    }
    /// RFC 822 date as RSS 2.0 wants it.
    pub fn rfc2822(self) -> String {
        self.datetime().format("%a, %d %b %Y %H:%M:%S +0000").to_string()
    }
    /// IMF-fixdate for HTTP headers (RFC 9110).
    pub fn http_date(self) -> String {
        self.datetime().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64::deserialize(d).map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions_to_whole_utc_seconds() {
        let a = Timestamp::parse_rfc3339("2008-05-01T12:05:00.987+02:00").unwrap();
        assert_eq!(a.rfc3339(), "2008-05-01T10:05:00Z");
        assert_eq!(Timestamp::parse_rfc3339("2008-05-01T10:05:00Z"), Some(a));
        assert_eq!(Timestamp::parse_rfc3339("11-05-2007T19:33:27Z"), None);
    }

    #[test]
    fn formats_for_rss_and_http() {
        let t = Timestamp::parse_rfc3339("2008-05-01T10:05:00Z").unwrap();
        assert_eq!(t.rfc2822(), "Thu, 01 May 2008 10:05:00 +0000");
        assert_eq!(t.http_date(), "Thu, 01 May 2008 10:05:00 GMT");
    }
}
