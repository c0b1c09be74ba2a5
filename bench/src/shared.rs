//! The Redis a `rampart serve` shares its rate limits and quotas through
//! (`RAMPART_REDIS_URL`), as several nodes would: what it spends on each request, read from
//! its own counters around a run, and the removal of the keys the bench server left in it.

use anyhow::{Context, Result, anyhow};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, InfoDict};

/// Redis's own CPU time and count of scripts run at one moment (`INFO cpu commandstats`).
#[derive(Clone, Copy)]
pub struct Counters {
    cpu_secs: f64,
    scripts: u64,
}

/// What Redis spent per request answered between two [`Counters`].
pub struct PerRequest {
    /// Redis's user + system CPU, in microseconds.
    pub cpu_us: f64,
    /// Scripts Redis ran (`EVALSHA` and `EVAL` calls): the limiter's round trips, since it
    /// sends nothing else per request.
    pub scripts: f64,
    /// Redis's CPU over the interval, in seconds.
    pub cpu_secs: f64,
}

impl Counters {
    /// `None` when nothing was answered or a counter went backwards (Redis restarted).
    pub fn per_request(self, later: Counters, requests: u64) -> Option<PerRequest> {
        let cpu = later.cpu_secs - self.cpu_secs;
        let scripts = later.scripts.checked_sub(self.scripts)?;
        (requests > 0 && cpu >= 0.0).then(|| PerRequest {
            cpu_us: cpu * 1e6 / requests as f64,
            scripts: scripts as f64 / requests as f64,
            cpu_secs: cpu,
        })
    }
}

/// One Redis server, and the key prefix of the one bench server that uses it.
#[derive(Clone)]
pub struct SharedRedis {
    url: String,
    prefix: String,
    con: MultiplexedConnection,
}

impl SharedRedis {
    /// Connects and checks that no key under `prefix` exists yet, so that the figures start
    /// from an empty limiter and the clean-up deletes only what the bench wrote.
    pub async fn connect(url: &str, prefix: String) -> Result<Self> {
        let client =
            redis::Client::open(url).context("RAMPART_BENCH_REDIS_URL is not a Redis URL")?;
        let con = client
            .get_multiplexed_async_connection()
            .await
            .context("RAMPART_BENCH_REDIS_URL is set but Redis is unreachable")?;
        let shared = Self {
            url: url.to_owned(),
            prefix,
            con,
        };
        let existing = shared.keys().await?;
        if !existing.is_empty() {
            return Err(anyhow!(
                "Redis already holds {} keys under the bench prefix `{}:`",
                existing.len(),
                shared.prefix
            ));
        }
        Ok(shared)
    }

    /// The URL `rampart serve` gets as `RAMPART_REDIS_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix `rampart serve` gets as `RAMPART_REDIS_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Redis's counters now.
    pub async fn counters(&self) -> Result<Counters> {
        let mut con = self.con.clone();
        let info: InfoDict = redis::cmd("INFO")
            .arg("cpu")
            .arg("commandstats")
            .query_async(&mut con)
            .await
            .context("INFO cpu commandstats")?;
        let field = |name: &str| -> Result<f64> {
            info.get::<f64>(name)
                .ok_or_else(|| anyhow!("Redis's INFO has no `{name}`"))
        };
        // A command never run has no line; commands run inside a script have lines of their
        // own, so only the script commands themselves are counted.
        let mut scripts = 0;
        for name in ["cmdstat_evalsha", "cmdstat_eval"] {
            if let Some(line) = info.get::<String>(name) {
                scripts += calls(&line)
                    .ok_or_else(|| anyhow!("Redis's `{name}` has no call count: {line}"))?;
            }
        }
        Ok(Counters {
            cpu_secs: field("used_cpu_user")? + field("used_cpu_sys")?,
            scripts,
        })
    }

    async fn keys(&self) -> Result<Vec<String>> {
        let mut con = self.con.clone();
        let mut iter = con
            .scan_match::<_, String>(format!("{}:*", self.prefix))
            .await
            .context("SCAN")?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.context("SCAN")?);
        }
        Ok(keys)
    }

    /// Deletes every key under the prefix; returns how many there were.
    pub async fn delete_keys(&self) -> Result<usize> {
        let keys = self.keys().await?;
        let mut con = self.con.clone();
        for chunk in keys.chunks(500) {
            let _: u64 = con.del(chunk).await.context("DEL")?;
        }
        Ok(keys.len())
    }
}

/// The `calls=N` of a `cmdstat_*` line of `INFO commandstats` (`calls=N,usec=…,…`).
fn calls(line: &str) -> Option<u64> {
    line.split(',')
        .find_map(|part| part.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_count_is_read_from_a_commandstats_line() {
        let line = "calls=1250,usec=2503,usec_per_call=2.00,rejected_calls=0,failed_calls=0";
        assert_eq!(calls(line), Some(1250));
        assert_eq!(calls("usec=3,calls=7"), Some(7));
        assert_eq!(calls("usec=3"), None);
    }

    #[test]
    fn scripts_and_cpu_are_divided_by_the_requests_answered() {
        let before = Counters {
            cpu_secs: 1.0,
            scripts: 100,
        };
        let after = Counters {
            cpu_secs: 1.5,
            scripts: 20_100,
        };
        let per = before.per_request(after, 10_000).expect("figures");
        assert!((per.cpu_us - 50.0).abs() < 1e-9);
        assert!((per.scripts - 2.0).abs() < 1e-12);
        assert!(before.per_request(after, 0).is_none());
        assert!(after.per_request(before, 10).is_none());
    }
}
