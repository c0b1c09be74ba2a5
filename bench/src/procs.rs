//! The processes under test: the real `rampart` binary (its operator CLI and `serve`), the
//! baseline and PocketBase. Each server runs as a child process on a free loopback port with
//! its output in a log file; it is stopped with SIGTERM (then killed) and never outlives the
//! bench, because every child is spawned with `kill_on_drop`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a server may take to answer its health check after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A free loopback address (the port is released just before the server binds it).
pub fn free_loopback_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}

/// Rate limits and the daily quota raised so that no benchmark request is refused: the
/// limiter still runs on every request (its cost is in the figures), it just never says no.
/// The load spreads over one API key and one loopback address per connection as well, as
/// many clients would, so the limiter holds as many keys as it would in production rather
/// than one hot key.
/// `RAMPART_SERVER_TIMING` makes Rampart report the time it spent authenticating each request
/// (`Server-Timing: auth;dur=…`), which the load generator collects.
pub const SERVE_ENV: [(&str, &str); 5] = [
    ("RAMPART_SERVER_TIMING", "true"),
    ("RAMPART_RATE_LIMITS__API_PER_KEY", "4000000000"),
    ("RAMPART_RATE_LIMITS__SIGN_IN_PER_IP", "4000000000"),
    ("RAMPART_RATE_LIMITS__API_PER_IP", "4000000000"),
    ("RAMPART_QUOTAS__GROWTH", "1000000000000"),
];

/// Only what the bench sets: an operator's RAMPART_CONFIG or RAMPART_DATABASE_URL in the
/// environment must not redirect the benchmark to their data. Then quiet logs and the limits.
pub fn rampart_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RAMPART_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RAMPART_LOG", "warn");
    for (k, v) in SERVE_ENV {
        cmd.env(k, v);
    }
}

/// Which database a `rampart` process uses.
#[derive(Clone)]
pub enum Db {
    /// The embedded default: `DATA_DIR/rampart.db`.
    Sqlite,
    /// PostgreSQL: the server connects as the restricted application role, migrations run as
    /// the owner role.
    Postgres { app_url: String, owner_url: String },
}

/// The tenant a scenario works in.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub org_id: String,
    pub workspace_id: String,
    /// The first API key's id (`key_…`), as the audit ledger names its actor.
    pub key_id: String,
    /// Owner API keys, one per client connection (at least one).
    pub keys: Vec<String>,
}

/// One installation of the real `rampart` binary: a data directory and a database.
pub struct Rampart {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub db: Db,
}

impl Rampart {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        rampart_env(&mut cmd);
        cmd.env("RAMPART_DATA_DIR", &self.data_dir);
        if let Db::Postgres { app_url, owner_url } = &self.db {
            cmd.env("RAMPART_DATABASE_URL", app_url)
                .env("RAMPART_DATABASE_OWNER_URL", owner_url);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// The SQLite file (only meaningful on SQLite).
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("rampart.db")
    }

    /// Runs an operator command with `--json` and parses what it printed.
    pub async fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self
            .command(&all)
            .output()
            .await
            .with_context(|| format!("running {} {}", self.bin.display(), args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "`rampart {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .ok_or_else(|| anyhow!("`rampart {}` printed no JSON", args.join(" ")))?;
        serde_json::from_str(line)
            .with_context(|| format!("`rampart {}` printed bad JSON", args.join(" ")))
    }

    /// `rampart migrate`.
    pub async fn migrate(&self) -> Result<()> {
        self.cli_json(&["migrate"]).await.map(|_| ())
    }

    /// An organization (growth plan) with its first workspace and `key_count` owner API keys,
    /// made with the operator CLI exactly as an operator would.
    pub async fn provision(&self, name: &str, key_count: usize) -> Result<Tenant> {
        let email = format!("owner@{}.bench.example.com", name.to_ascii_lowercase());
        let org = self
            .cli_json(&[
                "admin",
                "create-org",
                "--name",
                name,
                "--owner-email",
                &email,
                "--plan",
                "growth",
            ])
            .await?;
        let field = |v: &Value, k: &str| -> Result<String> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the CLI's JSON has no `{k}`: {v}"))
        };
        let org_id = field(&org, "org_id")?;
        let workspace_id = field(&org, "workspace_id")?;
        let mut keys = Vec::new();
        let mut key_id = String::new();
        for i in 0..key_count.max(1) {
            let key = self
                .cli_json(&[
                    "admin",
                    "create-api-key",
                    "--workspace",
                    &workspace_id,
                    "--role",
                    "owner",
                    "--name",
                    &format!("bench-{i}"),
                ])
                .await?;
            if i == 0 {
                key_id = field(&key, "id")?;
            }
            keys.push(field(&key, "key")?);
        }
        Ok(Tenant {
            org_id,
            workspace_id,
            key_id,
            keys,
        })
    }

    /// `rampart serve` on a free loopback port.
    pub async fn serve(&self, name: &str) -> Result<ServerProc> {
        self.serve_with(name, &[]).await
    }

    /// `rampart serve` on a free loopback port, with `env` set on top of the bench's own.
    pub async fn serve_with(&self, name: &str, env: &[(&str, &str)]) -> Result<ServerProc> {
        let addr = free_loopback_addr()?;
        let mut cmd = self.command(&["serve"]);
        cmd.env("RAMPART_LISTEN", addr.to_string());
        cmd.envs(env.iter().copied());
        ServerProc::spawn(name, cmd, addr, "/readyz", &self.data_dir.join("serve.log")).await
    }
}

/// A server child process.
pub struct ServerProc {
    pub name: String,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

impl ServerProc {
    /// Spawns `cmd` with its output in `log` and waits until `GET health` answers 200.
    pub async fn spawn(
        name: &str,
        mut cmd: Command,
        addr: SocketAddr,
        health: &str,
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        let mut server = Self {
            name: name.to_owned(),
            addr,
            pid,
            child,
            log: log.to_owned(),
        };
        server.wait_healthy(health).await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self, health: &str) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{}{health}", self.addr);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {url} within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            // Often enough that scenario 7's start-up figure is good to about 10 ms.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid)
    }

    /// CPU time (user + system) the process has used, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(&self.pid.to_string())
    }

    /// SIGTERM, then SIGKILL if it has not exited within ten seconds.
    pub async fn stop(mut self) -> Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.start_kill()?;
                self.child.wait().await?;
            }
        }
        Ok(())
    }
}

/// The resident set size of process `pid` now, in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time (user + system) process `pid` (or `self`) has used, in seconds.
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5) are utime and stime; `after` starts at field 3.
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// CPU time the whole machine has spent busy (every core, every process), in seconds: the
/// `cpu` line of /proc/stat less idle and iowait.
pub fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = values
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on every Linux this runs on, read once to be sure).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}
