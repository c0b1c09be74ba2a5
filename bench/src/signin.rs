//! Scenario 4's pieces: the machine's hashing limit measured in this process with the same
//! argon2id parameters as `rampart` (m = 19 MiB, t = 2, p = 1; `crates/server/src/auth/password.rs`),
//! timing the hash a sign-in runs (a verification against a stored hash),
//! and users signed up and confirmed over HTTP exactly as a person would (the confirmation
//! link read from the `.eml` files of the default `file:` mail transport).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use serde_json::{Value, json};

use crate::stats::Summary;

/// The password every bench user has (meets the default policy, not in the breach corpus).
pub const PASSWORD: &str = "Bench-Signin-7f3a9c2e";

/// The production parameters (keep in step with `auth/password.rs`).
fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// One argon2id hash's time here: the wall clock, and the CPU time of the thread that hashed.
pub struct HashTime {
    /// Median wall-clock seconds per hash.
    pub wall: f64,
    /// Mean CPU seconds per hash, when the kernel reports a thread's CPU time.
    pub cpu: Option<f64>,
}

impl HashTime {
    /// The time a hash costs a core: its CPU time, else the wall clock.
    pub fn per_core(&self) -> f64 {
        self.cpu.unwrap_or(self.wall)
    }
}

/// CPU seconds this thread has run, from the scheduler's own account
/// (`/proc/thread-self/schedstat`, in nanoseconds). Unlike the wall clock it does not count
/// time the thread spent waiting for a core that another process held. It is brought up to date
/// at every scheduler tick, so it is read around a run of hashes, not around each one.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}

/// One argon2id hash's time here, over `samples` hashes run one after another on one thread
/// (after one untimed hash to warm the allocator): the median wall clock of each, and the mean
/// CPU time of all of them.
///
/// The hash timed is the one a sign-in runs: `verify_password` of the password against a
/// stored argon2id hash, as `rampart` verifies it (its parameters read from the stored hash).
/// Timing `hash_password` instead (what this did before 2026-12-06) measured about 40 % more:
/// each new hash's 19 MiB came from fresh pages, thousands of page faults a hash (counted in
/// `/proc/thread-self/stat`), where verifications reuse their memory.
pub fn hash_time(samples: usize) -> Result<HashTime> {
    let stored = argon2()?
        .hash_password(PASSWORD.as_bytes())
        .map_err(|e| anyhow!("argon2: {e}"))?
        .to_string();
    let stored = PasswordHash::new(&stored).map_err(|e| anyhow!("argon2: {e}"))?;
    let verify = || {
        Argon2::default()
            .verify_password(PASSWORD.as_bytes(), &stored)
            .map_err(|e| anyhow!("argon2: {e}"))
    };
    verify()?;
    let mut wall = Vec::with_capacity(samples);
    let cpu_before = thread_cpu_seconds();
    for _ in 0..samples {
        let started = Instant::now();
        verify()?;
        wall.push(started.elapsed().as_secs_f64());
    }
    let cpu = match (cpu_before, thread_cpu_seconds()) {
        (Some(before), Some(after)) if samples > 0 => Some((after - before) / samples as f64),
        _ => None,
    };
    let wall = Summary::of(&wall)
        .map(|s| s.median)
        .ok_or_else(|| anyhow!("no hash timed"))?;
    Ok(HashTime { wall, cpu })
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The email of bench user `i`.
pub fn email(i: usize) -> String {
    format!("signin{i}@bench.example.com")
}

/// Signs up `n` users over HTTP and confirms each through the link mailed to `mail_dir`.
pub async fn sign_up_confirmed(base: &str, mail_dir: &Path, n: usize) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    for i in 0..n {
        let resp = client
            .post(format!("{base}/v1/auth/signup"))
            .json(&json!({
                "email": email(i),
                "password": PASSWORD,
                "name": format!("Bench Person {i}"),
                "org_name": format!("Bench Org {i}"),
            }))
            .send()
            .await?;
        if resp.status().as_u16() != 202 {
            bail!(
                "sign-up answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
    }
    // Mail is written before the sign-up answers, so every link is there now.
    let tokens = confirm_tokens(mail_dir)?;
    for i in 0..n {
        let to = email(i);
        let token = tokens
            .iter()
            .find(|(addr, _)| addr.contains(&to))
            .map(|(_, t)| t.clone())
            .ok_or_else(|| anyhow!("no confirmation link mailed to {to}"))?;
        let resp = client
            .post(format!("{base}/v1/auth/confirm"))
            .json(&json!({"token": token}))
            .send()
            .await?;
        if resp.status().as_u16() != 200 {
            bail!(
                "confirming {to} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
    }
    // One sign-in to be sure the flood will get what it expects.
    let resp = client
        .post(format!("{base}/v1/auth/signin"))
        .json(&json!({"email": email(0), "password": PASSWORD}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 || body["status"] != "signed_in" {
        bail!("a confirmed user's sign-in answered {status}: {body}");
    }
    Ok(())
}

/// `(To header, token)` of every confirmation link in the `.eml` files of `dir`.
fn confirm_tokens(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let raw = std::fs::read_to_string(&path)?;
        let to = raw
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .to_owned();
        // Undo quoted-printable (soft line breaks and `=3D`) in case lettre chose it.
        let text = raw
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        let marker = "/auth/confirm?token=";
        if let Some(at) = text.find(marker) {
            let token: String = text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            found.push((to, token));
        }
    }
    Ok(found)
}
