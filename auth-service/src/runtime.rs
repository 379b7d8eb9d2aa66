//! The threads that serve requests: one Tokio runtime for everything (the default),
//! or, with an edge listener, two: the edge runtime, at the process's priority, for
//! the edges' API, and the public runtime, at a lower priority (a higher nice value),
//! for everything else. A flood of the public listener then runs on threads the
//! kernel's scheduler serves only when the edge threads do not need the CPU: it cannot
//! take the CPU the edges' lookups need, however cheap or dear its requests are.
//!
//! The nice value is a per-thread attribute on Linux; each runtime sets it on every
//! thread it starts (workers and blocking threads). Elsewhere no priority is changed.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// The largest nice value (the lowest priority).
pub const MAX_NICE: i32 = 19;

/// What a runtime is for, and how its threads are named (`edge`, `public`, `serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    pub name: &'static str,
    pub workers: usize,
    pub max_blocking: usize,
    /// Added to the process's nice value on each of its threads (0: unchanged).
    pub nice: i32,
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
pub fn thread_nice() -> io::Result<i32> {
    // SAFETY: gettid and getpriority only read the calling thread's attributes;
    // errno is cleared first because -1 is also a valid priority.
    unsafe {
        let tid = libc::gettid();
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if n == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n)
    }
}

/// Sets the calling thread's nice value (Linux: a per-thread attribute).
#[cfg(target_os = "linux")]
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority on the calling thread's own id changes only that thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn thread_nice() -> io::Result<i32> {
    Ok(0)
}

#[cfg(not(target_os = "linux"))]
pub fn set_thread_nice(_nice: i32) -> io::Result<()> {
    Ok(())
}

/// A multi-threaded runtime whose threads are named `t.name` and run `t.nice` above
/// `base` (the process's nice value when the service started).
pub fn build(t: Threads, base: i32) -> io::Result<Runtime> {
    let target = (base + t.nice).clamp(-20, MAX_NICE);
    Builder::new_multi_thread()
        .worker_threads(t.workers.max(1))
        .max_blocking_threads(t.max_blocking.max(1))
        .thread_name(t.name)
        .on_thread_start(move || {
            // A thread inherits its creator's nice value: set it either way. Raising
            // a priority back may be refused (it needs a privilege): nothing then
            // depends on it, as only the public runtime lowers its own.
            if thread_nice().is_ok_and(|n| n != target) {
                if let Err(e) = set_thread_nice(target) {
                    tracing::warn!(error = %e, nice = target, "cannot set a thread's priority");
                }
            }
        })
        .enable_all()
        .build()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_runs_its_threads_at_its_nice_value() {
        let base = std::thread::spawn(|| thread_nice().unwrap()).join().unwrap();
        let threads = |name, nice| Threads {
            name,
            workers: 2,
            max_blocking: 2,
            nice,
        };
        let low = build(threads("test-low", 7), base).unwrap();
        let normal = build(threads("test-normal", 0), base).unwrap();
        let expected = (base + 7).min(MAX_NICE);
        assert_eq!(
            low.block_on(async { tokio::spawn(async { thread_nice().unwrap() }).await.unwrap() }),
            expected
        );
        assert_eq!(
            low.block_on(async { tokio::task::spawn_blocking(|| thread_nice().unwrap()).await.unwrap() }),
            expected,
            "blocking threads too"
        );
        assert_eq!(
            normal.block_on(async { tokio::spawn(async { thread_nice().unwrap() }).await.unwrap() }),
            base
        );
        assert_eq!(thread_nice().unwrap(), base, "the calling thread is unchanged");
    }
}
