//! A small blocking connection pool: at most `max` connections, made on demand,
//! handed out LIFO, with a deadline on waiting for one. A connection found broken
//! when it comes back is dropped, and the next checkout makes a new one. No
//! background thread and no health query per checkout (a lookup is one round trip).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub trait Manager: Send + Sync {
    type Conn: Send;
    fn connect(&self) -> Result<Self::Conn>;
    /// Whether a returned connection must not be reused.
    fn is_broken(&self, conn: &mut Self::Conn) -> bool;
}

struct State<C> {
    idle: Vec<C>,
    /// Connections in existence: idle, checked out, or being made.
    total: u32,
}

pub struct Pool<M: Manager> {
    manager: M,
    state: Mutex<State<M::Conn>>,
    freed: Condvar,
    max: u32,
    timeout: Duration,
    name: &'static str,
}

/// A checked-out connection; goes back to the pool when dropped.
pub struct Pooled<'a, M: Manager> {
    pool: &'a Pool<M>,
    conn: Option<M::Conn>,
}

impl<M: Manager> Pool<M> {
    pub fn new(manager: M, max: u32, timeout: Duration, name: &'static str) -> Pool<M> {
        Pool {
            manager,
            state: Mutex::new(State {
                idle: Vec::new(),
                total: 0,
            }),
            freed: Condvar::new(),
            max: max.max(1),
            timeout,
            name,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Conn>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: an idle one, a new one if fewer than `max` exist, or the first
    /// one freed within the timeout (else `Unavailable`).
    pub fn get(&self) -> Result<Pooled<'_, M>> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.total < self.max {
                state.total += 1;
                drop(state);
                return match self.manager.connect() {
                    Ok(conn) => Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().total -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::unavailable(format_args!(
                    "no free {} connection within {:?}",
                    self.name, self.timeout
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Connections checked out now.
    #[cfg(test)]
    pub fn in_use(&self) -> u32 {
        let s = self.lock();
        s.total - u32::try_from(s.idle.len()).unwrap_or(s.total)
    }
}

impl<M: Manager> Pooled<'_, M> {
    pub fn conn(&mut self) -> Result<&mut M::Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::internal("pooled connection already returned"))
    }
}

impl<M: Manager> Drop for Pooled<'_, M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let broken = self.pool.manager.is_broken(&mut conn);
        let mut state = self.pool.lock();
        if broken {
            state.total -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    struct Counting {
        made: AtomicU32,
        fail: bool,
    }

    impl Manager for Arc<Counting> {
        type Conn = (u32, bool);
        fn connect(&self) -> Result<(u32, bool)> {
            if self.fail {
                return Err(Error::unavailable("down"));
            }
            Ok((self.made.fetch_add(1, Ordering::SeqCst), false))
        }
        fn is_broken(&self, conn: &mut (u32, bool)) -> bool {
            conn.1
        }
    }

    fn pool(max: u32, fail: bool) -> (Pool<Arc<Counting>>, Arc<Counting>) {
        let m = Arc::new(Counting {
            made: AtomicU32::new(0),
            fail,
        });
        (Pool::new(m.clone(), max, Duration::from_millis(50), "test"), m)
    }

    #[test]
    fn reuses_connections_and_bounds_them() {
        let (p, m) = pool(2, false);
        {
            let mut a = p.get().unwrap();
            let _b = p.get().unwrap();
            assert_eq!(p.in_use(), 2);
            assert!(
                matches!(p.get(), Err(Error::Unavailable(_))),
                "a third waits, then fails"
            );
            a.conn().unwrap().1 = true; // broken: not reused
        }
        assert_eq!(p.in_use(), 0);
        let _c = p.get().unwrap();
        let _d = p.get().unwrap();
        assert_eq!(m.made.load(Ordering::SeqCst), 3, "one reused, the broken one replaced");
    }

    #[test]
    fn a_waiter_gets_the_freed_connection() {
        let (p, _) = pool(1, false);
        let p = Arc::new(Pool::new(p.manager, 1, Duration::from_secs(5), "test"));
        let held = p.get().unwrap().conn.take();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.get().map(|_| ()).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        let mut back = Pooled { pool: &p, conn: held };
        back.conn().unwrap();
        drop(back);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn failed_connects_free_their_slot() {
        let (p, _) = pool(1, true);
        assert!(p.get().is_err());
        assert!(p.get().is_err(), "the failed attempt did not keep the only slot");
        assert_eq!(p.in_use(), 0);
    }
}
