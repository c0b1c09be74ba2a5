//! People in tests: a browser-like session (cookie and CSRF token carried by hand, so every
//! assertion about them is explicit), the mail the server wrote, and the links inside it.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use super::{Backend, Db, TestApp};

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The order the server sent it in (`X-Rampart-Test-Sequence`, stamped by test builds).
    pub sequence: Option<u64>,
}

/// Parses an RFC 5322 message (with mailparse: transfer encodings included).
pub fn parse_mail(raw: &[u8]) -> Mail {
    let parsed = mailparse::parse_mail(raw).unwrap();
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    Mail {
        to: header("To"),
        subject: header("Subject"),
        body: parsed.get_body().unwrap(),
        sequence: header("X-Rampart-Test-Sequence").trim().parse().ok(),
    }
}

/// The token in the first `…{path}?token=XYZ` link of `body`.
pub fn token_in(body: &str, path: &str) -> Option<String> {
    let marker = format!("{path}?token=");
    let start = body.find(&marker)? + marker.len();
    Some(
        body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

/// The messages an address had at one moment (see [`TestApp::mail_mark`]).
#[derive(Debug, Clone)]
pub struct MailMark {
    to: String,
    seen: std::collections::HashSet<std::path::PathBuf>,
}

/// A cookie-carrying client.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

/// The `name=value` of our session cookie in a response, and the whole header.
pub fn session_cookie(r: &Response) -> Option<(String, String)> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("rampart_session="))
        .map(|v| {
            let pair = v.split(';').next().unwrap_or_default().trim().to_owned();
            (pair, v.to_owned())
        })
}

impl TestApp {
    /// Waits (up to 10 s) until the worker has run every account mail that is due: mail is
    /// queued as a job by the request and sent by the app's worker, so a test reading the
    /// mailbox waits for the queue instead of sleeping. A mail waiting for a retry later (on the
    /// app's clock) does not count.
    pub async fn settle_mail(&self) {
        use rampart_core::Clock;
        use rampart_store::jobs::JobState;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = self.clock.now();
            let mut pending = Vec::new();
            for state in [JobState::Queued, JobState::Running] {
                pending.extend(
                    self.store
                        .jobs()
                        .list(Some(state), Some("auth.mail"), 10_000)
                        .await
                        .unwrap()
                        .into_iter()
                        .filter(|j| j.state == JobState::Running || j.run_at <= now),
                );
            }
            if pending.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "account mail still queued after 10 s: {pending:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Every message written to the file transport, oldest first, once the due mail is sent.
    pub async fn mails(&self) -> Vec<Mail> {
        self.settle_mail().await;
        self.mails_now()
    }

    /// Every message written to the file transport so far, oldest first.
    fn mails_now(&self) -> Vec<Mail> {
        let dir = self.dir.path().join("mail");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        // In the order the server sent them: file times are too coarse to order two messages
        // written within one clock tick, and the file names are random.
        let mut mails: Vec<Mail> = files
            .iter()
            .map(|p| parse_mail(&std::fs::read(p).unwrap()))
            .collect();
        mails.sort_by_key(|m| {
            m.sequence
                .expect("a test build stamps every message with X-Rampart-Test-Sequence")
        });
        mails
    }

    /// Messages to `to`, once the due mail is sent.
    pub async fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.settle_mail().await;
        self.mails_to_now(to)
    }

    fn mails_to_now(&self, to: &str) -> Vec<Mail> {
        self.mails_now()
            .into_iter()
            .filter(|m| m.to.contains(to))
            .collect()
    }

    /// How many messages went to `to`, once the due mail is sent.
    pub async fn mail_count(&self, to: &str) -> usize {
        self.mails_to(to).await.len()
    }

    /// Every message file written so far, with its message.
    fn mail_files(&self) -> Vec<(std::path::PathBuf, Mail)> {
        let dir = self.dir.path().join("mail");
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| {
                let mail = parse_mail(&std::fs::read(&p).unwrap());
                (p, mail)
            })
            .collect()
    }

    /// What has been mailed to `to` so far, to tell later messages from it: file times are too
    /// coarse to order messages written within a few milliseconds of each other.
    pub async fn mail_mark(&self, to: &str) -> MailMark {
        self.settle_mail().await;
        MailMark {
            to: to.to_owned(),
            seen: self
                .mail_files()
                .into_iter()
                .filter(|(_, m)| m.to.contains(to))
                .map(|(p, _)| p)
                .collect(),
        }
    }

    /// Messages to the mark's address written since the mark.
    pub fn mails_since(&self, mark: &MailMark) -> Vec<Mail> {
        self.mail_files()
            .into_iter()
            .filter(|(p, m)| m.to.contains(&mark.to) && !mark.seen.contains(p))
            .map(|(_, m)| m)
            .collect()
    }

    /// Waits (up to 10 s) for a message to the mark's address written since the mark, and
    /// returns every such message: mail is sent after the answer, so a test waits for it
    /// instead of sleeping.
    pub async fn await_mail(&self, mark: &MailMark) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let new = self.mails_since(mark);
            if !new.is_empty() {
                return new;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new mail to {}",
                mark.to
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until `n` messages in all went to `to`.
    pub async fn await_mail_count(&self, to: &str, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.mails_to_now(to).len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{to} got {} mails, not {n}",
                self.mails_to_now(to).len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The token of the link to `path` in a message to `to` written since the mark, waiting
    /// (up to 10 s) for it.
    pub async fn await_link(&self, to: &str, path: &str, mark: &MailMark) -> String {
        assert_eq!(to, mark.to, "the mark is for another address");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let new = self.mails_since(mark);
            if let Some(t) = new.iter().find_map(|m| token_in(&m.body, path)) {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {path} link mailed to {to} since the mark: {new:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The token of the newest link to `path` mailed to `to`, once the due mail is sent.
    pub async fn link_token(&self, to: &str, path: &str) -> String {
        let mails = self.mails_to(to).await;
        mails
            .iter()
            .rev()
            .find_map(|m| token_in(&m.body, path))
            .unwrap_or_else(|| panic!("no {path} link mailed to {to}: {mails:?}"))
    }

    /// Sends a request as `browser` (cookie and, when it has one, the CSRF header) and keeps
    /// any new session cookie and CSRF token it is given.
    pub async fn as_browser(
        &self,
        browser: &mut Browser,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(c) = &browser.cookie {
            req = req.header("Cookie", c);
        }
        if let Some(t) = &browser.csrf {
            req = req.header("X-CSRF-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        if let Some((pair, _)) = session_cookie(&r) {
            browser.cookie = if pair.ends_with('=') {
                None
            } else {
                Some(pair)
            };
        }
        r
    }

    /// Like [`Self::as_browser`], returning the status and JSON body (and keeping the CSRF
    /// token a sign-in hands out).
    pub async fn browse(
        &self,
        browser: &mut Browser,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let r = self.as_browser(browser, method, path, body).await;
        let status = r.status().as_u16();
        let json: Value = r.json().await.unwrap_or(Value::Null);
        if let Some(t) = json["csrf_token"].as_str() {
            browser.csrf = Some(t.to_owned());
        }
        (status, json)
    }

    /// Signs up (password, name, organization) and follows the confirmation link.
    pub async fn signup_confirmed(&self, email: &str, password: &str) {
        let mut b = Browser::default();
        let (status, body) = self
            .browse(&mut b, Method::POST, "/v1/auth/signup", Some(&json!({
                "email": email, "password": password, "name": "Test Person", "org_name": format!("Org of {email}")
            })))
            .await;
        assert_eq!(status, 202, "{body}");
        let token = self.link_token(email, "/auth/confirm").await;
        let (status, body) = self
            .browse(
                &mut b,
                Method::POST,
                "/v1/auth/confirm",
                Some(&json!({"token": token})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Signs in with a password (no second factor) and returns the browser.
    pub async fn signed_in(&self, email: &str, password: &str) -> Browser {
        let mut b = Browser::default();
        let (status, body) = self
            .browse(
                &mut b,
                Method::POST,
                "/v1/auth/signin",
                Some(&json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "signed_in", "{body}");
        b
    }

    /// A confirmed user with an organization, signed in; returns the browser and their first
    /// workspace id.
    pub async fn person(&self, email: &str, password: &str) -> (Browser, String) {
        self.signup_confirmed(email, password).await;
        let mut b = self.signed_in(email, password).await;
        let (_, me) = self.browse(&mut b, Method::GET, "/v1/auth/me", None).await;
        let ws = me["organizations"][0]["workspace_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (b, ws)
    }
}

/// How the `rampart` binary reaches a test app's database, keyring and mail: for the operator
/// commands, run against the very app a test is talking to.
pub struct Operator {
    env: Vec<(String, String)>,
    _data: tempfile::TempDir,
}

impl Operator {
    /// Runs `rampart ARGS --json`, asserts it succeeded, and returns its last line as JSON.
    pub fn run(&self, args: &[&str]) -> Value {
        let out = self.run_raw(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "rampart {args:?} failed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("rampart {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// Runs `rampart ARGS` and returns what it did.
    pub fn run_raw(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }
}

impl TestApp {
    /// Like [`TestApp::spawn_configured`], with a master key the operator commands can be
    /// given too (the test app's own key never leaves memory), so `rampart admin …` can run
    /// against this app's database; its mail lands where [`TestApp::mails`] reads.
    pub async fn spawn_with_operator(
        backend: Backend,
        configure: impl FnOnce(rampart::AppState) -> rampart::AppState,
    ) -> Option<(Self, Operator)> {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("rampart.db");
                let store = rampart_store::Store::open_sqlite(&path, super::pool_settings())
                    .await
                    .unwrap();
                store.migrate().await.unwrap();
                (store, Db::Sqlite(path))
            }
            Backend::Postgres => {
                let admin_url = super::postgres_admin_url()?;
                let (owner_url, app_url, name) = super::fresh_postgres(&admin_url).await;
                let store =
                    rampart_store::Store::connect_postgres(&app_url, super::pool_settings())
                        .await
                        .unwrap();
                store.ensure_restricted_role().await.unwrap();
                (
                    store,
                    Db::Postgres {
                        admin_url,
                        owner_url,
                        app_url,
                        name,
                    },
                )
            }
        };
        let raw: [u8; 32] = rand::random();
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let master = rampart_crypto::MasterKey::from_base64(&encoded, "test").unwrap();
        let database_url = match &db {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres { app_url, .. } => app_url.clone(),
        };
        let mail = format!("file:{}", dir.path().join("mail").display());
        let app = Self::serve_with_master(
            store,
            backend,
            db,
            dir,
            std::time::Duration::from_secs(30),
            configure,
            master,
        )
        .await;
        let data = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "RAMPART_DATA_DIR".to_owned(),
                data.path().display().to_string(),
            ),
            ("RAMPART_DATABASE_URL".to_owned(), database_url),
            ("RAMPART_MASTER_KEY".to_owned(), encoded),
            ("RAMPART_MAIL_TRANSPORT".to_owned(), mail),
            (
                "RAMPART_AUTH__MAIL_FROM".to_owned(),
                "Rampart <no-reply@example.com>".to_owned(),
            ),
        ];
        Some((app, Operator { env, _data: data }))
    }
}

/// An SMTP server (aiosmtpd, from PyPI) that holds every message at the end of its DATA
/// command, without answering, until [`SmtpPeer::release`]: a test can see what the server
/// answered while its mail was still in flight. Delivered messages are numbered in arrival order.
pub struct SmtpPeer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

const HOLDING_SMTP: &str = r#"
import asyncio, os, sys, time
from aiosmtpd.controller import Controller
port, d = int(sys.argv[1]), sys.argv[2]
for sub in ("held", "new"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
class Hold:
    def __init__(self):
        self.n = 0
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if os.path.exists(os.path.join(d, "refuse")):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        n = self.n
        open(os.path.join(d, "held", "%06d" % n), "w").close()
        while not os.path.exists(os.path.join(d, "release")):
            await asyncio.sleep(0.02)
        tmp = os.path.join(d, "%06d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(d, "new", "%06d.eml" % n))
        return "250 OK"
controller = Controller(Hold(), hostname="127.0.0.1", port=port)
controller.start()
open(os.path.join(d, "ready"), "w").close()
while True:
    time.sleep(3600)
"#;

impl SmtpPeer {
    /// Starts the server; `None` (after saying so) when aiosmtpd is missing, except in CI.
    pub async fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    /// Starts the server on `port` (one a test kept free, to play an SMTP server coming back
    /// after an outage); `None` as [`Self::start`].
    pub async fn start_on(port: u16) -> Option<Self> {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        let available = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            assert!(!ci, "CI must install aiosmtpd (pip install aiosmtpd)");
            super::announce_skip("the SMTP tests", "pip install aiosmtpd to run them");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("python3")
            .args(["-c", HOLDING_SMTP, &port.to_string()])
            .arg(dir.path())
            .spawn()
            .unwrap();
        let peer = Self { port, dir, child };
        peer.wait_for("the SMTP peer to start", || {
            peer.dir.path().join("ready").exists()
        })
        .await;
        Some(peer)
    }

    /// `smtp://…` for [`rampart::auth::mail::Mailer::from_url`].
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.dir.path().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    async fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited 10 s for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Messages that reached the end of DATA (held or not).
    pub fn held(&self) -> usize {
        self.count("held")
    }

    /// Waits until `n` messages have reached the end of DATA.
    pub async fn await_held(&self, n: usize) {
        self.wait_for("messages held at DATA", || self.held() >= n)
            .await;
    }

    /// Refuses every later recipient for good (`550 5.1.1 <address>: mailbox unavailable`, the
    /// address quoted as real servers do).
    pub fn refuse(&self) {
        std::fs::write(self.dir.path().join("refuse"), b"").unwrap();
    }

    /// Lets every held message (and every later one) through.
    pub fn release(&self) {
        std::fs::write(self.dir.path().join("release"), b"").unwrap();
    }

    /// Messages accepted, in arrival order.
    pub fn delivered(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("new"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| parse_mail(&std::fs::read(p).unwrap()))
            .collect()
    }

    /// Waits until `n` messages were accepted, and returns them.
    pub async fn await_delivered(&self, n: usize) -> Vec<Mail> {
        self.wait_for("messages delivered", || self.count("new") >= n)
            .await;
        self.delivered()
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
