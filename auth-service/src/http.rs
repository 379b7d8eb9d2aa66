//! The HTTP API (axum): internal endpoints for the edge, the SDK endpoints, the
//! admin API, the JWKS and health. See `docs/auth-service-api.md`.
//!
//! Every response carries `edge-auth-api-version: 1`; every error is
//! `{"error": code, "error_description": text}`. Request bodies are JSON, at most
//! 64 KiB, with unknown fields refused. SQLite work runs on the blocking pool.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{Ctx, FAILURE};
use crate::error::{ApiError, Result};
use crate::service::{
    EmptyRequest, KeyRequest, LogoutRequest, LookupRequest, RefreshRequest, RotateRequest, Service, SessionRequest,
    SubjectRequest, TenantRequest,
};
use crate::store::ApiKeyRow;

/// The API version stated in every response.
pub const API_VERSION_HEADER: &str = "edge-auth-api-version";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The shortest admin or service token accepted.
pub const MIN_TOKEN_LEN: usize = 32;

/// A bearer secret, kept only as its SHA-256 and compared in constant time.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    pub fn new(token: &str) -> Secret {
        Secret(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time comparison: both sides are hashed first, so neither the
    /// content nor the length of the expected token leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&h))
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": self.code, "error_description": self.description})),
        )
            .into_response()
    }
}

/// Where a request came from: the TCP peer and the edge's `x-forwarded-for`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
}

impl Origin {
    fn ctx(&self, actor: &str) -> Ctx {
        Ctx::new(actor, self.peer.clone(), self.forwarded_for.as_deref())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> std::result::Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned());
        Ok(Origin { peer, forwarded_for })
    }
}

/// Runs a (SQLite-bound) closure on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format_args!("task: {e}")))?
}

/// A request body as read: its bytes, or why it could not be read (413 past the limit).
type Body = Result<Bytes>;

/// Extracts the body, mapping axum's rejections to JSON errors.
pub struct RawBody(Body);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Infallible;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(|rej: BytesRejection| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    413,
                    "request_too_large",
                    format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::invalid_request("the request body could not be read")
            }
        });
        Ok(RawBody(body))
    }
}

/// Parses a JSON body. An empty body gives `None` (the caller decides if that is allowed).
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<Option<T>> {
    let body = body?;
    if body.is_empty() {
        return Ok(None);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "the request body must be application/json",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid_request("the JSON body must be an object"));
    }
    T::deserialize(value)
        .map(Some)
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}

fn required_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T> {
    parse_body(headers, body)?.ok_or_else(|| ApiError::invalid_request("a JSON body is required"))
}

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid_request(format!("invalid query: {}", e.body_text())))
}

/// The credential after `Authorization: <scheme> `, scheme case-insensitive.
fn authorization(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (s, cred) = v.split_once(' ')?;
    (s.eq_ignore_ascii_case(scheme) && !cred.trim().is_empty()).then(|| cred.trim().to_owned())
}

/// The API key from `x-api-key` or `Authorization: ApiKey`.
fn api_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .or_else(|| authorization(headers, "ApiKey"))
}

// ---------------------------------------------------------------- middleware

async fn version_header(mut res: Response) -> Response {
    res.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("1"));
    res
}

async fn require_service_token(State(st): State<AppState>, origin: Origin, req: Request, next: Next) -> Response {
    let ok = authorization(req.headers(), "Bearer").is_some_and(|t| st.service_token.matches(&t));
    if ok {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let svc = st.service.clone();
    let ctx = origin.ctx("anonymous");
    let _ = blocking(move || {
        svc.audit(&ctx, "service.auth", Some(&path), FAILURE, None);
        Ok(())
    })
    .await;
    ApiError::new(
        401,
        "invalid_service_token",
        "a valid service token is required (Authorization: Bearer)",
    )
    .into_response()
}

async fn require_admin_token(State(st): State<AppState>, origin: Origin, req: Request, next: Next) -> Response {
    let ok = authorization(req.headers(), "Bearer").is_some_and(|t| st.admin_token.matches(&t));
    if ok {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let svc = st.service.clone();
    let ctx = origin.ctx("anonymous");
    let _ = blocking(move || {
        svc.audit(&ctx, "admin.auth", Some(&path), FAILURE, None);
        Ok(())
    })
    .await;
    ApiError::new(
        401,
        "invalid_admin_token",
        "a valid admin token is required (Authorization: Bearer)",
    )
    .into_response()
}

// ------------------------------------------------------------------- public

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn jwks(State(st): State<AppState>) -> Result<Response> {
    let svc = st.service.clone();
    let doc = blocking(move || svc.jwks()).await?;
    Ok(([(header::CACHE_CONTROL, "max-age=60")], Json(doc)).into_response())
}

// ----------------------------------------------------------------- internal

async fn lookup(State(st): State<AppState>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Response> {
    let req: LookupRequest = required_body(&headers, body)?;
    let svc = st.service.clone();
    let key_hash = req.key_hash.clone();
    let answer = blocking(move || svc.lookup(&req.key_hash)).await?;
    Ok(Json(BoundAnswer { key_hash, answer }).into_response())
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
    q: std::result::Result<Query<SinceQuery>, QueryRejection>,
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

/// Authenticates the API key (first: an unauthenticated caller learns nothing about
/// its input), parses the body, then runs `f` as that key, on the blocking pool.
async fn as_api_key<B: DeserializeOwned + Send + 'static, T: Send + 'static>(
    st: &AppState,
    origin: &Origin,
    headers: HeaderMap,
    body: Body,
    body_required: bool,
    f: impl FnOnce(&Service, &ApiKeyRow, &Ctx, Option<B>, &HeaderMap) -> Result<T> + Send + 'static,
) -> Result<T> {
    let svc = st.service.clone();
    let ctx = origin.ctx("anonymous");
    blocking(move || {
        let raw = api_key(&headers);
        let (key, ctx) = svc.authenticate_api_key(&ctx, raw.as_deref())?;
        let req: Option<B> = parse_body(&headers, body)?;
        if body_required && req.is_none() {
            return Err(ApiError::invalid_request("a JSON body is required"));
        }
        f(&svc, &key, &ctx, req, &headers)
    })
    .await
}

fn body_or_error<B>(b: Option<B>) -> Result<B> {
    b.ok_or_else(|| ApiError::invalid_request("a JSON body is required"))
}

async fn create_session(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let pair = as_api_key(
        &st,
        &origin,
        headers,
        body,
        true,
        |svc, key, ctx, req: Option<SessionRequest>, _| svc.create_session(ctx, key, body_or_error(req)?),
    )
    .await?;
    Ok(secret(StatusCode::CREATED, pair))
}

async fn refresh_session(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let pair = as_api_key(
        &st,
        &origin,
        headers,
        body,
        true,
        |svc, key, ctx, req: Option<RefreshRequest>, _| svc.refresh(ctx, key, body_or_error(req)?),
    )
    .await?;
    Ok(secret(StatusCode::OK, pair))
}

async fn logout(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    as_api_key(
        &st,
        &origin,
        headers,
        body,
        false,
        |svc, key, ctx, req: Option<LogoutRequest>, headers| match (
            req.and_then(|r| r.refresh_token),
            authorization(headers, "Bearer"),
        ) {
            (Some(rt), None) => svc.logout_with_refresh(ctx, key, &rt),
            (None, Some(at)) => svc.logout_with_access_token(ctx, key, &at),
            (None, None) => Err(ApiError::invalid_request(
                "give the refresh_token in the body or the access token as Authorization: Bearer",
            )),
            (Some(_), Some(_)) => Err(ApiError::invalid_request(
                "give either a refresh_token or a Bearer access token, not both",
            )),
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logout_everywhere(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    as_api_key(
        &st,
        &origin,
        headers,
        body,
        true,
        |svc, key, ctx, req: Option<SubjectRequest>, _| svc.logout_everywhere(ctx, key, body_or_error(req)?),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// -------------------------------------------------------------------- admin

/// Runs an admin operation on the blocking pool as `admin`.
async fn as_admin<T: Send + 'static>(
    st: &AppState,
    origin: &Origin,
    f: impl FnOnce(&Service, &Ctx) -> Result<T> + Send + 'static,
) -> Result<T> {
    let svc = st.service.clone();
    let ctx = origin.ctx("admin");
    blocking(move || f(&svc, &ctx)).await
}

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

/// A response carrying a secret (a raw API key, tokens): never to be cached.
fn secret<T: serde::Serialize>(status: StatusCode, v: T) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(v)).into_response()
}

async fn create_tenant(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let req: TenantRequest = required_body(&headers, body)?;
    Ok(created(
        as_admin(&st, &origin, move |svc, ctx| svc.create_tenant(ctx, req)).await?,
    ))
}

async fn list_tenants(State(st): State<AppState>, origin: Origin) -> Result<Response> {
    let tenants = as_admin(&st, &origin, |svc, _| svc.list_tenants()).await?;
    Ok(Json(json!({ "tenants": tenants })).into_response())
}

async fn create_key(
    State(st): State<AppState>,
    origin: Origin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let req: KeyRequest = required_body(&headers, body)?;
    let key = as_admin(&st, &origin, move |svc, ctx| svc.create_key(ctx, &tenant, req)).await?;
    Ok(secret(StatusCode::CREATED, key))
}

async fn list_keys(State(st): State<AppState>, origin: Origin, Path(tenant): Path<String>) -> Result<Response> {
    let keys = as_admin(&st, &origin, move |svc, _| svc.list_keys(&tenant)).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn rotate_key(
    State(st): State<AppState>,
    origin: Origin,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let req: RotateRequest = parse_body(&headers, body)?.unwrap_or_default();
    let key = as_admin(&st, &origin, move |svc, ctx| svc.rotate_key(ctx, &key_id, req)).await?;
    Ok(secret(StatusCode::CREATED, key))
}

/// Admin actions without parameters accept no body, or `{}`.
fn no_body(headers: &HeaderMap, body: Body) -> Result<()> {
    parse_body::<EmptyRequest>(headers, body).map(|_| ())
}

async fn revoke_key(
    State(st): State<AppState>,
    origin: Origin,
    Path(key_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    no_body(&headers, body)?;
    Ok(Json(as_admin(&st, &origin, move |svc, ctx| svc.revoke_key(ctx, &key_id)).await?).into_response())
}

async fn revoke_session(
    State(st): State<AppState>,
    origin: Origin,
    Path(sid): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    no_body(&headers, body)?;
    Ok(Json(as_admin(&st, &origin, move |svc, ctx| svc.admin_revoke_session(ctx, &sid)).await?).into_response())
}

async fn revoke_subject(
    State(st): State<AppState>,
    origin: Origin,
    Path(subject): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    no_body(&headers, body)?;
    Ok(Json(as_admin(&st, &origin, move |svc, ctx| svc.admin_revoke_subject(ctx, &subject)).await?).into_response())
}

async fn revoke_all(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    no_body(&headers, body)?;
    Ok(Json(as_admin(&st, &origin, |svc, ctx| svc.revoke_all(ctx)).await?).into_response())
}

async fn rotate_signing_key(
    State(st): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    no_body(&headers, body)?;
    Ok(created(
        as_admin(&st, &origin, |svc, ctx| svc.rotate_signing_key(ctx)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit_events(
    State(st): State<AppState>,
    origin: Origin,
    q: std::result::Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response> {
    let limit = query(q)?.limit.unwrap_or(100).clamp(1, 1000);
    let events = as_admin(&st, &origin, move |svc, _| svc.audit_events(limit)).await?;
    Ok(Json(json!({ "events": events })).into_response())
}

// ------------------------------------------------------------------- router

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "method_not_allowed", "method not allowed for this endpoint")
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let internal = Router::new()
        .route("/internal/v1/api-keys/lookup", post(lookup))
        .route("/internal/v1/revocations", get(revocations))
        .route("/internal/v1/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_service_token));
    let admin = Router::new()
        .route("/admin/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/v1/tenants/{tenant}/keys", post(create_key).get(list_keys))
        .route("/admin/v1/keys/{key_id}/rotate", post(rotate_key))
        .route("/admin/v1/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/v1/sessions/{sid}/revoke", post(revoke_session))
        .route("/admin/v1/subjects/{subject}/revoke", post(revoke_subject))
        .route("/admin/v1/revoke-all", post(revoke_all))
        .route("/admin/v1/signing-keys/rotate", post(rotate_signing_key))
        .route("/admin/v1/audit", get(audit_events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin_token));
    let public = Router::new()
        .route("/health", get(health))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/refresh", post(refresh_session))
        .route("/v1/sessions/logout", post(logout))
        .route("/v1/subjects/logout-everywhere", post(logout_everywhere));
    Router::new()
        .merge(internal)
        .merge(admin)
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(version_header))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, with peer addresses for the audit trail.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
