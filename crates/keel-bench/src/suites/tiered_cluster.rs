//! `tiered`'s cases on a Redis Cluster: a private 3-primary cluster the
//! bench starts itself (`keel_test_support::OwnCluster`), against the raw
//! `redis` cluster client doing the same work. Each case has the shape of
//! its single-server twin in `tiered.rs` (same tasks, value size, local
//! tier, number of connections, rounds).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_cache::{CacheManager, TieredCache};
use keel_test_support::OwnCluster;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;

use super::tiered::{POOL, Sharded, config, decode_all, invalidation_between, l2_hit, uniform};
use crate::Ctx;
use crate::workload::median;

/// The cases this module measures, for the note that skips them.
const CASES: &str = "l2-hit-cluster, get-many-100-cluster, invalidation-cluster";

/// The response timeout of the raw cluster connections: keel's
/// `command_timeout` default. The cluster client has none by default, the
/// single-server `ConnectionManager` has one; with it both sides pay for
/// a timer per command, as in `l2-hit`.
const RAW_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the cluster, fills it with `keys` values of `value` through
/// keel, runs the cluster cases and stops the cluster; skips them with a
/// note when no cluster can be started here.
pub(super) async fn run(
    ctx: &mut Ctx,
    prefix: &str,
    keys: u64,
    rounds: usize,
    value: &str,
) -> anyhow::Result<()> {
    // Starting waits on child processes: off the runtime's workers. A
    // panic (services required but not runnable) skips as well, with why.
    let cluster = match tokio::task::spawn_blocking(|| OwnCluster::start(3, 0)).await {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            ctx.report.note(&format!(
                "{CASES}: skipped (a private Redis Cluster cannot be started here: \
                 redis-server or redis-cli missing, or the cluster did not settle)"
            ));
            return Ok(());
        }
        Err(error) => {
            ctx.report.note(&format!(
                "{CASES}: skipped (starting a private Redis Cluster failed: {error})"
            ));
            return Ok(());
        }
    };
    let url = cluster.url();
    let nodes = cluster.node_urls();
    let client = ClusterClient::builder(nodes.iter().map(String::as_str))
        .response_timeout(RAW_RESPONSE_TIMEOUT)
        .build()?;

    // Fill the cluster through one instance.
    let writer = CacheManager::new(config(&url, prefix, 1_000))?;
    let cache: TieredCache<u64, String> = writer.cache("bench")?;
    let errors_before = cache.stats().remote_errors;
    let all: Vec<u64> = (0..keys).collect();
    for chunk in all.chunks(1_000) {
        cache
            .insert_many(chunk.iter().map(|&k| (k, value.to_owned())))
            .await;
    }
    anyhow::ensure!(
        cache.stats().remote_errors == errors_before,
        "filling the private Redis Cluster at {url} failed"
    );

    l2_hit_cluster(ctx, &url, prefix, keys, rounds, &client).await?;
    get_many(ctx, &url, prefix, keys, rounds, &client).await?;
    invalidation(ctx, &cluster, prefix, &client).await?;

    cache.clear().await;
    // Kills every node and removes their directory.
    drop(cluster);
    Ok(())
}

/// `l2-hit-cluster`: as `l2-hit`, against raw GET + decode on as many
/// cluster connections as keel's pool has.
async fn l2_hit_cluster(
    ctx: &mut Ctx,
    url: &str,
    prefix: &str,
    keys: u64,
    rounds: usize,
    client: &ClusterClient,
) -> anyhow::Result<()> {
    let mut conns = Vec::new();
    for _ in 0..POOL {
        // The connection type keel's Redis tier uses on a cluster.
        conns.push(client.get_async_connection().await?);
    }
    l2_hit(
        ctx,
        "l2-hit-cluster",
        "raw cluster",
        url,
        prefix,
        keys,
        rounds,
        conns,
    )
    .await
}

/// `get-many-100-cluster`: as `get-many-100`, keys per second of batches
/// of 100 uniform keys, one batch at a time; against the raw client
/// grouping the same pre-built keys by hash slot, one MGET per slot sent
/// concurrently on one cluster connection, the values put back in the
/// batch's order and decoded.
async fn get_many(
    ctx: &mut Ctx,
    url: &str,
    prefix: &str,
    keys: u64,
    rounds: usize,
    client: &ClusterClient,
) -> anyhow::Result<()> {
    let manager = CacheManager::new(config(url, prefix, 1))?;
    let c: TieredCache<u64, String> = manager.cache("bench")?;
    let batches: u64 = if ctx.quick { 200 } else { 1_000 };
    let conn = client.get_async_connection().await?;
    let raw_keys: Vec<String> = (0..keys).map(|k| format!("{prefix}:bench:{k}")).collect();
    let (mut many, mut raw) = (Vec::new(), Vec::new());
    let mut raw_errors = 0u64;
    for round in 0..rounds {
        // Which side goes first alternates, so neither always meets a
        // warmer (or more tired) machine.
        for side in [round % 2, 1 - round % 2] {
            let started = Instant::now();
            if side == 0 {
                for b in 0..batches {
                    let batch: Vec<u64> = (0..100).map(|i| uniform(b * 100 + i, keys)).collect();
                    std::hint::black_box(c.get_many(&batch).await);
                }
                many.push((batches * 100) as f64 / started.elapsed().as_secs_f64());
                continue;
            }
            for b in 0..batches {
                let batch: Vec<&str> = (0..100)
                    .map(|i| raw_keys[uniform(b * 100 + i, keys) as usize].as_str())
                    .collect();
                let (found, failed) = mget_by_slot(&conn, &batch).await;
                raw_errors += failed;
                std::hint::black_box(decode_all(&found));
            }
            raw.push((batches * 100) as f64 / started.elapsed().as_secs_f64());
        }
    }
    let (m, r) = (median(&mut many), median(&mut raw));
    ctx.report
        .record("get-many-100-cluster", "keel", "ops_per_s", m);
    ctx.report
        .record("get-many-100-cluster", "redis", "ops_per_s", r);
    ctx.report.note(&format!(
        "get_many(100) on a cluster: keel / raw per-slot MGET + decode = {:.2}",
        m / r
    ));
    if raw_errors > 0 {
        ctx.report.note(&format!(
            "get-many-100-cluster: {raw_errors} raw per-slot MGETs failed"
        ));
    }
    Ok(())
}

/// The values of `keys` in their order, read with one MGET per hash slot
/// (a cluster serves a multi-key command only within one slot), every
/// slot's MGET in flight at once on clones of `conn`; with how many of
/// those MGETs failed (their keys read as absent).
async fn mget_by_slot(conn: &ClusterConnection, keys: &[&str]) -> (Vec<Option<Vec<u8>>>, u64) {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut of_slot: HashMap<Slot, usize> = HashMap::with_capacity(keys.len());
    for (at, key) in keys.iter().enumerate() {
        let group = *of_slot.entry(Slot::for_key(key)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(at);
    }
    let replies = futures_util::future::join_all(groups.iter().map(|positions| {
        let mut conn = conn.clone();
        let mut cmd = redis::cmd("MGET");
        for &at in positions {
            cmd.arg(keys[at]);
        }
        async move { cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await }
    }))
    .await;
    let mut found = vec![None; keys.len()];
    let mut failed = 0;
    for (positions, reply) in groups.iter().zip(replies) {
        match reply {
            Ok(values) => {
                for (&at, value) in positions.iter().zip(values) {
                    found[at] = value;
                }
            }
            Err(_) => failed += 1,
        }
    }
    (found, failed)
}

/// `invalidation-cluster`: as `invalidation`, two keel instances whose
/// subscriptions are on a node other than the one their publishes go to
/// (the primary of the channel's slot), so every message crosses the
/// cluster bus; against a raw PUBLISH through a cluster connection → a
/// plain subscriber on a node other than the one that PUBLISH goes to, and
/// a raw SPUBLISH → a sharded subscriber (`redis-sharded`).
async fn invalidation(
    ctx: &mut Ctx,
    cluster: &OwnCluster,
    prefix: &str,
    client: &ClusterClient,
) -> anyhow::Result<()> {
    let keel_channel = format!("{prefix}:~inval:bench");
    let raw_channel = format!("{prefix}:raw-bench");
    // `primary_of` asks the nodes with redis-cli, and panics when none
    // answers: an error here, before anything is timed.
    let (keel_publishes_to, raw_publishes_to) = tokio::task::block_in_place(|| {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            (
                cluster.primary_of(&keel_channel),
                cluster.primary_of(&raw_channel),
            )
        }))
    })
    .map_err(|_| anyhow::anyhow!("no node of the private Redis Cluster says who serves a slot"))?;
    let nodes = cluster.node_urls();
    let port = |node: &str| -> anyhow::Result<u16> {
        node.rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .with_context(|| format!("{node:?} has no port"))
    };
    let mut ports = Vec::new();
    for node in &nodes {
        ports.push(port(node)?);
    }
    // Instance a's seeds start at the node its publishes go to (it
    // ignores its own messages wherever it listens); b's at the next node,
    // where it subscribes.
    let from = |first: usize| -> String {
        let seeds: Vec<String> = (0..ports.len())
            .map(|i| format!("127.0.0.1:{}", ports[(first + i) % ports.len()]))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    };
    let publisher_at = ports
        .iter()
        .position(|&p| p == keel_publishes_to)
        .context("the channel's primary is a node of the cluster")?;
    let a = CacheManager::new(config(&from(publisher_at), prefix, 10_000))?;
    let b = CacheManager::new(config(&from(publisher_at + 1), prefix, 10_000))?;
    for (name, manager) in [("a", &a), ("b", &b)] {
        let bus = manager
            .bus()
            .context("the bench config has Redis, so the manager has a bus")?;
        anyhow::ensure!(
            bus.wait_connected(Duration::from_secs(5)).await,
            "instance {name}'s invalidation bus did not subscribe on the cluster"
        );
    }
    let subscriber_at = nodes
        .iter()
        .zip(&ports)
        .find(|&(_, &p)| p != raw_publishes_to)
        .map(|(node, _)| node)
        .context("a 3-node cluster has a node besides the channel's primary")?;
    let subscriber = redis::Client::open(subscriber_at.as_str())?;
    let publisher = client.get_async_connection().await?;
    // Sharded pub/sub as redis-rs documents it: a RESP3 cluster connection
    // with a push sender subscribes (on the channel's shard), another
    // connection SPUBLISHes.
    let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
    let mut sharded_subscriber = ClusterClient::builder(nodes.iter().map(String::as_str))
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .response_timeout(RAW_RESPONSE_TIMEOUT)
        .build()?
        .get_async_connection()
        .await?;
    sharded_subscriber.ssubscribe(&raw_channel).await?;
    let sharded = Sharded {
        publisher: client.get_async_connection().await?,
        pushes,
        _subscriber: sharded_subscriber,
    };
    invalidation_between(
        ctx,
        "-cluster",
        [&a, &b],
        &subscriber,
        publisher,
        &raw_channel,
        Some(sharded),
    )
    .await?;
    if let (Some(k), Some(r), Some(s)) = (
        ctx.report.get("invalidation-cluster", "keel", "p99_us"),
        ctx.report.get("invalidation-cluster", "redis", "p99_us"),
        ctx.report
            .get("invalidation-cluster", "redis-sharded", "p99_us"),
    ) {
        let verdict = if k <= 2.0 * s { "met" } else { "NOT met" };
        ctx.report.note(&format!(
            "invalidation-cluster: keel p99 = {:.2}x a raw PUBLISH across nodes, {:.2}x a raw SPUBLISH → SSUBSCRIBE (goal ≤ 2x: {verdict}; {k:.0} / {r:.0} / {s:.0} us)",
            k / r,
            k / s
        ));
    }
    Ok(())
}
