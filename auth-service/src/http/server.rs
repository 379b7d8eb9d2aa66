//! The HTTP/1.1 server: our own accept loop (hyper-util), so that every
//! connection is bounded in time and number.
//!
//! * Header timeout: a request's headers must arrive within `header_timeout` of the
//!   connection being ready for them, which also closes a keep-alive connection idle
//!   for that long; hyper closes the connection when it passes.
//! * Body timeout: a body must arrive within `body_timeout` (`408`, then the
//!   connection closes; see `extract`). Header and body sizes are bounded.
//! * Connections: at most `max_connections` at once (more wait in the listen
//!   backlog), at most `max_connections_per_client` from one address (more are
//!   closed at once).
//! * A head over the size limit (`431`) counts against its client's failure budget
//!   ([`crate::guard`]) as a failed authentication does.
//! * On the public listener of a split deployment ([`Api::Public`]), a client over its
//!   budget is not served: a connection it opens is held without a byte of it being
//!   read, until the header timeout, then reset (within its per-client limit; beyond
//!   it, closed at once); a `429` the gate answers on a connection it opened earlier
//!   closes that connection. A flood from a limited address then costs an accept per
//!   connection per header timeout, however fast it sends. The edges' listener, and
//!   the one listener of the default deployment, read the request instead, so that a
//!   valid admin or service token from a limited address still passes (`gate`).
//! * Shutdown: the loop stops accepting, idle connections close, requests in flight
//!   may finish for `shutdown_grace`; then whatever is left is dropped, a half-sent
//!   request included.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::{gate, router_for, Api, AppState, MAX_BODY_BYTES, READY_TIMEOUT};
use crate::guard;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time for a request's headers to arrive (and for an idle keep-alive connection to stay).
    pub header_timeout: Duration,
    /// Time for a request's body to arrive.
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Time requests in flight may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    /// The connection's read buffer: the request line and headers must fit in it
    /// (hyper answers `431` otherwise, before any routing, logging or audit).
    pub max_header_bytes: usize,
    /// Time `/ready` waits for the database.
    pub ready_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 256,
            shutdown_grace: Duration::from_secs(10),
            max_body_bytes: MAX_BODY_BYTES,
            max_header_bytes: 32 * 1024,
            ready_timeout: READY_TIMEOUT,
        }
    }
}

/// Connections per client address; an entry exists only while it has one.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerClient`], given back when dropped.
struct Slot(Arc<PerClient>, IpAddr);

impl PerClient {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Whether `client` is limited now; if so the connection is counted as refused.
fn limited(svc: &crate::service::Service, client: IpAddr) -> bool {
    let now = svc.now();
    if svc.guard.limited_client(Some(client), now).is_none() {
        return false;
    }
    svc.guard.refuse_connection(Some(client), now);
    svc.metrics.connection_timeouts.inc(&["limited"]);
    true
}

/// Holds a limited client's connection unread for `hold`, with its place in the
/// connection limits, then resets it (no `TIME_WAIT` left on the service's side).
fn hold(stream: tokio::net::TcpStream, hold: Duration, places: impl Send + 'static) {
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        let _ = stream.set_zero_linger();
        drop(stream);
        drop(places);
    });
}

/// Serves the whole API on `listener` until `shutdown` completes, then for at most
/// the shutdown grace period while requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_api(listener, state, Api::All, shutdown).await
}

/// [`serve`] for one part of the API. Connection limits are per listener.
pub async fn serve_api(
    listener: TcpListener,
    state: AppState,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = state.http.clone();
    let metrics_svc = state.service.clone();
    let gate_state = state.clone();
    let app = router_for(state, api);
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let per_client = Arc::new(PerClient::default());
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let ip = peer.ip().to_canonical();
        let client = guard::client_of_ip(ip);
        let Some(slot) = per_client.take(ip, cfg.max_connections_per_client) else {
            tracing::debug!(client = %ip, "too many connections from this client: closed");
            // Reset: no TIME_WAIT left on the service's side, however fast they come.
            let _ = stream.set_zero_linger();
            continue;
        };
        if api == Api::Public && limited(&metrics_svc, client) {
            hold(stream, cfg.header_timeout, (slot, permit));
            continue;
        }
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let gate_state = gate_state.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // A limited client is answered before routing (see `gate`).
            let refused = gate::refuse(&gate_state, &mut req, Some(client));
            let app = app.clone();
            async move {
                match refused {
                    Some(mut res) => {
                        if api == Api::Public {
                            // Closed after this answer: its next connection is held unread.
                            res.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                        }
                        Ok(res)
                    }
                    None => {
                        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        app.oneshot(req).await
                    }
                }
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let svc = metrics_svc.clone();
        tokio::spawn(async move {
            svc.metrics.connections_open.add(1);
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    svc.metrics.connection_timeouts.inc(&["header"]);
                } else if e.is_parse_too_large() {
                    svc.metrics.connection_timeouts.inc(&["too_large"]);
                    svc.guard.strike(Some(client), svc.now());
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
            svc.metrics.connections_open.add(-1);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(cfg.shutdown_grace) => {
            tracing::warn!(connections = open, "shutdown grace period over: closing the connections left");
        }
    }
    Ok(())
}
