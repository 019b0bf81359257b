//! `websocket`: fan-out from one publisher to many WebSocket clients on
//! loopback, Keel against plain broadcast servers.
//!
//! - `keel`: a `WebSocketManager` served by axum, `broadcast_frame` per
//!   message (default config; queue 1024, drop-oldest).
//! - `tokio-tungstenite`: a plain server: `accept_async_with_config` (read
//!   buffer 4 KiB, as tungstenite's docs advise for many connections), one
//!   task per client awaiting `tokio::sync::broadcast::Receiver::recv`
//!   (capacity 1024, shared `Utf8Bytes`) and `send`ing each message.
//! - `tokio-websockets`: the same plain server on tokio-websockets
//!   (`ServerBuilder::accept`, shared `Bytes` payloads).
//!
//! Cases: `fanout-1k` and `fanout-10k` (one publisher sends a burst of
//! 512-byte text messages, each stamped with its send time; every client
//! reads them all), `fanout-10k-slow` (the same 10k clients plus one
//! whose socket has a 4 KiB receive buffer and which never reads), and
//! `idle` (heap bytes per open, idle connection: the heap grown by N
//! connected clients, less what N bare TCP clients cost the process).
//! Metrics: `msgs_per_s` (messages delivered to all clients / time from
//! the first send to the last delivery), `p50_us`/`p99_us` (send →
//! receive over every delivery, the never-reading client excluded),
//! `bytes_per_conn`. The clients are tokio-tungstenite clients (TCP_NODELAY,
//! 4 KiB read buffers) in a child process of their own (this binary again,
//! driven over its stdin), so the server process keeps its file
//! descriptors for its 10k sockets and the heap it measures is the
//! server's; servers set TCP_NODELAY on accepted sockets. Send times are
//! wall-clock nanoseconds, comparable across the two processes. Rounds
//! alternate between implementations; the median round is reported.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use keel_websocket::{Frame, WebSocketConfig, WebSocketManager};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as TungConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::Ctx;
use crate::memory::allocated;
use crate::workload::median;

const IMPLS: [&str; 3] = ["keel", "tokio-tungstenite", "tokio-websockets"];
const MESSAGE_BYTES: usize = 512;
const CHANNEL: usize = 1024;
/// Set in the child process that holds the clients.
pub(crate) const CLIENT_ENV: &str = "KEEL_BENCH_WS_CLIENT";

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    runtime()?.block_on(run_async(ctx))
}

/// The servers' runtime, with the descriptor limit raised for them.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    raise_fd_limit();
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// 10k clients and their 10k server sockets need more than 20k descriptors.
fn raise_fd_limit() {
    let want = 65_536;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
}

/// A running server of one implementation.
struct Server {
    addr: SocketAddr,
    publish: Box<dyn Fn(String) + Send + Sync>,
    clients: Box<dyn Fn() -> usize + Send + Sync>,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

async fn start(which: &str) -> anyhow::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    match which {
        "keel" => {
            let mut config = WebSocketConfig::default();
            config.max_connections = 100_000;
            let manager = WebSocketManager::new(config)?;
            let app: axum::Router = manager.router();
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let task = tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await
            });
            let (m1, m2, m3) = (manager.clone(), manager.clone(), manager);
            Ok(Server {
                addr,
                publish: Box::new(move |text| {
                    let _ = m1.broadcast_frame(Frame::text(text));
                }),
                clients: Box::new(move || m2.count()),
                stop: Some(Box::new(move || {
                    task.abort();
                    tokio::spawn(async move { m3.shutdown(Duration::from_secs(5)).await });
                })),
            })
        }
        "tokio-tungstenite" => {
            let (tx, _) = broadcast::channel::<Utf8Bytes>(CHANNEL);
            let accepting = tx.clone();
            let task = tokio::spawn(async move {
                let config = TungConfig::default().read_buffer_size(4 * 1024);
                while let Ok((stream, _)) = listener.accept().await {
                    let tx = accepting.clone();
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let Ok(mut ws) =
                            tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                        else {
                            return;
                        };
                        let mut rx = tx.subscribe();
                        drop(tx);
                        loop {
                            tokio::select! {
                                next = rx.recv() => match next {
                                    Ok(text) => {
                                        if ws.send(Message::Text(text)).await.is_err() {
                                            return;
                                        }
                                    }
                                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                                    Err(broadcast::error::RecvError::Closed) => return,
                                },
                                incoming = ws.next() => if !matches!(incoming, Some(Ok(_))) {
                                    return;
                                },
                            }
                        }
                    });
                }
            });
            let counted = tx.clone();
            Ok(Server {
                addr,
                publish: Box::new(move |text| {
                    let _ = tx.send(Utf8Bytes::from(text));
                }),
                // The accept loop holds one sender, not a receiver.
                clients: Box::new(move || counted.receiver_count()),
                stop: Some(Box::new(move || task.abort())),
            })
        }
        _ => {
            let (tx, _) = broadcast::channel::<Bytes>(CHANNEL);
            let accepting = tx.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let tx = accepting.clone();
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let Ok((_, mut ws)) =
                            tokio_websockets::ServerBuilder::new().accept(stream).await
                        else {
                            return;
                        };
                        let mut rx = tx.subscribe();
                        drop(tx);
                        loop {
                            tokio::select! {
                                next = rx.recv() => match next {
                                    Ok(bytes) => {
                                        let message = tokio_websockets::Message::text(
                                            tokio_websockets::Payload::from(bytes),
                                        );
                                        if ws.send(message).await.is_err() {
                                            return;
                                        }
                                    }
                                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                                    Err(broadcast::error::RecvError::Closed) => return,
                                },
                                incoming = ws.next() => if !matches!(incoming, Some(Ok(_))) {
                                    return;
                                },
                            }
                        }
                    });
                }
            });
            let counted = tx.clone();
            Ok(Server {
                addr,
                publish: Box::new(move |text| {
                    let _ = tx.send(Bytes::from(text));
                }),
                clients: Box::new(move || counted.receiver_count()),
                stop: Some(Box::new(move || task.abort())),
            })
        }
    }
}

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Wall-clock nanoseconds: send and receive times from two processes.
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The load generator: a child process holding the clients.
struct Clients {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Clients {
    /// Starts a child holding `n` clients of `kind` (`ws` or `raw`)
    /// connected to `addr`.
    async fn spawn(addr: SocketAddr, n: usize, kind: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env(CLIENT_ENV, format!("{kind} {addr} {n}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the client process")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut clients = Self {
            child,
            stdin,
            stdout,
        };
        clients.expect("connected").await?;
        Ok(clients)
    }

    async fn expect(&mut self, word: &str) -> anyhow::Result<Vec<String>> {
        let line = tokio::time::timeout(Duration::from_secs(120), self.stdout.next_line())
            .await
            .with_context(|| format!("client process: no {word:?} within 120 s"))??
            .with_context(|| format!("client process ended before {word:?}"))?;
        let mut parts = line.split_whitespace().map(str::to_owned);
        anyhow::ensure!(
            parts.next().as_deref() == Some(word),
            "client process said {line:?}, expected {word:?}"
        );
        Ok(parts.collect())
    }

    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn stop(mut self) {
        let _ = self.say("quit").await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

async fn wait_for(server: &Server, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while (server.clients)() < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} clients registered",
            (server.clients)()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The send time stamped into a message.
fn stamp_of(text: &str) -> Option<u64> {
    let at = text.find("\"t\":")? + 4;
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

struct Burst {
    delivered: u64,
    elapsed: Duration,
    p50_us: f64,
    p99_us: f64,
}

/// Sends `msgs` messages; every client reads them all.
async fn burst(server: &Server, clients: &mut Clients, msgs: usize) -> anyhow::Result<Burst> {
    clients.say(&format!("burst {msgs}")).await?;
    clients.expect("armed").await?;
    let pad = "x".repeat(MESSAGE_BYTES - 64);
    let first_send = wall_ns();
    for seq in 0..msgs {
        let t = wall_ns();
        (server.publish)(format!(
            r#"{{"type":"tick","data":{{"seq":{seq},"t":{t},"pad":"{pad}"}}}}"#
        ));
        if seq % 4 == 3 {
            tokio::task::yield_now().await;
        }
    }
    let done = clients.expect("done").await?;
    let field =
        |i: usize| -> anyhow::Result<u64> { Ok(done.get(i).context("short done line")?.parse()?) };
    let (delivered, last, p50, p99) = (field(0)?, field(1)?, field(2)?, field(3)?);
    Ok(Burst {
        delivered,
        elapsed: Duration::from_nanos(last.saturating_sub(first_send)),
        p50_us: p50 as f64 / 1_000.0,
        p99_us: p99 as f64 / 1_000.0,
    })
}

/// The child process: `KEEL_BENCH_WS_CLIENT="ws|raw ADDR N"`. Connects,
/// says `connected`, then obeys `burst M` (answers `armed`, then `done
/// <delivered> <last receive, wall ns> <p50 ns> <p99 ns>`), `stuck`
/// (adds a client that never reads; answers `ok`) and `quit`.
pub(crate) fn client_main(spec: &str) -> anyhow::Result<()> {
    raise_fd_limit();
    let mut words = spec.split_whitespace();
    let kind = words.next().context("no client kind")?.to_owned();
    let addr: SocketAddr = words.next().context("no address")?.parse()?;
    let n: usize = words.next().context("no count")?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut input = BufReader::new(tokio::io::stdin()).lines();
        let mut out = tokio::io::stdout();
        if kind == "raw" {
            let held = raw_clients(addr, n).await?;
            out.write_all(b"connected\n").await?;
            out.flush().await?;
            while let Some(line) = input.next_line().await? {
                if line == "quit" {
                    break;
                }
            }
            drop(held);
            return Ok(());
        }
        let mut clients = connect_all(addr, n).await?;
        out.write_all(b"connected\n").await?;
        out.flush().await?;
        let mut stuck = Vec::new();
        while let Some(line) = input.next_line().await? {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("burst") => {
                    let msgs: usize = parts.next().context("burst size")?.parse()?;
                    let readers: Vec<_> = clients
                        .drain(..)
                        .map(|client| tokio::spawn(read_burst(client, msgs)))
                        .collect();
                    out.write_all(b"armed\n").await?;
                    out.flush().await?;
                    let mut latencies = Vec::with_capacity(n * msgs);
                    let mut last = 0u64;
                    for reader in readers {
                        let (got, at, client) = reader.await?;
                        latencies.extend(got);
                        last = last.max(at);
                        clients.push(client);
                    }
                    latencies.sort_unstable();
                    let pick = |p: f64| -> u64 {
                        if latencies.is_empty() {
                            return 0;
                        }
                        let at = ((latencies.len() as f64 - 1.0) * p).round() as usize;
                        latencies[at.min(latencies.len() - 1)]
                    };
                    let line = format!(
                        "done {} {last} {} {}\n",
                        latencies.len(),
                        pick(0.50),
                        pick(0.99)
                    );
                    out.write_all(line.as_bytes()).await?;
                    out.flush().await?;
                }
                Some("stuck") => {
                    stuck.push(stuck_client(addr).await?);
                    out.write_all(b"ok\n").await?;
                    out.flush().await?;
                }
                _ => break,
            }
        }
        Ok(())
    })
}

/// Reads `msgs` messages; returns their latencies, the wall time of the
/// last one, and the client.
async fn read_burst(mut client: Client, msgs: usize) -> (Vec<u64>, u64, Client) {
    let mut latencies = Vec::with_capacity(msgs);
    let mut last = 0;
    while latencies.len() < msgs {
        match tokio::time::timeout(Duration::from_secs(30), client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let now = wall_ns();
                last = now;
                if let Some(sent) = stamp_of(text.as_str()) {
                    latencies.push(now.saturating_sub(sent));
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    (latencies, last, client)
}

fn client_config() -> TungConfig {
    TungConfig::default().read_buffer_size(4 * 1024)
}

async fn connect_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Client>> {
    let url = format!("ws://{addr}/ws");
    let clients: Vec<anyhow::Result<Client>> = futures_util::stream::iter(0..n)
        .map(|_| {
            let url = url.clone();
            async move {
                let (client, _) =
                    tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
                        .await?;
                Ok(client)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    clients.into_iter().collect()
}

/// A client that never reads, with a 4 KiB receive buffer so its socket
/// fills after a few messages.
async fn stuck_client(addr: SocketAddr) -> anyhow::Result<Client> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4 * 1024)?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (client, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/ws"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await?;
    Ok(client)
}

#[derive(Default)]
struct Samples {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Samples {
    fn push(&mut self, burst: Burst) {
        let secs = burst.elapsed.as_secs_f64().max(1e-9);
        self.rate.push(burst.delivered as f64 / secs);
        self.p50.push(burst.p50_us);
        self.p99.push(burst.p99_us);
    }
}

async fn run_async(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (rounds_1k, rounds_10k) = if ctx.quick { (3, 1) } else { (7, 3) };
    let (msgs_1k, msgs_10k) = (200, 50);
    let n_10k = 10_000;

    // fanout-1k
    let mut results: Vec<Samples> = IMPLS.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds_1k {
        for k in 0..IMPLS.len() {
            let i = (round + k) % IMPLS.len();
            let server = start(IMPLS[i]).await?;
            let mut clients = Clients::spawn(server.addr, 1_000, "ws").await?;
            wait_for(&server, 1_000).await?;
            results[i].push(burst(&server, &mut clients, msgs_1k).await?);
            clients.stop().await;
            drop(server);
            settle().await;
        }
    }
    record(ctx, "fanout-1k", &mut results);

    // fanout-10k, then fanout-10k-slow on the same connections with one
    // client added that never reads.
    let mut plain: Vec<Samples> = IMPLS.iter().map(|_| Samples::default()).collect();
    let mut slow: Vec<Samples> = IMPLS.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds_10k {
        for k in 0..IMPLS.len() {
            let i = (round + k) % IMPLS.len();
            let server = start(IMPLS[i]).await?;
            let mut clients = Clients::spawn(server.addr, n_10k, "ws")
                .await
                .with_context(|| format!("connecting {n_10k} clients to {}", IMPLS[i]))?;
            wait_for(&server, n_10k).await?;
            plain[i].push(burst(&server, &mut clients, msgs_10k).await?);
            clients.say("stuck").await?;
            clients.expect("ok").await?;
            wait_for(&server, n_10k + 1).await?;
            slow[i].push(burst(&server, &mut clients, msgs_10k).await?);
            clients.stop().await;
            drop(server);
            settle().await;
        }
    }
    record(ctx, "fanout-10k", &mut plain);
    record(ctx, "fanout-10k-slow", &mut slow);

    notes(ctx, rounds_1k, rounds_10k);
    Ok(())
}

/// The `idle` case, in the process that counts allocations (the timed
/// cases run in a child that does not; see `suites::child`): the server's
/// heap growth per connected, idle client.
pub(crate) fn memory(ctx: &mut Ctx) -> anyhow::Result<()> {
    runtime()?.block_on(idle(ctx))
}

async fn idle(ctx: &mut Ctx) -> anyhow::Result<()> {
    let n_idle = if ctx.quick { 2_000 } else { 10_000 };
    for which in IMPLS {
        let server = start(which).await?;
        settle().await;
        let before = allocated();
        let clients = Clients::spawn(server.addr, n_idle, "raw").await?;
        wait_for(&server, n_idle).await?;
        settle().await;
        let after = allocated();
        let per = after.saturating_sub(before) as f64 / n_idle as f64;
        ctx.report.record("idle", which, "bytes_per_conn", per);
        clients.stop().await;
        drop(server);
        settle().await;
    }

    ctx.report
        .note(&format!("idle: heap growth over {n_idle} connections"));
    Ok(())
}

/// Lets closed connections wind down between rounds.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn record(ctx: &mut Ctx, case: &str, results: &mut [Samples]) {
    for (which, samples) in IMPLS.iter().zip(results.iter_mut()) {
        ctx.report
            .record(case, which, "msgs_per_s", median(&mut samples.rate));
        ctx.report
            .record(case, which, "p50_us", median(&mut samples.p50));
        ctx.report
            .record(case, which, "p99_us", median(&mut samples.p99));
    }
}

/// Upgrades by hand and keeps only the socket: the cheapest client that
/// holds a connection open.
async fn raw_clients(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .await?;
        let mut buf = [0u8; 512];
        let mut got = 0;
        while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf[got..]).await?;
            anyhow::ensure!(n > 0, "server closed during the handshake");
            got += n;
            anyhow::ensure!(got < buf.len(), "handshake response too long");
        }
        anyhow::ensure!(buf.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        clients.push(stream);
    }
    Ok(clients)
}

fn notes(ctx: &Ctx, rounds_1k: usize, rounds_10k: usize) {
    let get = |case: &str, which: &str, metric: &str| ctx.report.get(case, which, metric);
    for case in ["fanout-1k", "fanout-10k", "fanout-10k-slow"] {
        let keel_rate = get(case, "keel", "msgs_per_s");
        let best_plain = ["tokio-tungstenite", "tokio-websockets"]
            .iter()
            .filter_map(|w| get(case, w, "msgs_per_s").map(|v| (*w, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(k), Some((w, v))) = (keel_rate, best_plain) {
            let p99 = match (get(case, "keel", "p99_us"), get(case, w, "p99_us")) {
                (Some(a), Some(b)) if b > 0.0 => format!("; p99 keel / {w} = {:.2}", a / b),
                _ => String::new(),
            };
            ctx.report.note(&format!(
                "{case}: keel / faster plain server ({w}) delivery = {:.2}{p99}",
                k / v
            ));
        }
    }
    for which in IMPLS {
        if let (Some(a), Some(b)) = (
            get("fanout-10k", which, "p99_us"),
            get("fanout-10k-slow", which, "p99_us"),
        ) && a > 0.0
        {
            ctx.report.note(&format!(
                "{which}: one never-reading client moves the others' p99 by {:+.1}%",
                (b / a - 1.0) * 100.0
            ));
        }
    }
    ctx.report.note(&format!(
        "rounds: fanout-1k {rounds_1k} x 200 messages, fanout-10k {rounds_10k} x 50 messages, \
         {MESSAGE_BYTES} bytes each"
    ));
}
