//! The rolling file writer: size and time triggers, time-sortable names,
//! background gzip and retention, category routing, stderr fallback.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::clock::{Clock, SystemClock};
use crate::error::LogError;
use crate::json::{TimestampOffset, epoch_parts, file_stamp};
use crate::level::LogCategory;
use crate::stats::LogStats;

/// Time-based rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationPeriod {
    /// Only the size trigger (if any) rotates.
    #[default]
    Never,
    /// At the top of every hour (in the configured offset).
    Hourly,
    /// At midnight (in the configured offset).
    Daily,
}

impl RotationPeriod {
    fn seconds(self) -> Option<i64> {
        match self {
            Self::Never => None,
            Self::Hourly => Some(3600),
            Self::Daily => Some(86_400),
        }
    }
}

/// How a [`LogRotationManager`] names, rotates, compresses and keeps files.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RotationOptions {
    /// Where the files live; created when missing.
    pub directory: PathBuf,
    /// The main file's name without extension: `"app"` writes `app.log`.
    pub file_name: String,
    /// Rotate before a line would take the file past this many bytes.
    pub max_size: Option<u64>,
    /// Rotate when the hour or day changes.
    pub period: RotationPeriod,
    /// Keep at most this many rotated files per log (the oldest go first).
    pub max_files: Option<usize>,
    /// Keep rotated files of one log under this many bytes in total.
    pub max_total_bytes: Option<u64>,
    /// Gzip rotated files (on a background thread).
    pub compress: bool,
    /// Categories written to their own file instead of the main one:
    /// `Security => "security"` writes `security.log`.
    pub routes: BTreeMap<LogCategory, String>,
    /// How long to wait before retrying a file that could not be written.
    pub retry_interval: Duration,
    /// Offset for rotation boundaries and file-name timestamps.
    pub timestamp_offset: TimestampOffset,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Where to count rotations, compressions and fallback lines.
    pub stats: LogStats,
}

impl RotationOptions {
    /// `app.log` in `directory`, no rotation, compression on, retry every 5 s.
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
            file_name: "app".to_owned(),
            max_size: None,
            period: RotationPeriod::Never,
            max_files: None,
            max_total_bytes: None,
            compress: true,
            routes: BTreeMap::new(),
            retry_interval: Duration::from_secs(5),
            timestamp_offset: TimestampOffset::UTC,
            clock: Arc::new(SystemClock),
            stats: LogStats::default(),
        }
    }
}

/// A rolling set of log files: the main file plus one per routed category.
///
/// Each file is `<name>.log` while active. When a trigger fires it is
/// renamed to `<name>.<stamp>.<seq>.log` (then `.log.gz` once compressed),
/// where `<stamp>` is the start of its period (time rotation) or the time
/// it was opened (size rotation only), e.g. `app.2026-11-21T10-00-00.1.log.gz`;
/// names order by time, `<seq>` counting numerically within one stamp
/// ([`list_rotated`] sorts them).
///
/// Triggers are checked when a line is written: a file idle across an hour
/// boundary rotates with the first line after it, so no empty files are made.
///
/// Compression and retention run on a background thread named
/// `keel-log-compress`; the writer only renames. When the manager starts,
/// that thread also compresses rotated files an earlier run left
/// uncompressed and removes half-written `.gz.tmp` files. A file that cannot be
/// opened or written sends its lines to stderr (one warning per outage)
/// and is retried every `retry_interval`; writing never fails or panics.
///
/// Dropping the manager flushes and waits for pending compression.
#[derive(Debug)]
pub struct LogRotationManager {
    files: Vec<RollingFile>,
    /// Which file each category (by index) goes to.
    route: [usize; 4],
    ctx: Ctx,
    maintenance: Option<Maintenance>,
}

#[derive(Debug)]
struct Ctx {
    directory: PathBuf,
    max_size: Option<u64>,
    period: Option<i64>,
    retry_interval: Duration,
    offset: TimestampOffset,
    clock: Arc<dyn Clock>,
    stats: LogStats,
    jobs: Option<mpsc::Sender<Job>>,
}

#[derive(Debug)]
struct RollingFile {
    stem: String,
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Lines in `out` not yet known to have reached the file.
    pending: u64,
    size: u64,
    opened_at: SystemTime,
    next_rollover: Option<i64>,
    retry_at: Option<SystemTime>,
    warned: bool,
    last_seq: Option<(String, u64)>,
}

impl LogRotationManager {
    /// Builds the manager and, if it compresses or retains, its background
    /// thread. Files are opened on the first write.
    pub fn new(options: RotationOptions) -> Result<Self, LogError> {
        check_name(&options.file_name)?;
        let mut files = vec![RollingFile::new(&options.directory, &options.file_name)];
        let mut route = [0; 4];
        for (category, name) in &options.routes {
            check_name(name)?;
            let index = match files.iter().position(|f| &f.stem == name) {
                Some(i) => i,
                None => {
                    files.push(RollingFile::new(&options.directory, name));
                    files.len() - 1
                }
            };
            route[category.index()] = index;
        }
        let retention = Retention {
            max_files: options.max_files,
            max_total_bytes: options.max_total_bytes,
        };
        let maintenance = if options.compress || !retention.is_unbounded() {
            Some(Maintenance::spawn(
                options.compress,
                retention,
                options.stats.clone(),
            )?)
        } else {
            None
        };
        if let Some(jobs) = maintenance.as_ref().and_then(|m| m.jobs.as_ref()) {
            for file in &files {
                let _ = jobs.send(Job {
                    path: None,
                    directory: options.directory.clone(),
                    stem: file.stem.clone(),
                });
            }
        }
        Ok(Self {
            files,
            route,
            ctx: Ctx {
                directory: options.directory,
                max_size: options.max_size,
                period: options.period.seconds(),
                retry_interval: options.retry_interval,
                offset: options.timestamp_offset,
                clock: options.clock,
                stats: options.stats,
                jobs: maintenance.as_ref().and_then(|m| m.jobs.clone()),
            },
            maintenance,
        })
    }

    /// Appends `line` (which should end in `\n`) to the file of `category`,
    /// rotating first if a trigger fires.
    pub fn write(&mut self, category: LogCategory, line: &[u8]) {
        let now = self.ctx.clock.now();
        let index = self.route[category.index()];
        if let Some(file) = self.files.get_mut(index) {
            file.write(line, now, &self.ctx);
        }
    }

    /// Pushes buffered lines to the operating system.
    pub fn flush(&mut self) {
        let now = self.ctx.clock.now();
        for file in &mut self.files {
            file.flush(now, &self.ctx);
        }
    }

    /// The active file `category` is written to.
    pub fn active_path(&self, category: LogCategory) -> &Path {
        self.files
            .get(self.route[category.index()])
            .map_or(self.ctx.directory.as_path(), |f| f.path.as_path())
    }

    /// The counters this manager updates.
    pub fn stats(&self) -> &LogStats {
        &self.ctx.stats
    }
}

impl Drop for LogRotationManager {
    fn drop(&mut self) {
        self.flush();
        self.ctx.jobs = None;
        if let Some(maintenance) = self.maintenance.take() {
            maintenance.finish();
        }
    }
}

/// The rotated files of log `file_name` in `directory`, oldest first
/// (compressed or not; the active file is not included).
pub fn list_rotated(directory: &Path, file_name: &str) -> io::Result<Vec<PathBuf>> {
    Ok(rotated_with_sizes(directory, file_name)?
        .into_iter()
        .map(|(path, _)| path)
        .collect())
}

fn rotated_with_sizes(directory: &Path, stem: &str) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(directory)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(|n| parse_rotated(n, stem)) else {
            continue;
        };
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        found.push((key, entry.path(), size));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, p, s)| (p, s)).collect())
}

/// `(stamp, seq)` of `<stem>.<stamp>.<seq>.log[.gz]`.
fn parse_rotated(name: &str, stem: &str) -> Option<(String, u64)> {
    let rest = name.strip_prefix(stem)?.strip_prefix('.')?;
    let rest = rest
        .strip_suffix(".log.gz")
        .or_else(|| rest.strip_suffix(".log"))?;
    let (stamp, seq) = rest.rsplit_once('.')?;
    if stamp.len() != 19 || stamp.contains('.') {
        return None;
    }
    Some((stamp.to_owned(), seq.parse().ok()?))
}

fn check_name(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidFileName(name.to_owned()))
    }
}

fn to_stderr(line: &[u8], stats: &LogStats) {
    let _ = io::stderr().lock().write_all(line);
    stats.add_fallback(1);
}

impl RollingFile {
    fn new(directory: &Path, stem: &str) -> Self {
        Self {
            stem: stem.to_owned(),
            path: directory.join(format!("{stem}.log")),
            out: None,
            pending: 0,
            size: 0,
            opened_at: UNIX_EPOCH,
            next_rollover: None,
            retry_at: None,
            warned: false,
            last_seq: None,
        }
    }

    fn write(&mut self, line: &[u8], now: SystemTime, ctx: &Ctx) {
        if self.out.is_none() && !self.open(now, ctx) {
            to_stderr(line, &ctx.stats);
            return;
        }
        if self.should_rotate(line.len() as u64, now, ctx) && !self.rotate(now, ctx) {
            to_stderr(line, &ctx.stats);
            return;
        }
        let Some(out) = self.out.as_mut() else {
            to_stderr(line, &ctx.stats);
            return;
        };
        match out.write_all(line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.pending += 1;
            }
            Err(error) => {
                self.fail(&error, now, ctx);
                to_stderr(line, &ctx.stats);
            }
        }
    }

    fn flush(&mut self, now: SystemTime, ctx: &Ctx) {
        let Some(out) = self.out.as_mut() else { return };
        match out.flush() {
            Ok(()) => ctx.stats.add_written(std::mem::take(&mut self.pending)),
            Err(error) => self.fail(&error, now, ctx),
        }
    }

    /// Opens (or reopens after a failure, once the retry time has come).
    fn open(&mut self, now: SystemTime, ctx: &Ctx) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let opened = fs::create_dir_all(&ctx.directory).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        });
        let file = match opened {
            Ok(file) => file,
            Err(error) => {
                self.fail(&error, now, ctx);
                return false;
            }
        };
        let meta = file.metadata().ok();
        self.size = meta.as_ref().map_or(0, |m| m.len());
        self.opened_at = match meta.and_then(|m| m.modified().ok()) {
            Some(modified) if self.size > 0 => modified.min(now),
            _ => now,
        };
        self.next_rollover = ctx.period.map(|p| {
            let local = epoch_parts(self.opened_at).0 + i64::from(ctx.offset.seconds());
            (local.div_euclid(p) + 1) * p - i64::from(ctx.offset.seconds())
        });
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        self.retry_at = None;
        if self.warned {
            self.warned = false;
            eprintln!("keel-log: writing to {} again", self.path.display());
        }
        true
    }

    fn should_rotate(&self, len: u64, now: SystemTime, ctx: &Ctx) -> bool {
        let by_size = ctx
            .max_size
            .is_some_and(|max| self.size > 0 && self.size + len > max);
        let by_time = self
            .next_rollover
            .is_some_and(|at| epoch_parts(now).0 >= at);
        by_size || by_time
    }

    /// Closes the active file, renames it, hands it to the background
    /// thread and opens a fresh one. `false` if the new file is unusable.
    fn rotate(&mut self, now: SystemTime, ctx: &Ctx) -> bool {
        let Some(out) = self.out.take() else {
            return self.open(now, ctx);
        };
        let (mut file, unwritten) = out.into_parts();
        let rest = unwritten.unwrap_or_default();
        if let Err(error) = file.write_all(&rest) {
            // The tail could not reach the file: keep it on stderr.
            self.spill(&rest, ctx);
            self.fail(&error, now, ctx);
            return false;
        }
        ctx.stats.add_written(std::mem::take(&mut self.pending));
        drop(file);
        let stamp_time = match ctx.period {
            Some(p) => {
                let off = i64::from(ctx.offset.seconds());
                let local = epoch_parts(self.opened_at).0 + off;
                let start = local.div_euclid(p) * p - off;
                UNIX_EPOCH + Duration::from_secs(u64::try_from(start).unwrap_or(0))
            }
            None => self.opened_at,
        };
        let stamp = file_stamp(stamp_time, ctx.offset);
        let target = self.next_name(&stamp, ctx);
        if let Err(error) = fs::rename(&self.path, &target) {
            self.fail(&error, now, ctx);
            return false;
        }
        ctx.stats.add_rotation();
        if let Some(jobs) = &ctx.jobs {
            let _ = jobs.send(Job {
                path: Some(target),
                directory: ctx.directory.clone(),
                stem: self.stem.clone(),
            });
        }
        self.open(now, ctx)
    }

    fn next_name(&mut self, stamp: &str, ctx: &Ctx) -> PathBuf {
        let mut seq = match &self.last_seq {
            Some((last, seq)) if last == stamp => seq + 1,
            _ => {
                rotated_with_sizes(&ctx.directory, &self.stem)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|(p, _)| {
                        parse_rotated(p.file_name()?.to_str()?, &self.stem)
                            .filter(|(s, _)| s == stamp)
                            .map(|(_, seq)| seq)
                    })
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        loop {
            let name = format!("{}.{stamp}.{seq}.log", self.stem);
            let plain = ctx.directory.join(&name);
            if !plain.exists() && !ctx.directory.join(format!("{name}.gz")).exists() {
                self.last_seq = Some((stamp.to_owned(), seq));
                return plain;
            }
            seq += 1;
        }
    }

    /// Sends buffered bytes that did not reach the file to stderr and
    /// settles the count of pending lines between written and fallback.
    fn spill(&mut self, rest: &[u8], ctx: &Ctx) {
        let lost = (rest.iter().filter(|&&b| b == b'\n').count() as u64).min(self.pending);
        if !rest.is_empty() {
            let _ = io::stderr().lock().write_all(rest);
        }
        ctx.stats.add_written(self.pending - lost);
        ctx.stats.add_fallback(lost);
        self.pending = 0;
    }

    /// Records a failure: lines go to stderr until `retry_interval` passes.
    fn fail(&mut self, error: &io::Error, now: SystemTime, ctx: &Ctx) {
        if let Some(out) = self.out.take() {
            let (_, unwritten) = out.into_parts();
            self.spill(&unwritten.unwrap_or_default(), ctx);
        }
        self.retry_at = Some(now + ctx.retry_interval);
        if !self.warned {
            self.warned = true;
            // Not a tracing event: this runs on the writer thread, which must
            // never wait on its own queue.
            eprintln!(
                "keel-log: cannot write {}: {error}; writing to stderr, retrying every {:?}",
                self.path.display(),
                ctx.retry_interval
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Retention {
    max_files: Option<usize>,
    max_total_bytes: Option<u64>,
}

impl Retention {
    fn is_unbounded(self) -> bool {
        self.max_files.is_none() && self.max_total_bytes.is_none()
    }
}

#[derive(Debug)]
struct Job {
    /// The file just rotated; `None` sweeps what an earlier run left:
    /// uncompressed rotated files and half-written `.gz.tmp` files.
    path: Option<PathBuf>,
    directory: PathBuf,
    stem: String,
}

#[derive(Debug)]
struct Maintenance {
    jobs: Option<mpsc::Sender<Job>>,
    handle: JoinHandle<()>,
}

impl Maintenance {
    fn spawn(compress: bool, retention: Retention, stats: LogStats) -> Result<Self, LogError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("keel-log-compress".to_owned())
            .spawn(move || {
                for job in rx {
                    if compress {
                        let paths = match &job.path {
                            Some(path) => vec![path.clone()],
                            None => leftovers(&job.directory, &job.stem),
                        };
                        for path in paths.iter().filter(|p| p.exists()) {
                            compress_logged(path, &stats);
                        }
                    }
                    if !retention.is_unbounded() {
                        retain(&job.directory, &job.stem, retention, &stats);
                    }
                }
            })
            .map_err(|e| LogError::Spawn("keel-log-compress", e))?;
        Ok(Self {
            jobs: Some(tx),
            handle,
        })
    }

    fn finish(mut self) {
        self.jobs = None;
        let _ = self.handle.join();
    }
}

fn compress_logged(path: &Path, stats: &LogStats) {
    match gzip(path) {
        Ok(done) => {
            stats.add_compressed();
            tracing::debug!(
                target: "keel_log::rotation",
                file = %done.display(),
                "compressed rotated log file"
            );
        }
        Err(error) => {
            stats.add_maintenance_error();
            tracing::warn!(
                target: "keel_log::rotation",
                file = %path.display(),
                %error,
                "cannot compress rotated log file"
            );
        }
    }
}

/// Rotated files of `stem` an earlier run did not compress; removes the
/// `.gz.tmp` files a compression cut short left behind.
fn leftovers(directory: &Path, stem: &str) -> Vec<PathBuf> {
    if let Ok(entries) = fs::read_dir(directory) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(gz) = name.strip_suffix(".tmp")
                && parse_rotated(gz, stem).is_some()
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    list_rotated(directory, stem)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// `x.log` → `x.log.gz` (through `x.log.gz.tmp`), then removes `x.log`.
fn gzip(path: &Path) -> io::Result<PathBuf> {
    let mut done = path.as_os_str().to_owned();
    done.push(".gz");
    let done = PathBuf::from(done);
    let mut tmp = done.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut input = File::open(path)?;
        let output = BufWriter::new(File::create(&tmp)?);
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
        io::copy(&mut input, &mut encoder)?;
        encoder
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        fs::rename(&tmp, &done)?;
        fs::remove_file(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| done)
}

fn retain(directory: &Path, stem: &str, retention: Retention, stats: &LogStats) {
    let Ok(mut files) = rotated_with_sizes(directory, stem) else {
        stats.add_maintenance_error();
        return;
    };
    let mut total: u64 = files.iter().map(|(_, size)| size).sum();
    let mut excess = files
        .len()
        .saturating_sub(retention.max_files.unwrap_or(usize::MAX));
    files.reverse();
    while let Some((oldest, size)) = files.pop() {
        let over_size = retention.max_total_bytes.is_some_and(|max| total > max);
        if excess == 0 && !over_size {
            break;
        }
        match fs::remove_file(&oldest) {
            Ok(()) => stats.add_deleted(),
            Err(_) => stats.add_maintenance_error(),
        }
        total = total.saturating_sub(size);
        excess = excess.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_parse_and_others_do_not() {
        assert_eq!(
            parse_rotated("app.2026-11-21T10-00-00.12.log.gz", "app"),
            Some(("2026-11-21T10-00-00".to_owned(), 12))
        );
        assert!(parse_rotated("app.2026-11-21T10-00-00.1.log", "app").is_some());
        assert_eq!(parse_rotated("app.log", "app"), None);
        assert_eq!(
            parse_rotated("app.2026-11-21T10-00-00.1.log.gz.tmp", "app"),
            None
        );
        assert_eq!(
            parse_rotated("security.2026-11-21T10-00-00.1.log", "app"),
            None
        );
        assert_eq!(parse_rotated("app.x.1.log", "app"), None);
    }

    #[test]
    fn file_names_must_be_plain() {
        assert!(check_name("app").is_ok());
        assert!(check_name("security-audit_2").is_ok());
        for bad in ["", "a/b", "../x", "app.log", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
