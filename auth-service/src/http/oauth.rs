//! `POST /oauth/token` (the client-credentials grant, RFC 6749 4.4) and the admin
//! API of machine clients.
//!
//! The token request is read strictly: a body of at most [`MAX_TOKEN_BODY`] bytes,
//! `application/x-www-form-urlencoded` (RFC 6749's) or `application/json` (as Auth0
//! accepts it); every parameter at most once; an empty value counts as omitted
//! (RFC 6749 3.1); unknown parameters are ignored (3.1). The client authenticates
//! with HTTP Basic (its id and secret form-urlencoded, then base64, RFC 6749 2.3.1)
//! or with `client_id` and `client_secret` in the body, never both.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::extract::read_body_within;
use super::{as_admin, blocking, secret, AppState, Client, JsonBody, NoBody, OptionalJsonBody};
use crate::error::{Error, Result};
use crate::service::{ClientCredentials, ClientRequest, ClientUpdate, RotateRequest};

/// The largest token request body.
pub const MAX_TOKEN_BODY: usize = 4096;

/// The parameters of a token request (each at most once).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
struct Params {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
}

impl Params {
    /// Empty values count as omitted (RFC 6749 3.1).
    fn without_empty(self) -> Params {
        let f = |v: Option<String>| v.filter(|s| !s.is_empty());
        Params {
            grant_type: f(self.grant_type),
            client_id: f(self.client_id),
            client_secret: f(self.client_secret),
            scope: f(self.scope),
            audience: f(self.audience),
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` name or value: `+` is a space,
/// `%XX` a byte; a `%` not followed by two hex digits, or bytes that are not UTF-8,
/// are refused (rather than read one way here and another elsewhere).
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn duplicate(name: &str) -> Error {
    Error::invalid_request(format!("parameter {name} is given more than once"))
}

/// Parses a form body.
fn parse_form(body: &[u8]) -> Result<Params> {
    let body = std::str::from_utf8(body).map_err(|_| Error::invalid_request("the form body is not UTF-8"))?;
    let mut p = Params::default();
    let mut seen: Vec<String> = Vec::new();
    for pair in body.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || Error::invalid_request("the form body is not valid application/x-www-form-urlencoded");
        let name = form_decode(name).ok_or_else(bad)?;
        let value = form_decode(value).ok_or_else(bad)?;
        // Every parameter at most once, known or not (RFC 6749 3.1): two copies could
        // be read differently by two parsers.
        if seen.contains(&name) {
            return Err(duplicate(&name));
        }
        if seen.len() >= 32 {
            return Err(Error::invalid_request("too many parameters"));
        }
        seen.push(name.clone());
        let slot = match name.as_str() {
            "grant_type" => &mut p.grant_type,
            "client_id" => &mut p.client_id,
            "client_secret" => &mut p.client_secret,
            "scope" => &mut p.scope,
            "audience" => &mut p.audience,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(p)
}

/// Parses a JSON body: an object whose known members are strings (a member given twice
/// is refused by the parser; unknown members are ignored).
fn parse_json(body: &[u8]) -> Result<Params> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::invalid_request("the JSON body must be an object"));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.to_string().starts_with("duplicate field") {
            Error::invalid_request("a parameter is given more than once")
        } else {
            Error::invalid_request("invalid JSON body: parameters must be strings")
        }
    })
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<Params> {
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(Error::invalid_request("Content-Type is given more than once"));
    }
    let params = match media_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => parse_form(body)?,
        Some("application/json") => parse_json(body)?,
        _ => {
            return Err(Error::invalid_request(
                "the body must be application/x-www-form-urlencoded or application/json",
            ))
        }
    };
    Ok(params.without_empty())
}

/// What the `Authorization` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Basic {
    Absent,
    Credentials(String, String),
    /// Present but not readable Basic credentials.
    Malformed,
}

/// Reads `Authorization: Basic base64(form-urlencoded id ":" form-urlencoded secret)`.
fn basic(headers: &HeaderMap) -> Result<Basic> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(v) = all.next() else {
        return Ok(Basic::Absent);
    };
    if all.next().is_some() {
        return Err(Error::invalid_request("Authorization is given more than once"));
    }
    let Some((scheme, cred)) = v.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return Ok(Basic::Malformed);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(Basic::Malformed);
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cred.trim()) else {
        return Ok(Basic::Malformed);
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return Ok(Basic::Malformed);
    };
    let Some((id, secret)) = raw.split_once(':') else {
        return Ok(Basic::Malformed);
    };
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Basic::Credentials(id, secret)),
        _ => Ok(Basic::Malformed),
    }
}

/// The request's credentials and grant, or why it is refused. `Err(None)`: the client
/// did not authenticate properly (`invalid_client`, counted as a failure).
fn credentials(headers: &HeaderMap, body: &[u8]) -> std::result::Result<ClientCredentials, Option<Error>> {
    let p = parse_params(headers, body).map_err(Some)?;
    let basic = basic(headers).map_err(Some)?;
    match p.grant_type.as_deref() {
        None => return Err(Some(Error::invalid_request("grant_type is required"))),
        Some("client_credentials") => {}
        Some(_) => return Err(Some(Error::UnsupportedGrantType)),
    }
    let (client_id, client_secret) = match basic {
        Basic::Credentials(id, secret) => {
            // One authentication method per request (RFC 6749 2.3).
            if p.client_secret.is_some() {
                return Err(Some(Error::invalid_request(
                    "use HTTP Basic or client_secret in the body, not both",
                )));
            }
            if p.client_id.as_ref().is_some_and(|b| *b != id) {
                return Err(Some(Error::invalid_request(
                    "client_id in the body differs from the Basic credentials",
                )));
            }
            (id, secret)
        }
        Basic::Malformed => return Err(None),
        Basic::Absent => match (p.client_id, p.client_secret) {
            (Some(id), Some(secret)) => (id, secret),
            _ => return Err(None),
        },
    };
    Ok(ClientCredentials {
        client_id,
        client_secret,
        scope: p.scope,
        audience: p.audience,
    })
}

/// `POST /oauth/token`.
pub(super) async fn token(State(st): State<AppState>, client: Client, req: Request) -> Result<Response> {
    let limit = MAX_TOKEN_BODY.min(st.http.max_body_bytes);
    let (headers, body) = read_body_within(req, &st, limit).await?;
    let svc = st.service.clone();
    let ctx = client.ctx("anonymous");
    let answer = match credentials(&headers, &body) {
        Ok(creds) => blocking(move || svc.client_credentials(&ctx, creds)).await,
        Err(Some(e)) => Err(e),
        Err(None) => Err(svc.refuse_client_auth(&ctx, "malformed")),
    }?;
    let mut res = secret(StatusCode::OK, answer);
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

// --------------------------------------------------------------------- admin

pub(super) async fn create_client(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
    super::JsonBody(req): super::JsonBody<ClientRequest>,
) -> Result<Response> {
    let created = as_admin(&st, &client, move |svc, ctx| svc.create_client(ctx, &tenant, req)).await?;
    Ok(secret(StatusCode::CREATED, created))
}

pub(super) async fn list_clients(
    State(st): State<AppState>,
    client: Client,
    Path(tenant): Path<String>,
) -> Result<Response> {
    let clients = as_admin(&st, &client, move |svc, _| svc.list_clients(&tenant)).await?;
    Ok(Json(json!({ "clients": clients })).into_response())
}

pub(super) async fn get_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, _| svc.get_client(&client_id)).await?).into_response())
}

pub(super) async fn rotate_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
    OptionalJsonBody(req): OptionalJsonBody<RotateRequest>,
) -> Result<Response> {
    let req = req.unwrap_or_default();
    let rotated = as_admin(&st, &client, move |svc, ctx| {
        svc.rotate_client_secret(ctx, &client_id, req)
    })
    .await?;
    Ok(secret(StatusCode::CREATED, rotated))
}

pub(super) async fn disable_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.disable_client(ctx, &client_id)).await?).into_response())
}

pub(super) async fn update_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
    JsonBody(req): JsonBody<ClientUpdate>,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.update_client(ctx, &client_id, req)).await?).into_response())
}

pub(super) async fn enable_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.enable_client(ctx, &client_id)).await?).into_response())
}

pub(super) async fn delete_client(
    State(st): State<AppState>,
    client: Client,
    Path(client_id): Path<String>,
    _: NoBody,
) -> Result<Response> {
    Ok(Json(as_admin(&st, &client, move |svc, ctx| svc.delete_client(ctx, &client_id)).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str, authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        if let Some(a) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_values_are_decoded_strictly() {
        assert_eq!(form_decode("a+b%2Bc%3a").as_deref(), Some("a b+c:"));
        assert_eq!(form_decode("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%", "%4", "%zz", "%C3", "%FF", "a%+1"] {
            assert_eq!(form_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn form_and_json_bodies_give_the_same_parameters() {
        let form = parse_params(
            &headers(FORM, None),
            b"grant_type=client_credentials&client_id=mc_1&client_secret=cs%2Bx&scope=a+b&other=1",
        )
        .unwrap();
        let json = parse_params(
            &headers("application/json; charset=utf-8", None),
            br#"{"grant_type":"client_credentials","client_id":"mc_1","client_secret":"cs+x","scope":"a b","other":[1]}"#,
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(form.client_secret.as_deref(), Some("cs+x"));
        assert_eq!(form.scope.as_deref(), Some("a b"));
        // Empty values count as omitted.
        let p = parse_params(&headers(FORM, None), b"grant_type=client_credentials&scope=&audience").unwrap();
        assert_eq!(p.scope, None);
        assert_eq!(p.audience, None);
    }

    #[test]
    fn duplicates_wrong_types_and_media_types_are_refused() {
        for body in [
            "grant_type=client_credentials&grant_type=client_credentials",
            "client_id=a&client_id=a",
            "x=1&x=2",
            "scope=a&sc%6Fpe=b",
            "client_secret=%zz",
        ] {
            let e = parse_params(&headers(FORM, None), body.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{body}");
        }
        for body in [
            r#"{"client_id":"a","client_id":"b"}"#,
            r#"{"scope":["a"]}"#,
            r#"{"client_secret":1}"#,
            r#"["grant_type"]"#,
            "null",
            r#"{"grant_type":"client_credentials""#,
        ] {
            let e = parse_params(&headers("application/json", None), body.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{body}");
        }
        for ct in ["text/plain", "multipart/form-data", "application/jsonx", ""] {
            let e = parse_params(&headers(ct, None), b"grant_type=client_credentials").unwrap_err();
            assert!(matches!(e, Error::InvalidRequest(_)), "{ct}");
        }
        let mut two = headers(FORM, None);
        two.append(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(parse_params(&two, b"grant_type=client_credentials").is_err());
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_then_base64() {
        // RFC 6749 2.3.1: a ':' or '%' in the secret is percent-encoded before base64.
        let h = headers(FORM, Some(&format!("Basic {}", b64("mc_1:a%3Ab%25c+d"))));
        assert_eq!(basic(&h).unwrap(), Basic::Credentials("mc_1".into(), "a:b%c d".into()));
        let h = headers(FORM, Some(&format!("basic   {}", b64("mc_1:s"))));
        assert_eq!(basic(&h).unwrap(), Basic::Credentials("mc_1".into(), "s".into()));
        for bad in [
            "Basic".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", b64("no-colon")),
            format!("Basic {}", b64(":secret")),
            format!("Basic {}", b64("id:")),
            format!("Basic {}", b64("id:%zz")),
            format!("Bearer {}", b64("id:s")),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b's'])
            ),
        ] {
            assert_eq!(basic(&headers(FORM, Some(&bad))).unwrap(), Basic::Malformed, "{bad}");
        }
        let mut two = headers(FORM, Some(&format!("Basic {}", b64("a:b"))));
        two.append(header::AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        assert!(matches!(basic(&two), Err(Error::InvalidRequest(_))));
    }

    #[test]
    fn one_authentication_method_per_request() {
        let auth = format!("Basic {}", b64("mc_1:s"));
        let ok = credentials(
            &headers(FORM, Some(&auth)),
            b"grant_type=client_credentials&client_id=mc_1",
        )
        .unwrap();
        assert_eq!((ok.client_id.as_str(), ok.client_secret.as_str()), ("mc_1", "s"));
        let both = credentials(
            &headers(FORM, Some(&auth)),
            b"grant_type=client_credentials&client_secret=s",
        );
        assert!(matches!(both, Err(Some(Error::InvalidRequest(_)))));
        let other = credentials(
            &headers(FORM, Some(&auth)),
            b"grant_type=client_credentials&client_id=mc_2",
        );
        assert!(matches!(other, Err(Some(Error::InvalidRequest(_)))));
        let missing = credentials(&headers(FORM, None), b"grant_type=client_credentials&client_id=mc_1");
        assert!(matches!(missing, Err(None)));
        let grant = credentials(&headers(FORM, Some(&auth)), b"grant_type=password");
        assert!(matches!(grant, Err(Some(Error::UnsupportedGrantType))));
        let no_grant = credentials(&headers(FORM, Some(&auth)), b"client_id=mc_1");
        assert!(matches!(no_grant, Err(Some(Error::InvalidRequest(_)))));
    }
}
