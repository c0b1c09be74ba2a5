//! The load generator: a fixed number of HTTP/1.1 keep-alive connections to a loopback
//! server, each one a task sending its next request when the last has answered (closed loop),
//! or taking scheduled send times from a shared clock at a fixed total rate (open loop).
//!
//! In the open loop a request that goes out late because every connection was still busy
//! counts its latency from the time it was *scheduled*, not the time a connection became free
//! to send it, so a stalled server cannot hide its stall by slowing the client down (the
//! coordinated-omission correction of wrk2); one sent on time counts from when it was sent. Every run is bounded: it stops
//! issuing requests at the end of its window, gives up on a request after
//! [`REQUEST_TIMEOUT`], and abandons the run [`GRACE`] after the window closes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A request that has not answered by then is counted as an error and its connection replaced.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the end of its window a run waits for stragglers before abandoning them.
pub const GRACE: Duration = Duration::from_secs(15);
/// Latencies are recorded in microseconds, from 1 µs to 60 s, to three significant digits.
const MAX_MICROS: u64 = 60_000_000;

/// Builds the request a connection sends next, from the connection's index and its sequence
/// number on that connection (both stable, so bodies and ids can be unique and reproducible).
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// One measured run.
#[derive(Clone)]
pub struct Load {
    pub addr: SocketAddr,
    pub make: MakeRequest,
    /// The status every request should get; any other counts as an error.
    pub expect: StatusCode,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// `None`: closed loop. `Some(r)`: open loop at `r` requests per second in all.
    pub rate: Option<f64>,
}

/// What a run measured. Only requests that completed (closed loop) or were scheduled (open
/// loop) inside the measurement window count; warm-up traffic is sent but not recorded.
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Every request answered during the whole run, warm-up included (for CPU per request).
    pub answered_total: u64,
    /// Latency of the successful requests in the window, in microseconds.
    pub latency: Histogram<u64>,
    /// `Server-Timing: auth;dur=…` values the server reported, in microseconds, if any.
    pub auth_timing: Histogram<u64>,
    pub seconds: f64,
}

impl Outcome {
    /// Successful requests per second over the window.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A latency quantile in milliseconds; `None` when nothing was recorded.
    pub fn latency_ms(&self, quantile: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// A quantile of the server-reported authentication time, in milliseconds.
    pub fn auth_ms(&self, quantile: f64) -> Option<f64> {
        (!self.auth_timing.is_empty())
            .then(|| self.auth_timing.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(|e| anyhow!("histogram: {e}"))
}

/// A request with the headers every scenario sends. Infallible: the URI and header values were
/// checked when the scenario was set up.
pub fn request(
    method: Method,
    host: &HeaderValue,
    uri: &Uri,
    auth: Option<&HeaderValue>,
    extra: &[(HeaderName, HeaderValue)],
    body: Option<Bytes>,
) -> Request<Full<Bytes>> {
    let has_body = body.is_some();
    let mut req = Request::new(Full::new(body.unwrap_or_default()));
    *req.method_mut() = method;
    *req.uri_mut() = uri.clone();
    let headers = req.headers_mut();
    headers.insert(HOST, host.clone());
    if let Some(auth) = auth {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    for (name, value) in extra {
        headers.insert(name.clone(), value.clone());
    }
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    req
}

/// The loopback address connection `conn` sends from when the server is on 127.0.0.1:
/// 127.0.0.10 and up, so per-IP rate limits see many clients, as they would in production.
pub fn source_for(conn: usize, server: SocketAddr) -> Option<IpAddr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let last = 10 + u8::try_from(conn % 240).unwrap_or(0);
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        }
        _ => None,
    }
}

async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<SendRequest<Full<Bytes>>> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding the client to {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when its sender is dropped or the server closes it; a failure
        // shows up as an error on the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

struct WorkerResult {
    ok: u64,
    errors: u64,
    answered_total: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
    auth_timing: Histogram<u64>,
}

/// Runs one load and returns what it measured.
pub async fn run(load: &Load) -> Result<Outcome> {
    if load.connections == 0 {
        bail!("a load needs at least one connection");
    }
    let start = Instant::now() + Duration::from_millis(20);
    let window = Arc::new(Window {
        start,
        measure_from: start + load.warmup,
        end: start + load.warmup + load.duration,
    });
    let slots = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for conn in 0..load.connections {
        let (load, window, slots) = (load.clone(), window.clone(), slots.clone());
        tasks.spawn(async move { worker(conn, &load, &window, &slots).await });
    }
    let deadline = window.end + GRACE;
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        first_error: None,
        answered_total: 0,
        latency: histogram()?,
        auth_timing: histogram()?,
        seconds: load.duration.as_secs_f64(),
    };
    loop {
        let next = tokio::time::timeout_at(deadline, tasks.join_next()).await;
        match next {
            Ok(Some(joined)) => {
                let r = joined.context("a load connection task failed")??;
                out.ok += r.ok;
                out.errors += r.errors;
                out.answered_total += r.answered_total;
                if out.first_error.is_none() {
                    out.first_error = r.first_error;
                }
                out.latency
                    .add(&r.latency)
                    .map_err(|e| anyhow!("merging latencies: {e}"))?;
                out.auth_timing
                    .add(&r.auth_timing)
                    .map_err(|e| anyhow!("merging timings: {e}"))?;
            }
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| "connections still busy after the grace period".into());
                break;
            }
        }
    }
    if out.ok == 0 {
        bail!(
            "no request succeeded ({} errors; first: {})",
            out.errors,
            out.first_error.as_deref().unwrap_or("none recorded")
        );
    }
    Ok(out)
}

async fn worker(conn: usize, load: &Load, w: &Window, slots: &AtomicU64) -> Result<WorkerResult> {
    let mut r = WorkerResult {
        ok: 0,
        errors: 0,
        answered_total: 0,
        first_error: None,
        latency: histogram()?,
        auth_timing: histogram()?,
    };
    let rate = load.rate.map(|rate| rate.max(1e-3));
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    tokio::time::sleep_until(w.start).await;
    let mut seq: u64 = 0;
    loop {
        // When this request counts from: its scheduled time (open loop) or now (closed loop).
        let origin = match rate {
            Some(rate) => {
                let slot = slots.fetch_add(1, Ordering::Relaxed);
                let at = w.start + Duration::from_secs_f64(slot as f64 / rate);
                if at >= w.end {
                    break;
                }
                if Instant::now() < at {
                    // Idle until the slot: count from when the request actually leaves, so
                    // the timer's millisecond granularity is not charged to the server.
                    tokio::time::sleep_until(at).await;
                    Instant::now().max(at)
                } else {
                    // Late (every connection was busy): count from the schedule, so the wait
                    // caused by a slow server is charged to it.
                    at
                }
            }
            None => {
                let now = Instant::now();
                if now >= w.end {
                    break;
                }
                now
            }
        };
        let counted_by_origin = rate.is_some() && origin >= w.measure_from;
        let req = (load.make)(conn, seq);
        seq += 1;
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            send(&mut sender, load.addr, source_for(conn, load.addr), req),
        )
        .await;
        let done = Instant::now();
        let counted = if rate.is_some() {
            counted_by_origin
        } else {
            done >= w.measure_from && done < w.end
        };
        match result {
            Ok(Ok((status, auth_micros))) if status == load.expect => {
                r.answered_total += 1;
                if counted {
                    r.ok += 1;
                    let micros = u64::try_from(done.duration_since(origin).as_micros())
                        .unwrap_or(MAX_MICROS);
                    r.latency.saturating_record(micros.max(1));
                    if let Some(a) = auth_micros {
                        r.auth_timing.saturating_record(a.max(1));
                    }
                }
            }
            Ok(Ok((status, _))) => {
                r.answered_total += 1;
                if counted {
                    r.errors += 1;
                }
                r.first_error
                    .get_or_insert_with(|| format!("HTTP {status} (expected {})", load.expect));
            }
            Ok(Err(e)) => {
                sender = None;
                if counted {
                    r.errors += 1;
                }
                r.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                sender = None;
                if counted {
                    r.errors += 1;
                }
                r.first_error
                    .get_or_insert_with(|| format!("no answer within {REQUEST_TIMEOUT:?}"));
            }
        }
    }
    Ok(r)
}

/// Sends one request on the connection (opening it first if needed), reads the whole body, and
/// returns the status and any `Server-Timing: auth;dur=<ms>` value in microseconds.
async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    source: Option<IpAddr>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<u64>)> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(connect(addr, source).await?),
    };
    s.ready().await?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let auth = resp
        .headers()
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(auth_duration_micros);
    resp.into_body().collect().await?;
    Ok((status, auth))
}

/// Reads `auth;dur=0.42` (milliseconds, as the Server-Timing spec has it) out of a header value.
fn auth_duration_micros(value: &str) -> Option<u64> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.split(';').map(str::trim);
        if parts.next()? != "auth" {
            return None;
        }
        parts.find_map(|p| {
            let ms: f64 = p.strip_prefix("dur=")?.parse().ok()?;
            (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_auth_is_read_in_microseconds() {
        assert_eq!(auth_duration_micros("auth;dur=0.42"), Some(420));
        assert_eq!(
            auth_duration_micros("db;dur=3, auth;desc=\"key\";dur=1.5"),
            Some(1500)
        );
        assert_eq!(auth_duration_micros("db;dur=3"), None);
        assert_eq!(auth_duration_micros("auth"), None);
    }
}
