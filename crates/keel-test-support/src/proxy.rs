//! A TCP proxy that a test puts between a client and a real server to hold
//! one connection's replies, delay every reply, or cut the link.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on a free loopback port forwarding to `target`, on a runtime of
/// its own (so it works under any test runtime, paused clocks included).
///
/// - [`hold_next`](Self::hold_next): the next connection whose client
///   sends bytes containing a pattern (`$3\r\nGET\r\n` is a Redis `GET`)
///   has its replies held back from then on until [`release`](Self::release):
///   a read in flight while the test does other things, deterministically.
/// - [`set_delay`](Self::set_delay): every reply waits that long.
/// - [`cut`](Self::cut): every connection is closed and new ones are
///   refused (accepted and closed at once) until [`restore`](Self::restore):
///   the server looks down to this client only, and keeps its data.
///
/// ```no_run
/// # async fn example() {
/// let proxy = keel_test_support::Proxy::start("127.0.0.1:6379".parse().unwrap());
/// let url = format!("redis://{}", proxy.addr());
/// # }
/// ```
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    runtime: Option<tokio::runtime::Runtime>,
    held: Arc<Mutex<Held>>,
}

#[derive(Debug, Clone, Default)]
struct Control {
    /// Bumped by every cut: connections made before it close.
    cuts: u64,
    cut: bool,
    delay: Duration,
    /// Hold the replies of the next connection that sends this.
    hold_pattern: Option<Vec<u8>>,
    /// The connection whose replies are held.
    holding: Option<u64>,
}

#[derive(Debug, Default)]
struct Held {
    /// Reply bytes held back so far.
    bytes: usize,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    ///
    /// # Panics
    ///
    /// When no loopback port or thread can be had.
    pub fn start(target: SocketAddr) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keel-test-proxy")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the proxy's runtime: {e}"));
        // Bound here, registered with the runtime on it: `start` may be
        // called from inside another runtime, where blocking on one is not
        // allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .unwrap_or_else(|e| panic!("cannot bind the proxy: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy has no address: {e}"));
        let (control, rx) = watch::channel(Control::default());
        let held = Arc::new(Mutex::new(Held::default()));
        let (tx, held_too) = (control.clone(), held.clone());
        runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, target, tx, rx, held_too).await,
                Err(e) => eprintln!("test proxy cannot listen: {e}"),
            }
        });
        Proxy {
            addr,
            control,
            runtime: Some(runtime),
            held,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://<addr>`, for a proxy in front of Redis.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Holds the replies of the next connection whose client sends bytes
    /// containing `pattern`, from that point until [`release`](Self::release).
    pub fn hold_next(&self, pattern: &[u8]) {
        lock(&self.held).bytes = 0;
        self.control.send_modify(|c| {
            c.hold_pattern = Some(pattern.to_vec());
            c.holding = None;
        });
    }

    /// Waits until some reply bytes are held back (the server has answered
    /// the held request), at most `timeout`; returns whether they are.
    pub async fn wait_held(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if lock(&self.held).bytes > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// Lets held replies through and stops holding.
    pub fn release(&self) {
        self.control.send_modify(|c| {
            c.hold_pattern = None;
            c.holding = None;
        });
    }

    /// Makes every reply wait `delay` (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.control.send_modify(|c| c.delay = delay);
    }

    /// Closes every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.control.send_modify(|c| {
            c.cut = true;
            c.cuts += 1;
        });
    }

    /// Accepts connections again after a [`cut`](Self::cut).
    pub fn restore(&self) {
        self.control.send_modify(|c| c.cut = false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    control: watch::Sender<Control>,
    rx: watch::Receiver<Control>,
    held: Arc<Mutex<Held>>,
) {
    let mut next_id = 0u64;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if rx.borrow().cut {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(target).await else {
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let cuts = rx.borrow().cuts;
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::spawn(requests(
            id,
            cuts,
            client_read,
            server_write,
            control.clone(),
            rx.clone(),
        ));
        tokio::spawn(replies(
            id,
            cuts,
            server_read,
            client_write,
            rx.clone(),
            held.clone(),
        ));
    }
}

/// Client → server: forwards, marking the connection held when it sends
/// the pattern.
async fn requests(
    id: u64,
    cuts: u64,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: watch::Sender<Control>,
    mut rx: watch::Receiver<Control>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut_after(&mut rx, cuts) => return,
        };
        let chunk = &buf[..n];
        control.send_if_modified(|c| match &c.hold_pattern {
            Some(p) if c.holding.is_none() && contains(chunk, p) => {
                c.holding = Some(id);
                true
            }
            _ => false,
        });
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

/// Server → client: forwards after the delay, and not while held.
async fn replies(
    id: u64,
    cuts: u64,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Control>,
    held: Arc<Mutex<Held>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut_after(&mut rx, cuts) => return,
        };
        let delay = rx.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if rx.borrow().holding == Some(id) {
            lock(&held).bytes += n;
            let cut = match rx
                .wait_for(|c| c.holding != Some(id) || c.cuts != cuts)
                .await
            {
                Ok(c) => c.cuts != cuts,
                Err(_) => true,
            };
            if cut {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Resolves once a cut after `cuts` happens (or the proxy is gone).
async fn cut_after(rx: &mut watch::Receiver<Control>, cuts: u64) {
    let _ = rx.wait_for(|c| c.cuts != cuts).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn patterns_are_found_anywhere_in_a_chunk() {
        assert!(contains(
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            b"$3\r\nGET\r\n"
        ));
        assert!(!contains(b"*1\r\n$4\r\nPING\r\n", b"$3\r\nGET\r\n"));
        assert!(!contains(b"abc", b""));
    }
}
