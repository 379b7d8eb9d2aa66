//! Token inspection before any signature work (`jwt::inspect`), the claim
//! checks (`jwt::check_claims`) and the rendering of claims into upstream
//! headers (`jwt::claim_header_value`).
//!
//! Properties: a token longer than the limit is `token_too_large`; an
//! accepted one has exactly three non-empty base64url segments, a header
//! segment of at most 2048 characters, a `kid` of at most 256, registered
//! claims of their registered types (`iss`/`sub`/`jti`/`nonce` strings,
//! `aud` a string or strings, time claims the numbers read); a rendered
//! claim is at most 4096 bytes with no control character but tab; and no
//! token passes the signature check with a key it was not signed with.

use edge_auth_core::config;
use edge_auth_core::jwt::{check_claims, claim_header_value, inspect, verify_signature, JwtError, Provider};
use serde_json::Value;

use super::engine::{Checked, Rng, Target};
use super::json::{any_value, b64u, hostile_string, object, J};

const MAX: usize = 8192;
const NOW: u64 = 1_800_000_000;

const ALGS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA", "none", "None", "NONE", "hs256", "HS999",
    "ES512", "",
];

fn header(rng: &mut Rng) -> J {
    let mut fields = vec![("alg", J::s(*rng.pick(ALGS)))];
    if rng.one_in(2) {
        fields.push((
            "kid",
            J::s(if rng.one_in(3) {
                hostile_string(rng)
            } else {
                "k1".to_owned()
            }),
        ));
    }
    if rng.one_in(3) {
        fields.push(("typ", J::s(rng.word(&["JWT", "jwt", "at+jwt", "JWE", "jwtx", ""]))));
    }
    if rng.one_in(8) {
        fields.push(("crit", J::Arr(vec![J::s("exp")])));
    }
    if rng.one_in(8) {
        fields.push(("jwk", any_value(rng, 1)));
    }
    object(rng, fields)
}

fn claims(rng: &mut Rng) -> J {
    let time = |rng: &mut Rng, base: i64| -> J {
        match rng.below(4) {
            0 => J::n(base + rng.below(600) as i64 - 300),
            1 => J::Raw(format!("{}.{}", base, rng.below(10))),
            _ => J::n(base),
        }
    };
    let aud = match rng.below(4) {
        0 => J::Arr(vec![J::s("x"), J::s("api")]),
        1 => J::Arr(vec![]),
        _ => J::s("api"),
    };
    let fields = vec![
        ("iss", J::s("https://iss")),
        ("aud", aud),
        (
            "sub",
            J::s(if rng.one_in(3) {
                hostile_string(rng)
            } else {
                "alice".to_owned()
            }),
        ),
        ("iat", time(rng, NOW as i64 - 10)),
        ("exp", time(rng, NOW as i64 + 300)),
        ("nbf", time(rng, NOW as i64 - 10)),
        ("jti", J::s("j")),
        ("scope", J::s("read write")),
        ("roles", J::Arr(vec![J::s("a"), J::s("b,c"), J::n(3)])),
        ("email", J::s(hostile_string(rng))),
    ];
    object(rng, fields)
}

fn segment(rng: &mut Rng, json: &J) -> String {
    let text = json.text();
    match rng.below(12) {
        0 => format!("{}=", b64u(text.as_bytes())),
        1 => b64u(text.as_bytes()).replace('-', "+").replace('_', "/"),
        2 => text,
        3 => String::new(),
        _ => b64u(text.as_bytes()),
    }
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    let (h, c) = (header(rng), claims(rng));
    let mut t = format!("{}.{}", segment(rng, &h), segment(rng, &c));
    let sig_len = *rng.pick(&[0usize, 1, 32, 48, 64, 96, 256, 512, 600]);
    let sig: Vec<u8> = (0..sig_len).map(|_| rng.next() as u8).collect();
    t.push('.');
    t.push_str(&b64u(&sig));
    if rng.one_in(10) {
        t.push_str(rng.word(&[".", ".x", "..", " ", "\u{fffd}"]));
    }
    t.into_bytes()
}

/// One provider per family, with keys of each algorithm, to check that no
/// random signature verifies.
fn provider() -> &'static Provider {
    thread_local! {
        static P: &'static Provider = {
            let doc = serde_json::json!({"providers": [{
                "name": "p", "issuer": "https://iss", "audiences": ["api"],
                "algorithms": ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA"],
                "hmac_secrets": [
                    {"env": "K", "alg": "HS256", "kid": "k1"}, {"env": "K", "alg": "HS384"}, {"env": "K", "alg": "HS512"}
                ],
                "jwks": super::jwks::sample_jwks(),
                "leeway_s": 30, "required_claims": [{"name": "sub"}]
            }]});
            let env = |n: &str| (n == "K").then(|| "k".repeat(64));
            let mut cfg = config::parse(doc.to_string().as_bytes(), &env).expect("the fuzz provider");
            Box::leak(Box::new(cfg.providers.remove(0)))
        };
    }
    P.with(|p| *p)
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn check(bytes: &[u8]) -> Checked {
    let text = String::from_utf8_lossy(bytes);
    let token: &str = &text;
    let t = match inspect(token, MAX) {
        Ok(t) => t,
        Err(e) => {
            if token.len() > MAX && e != JwtError::TooLarge {
                return Err(format!("{} bytes: {e:?}, not token_too_large", token.len()));
            }
            return Ok(format!("err:{e:?}"));
        }
    };
    if token.len() > MAX {
        return Err(format!("a token of {} bytes was accepted", token.len()));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_b64url(p)) || parts[0].len() > 2048 || t.payload_b64 != parts[1] {
        return Err(format!("accepted the shape of {token:?}"));
    }
    if t.kid.as_ref().is_some_and(|k| k.len() > 256) {
        return Err("a kid over 256 characters".into());
    }
    let map = t.claims.map();
    for name in ["iss", "sub", "jti", "nonce"] {
        if map.get(name).is_some_and(|v| !v.is_string()) {
            return Err(format!("{name} is not a string"));
        }
    }
    match map.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(other) => return Err(format!("aud {other}")),
    }
    for (name, read) in [("exp", t.claims.exp), ("nbf", t.claims.nbf), ("iat", t.claims.iat)] {
        let expected = map
            .get(name)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        if read != expected {
            return Err(format!("{name} read as {read:?} from {:?}", map.get(name)));
        }
    }
    for value in map.values() {
        if let Some(h) = claim_header_value(value) {
            if h.len() > 4096 || h.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                return Err(format!("claim rendered as {h:?}"));
            }
        }
    }
    let p = provider();
    let claims = check_claims(&t.claims, p, NOW);
    // the signature is random (or made by no key of the provider)
    let signature = verify_signature(&t, p, &[&p.static_keys]);
    if signature.is_ok() {
        return Err(format!("a random signature verified for {:?}", t.alg));
    }
    Ok(format!("ok:{:?}:{:?}:{:?}", t.alg, claims.err(), signature.err()))
}

pub fn target() -> Target {
    let good = |rng: &mut Rng| {
        let h = J::Obj(vec![("alg".into(), J::s("HS256")), ("kid".into(), J::s("k1"))]);
        let c = J::Obj(vec![
            ("iss".into(), J::s("https://iss")),
            ("aud".into(), J::s("api")),
            ("sub".into(), J::s("a")),
        ]);
        let _ = rng;
        format!(
            "{}.{}.{}",
            b64u(h.text().as_bytes()),
            b64u(c.text().as_bytes()),
            b64u(&[7; 32])
        )
        .into_bytes()
    };
    let mut rng = Rng::new(1);
    Target {
        name: "jwt_inspect",
        bounded_execs: 15_000,
        max_len: 3 * MAX,
        seeds: vec![good(&mut rng), b"a.b.c".to_vec(), b"eyJhbGciOiJub25lIn0.e30.".to_vec()],
        dictionary: [
            ".", "-", "_", "=", "+", "/", "eyJ", "e30", "W10", "bnVsbA", "AAAA", "\u{fffd}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
