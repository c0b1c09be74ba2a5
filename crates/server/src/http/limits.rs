//! Applies the manifest's rate-limit bucket and the plan's daily quota to a request: per-IP
//! limits before authentication, per-key limits and the quota after it. A refusal is a 429 with
//! `Retry-After` and `RateLimit-*` headers; admitted requests carry the same headers, and
//! `Quota-*` for API keys.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rampart_core::{ApiKeyId, ErrorCode, Plan};
use rampart_guard::{Decision, Limiter, Rate};

use super::error::ApiError;
use crate::config::{QuotaSettings, RateLimitSettings};
use crate::manifest::Bucket;

/// Headers admission puts on the response: rate-limit and quota state, and `Server-Timing`
/// when it is switched on. Kept as numbers and turned into header values once, when applied:
/// the per-key decision replaces the per-IP one, so formatting both would be wasted.
#[derive(Debug, Default, Clone)]
pub struct LimitHeaders {
    rate: Option<Decision>,
    quota: Option<Quota>,
    retry_after_s: Option<u64>,
    server_timing: Option<HeaderValue>,
}

/// A daily quota's state, for the `Quota-*` headers.
#[derive(Debug, Clone, Copy)]
struct Quota {
    limit: u64,
    remaining: u64,
    reset_s: u64,
}

// Checked once, at compile time: `from_static` outside a constant checks the name again on
// every call, and every limited response carries up to six of these.
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const QUOTA_LIMIT: HeaderName = HeaderName::from_static("quota-limit");
const QUOTA_REMAINING: HeaderName = HeaderName::from_static("quota-remaining");
const QUOTA_RESET: HeaderName = HeaderName::from_static("quota-reset");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

impl LimitHeaders {
    /// Adds them to a response.
    pub fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        // Room for the edge's security headers as well, so that the map grows once.
        headers.reserve(20);
        let mut number = |name: HeaderName, value: u64| {
            headers.insert(name, HeaderValue::from(value));
        };
        if let Some(d) = self.rate {
            number(RATELIMIT_LIMIT, d.limit.into());
            number(RATELIMIT_REMAINING, d.remaining.into());
            number(RATELIMIT_RESET, d.reset_ms.div_ceil(1000));
        }
        if let Some(q) = self.quota {
            number(QUOTA_LIMIT, q.limit);
            number(QUOTA_REMAINING, q.remaining);
            number(QUOTA_RESET, q.reset_s);
        }
        if let Some(s) = self.retry_after_s {
            number(header::RETRY_AFTER, s);
        }
        if let Some(v) = self.server_timing {
            headers.insert(SERVER_TIMING, v);
        }
    }

    /// Sets `Server-Timing`; a value that is not a valid header value is dropped.
    pub fn server_timing(&mut self, value: &str) {
        self.server_timing = HeaderValue::from_str(value).ok();
    }

    fn rate(&mut self, d: &Decision) {
        self.rate = Some(*d);
    }
}

/// Rates and quotas in force.
#[derive(Debug, Clone, Default)]
pub struct LimitSettings {
    /// Per-minute rates.
    pub rates: RateLimitSettings,
    /// Daily quotas.
    pub quotas: QuotaSettings,
    /// Benchmark baselines only: skip every limit and quota.
    #[doc(hidden)]
    pub disabled_for_benchmarks: bool,
}

impl LimitSettings {
    fn per_ip(&self, bucket: Bucket) -> Option<Rate> {
        let r = &self.rates;
        match bucket {
            Bucket::Health | Bucket::Chat | Bucket::Heartbeat => None,
            Bucket::Api => Some(Rate::per_minute(r.api_per_ip)),
            Bucket::SignIn => Some(Rate::per_minute(r.sign_in_per_ip)),
            Bucket::PublicForm => Some(Rate::per_minute(r.public_form_per_ip)),
        }
    }

    fn per_key(&self, bucket: Bucket) -> Option<Rate> {
        let r = &self.rates;
        match bucket {
            Bucket::Health | Bucket::SignIn | Bucket::PublicForm => None,
            Bucket::Api => Some(Rate::per_minute(r.api_per_key)),
            Bucket::Chat => Some(Rate::per_minute(r.chat_per_key)),
            Bucket::Heartbeat => Some(Rate::per_minute(r.heartbeat_per_key)),
        }
    }

    fn quota(&self, plan: Plan) -> u64 {
        let q = &self.quotas;
        match plan {
            Plan::Free => q.free,
            Plan::Starter => q.starter,
            Plan::Growth => q.growth,
            Plan::Pro => q.pro,
            Plan::Enterprise => q.enterprise,
        }
    }
}

/// What a per-IP limit of `bucket` counts for `ip`: an IPv4 address, or the IPv6 network of
/// the configured length (`/64` by default, `/56` for sign-in). One subscriber usually holds a
/// whole /64 (often a /56), so keying on the full /128 gave one client 2^64 budgets. An
/// IPv4-mapped IPv6 address counts as the IPv4 address it maps.
fn ip_key(settings: &LimitSettings, bucket: Bucket, ip: std::net::IpAddr) -> String {
    let prefix = match bucket {
        Bucket::SignIn => settings.rates.sign_in_ipv6_prefix,
        _ => settings.rates.ipv6_prefix,
    };
    format!("{}:ip:{}", bucket_name(bucket), ip_subject(ip, prefix))
}

/// `ip`, or for IPv6 its network of `prefix` bits (clamped to 0–128).
pub fn ip_subject(ip: std::net::IpAddr, prefix: u8) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => ipnet::Ipv6Net::new(v6, prefix.min(128))
                .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
        },
    }
}

fn bucket_name(bucket: Bucket) -> &'static str {
    match bucket {
        Bucket::Health => "health",
        Bucket::Api => "api",
        Bucket::SignIn => "sign_in",
        Bucket::PublicForm => "public_form",
        Bucket::Chat => "chat",
        Bucket::Heartbeat => "heartbeat",
    }
}

fn refused(decision: &Decision, headers: &mut LimitHeaders) -> Response {
    headers.rate(decision);
    let retry = decision.retry_after_ms.div_ceil(1000).max(1);
    headers.retry_after_s = Some(retry);
    let mut r = ApiError::new(
        ErrorCode::RateLimited,
        format!("rate limit exceeded; retry in {retry} s"),
    )
    .into_response();
    headers.clone().apply(&mut r);
    r
}

fn unavailable() -> Response {
    ApiError::new(
        ErrorCode::Unavailable,
        "rate limiting is unavailable; retry later",
    )
    .into_response()
}

/// Applies a rate decision: its headers when it allows the request; the 429 when it does not.
fn refusal(decision: &Decision, headers: &mut LimitHeaders) -> Option<Response> {
    if decision.allowed {
        headers.rate(decision);
        None
    } else {
        Some(refused(decision, headers))
    }
}

async fn check(
    limiter: &Limiter,
    key: String,
    rate: Rate,
    headers: &mut LimitHeaders,
) -> Result<(), Response> {
    match limiter.check(&key, rate).await {
        Ok(d) => refusal(&d, headers).map_or(Ok(()), Err),
        Err(_) => Err(unavailable()),
    }
}

/// Whether the ledger of workspace `ws` may take one more record of a request refused before
/// its sender was known (the `ledger` bucket, per workspace and minute). Anyone who knows a
/// workspace id can send such requests; past this share they are logged, not recorded. When
/// the limiter cannot answer, the record is written: evidence is not dropped on a guess.
pub async fn anonymous_record_allowed(
    limiter: &Limiter,
    settings: &LimitSettings,
    ws: rampart_core::WorkspaceId,
) -> bool {
    let per_minute = settings.rates.anonymous_refusals_per_workspace;
    if per_minute == 0 {
        return true;
    }
    limiter
        .check(&format!("ledger:ws:{ws}"), Rate::per_minute(per_minute))
        .await
        .map_or(true, |d| d.allowed)
}

/// The per-IP limit of the route's bucket.
pub async fn per_ip(
    limiter: &Limiter,
    settings: &LimitSettings,
    bucket: Bucket,
    ip: Option<std::net::IpAddr>,
    headers: &mut LimitHeaders,
) -> Result<(), Response> {
    if settings.disabled_for_benchmarks {
        return Ok(());
    }
    match (settings.per_ip(bucket), ip) {
        (Some(rate), Some(ip)) => check(limiter, ip_key(settings, bucket, ip), rate, headers).await,
        _ => Ok(()),
    }
}

/// The limiter key of mail to `address` (normalized by the caller): a hash, so that the
/// address itself is not written to Redis.
fn email_key(address: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("rampart.mail-limit.v1:{address}").as_bytes());
    format!("mail:email:{}", hex::encode(digest))
}

/// The per-address limit of public routes that send mail to an address typed into them (reset,
/// magic link, sign-up): `public_form_per_email` a minute, shared by those routes and whoever
/// asks, so that many sources cannot flood one mailbox. The refusal is the same 429 as any
/// other, and does not depend on whether the address has an account.
pub async fn per_email(
    limiter: &Limiter,
    settings: &LimitSettings,
    address: &str,
) -> Result<(), Response> {
    if settings.disabled_for_benchmarks {
        return Ok(());
    }
    let rate = Rate::per_minute(settings.rates.public_form_per_email);
    check(
        limiter,
        email_key(address),
        rate,
        &mut LimitHeaders::default(),
    )
    .await
}

/// Whether a refusal by [`per_email`] for `address` should be recorded in the ledger now: at
/// most once a minute per address, so that a flood of refused requests does not become a flood
/// of ledger events. Unavailable limits count as "no".
pub async fn first_refusal_this_minute(limiter: &Limiter, address: &str) -> bool {
    let key = format!("{}:refusal", email_key(address));
    limiter
        .check(&key, Rate::per_minute(1))
        .await
        .is_ok_and(|d| d.allowed)
}

/// The per-key limit of the route's bucket, then the plan's daily quota.
pub async fn per_key(
    limiter: &Limiter,
    settings: &LimitSettings,
    bucket: Bucket,
    key: ApiKeyId,
    plan: Plan,
    now: DateTime<Utc>,
    headers: &mut LimitHeaders,
) -> Result<(), Response> {
    if settings.disabled_for_benchmarks {
        return Ok(());
    }
    let quota = settings.quota(plan);
    let counted = quota != 0 && bucket != Bucket::Health;
    let rate_key = || format!("{}:key:{key}", bucket_name(bucket));
    let subject = || format!("key:{key}");
    let used = match (settings.per_key(bucket), counted) {
        // One call, so one Redis round trip where there were two: with the limiter in Redis a
        // read by id made three (per IP, per key, quota) and ran at about 60 % of the
        // in-process limiter's rate; two made it about 9 % faster (bench/ notes, 2026-12-07).
        (Some(rate), true) => {
            let (decision, used) = limiter
                .check_and_count(&rate_key(), rate, &subject(), now)
                .await
                .map_err(|_| unavailable())?;
            if let Some(response) = refusal(&decision, headers) {
                return Err(response);
            }
            used.unwrap_or(0)
        }
        (Some(rate), false) => return check(limiter, rate_key(), rate, headers).await,
        (None, true) => limiter
            .count_today(&subject(), now)
            .await
            .map_err(|_| unavailable())?,
        (None, false) => return Ok(()),
    };
    quota_state(quota, used, plan, now, headers).map_or(Ok(()), Err)
}

/// Sets the quota's headers; the refusal when `used` is over `quota`.
fn quota_state(
    quota: u64,
    used: u64,
    plan: Plan,
    now: DateTime<Utc>,
    headers: &mut LimitHeaders,
) -> Option<Response> {
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc());
    let reset = midnight.map_or(0, |m| (m - now).num_seconds().max(0));
    headers.quota = Some(Quota {
        limit: quota,
        remaining: quota.saturating_sub(used),
        reset_s: reset.unsigned_abs(),
    });
    if used > quota {
        headers.retry_after_s = Some(reset.unsigned_abs().max(1));
        let mut r = ApiError::new(
            ErrorCode::QuotaExceeded,
            format!("daily quota of {quota} requests for the {plan} plan is used up; it resets at 00:00 UTC"),
        )
        .into_response();
        headers.clone().apply(&mut r);
        return Some(r);
    }
    None
}

/// Where [`per_ip_and_key`] refused a request.
pub enum Refused {
    /// At the per-IP limit: the answer [`per_ip`] would have given before authentication.
    PerIp(Response),
    /// At the per-key limit or the quota, as [`per_key`] would have.
    PerKey(Response),
}

/// The three limits [`per_ip_and_key`] applies in one limiter call, when the route's bucket
/// has all three for this request.
pub struct Fused {
    ip_key: String,
    ip_rate: Rate,
    key_rate: Rate,
    quota: u64,
}

/// Whether a request with an API key on `bucket` meets a per-IP limit, a per-key limit and a
/// counted quota; when it does, what [`per_ip_and_key`] needs.
pub fn fusable(
    settings: &LimitSettings,
    bucket: Bucket,
    plan: Plan,
    ip: Option<std::net::IpAddr>,
) -> Option<Fused> {
    if settings.disabled_for_benchmarks || bucket == Bucket::Health {
        return None;
    }
    let quota = settings.quota(plan);
    match (settings.per_ip(bucket), ip, settings.per_key(bucket)) {
        (Some(ip_rate), Some(ip), Some(key_rate)) if quota != 0 => Some(Fused {
            ip_key: ip_key(settings, bucket, ip),
            ip_rate,
            key_rate,
            quota,
        }),
        _ => None,
    }
}

/// [`per_ip`] then [`per_key`], in one limiter call (one round trip with the limiter in
/// Redis): the same decisions, headers and refusals, and a refusal consumes nothing after it.
/// Only for a key already known without the database, since the per-IP limit must still
/// stand between a flood of requests and the database.
pub async fn per_ip_and_key(
    limiter: &Limiter,
    fused: Fused,
    bucket: Bucket,
    key: ApiKeyId,
    plan: Plan,
    now: DateTime<Utc>,
    headers: &mut LimitHeaders,
) -> Result<(), Refused> {
    let checked = limiter
        .check_both_and_count(
            (&fused.ip_key, fused.ip_rate),
            (
                &format!("{}:key:{key}", bucket_name(bucket)),
                fused.key_rate,
            ),
            &format!("key:{key}"),
            now,
        )
        .await
        .map_err(|_| Refused::PerIp(unavailable()))?;
    if let Some(response) = refusal(&checked.first, headers) {
        return Err(Refused::PerIp(response));
    }
    let Some(second) = checked.second else {
        return Err(Refused::PerIp(unavailable()));
    };
    if let Some(response) = refusal(&second, headers) {
        return Err(Refused::PerKey(response));
    }
    match quota_state(fused.quota, checked.count.unwrap_or(0), plan, now, headers) {
        Some(response) => Err(Refused::PerKey(response)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_network_and_ipv4_by_address() {
        let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            ip_subject(v6("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ip_subject(v6("2001:db8:1:2:ffff::9"), 64),
            ip_subject(v6("2001:db8:1:2::1"), 64),
            "one /64 is one client"
        );
        assert_ne!(
            ip_subject(v6("2001:db8:1:3::1"), 64),
            ip_subject(v6("2001:db8:1:2::1"), 64)
        );
        assert_eq!(
            ip_subject(v6("2001:db8:1:2ff::1"), 56),
            "2001:db8:1:200::/56"
        );
        assert_eq!(ip_subject(v6("::ffff:203.0.113.9"), 64), "203.0.113.9");
        assert_eq!(ip_subject(v6("203.0.113.9"), 64), "203.0.113.9");
        let settings = LimitSettings::default();
        assert_eq!(
            ip_key(&settings, Bucket::SignIn, v6("2001:db8:1:2ff::1")),
            "sign_in:ip:2001:db8:1:200::/56"
        );
        assert_eq!(
            ip_key(&settings, Bucket::Api, v6("2001:db8:1:2ff::1")),
            "api:ip:2001:db8:1:2ff::/64"
        );
    }
}
