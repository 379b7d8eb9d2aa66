//! Test servers on loopback ephemeral ports, one thread per connection,
//! HTTP/1.1 keep-alive (Envoy pools upstream connections).
//!
//! * [`TestServer`]: programmable: a handler maps each [`ServedRequest`] to a
//!   [`Reply`] (status, headers, body, delay, or closing without answer).
//!   Every request is recorded ([`TestServer::requests`], [`TestServer::hits`]).
//! * [`EchoServer`]: the upstream: answers 200 with JSON
//!   `{"method","path","headers":[[name,value],...],"body"}` listing every request
//!   header received, in order. A request header `x-echo-status: NNN` makes it
//!   answer with that status instead.
//! * [`JwksServer`]: serves a JWKS document whose status, body and delay can
//!   be changed while it runs, and counts the requests it got.
//!
//! All of them bind port 0 and stop on drop: the listener closes, open
//! connections are shut down and their threads joined (delays are cut short).

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{self, find_header, find_header_all, BodyKind, MAX_HEAD_BYTES};

/// A request as a test server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    pub method: String,
    /// The request target exactly as received (path and query).
    pub path: String,
    /// e.g. `HTTP/1.1`.
    pub version: String,
    /// Every header in the order received, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (Envoy's upstream connection).
    pub peer: SocketAddr,
}

impl ServedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_header_all(&self.headers, name)
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// What a [`TestServer`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Sent in order. `Content-Length` is added unless present (or Transfer-Encoding is).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before answering (cut short when the server stops).
    pub delay: Duration,
    /// Close the connection without answering (after `delay`).
    pub close_without_response: bool,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            close_without_response: false,
        }
    }

    /// `status` with a JSON body and `content-type: application/json`.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::new(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// `status` with a text body and `content-type: text/plain`.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::new(status).header("content-type", "text/plain").body(body)
    }

    /// Closes the connection without sending anything.
    pub fn close() -> Reply {
        Reply {
            close_without_response: true,
            ..Reply::new(0)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Waits `delay` before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&ServedRequest) -> Reply + Send + Sync;

/// Most requests kept in a server's log (the hit counter keeps counting).
const MAX_RECORDED: usize = 10_000;

struct Inner {
    stop: AtomicBool,
    handler: Box<Handler>,
    hits: AtomicUsize,
    connections: AtomicUsize,
    log: Mutex<Vec<ServedRequest>>,
    next_conn_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A programmable HTTP/1.1 server on a loopback ephemeral port.
pub struct TestServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("hits", &self.hits())
            .finish()
    }
}

impl TestServer {
    /// Starts on 127.0.0.1:0; panics if it cannot bind.
    pub fn start(handler: impl Fn(&ServedRequest) -> Reply + Send + Sync + 'static) -> TestServer {
        match TestServer::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), handler) {
            Ok(s) => s,
            Err(e) => panic!("cannot start test server on 127.0.0.1: {e}"),
        }
    }

    /// Starts on `[::1]:0`; panics if it cannot bind.
    pub fn start_v6(handler: impl Fn(&ServedRequest) -> Reply + Send + Sync + 'static) -> TestServer {
        match TestServer::start_on(IpAddr::V6(Ipv6Addr::LOCALHOST), handler) {
            Ok(s) => s,
            Err(e) => panic!("cannot start test server on [::1]: {e}"),
        }
    }

    /// Starts on `ip` port 0.
    pub fn start_on(
        ip: IpAddr,
        handler: impl Fn(&ServedRequest) -> Reply + Send + Sync + 'static,
    ) -> io::Result<TestServer> {
        TestServer::start_at(SocketAddr::new(ip, 0), handler)
    }

    /// Starts on a fixed address (the demo upstream); prefer port 0 in tests.
    pub fn start_at(
        addr: SocketAddr,
        handler: impl Fn(&ServedRequest) -> Reply + Send + Sync + 'static,
    ) -> io::Result<TestServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            stop: AtomicBool::new(false),
            handler: Box::new(handler),
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            next_conn_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let accept_inner = Arc::clone(&inner);
        let accept = std::thread::Builder::new()
            .name(format!("test-server-{addr}"))
            .spawn(move || accept_loop(listener, accept_inner))?;
        Ok(TestServer {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests received so far (counted once fully read, before any delay).
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// The requests received so far, in order (at most the first 10 000).
    pub fn requests(&self) -> Vec<ServedRequest> {
        lock(&self.inner.log).clone()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<ServedRequest> {
        lock(&self.inner.log).last().cloned()
    }

    /// Forgets the recorded requests and zeroes the hit counter.
    pub fn reset(&self) {
        lock(&self.inner.log).clear();
        self.inner.hits.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `n` requests were received; returns whether they were.
    pub fn wait_for_hits(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.hits() >= n)
    }

    /// Whether any request recorded so far carried header `name` with `value`
    /// (tests that share a server tag their requests with a unique probe).
    pub fn saw(&self, name: &str, value: &str) -> bool {
        lock(&self.inner.log).iter().any(|r| r.header(name) == Some(value))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, s) in lock(&self.inner.open).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let workers: Vec<_> = lock(&self.inner.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    while !inner.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                inner.connections.fetch_add(1, Ordering::SeqCst);
                let id = inner.next_conn_id.fetch_add(1, Ordering::SeqCst);
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                lock(&inner.open).insert(id, clone);
                let conn_inner = Arc::clone(&inner);
                let spawned = std::thread::Builder::new()
                    .name(format!("test-conn-{peer}"))
                    .spawn(move || {
                        let _ = serve_connection(stream, peer, &conn_inner);
                        lock(&conn_inner.open).remove(&id);
                    });
                match spawned {
                    Ok(h) => {
                        let mut workers = lock(&inner.workers);
                        workers.retain(|w| !w.is_finished());
                        workers.push(h);
                    }
                    Err(_) => {
                        lock(&inner.open).remove(&id);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads one request; `Ok(None)` on a clean close between requests.
fn read_request<R: io::BufRead>(r: &mut R, peer: SocketAddr) -> io::Result<Option<ServedRequest>> {
    let mut line = Vec::new();
    // Tolerate empty lines between requests (RFC 9112 2.2).
    loop {
        line.clear();
        let n = io::BufRead::read_until(&mut io::Read::take(&mut *r, MAX_HEAD_BYTES as u64), b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(http::invalid("request line too long or truncated"));
        }
        let trimmed = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if trimmed.is_empty() {
            continue;
        }
        let mut parts = trimmed.split(' ');
        let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(http::invalid(format!("bad request line {trimmed:?}")));
        };
        let mut budget = MAX_HEAD_BYTES;
        let headers = http::read_header_block(r, &mut budget)?;
        let kind = if http::is_chunked(&headers) {
            BodyKind::Chunked
        } else if let Some(n) = http::content_length(&headers)? {
            BodyKind::Length(n)
        } else {
            BodyKind::None
        };
        let (body, _trailers) = http::read_body(r, kind)?;
        return Ok(Some(ServedRequest {
            method: method.to_string(),
            path: path.to_string(),
            version: version.to_string(),
            headers,
            body,
            peer,
        }));
    }
}

fn sleep_unless_stopped(inner: &Inner, d: Duration) {
    let deadline = Instant::now() + d;
    while !inner.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, inner: &Inner) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    // Idle keep-alive connections are closed after a minute; drop shuts them down sooner.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(req) = read_request(&mut reader, peer)? else {
            return Ok(());
        };
        inner.hits.fetch_add(1, Ordering::SeqCst);
        {
            let mut log = lock(&inner.log);
            if log.len() < MAX_RECORDED {
                log.push(req.clone());
            }
        }
        let reply = (inner.handler)(&req);
        if !reply.delay.is_zero() {
            sleep_unless_stopped(inner, reply.delay);
        }
        if reply.close_without_response || inner.stop.load(Ordering::SeqCst) {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || req.version.eq_ignore_ascii_case("HTTP/1.0");
        writer.write_all(&encode_reply(&reply, req.method.eq_ignore_ascii_case("HEAD"), close))?;
        writer.flush()?;
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// The usual reason phrase of `status`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn encode_reply(reply: &Reply, head: bool, close: bool) -> Vec<u8> {
    let has = |name: &str| reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason_phrase(reply.status));
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let bodyless = reply.status == 204 || reply.status == 304 || (100..200).contains(&reply.status);
    if !bodyless && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    if close && !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head && !bodyless {
        bytes.extend_from_slice(&reply.body);
    }
    bytes
}

/// The echo answer to `req`: 200 (or `x-echo-status`) with
/// `{"method","path","headers":[[name,value],...],"body"}`.
pub fn echo_reply(req: &ServedRequest) -> Reply {
    let status = req
        .header("x-echo-status")
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|s| (200..=599).contains(s))
        .unwrap_or(200);
    let headers: Vec<Value> = req.headers.iter().map(|(k, v)| json!([k, v])).collect();
    Reply::json(
        status,
        &json!({
            "method": req.method,
            "path": req.path,
            "headers": headers,
            "body": String::from_utf8_lossy(&req.body),
        }),
    )
}

/// The upstream that echoes each request as JSON. Derefs to [`TestServer`].
#[derive(Debug)]
pub struct EchoServer(TestServer);

impl EchoServer {
    /// Starts on 127.0.0.1:0.
    pub fn start() -> EchoServer {
        EchoServer(TestServer::start(echo_reply))
    }

    /// Starts on [::1]:0.
    pub fn start_v6() -> EchoServer {
        EchoServer(TestServer::start_v6(echo_reply))
    }

    /// Starts on a fixed address (the demo upstream).
    pub fn start_at(addr: SocketAddr) -> io::Result<EchoServer> {
        TestServer::start_at(addr, echo_reply).map(EchoServer)
    }
}

impl Deref for EchoServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

/// The headers listed in an echo response body, in order.
pub fn echoed_headers(echo_body: &Value) -> Vec<(String, String)> {
    echo_body["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every value of header `name` (case-insensitive) in an echo response body.
pub fn echoed_header_all(echo_body: &Value, name: &str) -> Vec<String> {
    echoed_headers(echo_body)
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// The first value of header `name` (case-insensitive) in an echo response body.
pub fn echoed_header(echo_body: &Value, name: &str) -> Option<String> {
    echoed_header_all(echo_body, name).into_iter().next()
}

#[derive(Debug, Clone)]
struct JwksState {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    delay: Duration,
}

/// Serves a JWKS document (any path) whose answer can change at runtime.
/// Derefs to [`TestServer`] for `port()`, `hits()`, `requests()`, `wait_for_hits()`...
#[derive(Debug)]
pub struct JwksServer {
    server: TestServer,
    state: Arc<Mutex<JwksState>>,
}

impl JwksServer {
    /// Starts on 127.0.0.1:0 answering 200 with `jwks` as JSON.
    pub fn start(jwks: &Value) -> JwksServer {
        let state = Arc::new(Mutex::new(JwksState {
            status: 200,
            body: jwks.to_string().into_bytes(),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            delay: Duration::ZERO,
        }));
        let handler_state = Arc::clone(&state);
        let server = TestServer::start(move |_req| {
            let s = lock(&handler_state).clone();
            Reply {
                status: s.status,
                headers: s.headers,
                body: s.body,
                delay: s.delay,
                close_without_response: false,
            }
        });
        JwksServer { server, state }
    }

    /// Serves `jwks` (as JSON) from now on; status and delay unchanged.
    pub fn set_jwks(&self, jwks: &Value) {
        lock(&self.state).body = jwks.to_string().into_bytes();
    }

    /// Serves `body` verbatim from now on (e.g. invalid JSON).
    pub fn set_body(&self, body: impl Into<Vec<u8>>) {
        lock(&self.state).body = body.into();
    }

    /// Answers with `status` from now on.
    pub fn set_status(&self, status: u16) {
        lock(&self.state).status = status;
    }

    /// Sets status and body at once.
    pub fn set_response(&self, status: u16, body: impl Into<Vec<u8>>) {
        let mut s = lock(&self.state);
        s.status = status;
        s.body = body.into();
    }

    /// Waits `delay` before each answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Replaces the response headers (default: `content-type: application/json`).
    pub fn set_headers(&self, headers: &[(&str, &str)]) {
        lock(&self.state).headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Zeroes the request counter and the request log.
    pub fn reset_hits(&self) {
        self.server.reset();
    }
}

impl Deref for JwksServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http;

    #[test]
    fn echo_lists_headers_in_order_and_counts() {
        let echo = EchoServer::start();
        let r = http::request(echo.addr(), "POST", "/a?b=c", &[("X-One", "1"), ("x-one", "2")], "hi");
        assert_eq!(r.status, 200);
        let body = r.json();
        assert_eq!(body["method"], "POST");
        assert_eq!(body["path"], "/a?b=c");
        assert_eq!(body["body"], "hi");
        assert_eq!(echoed_header_all(&body, "X-ONE"), vec!["1", "2"]);
        assert_eq!(echo.hits(), 1);
        assert_eq!(echo.last_request().unwrap().header_all("x-one"), vec!["1", "2"]);
        let r = http::request(echo.addr(), "GET", "/", &[("x-echo-status", "503")], "");
        assert_eq!(r.status, 503);
    }

    #[test]
    fn echo_on_ipv6_and_keep_alive() {
        let echo = EchoServer::start_v6();
        let mut conn = http::Conn::connect(echo.addr()).unwrap();
        for i in 0..3 {
            let r = conn.send("GET", &format!("/{i}"), &[], "").unwrap();
            assert_eq!(r.json()["path"], format!("/{i}"));
        }
        assert_eq!(echo.connections(), 1);
        assert_eq!(echo.hits(), 3);
    }

    #[test]
    fn chunked_request_body_is_decoded() {
        let echo = EchoServer::start();
        let r = http::raw(
            echo.addr(),
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(r.json()["body"], "abc");
    }

    #[test]
    fn jwks_server_changes_at_runtime() {
        let jwks = JwksServer::start(&json!({"keys": []}));
        assert_eq!(http::get(jwks.addr(), "/jwks").json(), json!({"keys": []}));
        jwks.set_response(503, "down");
        let r = http::get(jwks.addr(), "/jwks");
        assert_eq!((r.status, r.text().as_str()), (503, "down"));
        jwks.set_status(200);
        jwks.set_jwks(&json!({"keys": [{"kty": "oct"}]}));
        jwks.set_delay(Duration::from_millis(200));
        let t = Instant::now();
        assert_eq!(http::get(jwks.addr(), "/jwks").json()["keys"][0]["kty"], "oct");
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert_eq!(jwks.hits(), 3);
        jwks.reset_hits();
        assert_eq!(jwks.hits(), 0);
    }

    #[test]
    fn drop_cuts_delays_and_closes_connections() {
        let server = TestServer::start(|_| Reply::new(200).delay(Duration::from_secs(30)));
        let addr = server.addr();
        let t = Instant::now();
        let client = std::thread::spawn(move || http::try_request(addr, "GET", "/", &[], ""));
        assert!(server.wait_for_hits(1, Duration::from_secs(5)));
        drop(server);
        assert!(client.join().unwrap().is_err());
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn conn_sees_server_close() {
        let echo = EchoServer::start();
        let mut conn = http::Conn::connect(echo.addr()).unwrap();
        conn.send("GET", "/", &[], "").unwrap();
        assert!(!conn.is_closed_within(Duration::from_millis(100)));
        let r = conn.send("GET", "/", &[("connection", "close")], "").unwrap();
        assert_eq!(r.header("connection"), Some("close"));
        assert!(conn.is_closed_within(Duration::from_secs(2)));
    }

    #[test]
    fn close_without_response() {
        let server = TestServer::start(|_| Reply::close());
        assert!(http::try_request(server.addr(), "GET", "/", &[], "").is_err());
        assert_eq!(server.hits(), 1);
    }
}
