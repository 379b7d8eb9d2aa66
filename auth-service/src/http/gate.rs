//! The first look at a request, before routing, logging or any extractor: a client
//! over its failed-authentication limit ([`crate::guard`]) that asks for a route
//! needing a credential (`/admin/`, `/internal/`, `/v1/`) without a valid admin or
//! service token gets `429` at once, from a prebuilt response. The refusal is counted
//! in the audit aggregate and in the client's refusals, which `background` logs as
//! one line per client per window: a flood from a limited address costs a header
//! parse, one table lookup and a copy of a static answer, and writes nothing per
//! request, neither to the database nor to the log.
//!
//! Routes without a credential (`/health`, `/ready`, `/metrics`, the JWKS) are never
//! refused here, so a health check from an address that is limited still passes.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use super::{authorization_str, observe, AppState, Matched, Secret, API_VERSION_HEADER};
use crate::error::{Credential, Error};

/// What a path's credential is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Admin,
    Service,
    ApiKey,
}

impl Class {
    fn of(path: &str) -> Option<Class> {
        if path.starts_with("/admin/") {
            Some(Class::Admin)
        } else if path.starts_with("/internal/") {
            Some(Class::Service)
        } else if path.starts_with("/v1/") {
            Some(Class::ApiKey)
        } else {
            None
        }
    }

    /// The audit action its failures are counted under, and the metric's `kind`.
    fn action(self) -> &'static str {
        match self {
            Class::Admin => "admin.auth",
            Class::Service => "service.auth",
            Class::ApiKey => "api_key.auth",
        }
    }

    /// The route counted for a path that matches none of [`CREDENTIALED`].
    fn any_route(self) -> &'static str {
        match self {
            Class::Admin => "/admin/*",
            Class::Service => "/internal/*",
            Class::ApiKey => "/v1/*",
        }
    }
}

/// The templates of the routes that need a credential, as the router has them: a
/// refused request is counted under the one its path matches (never under its path).
pub(super) const CREDENTIALED: &[&str] = &[
    "/internal/v1/api-keys/lookup",
    "/internal/v1/revocations",
    "/internal/v1/stats",
    "/admin/v1/tenants",
    "/admin/v1/tenants/{tenant}",
    "/admin/v1/tenants/{tenant}/disable",
    "/admin/v1/tenants/{tenant}/enable",
    "/admin/v1/tenants/{tenant}/keys",
    "/admin/v1/keys/{key_id}/rotate",
    "/admin/v1/keys/{key_id}/revoke",
    "/admin/v1/keys/revoke-all",
    "/admin/v1/tenants/{tenant}/keys/revoke-all",
    "/admin/v1/sessions/{sid}/revoke",
    "/admin/v1/subjects/{subject}/revoke",
    "/admin/v1/tenants/{tenant}/subjects/{subject}/revoke",
    "/admin/v1/revoke-all",
    "/admin/v1/signing-keys/rotate",
    "/admin/v1/audit",
    "/admin/v1/tenants/{tenant}/clients",
    "/admin/v1/clients/{client_id}",
    "/admin/v1/clients/{client_id}/rotate",
    "/admin/v1/clients/{client_id}/disable",
    "/admin/v1/clients/{client_id}/enable",
    "/v1/sessions",
    "/v1/sessions/refresh",
    "/v1/sessions/logout",
    "/v1/subjects/logout-everywhere",
];

/// Whether `path` matches `template` (`{name}` stands for one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

fn route_of(path: &str, class: Class) -> &'static str {
    CREDENTIALED
        .iter()
        .find(|t| matches(t, path))
        .copied()
        .unwrap_or(class.any_route())
}

/// The `429` body for `retry_after_s`, exactly as [`Error::RateLimited`] answers it;
/// built once for the usual values (and the last unusual one).
fn body(retry_after_s: u64) -> Bytes {
    fn make(retry_after_s: u64) -> Bytes {
        let e = Error::RateLimited { retry_after_s };
        Bytes::from(json!({"error": e.code(), "error_description": e.description()}).to_string())
    }
    static BODIES: [OnceLock<Bytes>; 64] = [const { OnceLock::new() }; 64];
    static LAST: Mutex<Option<(u64, Bytes)>> = Mutex::new(None);
    if let Some(cell) = BODIES.get(usize::try_from(retry_after_s).unwrap_or(usize::MAX)) {
        return cell.get_or_init(|| make(retry_after_s)).clone();
    }
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    match &*last {
        Some((n, b)) if *n == retry_after_s => b.clone(),
        _ => {
            let b = make(retry_after_s);
            *last = Some((retry_after_s, b.clone()));
            b
        }
    }
}

fn too_many_requests(retry_after_s: u64, request_id: &str) -> Response {
    let mut res = Response::new(Body::from(body(retry_after_s)));
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    h.insert(API_VERSION_HEADER, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(observe::REQUEST_ID, v);
    }
    res
}

/// Which of `secret`'s values the request's `Authorization: Bearer` token is.
fn carries<B>(req: &Request<B>, secret: &Secret) -> Matched {
    authorization_str(req.headers(), "Bearer").map_or(Matched::Neither, |t| secret.check(t))
}

/// A request whose bearer token the gate found valid (admin or service): the token
/// middleware does not hash it again. Only the server sets it; no client can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verified {
    pub(super) credential: Credential,
    /// The token's value it matched: the current one or, during a rollover, the previous.
    pub(super) matched: Matched,
}

/// The answer to a request from `client` (its address as the guard counts it) if it
/// is to be refused before anything else is done with it; `None` to serve it.
///
/// A valid admin or service token is looked for first: the edges' requests then pass
/// without touching the guard's shared state, which a flood's refusals, on threads of
/// a lower priority, hold in turn.
pub(super) fn refuse<B>(st: &AppState, req: &mut Request<B>, client: Option<IpAddr>) -> Option<Response> {
    let path = req.uri().path();
    let class = Class::of(path)?;
    let (credential, matched) = match class {
        Class::Admin => (Credential::Admin, carries(req, &st.admin_token)),
        Class::Service => (Credential::Service, carries(req, &st.service_token)),
        // An API key is refused from a limited client without being looked up.
        Class::ApiKey => (Credential::ApiKey, Matched::Neither),
    };
    if matched != Matched::Neither {
        req.extensions_mut().insert(Verified { credential, matched });
        return None;
    }
    let svc = &st.service;
    let now = svc.now();
    let retry_after_s = svc.guard.limited_client(client, now)?;
    svc.guard.refuse(class.action(), route_of(path, class), client, now);
    let m = &svc.metrics;
    match class {
        Class::Admin => m.token_validations.inc(&["admin", "rate_limited"]),
        Class::Service => m.token_validations.inc(&["service", "rate_limited"]),
        Class::ApiKey => m.api_key_validations.inc(&["rate_limited"]),
    }
    m.http_requests.inc(&["4xx"]);
    Some(too_many_requests(retry_after_s, &observe::request_id(req)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates_segment_by_segment() {
        assert!(matches("/admin/v1/keys/{key_id}/revoke", "/admin/v1/keys/k1/revoke"));
        assert!(matches("/admin/v1/tenants", "/admin/v1/tenants"));
        assert!(!matches("/admin/v1/keys/{key_id}/revoke", "/admin/v1/keys//revoke"));
        assert!(!matches("/admin/v1/keys/{key_id}/revoke", "/admin/v1/keys/a/b/revoke"));
        assert!(!matches("/admin/v1/tenants", "/admin/v1/tenants/"));
        assert!(!matches("/admin/v1/tenants", "/admin/v1/tenantsx"));
        let long = format!("/admin/v1/keys/{}/revoke", "a".repeat(60_000));
        assert_eq!(route_of(&long, Class::Admin), "/admin/v1/keys/{key_id}/revoke");
        assert_eq!(route_of("/admin/v2/x", Class::Admin), "/admin/*");
        assert_eq!(route_of("/v1/nope", Class::ApiKey), "/v1/*");
        assert_eq!(
            route_of("/internal/v1/api-keys/lookup", Class::Service),
            "/internal/v1/api-keys/lookup"
        );
    }

    /// Every route of the router that needs a credential is in [`CREDENTIALED`], so a
    /// limited client's refusal is counted under the route its 401s were counted under.
    #[test]
    fn every_credentialed_route_of_the_router_is_listed() {
        let source = include_str!("mod.rs");
        let mut routes = Vec::new();
        for piece in source.split(".route(").skip(1) {
            let Some(start) = piece.find('"') else { continue };
            let rest = &piece[start + 1..];
            let template = &rest[..rest.find('"').unwrap()];
            if Class::of(template).is_some() {
                routes.push(template);
            }
        }
        assert!(routes.len() >= 20, "{routes:?}");
        for t in &routes {
            assert!(CREDENTIALED.contains(t), "{t} is not in CREDENTIALED");
        }
        for t in CREDENTIALED {
            assert!(routes.contains(t), "{t} is not a route");
        }
    }

    #[test]
    fn only_credentialed_prefixes_are_gated() {
        assert_eq!(Class::of("/admin/v1/audit"), Some(Class::Admin));
        assert_eq!(Class::of("/internal/v1/revocations"), Some(Class::Service));
        assert_eq!(Class::of("/v1/sessions"), Some(Class::ApiKey));
        for open in [
            "/health",
            "/ready",
            "/metrics",
            "/.well-known/jwks.json",
            "/admin",
            "/v1",
            "//admin/v1/x",
        ] {
            assert_eq!(Class::of(open), None, "{open}");
        }
    }

    /// The gate's mark stands for the one credential it verified, on that credential's routes only.
    #[tokio::test]
    async fn a_verified_mark_counts_for_its_own_credential_only() {
        use crate::db::{DbConfig, Location};
        use crate::service::{Service, SystemClock};
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let config = DbConfig::new(Location::Sqlite(dir.path().join("g.db")));
        let svc = std::sync::Arc::new(Service::open(&config, None, std::sync::Arc::new(SystemClock)).unwrap());
        let app = super::super::router(AppState::new(
            svc,
            Secret::new(&"a".repeat(40)),
            Secret::new(&"s".repeat(40)),
        ));
        let status = |credential| {
            let app = app.clone();
            async move {
                let mut req = Request::get("/internal/v1/revocations").body(Body::empty()).unwrap();
                if let Some(c) = credential {
                    req.extensions_mut().insert(Verified {
                        credential: c,
                        matched: Matched::Current,
                    });
                }
                app.oneshot(req).await.unwrap().status()
            }
        };
        assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(Some(Credential::Admin)).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(Some(Credential::Service)).await, StatusCode::OK);
    }

    #[test]
    fn the_prebuilt_body_is_the_errors_own() {
        for n in [0, 1, 63, 64, 1000, 1000, 64, u64::MAX] {
            let e = Error::RateLimited { retry_after_s: n };
            let v: serde_json::Value = serde_json::from_slice(&body(n)).unwrap();
            assert_eq!(v, json!({"error": e.code(), "error_description": e.description()}));
        }
    }
}
