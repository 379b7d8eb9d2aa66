//! The unauthenticated flood of `make bench-service` (bench/service.py): the same
//! request over and over on `--connections` connections, each sending its next
//! request as soon as the previous one is answered (or after `--pause-ms`), from the
//! source address `--source`, so that the flood is a client of its own to the
//! service (wrk cannot choose its source address). A connection the service closes
//! without an answer is counted and opened again at once, as a flooding client would.
//!
//! Writes one JSON object to standard output when done:
//! `{"duration_us", "sent", "answers", "closed", "connect_errors", "statuses": {..}}`:
//! requests written, answered (by status), connections that ended without an answer,
//! and connections that could not be opened.
//!
//!     edge-auth-flood --target 127.0.0.1:8090 --source 127.0.0.2 --connections 16 \
//!       --seconds 6 --path /admin/v1/tenants --token wrong [--pause-ms 16]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

struct Args {
    target: SocketAddrV4,
    source: Ipv4Addr,
    connections: usize,
    seconds: f64,
    path: String,
    token: String,
    pause: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        source: Ipv4Addr::LOCALHOST,
        connections: 16,
        seconds: 5.0,
        path: "/".to_owned(),
        token: "not-the-admin-token".to_owned(),
        pause: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--target" => a.target = v.parse().map_err(|_| bad())?,
            "--source" => a.source = v.parse().map_err(|_| bad())?,
            "--connections" => a.connections = v.parse().map_err(|_| bad())?,
            "--seconds" => a.seconds = v.parse().map_err(|_| bad())?,
            "--pause-ms" => a.pause = Some(Duration::from_millis(v.parse().map_err(|_| bad())?)),
            "--path" => a.path = v,
            "--token" => a.token = v,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.target.port() == 0 || a.connections == 0 || !a.seconds.is_finite() || a.seconds <= 0.0 {
        return Err("--target host:port, --connections >= 1 and --seconds > 0 are needed".to_owned());
    }
    Ok(a)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// A non-blocking TCP connection under way to `to` from `source` (any port).
fn connect_from(source: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, owned by the TcpStream at once (closed on every path);
    // bind and connect read sockaddr_in values that live across the calls.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let from = sockaddr(SocketAddrV4::new(source, 0));
        if libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let dest = sockaddr(to);
        if libc::connect(fd, (&dest as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(stream)
    }
}

/// A complete response at the start of `buf`: its status, and whether the connection
/// stays open after it. `None` while incomplete.
fn response(buf: &[u8]) -> Result<Option<(u16, bool)>, ()> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(())?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if buf.len() - head_end < length {
        return Ok(None);
    }
    Ok(Some((status, header("connection") != Some("close"))))
}

#[derive(Default)]
struct Totals {
    sent: u64,
    answers: u64,
    closed: u64,
    connect_errors: u64,
    statuses: BTreeMap<u16, u64>,
}

/// One connection's state: the request's bytes still to write, the answer so far.
struct Conn {
    stream: TcpStream,
    written: usize,
    read: Vec<u8>,
    /// Not before this instant (a paced flood's pause).
    wait_until: Option<Instant>,
}

/// Every connection in one thread (as wrk -t1 does): one poll(2) loop.
fn flood(a: &Args, request: &[u8], until: Instant) -> Totals {
    let mut t = Totals::default();
    let mut conns: Vec<Option<Conn>> = (0..a.connections).map(|_| None).collect();
    // A paced flood opens a closed connection's successor after its pause.
    let mut reconnects: Vec<Option<Instant>> = vec![None; a.connections];
    let mut chunk = vec![0u8; 64 * 1024];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(a.connections);
    while Instant::now() < until {
        let now = Instant::now();
        fds.clear();
        for (slot, reconnect) in conns.iter_mut().zip(&mut reconnects) {
            if slot.is_none() && reconnect.is_none_or(|r| r <= now) {
                *reconnect = None;
                match connect_from(a.source, a.target) {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        t.sent += 1;
                        *slot = Some(Conn {
                            stream,
                            written: 0,
                            read: Vec::new(),
                            wait_until: None,
                        });
                    }
                    Err(_) => t.connect_errors += 1,
                }
            }
            let (fd, events) = match slot {
                Some(c) if c.wait_until.is_some_and(|w| w > now) => (-1, 0),
                Some(c) if c.written < request.len() => (c.stream.as_raw_fd(), libc::POLLOUT),
                Some(c) => (c.stream.as_raw_fd(), libc::POLLIN),
                None => (-1, 0),
            };
            fds.push(libc::pollfd { fd, events, revents: 0 });
        }
        // SAFETY: fds is a live array of fds.len() pollfd values.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1) };
        if n < 0 {
            continue;
        }
        let now = Instant::now();
        for ((slot, reconnect), p) in conns.iter_mut().zip(&mut reconnects).zip(&fds) {
            let Some(c) = slot else { continue };
            if c.wait_until.is_some_and(|w| w <= now) {
                c.wait_until = None;
                t.sent += 1;
                continue;
            }
            if p.revents == 0 {
                continue;
            }
            let done = if c.written < request.len() {
                match c.stream.write(&request[c.written..]) {
                    Ok(n) => {
                        c.written += n;
                        None
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    Err(_) => Some(false),
                }
            } else {
                match c.stream.read(&mut chunk) {
                    Ok(0) => Some(false),
                    Ok(n) => {
                        c.read.extend_from_slice(&chunk[..n]);
                        match response(&c.read) {
                            Ok(None) => None,
                            Ok(Some((status, open))) => {
                                t.answers += 1;
                                *t.statuses.entry(status).or_insert(0) += 1;
                                Some(open)
                            }
                            Err(()) => Some(false),
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    Err(_) => Some(false),
                }
            };
            match done {
                None => {}
                Some(true) => {
                    // Answered, and the connection stays open: the next request.
                    c.written = 0;
                    c.read.clear();
                    match a.pause {
                        Some(p) => c.wait_until = Some(now + p),
                        None => t.sent += 1,
                    }
                }
                Some(false) => {
                    // Closed: before an answer, or after one with `connection: close`.
                    if !matches!(response(&c.read), Ok(Some(_))) {
                        t.closed += 1;
                    }
                    *slot = None;
                    *reconnect = a.pause.map(|p| now + p);
                }
            }
        }
    }
    t
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("edge-auth-flood: {e}");
            std::process::exit(2);
        }
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-length: 0\r\n\r\n",
        a.path, a.target, a.token
    )
    .into_bytes();
    let started = Instant::now();
    let t = flood(&a, &request, started + Duration::from_secs_f64(a.seconds));
    let elapsed = started.elapsed();
    let statuses: Vec<String> = t.statuses.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!(
        "{{\"duration_us\": {}, \"sent\": {}, \"answers\": {}, \"closed\": {}, \"connect_errors\": {}, \"statuses\": {{{}}}}}",
        elapsed.as_micros(),
        t.sent, t.answers, t.closed, t.connect_errors,
        statuses.join(", ")
    );
}
