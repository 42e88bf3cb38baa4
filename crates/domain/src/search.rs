//! The search language: words (all must match), `"quoted phrases"`, `prefix*`, and `-word`
//! or `-"phrase"` to exclude. Words are what [`crate::activity::words`] makes of text, so a
//! query matches what the index holds. Compiled here to SQLite FTS5 and PostgreSQL tsquery,
//! which then find the same activities.

use crate::activity::words;

/// At most this many terms in one query.
pub const MAX_TERMS: usize = 32;
/// At most this many characters in one query.
pub const MAX_QUERY: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// One word, or several for a phrase (in order).
    pub words: Vec<String>,
    /// The last word is a prefix.
    pub prefix: bool,
    pub exclude: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<Term>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

impl Query {
    pub fn parse(q: &str) -> Result<Query, SearchError> {
        if q.chars().count() > MAX_QUERY {
            return Err(SearchError(format!("a search has at most {MAX_QUERY} characters")));
        }
        if q.chars().filter(|&c| c == '"').count() % 2 == 1 {
            return Err(SearchError("unbalanced quote: close every \" you open".into()));
        }
        let mut terms = Vec::new();
        let mut rest = q.trim();
        while !rest.is_empty() {
            let exclude = rest.starts_with('-');
            if exclude {
                rest = &rest[1..];
            }
            let (raw, quoted, after) = if let Some(r) = rest.strip_prefix('"') {
                let end = r.find('"').unwrap_or(r.len());
                (&r[..end], true, r.get(end + 1..).unwrap_or(""))
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], false, &rest[end..])
            };
            let (raw, prefix, after) = match after.strip_prefix('*') {
                Some(a) if quoted => (raw, true, a),
                _ if !quoted && raw.ends_with('*') => (&raw[..raw.len() - 1], true, after),
                _ => (raw, false, after),
            };
            let mut text = String::new();
            words(raw, &mut text, usize::MAX);
            let ws: Vec<String> = text.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
            if !ws.is_empty() {
                terms.push(Term {
                    words: ws,
                    prefix,
                    exclude,
                });
            } else if quoted {
                return Err(SearchError("an empty phrase (\"\") finds nothing".into()));
            }
            if terms.len() > MAX_TERMS {
                return Err(SearchError(format!("a search has at most {MAX_TERMS} terms")));
            }
            rest = after.trim_start();
        }
        if terms.is_empty() {
            return Err(SearchError("the search has no words".into()));
        }
        if terms.iter().all(|t| t.exclude) {
            return Err(SearchError(
                "a search needs a word to find, not only words to exclude (-word)".into(),
            ));
        }
        Ok(Query { terms })
    }

    /// Whether a text's words (as [`crate::activity::words`] makes them) match: the same
    /// answer FTS5 and tsquery give for the same words, for judging one new activity without
    /// asking the database.
    pub fn matches(&self, words: &[&str]) -> bool {
        let has = |t: &Term| {
            let n = t.words.len();
            if n == 0 || words.len() < n {
                return false;
            }
            (0..=words.len() - n).any(|start| {
                t.words.iter().enumerate().all(|(i, w)| {
                    let got = words[start + i];
                    if t.prefix && i + 1 == n {
                        got.starts_with(w.as_str())
                    } else {
                        got == w
                    }
                })
            })
        };
        self.terms.iter().all(|t| has(t) != t.exclude)
    }

    /// The query as an FTS5 MATCH expression (every word quoted: no FTS5 syntax gets through).
    pub fn to_fts5(&self) -> String {
        let one = |t: &Term| {
            let mut s = format!("\"{}\"", t.words.join(" "));
            if t.prefix {
                s.push_str(" *");
            }
            s
        };
        let pos: Vec<String> = self.terms.iter().filter(|t| !t.exclude).map(one).collect();
        let mut out = format!("({})", pos.join(" AND "));
        for t in self.terms.iter().filter(|t| t.exclude) {
            out.push_str(" NOT ");
            out.push_str(&one(t));
        }
        out
    }

    /// The query as a PostgreSQL tsquery (for `to_tsquery('simple', …)`).
    pub fn to_tsquery(&self) -> String {
        let one = |t: &Term| {
            let n = t.words.len();
            let ws: Vec<String> = t
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if t.prefix && i + 1 == n {
                        format!("'{w}':*")
                    } else {
                        format!("'{w}'")
                    }
                })
                .collect();
            let s = if n > 1 {
                format!("({})", ws.join(" <-> "))
            } else {
                ws.join("")
            };
            if t.exclude { format!("!{s}") } else { s }
        };
        self.terms.iter().map(one).collect::<Vec<_>>().join(" & ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_prefixes_and_exclusions() {
        let q = Query::parse(r#"Quote "next  week" inv* -spam"#).unwrap();
        assert_eq!(q.to_fts5(), r#"("quote" AND "next week" AND "inv" *) NOT "spam""#);
        assert_eq!(q.to_tsquery(), "'quote' & ('next' <-> 'week') & 'inv':* & !'spam'");
        // Punctuation inside a word makes a phrase of its parts, as the index does.
        let q = Query::parse("rock'n'roll").unwrap();
        assert_eq!(q.terms[0].words, vec!["rock", "n", "roll"]);
        // FTS5 operators are words here, quoted.
        assert_eq!(Query::parse("NEAR OR").unwrap().to_fts5(), r#"("near" AND "or")"#);
    }

    #[test]
    fn a_query_judges_words_as_the_indexes_do() {
        let text = "the quarterly invoice for next week";
        let words: Vec<&str> = text.split(' ').collect();
        let yes = |q: &str| Query::parse(q).unwrap().matches(&words);
        assert!(yes("invoice") && yes("INVOICE,") && yes("inv*") && yes("\"next week\"") && yes("\"for ne\"*"));
        assert!(yes("invoice -spam") && yes("quarterly week"));
        assert!(!yes("invoices") && !yes("\"week next\"") && !yes("invoice -week") && !yes("nvoice*"));
        assert!(!Query::parse("x").unwrap().matches(&[]));
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        assert!(Query::parse(r#"say "hello"#).unwrap_err().0.contains("unbalanced"));
        assert!(Query::parse("   ").unwrap_err().0.contains("no words"));
        assert!(Query::parse("-spam").unwrap_err().0.contains("not only"));
        let many = vec!["w"; 10_000].join(" ");
        assert!(Query::parse(&many).unwrap_err().0.contains("at most"));
        let terms = (0..40).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert!(Query::parse(&terms).unwrap_err().0.contains("terms"));
    }
}
