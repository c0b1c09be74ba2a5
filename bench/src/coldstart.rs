//! Scenario 7's start-up figures: what the first requests of a freshly started `rampart serve`
//! cost against the same requests once the server is warm, so that a one-time cost paid by
//! whichever client comes first (a lazily loaded table, a cache filled on first use) shows up
//! as a number rather than as an unexplained p99 after every deploy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use serde_json::Value;

use crate::procs::Tenant;
use crate::stats::Summary;

/// Requests of each kind timed after the first one, whose median is the warm figure.
pub const WARM_SAMPLES: usize = 20;

/// One fresh server's first and warm requests, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct FirstRequests {
    /// The first `POST …/contacts` the server answers.
    pub first_write_ms: f64,
    /// The median of the [`WARM_SAMPLES`] creates after it.
    pub warm_write_ms: f64,
    /// The first `GET …/contacts/{id}`, of the contact the first create made.
    pub first_read_ms: f64,
    /// The median of the [`WARM_SAMPLES`] reads after it.
    pub warm_read_ms: f64,
}

/// Times the first create and read on the server at `addr`, then [`WARM_SAMPLES`] of each. One
/// keep-alive connection, opened by a `GET /healthz` before anything is timed, so the first
/// figures hold the server's cold work and not the TCP handshake.
pub async fn first_requests(addr: SocketAddr, tenant: &Tenant) -> Result<FirstRequests> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = format!("http://{addr}");
    client
        .get(format!("{base}/healthz"))
        .send()
        .await?
        .error_for_status()
        .context("GET /healthz")?;
    let key = tenant
        .keys
        .first()
        .ok_or_else(|| anyhow!("the tenant has no API key"))?;
    let auth = format!("Bearer {key}");
    let contacts = format!("{base}/v1/workspaces/{}/contacts", tenant.workspace_id);

    let create = |n: usize| {
        let body = format!(
            r#"{{"name":"First {n}","email":"first.{n}@coldstart.example.com","phone":"+14155552671","us_state":"CA","tags":["lead"]}}"#
        );
        client
            .post(&contacts)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("coldstart-{n}"))
            .body(body)
    };
    let (first_write_ms, created) = timed(create(0), StatusCode::CREATED).await?;
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the first create answered no id: {created}"))?
        .to_owned();
    let mut writes = Vec::with_capacity(WARM_SAMPLES);
    for n in 1..=WARM_SAMPLES {
        writes.push(timed(create(n), StatusCode::CREATED).await?.0);
    }

    let read = || {
        client
            .get(format!("{contacts}/{id}"))
            .header("authorization", &auth)
    };
    let (first_read_ms, _) = timed(read(), StatusCode::OK).await?;
    let mut reads = Vec::with_capacity(WARM_SAMPLES);
    for _ in 0..WARM_SAMPLES {
        reads.push(timed(read(), StatusCode::OK).await?.0);
    }
    Ok(FirstRequests {
        first_write_ms,
        warm_write_ms: Summary::of(&writes).map_or(f64::NAN, |s| s.median),
        first_read_ms,
        warm_read_ms: Summary::of(&reads).map_or(f64::NAN, |s| s.median),
    })
}

/// Sends `req`, reads the whole answer, and returns the milliseconds that took with the JSON
/// answered; any status but `expected` is an error.
async fn timed(req: reqwest::RequestBuilder, expected: StatusCode) -> Result<(f64, Value)> {
    let started = Instant::now();
    let resp = req.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != expected {
        bail!(
            "expected {expected}, got {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((ms, serde_json::from_slice(&body)?))
}
