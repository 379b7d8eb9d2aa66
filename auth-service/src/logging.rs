//! Logs: `tracing`, written to standard error as one JSON object per line
//! (`timestamp`, `level`, `target`, the event's fields, and the request's span with
//! its `request_id` when there is one).
//!
//! A thread that logs never waits for standard error: a line goes into a bounded
//! in-memory buffer ([`LogSink`]) that one thread of its own writes out, in batches.
//! When the buffer is full (standard error is slower than the lines come, or blocked),
//! further lines are dropped and counted (`auth_log_lines_dropped_total`) until there
//! is room again.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable holding the log level (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub const LOG_LEVEL_ENV: &str = "EDGE_AUTH_LOG";

/// Bytes of log lines held while standard error does not keep up.
pub const LOG_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long a line may wait in the buffer before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Lines dropped because the buffer was full, since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped because standard error did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Parses a level; `None` for an unknown name.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The writer thread is waiting for lines (not writing).
    idle: bool,
    /// A batch is being written.
    writing: bool,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer (a full buffer, or closing).
    wake: Condvar,
    /// Signals that a batch was written (for [`LogSink::flush`]).
    written: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The log's destination: a bounded buffer in front of a writer thread. Cloning it
/// gives another handle to the same buffer.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

impl LogSink {
    /// A sink writing to `out` on a thread of its own, holding at most `capacity` bytes.
    pub fn spawn(out: impl Write + Send + 'static, capacity: usize) -> std::io::Result<LogSink> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
            capacity,
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_out(&writer, out))?;
        Ok(LogSink(shared))
    }

    /// Adds one line (or drops it if there is no room). Never waits for the output.
    fn push(&self, line: &[u8]) {
        let mut p = self.0.lock();
        if p.closed || p.buf.len() + line.len() > self.0.capacity {
            drop(p);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.buf.extend_from_slice(line);
        // The writer wakes by itself every FLUSH_EVERY; it is woken early only when the
        // buffer is half full, so a busy service does not pay a wake-up per line.
        if p.idle && p.buf.len() >= self.0.capacity / 2 {
            p.idle = false;
            self.0.wake.notify_one();
        }
    }

    /// Waits until what was logged so far is written, at most `limit`. Whether it was.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut p = self.0.lock();
        self.0.wake.notify_one();
        while !p.buf.is_empty() || p.writing {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            p = self
                .0
                .written
                .wait_timeout(p, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// Writes what is left (waiting at most `limit`) and stops the writer thread;
    /// lines logged afterwards are dropped.
    pub fn close(&self, limit: Duration) {
        self.flush(limit);
        self.0.lock().closed = true;
        self.0.wake.notify_one();
    }
}

fn write_out(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        {
            let mut p = shared.lock();
            while p.buf.is_empty() && !p.closed {
                p.idle = true;
                p = shared
                    .wake
                    .wait_timeout(p, FLUSH_EVERY)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            p.idle = false;
            if p.buf.is_empty() && p.closed {
                shared.written.notify_all();
                return;
            }
            std::mem::swap(&mut p.buf, &mut batch);
            p.writing = true;
        }
        // Nothing to do if standard error is gone: the lines are lost either way.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > shared.capacity {
            batch.shrink_to(shared.capacity);
        }
        shared.lock().writing = false;
        shared.written.notify_all();
    }
}

/// One line being logged (tracing writes an event with one `write_all`).
pub struct LineWriter<'a>(&'a LogSink);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

/// The sink [`init`] installed, for lines formatted without `tracing` ([`write_line`]).
static INSTALLED: OnceLock<LogSink> = OnceLock::new();

/// Formats one line with `format` and adds it to the installed sink; `false` (and
/// nothing formatted) when [`init`] installed none (tests have their own logger).
/// For the one line per request, which `tracing`'s JSON formatter made a quarter of a
/// lookup's cost; the caller checks that its level is enabled.
pub fn write_line(format: impl FnOnce(&mut Vec<u8>)) -> bool {
    let Some(sink) = INSTALLED.get() else {
        return false;
    };
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        format(&mut b);
        b.push(b'\n');
        sink.push(&b);
    });
    true
}

/// `t` as `tracing`'s JSON lines write it: RFC 3339, UTC, microseconds (`2026-12-03T12:30:18.088581Z`).
pub fn write_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), in unsigned arithmetic.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// Installs the JSON logger at `level` (once; later calls change nothing), writing to
/// standard error through a [`LogSink`]. Returns the sink, to flush it at exit; `None`
/// if a logger was already installed or the writer thread could not start (then lines
/// go straight to standard error).
pub fn init(level: LevelFilter) -> Option<LogSink> {
    let builder = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_max_level(level);
    match LogSink::spawn(std::io::stderr(), LOG_BUFFER_BYTES) {
        Ok(sink) => {
            builder.with_writer(sink.clone()).try_init().ok()?;
            let _ = INSTALLED.set(sink.clone());
            Some(sink)
        }
        Err(_) => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that blocks until told to go on, then records what it got.
    struct Gate {
        go: Arc<(Mutex<bool>, Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.go;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_never_stalls_the_thread_that_logs_and_lines_over_the_bound_are_dropped() {
        let go = Arc::new((Mutex::new(false), Condvar::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink::spawn(
            Gate {
                go: go.clone(),
                got: got.clone(),
            },
            1000,
        )
        .unwrap();
        // The first line is taken by the writer, which then blocks on the output.
        sink.make_writer().write_all(b"first\n").unwrap();
        assert!(!sink.flush(Duration::from_millis(100)), "the output is blocked");
        let before = dropped_lines();
        let (tx, rx) = mpsc::channel();
        let logger = sink.clone();
        std::thread::spawn(move || {
            for i in 0..1000 {
                logger
                    .make_writer()
                    .write_all(format!("line {i:04}\n").as_bytes())
                    .unwrap();
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("logging 1,000 lines returned while the output was blocked");
        // 10-byte lines, 1,000 bytes of room: 100 kept, 900 dropped (other tests may drop too).
        assert!(dropped_lines() - before >= 900);
        *go.0.lock().unwrap() = true;
        go.1.notify_all();
        assert!(sink.flush(Duration::from_secs(10)));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 101, "{text}");
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1], "line 0000", "lines are kept whole and in order");
        assert_eq!(lines[100], "line 0099");
        // Room again: new lines are kept.
        sink.make_writer().write_all(b"after\n").unwrap();
        sink.close(Duration::from_secs(10));
        assert!(String::from_utf8(got.lock().unwrap().clone())
            .unwrap()
            .ends_with("line 0099\nafter\n"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u32| {
            let mut out = Vec::new();
            write_timestamp(&mut out, UNIX_EPOCH + Duration::new(secs, micros * 1000));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            at(951_782_400, 7),
            "2000-02-29T00:00:00.000007Z",
            "a leap day of a year divisible by 400"
        );
        assert_eq!(
            at(4_107_542_399, 999_999),
            "2100-02-28T23:59:59.999999Z",
            "2100 is not a leap year"
        );
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_795_000_000, 123_456), "2026-11-18T11:06:40.123456Z");
        assert_eq!(at(1_798_761_599, 0), "2026-12-31T23:59:59.000000Z");
        assert_eq!(at(1_798_761_600, 0), "2027-01-01T00:00:00.000000Z");
    }

    #[test]
    fn lines_are_written_without_a_flush_within_the_interval() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink::spawn(
            Gate {
                go: Arc::new((Mutex::new(true), Condvar::new())),
                got: got.clone(),
            },
            1 << 20,
        )
        .unwrap();
        sink.make_writer().write_all(b"one\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got.lock().unwrap().as_slice(), b"one\n");
    }
}
