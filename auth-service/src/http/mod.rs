//! The HTTP API (axum): internal endpoints for the edge, the SDK endpoints, the
//! admin API, the JWKS, health, readiness and metrics. See `docs/auth-service-api.md`.
//!
//! Every response carries `edge-auth-api-version: 1` and an `x-request-id`; every
//! error is `{"error": code, "error_description": text}`, its status chosen here
//! (`status_of`) and nowhere else. Database work runs on the blocking pool.
//! The server itself (timeouts, connection limits, shutdown) is `server`.

mod extract;
mod gate;
mod oauth;
mod observe;
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use extract::{ApiKey, Client, JsonBody, NoBody, OptionalJsonBody, Route};
pub use server::{serve, serve_api, HttpConfig};

use crate::edge_context::EdgeContextConfig;
use crate::error::{Credential, Error, Result};
use crate::guard::Failure;
use crate::service::{
    AuditQuery, KeyRequest, LogoutRequest, LookupRequest, RefreshRequest, RotateRequest, Service, SessionRequest,
    SubjectRequest, TenantRequest, TenantUpdate,
};
use crate::store::AuditFilter;

/// The API version stated in every response.
pub const API_VERSION_HEADER: &str = "edge-auth-api-version";
/// The largest request body accepted by default.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The shortest admin or service token accepted.
pub const MIN_TOKEN_LEN: usize = 32;
/// The longest admin or service token accepted: a longer presented token is wrong
/// without being hashed.
pub const MAX_TOKEN_LEN: usize = 1024;

/// A bearer secret, kept only as its SHA-256 and compared in constant time; during a
/// rollover, also the previous one (both are accepted).
#[derive(Clone)]
pub struct Secret {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

/// Which of a [`Secret`]'s values a presented token matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Current,
    Previous,
    Neither,
}

impl Secret {
    pub fn new(token: &str) -> Secret {
        Secret {
            current: Sha256::digest(token.as_bytes()).into(),
            previous: None,
        }
    }

    /// `token`, and `previous` still accepted during a rollover.
    pub fn rolling(token: &str, previous: Option<&str>) -> Secret {
        Secret {
            previous: previous.map(|p| Sha256::digest(p.as_bytes()).into()),
            ..Secret::new(token)
        }
    }

    /// Constant-time comparison: both sides are hashed first, so neither the
    /// content nor the length of the expected token leaks through timing, and both
    /// values are always compared. A token over [`MAX_TOKEN_LEN`] is wrong unhashed.
    pub fn check(&self, presented: &str) -> Matched {
        if presented.len() > MAX_TOKEN_LEN {
            return Matched::Neither;
        }
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let current = self.current.ct_eq(&h);
        let previous = self.previous.map_or(subtle::Choice::from(0), |p| p.ct_eq(&h));
        if bool::from(current) {
            Matched::Current
        } else if bool::from(previous) {
            Matched::Previous
        } else {
            Matched::Neither
        }
    }

    pub fn matches(&self, presented: &str) -> bool {
        self.check(presented) != Matched::Neither
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub admin_token: Secret,
    pub service_token: Secret,
    pub http: Arc<HttpConfig>,
    /// How to check the edge's signed context headers; `None`: they are never believed.
    pub edge_context: Option<Arc<EdgeContextConfig>>,
}

impl AppState {
    pub fn new(service: Arc<Service>, admin_token: Secret, service_token: Secret) -> AppState {
        AppState {
            service,
            admin_token,
            service_token,
            http: Arc::new(HttpConfig::default()),
            edge_context: None,
        }
    }
}

/// The HTTP status of a domain error.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidRequest(_)
        | Error::InvalidScope(_)
        | Error::UnauthorizedClient(_)
        | Error::UnsupportedGrantType
        | Error::InvalidTarget(_) => StatusCode::BAD_REQUEST,
        Error::InvalidClient => StatusCode::UNAUTHORIZED,
        Error::InvalidGrant(_) | Error::InvalidToken(_) | Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::IpNotAllowed => StatusCode::FORBIDDEN,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::SchemaTooNew { .. } | Error::SigningKeySealed(_) | Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code(), "error_description": self.description()}));
        let mut res = (status_of(&self), body).into_response();
        let headers = res.headers_mut();
        match &self {
            Error::RateLimited { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            Error::Unauthenticated(c) => {
                let scheme = match c {
                    Credential::Admin | Credential::Service => "Bearer realm=\"edge-auth-service\"",
                    Credential::ApiKey => "ApiKey realm=\"edge-auth-service\"",
                };
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
            }
            Error::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"edge-auth-service\""),
                );
            }
            // The rest of the body may never come: do not read it.
            Error::RequestTimeout | Error::TooLarge(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }
}

/// Runs database work on the blocking pool, inside the request's span.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Error::internal(format_args!("task: {e}")))?
}

fn query<T>(q: std::result::Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T> {
    q.map(|Query(t)| t)
        .map_err(|e| Error::invalid_request(format!("invalid query: {}", e.body_text())))
}

/// The credential after `Authorization: <scheme> `, scheme case-insensitive.
pub(crate) fn authorization(headers: &HeaderMap, scheme: &str) -> Option<String> {
    authorization_str(headers, scheme).map(str::to_owned)
}

/// [`authorization`], borrowed.
pub(crate) fn authorization_str<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (s, cred) = v.split_once(' ')?;
    let cred = cred.trim();
    (s.eq_ignore_ascii_case(scheme) && !cred.is_empty()).then_some(cred)
}

// ---------------------------------------------------------------- middleware

async fn version_header(mut res: Response) -> Response {
    res.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("1"));
    res
}

/// The one bearer-token check, for the admin token and the service token. A valid
/// token always passes; a failure is counted against the client (`guard`), answered
/// `401` (or `429` once the client is limited) and audited in aggregate.
async fn require_token(
    State((st, credential)): State<(AppState, Credential)>,
    client: Client,
    Route(route): Route,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let (secret, kind, action) = match credential {
        Credential::Admin => (&st.admin_token, "admin", "admin.auth"),
        Credential::Service | Credential::ApiKey => (&st.service_token, "service", "service.auth"),
    };
    let matched = match req.extensions().get::<gate::Verified>() {
        Some(v) if v.credential == credential => v.matched,
        _ => authorization_str(req.headers(), "Bearer").map_or(Matched::Neither, |t| secret.check(t)),
    };
    let metrics = &st.service.metrics;
    metrics.token_validation_duration.observe(&[kind], started.elapsed());
    if matched != Matched::Neither {
        metrics.token_validations.inc(&[kind, "valid"]);
        if matched == Matched::Previous {
            // Tells the operator when the old token is no longer in use (rollover, step 3).
            metrics.previous_token_uses.inc(&[kind]);
        }
        return next.run(req).await;
    }
    let reason = if req.headers().contains_key(header::AUTHORIZATION) {
        "wrong"
    } else {
        "missing"
    };
    let failure = Failure {
        action,
        actor: "anonymous",
        route: &route,
        reason,
    };
    let e = st
        .service
        .auth_failure(failure, &client.ctx("anonymous"), Error::Unauthenticated(credential));
    let result = if matches!(e, Error::RateLimited { .. }) {
        "rate_limited"
    } else {
        "invalid"
    };
    metrics.token_validations.inc(&[kind, result]);
    e.into_response()
}

// ------------------------------------------------------------------- public

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers within the busy timeout.
async fn ready(State(st): State<AppState>) -> Result<Json<serde_json::Value>> {
    let svc = st.service.clone();
    let limit = st.http.ready_timeout;
    match tokio::time::timeout(limit, blocking(move || svc.ready())).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(match e {
            Error::Unavailable(d) => Error::Unavailable(d),
            _ => Error::Unavailable("the database does not answer".to_owned()),
        }),
        Err(_) => Err(Error::Unavailable("the database does not answer".to_owned())),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let text = st.service.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn jwks(State(st): State<AppState>) -> Result<Response> {
    let svc = st.service.clone();
    let doc = blocking(move || svc.jwks()).await?;
    Ok(([(header::CACHE_CONTROL, "max-age=60")], Json(doc)).into_response())
}

// ----------------------------------------------------------------- internal

async fn lookup(State(st): State<AppState>, JsonBody(req): JsonBody<LookupRequest>) -> Result<Response> {
    // One indexed read: on SQLite quicker done here than handed to the blocking pool
    // (two thread wake-ups per lookup).
    let answer = if st.service.db().reads_inline() {
        st.service.lookup(&req.key_hash)?
    } else {
        let svc = st.service.clone();
        let key_hash = req.key_hash.clone();
        blocking(move || svc.lookup(&key_hash)).await?
    };
    Ok(Json(BoundAnswer {
        key_hash: req.key_hash,
        answer,
    })
    .into_response())
}

/// A lookup answer with the `key_hash` it answers (contract v1.1): the edge
/// refuses an answer that does not name the hash it asked about.
#[derive(serde::Serialize)]
struct BoundAnswer {
    key_hash: String,
    #[serde(flatten)]
    answer: crate::keys::LookupAnswer,
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    since: Option<String>,
}

async fn revocations(
    State(st): State<AppState>,
    q: std::result::Result<Query<SinceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let q = query(q)?;
    let svc = st.service.clone();
    let feed = blocking(move || svc.revocations(q.since.as_deref())).await?;
    Ok(Json(feed).into_response())
}

async fn stats(State(st): State<AppState>) -> Json<crate::service::Stats> {
    Json(st.service.stats())
}

// ---------------------------------------------------------------------- SDK

/// A response carrying a secret (a raw API key, tokens): never to be cached.
fn secret<T: serde::Serialize>(status: StatusCode, v: T) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(v)).into_response()
}

async fn create_session(
    State(st): State<AppState>,
    ApiKey(key): ApiKey,
    JsonBody(req): JsonBody<SessionRequest>,
) -> Result<Response> {
    let svc = st.service.clone();
    let pair = blocking(move || svc.create_session(&key, req)).await?;
    Ok(secret(StatusCode::CREATED, pair))
}

async fn refresh_session(
    State(st): State<AppState>,
    ApiKey(key): ApiKey,
    JsonBody(req): JsonBody<RefreshRequest>,
) -> Result<Response> {
    let svc = st.service.clone();
    let pair = blocking(move || svc.refresh(&key, req)).await?;
    Ok(secret(StatusCode::OK, pair))
}

async fn logout(
    State(st): State<AppState>,
    ApiKey(key): ApiKey,
    headers: HeaderMap,
    OptionalJsonBody(req): OptionalJsonBody<LogoutRequest>,
) -> Result<Response> {
    let svc = st.service.clone();
    let refresh = req.and_then(|r| r.refresh_token);
    let bearer = authorization(&headers, "Bearer");
    blocking(move || match (refresh, bearer) {
        (Some(rt), None) => svc.logout_with_refresh(&key, &rt),
        (None, Some(at)) => svc.logout_with_access_token(&key, &at),
        (None, None) => Err(Error::invalid_request(
            "give the refresh_token in the body or the access token as Authorization: Bearer",
        )),
        (Some(_), Some(_)) => Err(Error::invalid_request(
            "give either a refresh_token or a Bearer access token, not both",
        )),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout_everywhere(
    State(st): State<AppState>,
    ApiKey(key): ApiKey,
    JsonBody(req): JsonBody<SubjectRequest>,
) -> Result<Response> {
    let svc = st.service.clone();
    blocking(move || svc.logout_everywhere(&key, req)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// -------------------------------------------------------------------- admin

/// Runs an admin operation on the blocking pool as `admin`.
async fn as_admin<T: Send + 'static>(
    st: &AppState,
    client: &Client,
    f: impl FnOnce(&Service, &crate::audit::Ctx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let svc = st.service.clone();
    let ctx = client.ctx("admin");
    blocking(move || f(&svc, &ctx)).await
}

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn create_tenant(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<TenantRequest>,
) -> Result<Response> {
    Ok(created(
        as_admin(&st, &client, move |svc, ctx| svc.create_tenant(ctx, req)).await?,
    ))
}

async fn list_tenants(State(st): State<AppState>, client: Client) -> Result<Response> {
    let tenants = as_admin(&st, &client, |svc, _| svc.list_tenants()).await?;
    Ok(Json(json!({ "tenants": tenants })).into_response())
}

async fn get_tenant(State(st): State<AppState>, client: Client, Path(tenant): Path<String>) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, _| svc.get_tenant(&tenant)).await?).into_response())
}

async fn update_tenant(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    JsonBody(req): JsonBody<TenantUpdate>,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.update_tenant(ctx, &tenant, req)).await?).into_response())
}

async fn disable_tenant(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.disable_tenant(ctx, &tenant)).await?).into_response())
}

async fn enable_tenant(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.enable_tenant(ctx, &tenant)).await?).into_response())
}

async fn create_key(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    JsonBody(req): JsonBody<KeyRequest>,
) -> Result<Response> {
    let key = as_admin(&st, &client, move |svc, ctx| svc.create_key(ctx, &tenant, req)).await?;
    Ok(secret(StatusCode::CREATED, key))
}

async fn list_keys(State(st): State<AppState>, client: Client, Path(tenant): Path<String>) -> Result<Response> {
    let keys = as_admin(&st, &client, move |svc, _| svc.list_keys(&tenant)).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn rotate_key(
    State(st): State<AppState>,
    client: Client,
    Path(key_id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<RotateRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let key = as_admin(&st, &client, move |svc, ctx| svc.rotate_key(ctx, &key_id, req)).await?;
    Ok(secret(StatusCode::CREATED, key))
}

async fn revoke_key(
    State(st): State<AppState>,
    client: Client,
    Path(key_id): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.revoke_key(ctx, &key_id)).await?).into_response())
}

async fn revoke_all_keys(State(st): State<AppState>, client: Client, _: NoBody) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, |svc, ctx| svc.revoke_all_keys(ctx, None)).await?).into_response())
}

async fn revoke_tenant_keys(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    _: NoBody,
) -> Result<Response> {
    let out = as_admin(&st, &client, move |svc, ctx| svc.revoke_all_keys(ctx, Some(&tenant))).await?;
    Ok(Json(out).into_response())
}

async fn revoke_session(
    State(st): State<AppState>,
    client: Client,
    Path(sid): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.admin_revoke_session(ctx, &sid)).await?).into_response())
}

async fn revoke_subject(
    State(st): State<AppState>,
    client: Client,
    Path(subject): Path<String>,
    _: NoBody,
) -> Result<Response> {
    let out = as_admin(&st, &client, move |svc, ctx| {
        svc.admin_revoke_subject(ctx, &subject, None)
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn revoke_tenant_subject(
    State(st): State<AppState>,
    client: Client,
    Path((tenant, subject)): Path<(String, String)>,
    _: NoBody,
) -> Result<Response> {
    let out = as_admin(&st, &client, move |svc, ctx| {
        svc.admin_revoke_subject(ctx, &subject, Some(&tenant))
    })
    .await?;
    Ok(Json(out).into_response())
}

async fn revoke_all(State(st): State<AppState>, client: Client, _: NoBody) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, |svc, ctx| svc.revoke_all(ctx)).await?).into_response())
}

async fn rotate_signing_key(State(st): State<AppState>, client: Client, _: NoBody) -> Result<Response> {
    Ok(created(
        as_admin(&st, &client, |svc, ctx| svc.rotate_signing_key(ctx)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    limit: Option<u32>,
    before: Option<String>,
    after: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    tenant: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    actor: Option<String>,
}

async fn audit_events(
    State(st): State<AppState>,
    client: Client,
    q: std::result::Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let p = query(q)?;
    let q = AuditQuery {
        limit: p.limit.unwrap_or(100),
        before: p.before,
        after: p.after,
        filter: AuditFilter {
            since: p.since,
            until: p.until,
            tenant: p.tenant,
            action: p.action,
            outcome: p.outcome,
            actor: p.actor,
        },
    };
    let page = as_admin(&st, &client, move |svc, _| svc.audit_page(&q)).await?;
    Ok(Json(page).into_response())
}

// ------------------------------------------------------------------- router

async fn not_found() -> Error {
    Error::not_found("no such endpoint")
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Which part of the API a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Everything (one listener, the default).
    All,
    /// The edge's API alone: `/internal/v1/*` (lookups, the revocation feed, stats), the
    /// JWKS, `/health` and `/ready`.
    Edge,
    /// Everything but `/internal/v1/*`, which the edge listener serves.
    Public,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    router_for(state, Api::All)
}

/// The routes of `api`, with the API's middleware.
pub fn router_for(state: AppState, api: Api) -> Router {
    let token = |credential| middleware::from_fn_with_state((state.clone(), credential), require_token);
    let internal = Router::new()
        .route("/internal/v1/api-keys/lookup", post(lookup))
        .route("/internal/v1/revocations", get(revocations))
        .route("/internal/v1/stats", get(stats))
        .route_layer(token(Credential::Service));
    // What the edges, and the health checks of their cluster, may ask for.
    let open = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/.well-known/jwks.json", get(jwks));
    if api == Api::Edge {
        return layered(internal.merge(open), state);
    }
    let admin = Router::new()
        .route("/admin/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/v1/tenants/{tenant}", get(get_tenant).patch(update_tenant))
        .route("/admin/v1/tenants/{tenant}/disable", post(disable_tenant))
        .route("/admin/v1/tenants/{tenant}/enable", post(enable_tenant))
        .route("/admin/v1/tenants/{tenant}/keys", post(create_key).get(list_keys))
        .route("/admin/v1/keys/{key_id}/rotate", post(rotate_key))
        .route("/admin/v1/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/revoke-all", post(revoke_all_keys))
        .route("/admin/v1/tenants/{tenant}/keys/revoke-all", post(revoke_tenant_keys))
        .route("/admin/v1/sessions/{sid}/revoke", post(revoke_session))
        .route("/admin/v1/subjects/{subject}/revoke", post(revoke_subject))
        .route(
            "/admin/v1/tenants/{tenant}/subjects/{subject}/revoke",
            post(revoke_tenant_subject),
        )
        .route("/admin/v1/revoke-all", post(revoke_all))
        .route("/admin/v1/signing-keys/rotate", post(rotate_signing_key))
        .route("/admin/v1/audit", get(audit_events))
        .route(
            "/admin/v1/tenants/{tenant}/clients",
            post(oauth::create_client).get(oauth::list_clients),
        )
        .route(
            "/admin/v1/clients/{client_id}",
            get(oauth::get_client)
                .patch(oauth::update_client)
                .delete(oauth::delete_client),
        )
        .route("/admin/v1/clients/{client_id}/rotate", post(oauth::rotate_client))
        .route("/admin/v1/clients/{client_id}/disable", post(oauth::disable_client))
        .route("/admin/v1/clients/{client_id}/enable", post(oauth::enable_client))
        .route_layer(token(Credential::Admin));
    let public = open
        .route("/metrics", get(metrics))
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/refresh", post(refresh_session))
        .route("/v1/sessions/logout", post(logout))
        .route("/v1/subjects/logout-everywhere", post(logout_everywhere))
        .route("/oauth/token", post(oauth::token));
    let routes = admin.merge(public);
    let routes = if api == Api::All {
        routes.merge(internal)
    } else {
        routes
    };
    layered(routes, state)
}

/// The middleware every route has: the route template for the log, the API version,
/// the request id, the log line and the HTTP metrics; a JSON 404 and 405.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn(observe::mark_route))
        .layer(middleware::map_response(version_header))
        .layer(middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// How long `/ready` waits for the database by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);
