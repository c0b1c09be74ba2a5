//! Configuration: defaults < TOML file (`--config`) < `RAMPART_*` environment variables <
//! command-line flags. Every key is documented in the README with its default. Validated at
//! start-up; the master key is held in a redacting wrapper.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rampart_core::Secret;
use serde::{Deserialize, Serialize};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has the wrong type or an unparseable value.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The raw, layered configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Directory for the SQLite database, the generated master key and file mail.
    pub data_dir: PathBuf,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…`; empty means SQLite in `data_dir`.
    pub database_url: String,
    /// PostgreSQL URL of the role that owns the schema, used for migrations only.
    pub database_owner_url: String,
    /// Whether a PostgreSQL URL's `sslmode=prefer` or `require` is raised to `verify-full`:
    /// those modes encrypt but accept any certificate. `false` keeps libpq's meaning.
    pub database_tls_verify: bool,
    /// Database connections (PostgreSQL) or SQLite readers.
    pub database_max_connections: u32,
    /// The externally visible base URL (links in mail, cookie security).
    pub public_url: String,
    /// Master key file; empty means `data_dir/master.key`.
    pub master_key_file: PathBuf,
    /// The master key being rotated away from, kept readable while `keys rotate-master`
    /// rewraps data keys; empty means none.
    pub master_key_previous_file: PathBuf,
    /// Base64 master key; takes precedence over the file when set.
    /// Held redacted from the moment it is read: `Settings` derives `Debug`, and a plaintext
    /// master key in a debug print of the configuration would be in a log.
    #[serde(skip_serializing)]
    pub master_key: Option<Secret<String>>,
    /// Where mail goes: `file:DIR`, `smtp://…` or `smtps://…`; empty means `file:data_dir/mail`.
    pub mail_transport: String,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Log filter, e.g. `info` or `rampart=debug`.
    pub log: String,
    /// Seconds an authenticated API key is cached per node (capped at 60).
    pub key_cache_ttl_secs: u64,
    /// Seconds `serve` waits for in-flight requests after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// The audit ledger (`[audit]` in TOML, `RAMPART_AUDIT__*` in the environment).
    pub audit: AuditSettings,
    /// Add `preload` to the HSTS header (sent whenever the public URL is https).
    pub hsts_preload: bool,
    /// Send `Server-Timing: auth;dur=<ms>` (time spent authenticating) on workspace routes.
    /// Off by default: it is for measuring, and tells every client how long checks take.
    pub server_timing: bool,
    /// Requests per minute for each rate-limit bucket (`[rate_limits]`, `RAMPART_RATE_LIMITS__*`).
    pub rate_limits: RateLimitSettings,
    /// Requests per UTC day per API key, by plan (`[quotas]`, `RAMPART_QUOTAS__*`); 0 is unlimited.
    pub quotas: QuotaSettings,
    /// Redis URL; when set, limits and quotas are shared by every node through it.
    pub redis_url: String,
    /// When Redis is unreachable: `closed` refuses requests (503), `open` lets them through.
    pub redis_failure: String,
    /// Prefix of every Redis key Rampart writes.
    pub redis_prefix: String,
    /// PEM certificate chain; with `tls_key`, `serve` speaks https.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A plain-HTTP address that only redirects to https.
    pub http_redirect_listen: Option<SocketAddr>,
    /// Networks (CIDR) whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<String>,
    /// Sign-in, sessions, lockout, passwords and mail (`[auth]`, `RAMPART_AUTH__*`).
    pub auth: crate::auth::AuthSettings,
    /// Connection timeouts and caps (`[http]`, `RAMPART_HTTP__*`).
    pub http: HttpSettings,
    /// The job queue's worker (`[jobs]`, `RAMPART_JOBS__*`).
    pub jobs: JobsSettings,
}

/// Requests per minute, per bucket and subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// The default API bucket, per API key.
    pub api_per_key: u32,
    /// The default API bucket, per client IP.
    pub api_per_ip: u32,
    /// Sign-in attempts, per client IP.
    pub sign_in_per_ip: u32,
    /// Public form submissions, per client IP.
    pub public_form_per_ip: u32,
    /// Public form submissions, per email address.
    pub public_form_per_email: u32,
    /// Chat-like routes, per API key.
    pub chat_per_key: u32,
    /// Heartbeat routes, per API key.
    pub heartbeat_per_key: u32,
    /// Length of the IPv6 network a per-IP limit counts as one client (`/64`: one subscriber).
    pub ipv6_prefix: u8,
    /// The same for the sign-in bucket (`/56`: what many providers hand one subscriber).
    pub sign_in_ipv6_prefix: u8,
    /// Ledger records of requests refused before their sender was known, per workspace
    /// (`0`: no cap). Past it such refusals are logged, not recorded.
    pub anonymous_refusals_per_workspace: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            api_per_key: 600,
            api_per_ip: 1200,
            sign_in_per_ip: 10,
            public_form_per_ip: 5,
            public_form_per_email: 5,
            chat_per_key: 600,
            heartbeat_per_key: 240,
            ipv6_prefix: 64,
            sign_in_ipv6_prefix: 56,
            anonymous_refusals_per_workspace: 60,
        }
    }
}

/// Daily API-key request quotas by plan; 0 means unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaSettings {
    /// Free plan.
    pub free: u64,
    /// Starter plan.
    pub starter: u64,
    /// Growth plan.
    pub growth: u64,
    /// Pro plan.
    pub pro: u64,
    /// Enterprise plan.
    pub enterprise: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            free: 100,
            starter: 100,
            growth: 2_500,
            pro: 10_000,
            enterprise: 0,
        }
    }
}

/// Audit ledger settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    /// Days an event is kept; older ones leave behind a checkpoint (daily, and `rampart audit prune`).
    pub retention_days: u32,
    /// When the daily retention job runs, `HH:MM` UTC.
    pub retention_at: String,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 365,
            retention_at: "03:00".into(),
        }
    }
}

/// The job queue's worker, in `serve` and in `rampart worker`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsSettings {
    /// Whether `serve` runs a worker too (`false`: only `rampart worker` nodes run jobs).
    pub run_in_serve: bool,
    /// Jobs a worker runs at once.
    pub concurrency: u32,
    /// Seconds a claimed job stays leased without news from its worker (renewed every third).
    pub lease_secs: u64,
    /// First idle poll delay in milliseconds; it doubles up to `poll_max_ms` while idle.
    pub poll_min_ms: u64,
    /// Longest idle poll delay in milliseconds.
    pub poll_max_ms: u64,
    /// Longest wait after a job's first failed attempt, in seconds; it doubles per attempt.
    pub retry_base_secs: u64,
    /// Longest wait between two attempts, in seconds.
    pub retry_max_secs: u64,
    /// Days a done job is kept before it is deleted.
    pub keep_done_days: u32,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            run_in_serve: true,
            concurrency: 4,
            lease_secs: 60,
            poll_min_ms: 200,
            poll_max_ms: 5_000,
            retry_base_secs: 10,
            retry_max_secs: 3_600,
            keep_done_days: 7,
        }
    }
}

impl JobsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(format!("jobs.{what}")));
        if !(1..=256).contains(&self.concurrency) {
            return bad("concurrency must be between 1 and 256");
        }
        if !(3..=3600).contains(&self.lease_secs) {
            return bad("lease_secs must be between 3 and 3600");
        }
        if !(10..=600_000).contains(&self.poll_min_ms)
            || !(self.poll_min_ms..=600_000).contains(&self.poll_max_ms)
        {
            return bad(
                "poll_min_ms must be between 10 and 600000, and poll_max_ms between it and 600000",
            );
        }
        if !(1..=86_400).contains(&self.retry_base_secs)
            || !(self.retry_base_secs..=86_400).contains(&self.retry_max_secs)
        {
            return bad(
                "retry_base_secs must be between 1 and 86400, and retry_max_secs between it and 86400",
            );
        }
        // A scheduled run's dedup key must outlive its day (crates/jobs/src/kinds/prune.rs).
        if !(2..=3650).contains(&self.keep_done_days) {
            return bad("keep_done_days must be between 2 and 3650");
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./rampart-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: String::new(),
            database_owner_url: String::new(),
            database_tls_verify: true,
            database_max_connections: 8,
            public_url: String::new(),
            master_key_file: PathBuf::new(),
            master_key_previous_file: PathBuf::new(),
            master_key: None,
            mail_transport: String::new(),
            log_format: "text".into(),
            log: "info".into(),
            key_cache_ttl_secs: 30,
            shutdown_grace_secs: 30,
            audit: AuditSettings::default(),
            hsts_preload: false,
            server_timing: false,
            rate_limits: RateLimitSettings::default(),
            quotas: QuotaSettings::default(),
            redis_url: String::new(),
            redis_failure: "closed".into(),
            redis_prefix: "rampart".into(),
            tls_cert: None,
            tls_key: None,
            http_redirect_listen: None,
            trusted_proxies: Vec::new(),
            auth: crate::auth::AuthSettings::default(),
            http: HttpSettings::default(),
            jobs: JobsSettings::default(),
        }
    }
}

/// How long a connection may take over each part of its life, and how many may be open: the
/// edge's defence against idle and trickling clients (see [`crate::conn`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Seconds from a connection's start, or from the first byte of a later request, to the end
    /// of the request's headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub keep_alive_timeout_secs: u64,
    /// Seconds the request body may go without a byte while the server waits for it.
    pub body_idle_timeout_secs: u64,
    /// Bytes per second the request body must average once the grace period is over.
    pub body_min_rate_bytes_per_sec: u64,
    /// Seconds at the start of a body before the minimum rate applies.
    pub body_min_rate_grace_secs: u64,
    /// Seconds a response may wait for the client to read any of it.
    pub send_timeout_secs: u64,
    /// Connections open at once, in total; 0 derives it from the open-file limit.
    pub max_connections: u64,
    /// Connections open at once from one client address (an IPv6 /64); 0 means 256, or a
    /// quarter of the total when that is smaller. Trusted proxies are exempt.
    pub max_connections_per_ip: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            keep_alive_timeout_secs: 60,
            body_idle_timeout_secs: 10,
            body_min_rate_bytes_per_sec: 1024,
            body_min_rate_grace_secs: 10,
            send_timeout_secs: 30,
            max_connections: 0,
            max_connections_per_ip: 0,
        }
    }
}

impl HttpSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("keep_alive_timeout_secs", self.keep_alive_timeout_secs),
            ("body_idle_timeout_secs", self.body_idle_timeout_secs),
            ("body_min_rate_grace_secs", self.body_min_rate_grace_secs),
            ("send_timeout_secs", self.send_timeout_secs),
        ] {
            // An hour is far beyond any sane value and keeps deadline arithmetic small.
            if !(1..=3600).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "http.{name} must be between 1 and 3600"
                )));
            }
        }
        if self.body_min_rate_bytes_per_sec == 0 {
            return Err(ConfigError::Invalid(
                "http.body_min_rate_bytes_per_sec must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Where the database lives, decided from `database_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (kept out of `Debug` output elsewhere: it may hold a password).
    Postgres(String),
}

impl Settings {
    /// Layers defaults, the optional TOML file and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        // RAMPART_TEST_* variables belong to the test harness, not the server.
        fig = fig.merge(
            Env::prefixed("RAMPART_")
                .filter(|k| !k.as_str().starts_with("test_"))
                .split("__"),
        );
        let settings: Settings = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(
                "log_format must be `text` or `json`".into(),
            ));
        }
        self.trusted_proxy_nets()?;
        if !matches!(self.redis_failure.as_str(), "open" | "closed") {
            return Err(ConfigError::Invalid(
                "redis_failure must be `open` or `closed`".into(),
            ));
        }
        if self.audit.retention_days == 0 {
            return Err(ConfigError::Invalid(
                "audit.retention_days must be at least 1".into(),
            ));
        }
        if self.auth.hash_nice > crate::auth::hash_threads::MAX_NICE {
            return Err(ConfigError::Invalid(format!(
                "auth.hash_nice must be between 0 and {}",
                crate::auth::hash_threads::MAX_NICE
            )));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database_max_connections must be at least 1".into(),
            ));
        }
        self.http.validate()?;
        self.jobs.validate()?;
        rampart_jobs::Schedule::daily_at(&self.audit.retention_at)
            .map_err(|e| ConfigError::Invalid(format!("audit.retention_at: {e}")))?;
        self.database()?;
        Ok(())
    }

    /// The database this configuration points at.
    pub fn database(&self) -> Result<Database, ConfigError> {
        let url = self.database_url.trim();
        if url.is_empty() {
            return Ok(Database::Sqlite(self.data_dir.join("rampart.db")));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return verified_postgres_url(url, self.database_tls_verify).map(Database::Postgres);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        Err(ConfigError::Invalid(
            "database_url must start with sqlite:// or postgres://".into(),
        ))
    }

    /// The schema owner's PostgreSQL URL, under the same TLS policy as [`Self::database`];
    /// `None` when none is configured.
    pub fn database_owner(&self) -> Result<Option<String>, ConfigError> {
        let url = self.database_owner_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        verified_postgres_url(url, self.database_tls_verify).map(Some)
    }

    /// The trusted proxy networks, parsed.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "trusted_proxies: `{n}` is not an address or CIDR"
                        ))
                    })
            })
            .collect()
    }

    /// The master key file path.
    pub fn master_key_path(&self) -> PathBuf {
        if self.master_key_file.as_os_str().is_empty() {
            self.data_dir.join("master.key")
        } else {
            self.master_key_file.clone()
        }
    }

    /// The inline master key, if configured, in a redacting wrapper.
    pub fn master_key_inline(&self) -> Option<Secret<String>> {
        self.master_key.clone()
    }

    /// The public base URL: as configured, else the listen address, over https when `serve`
    /// has a certificate (so HSTS, `Secure` and the `__Host-` cookie follow the TLS listener
    /// even when no public URL is set).
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            let scheme = if self.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.listen)
        } else {
            self.public_url.clone()
        }
    }

    /// The mail transport (defaults to files under the data dir).
    pub fn mail_transport(&self) -> String {
        if self.mail_transport.is_empty() {
            format!("file:{}", self.data_dir.join("mail").display())
        } else {
            self.mail_transport.clone()
        }
    }
}

/// `url` with an explicit `sslmode` of `prefer` or `require` raised to `verify-full` when
/// `verify` is set: both encrypt but accept any certificate, so whoever sits between the server
/// and its database could pose as the database. `verify-full` checks the chain (against
/// `sslrootcert` or the system's roots) and the host name. Other modes are left as written:
/// `disable` and `allow` ask for no TLS, and without `sslmode` libpq's default (`prefer`)
/// applies, which `serve` warns about for a database that is not on this machine.
pub fn verified_postgres_url(url: &str, verify: bool) -> Result<String, ConfigError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|_| ConfigError::Invalid("database URL: not a valid URL".into()))?;
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let weak = pairs
        .iter()
        .any(|(k, v)| k == "sslmode" && (v == "prefer" || v == "require"));
    if !(verify && weak) {
        return Ok(url.to_owned());
    }
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs.iter().map(|(k, v)| {
            if k == "sslmode" {
                (k.as_str(), "verify-full")
            } else {
                (k.as_str(), v.as_str())
            }
        }));
    Ok(parsed.to_string())
}

/// Why a PostgreSQL link is open to interception, for a start-up warning: it names a host that
/// is not this machine and does not verify the server's certificate. `None` when it does, or
/// when it goes through a local socket or the loopback interface.
pub fn unverified_postgres_link(url: &str) -> Option<&'static str> {
    let parsed = url::Url::parse(url).ok()?;
    let param = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let host = param("host")
        .or_else(|| parsed.host_str().map(str::to_owned))
        .unwrap_or_default();
    let local = host.is_empty()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match param("sslmode").as_deref() {
        _ if local => None,
        Some("verify-full" | "verify-ca") => None,
        Some("disable" | "allow") => Some("TLS is off (sslmode=disable or allow)"),
        _ => Some(
            "the server's certificate is not verified (no sslmode, or prefer/require with database_tls_verify = false)",
        ),
    }
}

/// The role name in a PostgreSQL URL (granted table privileges by `migrate`).
pub fn postgres_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (auth, _) = rest.split_once('@')?;
    let user = auth.split(':').next()?;
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_overrides_defaults_and_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\ndata_dir = \"/srv/rampart\"\nkey_cache_ttl_secs = 10\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(
            s.database().unwrap(),
            Database::Sqlite(PathBuf::from("/srv/rampart/rampart.db"))
        );
        assert_eq!(
            s.master_key_path(),
            PathBuf::from("/srv/rampart/master.key")
        );
        assert_eq!(s.public_url(), "http://127.0.0.1:9999");
        let with_tls = Settings {
            tls_cert: Some("/etc/rampart/cert.pem".into()),
            ..s.clone()
        };
        assert_eq!(with_tls.public_url(), "https://127.0.0.1:9999");
        assert_eq!(s.key_cache_ttl_secs, 10);

        std::fs::write(&file, "log_format = \"xml\"\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
        std::fs::write(&file, "database_url = \"mysql://x\"\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
        std::fs::write(&file, "listen = 42\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
        assert!(Settings::load(Some(&dir.path().join("missing.toml"))).is_err());

        // The hashing threads' nice value: 19 is Linux's lowest priority, above it is refused
        // with the setting named rather than silently clamped.
        std::fs::write(&file, "[auth]\nhash_nice = 19\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().auth.hash_nice, 19);
        std::fs::write(&file, "[auth]\nhash_nice = 20\n").unwrap();
        let refused = Settings::load(Some(&file)).unwrap_err().to_string();
        assert!(refused.contains("auth.hash_nice"), "{refused}");
        assert_eq!(Settings::default().auth.hash_nice, 10);
    }

    /// The job settings: a file sets them, and a value out of range, or a retention time that
    /// is not HH:MM, stops start-up naming the setting.
    #[test]
    fn job_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(
            &file,
            "[jobs]\nrun_in_serve = false\nconcurrency = 2\n[audit]\nretention_at = \"04:30\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert!(!s.jobs.run_in_serve);
        assert_eq!(s.jobs.concurrency, 2);
        assert_eq!(s.audit.retention_at, "04:30");
        assert_eq!(Settings::default().audit.retention_at, "03:00");
        for (toml, named) in [
            ("[jobs]\nconcurrency = 0\n", "jobs.concurrency"),
            ("[jobs]\nlease_secs = 1\n", "jobs.lease_secs"),
            (
                "[jobs]\npoll_min_ms = 500\npoll_max_ms = 100\n",
                "jobs.poll_min_ms",
            ),
            (
                "[jobs]\nretry_base_secs = 60\nretry_max_secs = 30\n",
                "jobs.retry_base_secs",
            ),
            ("[jobs]\nkeep_done_days = 1\n", "jobs.keep_done_days"),
            ("[audit]\nretention_at = \"3am\"\n", "audit.retention_at"),
        ] {
            std::fs::write(&file, toml).unwrap();
            let refused = Settings::load(Some(&file)).unwrap_err().to_string();
            assert!(refused.contains(named), "{toml}: {refused}");
        }
    }

    #[test]
    fn a_debug_print_of_the_settings_never_shows_the_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        let key = "c2VjcmV0LW1hc3Rlci1rZXktbWF0ZXJpYWwtMzItYnl0ZXM=";
        std::fs::write(&file, format!("master_key = \"{key}\"\n")).unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(
            s.master_key_inline().map(|k| k.expose().clone()).as_deref(),
            Some(key)
        );
        let printed = format!("{s:?} {s:#?}");
        assert!(!printed.contains(key), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn postgres_tls_is_verified_unless_told_otherwise() {
        let raised = verified_postgres_url(
            "postgres://app@db.example:5432/r?sslmode=require&application_name=x",
            true,
        )
        .unwrap();
        assert_eq!(
            raised,
            "postgres://app@db.example:5432/r?sslmode=verify-full&application_name=x"
        );
        assert_eq!(
            verified_postgres_url("postgres://app@db/r?sslmode=prefer", true).unwrap(),
            "postgres://app@db/r?sslmode=verify-full"
        );
        for kept in [
            "postgres://app@db/r?sslmode=verify-ca&sslrootcert=/ca.pem",
            "postgres://app@db/r?sslmode=disable",
            "postgres://app@db/r",
        ] {
            assert_eq!(verified_postgres_url(kept, true).unwrap(), kept);
        }
        assert_eq!(
            verified_postgres_url("postgres://app@db/r?sslmode=require", false).unwrap(),
            "postgres://app@db/r?sslmode=require"
        );
        let s = Settings {
            database_url: "postgres://app@db/r?sslmode=require".into(),
            database_owner_url: "postgres://owner@db/r?sslmode=require".into(),
            ..Settings::default()
        };
        assert_eq!(
            s.database().unwrap(),
            Database::Postgres("postgres://app@db/r?sslmode=verify-full".into())
        );
        assert_eq!(
            s.database_owner().unwrap().as_deref(),
            Some("postgres://owner@db/r?sslmode=verify-full")
        );

        assert!(unverified_postgres_link("postgres://app@db.example/r").is_some());
        assert!(unverified_postgres_link("postgres://app@db.example/r?sslmode=require").is_some());
        assert!(unverified_postgres_link("postgres://app@db.example/r?sslmode=disable").is_some());
        assert!(
            unverified_postgres_link("postgres://app@db.example/r?sslmode=verify-full").is_none()
        );
        assert!(unverified_postgres_link("postgres://app@127.0.0.1/r").is_none());
        assert!(unverified_postgres_link("postgres://app@[::1]/r").is_none());
        assert!(unverified_postgres_link("postgres://app@localhost/r").is_none());
        assert!(unverified_postgres_link("postgres:///r?host=/var/run/postgresql").is_none());
    }

    #[test]
    fn postgres_urls_name_their_role() {
        assert_eq!(
            postgres_user("postgres://app:pw@db:5432/x").as_deref(),
            Some("app")
        );
        assert_eq!(postgres_user("postgres://db/x"), None);
        let s = Settings {
            database_url: "postgresql://u@h/d".into(),
            ..Settings::default()
        };
        assert_eq!(
            s.database().unwrap(),
            Database::Postgres("postgresql://u@h/d".into())
        );
    }
}
