//! Slow-client protection for every request on a connection.
//!
//! actix gives a new connection `server.client_request_timeout_ms` to send its first request's
//! head, and closes idle keep-alive connections; but once a later request has begun, nothing
//! bounds how long its head may take: a client that sends one byte of a second request could hold
//! the connection for ever. [`GuardedStream`] wraps each accepted socket and gives every request
//! head the same limit, counted from its first byte; the body has its own limit
//! (`server.body_read_timeout_ms`), enforced where handlers read it. A head that does not arrive
//! in time gets a 408 and the connection is closed.
//!
//! The stream and the requests it carries share a [`RequestClock`]: the middleware marks when a
//! request's head is complete (the request reached the application) and when its answer is ready.

use std::{
    cell::Cell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::rt::net::TcpStream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// What an over-time request head is answered, before the connection closes.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The limits a connection's requests are held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request head may take from its first byte.
    pub head: Duration,
    /// How long a connection may sit between an answer and the next request's first byte before
    /// it is closed anyway: the keep-alive time (which actix enforces itself) plus `head`, a
    /// backstop for a request whose first bytes arrived with the previous one.
    pub between_requests: Option<Duration>,
}

/// Where a connection stands, shared by its stream and the middleware.
#[derive(Debug)]
pub struct RequestClock {
    limits: ConnectionLimits,
    /// A request reached the application and its answer is not ready yet.
    serving: Cell<bool>,
    /// Bytes of a request head arrived since the last answer.
    head_started: Cell<bool>,
    /// When the connection is closed unless a request reaches the application first.
    deadline: Cell<Option<Instant>>,
}

impl RequestClock {
    fn new(limits: ConnectionLimits) -> Self {
        Self { limits, serving: Cell::new(false), head_started: Cell::new(false), deadline: Cell::new(None) }
    }

    /// A request's head is complete: it reached the application. Its body is limited where it is
    /// read.
    pub fn request_started(&self) {
        self.serving.set(true);
        self.deadline.set(None);
    }

    /// The request's answer is ready: the connection waits for the next request.
    pub fn request_finished(&self) {
        self.serving.set(false);
        self.head_started.set(false);
        self.deadline.set(self.limits.between_requests.map(|limit| Instant::now() + limit));
    }

    fn bytes_arrived(&self) {
        if self.serving.get() || self.head_started.get() {
            return;
        }
        self.head_started.set(true);
        let head_deadline = Instant::now() + self.limits.head;
        self.deadline.set(Some(self.deadline.get().map_or(head_deadline, |other| other.min(head_deadline))));
    }

    /// The deadline that applies now: none while a request is being served.
    fn pending_deadline(&self) -> Option<Instant> {
        if self.serving.get() { None } else { self.deadline.get() }
    }
}

/// Marks a request as finished on its connection's clock when dropped: when its answer is ready,
/// or when the request is abandoned.
#[derive(Debug)]
pub struct ServingGuard(Rc<RequestClock>);

impl ServingGuard {
    pub fn start(clock: &Rc<RequestClock>) -> Self {
        clock.request_started();
        Self(Rc::clone(clock))
    }
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An accepted TCP connection whose request heads must arrive in time.
#[derive(Debug)]
pub struct GuardedStream {
    io: TcpStream,
    clock: Rc<RequestClock>,
    timer: Pin<Box<Sleep>>,
    /// The deadline `timer` is set to.
    armed_for: Option<Instant>,
}

impl GuardedStream {
    pub fn new(io: TcpStream, limits: ConnectionLimits) -> Self {
        Self {
            io,
            clock: Rc::new(RequestClock::new(limits)),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        }
    }

    /// The clock the middleware marks requests on.
    pub fn clock(&self) -> Rc<RequestClock> {
        Rc::clone(&self.clock)
    }

    /// Whether the connection is past its deadline; registers for a wake-up at it otherwise.
    fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.clock.pending_deadline() else { return false };
        if self.armed_for != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed_for = Some(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Answers 408 when a request head was under way (best effort: the socket may not take it),
    /// and fails the read, which closes the connection.
    fn time_out(&self) -> io::Error {
        if self.clock.head_started.get() {
            let _ = self.io.try_write(REQUEST_TIMEOUT);
        }
        io::Error::new(io::ErrorKind::TimedOut, "the request head did not arrive in time")
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
        {
            this.clock.bytes_arrived();
        }
        // Checked whether or not bytes came: a client trickling its head byte by byte makes every
        // read succeed.
        if !matches!(read, Poll::Ready(Err(_))) && this.overdue(cx) {
            return Poll::Ready(Err(this.time_out()));
        }
        read
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
