//! A programmable OAuth 2.0 token issuer (client-credentials grant) and an
//! upstream that stamps what it receives, for the egress tests (issue 16 part 3).
//!
//! [`FakeIssuer`] answers `POST <any path>` with
//! `{"access_token","token_type":"Bearer","expires_in"}` and a fresh opaque token
//! (RFC 6750 b64token charset) while its [`IssuerMode`] is [`IssuerMode::Issue`].
//! The mode can be switched at run time to `503`, `429` with `Retry-After`,
//! `401 invalid_client`, or an answer delayed past the caller's timeout. It records
//! every token request ([`TokenRequest`]: when, headers, decoded form, decoded Basic
//! credentials, what it answered) and every token it issued ([`IssuedToken`]) with
//! its expiry, so a test can check that no upstream request carried a token past
//! its expiry ([`FakeIssuer::expired_uses`]).
//!
//! [`StampedUpstream`] answers 200 to everything and records, per request, the
//! instant it arrived and its `Authorization` values.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ct_codecs::{Base64, Decoder};
use serde_json::json;

use crate::servers::{Reply, ServedRequest, TestServer};

/// What the issuer answers to the next token requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerMode {
    /// 200 with a fresh token living the configured lifetime.
    Issue,
    /// `503` with a JSON error body.
    Unavailable,
    /// `429` with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_s: u64 },
    /// `401` with `{"error":"invalid_client"}` and `WWW-Authenticate: Basic`.
    InvalidClient,
    /// A token, but only after `delay` (past the caller's timeout).
    Slow { delay: Duration },
    /// `status` with this body verbatim (`content-type: application/json`): the
    /// malformed and hostile answers. Nothing is recorded as issued.
    Answer { status: u16, body: String },
}

/// A token request as the issuer received it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The form body, percent-decoded, in order.
    pub form: Vec<(String, String)>,
    /// `(client_id, client_secret)` from `Authorization: Basic`, form-urlencoding undone.
    pub basic: Option<(String, String)>,
    /// The status it was answered with.
    pub status: u16,
    /// How long the answer was held back ([`IssuerMode::Slow`]; zero otherwise).
    pub delay: Duration,
}

impl TokenRequest {
    /// The client id, from HTTP Basic or else the form's `client_id`.
    pub fn client_id(&self) -> Option<&str> {
        match &self.basic {
            Some((id, _)) => Some(id.as_str()),
            None => self.param("client_id"),
        }
    }

    /// The first value of form parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

/// A token the issuer handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// The client it was issued to (see [`TokenRequest::client_id`]).
    pub client_id: String,
    pub issued_at: Instant,
    pub expires_in: Duration,
}

impl IssuedToken {
    /// The instant the token stops being valid.
    pub fn expires_at(&self) -> Instant {
        self.issued_at + self.expires_in
    }
}

#[derive(Debug)]
struct State {
    mode: IssuerMode,
    client_modes: std::collections::HashMap<String, IssuerMode>,
    lifetime: Duration,
    prefix: String,
    requests: Vec<TokenRequest>,
    issued: Vec<IssuedToken>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake issuer; stops on drop.
pub struct FakeIssuer {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeIssuer").field("addr", &self.server.addr()).finish()
    }
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
pub fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(id, secret)` from `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
fn basic_credentials(req: &ServedRequest) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Base64::decode_to_vec(b64.trim(), None).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((percent_decode(id), percent_decode(secret)))
}

impl FakeIssuer {
    /// Starts on 127.0.0.1:0 issuing tokens that live `lifetime` (whole seconds).
    /// `prefix` starts every token (b64token characters only), so that tokens of
    /// two issuers in one test never collide.
    pub fn start(prefix: &str, lifetime: Duration) -> FakeIssuer {
        let state = Arc::new(Mutex::new(State {
            mode: IssuerMode::Issue,
            client_modes: std::collections::HashMap::new(),
            lifetime,
            prefix: prefix.to_string(),
            requests: Vec::new(),
            issued: Vec::new(),
        }));
        let handler_state = Arc::clone(&state);
        let server = TestServer::start(move |req| answer(&handler_state, req));
        FakeIssuer { server, state }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Switches what the next requests get (clients without a mode of their own).
    pub fn set_mode(&self, mode: IssuerMode) {
        lock(&self.state).mode = mode;
    }

    /// Switches what the next requests of `client_id` get, whatever [`FakeIssuer::set_mode`] says.
    pub fn set_client_mode(&self, client_id: &str, mode: IssuerMode) {
        lock(&self.state).client_modes.insert(client_id.to_string(), mode);
    }

    /// The token requests of `client_id` so far, in order.
    pub fn requests_of(&self, client_id: &str) -> Vec<TokenRequest> {
        let s = lock(&self.state);
        s.requests
            .iter()
            .filter(|r| r.client_id() == Some(client_id))
            .cloned()
            .collect()
    }

    /// The tokens issued to `client_id` so far, in order.
    pub fn issued_to(&self, client_id: &str) -> Vec<IssuedToken> {
        let s = lock(&self.state);
        s.issued.iter().filter(|t| t.client_id == client_id).cloned().collect()
    }

    /// The lifetime of the tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.state).lifetime = lifetime;
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many token requests arrived at or after `since`.
    pub fn requests_since(&self, since: Instant) -> usize {
        lock(&self.state).requests.iter().filter(|r| r.at >= since).count()
    }

    /// Every token issued so far, in order.
    pub fn issued(&self) -> Vec<IssuedToken> {
        lock(&self.state).issued.clone()
    }

    /// The token issued last.
    pub fn last_issued(&self) -> Option<IssuedToken> {
        lock(&self.state).issued.last().cloned()
    }

    /// Waits until at least `n` token requests arrived.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || lock(&self.state).requests.len() >= n)
    }

    /// Waits until at least `n` tokens were issued.
    pub fn wait_for_issued(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || lock(&self.state).issued.len() >= n)
    }

    /// The uses among `seen` (instant, `Authorization` value) of a token this issuer
    /// issued, made at or after that token's expiry. Values that are not
    /// `Bearer <one of ours>` are ignored.
    pub fn expired_uses(&self, seen: &[(Instant, String)]) -> Vec<(Instant, IssuedToken)> {
        let issued = self.issued();
        seen.iter()
            .filter_map(|(at, value)| {
                let token = value.strip_prefix("Bearer ")?;
                let t = issued.iter().find(|t| t.token == token)?;
                (*at >= t.expires_at()).then(|| (*at, t.clone()))
            })
            .collect()
    }
}

fn answer(state: &Mutex<State>, req: &ServedRequest) -> Reply {
    let now = Instant::now();
    let mut record = TokenRequest {
        at: now,
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        form: form_decode(&req.body),
        basic: basic_credentials(req),
        status: 0,
        delay: Duration::ZERO,
    };
    let client = record.client_id().unwrap_or_default().to_string();
    let mut s = lock(state);
    let mode = s.client_modes.get(&client).unwrap_or(&s.mode).clone();
    let (reply, status) = match mode {
        IssuerMode::Issue => (issue(&mut s, &client, now, Duration::ZERO), 200),
        IssuerMode::Slow { delay } => (issue(&mut s, &client, now + delay, delay), 200),
        IssuerMode::Answer { status, body } => (
            Reply::new(status).header("content-type", "application/json").body(body),
            status,
        ),
        IssuerMode::Unavailable => (Reply::json(503, &json!({"error": "temporarily_unavailable"})), 503),
        IssuerMode::TooManyRequests { retry_after_s } => (
            Reply::json(429, &json!({"error": "slow_down"})).header("retry-after", &retry_after_s.to_string()),
            429,
        ),
        IssuerMode::InvalidClient => (
            Reply::json(
                401,
                &json!({"error": "invalid_client", "error_description": "client authentication failed"}),
            )
            .header("www-authenticate", "Basic realm=\"token\""),
            401,
        ),
    };
    record.status = status;
    record.delay = reply.delay;
    s.requests.push(record);
    reply
}

/// A fresh token, recorded as issued at `issued_at` (after a delay: when it is sent).
fn issue(s: &mut State, client_id: &str, issued_at: Instant, delay: Duration) -> Reply {
    let n = s.issued.len() + 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // b64token: A-Z a-z 0-9 - . _ ~ + / then '='.
    let token = format!("{}.{n:04}-{nanos:09}~x/y+z=", s.prefix);
    let expires_in = Duration::from_secs(s.lifetime.as_secs().max(1));
    s.issued.push(IssuedToken {
        token: token.clone(),
        client_id: client_id.to_string(),
        issued_at,
        expires_in,
    });
    Reply::json(
        200,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in.as_secs()}),
    )
    .header("cache-control", "no-store")
    .delay(delay)
}

/// An upstream that answers 200 and records when each request arrived and its
/// `Authorization` values (every copy, joined by `, ` when there are several).
pub struct StampedUpstream {
    server: TestServer,
    seen: Arc<Mutex<Vec<(Instant, String, usize)>>>,
}

impl StampedUpstream {
    pub fn start() -> StampedUpstream {
        let seen: Arc<Mutex<Vec<(Instant, String, usize)>>> = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let server = TestServer::start(move |req| {
            let all = req.header_all("authorization");
            let value = all.join(", ");
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), value.clone(), all.len()));
            Reply::json(200, &json!({"authorization": value, "copies": all.len()}))
        });
        StampedUpstream { server, seen }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `(arrival, Authorization)` of every request so far.
    pub fn seen(&self) -> Vec<(Instant, String)> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(at, v, _)| (*at, v.clone()))
            .collect()
    }

    /// Requests that carried more than one `Authorization` header.
    pub fn duplicated(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, _, n)| *n > 1)
            .count()
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.server.hits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_decode(b"grant_type=client_credentials&scope=a+b%3Ac&x=%zz&empty="),
            vec![
                ("grant_type".to_string(), "client_credentials".to_string()),
                ("scope".to_string(), "a b:c".to_string()),
                ("x".to_string(), "%zz".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn issues_then_refuses_and_records() {
        let issuer = FakeIssuer::start("t", Duration::from_secs(6));
        let post = |auth: &str| {
            crate::http::request(
                ("127.0.0.1", issuer.port()),
                "POST",
                "/oauth/token",
                &[
                    ("authorization", auth),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                "grant_type=client_credentials&scope=billing%3Aread",
            )
        };
        // "id:s%3Acret" base64
        let basic = "Basic aWQ6cyUzQWNyZXQ=";
        let r = post(basic);
        assert_eq!(r.status, 200);
        let body = r.json();
        assert_eq!(body["expires_in"], 6);
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().unwrap_or_default().to_string();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
        issuer.set_mode(IssuerMode::TooManyRequests { retry_after_s: 7 });
        let r = post(basic);
        assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
        issuer.set_mode(IssuerMode::InvalidClient);
        let r = post(basic);
        assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")));
        issuer.set_mode(IssuerMode::Unavailable);
        assert_eq!(post(basic).status, 503);
        let reqs = issuer.requests();
        assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 429, 401, 503]);
        assert_eq!(reqs[0].basic, Some(("id".to_string(), "s:cret".to_string())));
        assert_eq!(reqs[0].param("scope"), Some("billing:read"));
        assert_eq!(issuer.issued().len(), 1);
        assert_eq!(issuer.issued_to("id").len(), 1);
        issuer.set_mode(IssuerMode::Issue);
        issuer.set_client_mode("id", IssuerMode::Unavailable);
        assert_eq!(post(basic).status, 503);
        assert_eq!(issuer.requests_of("id").len(), 5);
        assert_eq!(issuer.requests_of("other").len(), 0);
        let t = &issuer.issued()[0];
        let before = t.expires_at() - Duration::from_millis(1);
        let seen = vec![
            (before, format!("Bearer {token}")),
            (t.expires_at(), format!("Bearer {token}")),
        ];
        let expired = issuer.expired_uses(&seen);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, t.expires_at());
    }
}
