//! One log line per request, a request id, and the HTTP metrics.
//!
//! The request id is the caller's `x-request-id` when it is 1 to 64 characters of
//! `A-Z a-z 0-9 - _ .` (the edge's, say), else a new random one; it is returned in
//! `x-request-id` and is on the request's log line and on every line logged while
//! the request runs (as its span's field). The line carries the route template and
//! the path cut to 256 bytes: no client can make a log line long.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;
use crate::audit::truncate;

/// Longest path written to a log line.
const MAX_LOGGED_PATH: usize = 256;
const REQUEST_ID: &str = "x-request-id";

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

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .or_else(|| crate::ids::random_bytes::<12>().ok().map(|b| crate::ids::hex(&b)))
        .unwrap_or_else(|| "-".to_owned())
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
    span.in_scope(|| {
        tracing::info!(
            target: "edge_auth_service::request",
            request_id = %id,
            method = %method,
            route = %route,
            path = %path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            peer = peer.as_deref().unwrap_or("-"),
            "request"
        );
    });
    res
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
}
