//! Project Wycheproof's signature and MAC vectors (`core/testdata/wycheproof/`,
//! Apache-2.0, see the README there), run through the path a token's
//! signature takes, natively and under wasm-bindgen-test.
//!
//! Each test group's key goes through the configuration, as an operator
//! would give it: the group's JWK in a provider's inline `jwks`, or the HMAC
//! key as a hex `hmac_secrets` entry read from the (test) environment,
//! parsed by [`config::parse`]. Each case then becomes a token-shaped string
//! `<message>.<base64url(signature)>` and goes through
//! [`jwt::verify_signature`], the entry point the decision calls after the
//! token's claims were checked: it picks the key by `alg`, splits the string
//! at its last `.`, decodes the signature and runs the key's verifier. A
//! message that is not UTF-8 cannot be part of a token string: those cases
//! go through [`crate::jwt::keys::BoundKey::verify_signing_input`], the call
//! `verify_signature` makes after the split (counted apart).
//!
//! The rule for every case:
//!
//! - `valid`: accepted, except that a JWS tag is never truncated, so a
//!   `valid` case of an HMAC group whose `tagSize` is shorter than the hash
//!   is refused;
//! - `invalid`: refused;
//! - `acceptable` (only `MissingNull` here: a PKCS#1 v1.5 DigestInfo without
//!   its NULL parameters): refused, as RFC 8017 9.2 encodes it with NULL and
//!   the edge compares the whole encoding;
//! - a group whose key the configuration refuses counts every case as
//!   refused, and only keys the documentation excludes may be refused: an
//!   RSA exponent other than 65537, an HMAC secret shorter than the hash
//!   (docs/configuration.md 3.2 and 3.5).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::jwt::keys::Algorithm;
use crate::{b64, config, jwt};

/// What the edge did with each kind of case of one file.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    valid_accepted: usize,
    invalid_refused: usize,
    acceptable_refused: usize,
    /// `valid` for a truncated MAC, refused: JWS tags are full length.
    truncated_refused: usize,
    /// Cases of groups whose key the configuration refused.
    key_refused: usize,
    /// Cases that went through [`jwt::verify_signature`].
    through_token: usize,
    /// Cases with a non-UTF-8 message, through `BoundKey::verify_signing_input`.
    through_key: usize,
    /// The implementation that verified them.
    implementation: &'static str,
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hash_bits(alg: Algorithm) -> u64 {
    match alg {
        Algorithm::HS256 => 256,
        Algorithm::HS384 => 384,
        Algorithm::HS512 => 512,
        _ => 0,
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len())..]
}

/// The JWK an operator would publish for this group's public key, built
/// from the group's raw key material.
fn jwk(group: &Value) -> Value {
    let key = &group["publicKey"];
    let field = |name: &str| hex(key[name].as_str().unwrap());
    let b64u = |bytes: &[u8]| b64::encode_url(bytes);
    if key.get("modulus").is_some() {
        return json!({"kty": "RSA", "n": b64u(strip_zeros(&field("modulus"))), "e": b64u(strip_zeros(&field("publicExponent")))});
    }
    if key.get("pk").is_some() {
        return json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&field("pk"))});
    }
    let sec1 = field("uncompressed");
    let len = (sec1.len() - 1) / 2;
    let crv = match key["curve"].as_str() {
        Some("secp256r1") => "P-256",
        Some("secp384r1") => "P-384",
        Some("secp521r1") => "P-521",
        other => panic!("curve {other:?}"),
    };
    json!({"kty": "EC", "crv": crv, "x": b64u(&sec1[1..1 + len]), "y": b64u(&sec1[1 + len..])})
}

/// The configuration an operator would write for this key: the JWK in an
/// inline `jwks`, or an HMAC secret (`hmac_key`, hex) from the environment.
fn provider_config(alg: Algorithm, group: &Value, hmac_key: Option<&str>) -> Value {
    let mut provider = json!({
        "name": "wycheproof", "issuer": "https://wycheproof.test", "audiences": ["api"],
        "algorithms": [alg.name()]
    });
    match hmac_key {
        Some(_) => {
            provider["hmac_secrets"] = json!([{"env": "WYCHEPROOF_KEY", "alg": alg.name(), "encoding": "hex"}]);
        }
        None => provider["jwks"] = json!({ "keys": [jwk(group)] }),
    }
    json!({ "providers": [provider] })
}

/// Whether the documentation excludes this key (see the module rule).
fn key_excluded(alg: Algorithm, group: &Value, hmac_key: Option<&str>) -> bool {
    match hmac_key {
        Some(key) => (key.len() as u64 / 2) * 8 < hash_bits(alg),
        None => group["publicKey"]
            .get("publicExponent")
            .is_some_and(|e| strip_zeros(&hex(e.as_str().unwrap())) != [1, 0, 1]),
    }
}

fn run(file: &str, text: &str, alg: Algorithm) -> Tally {
    let doc: Value = serde_json::from_str(text).unwrap();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let truncated = hash_bits(alg) > 0 && group["tagSize"].as_u64() != Some(hash_bits(alg));
        // a MAC case carries its own key: one configuration per case there, one per group otherwise
        let mut loaded: Option<(Option<String>, config::Config)> = None;
        for case in group["tests"].as_array().unwrap() {
            tally.cases += 1;
            let hmac_key = case["key"].as_str();
            if loaded.as_ref().is_none_or(|(k, _)| k.as_deref() != hmac_key) {
                let env = |name: &str| {
                    (name == "WYCHEPROOF_KEY")
                        .then(|| hmac_key.map(str::to_owned))
                        .flatten()
                };
                let doc = provider_config(alg, group, hmac_key).to_string();
                loaded = match config::parse(doc.as_bytes(), &env) {
                    Ok(cfg) => {
                        assert!(
                            !key_excluded(alg, group, hmac_key),
                            "{file}: an excluded key was accepted"
                        );
                        Some((hmac_key.map(str::to_owned), cfg))
                    }
                    Err(e) => {
                        assert!(
                            key_excluded(alg, group, hmac_key),
                            "{file} tcId {}: a key outside the documented exclusions was refused: {e}",
                            case["tcId"]
                        );
                        None
                    }
                };
            }
            let Some((_, cfg)) = &loaded else {
                tally.key_refused += 1;
                continue;
            };
            let p = &cfg.providers[0];
            let key = p.static_keys.candidates(alg, None).next().unwrap();
            tally.implementation = key.implementation();
            let msg = hex(case["msg"].as_str().unwrap());
            let sig = hex(case["sig"].as_str().or(case["tag"].as_str()).unwrap());
            let result = case["result"].as_str().unwrap();
            let accepted = match std::str::from_utf8(&msg) {
                Ok(text) => {
                    tally.through_token += 1;
                    let token = format!("{text}.{}", b64::encode_url(&sig));
                    // a token whose claims passed, with this case as its bytes
                    let mut t = jwt::inspect("eyJhbGciOiJIUzI1NiJ9.e30.AAAA", 8192).unwrap();
                    t.token = &token;
                    t.alg = alg;
                    match jwt::verify_signature(&t, p, &[&p.static_keys]) {
                        Ok(_) => true,
                        Err(jwt::JwtError::BadSignature) => false,
                        Err(e) => panic!("{file} tcId {}: {e}", case["tcId"]),
                    }
                }
                Err(_) => {
                    tally.through_key += 1;
                    key.verify_signing_input(&msg, &sig)
                }
            };
            let expected = result == "valid" && !truncated;
            if accepted != expected {
                failures.push(format!(
                    "tcId {} ({result}, {}, flags {}): {}",
                    case["tcId"],
                    case["comment"],
                    case["flags"],
                    if accepted { "accepted" } else { "refused" }
                ));
            }
            match (result, accepted) {
                ("valid", true) => tally.valid_accepted += 1,
                ("valid", false) if truncated => tally.truncated_refused += 1,
                ("invalid", false) => tally.invalid_refused += 1,
                ("acceptable", false) => tally.acceptable_refused += 1,
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} cases broke the rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let declared = doc["numberOfTests"].as_u64().unwrap() as usize;
    assert_eq!(tally.cases, declared, "{file}: every case was run");
    assert_eq!(
        tally.valid_accepted
            + tally.invalid_refused
            + tally.acceptable_refused
            + tally.truncated_refused
            + tally.key_refused,
        tally.cases,
        "{file}: {tally:?}"
    );
    assert!(
        tally.valid_accepted > 0 && tally.invalid_refused > 0,
        "{file}: {tally:?}"
    );
    println!(
        "wycheproof {file} ({alg}, {}): {} cases: {} valid accepted, {} invalid refused, {} acceptable refused, \
         {} truncated-tag refused, {} refused with their key; {} through jwt::verify_signature, {} through the key",
        tally.implementation,
        tally.cases,
        tally.valid_accepted,
        tally.invalid_refused,
        tally.acceptable_refused,
        tally.truncated_refused,
        tally.key_refused,
        tally.through_token,
        tally.through_key,
    );
    tally
}

macro_rules! vectors {
    ($($test:ident: $file:literal, $alg:ident;)*) => {$(
        #[test]
        fn $test() {
            run($file, include_str!(concat!("../../testdata/wycheproof/", $file)), Algorithm::$alg);
        }
    )*};
}

vectors! {
    rs256_2048: "rsa_signature_2048_sha256_test.json", RS256;
    rs256_3072: "rsa_signature_3072_sha256_test.json", RS256;
    rs256_4096: "rsa_signature_4096_sha256_test.json", RS256;
    rs384_2048: "rsa_signature_2048_sha384_test.json", RS384;
    rs384_3072: "rsa_signature_3072_sha384_test.json", RS384;
    rs384_4096: "rsa_signature_4096_sha384_test.json", RS384;
    rs512_2048: "rsa_signature_2048_sha512_test.json", RS512;
    rs512_3072: "rsa_signature_3072_sha512_test.json", RS512;
    rs512_4096: "rsa_signature_4096_sha512_test.json", RS512;
    ps256_2048: "rsa_pss_2048_sha256_mgf1_32_test.json", PS256;
    ps256_3072: "rsa_pss_3072_sha256_mgf1_32_test.json", PS256;
    ps256_4096: "rsa_pss_4096_sha256_mgf1_32_test.json", PS256;
    ps384_2048: "rsa_pss_2048_sha384_mgf1_48_test.json", PS384;
    ps384_4096: "rsa_pss_4096_sha384_mgf1_48_test.json", PS384;
    ps512_4096: "rsa_pss_4096_sha512_mgf1_64_test.json", PS512;
    es256: "ecdsa_secp256r1_sha256_p1363_test.json", ES256;
    es384: "ecdsa_secp384r1_sha384_p1363_test.json", ES384;
    es512: "ecdsa_secp521r1_sha512_p1363_test.json", ES512;
    eddsa: "ed25519_test.json", EdDSA;
    hs256: "hmac_sha256_test.json", HS256;
    hs384: "hmac_sha384_test.json", HS384;
    hs512: "hmac_sha512_test.json", HS512;
}
