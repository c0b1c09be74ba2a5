//! Rate limits and daily quotas, in-process or in Redis.
//!
//! In Redis, each check is one atomic Lua script using the server's clock, so nodes with
//! drifting clocks still share one limit; a key's rate check and its quota count share one
//! script ([`Limiter::check_and_count`]), so a request pays one round trip for both, and an
//! address's check can join them ([`Limiter::check_both_and_count`]). Those scripts touch
//! several keys: one Redis server, not a Redis Cluster, holds the limits. When
//! Redis cannot be reached, the configured [`RedisFailure`] decides: `Open` lets the request
//! through, `Closed` refuses it; either way the failure is logged at error level, every time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::gcra::{self, Decision, Rate};

/// What to do when Redis is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Allow requests (availability first).
    Open,
    /// Refuse requests (limits first).
    Closed,
}

/// Why a limit could not be checked (only with `RedisFailure::Closed`).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// Redis is unreachable and the policy is to fail closed.
    #[error("the rate-limit store is unavailable")]
    Unavailable,
    /// The Redis URL is not valid.
    #[error("invalid Redis URL")]
    BadUrl,
}

/// `gcra(key, emission_us, tau_us)`: one GCRA step on `key` at the server's clock, as
/// [`gcra::step`] does in-process; returns `{allowed, remaining, reset_ms, retry_after_ms}`.
macro_rules! lua_gcra {
    () => {
        r"
local function gcra(key, emission, tau)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  emission = tonumber(emission)
  tau = tonumber(tau)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + emission
  local ahead = new_tat - now
  if ahead > tau then
    return {0, 0, math.ceil((tat - now) / 1000), math.ceil((ahead - tau) / 1000)}
  end
  -- Formatted as an integer: Lua would write a large number in exponent form and lose digits.
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000))
  return {1, math.floor((tau - ahead) / emission), math.ceil(ahead / 1000), 0}
end
"
    };
}

/// `count(key, ttl_s)`: one more request on a day's counter, which expires `ttl_s` after its
/// first; returns the count including this one.
macro_rules! lua_count {
    () => {
        r"
local function count(key, ttl)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ttl) end
  return n
end
"
    };
}

const GCRA_LUA: &str = concat!(lua_gcra!(), "return gcra(KEYS[1], ARGV[1], ARGV[2])\n");

const QUOTA_LUA: &str = concat!(lua_count!(), "return count(KEYS[1], ARGV[1])\n");

/// The rate step and, when it allows the request, the quota count, in one round trip: the
/// decision with the count as a fifth element (-1 when refused, and nothing counted).
const GCRA_QUOTA_LUA: &str = concat!(
    lua_gcra!(),
    lua_count!(),
    "local d = gcra(KEYS[1], ARGV[1], ARGV[2])\n",
    "if d[1] == 1 then d[5] = count(KEYS[2], ARGV[3]) else d[5] = -1 end\n",
    "return d\n"
);

/// Two rate steps and, when both allow the request, the quota count, in one round trip: the
/// first decision, 1 if the second step ran (0 when the first refused, and nothing else was
/// consumed), the second decision, then the count (-1 when refused).
const GCRA_GCRA_QUOTA_LUA: &str = concat!(
    lua_gcra!(),
    lua_count!(),
    "local a = gcra(KEYS[1], ARGV[1], ARGV[2])\n",
    "if a[1] == 0 then return {a, 0, {0, 0, 0, 0}, -1} end\n",
    "local b = gcra(KEYS[2], ARGV[3], ARGV[4])\n",
    "local n = -1\n",
    "if b[1] == 1 then n = count(KEYS[3], ARGV[5]) end\n",
    "return {a, 1, b, n}\n"
);

/// A GCRA step as the Lua script returns it: `(allowed, remaining, reset_ms, retry_after_ms)`.
type ScriptStep = (u8, u64, u64, u64);

/// What [`Limiter::check_both_and_count`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BothChecked {
    /// The first limit's decision.
    pub first: Decision,
    /// The second limit's decision; `None` when the first refused (then nothing else was
    /// consumed).
    pub second: Option<Decision>,
    /// The quota count including this request; `None` when either limit refused.
    pub count: Option<u64>,
}

/// How long a day's quota counter lives in Redis: two days, so the day it counts is over
/// everywhere before it goes.
const QUOTA_TTL_S: u64 = 2 * 24 * 60 * 60;

enum Backend {
    Local {
        tats: Mutex<HashMap<String, u64>>,
        counts: Mutex<HashMap<String, u64>>,
    },
    Redis {
        conn: ConnectionManager,
        prefix: String,
        failure: RedisFailure,
        gcra: Script,
        quota: Script,
        gcra_quota: Script,
        gcra_gcra_quota: Script,
    },
}

/// The limiter shared by every request of a node.
pub struct Limiter(Backend);

const LOCAL_MAX_KEYS: usize = 200_000;

/// A day's quota counter for `subject`.
fn day_key(subject: &str, day: NaiveDate) -> String {
    format!("{subject}:{day}")
}

/// The decision of a GCRA step the Lua script took: `(allowed, remaining, reset_ms,
/// retry_after_ms)`.
fn redis_decision(
    rate: Rate,
    (allowed, remaining, reset_ms, retry_after_ms): ScriptStep,
) -> Decision {
    Decision {
        allowed: allowed == 1,
        limit: rate.limit,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX).min(rate.limit),
        reset_ms,
        retry_after_ms,
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Limiter {
    /// An in-process limiter (one node).
    pub fn local() -> Self {
        Self(Backend::Local {
            tats: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A limiter shared through Redis; keys start with `prefix`.
    pub async fn redis(
        url: &str,
        prefix: &str,
        failure: RedisFailure,
    ) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(|_| LimiterError::BadUrl)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = match ConnectionManager::new_with_config(client, config).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "RATE-LIMIT STORE (REDIS) UNREACHABLE AT START");
                return Err(LimiterError::Unavailable);
            }
        };
        Ok(Self(Backend::Redis {
            conn,
            prefix: prefix.to_owned(),
            failure,
            gcra: Script::new(GCRA_LUA),
            quota: Script::new(QUOTA_LUA),
            gcra_quota: Script::new(GCRA_QUOTA_LUA),
            gcra_gcra_quota: Script::new(GCRA_GCRA_QUOTA_LUA),
        }))
    }

    /// Whether this limiter is shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Backend::Redis { .. })
    }

    fn degraded(
        failure: RedisFailure,
        e: &redis::RedisError,
        what: &str,
        rate_limit: u32,
    ) -> Result<Decision, LimiterError> {
        match failure {
            RedisFailure::Open => {
                tracing::error!(error = %e, check = what, "RATE-LIMIT STORE (REDIS) UNAVAILABLE: FAILING OPEN, request allowed unchecked");
                Ok(Decision {
                    allowed: true,
                    limit: rate_limit,
                    remaining: rate_limit,
                    reset_ms: 0,
                    retry_after_ms: 0,
                })
            }
            RedisFailure::Closed => {
                tracing::error!(error = %e, check = what, "RATE-LIMIT STORE (REDIS) UNAVAILABLE: FAILING CLOSED, request refused");
                Err(LimiterError::Unavailable)
            }
        }
    }

    /// Checks and consumes one request of `rate` for `key`.
    pub async fn check(&self, key: &str, rate: Rate) -> Result<Decision, LimiterError> {
        match &self.0 {
            Backend::Local { tats, .. } => {
                let now = now_us();
                let mut map = tats.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= LOCAL_MAX_KEYS {
                    // Entries whose TAT is in the past carry no state: drop them.
                    map.retain(|_, tat| *tat > now);
                }
                // The key is copied only the first time it is seen.
                let decision = match map.get_mut(key) {
                    Some(slot) => {
                        let (decision, tat) = gcra::step(rate, Some(*slot), now);
                        *slot = tat;
                        decision
                    }
                    None => {
                        let (decision, tat) = gcra::step(rate, None, now);
                        map.insert(key.to_owned(), tat);
                        decision
                    }
                };
                Ok(decision)
            }
            Backend::Redis {
                conn,
                prefix,
                failure,
                gcra,
                ..
            } => {
                let mut conn = conn.clone();
                let result: Result<(u8, u64, u64, u64), _> = gcra
                    .key(format!("{prefix}:rl:{key}"))
                    .arg(rate.emission_us())
                    .arg(rate.tolerance_us())
                    .invoke_async(&mut conn)
                    .await;
                match result {
                    Ok(step) => Ok(redis_decision(rate, step)),
                    Err(e) => Self::degraded(*failure, &e, "rate limit", rate.limit),
                }
            }
        }
    }

    /// Counts one request against `subject`'s quota for the UTC day of `now`; returns the
    /// count including this request.
    pub async fn count_today(
        &self,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, LimiterError> {
        let day: NaiveDate = now.date_naive();
        let key = day_key(subject, day);
        match &self.0 {
            Backend::Local { counts, .. } => {
                let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= LOCAL_MAX_KEYS {
                    let today = format!(":{day}");
                    map.retain(|k, _| k.ends_with(&today));
                }
                let n = map.entry(key).or_insert(0);
                *n += 1;
                Ok(*n)
            }
            Backend::Redis {
                conn,
                prefix,
                failure,
                quota,
                ..
            } => {
                let mut conn = conn.clone();
                let result: Result<u64, _> = quota
                    .key(format!("{prefix}:quota:{key}"))
                    .arg(QUOTA_TTL_S)
                    .invoke_async(&mut conn)
                    .await;
                match result {
                    Ok(n) => Ok(n),
                    Err(e) => Self::degraded(*failure, &e, "daily quota", 0).map(|_| 0),
                }
            }
        }
    }

    /// Checks and consumes one request of `rate` for `key` and, when it is allowed, counts it
    /// against `subject`'s quota for the UTC day of `now`: [`Self::check`] then
    /// [`Self::count_today`], with the count `None` when the request is refused (a refused
    /// request does not count). In Redis both are one script, so one round trip instead of two.
    pub async fn check_and_count(
        &self,
        key: &str,
        rate: Rate,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<(Decision, Option<u64>), LimiterError> {
        let Backend::Redis {
            conn,
            prefix,
            failure,
            gcra_quota,
            ..
        } = &self.0
        else {
            let decision = self.check(key, rate).await?;
            let counted = if decision.allowed {
                Some(self.count_today(subject, now).await?)
            } else {
                None
            };
            return Ok((decision, counted));
        };
        let mut conn = conn.clone();
        let result: Result<(u8, u64, u64, u64, i64), _> = gcra_quota
            .key(format!("{prefix}:rl:{key}"))
            .key(format!(
                "{prefix}:quota:{}",
                day_key(subject, now.date_naive())
            ))
            .arg(rate.emission_us())
            .arg(rate.tolerance_us())
            .arg(QUOTA_TTL_S)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((allowed, remaining, reset_ms, retry_after_ms, n)) => Ok((
                redis_decision(rate, (allowed, remaining, reset_ms, retry_after_ms)),
                u64::try_from(n).ok(),
            )),
            // As the two calls would: the rate check degrades to the policy, and an open
            // policy counts nothing.
            Err(e) => Self::degraded(*failure, &e, "rate limit and daily quota", rate.limit)
                .map(|d| (d, Some(0))),
        }
    }

    /// Checks `first` and, only if it allows the request, `second` and the quota, as
    /// [`Self::check`] then [`Self::check_and_count`] would: a refusal consumes nothing after
    /// it. In Redis all three are one script, so one round trip instead of two.
    pub async fn check_both_and_count(
        &self,
        first: (&str, Rate),
        second: (&str, Rate),
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<BothChecked, LimiterError> {
        let Backend::Redis {
            conn,
            prefix,
            failure,
            gcra_gcra_quota,
            ..
        } = &self.0
        else {
            let decision = self.check(first.0, first.1).await?;
            if !decision.allowed {
                return Ok(BothChecked {
                    first: decision,
                    second: None,
                    count: None,
                });
            }
            let (then, count) = self
                .check_and_count(second.0, second.1, subject, now)
                .await?;
            return Ok(BothChecked {
                first: decision,
                second: Some(then),
                count,
            });
        };
        let mut conn = conn.clone();
        let result: Result<(ScriptStep, u8, ScriptStep, i64), _> = gcra_gcra_quota
            .key(format!("{prefix}:rl:{}", first.0))
            .key(format!("{prefix}:rl:{}", second.0))
            .key(format!(
                "{prefix}:quota:{}",
                day_key(subject, now.date_naive())
            ))
            .arg(first.1.emission_us())
            .arg(first.1.tolerance_us())
            .arg(second.1.emission_us())
            .arg(second.1.tolerance_us())
            .arg(QUOTA_TTL_S)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((a, ran, b, n)) => Ok(BothChecked {
                first: redis_decision(first.1, a),
                second: (ran == 1).then(|| redis_decision(second.1, b)),
                count: u64::try_from(n).ok(),
            }),
            // As the separate calls would: both checks degrade to the policy, and an open
            // policy counts nothing.
            Err(e) => Self::degraded(*failure, &e, "rate limits and daily quota", first.1.limit)
                .map(|a| BothChecked {
                    first: a,
                    second: Some(Decision {
                        limit: second.1.limit,
                        remaining: second.1.limit,
                        ..a
                    }),
                    count: Some(0),
                }),
        }
    }
}
