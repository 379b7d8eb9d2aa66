//! Client address rules under the HTTP connection manager settings an operator may have:
//! Envoy's default (`use_remote_address: false`), the recommended one (`use_remote_address:
//! true`, Envoy appends its entry) and `skip_xff_append: true`. In each, an `ip` rule never
//! decides on an address the client wrote (issue 11, item 3): under the default HCM Envoy
//! makes a spoofed `X-Forwarded-For` entry the peer (`source.address`, with port 0), and the
//! filter refuses it and says once, in the log, what to change.
//!
//! The test client connects from 127.0.0.1 and plays every hop in front of Envoy: the
//! entries it writes to the right of `X-Forwarded-For` are what a load balancer appended.

use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

/// A warning of the filter that names the HCM settings at fault.
const NOTICE: &str = "edge-auth: a client address check refused a request";

fn rules() -> Value {
    json!([
        {"name": "loopback", "match": {"prefix": "/loopback/"}, "public": true, "ip": {"allow": ["127.0.0.1", "::1"]}},
        {"name": "office", "match": {"prefix": "/office/"}, "public": true, "ip": {"allow": ["10.0.0.0/8"]}},
        {"name": "lb", "match": {"prefix": "/lb/"}, "public": true,
         "ip": {"allow": ["198.51.100.0/24"], "trusted_hops": 1}},
        {"name": "cdn", "match": {"prefix": "/cdn/"}, "public": true,
         "ip": {"allow": ["198.51.100.0/24"], "trusted_hops": 2}}
    ])
}

fn start(hcm: Value, envoy_appends_xff: bool) -> (Envoy, EchoServer) {
    let echo = EchoServer::start();
    let config = json!({"envoy_appends_xff": envoy_appends_xff, "rules": rules()});
    let opts = EnvoyOptions {
        hcm,
        ..EnvoyOptions::new(config, echo.port())
    };
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    (envoy, echo)
}

fn get(envoy: &Envoy, path: &str, xff: Option<&str>, probe: &str) -> Response {
    let mut headers = vec![("x-e2e-probe", probe)];
    if let Some(x) = xff {
        headers.push(("x-forwarded-for", x));
    }
    envoy.get(path, &headers)
}

/// A refused request, marked so that the upstream can be checked never to have seen it.
fn assert_refused(envoy: &Envoy, path: &str, xff: Option<&str>, what: &str) {
    let r = get(envoy, path, xff, "refused");
    assert_eq!(r.status, 403, "{what}: {path} {xff:?}: {}", r.summary());
    assert_eq!(r.json()["error"], "ip_not_allowed", "{what}");
}

fn assert_allowed(envoy: &Envoy, path: &str, xff: Option<&str>, what: &str) {
    let r = get(envoy, path, xff, "allowed");
    assert_eq!(r.status, 200, "{what}: {path} {xff:?}: {}", r.summary());
}

/// Spoofed entries that every HCM must refuse on the trusted_hops 1 and 2 rules: the
/// allowed address written left of the entries the trusted proxies appended.
fn assert_forged_left_entries_refused(envoy: &Envoy, what: &str) {
    assert_refused(envoy, "/lb/x", Some("198.51.100.7, 192.0.2.50"), what);
    assert_refused(envoy, "/cdn/x", Some("198.51.100.7, 192.0.2.9, 203.0.113.1"), what);
    assert_refused(envoy, "/lb/x", Some("garbage, 192.0.2.50"), what);
}

/// How many times the log has the notice (once per worker at most: two workers).
fn notices(envoy: &Envoy, needle: &str) -> usize {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains(NOTICE) && l.contains(needle))
        .count()
}

#[test]
fn envoys_default_hcm_never_lets_a_spoofed_forwarded_for_be_the_peer() {
    // use_remote_address: false: Envoy makes the rightmost X-Forwarded-For entry the peer
    let (envoy, echo) = start(json!({"use_remote_address": false}), false);
    let what = "default HCM";
    // no X-Forwarded-For: the peer is the connection's, 127.0.0.1
    assert_allowed(&envoy, "/loopback/x", None, what);
    assert_refused(&envoy, "/office/x", None, what);
    // the client writes the address a trusted_hops 0 rule allows: refused, whatever it wrote
    for spoof in ["10.1.2.3", "127.0.0.1", "203.0.113.9, 10.1.2.3", "::1"] {
        let path = if spoof.ends_with("10.1.2.3") {
            "/office/x"
        } else {
            "/loopback/x"
        };
        for _ in 0..4 {
            assert_refused(&envoy, path, Some(spoof), what);
        }
    }
    // an X-Forwarded-For Envoy cannot parse leaves it the connection's peer
    assert_allowed(&envoy, "/loopback/x", Some("not-an-address"), what);
    // the hop counted in the rule (envoy_appends_xff: false) works as documented
    assert_allowed(&envoy, "/lb/x", Some("198.51.100.7"), what);
    assert_allowed(&envoy, "/lb/x", Some("6.6.6.6, 198.51.100.7"), what);
    assert_allowed(&envoy, "/cdn/x", Some("198.51.100.7, 203.0.113.1"), what);
    assert_forged_left_entries_refused(&envoy, what);
    assert!(
        !echo.saw("x-e2e-probe", "refused"),
        "a spoofed request reached the upstream"
    );
    // the operator is told once per worker what to change, not once per request
    let n = notices(&envoy, "use_remote_address: true with xff_num_trusted_hops 0");
    assert!((1..=2).contains(&n), "{n} notices:\n{}", envoy.log_tail(20));
}

#[test]
fn envoy_appends_xff_true_behind_the_default_hcm_is_refused_not_trusted() {
    // the configuration says Envoy appends (use_remote_address: true), the HCM says otherwise
    let (envoy, echo) = start(json!({"use_remote_address": false}), true);
    let what = "default HCM, envoy_appends_xff: true";
    // the right-most entry would be dropped as Envoy's own and the forged one read: refused
    for _ in 0..3 {
        assert_refused(&envoy, "/lb/x", Some("198.51.100.7, 192.0.2.50"), what);
        assert_refused(&envoy, "/lb/x", Some("198.51.100.7, 198.51.100.8"), what);
    }
    assert_refused(&envoy, "/office/x", Some("10.1.2.3"), what);
    assert!(!echo.saw("x-e2e-probe", "refused"));
    let n = notices(&envoy, "envoy_appends_xff is true but Envoy took source.address");
    assert!((1..=2).contains(&n), "{n} notices:\n{}", envoy.log_tail(20));
}

/// An HCM whose peer is the connection: a trusted_hops 0 rule checks the connection whatever
/// the client writes, and hops are counted from the right of what Envoy received.
fn assert_the_peer_is_the_connection(hcm: Value, envoy_appends_xff: bool, what: &str) {
    let (envoy, echo) = start(hcm, envoy_appends_xff);
    assert_allowed(&envoy, "/loopback/x", None, what);
    for spoof in ["10.1.2.3", "203.0.113.9, 10.1.2.3"] {
        assert_refused(&envoy, "/office/x", Some(spoof), what);
        // a client claiming another address changes nothing: the peer is the connection
        assert_allowed(&envoy, "/loopback/x", Some(spoof), what);
    }
    assert_allowed(&envoy, "/lb/x", Some("198.51.100.7"), what);
    assert_allowed(&envoy, "/cdn/x", Some("198.51.100.7, 203.0.113.1"), what);
    assert_forged_left_entries_refused(&envoy, what);
    assert!(!echo.saw("x-e2e-probe", "refused"), "{what}");
    assert_eq!(
        notices(&envoy, ""),
        0,
        "{what}: a correct configuration has nothing to say"
    );
}

#[test]
fn the_recommended_hcm_checks_the_connection_and_counts_hops_past_envoys_entry() {
    // use_remote_address: true, xff_num_trusted_hops 0 (the harness default): Envoy appends
    assert_the_peer_is_the_connection(json!({}), true, "recommended HCM");
}

#[test]
fn skip_xff_append_checks_the_connection_and_counts_hops_from_the_right() {
    // use_remote_address: true with skip_xff_append: Envoy appends nothing
    assert_the_peer_is_the_connection(json!({"skip_xff_append": true}), false, "skip_xff_append");
}

#[test]
fn xff_num_trusted_hops_in_the_hcm_is_refused_on_rules_that_check_the_peer() {
    // the HCM trusts one hop itself: Envoy makes that entry the peer (port 0) when there is one
    let (envoy, echo) = start(json!({"xff_num_trusted_hops": 1}), true);
    let what = "xff_num_trusted_hops 1";
    assert_refused(&envoy, "/office/x", Some("10.1.2.3"), what);
    assert_refused(&envoy, "/loopback/x", Some("127.0.0.1"), what);
    // too few entries: Envoy falls back to the connection, which the rule may check
    assert_allowed(&envoy, "/loopback/x", None, what);
    // hops counted twice (HCM and rule) are refused too, never read one entry too far left
    assert_refused(&envoy, "/lb/x", Some("198.51.100.7, 192.0.2.50"), what);
    assert!(!echo.saw("x-e2e-probe", "refused"));
    let n = notices(&envoy, "");
    assert!((1..=4).contains(&n), "{n} notices:\n{}", envoy.log_tail(20));
}
