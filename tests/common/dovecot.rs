//! Dovecot (Debian's dovecot-imapd) in a scratch directory, as ../shared/PEERS-connectors.md
//! §5 configures it: IMAP on 127.0.0.1, any user with the password `secret`, Maildir
//! mail under the directory, run in the foreground and stopped when dropped.
//!
//! Dovecot cannot listen on port 0 and say which port it got, so a free-looking port is
//! chosen and, when Dovecot reports it taken, another (up to eight tries).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PASSWORD: &str = "imap-pw-7f3kq";

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// With TLS: the IMAPS port, and the CA file that signed the server's certificate.
    pub tls: Option<(u16, PathBuf)>,
    conf: PathBuf,
    child: Child,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sbin(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

impl Dovecot {
    /// A running Dovecot, or None (a skip) when it is not installed outside CI.
    pub fn start() -> Option<Dovecot> {
        Self::start_with(false, None)
    }

    /// The same, taking XOAUTH2 and OAUTHBEARER too: a bearer token is checked at
    /// `introspection` (RFC 7662, `http://CLIENT:SECRET@HOST/…`), its `sub` the user.
    pub fn start_oauth(introspection: &str) -> Option<Dovecot> {
        Self::start_with(false, Some(introspection))
    }

    /// The same with TLS: STARTTLS on `port`, implicit TLS on `tls.0`, a certificate for
    /// 127.0.0.1 signed by a CA made for the test (`tls.1`, PEM).
    pub fn start_tls() -> Option<Dovecot> {
        Self::start_with(true, None)
    }

    fn start_with(tls: bool, oauth: Option<&str>) -> Option<Dovecot> {
        let Some(bin) = sbin("dovecot") else {
            assert!(
                !super::required(),
                "dovecot is not installed; .ci/run installs it (scripts/deps)"
            );
            eprintln!("SKIP: dovecot is not installed (run scripts/deps)");
            return None;
        };
        let mut dir = tempfile::Builder::new().prefix("feedmesh-dovecot").tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Mail runs as nobody, and must make its users' directories.
        chown_nobody(&d.join("mail"));
        let ca = tls.then(|| make_certificates(d));
        if let Some(url) = oauth {
            std::fs::write(
                d.join("oauth2.conf.ext"),
                format!("introspection_mode = post\nintrospection_url = {url}\nusername_attribute = sub\nactive_attribute = active\nactive_value = true\n"),
            )
            .unwrap();
        }
        for attempt in 0..8u16 {
            let port = 20000 + (std::process::id() as u16 % 1000) * 40 + rand_u16() % 40 + attempt;
            let conf = d.join("dovecot.conf");
            let imaps = ca.as_ref().map(|_| port + 500);
            std::fs::write(&conf, config(d, port, imaps, oauth.is_some())).unwrap();
            let log = d.join("dovecot.log");
            let _ = std::fs::remove_file(&log);
            let child = Command::new(&bin)
                .arg("-F")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
                .spawn()
                .unwrap();
            let mut dc = Dovecot {
                dir,
                port,
                tls: imaps.zip(ca.clone()),
                conf,
                child,
            };
            for _ in 0..100 {
                // Ready once IMAP takes connections and so does the auth socket doveadm
                // asks for users (it can come up later: a `doveadm save` then fails).
                let userdb = dc.dir.path().join("run").join("auth-userdb");
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && std::os::unix::net::UnixStream::connect(&userdb).is_ok()
                {
                    return Some(dc);
                }
                if let Ok(Some(_)) = dc.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let why = std::fs::read_to_string(dc.dir.path().join("stderr.log")).unwrap_or_default()
                + &std::fs::read_to_string(dc.dir.path().join("dovecot.log")).unwrap_or_default();
            assert!(why.contains("in use"), "dovecot did not start on port {port}: {why}");
            let _ = dc.child.kill();
            let _ = dc.child.wait();
            dir = std::mem::replace(&mut dc.dir, tempfile::tempdir().unwrap());
        }
        panic!("dovecot found no free port in eight tries");
    }

    /// `doveadm` with this server's config.
    pub fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write;
        let bin = sbin("doveadm").expect("doveadm comes with dovecot");
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stores a message (RFC 5322 bytes) in `user`'s `folder`, as a delivery would.
    pub fn deliver(&self, user: &str, folder: &str, message: &[u8]) {
        self.doveadm(&["save", "-u", user, "-m", folder], Some(message));
    }

    /// Writes many messages straight into `user`'s INBOX Maildir (`new/`), as a delivery
    /// agent does: tens of thousands a second, seen by the server at its next look.
    pub fn fill_inbox(&self, user: &str, messages: impl IntoIterator<Item = Vec<u8>>) {
        let home = self.dir.path().join("mail").join(user);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(home.join(sub)).unwrap();
        }
        for (i, m) in messages.into_iter().enumerate() {
            // With its size in its name, as Dovecot's own deliveries are named: without,
            // Dovecot stats every file at each look (0.4 s a look with 10,000).
            let name = format!(
                "{}.M{i}P{}.feedmesh,S={}",
                1_700_000_000 + i,
                std::process::id(),
                m.len()
            );
            let tmp = home.join("tmp").join(&name);
            std::fs::write(&tmp, m).unwrap();
            std::fs::rename(&tmp, home.join("new").join(&name)).unwrap();
        }
        chown_nobody(&home);
    }
}

fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown nobody {}", path.display());
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).unwrap();
    u16::from_le_bytes(b)
}

/// A CA and a server certificate for 127.0.0.1 it signed (openssl, P-256): answers the CA's
/// PEM file; the server's are `server.pem` and `server.key` beside it.
fn make_certificates(d: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=feedmesh test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    d.join("ca.pem")
}

fn config(d: &Path, port: u16, imaps: Option<u16>, oauth: bool) -> String {
    let (mechanisms, oauth_passdb) = if oauth {
        (
            "plain login xoauth2 oauthbearer",
            format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}/oauth2.conf.ext\n}}\n",
                d.display()
            ),
        )
    } else {
        ("plain login", String::new())
    };
    let ssl = match imaps {
        Some(_) => format!(
            "ssl = yes\nssl_cert = <{0}/server.pem\nssl_key = <{0}/server.key",
            d.display()
        ),
        None => "ssl = no".to_string(),
    };
    let imaps = imaps.unwrap_or(0);
    let d = d.display();
    format!(
        r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
mail_location = maildir:{d}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 10 secs
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{oauth_passdb}passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
"#
    )
}
