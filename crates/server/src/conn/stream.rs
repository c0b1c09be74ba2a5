//! The timed socket: a read that waits on the client fails once the connection's deadline has
//! passed (the request headers', or the kept-alive wait's), a write that waits on the client
//! fails once it has made no progress for the send timeout, and a connection closed after a
//! refused body first reads what the client still sends for a moment, so that the client gets
//! to read the response. The connection's slot under the caps is held until this is dropped.
//!
//! Not hyper's own `header_read_timeout`: in hyper 1.12 its timer starts as soon as a
//! connection goes idle (`proto/h1/conn.rs`, `State::idle` asks for the next head to be read
//! under it), so it bounds the kept-alive wait too, and the two could not differ.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::ConnState;
use super::caps::Slot;

/// How long a close after a refused body keeps reading, and how much, before it gives up.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// A stream whose waits on the client are bounded; see the module documentation.
pub struct TimedStream<IO> {
    io: IO,
    conn: Arc<ConnState>,
    _slot: Option<Slot>,
    /// The read deadline's timer and the deadline it is set to.
    read_timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// Started when a write first waits; dropped when a write goes through.
    write_timer: Option<Pin<Box<Sleep>>>,
    linger: Option<Linger>,
}

struct Linger {
    timer: Pin<Box<Sleep>>,
    drained: usize,
}

impl<IO> TimedStream<IO> {
    pub(crate) fn new(io: IO, conn: Arc<ConnState>, slot: Option<Slot>) -> Self {
        Self {
            io,
            conn,
            _slot: slot,
            read_timer: None,
            write_timer: None,
            linger: None,
        }
    }

    /// Polls the write timer after a write could not proceed.
    fn write_waits(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let send = self.conn.timeouts().send;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(send)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read none of the response in time",
        ))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for TimedStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((deadline, what)) = this.conn.read_deadline() else {
                    return Poll::Pending;
                };
                let timer = super::armed(&mut this.read_timer, deadline);
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.write_waits(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.write_waits(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.write_waits(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            if !this.conn.lingers() {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(Linger {
                timer: Box::pin(tokio::time::sleep(LINGER)),
                drained: 0,
            });
        }
        // The response is sent and our side is shut; read and drop what the client still sends
        // until it closes too, or the moment is over.
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    linger.drained += buf.filled().len();
                    if linger.drained > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(linger.timer.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Timeouts;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn timeouts() -> Timeouts {
        Timeouts {
            header_read: Duration::from_millis(200),
            keep_alive: Duration::from_millis(600),
            body_idle: Duration::from_secs(60),
            body_min_rate: 1,
            body_grace: Duration::from_secs(60),
            send: Duration::from_millis(200),
        }
    }

    /// A fail-safe far past every deadline here: a missing timeout fails instead of hanging.
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("never timed out")
    }

    fn stream(
        io: tokio::io::DuplexStream,
    ) -> (TimedStream<tokio::io::DuplexStream>, Arc<ConnState>) {
        let conn = Arc::new(ConnState::new(timeouts(), Instant::now()));
        (TimedStream::new(io, conn.clone(), None), conn)
    }

    #[tokio::test]
    async fn headers_must_arrive_in_time_but_a_request_in_progress_has_no_read_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut timed, conn) = stream(server);
        let trickle = tokio::spawn(async move {
            for b in b"GET / HTTP/1.1\r\nHost: x\r\n" {
                if client.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut buf = [0u8; 64];
        let mut got = 0;
        // Bytes trickling in do not move the headers' deadline.
        let err = within(async {
            loop {
                match timed.read(&mut buf).await {
                    Ok(n) => got += n,
                    Err(e) => break e,
                }
            }
        })
        .await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("headers"), "{err}");
        assert!(got >= 2, "bytes kept coming until the deadline ({got})");
        drop(timed);
        trickle.await.unwrap();

        // While a request is served, a read waits as long as it must.
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut timed, conn2) = stream(server);
        conn2.request_started();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            client.write_all(b"x").await.unwrap();
            client
        });
        assert_eq!(timed.read(&mut buf).await.unwrap(), 1);
        drop((late, conn));
    }

    #[tokio::test]
    async fn a_kept_alive_connection_waits_longer_than_the_headers_then_is_closed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut timed, conn) = stream(server);
        conn.request_started();
        conn.response_done();
        let started = Instant::now();
        // Past the header deadline (200 ms) the idle connection is still there for the next
        // request.
        let next = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"G").await.unwrap();
            client
        });
        let mut buf = [0u8; 8];
        assert_eq!(timed.read(&mut buf).await.unwrap(), 1);
        let _client = next.await.unwrap();
        // Its first byte started the header deadline.
        let err = within(timed.read(&mut buf)).await.unwrap_err();
        assert!(err.to_string().contains("headers"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        let (_client, server) = tokio::io::duplex(1024);
        let (mut timed, conn) = stream(server);
        conn.request_started();
        conn.response_done();
        let err = within(timed.read(&mut buf)).await.unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
    }

    #[tokio::test]
    async fn a_response_the_client_does_not_read_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let (mut timed, _conn) = stream(server);
        let err = within(timed.write_all(&[b'x'; 4096])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
