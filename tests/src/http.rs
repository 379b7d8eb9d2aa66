//! A small blocking HTTP/1.1 client over `std::net`.
//!
//! It writes exactly what it is given, so tests can send duplicate headers,
//! odd values or outright malformed requests ([`raw`]). Responses are parsed
//! with Content-Length, chunked encoding (trailers kept) or read-to-close,
//! interim 1xx responses are skipped, and every read and connect is bounded by
//! [`DEFAULT_TIMEOUT`] and by size limits.
//!
//! * [`request`] / [`get`]: one request on a fresh connection (`Connection: close`),
//!   panicking with context on I/O errors; [`try_request`] returns the error instead.
//! * [`raw`] / [`try_raw`]: write raw bytes, read one response.
//! * [`Conn`]: a persistent (keep-alive) connection for several requests,
//!   pipelining, or checking whether the peer closed.
//!
//! Addresses are anything `ToSocketAddrs` accepts: a `SocketAddr`,
//! `"127.0.0.1:8080"` or `"[::1]:8080"`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// Connect, read and write timeout of every socket the client opens.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest status line + headers (or trailers) accepted.
pub const MAX_HEAD_BYTES: usize = 1 << 20;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// e.g. `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Every header in the order received, names as received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked encoding removed).
    pub body: Vec<u8>,
    /// Trailers of a chunked body, if any.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_header_all(&self.headers, name)
    }

    /// Whether header `name` is present (case-insensitive).
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn try_json(&self) -> serde_json::Result<Value> {
        serde_json::from_slice(&self.body)
    }

    /// The body parsed as JSON; panics, showing the response, if it is not JSON.
    pub fn json(&self) -> Value {
        match self.try_json() {
            Ok(v) => v,
            Err(e) => panic!("response body is not JSON ({e}): {}", self.summary()),
        }
    }

    /// A one-line description for assertion messages: status, headers, body (truncated).
    pub fn summary(&self) -> String {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        format!(
            "{} {} headers={:?} body={:?}",
            self.status, self.reason, self.headers, body
        )
    }
}

/// First value of header `name` in `headers` (case-insensitive).
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    find_header_all(headers, name).into_iter().next()
}

/// Every value of header `name` (case-insensitive) in a header list, in order.
pub fn find_header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"))
}

/// Serialises a request. Adds `Host` (the target address) unless `headers`
/// has one, `Content-Length` when there is a body (or the method usually has
/// one) unless `headers` has Content-Length or Transfer-Encoding, and
/// `Connection: close` when `close` is set and `headers` has no Connection.
/// Headers are written in the given order, verbatim.
pub fn encode_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let body_method = matches!(method, "POST" | "PUT" | "PATCH");
    if (!body.is_empty() || body_method) && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close && !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends one request on a fresh connection and reads the response.
pub fn try_request<A: ToSocketAddrs>(
    addr: A,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> io::Result<Response> {
    let mut conn = Conn::connect(addr)?;
    let host = conn.peer().to_string();
    let bytes = encode_request(method, path, &host, headers, body.as_ref(), true);
    conn.write_raw(&bytes)?;
    conn.read_response_to(method)
}

/// Sends one request on a fresh connection (`Connection: close`) and returns
/// the response; panics with the address and request line on I/O errors.
pub fn request<A: ToSocketAddrs + std::fmt::Debug>(
    addr: A,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> Response {
    let what = format!("{addr:?}");
    match try_request(addr, method, path, headers, body) {
        Ok(r) => r,
        Err(e) => panic!("HTTP {method} {path} to {what} failed: {e}"),
    }
}

/// `GET path` with no extra headers.
pub fn get<A: ToSocketAddrs + std::fmt::Debug>(addr: A, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Writes `bytes` verbatim on a fresh connection and reads one response.
/// The method (first word of `bytes`) decides whether a body is expected (HEAD).
pub fn try_raw<A: ToSocketAddrs>(addr: A, bytes: &[u8]) -> io::Result<Response> {
    let mut conn = Conn::connect(addr)?;
    conn.write_raw(bytes)?;
    let method = bytes.split(|b| *b == b' ').next().unwrap_or(b"");
    conn.read_response_to(&String::from_utf8_lossy(method))
}

/// [`try_raw`] that panics on I/O errors (including a close without response).
pub fn raw<A: ToSocketAddrs + std::fmt::Debug>(addr: A, bytes: &[u8]) -> Response {
    let what = format!("{addr:?}");
    match try_raw(addr, bytes) {
        Ok(r) => r,
        Err(e) => panic!(
            "raw HTTP to {what} failed: {e}; request was {:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// One client TCP connection; requests on it are keep-alive unless they say otherwise.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
}

impl Conn {
    /// Connects with [`DEFAULT_TIMEOUT`] for connect, reads and writes.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<Conn> {
        Conn::connect_timeout(addr, DEFAULT_TIMEOUT)
    }

    /// Connects with `timeout` for connect, reads and writes.
    pub fn connect_timeout<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<Conn> {
        let peer = resolve(addr)?;
        let stream = TcpStream::connect_timeout(&peer, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::new(stream),
            writer,
            peer,
        })
    }

    /// The address connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.writer.local_addr()
    }

    /// Changes the read timeout (e.g. to wait for a slow upstream).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }

    /// Sends a request (keep-alive: no `Connection: close` is added) and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> io::Result<Response> {
        let host = self.peer.to_string();
        let bytes = encode_request(method, path, &host, headers, body.as_ref(), false);
        self.write_raw(&bytes)?;
        self.read_response_to(method)
    }

    /// Writes bytes verbatim.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Reads the next response to a request that is not HEAD.
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to("GET")
    }

    /// Reads the next final response (1xx are skipped) to a request made with `method`.
    pub fn read_response_to(&mut self, method: &str) -> io::Result<Response> {
        loop {
            let resp = read_response(&mut self.reader, method)?;
            if (100..200).contains(&resp.status) && resp.status != 101 {
                continue;
            }
            return Ok(resp);
        }
    }

    /// Whether the peer has closed the connection (or reset it), waiting up to
    /// `timeout` for that to happen. Unread response bytes count as "not closed".
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let old = self.writer.read_timeout().ok().flatten();
        if self
            .writer
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .is_err()
        {
            return true;
        }
        let closed = match self.reader.fill_buf() {
            Ok(buf) => buf.is_empty(),
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        };
        let _ = self.writer.set_read_timeout(old);
        closed
    }

    /// Half-closes the write side (sends FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.writer.shutdown(Shutdown::Write)
    }
}

/// Reads one line (up to and including LF) with a size limit; returns it without CRLF/LF.
/// `Ok(None)` on a clean EOF before any byte.
fn read_line<R: BufRead>(r: &mut R, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-line",
            ));
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        line.extend_from_slice(chunk);
        let n = chunk.len();
        r.consume(n);
        if line.len() > limit {
            return Err(invalid("line too long"));
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads header lines up to the empty line; `budget` bounds their total size.
pub(crate) fn read_header_block<R: BufRead>(r: &mut R, budget: &mut usize) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, *budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside headers"))?;
        *budget = budget.saturating_sub(line.len() + 2);
        if *budget == 0 {
            return Err(invalid("header block too large"));
        }
        if line.is_empty() {
            return Ok(headers);
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed header line {text:?}")))?;
        headers.push((name.to_string(), value.trim_matches([' ', '\t']).to_string()));
    }
}

/// How a message body is delimited.
pub(crate) enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

pub(crate) fn content_length(headers: &[(String, String)]) -> io::Result<Option<usize>> {
    let mut found: Option<usize> = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {v:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(invalid("conflicting Content-Length headers"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

pub(crate) fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding")
            && v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// Header (or trailer) fields in order, names as received.
pub type Headers = Vec<(String, String)>;

/// Reads a body of the given kind. Returns (body, trailers).
pub(crate) fn read_body<R: BufRead>(r: &mut R, kind: BodyKind) -> io::Result<(Vec<u8>, Headers)> {
    match kind {
        BodyKind::None => Ok((Vec::new(), Vec::new())),
        BodyKind::Length(n) => {
            if n > MAX_BODY_BYTES {
                return Err(invalid(format!("body of {n} bytes is too large")));
            }
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            Ok((body, Vec::new()))
        }
        BodyKind::UntilClose => {
            let mut body = Vec::new();
            r.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY_BYTES {
                return Err(invalid("body too large"));
            }
            Ok((body, Vec::new()))
        }
        BodyKind::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(r, 4096)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed inside chunked body"))?;
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size line {text:?}")))?;
                if size == 0 {
                    let mut budget = MAX_HEAD_BYTES;
                    let trailers = read_header_block(r, &mut budget)?;
                    return Ok((body, trailers));
                }
                if body.len() + size > MAX_BODY_BYTES {
                    return Err(invalid("chunked body too large"));
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])?;
                let crlf = read_line(r, 2)?.unwrap_or_default();
                if !crlf.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
            }
        }
    }
}

fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<Response> {
    let status_line = read_line(r, MAX_HEAD_BYTES)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before any response"))?;
    let text = String::from_utf8_lossy(&status_line).into_owned();
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/") {
        return Err(invalid(format!("bad status line {text:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {text:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut budget = MAX_HEAD_BYTES;
    let headers = read_header_block(r, &mut budget)?;
    let kind = if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304
    {
        BodyKind::None
    } else if is_chunked(&headers) {
        BodyKind::Chunked
    } else if let Some(n) = content_length(&headers)? {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    };
    let (body, trailers) = read_body(r, kind)?;
    Ok(Response {
        version,
        status,
        reason,
        headers,
        body,
        trailers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], method: &str) -> io::Result<Response> {
        read_response(&mut BufReader::new(bytes), method)
    }

    #[test]
    fn content_length_body() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
            "GET",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("X-a"), Some("1"));
        assert_eq!(r.header_all("x-A"), vec!["1", "2"]);
    }

    #[test]
    fn chunked_body_with_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: v\r\n\r\n",
            "GET",
        )
        .unwrap();
        assert_eq!(r.body, b"hello world");
        assert_eq!(r.trailers, vec![("x-t".to_string(), "v".to_string())]);
    }

    #[test]
    fn head_and_204_have_no_body_and_close_delimits() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD")
            .unwrap()
            .body
            .is_empty());
        assert!(parse(b"HTTP/1.1 204 No Content\r\n\r\n", "GET")
            .unwrap()
            .body
            .is_empty());
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\n\r\nuntil close", "GET").unwrap().body,
            b"until close"
        );
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse(b"", "GET").is_err());
        assert!(parse(b"SSH-2.0-x\r\n\r\n", "GET").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET").is_err());
        assert!(parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "GET"
        )
        .is_err());
    }

    #[test]
    fn encodes_defaults_only_when_absent() {
        let req = encode_request("POST", "/p", "h:1", &[("x", "1"), ("X", "2")], b"ab", true);
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "POST /p HTTP/1.1\r\nHost: h:1\r\nx: 1\r\nX: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"
        );
        let req = encode_request(
            "GET",
            "/",
            "h",
            &[("host", "o"), ("connection", "keep-alive")],
            b"",
            true,
        );
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET / HTTP/1.1\r\nhost: o\r\nconnection: keep-alive\r\n\r\n"
        );
    }
}
