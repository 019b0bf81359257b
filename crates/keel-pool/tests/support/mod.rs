//! Helpers shared by the pool tests: an HTTP server on loopback that counts
//! its connections and requests, and a tracing capture.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a [`CountingServer`] has seen, and how it answers.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections open right now, and the most at once.
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Connections accepted in total.
    pub accepted: AtomicUsize,
    /// Requests being handled right now, and the most at once.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    /// Requests received in total, and by method.
    pub requests: AtomicUsize,
    pub posts: AtomicUsize,
    /// The next this-many requests are answered 503.
    pub fail_next: AtomicUsize,
    /// While set, every request is answered 503.
    pub failing: AtomicBool,
    /// How long each request takes, in milliseconds.
    pub delay_ms: AtomicUsize,
}

fn raise_max(max: &AtomicUsize, now: usize) {
    max.fetch_max(now, Ordering::SeqCst);
}

/// An axum server on 127.0.0.1:0 answering every path with `ok` (or 503
/// as [`Counts`] says), counting connections and requests.
#[derive(Debug)]
pub struct CountingServer {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingServer {
    pub async fn start() -> CountingServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let counts = Arc::new(Counts::default());
        let app = Router::new()
            .fallback(any(handle))
            .with_state(Arc::clone(&counts));
        let counting = CountingListener {
            inner: listener,
            counts: Arc::clone(&counts),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(counting, app).await;
        });
        CountingServer { addr, counts, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(counts): State<Arc<Counts>>,
    method: axum::http::Method,
) -> (StatusCode, &'static str) {
    counts.requests.fetch_add(1, Ordering::SeqCst);
    if method == axum::http::Method::POST {
        counts.posts.fetch_add(1, Ordering::SeqCst);
    }
    let now = counts.active.fetch_add(1, Ordering::SeqCst) + 1;
    raise_max(&counts.max_active, now);
    let delay = counts.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    counts.active.fetch_sub(1, Ordering::SeqCst);
    let fail_one = counts
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail_one || counts.failing.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else {
        (StatusCode::OK, "ok")
    }
}

struct CountingListener {
    inner: TcpListener,
    counts: Arc<Counts>,
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.inner.accept().await {
                self.counts.accepted.fetch_add(1, Ordering::SeqCst);
                let now = self.counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                raise_max(&self.counts.max_open, now);
                let counts = Arc::clone(&self.counts);
                return (CountedStream { stream, counts }, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A server-side connection, counted out when dropped.
pub struct CountedStream {
    stream: TcpStream,
    counts: Arc<Counts>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A loopback URL where nothing listens (connections are refused).
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// Polls `check` every 20 ms until it holds or `within` passes; whether it
/// held.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Captures the formatted `tracing` events of the current thread.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Installs a subscriber writing here, for the current thread.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
