//! [`RedisTaskQueue`]: a durable task queue on one Redis Stream with one
//! consumer group (feature `redis`).
//!
//! - `enqueue` is `XADD`: once it returns, the task is in the stream.
//! - `fetch` first reclaims, with `XAUTOCLAIM`, entries another consumer
//!   took but has not acknowledged for `visibility_timeout` (it died or
//!   hung), then reads new entries with `XREADGROUP ... >`. Reading puts an
//!   entry in the group's pending list under this consumer.
//! - An entry that does not decode as a task is moved to a dead-letter
//!   stream (with the reason) and acknowledged, so one bad entry cannot
//!   block a worker.
//! - `ack` is `XACK` + `XDEL` in one `MULTI`: only then does the entry
//!   leave the pending list, so a worker killed mid-task leaves its entries
//!   pending and another worker reclaims them: every enqueued task is
//!   handed out until some worker acknowledges it (at least once).
//! - On a Redis Cluster the stream and the dead-letter stream must hash to
//!   one slot (a hash tag such as `{jobs}` and `{jobs}:dead`), because
//!   moving an entry is one `MULTI` over both; [`RedisTaskQueue::open`]
//!   checks it.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use keel_core::InvalidField;
use keel_core::topology::{self, Conn, ConnectOptions, Topology};
use redis::{Client, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::error::QueueError;

/// Where a [`RedisTaskQueue`] keeps its tasks and who this worker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisQueueOptions {
    /// The stream's key.
    pub stream: String,
    /// The consumer group every worker of this queue joins (default `keel`).
    pub group: String,
    /// This worker's name in the group; must differ between live workers
    /// (default `keel-<pid>-<random>`).
    pub consumer: String,
    /// How long a taken task may stay unacknowledged before another worker
    /// may take it over (default 30s). Longer than the longest task.
    pub visibility_timeout: Duration,
    /// Where entries that do not decode as a task, or were handed out
    /// more than `max_deliveries` times, are moved with the reason instead
    /// of being handed out forever (default `<stream>:dead`).
    pub dead_letter_stream: String,
    /// Most times one task is handed out (first delivery included) before
    /// a reclaim moves it to the dead-letter stream: a task that kills
    /// every worker that takes it stops there (default 10; `None`: no
    /// limit).
    pub max_deliveries: Option<u64>,
}

impl RedisQueueOptions {
    /// Options for the stream at `stream` with the defaults above.
    pub fn new(stream: impl Into<String>) -> Self {
        let stream = stream.into();
        Self {
            dead_letter_stream: format!("{stream}:dead"),
            max_deliveries: Some(10),
            stream,
            group: "keel".to_owned(),
            consumer: format!("keel-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            visibility_timeout: Duration::from_secs(30),
        }
    }
}

/// One task handed to this worker; [`ack`](RedisTaskQueue::ack) it when done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<T> {
    /// The stream entry id (`<ms>-<seq>`).
    pub id: String,
    /// The task.
    pub task: T,
}

/// A durable task queue on Redis Streams: at-least-once delivery that
/// survives a worker process being killed.
///
/// Tasks are stored as JSON. Needs Redis 6.2 or later (`XAUTOCLAIM`).
/// One value reads with one connection, so its `fetch` calls take turns;
/// workers that should read in parallel each connect their own queue
/// (under distinct consumer names).
///
/// ```no_run
/// # async fn example() -> Result<(), keel_concurrency::QueueError> {
/// use std::time::Duration;
/// use keel_concurrency::{RedisQueueOptions, RedisTaskQueue};
///
/// // Or "redis+cluster://127.0.0.1:7000,127.0.0.1:7001" with the stream
/// // named "{jobs}", so that it and "{jobs}:dead" share a slot.
/// let queue: RedisTaskQueue<u64> =
///     RedisTaskQueue::open("redis://127.0.0.1:6379", RedisQueueOptions::new("jobs")).await?;
/// queue.enqueue(&42).await?;
/// for delivery in queue.fetch(10, Duration::from_secs(1)).await? {
///     // ... handle delivery.task ...
///     queue.ack(&delivery.id).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct RedisTaskQueue<T> {
    commands: Conn,
    reader: Mutex<Conn>,
    options: RedisQueueOptions,
    _task: PhantomData<fn() -> T>,
}

/// The stream entry field holding the task's JSON.
const FIELD: &str = "task";
/// The most connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most a command other than a blocking read may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

impl<T> RedisTaskQueue<T>
where
    T: Serialize + DeserializeOwned,
{
    /// Connects to the server, Redis Cluster or Sentinel-watched primary
    /// `url` names (`redis://`, `rediss://`, `unix://`,
    /// `redis+cluster://host:port,host:port`,
    /// `redis+sentinel://host:port,host:port/service`) and creates the
    /// stream and the consumer group if missing.
    ///
    /// A URL of no known form is a [`QueueError::Config`] naming `url`; so
    /// is, on a cluster, a `dead_letter_stream` in another hash slot than
    /// `stream`.
    pub async fn open(url: &str, options: RedisQueueOptions) -> Result<Self, QueueError> {
        let topology = Topology::new(url, &[]).map_err(QueueError::Config)?;
        Self::connect_to(&topology, options).await
    }

    /// Connects to the one server `client` names and creates the stream and
    /// the consumer group if missing.
    pub async fn connect(client: &Client, options: RedisQueueOptions) -> Result<Self, QueueError> {
        Self::connect_to(&Topology::Single(client.clone()), options).await
    }

    async fn connect_to(
        topology: &Topology,
        options: RedisQueueOptions,
    ) -> Result<Self, QueueError> {
        if topology.is_cluster()
            && topology::slot(options.stream.as_bytes())
                != topology::slot(options.dead_letter_stream.as_bytes())
        {
            return Err(QueueError::Config(InvalidField::new(
                "dead_letter_stream",
                format!(
                    "{:?} and the stream {:?} hash to different slots of the cluster; \
                     name the stream with a hash tag, such as \"{{jobs}}\" \
                     (dead letters then go to \"{{jobs}}:dead\")",
                    options.dead_letter_stream, options.stream
                ),
            )));
        }
        let mut commands = topology
            .connect(ConnectOptions {
                connect_timeout: CONNECT_TIMEOUT,
                response_timeout: Some(RESPONSE_TIMEOUT),
            })
            .await?;
        // Blocking reads get a connection of their own (they would stall
        // every other command behind them) without a response timeout:
        // `fetch` bounds them itself.
        let reader = topology
            .connect(ConnectOptions {
                connect_timeout: CONNECT_TIMEOUT,
                response_timeout: None,
            })
            .await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&options.stream)
            .arg(&options.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut commands)
            .await;
        match created {
            Ok(()) => {}
            Err(error) if error.code() == Some("BUSYGROUP") => {}
            Err(error) => return Err(error.into()),
        }
        Ok(Self {
            commands,
            reader: Mutex::new(reader),
            options,
            _task: PhantomData,
        })
    }

    /// Appends `task` to the stream; once this returns `Ok` the task will be
    /// handed to a worker until one acknowledges it. Returns the entry id.
    pub async fn enqueue(&self, task: &T) -> Result<String, QueueError> {
        let json = serde_json::to_string(task).map_err(QueueError::Codec)?;
        let id: String = redis::cmd("XADD")
            .arg(&self.options.stream)
            .arg("*")
            .arg(FIELD)
            .arg(json)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(id)
    }

    /// Up to `max` tasks for this worker: first entries abandoned by other
    /// workers for longer than `visibility_timeout`, else new ones, waiting
    /// at most `wait` for some to arrive. Each must be
    /// [`ack`](Self::ack)ed, or it is handed out again after the timeout.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<T>>, QueueError> {
        let max = max.max(1);
        let reclaimed = self.reclaim(max).await?;
        if !reclaimed.is_empty() {
            return Ok(reclaimed);
        }
        let block_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut reader = self.reader.lock().await;
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.options.stream)
            .arg(">");
        let read = command.query_async::<Value>(&mut *reader);
        let reply = match tokio::time::timeout(wait + Duration::from_secs(5), read).await {
            Ok(reply) => reply?,
            Err(_) => return Ok(Vec::new()),
        };
        drop(reader);
        let mut entries = Vec::new();
        match reply {
            Value::Nil => {}
            Value::Array(streams) => {
                for stream in streams {
                    let Value::Array(mut pair) = stream else {
                        return Err(malformed("XREADGROUP reply"));
                    };
                    if pair.len() != 2 {
                        return Err(malformed("XREADGROUP reply"));
                    }
                    entries.extend(decode_entries(pair.swap_remove(1))?);
                }
            }
            Value::Map(streams) => {
                for (_, list) in streams {
                    entries.extend(decode_entries(list)?);
                }
            }
            _ => return Err(malformed("XREADGROUP reply")),
        }
        self.sort_out(entries).await
    }

    /// Keeps the entries that decode; moves the others to the dead-letter
    /// stream (acknowledged, so they are not handed out again).
    async fn sort_out(&self, entries: Vec<Entry<T>>) -> Result<Vec<Delivery<T>>, QueueError> {
        let mut good = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                Entry::Task(delivery) => good.push(delivery),
                Entry::Undecodable {
                    id,
                    reason,
                    payload,
                } => {
                    self.bury(&id, &reason, &payload).await?;
                }
            }
        }
        Ok(good)
    }

    /// Moves entry `id` to the dead-letter stream with `reason`, in one
    /// `MULTI` with its acknowledgement.
    async fn bury(&self, id: &str, reason: &str, payload: &[u8]) -> Result<(), QueueError> {
        tracing::warn!(
            stream = %self.options.stream,
            %id,
            %reason,
            "task moved to the dead-letter stream"
        );
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&self.options.dead_letter_stream)
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("error")
            .arg(reason)
            .arg(FIELD)
            .arg(payload);
        let _: Value = self
            .push_ack(&mut pipe, id)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Adds the acknowledgement of `id` (`XACK`, then `XDEL`) to `pipe`.
    fn push_ack<'p>(&self, pipe: &'p mut redis::Pipeline, id: &str) -> &'p mut redis::Pipeline {
        pipe.cmd("XACK")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .arg(id)
            .cmd("XDEL")
            .arg(&self.options.stream)
            .arg(id)
    }

    /// Buries the claimed entries handed out more than `max_deliveries`
    /// times and returns the others.
    async fn enforce_max_deliveries(
        &self,
        claimed: Vec<Delivery<T>>,
    ) -> Result<Vec<Delivery<T>>, QueueError> {
        let Some(limit) = self.options.max_deliveries else {
            return Ok(claimed);
        };
        if claimed.is_empty() {
            return Ok(claimed);
        }
        let mut pipe = redis::pipe();
        for delivery in &claimed {
            pipe.cmd("XPENDING")
                .arg(&self.options.stream)
                .arg(&self.options.group)
                .arg(&delivery.id)
                .arg(&delivery.id)
                .arg(1);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.commands.clone()).await?;
        let mut keep = Vec::with_capacity(claimed.len());
        for (delivery, reply) in claimed.into_iter().zip(replies) {
            match delivered_times(&reply) {
                Some(times) if times > limit => {
                    let payload = serde_json::to_vec(&delivery.task).map_err(QueueError::Codec)?;
                    let reason = format!("handed out {times} times without an ack");
                    self.bury(&delivery.id, &reason, &payload).await?;
                }
                _ => keep.push(delivery),
            }
        }
        Ok(keep)
    }

    /// Marks a delivery done and deletes it from the stream.
    pub async fn ack(&self, id: &str) -> Result<(), QueueError> {
        let _: Value = self
            .push_ack(redis::pipe().atomic(), id)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Tasks handed out to some worker and not yet acknowledged.
    pub async fn pending(&self) -> Result<u64, QueueError> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .query_async(&mut self.commands.clone())
            .await?;
        match reply {
            Value::Array(items) => match items.first() {
                Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                _ => Err(malformed("XPENDING reply")),
            },
            _ => Err(malformed("XPENDING reply")),
        }
    }

    /// Tasks in the stream not yet acknowledged (pending or never read).
    pub async fn stream_len(&self) -> Result<u64, QueueError> {
        let n: u64 = redis::cmd("XLEN")
            .arg(&self.options.stream)
            .query_async(&mut self.commands.clone())
            .await?;
        Ok(n)
    }

    /// The options the queue runs with.
    pub fn options(&self) -> &RedisQueueOptions {
        &self.options
    }

    async fn reclaim(&self, max: usize) -> Result<Vec<Delivery<T>>, QueueError> {
        let idle_ms =
            u64::try_from(self.options.visibility_timeout.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.options.stream)
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.commands.clone())
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(malformed("XAUTOCLAIM reply"));
        };
        if parts.len() < 2 {
            return Err(malformed("XAUTOCLAIM reply"));
        }
        let claimed = self.sort_out(decode_entries(parts.swap_remove(1))?).await?;
        let claimed = self.enforce_max_deliveries(claimed).await?;
        if !claimed.is_empty() {
            tracing::info!(
                stream = %self.options.stream,
                consumer = %self.options.consumer,
                reclaimed = claimed.len(),
                "reclaimed abandoned tasks"
            );
        }
        Ok(claimed)
    }
}

impl<T> fmt::Debug for RedisTaskQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTaskQueue")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn malformed(what: &str) -> QueueError {
    QueueError::Malformed(what.to_owned())
}

/// One decoded stream entry.
enum Entry<T> {
    Task(Delivery<T>),
    Undecodable {
        id: String,
        reason: String,
        payload: Vec<u8>,
    },
}

/// Decodes `[[id, [field, value, ...]], ...]`. Entries deleted while
/// pending come back from `XAUTOCLAIM` as `[id, nil]` in older servers and
/// are skipped; entries whose `task` field is missing or not the task's
/// JSON come back as [`Entry::Undecodable`].
fn decode_entries<T: DeserializeOwned>(entries: Value) -> Result<Vec<Entry<T>>, QueueError> {
    let Value::Array(entries) = entries else {
        return Err(malformed("stream entries"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut entry) = entry else {
            return Err(malformed("stream entry"));
        };
        if entry.len() != 2 {
            return Err(malformed("stream entry"));
        }
        let fields = entry.swap_remove(1);
        let id = text(&entry[0]).ok_or_else(|| malformed("stream entry id"))?;
        let fields = match fields {
            Value::Nil => continue,
            Value::Array(fields) => fields,
            _ => return Err(QueueError::Malformed(format!("fields of entry {id}"))),
        };
        let payload = fields
            .chunks(2)
            .find(|pair| pair.len() == 2 && text(&pair[0]).as_deref() == Some(FIELD))
            .and_then(|pair| match &pair[1] {
                Value::BulkString(bytes) => Some(bytes.as_slice()),
                _ => None,
            });
        out.push(match payload {
            None => Entry::Undecodable {
                id,
                reason: format!("no `{FIELD}` field"),
                payload: Vec::new(),
            },
            Some(bytes) => match serde_json::from_slice(bytes) {
                Ok(task) => Entry::Task(Delivery { id, task }),
                Err(error) => Entry::Undecodable {
                    id,
                    reason: error.to_string(),
                    payload: bytes.to_vec(),
                },
            },
        });
    }
    Ok(out)
}

/// The delivery count in an `XPENDING key group id id 1` reply:
/// `[[id, consumer, idle_ms, times_delivered]]`.
fn delivered_times(reply: &Value) -> Option<u64> {
    let Value::Array(rows) = reply else {
        return None;
    };
    let Some(Value::Array(row)) = rows.first() else {
        return None;
    };
    match row.get(3) {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
