//! Remote JWKS documents (`refresh::parse_response`, over
//! `keys::parse_jwks`): what an issuer's key endpoint (or anything on the
//! way) answers.
//!
//! Properties: a body over `max_response_bytes` is refused unread; an
//! accepted set holds at least one key and at most `MAX_JWKS_KEYS` keys
//! times the six RSA algorithms, each bound to an algorithm the provider
//! lists; skipped keys are reported once each, in order, with indexes below
//! `MAX_JWKS_KEYS`; and a token with a random signature verifies with none
//! of the keys (whatever odd modulus or point they hold).

use std::sync::OnceLock;

use edge_auth_core::config;
use edge_auth_core::jwt::keys::MAX_JWKS_KEYS;
use edge_auth_core::jwt::refresh::parse_response;
use edge_auth_core::jwt::{inspect, verify_signature, Provider};
use jwt_simple::prelude::*;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::engine::{Checked, Rng, Target};
use super::json::{any_value, b64u, hostile_string, object, J};

const MAX_BYTES: usize = 262_144;

/// Real key material to start from: RSA moduli of the test keys, P-256,
/// P-384 and Ed25519 public keys.
struct Material {
    rsa: Vec<Vec<u8>>,
    p256: Vec<(Vec<u8>, Vec<u8>)>,
    p384: Vec<(Vec<u8>, Vec<u8>)>,
    ed25519: Vec<Vec<u8>>,
}

fn material() -> &'static Material {
    static M: OnceLock<Material> = OnceLock::new();
    M.get_or_init(|| {
        let rsa = [
            include_str!("../../testdata/rsa/rsa-2048.pem"),
            include_str!("../../testdata/rsa/rsa-3073.pem"),
            include_str!("../../testdata/rsa/rsa-4096.pem"),
        ]
        .iter()
        .map(|pem| rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap().n().to_bytes_be())
        .collect();
        let xy = |raw: Vec<u8>, len: usize| (raw[1..1 + len].to_vec(), raw[1 + len..].to_vec());
        Material {
            rsa,
            p256: (0..3)
                .map(|_| {
                    xy(
                        ES256KeyPair::generate()
                            .public_key()
                            .public_key()
                            .to_bytes_uncompressed(),
                        32,
                    )
                })
                .collect(),
            p384: (0..2)
                .map(|_| {
                    xy(
                        ES384KeyPair::generate()
                            .public_key()
                            .public_key()
                            .to_bytes_uncompressed(),
                        48,
                    )
                })
                .collect(),
            ed25519: (0..2)
                .map(|_| Ed25519KeyPair::generate().public_key().to_bytes())
                .collect(),
        }
    })
}

/// A JWKS with one good key of each kind (for other targets' providers).
pub fn sample_jwks() -> Value {
    let m = material();
    json!({"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64u(&m.rsa[0]), "e": "AQAB"},
        {"kty": "RSA", "kid": "r2", "alg": "PS256", "n": b64u(&m.rsa[1]), "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64u(&m.p256[0].0), "y": b64u(&m.p256[0].1)},
        {"kty": "EC", "crv": "P-384", "kid": "e2", "x": b64u(&m.p384[0].0), "y": b64u(&m.p384[0].1)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "d1", "x": b64u(&m.ed25519[0])}
    ]})
}

/// Bytes, sometimes changed: a bit flipped, cut, lengthened, zeroed or all ones.
fn bend(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.below(12) {
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 => {
            b.pop();
        }
        2 => b.push(rng.next() as u8),
        3 => b.insert(0, 0),
        4 => b.fill(0),
        5 => b.fill(0xff),
        6 => b = (0..b.len()).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    b
}

fn field(rng: &mut Rng, bytes: &[u8]) -> J {
    match rng.below(16) {
        0 => J::s(format!("{}=", b64u(bytes))),
        1 => J::s(b64u(bytes).replace('-', "+").replace('_', "/")),
        2 => J::s("!!"),
        3 => any_value(rng, 2),
        _ => J::s(b64u(bytes)),
    }
}

const ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "none", "rs256", "ES512",
];

fn jwk(rng: &mut Rng, rsa_budget: &mut usize) -> J {
    let m = material();
    let mut fields: Vec<(&str, J)> = Vec::new();
    let kind = rng.below(10);
    match kind {
        0..=2 if *rsa_budget > 0 => {
            *rsa_budget -= 1;
            fields.push(("kty", J::s("RSA")));
            let n = rng.pick(&m.rsa).clone();
            let n = bend(rng, &n);
            fields.push(("n", field(rng, &n)));
            const EXPONENTS: &[&[u8]] = &[&[1, 0, 1], &[3], &[1, 0, 0], &[], &[0, 1, 0, 1], &[1, 0, 1, 0], &[1; 9]];
            let e = *rng.pick(EXPONENTS);
            fields.push(("e", field(rng, e)));
            // mostly with an alg: a key without one is bound to six algorithms
            fields.push(("alg", J::s(if rng.one_in(8) { *rng.pick(ALGS) } else { "RS256" })));
        }
        3..=5 => {
            let (crv, (x, y)) = if rng.one_in(3) {
                ("P-384", rng.pick(&m.p384).clone())
            } else {
                ("P-256", rng.pick(&m.p256).clone())
            };
            fields.push(("kty", J::s("EC")));
            fields.push(("crv", J::s(rng.word(&[crv, crv, crv, "P-521", "p-256", "secp256k1"]))));
            let (x, y) = (bend(rng, &x), bend(rng, &y));
            fields.push(("x", field(rng, &x)));
            fields.push(("y", field(rng, &y)));
        }
        6 | 7 => {
            fields.push(("kty", J::s("OKP")));
            fields.push(("crv", J::s(rng.word(&["Ed25519", "Ed25519", "X25519", "Ed448"]))));
            let x: Vec<u8> = match rng.below(4) {
                0 => {
                    let mut identity = vec![0u8; 32];
                    identity[0] = 1; // the small-order identity point
                    identity
                }
                _ => {
                    let x = rng.pick(&m.ed25519).clone();
                    bend(rng, &x)
                }
            };
            fields.push(("x", field(rng, &x)));
        }
        8 => {
            fields.push(("kty", J::s("oct")));
            fields.push(("k", J::s("c2VjcmV0")));
        }
        _ => fields.push(("kty", J::s(hostile_string(rng)))),
    }
    if rng.one_in(4) {
        fields.push(("alg", J::s(*rng.pick(ALGS))));
    }
    if rng.one_in(2) {
        fields.push((
            "kid",
            J::s(if rng.one_in(4) {
                hostile_string(rng)
            } else {
                format!("k{}", rng.below(4))
            }),
        ));
    }
    if rng.one_in(6) {
        fields.push(("use", J::s(rng.word(&["sig", "enc", ""]))));
    }
    if rng.one_in(8) {
        fields.push(("key_ops", J::Arr(vec![J::s(rng.word(&["verify", "sign", "encrypt"]))])));
    }
    object(rng, fields)
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut rsa_budget = 2;
    let n = rng.count(3, MAX_JWKS_KEYS + 6);
    let keys: Vec<J> = (0..n).map(|_| jwk(rng, &mut rsa_budget)).collect();
    let doc = match rng.below(20) {
        0 => J::Arr(keys),
        1 => J::Obj(vec![("keys".into(), J::Obj(vec![]))]),
        _ => object(rng, vec![("keys", J::Arr(keys))]),
    };
    doc.text().into_bytes()
}

fn provider() -> &'static Provider {
    thread_local! {
        static P: &'static Provider = {
            let doc = json!({"providers": [{
                "name": "r", "issuer": "https://iss", "audiences": ["api"],
                "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"],
                "remote_jwks": {"cluster": "idp", "path": "/jwks", "max_response_bytes": MAX_BYTES}
            }]});
            let mut cfg = config::parse(doc.to_string().as_bytes(), &|_| None).expect("the fuzz provider");
            Box::leak(Box::new(cfg.providers.remove(0)))
        };
    }
    P.with(|p| *p)
}

pub fn check(body: &[u8]) -> Checked {
    let p = provider();
    let (set, skipped) = match parse_response(Some(200), Some(body), p) {
        Ok(r) => r,
        Err(e) => {
            return Ok(format!("err:{}", e.split([' ', ':']).next().unwrap_or_default()));
        }
    };
    if body.len() > MAX_BYTES {
        return Err(format!("a body of {} bytes was read", body.len()));
    }
    if set.is_empty() || set.len() > MAX_JWKS_KEYS * 6 {
        return Err(format!("{} keys accepted", set.len()));
    }
    if skipped.windows(2).any(|w| w[0].index >= w[1].index) || skipped.iter().any(|s| s.index >= MAX_JWKS_KEYS) {
        return Err(format!(
            "skipped keys reported as {:?}",
            skipped.iter().map(|s| s.index).collect::<Vec<_>>()
        ));
    }
    let mut rng = Rng::new(body.len() as u64);
    for key in set.iter() {
        if !p.algorithms.contains(&key.alg()) {
            return Err(format!("a key bound to {} which the provider does not list", key.alg()));
        }
        let header = J::Obj(match key.kid() {
            Some(kid) => vec![("alg".into(), J::s(key.alg().name())), ("kid".into(), J::s(kid))],
            None => vec![("alg".into(), J::s(key.alg().name()))],
        });
        for len in [64usize, 96, 256, 385, 512] {
            let sig: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let token = format!("{}.e30.{}", b64u(header.text().as_bytes()), b64u(&sig));
            let Ok(t) = inspect(&token, 65536) else { continue };
            if verify_signature(&t, p, &[&set]).is_ok() {
                return Err(format!(
                    "a random {len}-byte signature verified with a {} key",
                    key.alg()
                ));
            }
        }
    }
    Ok(format!("ok:{}:{}", set.len().min(8), skipped.len().min(4)))
}

pub fn target() -> Target {
    let mut rng = Rng::new(7);
    let seeds = vec![
        sample_jwks().to_string().into_bytes(),
        generate(&mut rng),
        b"{\"keys\":[]}".to_vec(),
    ];
    Target {
        name: "jwks",
        bounded_execs: 2_000,
        max_len: 2 * MAX_BYTES,
        seeds,
        dictionary: super::json::dictionary(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
