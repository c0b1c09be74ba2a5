//! The links to PostgreSQL and Redis are encrypted and verified (issue 32, finding 10), proven
//! against a PostgreSQL that accepts only TLS connections (`hostssl`, `hostnossl … reject`)
//! and a Redis that listens only on its `tls-port`, both started here with a certificate from a
//! private CA, and the real `rampart` binary: `serve` runs over both links with the CA given
//! (`sslrootcert`, `SSL_CERT_FILE`), and refuses to start when the certificate cannot be
//! verified or the link would be plain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let out = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-server.pem")),
        key: dir.join(format!("{name}-server.key")),
    };
    std::fs::write(&out.ca, ca_cert.pem()).unwrap();
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn postgres_bin(tool: &str) -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(Result::ok)
        .map(|v| v.path().join("bin").join(tool))
        .find(|p| p.exists())
}

/// Whether the peers can run here: PostgreSQL's server programs, `runuser` and root (PostgreSQL
/// refuses to run as root, so it runs as the `postgres` user), and redis-server. Outside CI a
/// missing one skips the test, saying so; in CI it fails it.
fn peers_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ok = root
        && postgres_bin("initdb").is_some()
        && Command::new("runuser").arg("--help").output().is_ok()
        && Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!(
                "CI: the TLS link test needs root, PostgreSQL's initdb, runuser and redis-server"
            );
        }
        common::announce_skip(
            "the TLS link tests",
            "they need root, PostgreSQL's initdb, runuser and redis-server",
        );
    }
    ok
}

/// A PostgreSQL of its own that takes TLS connections only, with `pki`'s certificate.
fn start_postgres(dir: &Path, pki: &Pki) -> (Running, u16) {
    let data = dir.join("pg");
    std::fs::create_dir(&data).unwrap();
    let chown = |p: &Path| {
        assert!(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    };
    chown(&data);
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(postgres_bin("initdb").unwrap())
        .args(["-U", "postgres", "--auth=trust", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&pki.cert, data.join("server.crt")).unwrap();
    std::fs::copy(&pki.key, data.join("server.key")).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    chown(&data);
    std::fs::set_permissions(
        data.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(postgres_bin("postgres").unwrap())
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&data)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=server.crt",
            "-c",
            "ssl_key_file=server.key",
            "-c",
            "fsync=off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(postgres_bin("pg_isready").unwrap())
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return (running, port);
        }
        assert!(
            Instant::now() < deadline,
            "the TLS PostgreSQL did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_redis(dir: &Path, pki: &Pki) -> (Running, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS Redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (running, port)
}

/// `rampart serve` with `env`; `Ok(address)` once it serves, `Err(log)` when it exits first.
fn serve(dir: &Path, name: &str, env: &[(&str, String)]) -> Result<(Running, String), String> {
    let data = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAMPART_DATA_DIR", &data)
        .env("RAMPART_LOG_FORMAT", "json")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    // Killed when dropped, so a failed assertion below leaves no server behind.
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && v["fields"]["message"] == "rampart is serving"
            {
                let addr = v["fields"]["listen"].as_str().unwrap().to_owned();
                return Ok((running, addr));
            }
        }
        if running.0.try_wait().unwrap().is_some() {
            return Err(text);
        }
        assert!(
            Instant::now() <= deadline,
            "serve neither served nor exited: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_redis_links_are_encrypted_and_verified() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let (_pg, pg_port) = start_postgres(dir.path(), &good);
    let (_redis, redis_port) = start_redis(dir.path(), &good);

    // Roles and a database, over the same verified link, as an operator would set them up.
    let ca = good.ca.display().to_string();
    let admin = format!(
        "postgres://postgres@localhost:{pg_port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    );
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ssl, "the peer itself only speaks TLS");
    for sql in [
        "CREATE ROLE rampart_owner LOGIN",
        "CREATE ROLE rampart_app LOGIN NOSUPERUSER NOBYPASSRLS",
        "CREATE DATABASE rampart OWNER rampart_owner",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    // `sslmode=require` is raised to verify-full: with the right CA, everything runs.
    let url = |role: &str, mode: &str, ca: &Path| {
        format!(
            "postgres://{role}@localhost:{pg_port}/rampart?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };
    // `roots` joins the system's roots (SSL_CERT_FILE), as a private CA's operator sets it;
    // Redis is configured only when `redis` is set.
    let env = |mode: &str, ca: &Path, roots: &Path, redis: bool| {
        let mut env = vec![
            ("RAMPART_DATABASE_URL", url("rampart_app", mode, ca)),
            ("RAMPART_DATABASE_OWNER_URL", url("rampart_owner", mode, ca)),
            ("SSL_CERT_FILE", roots.display().to_string()),
        ];
        if redis {
            env.push((
                "RAMPART_REDIS_URL",
                format!("rediss://localhost:{redis_port}"),
            ));
            env.push(("RAMPART_REDIS_PREFIX", "tls-links-test".to_owned()));
        }
        env
    };
    let (server, addr) = serve(
        dir.path(),
        "good",
        &env("require", &good.ca, &good.ca, true),
    )
    .unwrap_or_else(|log| panic!("serve over verified TLS links failed: {log}"));
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "the database answers over TLS");
    // A request that meets the shared limiter: its per-IP check is a script run in Redis, so
    // an answer means Redis answered over TLS (with `redis_failure=closed`, the default, an
    // unreachable Redis is a 503).
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "refused for want of a session, not for want of Redis"
    );
    assert!(
        r.headers().contains_key("ratelimit-limit"),
        "the limiter answered"
    );
    let log = std::fs::read_to_string(dir.path().join("good.log")).unwrap();
    assert!(log.contains("shared through Redis"), "{log}");
    drop(server);

    // A certificate from a CA the server was not told to trust: it does not start. (The trust
    // is the system's roots, SSL_CERT_FILE among them, plus `sslrootcert`: neither holds the
    // CA that signed this database's certificate.)
    let refused = serve(
        dir.path(),
        "wrong-ca",
        &env("require", &other.ca, &other.ca, false),
    )
    .err()
    .expect("serve must refuse a database certificate it cannot verify");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Unless the operator keeps libpq's meaning of `require` (encrypted, not verified).
    let mut unverified = env("require", &other.ca, &other.ca, false);
    unverified.push(("RAMPART_DATABASE_TLS_VERIFY", "false".to_owned()));
    let (server, _) = serve(dir.path(), "unverified", &unverified).unwrap_or_else(|log| {
        panic!("database_tls_verify = false keeps require as libpq has it: {log}")
    });
    drop(server);
    // A plain link is refused by the server: nothing is sent in the clear.
    let plain = serve(
        dir.path(),
        "plain",
        &env("disable", &good.ca, &good.ca, false),
    )
    .err()
    .expect("serve must not run over a plain link the database refuses");
    assert!(
        plain.contains("no encryption") || plain.contains("rejects"),
        "{plain}"
    );
    // Redis with a certificate the server cannot verify: it refuses to start (limits fail closed).
    let redis_refused = serve(
        dir.path(),
        "wrong-redis-ca",
        &env("require", &good.ca, &other.ca, true),
    )
    .err()
    .expect("serve must refuse a Redis certificate it cannot verify");
    assert!(
        redis_refused.contains("Redis") && redis_refused.contains("UnknownIssuer"),
        "{redis_refused}"
    );
}
