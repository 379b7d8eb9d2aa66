//! One log line per request, a request id, and the HTTP metrics.
//!
//! The request id is the caller's `x-request-id` when it is 1 to 64 characters of
//! `A-Z a-z 0-9 - _ .` (the edge's, say), else a new unique one; it is returned in
//! `x-request-id` and is on the request's log line and on every line logged while
//! the request runs (as its span's field). The line carries the route template and
//! the path cut to 256 bytes: no client can make a log line long.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;
use crate::audit::truncate;

/// Longest path written to a log line.
const MAX_LOGGED_PATH: usize = 256;
pub(super) const REQUEST_ID: &str = "x-request-id";

/// The route template a request matched, carried by its response to [`observe`].
#[derive(Debug, Clone)]
struct RouteTemplate(String);

/// Puts the matched route template on the response (for the log line).
pub async fn mark_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(RouteTemplate(route));
    }
    res
}

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A new request id, 24 hex characters: 48 random bits drawn once per process, then a
/// 48-bit counter. Unique without asking the OS for randomness on every request.
pub(super) fn new_request_id() -> String {
    static PREFIX: OnceLock<[u8; 6]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        crate::ids::random_bytes::<6>().unwrap_or_else(|_| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let b = t.to_le_bytes();
            [b[0], b[1], b[2], b[3], b[4], b[5]]
        })
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let mut id = [0u8; 12];
    id[..6].copy_from_slice(prefix);
    id[6..].copy_from_slice(&n[2..]);
    crate::ids::hex(&id)
}

/// The caller's request id if it is well formed, else a new one.
pub(super) fn request_id<B>(req: &axum::http::Request<B>) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, str::to_owned)
}

pub async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = truncate(req.uri().path(), MAX_LOGGED_PATH).to_owned();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let route = res
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    let metrics = &st.service.metrics;
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics.http_requests.inc(&[class]);
    metrics.http_request_duration.observe(&[], elapsed);
    if tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        let line = AccessLine {
            request_id: &id,
            method: method.as_str(),
            route: &route,
            path: &path,
            status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            peer: peer.as_deref().unwrap_or("-"),
        };
        // Formatted here rather than by `tracing` (the same fields), unless the process
        // has a logger of its own (tests).
        if !crate::logging::write_line(|out| line.write(out, SystemTime::now())) {
            span.in_scope(|| {
                tracing::info!(
                    target: ACCESS_TARGET,
                    request_id = %line.request_id,
                    method = %line.method,
                    route = %line.route,
                    path = %line.path,
                    status,
                    duration_ms = line.duration_ms,
                    peer = line.peer,
                    "request"
                );
            });
        }
    }
    res
}

const ACCESS_TARGET: &str = "edge_auth_service::request";

/// A request's log line.
struct AccessLine<'a> {
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    path: &'a str,
    status: u16,
    duration_ms: f64,
    peer: &'a str,
}

impl AccessLine<'_> {
    /// The line as `tracing`'s JSON formatter writes an event at `info` in the
    /// request's span: `timestamp`, `level`, `message`, the fields, `target`, `span`.
    fn write(&self, out: &mut Vec<u8>, now: SystemTime) {
        fn string(out: &mut Vec<u8>, key: &str, value: &str) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.extend_from_slice(b"{\"timestamp\":\"");
        crate::logging::write_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
        string(out, "request_id", self.request_id);
        string(out, "method", self.method);
        string(out, "route", self.route);
        string(out, "path", self.path);
        let _ = write!(out, ",\"status\":{},\"duration_ms\":", self.status);
        let _ = serde_json::to_writer(&mut *out, &self.duration_ms);
        string(out, "peer", self.peer);
        string(out, "target", ACCESS_TARGET);
        out.extend_from_slice(b",\"span\":{\"request_id\":");
        let _ = serde_json::to_writer(&mut *out, self.request_id);
        out.extend_from_slice(b",\"name\":\"request\"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert!(valid_request_id("abc-123_X.y"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id(&"a".repeat(65)));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("a\"b"));
    }

    #[test]
    fn the_request_line_is_json_with_every_field_escaped() {
        let line = AccessLine {
            request_id: "edge-1",
            method: "POST",
            route: "/admin/v1/keys/{key_id}/revoke",
            path: "/admin/v1/keys/a\"b\\c\u{1}\u{7f}é/revoke",
            status: 401,
            duration_ms: 0.25,
            peer: "2001:db8::1",
        };
        let mut out = Vec::new();
        line.write(
            &mut out,
            std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_795_000_000_000_001),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": "2026-11-18T11:06:40.000001Z",
                "level": "INFO",
                "message": "request",
                "request_id": "edge-1",
                "method": "POST",
                "route": "/admin/v1/keys/{key_id}/revoke",
                "path": "/admin/v1/keys/a\"b\\c\u{1}\u{7f}é/revoke",
                "status": 401,
                "duration_ms": 0.25,
                "peer": "2001:db8::1",
                "target": "edge_auth_service::request",
                "span": {"request_id": "edge-1", "name": "request"},
            })
        );
        assert!(
            !out.contains(&b'\n') && !out.contains(&1),
            "one line, control characters escaped"
        );
    }

    #[test]
    fn new_request_ids_are_unique_and_well_formed() {
        let ids: Vec<String> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5000).map(|_| new_request_id()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().unwrap())
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids
            .iter()
            .all(|id| id.len() == 24 && valid_request_id(id) && id[..12] == ids[0][..12]));
    }
}
