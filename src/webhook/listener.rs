//! The webhook port is open to anyone who can reach it, before any
//! signature is checked: each connection may make the receiver hold up to a
//! 1 MiB body while it computes the signature. So the listener bounds what
//! unauthenticated clients can take: at most [`MAX_CONNECTIONS`] at once
//! (more wait in the kernel's backlog, costing the operator nothing), and
//! each connection lives at most [`CONNECTION_LIFETIME`] from its accept, the
//! time GitHub itself gives a delivery, so a client that sends slowly or not
//! at all cannot keep a slot.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may take, from its accept to its last byte: GitHub
/// gives up on a delivery after 10 seconds.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);

/// A TCP listener serving at most `max_connections` connections at once,
/// each for at most `lifetime`.
pub struct BoundedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, max_connections: usize, lifetime: Duration) -> Self {
        BoundedListener {
            inner,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            lifetime,
        }
    }
}

impl Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // A slot first: while every slot is taken, new connections wait in
        // the kernel's backlog instead of in the operator's memory.
        let slot = match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            // Never closed; without a slot the connection is not bounded.
            Err(_) => unreachable!("the listener's semaphore is never closed"),
        };
        let (stream, address) = Listener::accept(&mut self.inner).await;
        let stream = BoundedStream {
            inner: stream,
            deadline: Box::pin(tokio::time::sleep(self.lifetime)),
            _slot: slot,
        };
        (stream, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its lifetime is over,
/// and frees its slot when dropped.
pub struct BoundedStream {
    inner: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl BoundedStream {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "webhook connection lifetime over")
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn serve(max: usize, lifetime: Duration) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = BoundedListener::new(tcp, max, lifetime);
        let app =
            axum::Router::new().route("/", axum::routing::post(|body: String| async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn a_client_that_stops_sending_is_cut_off_at_the_lifetime() {
        let address = serve(4, Duration::from_millis(300)).await;
        let mut stalled = TcpStream::connect(address).await.unwrap();
        stalled
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let began = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut stalled))
            .await
            .expect("the server closed the connection");
        assert!(
            began.elapsed() >= Duration::from_millis(250),
            "closed before the lifetime"
        );
        assert!(
            !String::from_utf8_lossy(&answer).contains("200 OK"),
            "the partial request was not served"
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_a_slot_frees() {
        let address = serve(2, Duration::from_millis(500)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
            held.push(stream);
        }
        // A third client is accepted by the kernel but not served while both
        // slots are held; it is once the first two are cut off.
        let began = std::time::Instant::now();
        let mut third = TcpStream::connect(address).await.unwrap();
        third
            .write_all(
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            )
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut third))
            .await
            .expect("the third client was served");
        assert!(String::from_utf8_lossy(&answer).contains("200 OK"));
        assert!(
            began.elapsed() >= Duration::from_millis(300),
            "served while both slots were held"
        );
    }
}
