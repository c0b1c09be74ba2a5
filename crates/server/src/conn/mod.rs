//! The connection edge, below HTTP routing: what a client may hold and for how long.
//!
//! Every accepted TCP connection is first counted against a cap on connections in total and one
//! per client address ([`caps`]); over either, it is closed before a byte of it is read. The
//! total is derived from the open-file limit ([`fds`]) so that connections are shed before the
//! process runs out of descriptors and can no longer open its database, its log or a health
//! check's socket. An admitted connection's life is then timed ([`stream`], [`body`]): the
//! request headers must arrive within a deadline, a kept-alive connection may wait only so long
//! for its next request, the request body must keep coming at a minimum pace (a trickled body
//! gets a 408 in the error envelope), and the client must read the response. An idle or
//! trickling client therefore holds a connection, and a file descriptor, only as long as these
//! allow.
//!
//! Rampart speaks HTTP/1.1 only (its TLS already offers only `http/1.1`): the timers follow one
//! request at a time per connection, which HTTP/2's multiplexing would not.

pub mod body;
pub mod caps;
pub mod fds;
pub mod stream;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use body::{BodyTimedOut, ConnService, TimedBody};
pub use caps::{Caps, Slot};
pub use stream::TimedStream;

use crate::config::HttpSettings;

/// The deadlines of one connection's life, from `[http]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the connection's start, or a later request's first byte, to the end of its headers.
    pub header_read: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub keep_alive: Duration,
    /// How long the request body may go without a byte while the server waits for it.
    pub body_idle: Duration,
    /// Bytes per second the body must average once `body_grace` is over.
    pub body_min_rate: u64,
    /// The start of a body during which the minimum rate does not apply.
    pub body_grace: Duration,
    /// How long a response may wait for the client to read any of it.
    pub send: Duration,
}

impl Timeouts {
    /// The deadlines configured in `[http]`.
    pub fn from_settings(http: &HttpSettings) -> Self {
        Self {
            header_read: Duration::from_secs(http.header_read_timeout_secs),
            keep_alive: Duration::from_secs(http.keep_alive_timeout_secs),
            body_idle: Duration::from_secs(http.body_idle_timeout_secs),
            body_min_rate: http.body_min_rate_bytes_per_sec.max(1),
            body_grace: Duration::from_secs(http.body_min_rate_grace_secs),
            send: Duration::from_secs(http.send_timeout_secs),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::from_settings(&HttpSettings::default())
    }
}

/// Where a connection is in its life; decides which deadline its reads run against.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request's headers, since the connection's start or the request's first byte.
    Head(Instant),
    /// A response was sent; waiting, since then, for the next request.
    Idle(Instant),
    /// A request is being served: the body's pace is timed by [`TimedBody`], not here, and a
    /// handler's own slowness is not the client's.
    Request,
}

/// What the connection's stream, its service and its request body share. One allocation per
/// connection; a request costs no more than reference-count increments.
#[derive(Debug)]
pub(crate) struct ConnState {
    timeouts: Timeouts,
    phase: Mutex<Phase>,
    /// Set when the current request's body timed out: the response becomes a 408 and the
    /// connection closes after it.
    body_timed_out: Mutex<Option<BodyTimedOut>>,
    /// Whether closing should first read what the client is still sending, so that it can read
    /// the response before the close (a close with unread input sends a reset, which can
    /// destroy the response in the client's buffers).
    linger: std::sync::atomic::AtomicBool,
}

impl ConnState {
    pub(crate) fn new(timeouts: Timeouts, now: Instant) -> Self {
        Self {
            timeouts,
            phase: Mutex::new(Phase::Head(now)),
            body_timed_out: Mutex::new(None),
            linger: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: on an idle connection they start the next request's header deadline.
    pub(crate) fn bytes_read(&self) {
        let mut phase = self.phase();
        if matches!(*phase, Phase::Idle(_)) {
            *phase = Phase::Head(Instant::now());
        }
    }

    /// The deadline a read waiting on the client runs against, and what it is for.
    pub(crate) fn read_deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.phase() {
            Phase::Head(since) => Some((
                since + self.timeouts.header_read,
                "request headers not received in time",
            )),
            Phase::Idle(since) => Some((
                since + self.timeouts.keep_alive,
                "kept-alive connection idle too long",
            )),
            Phase::Request => None,
        }
    }

    pub(crate) fn request_started(&self) {
        *self.phase() = Phase::Request;
        *self
            .body_timed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) fn response_done(&self) {
        let mut phase = self.phase();
        if matches!(*phase, Phase::Request) {
            *phase = Phase::Idle(Instant::now());
        }
    }

    pub(crate) fn body_timed_out(&self, why: BodyTimedOut) {
        *self
            .body_timed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    pub(crate) fn take_body_timeout(&self) -> Option<BodyTimedOut> {
        self.body_timed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn set_linger(&self) {
        self.linger
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn lingers(&self) -> bool {
        self.linger.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
}

/// The caps `[http]` asks for under an open-file limit: `(total, per address, lowered)`.
/// A total of 0 is derived from the limit ([`fds::max_connections`]); a configured total above
/// what the limit leaves room for is lowered to it (`lowered` is then true). A per-address cap
/// of 0 is [`caps::DEFAULT_PER_IP`], or a quarter of the total when that is smaller, so that one
/// address can never take every connection.
pub fn plan_caps(
    http: &HttpSettings,
    open_file_limit: Option<u64>,
    database_max_connections: u32,
) -> (u64, u64, bool) {
    let fits = fds::max_connections(open_file_limit, fds::reserve(database_max_connections));
    let (total, lowered) = match http.max_connections {
        0 => (fits, false),
        n if n > fits => (fits, true),
        n => (n, false),
    };
    let per_ip = match http.max_connections_per_ip {
        0 => caps::DEFAULT_PER_IP.min((total / 4).max(1)),
        n => n,
    };
    (total, per_ip, lowered)
}

/// Raises the open-file limit and sets up the caps for `serve`, saying in the log what it
/// chose and warning when the limit holds connections back.
pub fn caps_at_start(
    http: &HttpSettings,
    database_max_connections: u32,
    trusted_proxies: Vec<ipnet::IpNet>,
) -> Arc<Caps> {
    let open_files = fds::raise_open_file_limit();
    let limit = open_files.and_then(|o| o.now);
    let (total, per_ip, lowered) = plan_caps(http, limit, database_max_connections);
    if lowered {
        tracing::warn!(
            configured = http.max_connections,
            open_file_limit = limit,
            using = total,
            "http.max_connections is more than the open-file limit leaves room for; raise the limit (ulimit -n, LimitNOFILE) to allow more"
        );
    }
    if total < 64 {
        tracing::warn!(
            open_file_limit = limit,
            max_connections = total,
            "the open-file limit leaves room for very few connections; raise it (ulimit -n, LimitNOFILE)"
        );
    }
    let caps = Caps::new(total, per_ip, trusted_proxies);
    tracing::info!(
        max_connections = caps.total(),
        max_connections_per_ip = caps.per_ip(),
        open_file_limit = limit,
        open_file_limit_at_start = open_files.and_then(|o| o.before),
        "connection limits"
    );
    caps
}

/// Admits a connection under the caps and wraps its stream and service in the timers; composes
/// under axum-server's TLS acceptor, so the timers see the raw bytes, handshake included.
#[derive(Clone)]
pub struct ConnAcceptor {
    caps: Arc<Caps>,
    timeouts: Timeouts,
}

impl ConnAcceptor {
    /// An acceptor admitting under `caps`, timing with `timeouts`.
    pub fn new(caps: Arc<Caps>, timeouts: Timeouts) -> Self {
        Self { caps, timeouts }
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, thiserror::Error)]
#[error("connection shed: over the connection cap")]
pub struct Shed;

impl<S> Accept<TcpStream, S> for ConnAcceptor {
    type Stream = TimedStream<TcpStream>;
    type Service = ConnService<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let admitted = stream.peer_addr().and_then(|peer| {
            self.caps
                .admit(peer.ip())
                .ok_or_else(|| io::Error::other(Shed))
        });
        // Over a cap the stream is dropped here, unread: the client sees the connection close.
        std::future::ready(admitted.map(|slot| {
            let conn = Arc::new(ConnState::new(self.timeouts, Instant::now()));
            (
                TimedStream::new(stream, conn.clone(), Some(slot)),
                ConnService::new(service, conn),
            )
        }))
    }
}

/// What `serve` needs to run the edge: the caps, the timers and, for https, the TLS config.
pub struct Edge {
    /// The connection caps.
    pub caps: Arc<Caps>,
    /// The deadlines.
    pub timeouts: Timeouts,
    /// Serve https with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `app` on `listener` through the edge until `handle` shuts it down (gracefully: the
/// requests in flight finish first).
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    edge: Edge,
    handle: axum_server::Handle<SocketAddr>,
) -> io::Result<()> {
    let acceptor = ConnAcceptor::new(edge.caps, edge.timeouts);
    let accept_errors = Arc::new(caps::Every::new(Duration::from_secs(5)));
    // Errors with an address come from the acceptor (a shed connection, already logged, or a
    // failed TLS handshake); without one, from accept(2) itself, e.g. out of descriptors.
    let on_error = move |peer: Option<&SocketAddr>, e: &io::Error| match peer {
        None => {
            if let Some(skipped) = accept_errors.due() {
                tracing::warn!(error = %e, skipped, "accepting a connection failed");
            }
        }
        Some(_) => tracing::debug!(error = %e, "connection closed at accept"),
    };
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum_server::from_tcp(listener)?
        .handle(handle)
        .accept_error_handler(on_error)
        .http1_only();
    match edge.tls {
        Some(config) => {
            let tls = RustlsAcceptor::new(RustlsConfig::from_config(config)).acceptor(acceptor);
            server.acceptor(tls).serve(make).await
        }
        None => server.acceptor(acceptor).serve(make).await,
    }
}

/// The timer in `slot`, set to fire at `deadline`: made on first use, moved when the deadline
/// has changed since (a body or a read whose deadline moves as bytes arrive).
fn armed(
    slot: &mut Option<(tokio::time::Instant, std::pin::Pin<Box<tokio::time::Sleep>>)>,
    deadline: tokio::time::Instant,
) -> &mut std::pin::Pin<Box<tokio::time::Sleep>> {
    match slot {
        Some((set, timer)) => {
            if *set != deadline {
                timer.as_mut().reset(deadline);
                *set = deadline;
            }
            timer
        }
        None => {
            &mut slot
                .insert((deadline, Box::pin(tokio::time::sleep_until(deadline))))
                .1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn caps_derive_from_the_open_file_limit_and_one_address_gets_a_quarter_at_most() {
        let mut http = HttpSettings::default();
        // 1,024 descriptors less 96 reserved (8 database connections).
        assert_eq!(plan_caps(&http, Some(1024), 8), (928, 232, false));
        assert_eq!(plan_caps(&http, Some(20_000), 8), (19_904, 256, false));
        assert_eq!(plan_caps(&http, None, 8), (fds::CEILING, 256, false));
        http.max_connections = 5000;
        assert_eq!(plan_caps(&http, Some(1024), 8), (928, 232, true), "lowered");
        assert_eq!(plan_caps(&http, Some(20_000), 8), (5000, 256, false));
        http.max_connections_per_ip = 10;
        assert_eq!(plan_caps(&http, Some(20_000), 8).1, 10);
    }

    #[test]
    fn the_http_section_sets_the_timeouts_and_refuses_a_zero() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rampart.toml");
        std::fs::write(
            &file,
            "[http]\nheader_read_timeout_secs = 3\nbody_min_rate_bytes_per_sec = 4096\nmax_connections_per_ip = 16\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        let t = Timeouts::from_settings(&settings.http);
        assert_eq!(t.header_read, Duration::from_secs(3));
        assert_eq!(t.body_min_rate, 4096);
        assert_eq!(t.keep_alive, Duration::from_secs(60), "the default");
        assert_eq!(settings.http.max_connections_per_ip, 16);
        assert_eq!(Timeouts::default().header_read, Duration::from_secs(10));

        for bad in [
            "keep_alive_timeout_secs = 0",
            "send_timeout_secs = 3601",
            "body_min_rate_bytes_per_sec = 0",
        ] {
            std::fs::write(&file, format!("[http]\n{bad}\n")).unwrap();
            let refused = Settings::load(Some(&file)).unwrap_err().to_string();
            let name = bad.split(' ').next().unwrap();
            assert!(refused.contains(&format!("http.{name}")), "{refused}");
        }
    }
}
