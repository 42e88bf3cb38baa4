//! The IMAP session (`async-imap` over the connection the hub dials): login (LOGIN, or
//! XOAUTH2 with a token), STARTTLS, SELECT with CONDSTORE, the UID FETCHes of a folder's
//! new and changed messages, and IDLE. Every read is bounded: by the hub's idle limit on
//! the connection, and here by an allowance of bytes per command.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{NameAttribute, Response, Status};
use async_imap::types::{Fetch, Flag};
use feedmesh_connector::{ConnectorError, Dial, Http, Pulled, Secret, Sink, Socket};
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{BoxState, Budget, ImapConfig, Tls, mail};

/// What the server offers, of what the connector uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub idle: bool,
    pub condstore: bool,
}

impl Capabilities {
    pub fn of<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let mut c = Capabilities::default();
        for n in names {
            match n.to_ascii_uppercase().as_str() {
                "IDLE" => c.idle = true,
                "CONDSTORE" | "QRESYNC" => c.condstore = true,
                _ => {}
            }
        }
        c
    }
}

/// Bytes a command may bring beyond what was asked for (responses, flags, a margin).
const MARGIN: u64 = 4 * 1024 * 1024;
/// Messages fetched by one command at most, and their bytes.
const GROUP: usize = 64;
const GROUP_BYTES: usize = 24 * 1024 * 1024;
/// How long one IDLE lasts before it is renewed (servers end it after 30 minutes).
const IDLE_FOR: Duration = Duration::from_secs(25 * 60);

type Session = async_imap::Session<Capped>;
/// A message's UID and size.
type Sized = (u32, u32);

/// A logged-in session.
pub struct Imap {
    session: Session,
    caps: Capabilities,
    allowance: Arc<AtomicU64>,
}

/// A folder as SELECT answered.
#[derive(Clone, Copy, Debug)]
pub struct Selected {
    pub validity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
    pub highest_modseq: Option<u64>,
}

impl Imap {
    /// Connects, secures, reads the greeting and logs in.
    pub async fn open(http: &dyn Http, config: &ImapConfig, token: Option<&Secret>) -> Result<Imap, ConnectorError> {
        let dial = Dial {
            host: config.host.clone(),
            port: config.port,
            tls: config.tls == Tls::Implicit,
            ca_file: config.ca_file.clone(),
            idle: config.timeout,
        };
        let allowance = Arc::new(AtomicU64::new(MARGIN));
        let sock = http.dial(&dial).await?;
        let mut client = async_imap::Client::new(Capped::new(sock, allowance.clone()));
        greeting(&mut client).await?;
        if config.tls == Tls::StartTls {
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| match e {
                    async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => {
                        ConnectorError::Permanent(format!("{} does not offer STARTTLS ({e})", config.host))
                    }
                    e => failed(e),
                })?;
            let plain = client.into_inner().inner;
            let secured = http.start_tls(plain, &dial).await?;
            client = async_imap::Client::new(Capped::new(secured, allowance.clone()));
        }
        let refused = |e: async_imap::error::Error| match e {
            async_imap::error::Error::No(why) | async_imap::error::Error::Bad(why) => {
                ConnectorError::Unauthorized(format!("login refused: {why}"))
            }
            e => failed(e),
        };
        let mut session = match (token, &config.password) {
            (Some(token), _) => client
                .authenticate(
                    "XOAUTH2",
                    XOAuth2 {
                        user: config.user.clone(),
                        token: token.expose().to_string(),
                    },
                )
                .await
                .map_err(|(e, _)| refused(e))?,
            (None, Some(password)) => client
                .login(&config.user, password.expose())
                .await
                .map_err(|(e, _)| refused(e))?,
            (None, None) => {
                return Err(ConnectorError::Unauthorized(
                    "no password, and no OAuth token yet".into(),
                ));
            }
        };
        let caps = session.capabilities().await.map_err(failed)?;
        let caps = Capabilities::of(caps.iter().filter_map(|c| match c {
            async_imap::types::Capability::Atom(a) => Some(a.as_ref()),
            _ => None,
        }));
        Ok(Imap {
            session,
            caps,
            allowance,
        })
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn allow(&self, bytes: u64) {
        self.allowance.store(bytes.saturating_add(MARGIN), Ordering::Relaxed);
    }

    /// The folder the server marks `\Sent` (RFC 6154), or one named as Sent folders are.
    pub async fn sent_folder(&mut self) -> Result<Option<String>, ConnectorError> {
        self.allow(0);
        let names: Vec<async_imap::types::Name> = self
            .session
            .list(Some(""), Some("*"))
            .await
            .map_err(failed)?
            .try_collect()
            .await
            .map_err(failed)?;
        if let Some(n) = names.iter().find(|n| n.attributes().contains(&NameAttribute::Sent)) {
            return Ok(Some(n.name().to_string()));
        }
        for want in [
            "Sent",
            "Sent Messages",
            "Sent Items",
            "Sent Mail",
            "INBOX.Sent",
            "[Gmail]/Sent Mail",
        ] {
            if let Some(n) = names.iter().find(|n| n.name().eq_ignore_ascii_case(want)) {
                return Ok(Some(n.name().to_string()));
            }
        }
        Ok(None)
    }

    pub async fn select(&mut self, folder: &str) -> Result<Selected, ConnectorError> {
        self.allow(0);
        let r = if self.caps.condstore {
            self.session.select_condstore(folder).await
        } else {
            self.session.select(folder).await
        };
        let m = r.map_err(|e| match e {
            async_imap::error::Error::No(why) => ConnectorError::Permanent(format!("folder {folder:?}: {why}")),
            e => failed(e),
        })?;
        Ok(Selected {
            validity: m.uid_validity.unwrap_or(0),
            uid_next: m.uid_next,
            exists: m.exists,
            highest_modseq: m.highest_modseq,
        })
    }

    /// Reads what is new and changed in `folder` since `was`, within `budget`, into
    /// `items`; answers where the folder stands now and whether some was left for later.
    pub async fn take_folder(
        &mut self,
        folder: &str,
        was: &BoxState,
        max_message: usize,
        budget: &mut Budget,
        items: &mut Vec<Pulled>,
    ) -> Result<(BoxState, bool), ConnectorError> {
        let sel = self.select(folder).await?;
        let mut now = if was.validity == sel.validity {
            was.clone()
        } else {
            // A new UIDVALIDITY (the folder recreated): read it all again; the ids come
            // from the messages, so nothing is duplicated.
            BoxState {
                validity: sel.validity,
                uid: 0,
                modseq: 0,
            }
        };
        let highest = sel.highest_modseq.unwrap_or(0);
        if sel.exists == 0 {
            now.modseq = highest;
            return Ok((now, false));
        }
        // Flag changes of messages already taken (CONDSTORE).
        let mut changed = Vec::new();
        if self.caps.condstore && now.uid > 0 && now.modseq > 0 && highest > now.modseq {
            changed = self
                .sizes(
                    &format!("1:{}", now.uid),
                    &format!("(UID RFC822.SIZE FLAGS) (CHANGEDSINCE {})", now.modseq),
                )
                .await?;
            changed.retain(|(uid, _)| *uid <= now.uid);
        }
        let mut new = Vec::new();
        if sel.uid_next.is_none_or(|n| n > now.uid.saturating_add(1)) {
            new = self
                .sizes(&format!("{}:*", now.uid.saturating_add(1)), "(UID RFC822.SIZE)")
                .await?;
            // `N:*` names the last message even when its UID is below N.
            new.retain(|(uid, _)| *uid > now.uid);
        }
        let (changed_all, changed_taken) = take(&changed, budget, max_message);
        let (new_all, new_taken) = if changed_all {
            take(&new, budget, max_message)
        } else {
            (new.is_empty(), 0)
        };
        let wanted: Vec<(u32, u32)> = changed[..changed_taken]
            .iter()
            .chain(&new[..new_taken])
            .copied()
            .collect();
        self.bodies(&wanted, max_message, items).await?;
        if new_taken > 0 {
            now.uid = new[new_taken - 1].0;
        }
        if new_all {
            now.uid = now.uid.max(sel.uid_next.map_or(0, |n| n.saturating_sub(1)));
        }
        if changed_all && new_all {
            now.modseq = highest;
        }
        Ok((now, !(changed_all && new_all)))
    }

    /// (UID, size) of the messages `set` names, ascending.
    async fn sizes(&mut self, set: &str, query: &str) -> Result<Vec<(u32, u32)>, ConnectorError> {
        sizes(&mut self.session, &self.allowance, set, query).await
    }

    /// Fetches the messages `wanted` names ((UID, size)), each whole when it is no larger
    /// than `max_message`, else its headers, in groups; pushes their items.
    async fn bodies(
        &mut self,
        wanted: &[(u32, u32)],
        max_message: usize,
        items: &mut Vec<Pulled>,
    ) -> Result<(), ConnectorError> {
        bodies(&mut self.session, &self.allowance, wanted, max_message, |p| {
            items.push(p);
            async { Ok(()) }
        })
        .await
    }

    /// IDLEs on `folder`, handing each message that arrives to `sink`, until the
    /// connection ends or fails.
    pub async fn listen(self, folder: &str, max_message: usize, sink: &mut dyn Sink) -> Result<(), ConnectorError> {
        let mut me = self;
        let sel = me.select(folder).await?;
        let Imap {
            mut session, allowance, ..
        } = me;
        let mut last = sel.uid_next.map_or(0, |n| n.saturating_sub(1));
        sink.ready().await;
        loop {
            allowance.store(MARGIN, Ordering::Relaxed);
            let mut idle = session.idle();
            idle.init().await.map_err(failed)?;
            let (wait, _interrupt) = idle.wait_with_timeout(IDLE_FOR);
            let woke = wait.await.map_err(failed)?;
            session = idle.done().await.map_err(failed)?;
            if matches!(woke, async_imap::extensions::idle::IdleResponse::Timeout) {
                continue;
            }
            let mut new = sizes(
                &mut session,
                &allowance,
                &format!("{}:*", last.saturating_add(1)),
                "(UID RFC822.SIZE)",
            )
            .await?;
            new.retain(|(uid, _)| *uid > last);
            if let Some((uid, _)) = new.last() {
                let top = *uid;
                for group in new.chunks(GROUP) {
                    let mut got = Vec::new();
                    bodies(&mut session, &allowance, group, max_message, |p| {
                        got.push(p);
                        async { Ok(()) }
                    })
                    .await?;
                    for p in got {
                        sink.item(p).await?;
                    }
                }
                last = top;
            }
        }
    }

    /// Says goodbye (errors ignored: the connection is closed either way).
    pub async fn logout(&mut self) {
        self.allow(0);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session.logout()).await;
    }
}

/// Takes from the front of `list` what the budget allows; answers whether all was taken
/// and how many.
fn take(list: &[(u32, u32)], budget: &mut Budget, max_message: usize) -> (bool, usize) {
    let mut n = 0;
    for (_, size) in list {
        let cost = (*size as usize).min(max_message);
        if budget.messages == 0 || (n > 0 && cost > budget.bytes) {
            break;
        }
        budget.messages -= 1;
        budget.bytes = budget.bytes.saturating_sub(cost);
        n += 1;
    }
    (n == list.len(), n)
}

async fn sizes(
    session: &mut Session,
    allowance: &AtomicU64,
    set: &str,
    query: &str,
) -> Result<Vec<(u32, u32)>, ConnectorError> {
    allowance.store(MARGIN * 4, Ordering::Relaxed);
    let fetched: Vec<Fetch> = session
        .uid_fetch(set, query)
        .await
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    let mut out: Vec<(u32, u32)> = fetched
        .iter()
        .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
        .collect();
    out.sort_unstable();
    out.dedup_by_key(|(uid, _)| *uid);
    Ok(out)
}

async fn bodies<F, Fut>(
    session: &mut Session,
    allowance: &AtomicU64,
    wanted: &[(u32, u32)],
    max_message: usize,
    mut each: F,
) -> Result<(), ConnectorError>
where
    F: FnMut(Pulled) -> Fut,
    Fut: std::future::Future<Output = Result<(), ConnectorError>>,
{
    let (whole, headers): (Vec<Sized>, Vec<Sized>) =
        wanted.iter().partition(|(_, size)| (*size as usize) <= max_message);
    let mut groups: Vec<(Vec<Sized>, bool)> = Vec::new();
    let mut group = Vec::new();
    let mut bytes = 0usize;
    for m in whole {
        if !group.is_empty() && (group.len() == GROUP || bytes + m.1 as usize > GROUP_BYTES) {
            groups.push((std::mem::take(&mut group), true));
            bytes = 0;
        }
        bytes += m.1 as usize;
        group.push(m);
    }
    if !group.is_empty() {
        groups.push((group, true));
    }
    for chunk in headers.chunks(GROUP) {
        groups.push((chunk.to_vec(), false));
    }
    for (group, whole) in groups {
        let set: Vec<String> = group.iter().map(|(uid, _)| uid.to_string()).collect();
        let asked: u64 = if whole {
            group.iter().map(|(_, s)| *s as u64).sum()
        } else {
            0
        };
        allowance.store(asked.saturating_add(MARGIN), Ordering::Relaxed);
        let query = if whole {
            "(UID FLAGS INTERNALDATE BODY.PEEK[])"
        } else {
            "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER])"
        };
        let fetched: Vec<Fetch> = session
            .uid_fetch(set.join(","), query)
            .await
            .map_err(failed)?
            .try_collect()
            .await
            .map_err(failed)?;
        // Fewer messages than asked: expunged meanwhile, or the connection died (a closed
        // stream ends the answer early); a NOOP tells which, so nothing is skipped for good.
        if fetched.iter().filter(|f| f.uid.is_some()).count() < group.len() {
            session.noop().await.map_err(failed)?;
        }
        for f in &fetched {
            let Some(uid) = f.uid else { continue };
            let raw = if whole { f.body() } else { f.header() };
            let Some(raw) = raw else { continue };
            let flags: Vec<String> = f.flags().filter_map(flag_name).collect();
            let size = group.iter().find(|(u, _)| *u == uid).map_or(0, |(_, s)| *s as u64);
            let (id, entry, files) = mail::entry_of(
                raw,
                &flags,
                f.internal_date().map(|d| d.timestamp()),
                (!whole).then_some(size),
            );
            each(Pulled {
                id,
                entry,
                files,
                remote_id: None,
            })
            .await?;
        }
    }
    Ok(())
}

fn flag_name(f: Flag<'_>) -> Option<String> {
    Some(
        match f {
            Flag::Seen => "seen",
            Flag::Answered => "answered",
            Flag::Flagged => "flagged",
            Flag::Draft => "draft",
            _ => return None,
        }
        .to_string(),
    )
}

/// Reads the server's greeting: OK (or PREAUTH) goes on, BYE or anything else fails.
async fn greeting(client: &mut async_imap::Client<Capped>) -> Result<(), ConnectorError> {
    let r = client
        .read_response()
        .await
        .map_err(|e| failed(e.into()))?
        .ok_or_else(|| ConnectorError::Unreachable("the server closed the connection before its greeting".into()))?;
    match r.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye, ..
        } => Err(ConnectorError::Unreachable("the server said BYE at once".into())),
        other => Err(ConnectorError::Malformed(format!(
            "not an IMAP greeting: {}",
            format!("{other:?}").chars().take(200).collect::<String>()
        ))),
    }
}

/// An IMAP failure in the contract's terms.
fn failed(e: async_imap::error::Error) -> ConnectorError {
    use async_imap::error::Error as E;
    match e {
        E::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ConnectorError::Unreachable(e.to_string()),
        E::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            ConnectorError::Unreachable(format!("the server closed the connection ({e})"))
        }
        // async-imap reports what does not parse, and a response past its 512 MB, as I/O.
        E::Io(e) if e.to_string().contains("during parsing") => {
            ConnectorError::Malformed("the server sent something that is not IMAP".into())
        }
        E::Io(e) if e.to_string().contains("too large") => {
            ConnectorError::Malformed("the server sent more than it was asked for (a response too large)".into())
        }
        E::Io(e) => ConnectorError::Unreachable(format!("the connection failed: {e}")),
        E::ConnectionLost => ConnectorError::Unreachable("the server closed the connection".into()),
        E::No(why) => ConnectorError::Unreachable(format!("the server refused: {why}")),
        E::Bad(why) => ConnectorError::Malformed(format!("the server called a command bad: {why}")),
        E::Parse(p) => ConnectorError::Malformed(format!(
            "the server sent something that is not IMAP: {}",
            p.to_string().chars().take(200).collect::<String>()
        )),
        e => ConnectorError::Malformed(e.to_string()),
    }
}

/// SASL XOAUTH2 (Google's and Microsoft's IMAP): the user and a bearer token.
struct XOAuth2 {
    user: String,
    token: String,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

/// The connection, reading no more than its allowance (set before each command): a server
/// that sends more than it was asked for (a 2 GB literal) is cut off.
#[derive(Debug)]
pub struct Capped {
    inner: Box<dyn Socket>,
    left: Arc<AtomicU64>,
}

impl Capped {
    fn new(inner: Box<dyn Socket>, left: Arc<AtomicU64>) -> Self {
        Capped { inner, left }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left.load(Ordering::Relaxed) == 0 {
            return Poll::Ready(Err(std::io::Error::other("the server sent more than it was asked for")));
        }
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let left = self.left.load(Ordering::Relaxed);
            self.left.store(left.saturating_sub(n), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_takes_whole_messages_in_order() {
        let list = [(1, 10), (2, 10), (3, 10)];
        let mut b = Budget {
            messages: 2,
            bytes: 100,
        };
        assert_eq!(take(&list, &mut b, 64), (false, 2));
        let mut b = Budget {
            messages: 10,
            bytes: 15,
        };
        assert_eq!(take(&list, &mut b, 64), (false, 1), "the first always, then what fits");
        let mut b = Budget {
            messages: 10,
            bytes: 1000,
        };
        assert_eq!(take(&list, &mut b, 64), (true, 3));
        // A message larger than kept costs only what is kept of it.
        let mut b = Budget {
            messages: 10,
            bytes: 20,
        };
        assert_eq!(take(&[(1, 1_000_000), (2, 5)], &mut b, 10), (true, 2));
    }

    #[test]
    fn capabilities_are_read_case_blind() {
        let c = Capabilities::of(["imap4rev1", "IDLE", "condstore"].into_iter());
        assert!(c.idle && c.condstore);
        assert_eq!(Capabilities::of(["IMAP4rev1"].into_iter()), Capabilities::default());
    }
}
