//! edge-auth's egress token injection through a bad day at the issuer, side by
//! side with Envoy's own credential_injector (issue 16 part 3,
//! /docs/egress-tokens.md).
//!
//! One Envoy (two workers), one fake issuer, one upstream that stamps what it
//! receives, three listeners:
//! * `egress`: edge-auth loaded from envoy/egress-listener.yaml (that very file;
//!   only the Wasm path, the port, the cluster addresses and the timing fields
//!   are changed): entry `billing` (HTTP Basic) for Host billing.internal and
//!   entry `ledger` (client_secret_post) for Host ledger.internal;
//! * `peer`: Envoy's credential_injector (oauth2 client credentials, retry
//!   interval 1 s) for client `peer-client`;
//! * `ingress`: the router alone, no injection.
//!
//! Tokens live 16 s; with `refresh_before_s: 8` the refresh is at half life
//! (8 s), and a token is served while it has more than 5 s to live (11 s).

use std::time::{Duration, Instant};

use edge_auth_e2e::egress::add_peer_listener;
use edge_auth_e2e::issuer::{FakeIssuer, IssuedToken, IssuerMode, StampedUpstream, TokenRequest};
use edge_auth_e2e::{http, settles, wait_until, workspace_root, Envoy, EnvoyOptions};
use serde_json::{json, Value};

const LIFETIME: Duration = Duration::from_secs(16);
const BILLING_SECRET: &str = "billing-s3cret+/=&%";
const LEDGER_SECRET: &str = "ledger-s3cret:with space";
const PEER_SECRET: &str = "peer-s3cret-0123";
const REJECTED_RETRY: Duration = Duration::from_secs(5);
/// A token is served only while it has more than this to live (egress-spec).
const SERVE_MARGIN: Duration = Duration::from_secs(5);

struct Side {
    envoy: Envoy,
    issuer: FakeIssuer,
    upstream: StampedUpstream,
}

/// envoy/egress-listener.yaml, parsed.
fn example() -> Value {
    let path = workspace_root().join("envoy/egress-listener.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example's filter configuration, with the timing fields shortened.
fn shortened(config: &str) -> String {
    let mut config: Value = serde_json::from_str(config).expect("the example's configuration is JSON");
    for entry in config["egress_tokens"].as_array_mut().expect("egress_tokens") {
        entry["refresh_before_s"] = json!(8);
        entry["backoff_max_s"] = json!(2);
        entry["breaker_failures"] = json!(10);
        entry["breaker_open_s"] = json!(5);
        entry["rejected_retry_s"] = json!(REJECTED_RETRY.as_secs());
        entry["token_endpoint"]["timeout_ms"] = json!(TIMEOUT.as_millis() as u64);
    }
    config.to_string()
}

impl Side {
    fn start() -> Side {
        let issuer = FakeIssuer::start("ea", LIFETIME);
        // ledger's client and the peer's are refused by the issuer from the start.
        issuer.set_client_mode("mc_ledger", IssuerMode::InvalidClient);
        issuer.set_client_mode("peer-client", IssuerMode::InvalidClient);
        let upstream = StampedUpstream::start();
        let opts = EnvoyOptions {
            component_log_level: Some("wasm:debug".to_string()),
            ..EnvoyOptions::without_wasm(upstream.port())
        }
        .env("BILLING_CLIENT_SECRET", BILLING_SECRET)
        .env("LEDGER_CLIENT_SECRET", LEDGER_SECRET);
        let mut bootstrap = opts.bootstrap().expect("bootstrap");

        let mut example = example();
        let wasm = edge_auth_e2e::envoy::default_wasm().expect("the built filter");
        let mut listener = example["listeners"][0].clone();
        assert_eq!(listener["name"], "egress");
        listener["address"]["socket_address"]["port_value"] = json!(0);
        let filter = &mut listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0];
        let config = &mut filter["typed_config"]["config"];
        config["vm_config"]["code"]["local"]["filename"] = json!(wasm.to_string_lossy());
        let value = config["configuration"]["value"]
            .as_str()
            .expect("configuration.value")
            .to_string();
        config["configuration"]["value"] = json!(shortened(&value));
        let resources = &mut bootstrap["static_resources"];
        resources["listeners"].as_array_mut().expect("listeners").push(listener);
        for cluster in example["clusters"].as_array_mut().expect("clusters") {
            let name = cluster["name"].as_str().expect("cluster name").to_string();
            let port = if name == "issuer" {
                issuer.port()
            } else {
                upstream.port()
            };
            resources["clusters"]
                .as_array_mut()
                .expect("clusters")
                .push(edge_auth_e2e::envoy::cluster(&name, port));
        }

        add_peer_listener(
            &mut bootstrap,
            "peer",
            "issuer",
            "peer-client",
            "peer-secret",
            PEER_SECRET,
        );
        let envoy = Envoy::start_with_bootstrap(&opts, &bootstrap).expect("envoy starts");
        Side {
            envoy,
            issuer,
            upstream,
        }
    }

    fn get(&self, listener: &str, host: &str, headers: &[(&str, &str)]) -> http::Response {
        let addr = self.envoy.listener_addr(listener).expect("listener address");
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        http::request(addr, "GET", "/v1/items", &all, b"")
    }

    fn egress(&self, host: &str) -> http::Response {
        self.get("egress", host, &[])
    }

    fn stat(&self, name: &str) -> u64 {
        self.envoy.try_stat(&format!("edge_auth.{name}")).unwrap_or(0)
    }
}

/// `Bearer <token>` as the upstream echoes it.
fn bearer(t: &IssuedToken) -> String {
    format!("Bearer {}", t.token)
}

fn error_of(r: &http::Response) -> String {
    r.try_json()
        .ok()
        .and_then(|b| b["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A local refusal: 503, JSON `error`, never the upstream's answer.
fn assert_refused(r: &http::Response, error: &str) {
    assert_eq!((r.status, error_of(r).as_str()), (503, error), "{}", r.summary());
    assert!(r.json().get("authorization").is_none(), "forwarded: {}", r.summary());
}

fn retry_after(r: &http::Response) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric retry-after: {}", r.summary()))
}

/// The timeout_ms the test gives every entry.
const TIMEOUT: Duration = Duration::from_millis(500);

/// The attempts that failed: an error status, or an answer held past the timeout.
fn failed(reqs: &[TokenRequest]) -> Vec<&TokenRequest> {
    reqs.iter().filter(|r| r.status != 200 || r.delay > TIMEOUT).collect()
}

#[test]
fn egress_tokens_ride_out_a_bad_day_side_by_side_with_credential_injector() {
    let s = Side::start();

    // 1. Injection: the client's own Authorization headers are replaced by exactly
    // one bearer token, fetched once for the whole Envoy (two workers).
    let r = s.get(
        "egress",
        "billing.internal",
        &[("authorization", "Bearer client-sent"), ("authorization", "Basic eDp5")],
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let first = s
        .issuer
        .issued_to("mc_billing")
        .first()
        .cloned()
        .expect("a billing token");
    assert_eq!(r.json()["authorization"], bearer(&first));
    assert_eq!(r.json()["copies"], 1);
    s.issuer.set_client_mode("mc_billing", IssuerMode::Unavailable);
    assert!(settles(Duration::from_secs(5), || {
        let r = s.egress("billing.internal");
        r.status == 200 && r.json()["authorization"] == bearer(&first)
    }));
    let billing = s.issuer.requests_of("mc_billing");
    assert_eq!(billing.len(), 1, "one token request per Envoy, whatever the workers");
    let req = &billing[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/oauth/token"));
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(req.header("host"), Some("auth.example.com"));
    assert_eq!(req.basic, Some(("mc_billing".to_string(), BILLING_SECRET.to_string())));
    assert_eq!(req.param("grant_type"), Some("client_credentials"));
    assert_eq!(req.param("audience"), Some("https://billing.example.com"));
    assert_eq!(req.param("scope"), Some("billing:read billing:write"));
    assert_eq!(req.param("client_secret"), None);
    // No injection on the plain listener: the client's header goes through as sent.
    let r = s.get(
        "ingress",
        "billing.internal",
        &[("authorization", "Bearer client-sent")],
    );
    assert_eq!(r.json()["authorization"], "Bearer client-sent");

    // 2. 401 invalid_client (ledger, from its first fetch): refused with 503
    // egress_credentials_rejected, one log line, no retry storm: no other token
    // request for rejected_retry_s. The peer on the same 401 retries every second
    // and refuses with a 401 text body.
    let r = s.egress("ledger.internal");
    assert_refused(&r, "egress_credentials_rejected");
    assert!(retry_after(&r) >= 1 && retry_after(&r) <= REJECTED_RETRY.as_secs());
    assert!(!r.text().contains(LEDGER_SECRET));
    let rejected = s.issuer.requests_of("mc_ledger");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let rejected_at = rejected[0].at;
    assert_eq!(rejected[0].param("client_id"), Some("mc_ledger"));
    assert_eq!(rejected[0].param("client_secret"), Some(LEDGER_SECRET));
    assert_eq!(rejected[0].basic, None);
    let line = "edge-auth: egress token ledger: the issuer rejected the client credentials \
                (status 401, error invalid_client): not retrying for 5 s";
    assert!(s.envoy.wait_for_log(line, Duration::from_secs(2)), "no log line");
    let logged = s.envoy.log();
    let logged = logged.lines().find(|l| l.contains(line)).unwrap_or_default();
    assert!(logged.contains("][error]["), "not at ERROR: {logged}");
    let peer = s.get("peer", "billing.internal", &[]);
    assert_eq!(
        (peer.status, peer.text().as_str()),
        (401, "Failed to inject credential.")
    );
    let quiet_until = rejected_at + REJECTED_RETRY - Duration::from_millis(300);
    while Instant::now() < quiet_until {
        assert_refused(&s.egress("ledger.internal"), "egress_credentials_rejected");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        s.issuer.requests_of("mc_ledger").len(),
        1,
        "a token request within rejected_retry_s"
    );
    assert_eq!(s.envoy.log().matches(line).count(), 1, "one log line per rejection");
    let peer_attempts = s
        .issuer
        .requests_of("peer-client")
        .iter()
        .filter(|r| r.at >= rejected_at && r.at < quiet_until)
        .count();
    assert!(
        peer_attempts >= 3,
        "the peer retried {peer_attempts} times in the same window"
    );
    assert!(s.stat("egress.token_rejected") >= 1);
    assert!(s.stat("egress.refused_rejected") >= 1);
    // ... then one attempt, which now succeeds: ledger recovers.
    s.issuer.set_client_mode("mc_ledger", IssuerMode::Issue);
    assert!(wait_until(Duration::from_secs(4), || s
        .egress("ledger.internal")
        .status
        == 200));
    let ledger_first = s
        .issuer
        .issued_to("mc_ledger")
        .first()
        .cloned()
        .expect("a ledger token");
    assert!(ledger_first.issued_at >= rejected_at + REJECTED_RETRY - Duration::from_millis(100));
    assert_eq!(s.issuer.requests_of("mc_ledger").len(), 2);

    // 3. The billing issuer answers 503 since step 1, then too slowly (past
    // timeout_ms), then 429 Retry-After: 2.
    // The refresh (due at half life) fails; the still-valid token keeps being
    // served until 5 s before its expiry; then 503 egress_token_unavailable
    // with retry-after; then recovery. Meanwhile ledger refreshes at half life.
    let servable_until = first.issued_at + LIFETIME - SERVE_MARGIN;
    let mut seen: Vec<(Instant, u16, String, Option<u64>)> = Vec::new();
    let mut phase = 0;
    let mut recovered = None;
    let deadline = first.issued_at + LIFETIME + Duration::from_secs(6);
    while Instant::now() < deadline {
        let r = s.egress("billing.internal");
        let at = Instant::now();
        let what = if r.status == 200 {
            r.json()["authorization"].as_str().unwrap_or_default().to_string()
        } else {
            error_of(&r)
        };
        let ra = r.header("retry-after").and_then(|v| v.parse().ok());
        if r.status == 200 && what != bearer(&first) {
            recovered = Some(at);
            seen.push((at, r.status, what, ra));
            break;
        }
        seen.push((at, r.status, what, ra));
        let attempts = s.issuer.requests_of("mc_billing");
        let fails = failed(&attempts);
        if phase == 0 && fails.len() >= 2 {
            let delay = TIMEOUT * 3;
            s.issuer.set_client_mode("mc_billing", IssuerMode::Slow { delay });
            phase = 1;
        } else if phase == 1 && fails.iter().any(|r| r.delay > TIMEOUT) {
            let mode = IssuerMode::TooManyRequests { retry_after_s: 2 };
            s.issuer.set_client_mode("mc_billing", mode);
            phase = 2;
        } else if phase == 2
            && fails.iter().any(|r| r.status == 429)
            && at > servable_until + Duration::from_millis(1500)
            && r.status == 503
        {
            s.issuer.set_client_mode("mc_billing", IssuerMode::Issue);
            phase = 3;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered.is_some(), "billing never recovered: {seen:?}");
    // No request dropped while the token was valid.
    let early: Vec<_> = seen
        .iter()
        .filter(|(at, ..)| *at < servable_until - Duration::from_millis(300))
        .collect();
    assert!(!early.is_empty());
    for (at, status, what, _) in &early {
        assert_eq!(
            (*status, what.as_str()),
            (200, bearer(&first).as_str()),
            "at {:?}",
            first.issued_at.elapsed() - at.elapsed()
        );
    }
    // Refused, never forwarded, once it would be expired, until the issuer recovered.
    let refused: Vec<_> = seen.iter().filter(|(_, status, ..)| *status != 200).collect();
    assert!(
        !refused.is_empty(),
        "no refusal between the token's end and recovery: {seen:?}"
    );
    for (_, status, what, ra) in &refused {
        assert_eq!((*status, what.as_str()), (503, "egress_token_unavailable"));
        assert!(ra.is_some_and(|s| (1..=2).contains(&s)), "retry-after {ra:?}");
    }
    assert!(s.stat("egress.refused_unavailable") >= 1);
    // The issuer saw a bounded number of attempts, spaced by the backoff (at least
    // half of 1 s, 2 s, ... capped at backoff_max_s = 2 s) and, after a 429, by its
    // Retry-After (2 s).
    let billing = s.issuer.requests_of("mc_billing");
    let fails = failed(&billing);
    assert!(fails.len() >= 3, "{} failed attempts", fails.len());
    for pair in fails.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(450), "attempts {gap:?} apart");
        if pair[0].status == 429 {
            assert!(gap >= Duration::from_millis(1900), "Retry-After ignored: {gap:?}");
        }
        assert!(gap <= Duration::from_millis(3500), "an attempt came late: {gap:?}");
    }
    let window = fails.last().map(|l| l.at - fails[0].at).unwrap_or_default();
    assert!(
        (fails.len() as u64) <= window.as_secs() * 2 + 2,
        "{} attempts in {window:?}",
        fails.len()
    );
    assert!(fails.iter().any(|r| r.status == 503), "no 503 answered");
    assert!(fails.iter().any(|r| r.delay > TIMEOUT), "no attempt timed out");
    assert!(fails.iter().any(|r| r.status == 429), "no 429 answered");
    assert_eq!(phase, 3);
    assert!(s.stat("egress.token_fetch_failed") >= 3);

    // The refresh at half life (ledger, healthy issuer): obtained 8 s after its first token.
    assert!(wait_until(Duration::from_secs(4), || s
        .issuer
        .issued_to("mc_ledger")
        .len()
        >= 2));
    let ledger = s.issuer.issued_to("mc_ledger");
    let gap = ledger[1].issued_at - ledger[0].issued_at;
    assert!(
        gap >= Duration::from_millis(7500) && gap <= Duration::from_millis(9500),
        "refresh {gap:?} after the token (lifetime {LIFETIME:?}, refresh_before_s 8)"
    );
    assert!(wait_until(Duration::from_secs(2), || {
        s.egress("ledger.internal").json()["authorization"] == bearer(&ledger[1])
    }));

    // The upstream never received a token of ours within 5 s of its expiry
    // (1 s of slack: the filter's clock starts when the answer arrives).
    let issued = s.issuer.issued();
    for (at, value) in s.upstream.seen() {
        if let Some(t) = issued.iter().find(|t| value == bearer(t)) {
            assert!(
                at < t.expires_at() - SERVE_MARGIN + Duration::from_secs(1),
                "{} served too late",
                t.client_id
            );
        }
    }
    assert!(s.issuer.expired_uses(&s.upstream.seen()).is_empty());
    assert_eq!(s.upstream.duplicated(), 0);
    assert!(s.stat("egress.injected") >= 1);

    // Neither a secret nor a token in Envoy's log (wasm at debug level).
    let log = s.envoy.log();
    for secret in [BILLING_SECRET, LEDGER_SECRET, PEER_SECRET] {
        assert!(!log.contains(secret), "a client secret is in Envoy's log");
    }
    for t in &issued {
        assert!(!log.contains(&t.token), "a token is in Envoy's log");
    }
}

/// What the issuer's answer must not be able to do: every malformed or hostile
/// answer is a failed fetch (never a header the filter writes, never a request
/// forwarded without a token), and a good answer afterwards is served.
#[test]
fn hostile_issuer_answers_are_failures_never_headers() {
    let issuer = FakeIssuer::start("ok", LIFETIME);
    let upstream = StampedUpstream::start();
    let ok = |extra: Value| {
        let mut v = json!({"access_token": "hostile-tok-0", "token_type": "Bearer", "expires_in": 60});
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                if x.is_null() {
                    base.remove(k);
                } else {
                    base.insert(k.clone(), x.clone());
                }
            }
        }
        v.to_string()
    };
    let big = "a".repeat(8193);
    let cases: Vec<(&str, u16, String)> =
        vec![
        ("CR LF in the token", 200, ok(json!({"access_token": "hostile-tok-1\r\nx-evil: 1"}))),
        ("a space in the token", 200, ok(json!({"access_token": "hostile-tok-2 x"}))),
        ("'=' inside the token", 200, ok(json!({"access_token": "hostile=tok-3"}))),
        ("an empty token", 200, ok(json!({"access_token": ""}))),
        ("a token over 8192 bytes", 200, ok(json!({"access_token": big}))),
        ("a body over 16 KiB", 200, ok(json!({"padding": "p".repeat(17 * 1024)}))),
        (
            "access_token twice",
            200,
            r#"{"access_token":"hostile-tok-4","access_token":"hostile-tok-5","token_type":"Bearer","expires_in":60}"#
                .to_string(),
        ),
        ("token_type mac", 200, ok(json!({"token_type": "mac"}))),
        ("no expires_in", 200, ok(json!({"expires_in": null}))),
        ("expires_in 0", 200, ok(json!({"expires_in": 0}))),
        ("expires_in as a string", 200, ok(json!({"expires_in": "60"}))),
        ("not JSON", 200, "<html>hostile-tok-6</html>".to_string()),
        ("a good body with 201", 201, ok(json!({"access_token": "hostile-tok-7"}))),
    ];
    let opts = EnvoyOptions::new(
        json!({"egress_tokens": [{
            "name": "hostile",
            "token_endpoint": {"cluster": "issuer", "path": "/oauth/token", "timeout_ms": 500},
            "client_id": "mc_hostile",
            "client_secret_env": "HOSTILE_CLIENT_SECRET",
            "backoff_max_s": 1,
            "breaker_failures": 100,
        }]}),
        upstream.port(),
    )
    .cluster("issuer", issuer.port())
    .env("HOSTILE_CLIENT_SECRET", "hostile-secret-0123");
    issuer.set_mode(IssuerMode::Answer {
        status: cases[0].1,
        body: cases[0].2.clone(),
    });
    let envoy = Envoy::start(opts).expect("envoy starts");
    for (i, (what, status, body)) in cases.iter().enumerate() {
        if i > 0 {
            issuer.set_mode(IssuerMode::Answer {
                status: *status,
                body: body.clone(),
            });
        }
        let asked = issuer.requests().len();
        assert!(
            issuer.wait_for_requests(asked + 1, Duration::from_secs(4)),
            "{what}: no attempt"
        );
        let r = envoy.get("/v1/items", &[("authorization", "Bearer client-sent")]);
        assert_refused(&r, "egress_token_unavailable");
        let before = i as u64;
        let counted = envoy.wait_for_stat("edge_auth.egress.token_fetch_failed", Duration::from_secs(2), |n| {
            n > before
        });
        assert!(counted.is_some(), "{what}: not counted as a failed fetch");
    }
    assert_eq!(upstream.hits(), 0, "a request went out without a good token");
    assert_eq!(envoy.stat("edge_auth.egress.token_fetch_ok"), 0);
    issuer.set_mode(IssuerMode::Issue);
    assert!(wait_until(Duration::from_secs(4), || envoy
        .get("/v1/items", &[])
        .status
        == 200));
    let token = issuer.last_issued().expect("a token");
    assert!(upstream.seen().iter().all(|(_, a)| *a == bearer(&token)));
    let log = envoy.log();
    assert!(!log.contains("hostile-tok") && !log.contains("hostile-secret") && !log.contains(&token.token));
}
