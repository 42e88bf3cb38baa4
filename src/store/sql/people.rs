//! People: the identities each activity names and the contacts index, written with item
//! writes; timelines, companies, suggestions and search over them; merges and saved views.
//! `SqlStore`'s implementation of `PeopleStore`. Every query is keyed by one user.

use super::*;

use crate::store::{
    ActivityFilter, ActivityRow, ChangeRecord, Company, ContactRow, ContactSummary, Link, MergeRecord, Page,
    PeopleStore, Suggestion, Tally,
};

/// A query built piece by piece with `$N` parameters, which both SQLite and PostgreSQL read
/// (sqlx's `QueryBuilder` for `Any` writes `?`, which PostgreSQL does not).
#[derive(Default)]
pub(super) struct Sql {
    text: String,
    args: Vec<Arg>,
}

pub(super) enum Arg {
    I64(i64),
    Str(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Str(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Str(v.to_string())
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::I64(v) => v.to_sql(),
            Arg::Str(v) => v.to_sql(),
        }
    }
}

impl Sql {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }
    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }
    pub(super) fn push_bind(&mut self, v: impl Into<Arg>) -> &mut Self {
        self.args.push(v.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }
    /// `$a, $b, …` for each value.
    pub(super) fn push_list<T: Into<Arg>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.push_bind(v);
        }
        self
    }
    /// SQLite's group-commit thread runs the same text and arguments through rusqlite.
    pub(super) fn run(&self, db: &rusqlite::Connection) -> rusqlite::Result<usize> {
        db.prepare_cached(&self.text)?
            .execute(rusqlite::params_from_iter(self.args.iter()))
    }
    pub(super) fn build(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text.as_str()));
        for a in &self.args {
            q = match a {
                Arg::I64(v) => q.bind(*v),
                Arg::Str(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// SQLite's search index names an activity by one integer: the user's id above bit 40, the
/// sequence number below (a user's activities are one rowid range).
const FTS_SHIFT: u32 = 40;

pub(super) fn fts_rowid(user_id: i64, seq: i64) -> i64 {
    (user_id << FTS_SHIFT) + seq
}

/// Multi-row inserts stay under SQLite's 32,766 bound parameters.
const ROWS_PER_INSERT: usize = 4000;

/// Indexes the activities of committed changes (user, seq, activity), in the write's
/// transaction: the identities they name, their words, and, for contacts, the contact index.
pub(super) async fn index_activities(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    done: &[(i64, i64, &ActivityRow)],
) -> Result<()> {
    let people: Vec<(i64, i64, &(String, &'static str, String))> = done
        .iter()
        .flat_map(|(u, s, a)| a.parties.iter().map(move |p| (*u, *s, p)))
        .collect();
    for chunk in people.chunks(ROWS_PER_INSERT) {
        let mut q = Sql::new("INSERT INTO activity_people (user_id, identity, seq, role, name) VALUES ");
        for (i, (u, s, (identity, role, name))) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_list([
                Arg::I64(*u),
                Arg::Str(identity.clone()),
                Arg::I64(*s),
                Arg::from(*role),
                Arg::Str(name.clone()),
            ]);
            q.push(")");
        }
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *conn).await?;
    }
    let texts: Vec<&(i64, i64, &ActivityRow)> = done.iter().filter(|(_, _, a)| !a.text.is_empty()).collect();
    for chunk in texts.chunks(ROWS_PER_INSERT) {
        let mut q = match backend {
            Backend::Sqlite => Sql::new("INSERT INTO activity_text (rowid, body) VALUES "),
            Backend::Postgres => Sql::new("INSERT INTO activity_text (user_id, seq, body) VALUES "),
        };
        for (i, (u, s, a)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            match backend {
                Backend::Sqlite => q.push_list([Arg::I64(fts_rowid(*u, *s)), Arg::Str(a.text.clone())]),
                Backend::Postgres => q.push_list([Arg::I64(*u), Arg::I64(*s), Arg::Str(a.text.clone())]),
            };
            q.push(")");
        }
        if backend == Backend::Postgres {
            q.push(" ON CONFLICT DO NOTHING");
        }
        q.build().execute(&mut *conn).await?;
    }
    for (user_id, seq, a) in done {
        let Some(c) = &a.contact else { continue };
        for q in contact_statements(*user_id, *seq, c) {
            q.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// The statements that bring the contacts index to one version of a contact's item (shared
/// by the sqlx writes and SQLite's group-commit thread).
pub(super) fn contact_statements(user_id: i64, seq: i64, c: &ContactRow) -> Vec<Sql> {
    let mut out: Vec<Sql> = ["contacts", "contact_identities", "contact_tags", "contact_companies"]
        .iter()
        .map(|table| {
            let mut q = Sql::new(format!("DELETE FROM {table} WHERE user_id = "));
            q.push_bind(user_id)
                .push(" AND contact_id = ")
                .push_bind(c.contact_id.as_str());
            q
        })
        .collect();
    if c.removed {
        return out;
    }
    let mut q = Sql::new("INSERT INTO contacts (user_id, contact_id, name, org, tags, seq) VALUES (");
    q.push_list([
        Arg::I64(user_id),
        Arg::from(c.contact_id.as_str()),
        Arg::from(c.name.as_str()),
        Arg::from(c.org.as_str()),
        Arg::Str(c.tags.join("\n")),
        Arg::I64(seq),
    ])
    .push(")");
    out.push(q);
    let rows = c
        .identities
        .iter()
        .map(|i| ("contact_identities (user_id, identity, contact_id", i.as_str(), None))
        .chain(
            c.tags
                .iter()
                .map(|t| ("contact_tags (user_id, tag, contact_id", t.as_str(), None)),
        )
        .chain(c.companies.iter().map(|(s, n)| {
            (
                "contact_companies (user_id, slug, contact_id, name",
                s.as_str(),
                Some(n.as_str()),
            )
        }));
    for (table, value, name) in rows {
        let mut q = Sql::new(format!("INSERT INTO {table}) VALUES ("));
        q.push_list([Arg::I64(user_id), Arg::from(value), Arg::from(c.contact_id.as_str())]);
        if let Some(n) = name {
            q.push(", ").push_bind(n);
        }
        q.push(") ON CONFLICT DO NOTHING");
        out.push(q);
    }
    out
}

pub(super) const CHANGE_COLUMNS: &str = "c.seq, col.name AS collection, c.sync_id, e.name AS endpoint, c.kind, c.at, c.version, \
     c.verb, c.object_type";

/// The seqs of activities that name an identity of the contact, company or tagged contacts.
/// The contacts a filter names (a contact, a company's people, tagged contacts) as SQL that
/// both planners answer from the (user, …) indexes, whatever their statistics.
fn push_contacts(q: &mut Sql, user_id: i64, contact: Option<&str>, company: Option<&str>, tags: &[String]) {
    if let Some(c) = contact {
        q.push_bind(c);
    } else if let Some(slug) = company {
        q.push("SELECT contact_id FROM contact_companies WHERE user_id = ")
            .push_bind(user_id);
        q.push(" AND slug = ").push_bind(slug);
    } else {
        q.push("SELECT contact_id FROM contact_tags WHERE user_id = ")
            .push_bind(user_id);
        q.push(" AND tag IN (")
            .push_list(tags.iter().map(String::as_str))
            .push(")");
    }
}

/// Activities naming an identity of the contacts: identities first, then their activities,
/// so that the (user, identity, seq) key is walked from the few identities.
fn push_people(q: &mut Sql, user_id: i64, contact: Option<&str>, company: Option<&str>, tags: &[String]) {
    q.push(" AND c.seq IN (SELECT ap.seq FROM activity_people ap WHERE ap.user_id = ");
    q.push_bind(user_id);
    q.push(" AND ap.identity IN (SELECT identity FROM contact_identities WHERE user_id = ");
    q.push_bind(user_id);
    q.push(" AND contact_id IN (");
    push_contacts(q, user_id, contact, company, tags);
    q.push(")))");
}

#[async_trait]
impl PeopleStore for SqlStore {
    async fn activities(&self, user_id: i64, f: &ActivityFilter, page: Page, limit: u32) -> Result<Vec<ChangeRecord>> {
        if let Some(found) = self.people_page(user_id, f, page, limit).await? {
            return Ok(found);
        }
        let mut q = Sql::new(format!(
            "SELECT {CHANGE_COLUMNS} FROM changes c JOIN collections col ON col.id = c.collection_id \
             LEFT JOIN endpoints e ON e.id = c.endpoint_id WHERE c.user_id = "
        ));
        q.push_bind(user_id);
        if let Some(id) = f.endpoint_id {
            q.push(" AND c.endpoint_id = ").push_bind(id);
        }
        if let Some(id) = f.collection_id {
            q.push(" AND c.collection_id = ").push_bind(id);
        }
        if let Some(kind) = &f.kind {
            q.push(" AND (c.object_type = ").push_bind(kind.as_str());
            q.push(" OR c.verb = ").push_bind(kind.as_str()).push(")");
        }
        if let Some(t) = f.since {
            q.push(" AND c.at >= ").push_bind(t);
        }
        if let Some(t) = f.until {
            q.push(" AND c.at < ").push_bind(t);
        }
        if let Some(contact) = &f.contact {
            push_people(&mut q, user_id, Some(contact), None, &[]);
        }
        if let Some(company) = &f.company {
            push_people(&mut q, user_id, None, Some(company), &[]);
        }
        if !f.tags.is_empty() {
            push_people(&mut q, user_id, None, None, &f.tags);
        }
        if let Some((fts5, tsquery)) = &f.text {
            match self.backend {
                Backend::Sqlite => {
                    let base = fts_rowid(user_id, 0);
                    q.push(" AND c.seq IN (SELECT rowid - ").push_bind(base);
                    q.push(" FROM activity_text WHERE activity_text MATCH ")
                        .push_bind(fts5.as_str());
                    q.push(" AND rowid > ").push_bind(base);
                    q.push(" AND rowid < ").push_bind(fts_rowid(user_id + 1, 0)).push(")");
                }
                Backend::Postgres => {
                    q.push(" AND c.seq IN (SELECT seq FROM activity_text WHERE user_id = ");
                    q.push_bind(user_id);
                    q.push(" AND doc @@ to_tsquery('simple', ")
                        .push_bind(tsquery.as_str())
                        .push("))");
                }
            }
        }
        match page {
            Page::Before(before) => {
                q.push(" AND c.seq < ")
                    .push_bind(before.map(sql_seq).unwrap_or(i64::MAX));
                q.push(" ORDER BY c.seq DESC LIMIT ");
            }
            Page::After(after) => {
                q.push(" AND c.seq > ").push_bind(sql_seq(after));
                q.push(" ORDER BY c.seq LIMIT ");
            }
        }
        q.push_bind(i64::from(limit));
        self.fetch_changes(q, matches!(page, Page::Before(_)))
            .await
            .map_err(|e| match e {
                StoreError::Database(d) => search_error(d),
                other => other,
            })
    }

    async fn links(
        &self,
        user_id: i64,
        contact: Option<&str>,
        company: Option<&str>,
        seqs: &[u64],
    ) -> Result<Vec<Link>> {
        if seqs.is_empty() || (contact.is_none() && company.is_none()) {
            return Ok(Vec::new());
        }
        let owners = self.identities_of(user_id, contact, company, &[]).await?;
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        let mut identities: Vec<&str> = owners.iter().map(|(i, _)| i.as_str()).collect();
        identities.dedup();
        // The activities' rows by their key: (user, identity, seq).
        let mut q = Sql::new("SELECT seq, identity, role FROM activity_people WHERE user_id = ");
        q.push_bind(user_id)
            .push(" AND identity IN (")
            .push_list(identities)
            .push(")");
        q.push(" AND seq IN (")
            .push_list(seqs.iter().map(|s| sql_seq(*s)))
            .push(")");
        let rows = q.build().fetch_all(&self.readers).await?;
        let mut out = Vec::new();
        for r in &rows {
            let identity: String = r.try_get("identity")?;
            let (s, role): (i64, String) = (r.try_get("seq")?, r.try_get("role")?);
            for (_, contact_id) in owners.iter().filter(|(i, _)| *i == identity) {
                out.push(Link {
                    seq: seq(s),
                    identity: identity.clone(),
                    role: role.clone(),
                    contact_id: contact_id.clone(),
                });
            }
        }
        out.sort_by(|a, b| (a.seq, &a.role, &a.identity).cmp(&(b.seq, &b.role, &b.identity)));
        Ok(out)
    }

    async fn contacts(&self, user_id: i64) -> Result<Vec<ContactSummary>> {
        self.contact_rows(user_id, None).await
    }

    async fn contact_names(
        &self,
        user_id: i64,
        like: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<(String, String, String)>> {
        // Each with its first identity (as `contacts` lists them), to tell namesakes apart.
        let mut q = Sql::new(
            "SELECT contact_id, name, org, (SELECT MIN(ci.identity) FROM contact_identities ci \
             WHERE ci.user_id = contacts.user_id AND ci.contact_id = contacts.contact_id \
             AND ci.identity NOT LIKE 'urn:feedmesh:contact:%') AS first_identity \
             FROM contacts WHERE user_id = ",
        );
        q.push_bind(user_id);
        if let Some((name, org)) = like {
            // A prefix of the name, its LIKE wildcards escaped.
            let prefix: String = name
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            q.push(" AND (name LIKE ")
                .push_bind(format!("{prefix}%"))
                .push(" ESCAPE '\\'");
            if !org.is_empty() {
                q.push(" OR org = ").push_bind(org);
            }
            q.push(")");
        }
        q.push(" ORDER BY name, contact_id LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.readers).await?;
        rows.iter()
            .map(|r| {
                let first: Option<String> = r.try_get("first_identity")?;
                let org: String = r.try_get("org")?;
                Ok((r.try_get("contact_id")?, r.try_get("name")?, first.unwrap_or(org)))
            })
            .collect()
    }

    async fn contact(&self, user_id: i64, contact_id: &str) -> Result<Option<ContactSummary>> {
        Ok(self.contact_rows(user_id, Some(contact_id)).await?.pop())
    }

    async fn identities_of(
        &self,
        user_id: i64,
        contact: Option<&str>,
        company: Option<&str>,
        tags: &[String],
    ) -> Result<Vec<(String, String)>> {
        let mut q = Sql::new("SELECT identity, contact_id FROM contact_identities WHERE user_id = ");
        q.push_bind(user_id).push(" AND contact_id IN (");
        push_contacts(&mut q, user_id, contact, company, tags);
        q.push(")");
        let rows = q.build().fetch_all(&self.readers).await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    async fn contacts_with(&self, user_id: i64, identities: &[String]) -> Result<Vec<String>> {
        if identities.is_empty() {
            return Ok(Vec::new());
        }
        // No DISTINCT or ORDER BY in SQL: either would tempt a planner to walk every identity
        // of the user in contact order instead of looking these few up.
        let mut q = Sql::new("SELECT contact_id FROM contact_identities WHERE user_id = ");
        q.push_bind(user_id).push(" AND identity IN (");
        q.push_list(identities.iter().map(String::as_str));
        q.push(")");
        let rows = q.build().fetch_all(&self.readers).await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn suggestions(&self, user_id: i64, limit: u32) -> Result<Vec<Suggestion>> {
        let rows = sqlx::query(
            "SELECT ap.identity, MAX(ap.name) AS name, COUNT(*) AS n, MAX(ap.seq) AS last_seq FROM activity_people ap \
             WHERE ap.user_id = $1 AND ap.identity NOT LIKE 'urn:feedmesh:%' AND NOT EXISTS (SELECT 1 FROM contact_identities ci \
             WHERE ci.user_id = ap.user_id AND ci.identity = ap.identity) \
             GROUP BY ap.identity ORDER BY n DESC, ap.identity LIMIT $2",
        )
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let last_seq: i64 = r.try_get("last_seq")?;
            let at: Option<i64> = sqlx::query_scalar("SELECT at FROM changes WHERE user_id = $1 AND seq = $2")
                .bind(user_id)
                .bind(last_seq)
                .fetch_optional(&self.readers)
                .await?;
            out.push(Suggestion {
                identity: r.try_get("identity")?,
                name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                count: seq(r.try_get("n")?),
                last_seen: Timestamp::from_unix(at.unwrap_or(0)).rfc3339(),
            });
        }
        Ok(out)
    }

    async fn tally(&self, user_id: i64, contact: Option<&str>, company: Option<&str>) -> Result<Tally> {
        // The same selection as the timeline, counted instead of paged.
        let mut q = Sql::new("SELECT c.object_type, c.at FROM changes c WHERE c.user_id = ");
        q.push_bind(user_id);
        if contact.is_some() || company.is_some() {
            push_people(&mut q, user_id, contact, company, &[]);
        }
        let rows = q.build().fetch_all(&self.readers).await?;
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        let mut last = None;
        for r in &rows {
            let t: String = r.try_get("object_type")?;
            let at = Timestamp::from_unix(r.try_get("at")?);
            let month = at.rfc3339().get(..7).unwrap_or("").to_string();
            *counts.entry((t, month)).or_default() += 1;
            last = last.max(Some(at));
        }
        Ok(Tally {
            by_type_month: counts.into_iter().map(|((t, m), n)| (t, m, n)).collect(),
            last,
        })
    }

    async fn companies(&self, user_id: i64) -> Result<Vec<Company>> {
        let rows = sqlx::query(
            "SELECT slug, name, contact_id FROM contact_companies WHERE user_id = $1 ORDER BY slug, contact_id",
        )
        .bind(user_id)
        .fetch_all(&self.readers)
        .await?;
        let mut out: Vec<Company> = Vec::new();
        for r in &rows {
            let slug: String = r.try_get("slug")?;
            let contact: String = r.try_get("contact_id")?;
            match out.last_mut() {
                Some(c) if c.slug == slug => c.people.push(contact),
                _ => out.push(Company {
                    slug,
                    name: r.try_get("name")?,
                    people: vec![contact],
                }),
            }
        }
        Ok(out)
    }

    async fn record_merge(&self, user_id: i64, m: &MergeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO contact_merges (user_id, merge_id, into_id, other_id, into_before, other_before, moved, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user_id)
        .bind(&m.merge_id)
        .bind(&m.into_id)
        .bind(&m.other_id)
        .bind(&m.into_before)
        .bind(&m.other_before)
        .bind(&m.moved)
        .bind(m.at.unix())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn merge_record(&self, user_id: i64, merge_id: &str) -> Result<Option<MergeRecord>> {
        let row = sqlx::query(
            "SELECT merge_id, into_id, other_id, into_before, other_before, moved, at, undone_at FROM contact_merges \
             WHERE user_id = $1 AND merge_id = $2",
        )
        .bind(user_id)
        .bind(merge_id)
        .fetch_optional(&self.readers)
        .await?;
        row.map(|r| {
            Ok(MergeRecord {
                merge_id: r.try_get("merge_id")?,
                into_id: r.try_get("into_id")?,
                other_id: r.try_get("other_id")?,
                into_before: r.try_get("into_before")?,
                other_before: r.try_get("other_before")?,
                moved: r.try_get("moved")?,
                at: Timestamp::from_unix(r.try_get("at")?),
                undone: r.try_get::<Option<i64>, _>("undone_at")?.is_some(),
            })
        })
        .transpose()
    }

    async fn merge_undone(&self, user_id: i64, merge_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE contact_merges SET undone_at = $1 WHERE user_id = $2 AND merge_id = $3 AND undone_at IS NULL",
        )
        .bind(Timestamp::now().unix())
        .bind(user_id)
        .bind(merge_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_view(&self, user_id: i64, name: &str, query: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO views (user_id, name, query, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, name) DO UPDATE SET query = excluded.query",
        )
        .bind(user_id)
        .bind(name)
        .bind(query)
        .bind(Timestamp::now().unix())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn views(&self, user_id: i64) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT name, query FROM views WHERE user_id = $1 ORDER BY name")
                .bind(user_id)
                .fetch_all(&self.readers)
                .await?,
        )
    }

    async fn view(&self, user_id: i64, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT query FROM views WHERE user_id = $1 AND name = $2")
                .bind(user_id)
                .bind(name)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn backfill_due(&self) -> Result<Option<(i64, u64)>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT user_id, upto FROM activity_backfill WHERE upto > 0 ORDER BY user_id LIMIT 1")
                .fetch_optional(&self.readers)
                .await?;
        Ok(row.map(|(u, s)| (u, seq(s))))
    }

    async fn backfill(&self, user_id: i64, rows: &[(u64, ActivityRow)], upto: u64) -> Result<()> {
        use sqlx::Connection;
        let mut conn = self.writer.acquire().await?;
        let mut tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        for (s, a) in rows {
            sqlx::query("UPDATE changes SET verb = $1, object_type = $2 WHERE user_id = $3 AND seq = $4")
                .bind(&a.verb)
                .bind(&a.object_type)
                .bind(user_id)
                .bind(sql_seq(*s))
                .execute(&mut *tx)
                .await?;
        }
        let done: Vec<(i64, i64, &ActivityRow)> = rows.iter().map(|(s, a)| (user_id, sql_seq(*s), a)).collect();
        index_activities(&mut tx, self.backend, &done).await?;
        if upto == 0 {
            sqlx::query("DELETE FROM activity_backfill WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE activity_backfill SET upto = $1 WHERE user_id = $2")
                .bind(sql_seq(upto))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_view(&self, user_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM views WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl SqlStore {
    /// Runs a query of `CHANGE_COLUMNS`. On SQLite the rows come back packed as one JSON
    /// array: sqlx hands SQLite rows to the runtime one by one, each a wake-up of another
    /// thread, which cost more than the query for a page of fifty.
    pub(super) async fn fetch_changes(
        &self,
        q: Sql,
        newest_first: bool,
    ) -> std::result::Result<Vec<ChangeRecord>, StoreError> {
        if self.backend == Backend::Postgres {
            let rows = q.build().fetch_all(&self.readers).await?;
            return rows.iter().map(change_row).collect();
        }
        let packed = Sql {
            text: format!(
                "SELECT json_group_array(json_array(seq, collection, sync_id, endpoint, kind, at, version, verb, \
                 object_type)) FROM ({})",
                q.text
            ),
            args: q.args,
        };
        let json: Option<String> = packed.build().fetch_one(&self.readers).await?.try_get(0)?;
        type Packed = (i64, String, String, Option<String>, String, i64, String, String, String);
        let rows: Vec<Packed> = serde_json::from_str(json.as_deref().unwrap_or("[]"))
            .map_err(|e| StoreError::Corrupt(format!("packed changes: {e}")))?;
        let mut out = rows
            .into_iter()
            .map(
                |(s, collection, sync_id, endpoint, kind, at, version, verb, object_type)| {
                    Ok(ChangeRecord {
                        seq: seq(s),
                        collection,
                        sync_id,
                        endpoint,
                        kind: crate::store::ChangeKind::parse(&kind)
                            .ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
                        at: Timestamp::from_unix(at),
                        version: serde_json::from_str(&version)
                            .map_err(|e| StoreError::Corrupt(format!("change version: {e}")))?,
                        verb,
                        object_type,
                    })
                },
            )
            .collect::<Result<Vec<_>>>()?;
        // The aggregate keeps the subquery's order in practice; the page's order is ours.
        if newest_first {
            out.sort_by_key(|c| std::cmp::Reverse(c.seq));
        } else {
            out.sort_by_key(|c| c.seq);
        }
        Ok(out)
    }
}

/// A timeline's people may have at most this many identities for the per-identity path.
const MAX_MERGED_IDENTITIES: usize = 400;

impl SqlStore {
    /// A timeline of people alone (a contact, a company, tagged contacts, and nothing else
    /// narrowing it): each identity's latest activities come off its index range already in
    /// order, and the page is the newest of them; no plan has to guess how many there are.
    /// `None` when the filter is not of that shape (the general query serves it).
    async fn people_page(
        &self,
        user_id: i64,
        f: &ActivityFilter,
        page: Page,
        limit: u32,
    ) -> Result<Option<Vec<ChangeRecord>>> {
        let people_only = f.endpoint_id.is_none()
            && f.collection_id.is_none()
            && f.kind.is_none()
            && f.since.is_none()
            && f.until.is_none()
            && f.text.is_none()
            && (f.contact.is_some() || f.company.is_some() || !f.tags.is_empty());
        if !people_only {
            return Ok(None);
        }
        let mut identities: Vec<String> = self
            .identities_of(user_id, f.contact.as_deref(), f.company.as_deref(), &f.tags)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        identities.dedup();
        if identities.len() > MAX_MERGED_IDENTITIES {
            return Ok(None);
        }
        if identities.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let (cmp, cursor, order) = match page {
            Page::Before(b) => ("<", b.map(sql_seq).unwrap_or(i64::MAX), "DESC"),
            Page::After(a) => (">", sql_seq(a), "ASC"),
        };
        let mut q = Sql::new("SELECT DISTINCT seq FROM (");
        for (i, id) in identities.iter().enumerate() {
            if i > 0 {
                q.push(" UNION ALL ");
            }
            q.push("SELECT seq FROM (SELECT seq FROM activity_people WHERE user_id = ")
                .push_bind(user_id);
            q.push(" AND identity = ").push_bind(id.as_str());
            q.push(&format!(" AND seq {cmp} ")).push_bind(cursor);
            q.push(&format!(" ORDER BY seq {order} LIMIT "))
                .push_bind(i64::from(limit));
            q.push(") p");
            q.push(&i.to_string());
        }
        q.push(&format!(") s ORDER BY seq {order} LIMIT "))
            .push_bind(i64::from(limit));
        let seqs: Vec<i64> = q
            .build()
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()?;
        if seqs.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut q = Sql::new(format!(
            "SELECT {CHANGE_COLUMNS} FROM changes c JOIN collections col ON col.id = c.collection_id \
             LEFT JOIN endpoints e ON e.id = c.endpoint_id WHERE c.user_id = "
        ));
        q.push_bind(user_id)
            .push(" AND c.seq IN (")
            .push_list(seqs)
            .push(&format!(") ORDER BY c.seq {order}"));
        Ok(Some(self.fetch_changes(q, order == "DESC").await?))
    }

    async fn contact_rows(&self, user_id: i64, one: Option<&str>) -> Result<Vec<ContactSummary>> {
        let filter = if one.is_some() { " AND contact_id = $2" } else { "" };
        let q = |sql: String| {
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id);
            match one {
                Some(id) => q.bind(id.to_string()),
                None => q,
            }
        };
        let rows = q(format!(
            "SELECT contact_id, name, org, tags FROM contacts WHERE user_id = $1{filter} ORDER BY name, contact_id"
        ))
        .fetch_all(&self.readers)
        .await?;
        let mut out: Vec<ContactSummary> = Vec::with_capacity(rows.len());
        let mut at: std::collections::HashMap<String, usize> = Default::default();
        for r in &rows {
            let id: String = r.try_get("contact_id")?;
            let tags: String = r.try_get("tags")?;
            at.insert(id.clone(), out.len());
            out.push(ContactSummary {
                id,
                name: r.try_get("name")?,
                org: r.try_get("org")?,
                tags: tags.split('\n').filter(|t| !t.is_empty()).map(str::to_string).collect(),
                identities: Vec::new(),
                companies: Vec::new(),
            });
        }
        for (sql, companies) in [
            (
                format!(
                    "SELECT contact_id, identity AS v FROM contact_identities WHERE user_id = $1{filter} ORDER BY identity"
                ),
                false,
            ),
            (
                format!("SELECT contact_id, slug AS v FROM contact_companies WHERE user_id = $1{filter} ORDER BY slug"),
                true,
            ),
        ] {
            for r in q(sql).fetch_all(&self.readers).await? {
                let id: String = r.try_get("contact_id")?;
                let v: String = r.try_get("v")?;
                if let Some(&i) = at.get(&id) {
                    if companies {
                        out[i].companies.push(v);
                    } else if !v.starts_with(crate::domain::identity::CONTACT_URN) {
                        out[i].identities.push(v);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A search the database could not run (an FTS5 syntax it refuses) is the query's fault.
fn search_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.message().contains("fts5") || d.message().contains("tsquery") => {
            StoreError::BadQuery(d.message().to_string())
        }
        _ => StoreError::Database(e),
    }
}
