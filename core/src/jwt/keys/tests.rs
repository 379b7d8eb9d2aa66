use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

fn b64u(bytes: &[u8]) -> String {
    b64::encode_url(bytes)
}

fn ec_jwk() -> (ES256KeyPair, Value) {
    let kp = ES256KeyPair::generate().with_key_id("ec1");
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256",
        "x": b64u(&raw[1..33]), "y": b64u(&raw[33..65])});
    (kp, jwk)
}

#[test]
fn algorithm_names_are_exact() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(a.name()), Some(a));
    }
    for bad in [
        "none", "None", "hs256", "HS256 ", "", "RS1", "es512", "ES521", "Ed25519",
    ] {
        assert_eq!(Algorithm::from_name(bad), None, "{bad}");
    }
}

#[test]
fn ec_jwk_is_bound_to_its_alg() {
    let (kp, jwk) = ec_jwk();
    let (set, skipped) = parse_jwks(&json!({"keys": [jwk]}), &[Algorithm::ES256, Algorithm::RS256], true).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(set.len(), 1);
    assert_eq!(set.candidates(Algorithm::ES256, Some("ec1")).count(), 1);
    assert_eq!(set.candidates(Algorithm::ES256, Some("other")).count(), 0);
    assert_eq!(set.candidates(Algorithm::HS256, Some("ec1")).count(), 0);
    let token = kp.sign(Claims::create(Duration::from_secs(60))).unwrap();
    let key = set.candidates(Algorithm::ES256, None).next().unwrap();
    assert!(key.verify_token(&token));
}

#[test]
fn jwk_alg_outside_provider_is_refused() {
    let (_, jwk) = ec_jwk();
    let err = parse_jwks(&json!({"keys": [jwk.clone()]}), &[Algorithm::RS256], true).unwrap_err();
    assert!(err.0.contains("keys[0]"), "{err}");
    let (set, skipped) = parse_jwks(&json!({"keys": [jwk]}), &[Algorithm::RS256], false).unwrap();
    assert!(set.is_empty());
    assert_eq!(skipped.len(), 1);
}

#[test]
fn hostile_jwks_are_refused() {
    let all = Algorithm::ALL;
    let (_, good) = ec_jwk();
    let cases = [
        json!([]),
        json!({"keys": {}}),
        json!({"keys": [1]}),
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "!!", "y": "AA"}]}),
        json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
        json!({"keys": [{"kty": "RSA", "n": b64u(&[0xff; 1024]), "e": "AQAB"}]}),
        json!({"keys": [{"kty": "OKP", "crv": "X25519", "x": b64u(&[1; 32])}]}),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64u(&[1; 31])}]}),
        json!({"keys": [{"kty": 5}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "HS256", "x": good["x"], "y": good["y"]}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "none", "x": good["x"], "y": good["y"]}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "enc", "x": good["x"], "y": good["y"]}]}),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "key_ops": ["sign"], "x": good["x"], "y": good["y"]}]}),
        json!({"keys": vec![good.clone(); MAX_JWKS_KEYS + 1]}),
    ];
    for case in cases {
        assert!(parse_jwks(&case, &all, true).is_err(), "{case}");
    }
}

#[test]
fn rsa_jwk_without_alg_binds_each_allowed_rsa_alg() {
    let kp = RS256KeyPair::generate(2048).unwrap();
    let c = kp.public_key().to_components();
    let jwk = json!({"kty": "RSA", "kid": "r", "n": b64u(&c.n), "e": b64u(&c.e)});
    let allowed = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
    let (set, _) = parse_jwks(&json!({"keys": [jwk]}), &allowed, true).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.candidates(Algorithm::RS256, Some("r")).count(), 1);
    assert_eq!(set.candidates(Algorithm::PS256, Some("r")).count(), 1);
    assert_eq!(set.candidates(Algorithm::RS512, Some("r")).count(), 0);
}

fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    json!({"keys": [{"kty": "RSA", "alg": "RS256", "n": b64u(n), "e": b64u(e)}]})
}

#[test]
fn rsa_keys_need_the_exponent_65537_and_2048_to_4096_bits() {
    let c = RS256KeyPair::generate(2048).unwrap().public_key().to_components();
    let rs = [Algorithm::RS256];
    assert!(parse_jwks(&rsa_jwk(&c.n, &c.e), &rs, true).is_ok());
    // leading zero bytes count for nothing
    assert!(parse_jwks(&rsa_jwk(&[&[0, 0][..], &c.n].concat(), &[0, 1, 0, 1]), &rs, true).is_ok());
    for e in [&[3u8][..], &[1, 0, 0, 0, 1], &[0x01, 0x00, 0x03], &[2], &[1]] {
        let err = parse_jwks(&rsa_jwk(&c.n, e), &rs, true).unwrap_err();
        assert!(err.0.contains("65537"), "e {e:?}: {err}");
    }
    // 2047 bits: 256 bytes, the top bit clear
    let mut short = c.n.clone();
    short[0] = (short[0] & 0x7f) | 0x40;
    let err = parse_jwks(&rsa_jwk(&short, &c.e), &rs, true).unwrap_err();
    assert!(err.0.contains("2047 bits"), "{err}");
    let long = [&[1u8][..], &c.n, &c.n].concat();
    assert!(parse_jwks(&rsa_jwk(&long, &c.e), &rs, true)
        .unwrap_err()
        .0
        .contains("4097 bits"));
    let mut even = c.n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    assert!(parse_jwks(&rsa_jwk(&even, &c.e), &rs, true).is_err(), "an even modulus");
    // the same rules for PEM keys
    let pem = |n: &[u8], e: u32| {
        use rsa::pkcs8::EncodePublicKey;
        let key = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from(e)).unwrap();
        key.to_public_key_pem(Default::default()).unwrap()
    };
    let mut n1024 = c.n[..128].to_vec();
    n1024[0] |= 0x80;
    n1024[127] |= 1;
    assert!(BoundKey::from_pem(Algorithm::RS256, &pem(&n1024, 65537), None).is_err());
    assert!(BoundKey::from_pem(Algorithm::RS256, &pem(&c.n, 65537), None).is_ok());
    assert!(BoundKey::from_pem(Algorithm::PS256, &pem(&c.n, 3), None).is_err());
}

#[test]
fn rsa_and_p256_keys_get_the_verifiers_of_this_build() {
    let built = if cfg!(feature = "rustcrypto-verify") {
        "RustCrypto"
    } else {
        "edge-auth"
    };
    assert_eq!(RSA_AND_P256_VERIFIERS, built);
    let c = RS256KeyPair::generate(2048).unwrap().public_key().to_components();
    let jwks = json!({"keys": [
        {"kty": "RSA", "n": b64u(&c.n), "e": b64u(&c.e)},
        ec_jwk().1,
        {"kty": "EC", "crv": "P-384", "x": b64u(&[0; 48]), "y": b64u(&[0; 48])},
    ]});
    let (set, skipped) = parse_jwks(&jwks, &Algorithm::ALL, false).unwrap();
    assert_eq!(skipped.len(), 1, "(0, 0) is not a P-384 point");
    assert_eq!(set.len(), 7, "six RSA algorithms and ES256");
    for key in set.iter() {
        assert_eq!(key.implementation(), built, "{:?}", key.alg());
    }
    let es384 = ES384KeyPair::generate().public_key().to_pem().unwrap();
    let ed = Ed25519KeyPair::generate().public_key().to_pem();
    assert_eq!(
        BoundKey::from_pem(Algorithm::ES384, &es384, None)
            .unwrap()
            .implementation(),
        "p384"
    );
    assert_eq!(
        BoundKey::from_pem(Algorithm::EdDSA, &ed, None)
            .unwrap()
            .implementation(),
        "ed25519-compact"
    );
    assert_eq!(
        BoundKey::hmac(Algorithm::HS256, &[7; 32], None)
            .unwrap()
            .implementation(),
        "hmac"
    );
}

#[test]
fn hmac_secrets_must_be_long_enough() {
    assert!(BoundKey::hmac(Algorithm::HS256, &[7; 31], None).is_err());
    assert!(BoundKey::hmac(Algorithm::HS256, &[7; 32], None).is_ok());
    assert!(BoundKey::hmac(Algorithm::HS512, &[7; 63], None).is_err());
    assert!(BoundKey::hmac(Algorithm::RS256, &[7; 64], None).is_err());
}

#[test]
fn pem_keys_parse_and_hmac_pem_is_refused() {
    let kp = Ed25519KeyPair::generate();
    let pem = kp.public_key().to_pem();
    assert!(BoundKey::from_pem(Algorithm::EdDSA, &pem, None).is_ok());
    assert!(BoundKey::from_pem(Algorithm::ES256, &pem, None).is_err());
    assert!(BoundKey::from_pem(Algorithm::HS256, &pem, None).is_err());
    assert!(BoundKey::from_pem(
        Algorithm::EdDSA,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        None
    )
    .is_err());
    let dbg = format!(
        "{:?}",
        BoundKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef", None).unwrap()
    );
    assert!(!dbg.contains("0123456789"), "{dbg}");
}

#[test]
fn fingerprints_name_the_algorithm_kid_and_material() {
    let secret = [7u8; 64];
    let fp = |alg, secret: &[u8], kid: Option<&str>| {
        *BoundKey::hmac(alg, secret, kid.map(String::from))
            .unwrap()
            .fingerprint()
    };
    let base = fp(Algorithm::HS256, &secret, Some("k1"));
    assert_eq!(base, fp(Algorithm::HS256, &secret, Some("k1")), "stable");
    assert_ne!(base, fp(Algorithm::HS384, &secret, Some("k1")));
    assert_ne!(base, fp(Algorithm::HS256, &secret, Some("k2")));
    assert_ne!(base, fp(Algorithm::HS256, &secret, None));
    assert_ne!(base, fp(Algorithm::HS256, &[8u8; 64], Some("k1")));
    // length-prefixed: moving a byte between the kid and the material changes it
    assert_ne!(
        fp(Algorithm::HS256, &[b'1'; 33], Some("k")),
        fp(Algorithm::HS256, &[b'1'; 32], Some("k1"))
    );
}

/// A fixed P-521 signing key (the tests need no randomness to sign).
fn p521_signer() -> ::p521::ecdsa::SigningKey {
    let mut scalar = [0u8; 66];
    scalar[20..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i as u8).wrapping_mul(37) | 1);
    ::p521::ecdsa::SigningKey::from_slice(&scalar).unwrap()
}

fn p521_jwk(signer: &::p521::ecdsa::SigningKey) -> Value {
    let point = signer.verifying_key().to_sec1_point(false);
    let raw = point.as_bytes();
    json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": b64u(&raw[1..67]), "y": b64u(&raw[67..133])})
}

/// ES512 keys come from a JWKS (`crv` `P-521`, 66-byte coordinates) or a
/// PEM, are bound to ES512 only, and verify the 132-byte `r || s` JWS form.
#[test]
fn es512_keys_from_jwks_and_pem_are_bound_to_es512() {
    use ::p521::ecdsa::signature::Signer as _;
    use ::p521::pkcs8::EncodePublicKey as _;
    let signer = p521_signer();
    let jwk = p521_jwk(&signer);
    let input = "eyJhbGciOiJFUzUxMiJ9.e30";
    let sig: ::p521::ecdsa::Signature = signer.sign(input.as_bytes());
    let token = format!("{input}.{}", b64u(&sig.to_bytes()));
    assert_eq!(sig.to_bytes().len(), 132);
    let (set, _) = parse_jwks(&json!({"keys": [jwk.clone()]}), &Algorithm::ALL, true).unwrap();
    assert_eq!(set.len(), 1, "a P-521 key without alg binds to ES512 only");
    let key = set.candidates(Algorithm::ES512, Some("p521")).next().unwrap();
    assert_eq!(key.implementation(), "p521");
    assert!(key.verify_token(&token));
    let mut tampered = sig.to_bytes().to_vec();
    tampered[100] ^= 1;
    assert!(!key.verify_token(&format!("{input}.{}", b64u(&tampered))));
    assert!(!key.verify_token(&format!("{input}x.{}", b64u(&sig.to_bytes()))));
    assert!(!key.verify_token(&format!("{input}.{}", b64u(&sig.to_bytes()[..131]))));
    assert!(!key.verify_token(&format!("{input}.{}", b64u(&[&sig.to_bytes()[..], &[0]].concat()))));
    for other in [Algorithm::ES256, Algorithm::ES384] {
        assert_eq!(set.candidates(other, None).count(), 0, "{other}");
    }
    let pem = signer.verifying_key().to_public_key_pem(Default::default()).unwrap();
    let from_pem = BoundKey::from_pem(Algorithm::ES512, &pem, None).unwrap();
    assert!(from_pem.verify_token(&token));
    assert!(
        BoundKey::from_pem(Algorithm::ES384, &pem, None).is_err(),
        "a P-521 PEM is not ES384's"
    );
    let p384 = ES384KeyPair::generate().public_key().to_pem().unwrap();
    assert!(
        BoundKey::from_pem(Algorithm::ES512, &p384, None).is_err(),
        "a P-384 PEM is not ES512's"
    );

    // hostile JWKs: short or long coordinates, another curve's alg, not a point
    let bad = [
        json!({"kty": "EC", "crv": "P-521", "x": jwk["x"], "y": b64u(&[1; 65])}),
        json!({"kty": "EC", "crv": "P-521", "x": b64u(&[0; 67]), "y": jwk["y"]}),
        json!({"kty": "EC", "crv": "P-521", "alg": "ES384", "x": jwk["x"], "y": jwk["y"]}),
        json!({"kty": "EC", "crv": "P-384", "alg": "ES512", "x": jwk["x"], "y": jwk["y"]}),
        json!({"kty": "EC", "crv": "P-521", "x": b64u(&[0; 66]), "y": b64u(&[0; 66])}),
        json!({"kty": "EC", "crv": "p-521", "x": jwk["x"], "y": jwk["y"]}),
    ];
    for jwk in bad {
        assert!(
            parse_jwks(&json!({"keys": [jwk.clone()]}), &Algorithm::ALL, true).is_err(),
            "{jwk}"
        );
    }
    // a provider that does not list ES512 gets no key from it
    assert!(parse_jwks(&json!({"keys": [jwk]}), &[Algorithm::ES384], true).is_err());
}
