//! Extractors: where a request came from ([`Client`]), its route template
//! ([`Route`]), a JSON body ([`JsonBody`], [`OptionalJsonBody`]), no body
//! ([`NoBody`]), and an authenticated API key ([`ApiKey`]).
//!
//! A body is read with a size limit and a time limit, must be
//! `application/json` when it is not empty, and is parsed strictly (a JSON object,
//! unknown fields refused). An empty body counts as no body.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{authorization, blocking, AppState};
use crate::audit::Ctx;
use crate::edge_context;
use crate::error::{Error, Result};
use crate::service::AuthedKey;

/// The TCP peer and the edge's `x-forwarded-for` (recorded, never trusted).
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
}

impl Client {
    pub fn ctx(&self, actor: &str) -> Ctx {
        Ctx::new(actor, self.peer.clone(), self.forwarded_for.as_deref())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> std::result::Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical().to_string());
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned());
        Ok(Client { peer, forwarded_for })
    }
}

/// The route template the request matched (`/admin/v1/keys/{key_id}/revoke`),
/// never the raw path: what failed authentications are counted by.
#[derive(Debug, Clone)]
pub struct Route(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Route {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> std::result::Result<Self, Self::Rejection> {
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("unmatched", |m| m.as_str());
        Ok(Route(route.to_owned()))
    }
}

/// The request body, read within the body timeout and the size limit.
async fn read_body(req: Request, st: &AppState) -> Result<(HeaderMap, Bytes)> {
    read_body_within(req, st, st.http.max_body_bytes).await
}

/// [`read_body`] with a size limit of its own.
pub(super) async fn read_body_within(req: Request, st: &AppState, limit: usize) -> Result<(HeaderMap, Bytes)> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::TooLarge(limit));
    }
    let collected = tokio::time::timeout(st.http.body_timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            st.service.metrics.connection_timeouts.inc(&["body"]);
            Error::RequestTimeout
        })?;
    match collected {
        Ok(c) => Ok((parts.headers, c.to_bytes())),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Error::TooLarge(limit)),
        Err(_) => Err(Error::invalid_request("the request body could not be read")),
    }
}

/// Parses a JSON body. An empty body gives `None` (the caller decides if that is allowed).
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<Option<T>> {
    if body.is_empty() {
        return Ok(None);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    // Parsed once, straight into `T` (whose fields are checked strictly); a struct would
    // also accept a JSON array, hence the look at the first character.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::invalid_request("the JSON body must be an object"));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| Error::invalid_request(format!("invalid JSON body: {e}")))
}

/// A required JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, st: &AppState) -> Result<Self> {
        let OptionalJsonBody(body) = OptionalJsonBody::from_request(req, st).await?;
        body.map(JsonBody)
            .ok_or_else(|| Error::invalid_request("a JSON body is required"))
    }
}

/// An optional JSON body: `None` when the body is empty.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, st: &AppState) -> Result<Self> {
        let (headers, body) = read_body(req, st).await?;
        parse_body(&headers, &body).map(OptionalJsonBody)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// No body: an empty one, or `{}`.
pub struct NoBody;

impl FromRequest<AppState> for NoBody {
    type Rejection = Error;

    async fn from_request(req: Request, st: &AppState) -> Result<Self> {
        let OptionalJsonBody::<Empty>(_) = OptionalJsonBody::from_request(req, st).await?;
        Ok(NoBody)
    }
}

/// The API key from `x-api-key` or `Authorization: ApiKey`.
fn presented_api_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .or_else(|| authorization(headers, "ApiKey"))
}

/// A valid API key (checked first: an unauthenticated caller learns nothing about
/// its body), presented by the caller or attested by the edge's signed context, used
/// from an address it may be used from; and the context acting as it.
pub struct ApiKey(pub AuthedKey);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self> {
        let Ok(client) = Client::from_request_parts(parts, st).await;
        let Ok(Route(route)) = Route::from_request_parts(parts, st).await;
        let raw = presented_api_key(&parts.headers);
        let svc = st.service.clone();
        let ctx = client.ctx("anonymous");
        let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
        let edge = edge_context::read(
            st.edge_context.as_deref(),
            |name| parts.headers.get_all(name).iter().map(|v| v.to_str().ok()).collect(),
            parts.method.as_str(),
            path,
            svc.now(),
        );
        blocking(move || svc.authenticate_api_key(&ctx, &route, raw.as_deref(), &edge))
            .await
            .map(ApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Lookup {
        key_hash: String,
    }

    fn parse(body: &str) -> Result<Option<Lookup>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parse_body(&headers, &Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn bodies_are_json_objects_parsed_strictly() {
        let ok = Lookup { key_hash: "a".into() };
        assert_eq!(
            parse(r#"{"key_hash":"a"}"#).unwrap(),
            Some(Lookup { key_hash: "a".into() })
        );
        assert_eq!(parse(" \r\n\t{\"key_hash\":\"a\"} \n").unwrap(), Some(ok));
        assert_eq!(parse("").unwrap(), None);
        for bad in [
            r#"["a"]"#,
            r#""a""#,
            "null",
            "1",
            r#"{"key_hash":"a","key_hash":"b"}"#,
            r#"{"key_hash":"a","other":1}"#,
            r#"{"key_hash":"a"} {}"#,
            r#"{"key_hash":"a""#,
            r#"{"key_hash":1}"#,
            "{}",
            "\u{feff}{\"key_hash\":\"a\"}",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{bad}: {e:?}");
        }
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(matches!(
            parse_body::<Lookup>(&text, &Bytes::from_static(b"{}")),
            Err(Error::UnsupportedMediaType)
        ));
    }
}
