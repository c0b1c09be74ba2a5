//! The request body's pace, and the service that tells the connection where it is.
//!
//! [`TimedBody`] is timed only while the application waits for it: it fails with
//! [`BodyTimedOut`] when no byte has come for the idle timeout, or when, after the grace
//! period, the bytes received fall behind the minimum rate (each byte buys `1 / rate` seconds
//! more, as Apache's `RequestReadTimeout MinRate` does). [`ConnService`] marks the start of each
//! request and, when its response has been sent, the start of the kept-alive wait; and when the
//! body timed out, it answers 408 `REQUEST_TIMEOUT` in the error envelope, whatever the
//! application made of the failed read, and closes the connection after it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use rampart_core::ErrorCode;
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::ConnState;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body was cut off. It is the source of the body's read error, so the
/// application can tell it from a broken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimedOut {
    /// No byte for this many seconds.
    #[error("no byte of the request body arrived for {0} s")]
    Stalled(u64),
    /// Slower on average than this many bytes a second.
    #[error("the request body arrived slower than the minimum of {0} bytes a second")]
    TooSlow(u64),
}

/// A request body timed while it is awaited; see the module documentation.
pub struct TimedBody<B> {
    inner: B,
    conn: Arc<ConnState>,
    /// When the application first asked for the body, and when the last byte came.
    started: Option<(Instant, Instant)>,
    received: u64,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, conn: Arc<ConnState>) -> Self {
        Self {
            inner,
            conn,
            started: None,
            received: 0,
            timer: None,
        }
    }

    /// The earlier of the stall and the rate deadlines, and which it is.
    fn deadline(&self, started: Instant, last_byte: Instant) -> (Instant, BodyTimedOut) {
        let t = self.conn.timeouts();
        let stall = last_byte + t.body_idle;
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / t.body_min_rate);
        let rate = started + t.body_grace + earned;
        if stall <= rate {
            (stall, BodyTimedOut::Stalled(t.body_idle.as_secs()))
        } else {
            (rate, BodyTimedOut::TooSlow(t.body_min_rate))
        }
    }
}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let (started, last_byte) = *this.started.get_or_insert_with(|| {
            let now = Instant::now();
            (now, now)
        });
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    this.received = this.received.saturating_add(data.len() as u64);
                    this.started = Some((started, Instant::now()));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let (deadline, why) = this.deadline(started, last_byte);
                let timer = super::armed(&mut this.timer, deadline);
                ready!(timer.as_mut().poll(cx));
                this.conn.body_timed_out(why);
                Poll::Ready(Some(Err(Box::new(why))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection when the response is over.
pub struct DoneBody {
    inner: Body,
    conn: Option<Arc<ConnState>>,
}

impl DoneBody {
    fn done(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.response_done();
        }
    }
}

impl Drop for DoneBody {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.done();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The application's service for one connection; see the module documentation.
#[derive(Clone)]
pub struct ConnService<S> {
    inner: S,
    conn: Arc<ConnState>,
}

impl<S> ConnService<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnState>) -> Self {
        Self { inner, conn }
    }
}

impl<S, B> Service<Request<B>> for ConnService<S>
where
    S: Service<Request<TimedBody<B>>, Response = Response<Body>>,
{
    type Response = Response<DoneBody>;
    type Error = S::Error;
    type Future = ConnFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.conn.request_started();
        let conn = self.conn.clone();
        let req = req.map(|body| TimedBody::new(body, conn));
        ConnFuture {
            inner: self.inner.call(req),
            conn: Some(self.conn.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The application's response, made a 408 when the body timed out.
    pub struct ConnFuture<F> {
        #[pin]
        inner: F,
        conn: Option<Arc<ConnState>>,
    }
}

impl<F, E> Future for ConnFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<DoneBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let conn = this.conn.take();
        if let Some(conn) = &conn
            && let Some(why) = conn.take_body_timeout()
        {
            conn.set_linger();
            request_timeout(&mut response, why);
        }
        Poll::Ready(Ok(response.map(|inner| DoneBody { inner, conn })))
    }
}

/// Makes `response` the 408 for `why`, in the envelope with the request's id, keeping the
/// headers every response carries, and closing the connection after it: the rest of the body
/// may still be on its way.
fn request_timeout(response: &mut Response<Body>, why: BodyTimedOut) {
    let code = ErrorCode::RequestTimeout;
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let envelope = serde_json::json!({"error": {
        "code": code.as_str(),
        "message": why.to_string(),
        "request_id": request_id,
    }});
    *response.status_mut() =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::REQUEST_TIMEOUT);
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    *response.body_mut() = Body::from(serde_json::to_vec(&envelope).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Timeouts;
    use http_body_util::BodyExt;

    fn conn(body_idle_ms: u64, rate: u64, grace_ms: u64) -> Arc<ConnState> {
        Arc::new(ConnState::new(
            Timeouts {
                header_read: Duration::from_secs(60),
                keep_alive: Duration::from_secs(60),
                body_idle: Duration::from_millis(body_idle_ms),
                body_min_rate: rate,
                body_grace: Duration::from_millis(grace_ms),
                send: Duration::from_secs(60),
            },
            Instant::now(),
        ))
    }

    /// A body the test feeds one chunk at a time.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Sends `chunk` every `every` until `n` are sent (then ends the body) or the body is gone.
    fn feed(chunk: &'static [u8], every: Duration, n: Option<usize>) -> Fed {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut sent = 0;
            while n.is_none_or(|n| sent < n) {
                if tx.send(Bytes::from_static(chunk)).await.is_err() {
                    return;
                }
                sent += 1;
                tokio::time::sleep(every).await;
            }
        });
        Fed(rx)
    }

    /// Reads the whole body; a fail-safe far past every deadline here turns a missing timeout
    /// into a failure instead of a hang.
    async fn read(body: TimedBody<Fed>) -> Result<usize, BodyTimedOut> {
        let collected = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("the body was never cut off");
        match collected {
            Ok(b) => Ok(b.to_bytes().len()),
            Err(e) => Err(*e.downcast_ref::<BodyTimedOut>().unwrap()),
        }
    }

    #[tokio::test]
    async fn a_stalled_body_fails_and_the_connection_learns_why() {
        let conn = conn(200, 1, 60_000);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Bytes::from_static(b"{\"name\":")).await.unwrap();
        let body = TimedBody::new(Fed(rx), conn.clone());
        assert_eq!(read(body).await, Err(BodyTimedOut::Stalled(0)));
        assert_eq!(conn.take_body_timeout(), Some(BodyTimedOut::Stalled(0)));
        drop(tx);
    }

    #[tokio::test]
    async fn a_trickle_below_the_minimum_rate_fails_after_the_grace_period() {
        // A byte every 10 ms is 100 bytes a second, against a minimum of 1,000.
        let conn = conn(60_000, 1000, 200);
        let body = TimedBody::new(feed(b"x", Duration::from_millis(10), None), conn.clone());
        assert_eq!(read(body).await, Err(BodyTimedOut::TooSlow(1000)));
    }

    #[tokio::test]
    async fn a_body_at_a_fair_pace_with_pauses_under_the_idle_timeout_is_read_whole() {
        // 200 bytes every 60 ms: above 1,000 bytes a second, no pause near 400 ms.
        let conn = conn(400, 1000, 100);
        let body = TimedBody::new(
            feed(&[b'x'; 200], Duration::from_millis(60), Some(10)),
            conn.clone(),
        );
        assert_eq!(read(body).await, Ok(2000));
        assert_eq!(conn.take_body_timeout(), None);
    }

    #[tokio::test]
    async fn the_response_to_a_timed_out_body_is_a_408_in_the_envelope_and_closes() {
        let conn = conn(100, 1, 60_000);
        // What the application does with a body it cannot read: its own 400.
        let app = tower::service_fn(|req: Request<TimedBody<Fed>>| async move {
            let status = match req.into_body().collect().await {
                Ok(_) => StatusCode::CREATED,
                Err(_) => StatusCode::BAD_REQUEST,
            };
            let mut response = Response::new(Body::from("{}"));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert("x-request-id", HeaderValue::from_static("req_1"));
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = ConnService::new(app, conn.clone());

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Bytes::from_static(b"{")).await.unwrap();
        let response =
            tokio::time::timeout(Duration::from_secs(30), service.call(Request::new(Fed(rx))))
                .await
                .expect("the body was never cut off")
                .unwrap();
        assert_eq!(response.status(), 408);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert!(conn.lingers());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "REQUEST_TIMEOUT");
        assert_eq!(v["error"]["request_id"], "req_1");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("no byte"),
            "{v}"
        );
        drop(tx);

        // A whole body is the application's answer, untouched; once it is sent the connection
        // waits for the next request.
        let conn = self::conn(100, 1, 60_000);
        let mut service = ConnService::new(app, conn.clone());
        let response = service
            .call(Request::new(feed(b"{}", Duration::ZERO, Some(1))))
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert!(conn.read_deadline().is_none(), "the request is in progress");
        drop(response);
        assert!(
            conn.read_deadline()
                .is_some_and(|(_, what)| what.contains("idle")),
            "the response is over"
        );
    }
}
