//! Scenario 4's pieces: the machine's hashing limit measured in this process with the same
//! argon2id parameters as `rampart` (m = 19 MiB, t = 2, p = 1; `crates/server/src/auth/password.rs`),
//! and users signed up and confirmed over HTTP exactly as a person would (the confirmation
//! link read from the `.eml` files of the default `file:` mail transport).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde_json::{Value, json};

use crate::stats::Summary;

/// The password every bench user has (meets the default policy, not in the breach corpus).
pub const PASSWORD: &str = "Bench-Signin-7f3a9c2e";

/// The production parameters (keep in step with `auth/password.rs`).
fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// argon2id at the production parameters into working memory allocated once and reused, so
/// that what is timed is the hash and not this process's allocator (see [`hash_time`]).
struct KeptMemory {
    hasher: Argon2<'static>,
    memory: Vec<Block>,
    out: [u8; 32],
}

impl KeptMemory {
    fn new() -> Result<Self> {
        let hasher = argon2()?;
        let memory = vec![Block::new(); hasher.params().block_count()];
        Ok(Self {
            hasher,
            memory,
            out: [0; 32],
        })
    }

    /// One hash of `password`.
    fn hash(&mut self, password: &str) -> Result<()> {
        self.hasher
            .hash_password_into_with_memory(
                password.as_bytes(),
                b"rampart-bench-salt",
                &mut self.out,
                &mut self.memory,
            )
            .map_err(|e| anyhow!("argon2: {e}"))
    }
}

/// One argon2id hash's time here: the fastest of several on the wall clock, and the mean CPU
/// time of the thread that ran them.
pub struct HashTime {
    /// Wall-clock seconds of the fastest hash.
    pub fastest: f64,
    /// Mean CPU seconds per hash, when the kernel reports a thread's CPU time.
    pub cpu: Option<f64>,
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
/// (after one untimed hash): the fastest on the wall clock, and the mean CPU time of all.
///
/// The fastest is the hash's own cost: whatever else runs on the machine only ever adds to a
/// hash's time, and on two vCPUs that may share one physical core even the CPU time of a hash
/// grows while the other runs (a hash measured 13 ms after an idle spell and 20 ms just after a
/// sign-in run, in CPU time, on 2026-12-06).
///
/// The hash timed is the work of a sign-in's verification, argon2id at the production
/// parameters into 32 bytes, in working memory allocated once and reused, so that the figure
/// is the hash and not this process's allocator. Timing `hash_password` (until 2026-12-06)
/// measured about 40 % more than the hash: each call's 19 MiB came from fresh pages, thousands
/// of minor page faults a hash (counted in `/proc/thread-self/stat`), and `verify_password`
/// did as badly in this process, which allocates far more than a server does, while it took
/// 14 ms and no page fault in a small program of its own.
pub fn hash_time(samples: usize) -> Result<HashTime> {
    let mut hasher = KeptMemory::new()?;
    let mut hash = |i: usize| hasher.hash(&format!("{PASSWORD}-{i}"));
    hash(0)?;
    let mut wall = Vec::with_capacity(samples);
    let cpu_before = thread_cpu_seconds();
    for i in 1..=samples {
        let started = Instant::now();
        hash(i)?;
        wall.push(started.elapsed().as_secs_f64());
    }
    let cpu = match (cpu_before, thread_cpu_seconds()) {
        (Some(before), Some(after)) if samples > 0 => Some((after - before) / samples as f64),
        _ => None,
    };
    let fastest = Summary::of(&wall)
        .map(|s| s.min)
        .ok_or_else(|| anyhow!("no hash timed"))?;
    Ok(HashTime { fastest, cpu })
}

/// Hashes per second with one thread per core hashing at once, `per_thread` hashes each (after
/// one untimed hash each), from the moment all start to the moment the last ends.
///
/// `cores ÷ one hash's time` assumes the cores hash independently. Where they are the
/// hyperthreads of fewer physical cores, or share a memory bus that argon2's 19 MiB a hash
/// keeps busy, hashes at once each run slower; this rate is what the machine hashes with every
/// core at it, the ceiling a server running one hash per core meets.
pub fn parallel_hash_rate(threads: usize, per_thread: usize) -> Result<f64> {
    let start = std::sync::Barrier::new(threads + 1);
    let ends = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                scope.spawn(move || -> Result<Instant> {
                    let mut hasher = KeptMemory::new();
                    let mut hash = |i: usize| match &mut hasher {
                        Ok(h) => h.hash(&format!("{PASSWORD}-{t}-{i}")),
                        Err(e) => Err(anyhow!("argon2: {e}")),
                    };
                    // A failed warm-up still reaches the barrier, so no thread waits forever.
                    let warm = hash(0);
                    start.wait();
                    warm?;
                    for i in 1..=per_thread {
                        hash(i)?;
                    }
                    Ok(Instant::now())
                })
            })
            .collect();
        start.wait();
        let started = Instant::now();
        let ends: Result<Vec<Instant>> = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("a hashing thread panicked"))?)
            .collect();
        ends.map(|ends| (started, ends))
    });
    let (started, ends) = ends?;
    let last = ends
        .into_iter()
        .max()
        .ok_or_else(|| anyhow!("no hashing thread"))?;
    let seconds = last.duration_since(started).as_secs_f64();
    if seconds <= 0.0 {
        bail!("hashing took no time");
    }
    Ok((threads * per_thread) as f64 / seconds)
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
    // Mail is a job the server's worker sends after the answer: wait (up to 60 s) until every
    // address has its link.
    let deadline = Instant::now() + Duration::from_secs(60);
    let tokens = loop {
        let tokens = confirm_tokens(mail_dir)?;
        let all = (0..n).all(|i| {
            let to = email(i);
            tokens.iter().any(|(addr, _)| addr.contains(&to))
        });
        if all {
            break tokens;
        }
        if Instant::now() > deadline {
            bail!(
                "after 60 s only {} of {n} confirmation links were mailed",
                tokens.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
