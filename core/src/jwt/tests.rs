use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config;
use jwt_simple::prelude::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn provider_json(extra: Value) -> Value {
    let mut p = json!({
        "name": "p", "issuer": "https://iss", "audiences": ["api", "other"],
        "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "S", "alg": "HS256", "kid": "h1"}],
        "leeway_s": 30
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn provider(extra: Value, es_jwks: Option<Value>) -> Provider {
    let mut p = provider_json(extra);
    if let Some(j) = es_jwks {
        p["jwks"] = j;
    }
    let doc = json!({"providers": [p]}).to_string();
    let env = |n: &str| (n == "S").then(|| String::from_utf8(SECRET.to_vec()).unwrap());
    config::parse(doc.as_bytes(), &env).unwrap().providers.remove(0)
}

fn hs_token(claims: Value, kid: Option<&str>) -> String {
    let mut key = HS256Key::from_bytes(SECRET);
    if let Some(k) = kid {
        key = key.with_key_id(k);
    }
    let mut c: JWTClaims<Value> = JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: json!({}),
    };
    c.custom = claims;
    key.authenticate(c).unwrap()
}

fn good_claims() -> Value {
    json!({"iss": "https://iss", "aud": "api", "sub": "alice", "iat": NOW - 10, "exp": NOW + 300})
}

fn check(token: &str, p: &Provider) -> Result<(), JwtError> {
    let t = inspect(token, 8192)?;
    check_claims(&t.claims, p, NOW)?;
    verify_signature(&t, p, &[&p.static_keys]).map(|_| ())
}

fn forge(header: Value, claims: Value, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        b64::encode_url(header.to_string().as_bytes()),
        b64::encode_url(claims.to_string().as_bytes()),
        sig
    )
}

#[test]
fn a_good_token_passes() {
    let p = provider(json!({}), None);
    assert_eq!(check(&hs_token(good_claims(), Some("h1")), &p), Ok(()));
    assert_eq!(
        check(&hs_token(good_claims(), None), &p),
        Ok(()),
        "no kid: every key of the alg is tried"
    );
}

#[test]
fn time_claims_with_leeway() {
    let p = provider(json!({}), None);
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        check(&hs_token(c, None), &p)
    };
    assert_eq!(with("exp", json!(NOW - 31)), Err(JwtError::Expired));
    assert_eq!(
        with("exp", json!(NOW - 30)),
        Err(JwtError::Expired),
        "exp + leeway is already too late"
    );
    assert_eq!(with("exp", json!(NOW - 29)), Ok(()));
    assert_eq!(with("exp", json!((NOW + 10) as f64 + 0.5)), Ok(()));
    assert_eq!(with("exp", json!("tomorrow")), Err(JwtError::Malformed));
    assert_eq!(with("exp", json!(-5)), Err(JwtError::Malformed));
    assert_eq!(with("exp", json!(1e300)), Ok(()));
    assert_eq!(with("nbf", json!(NOW + 31)), Err(JwtError::NotYetValid));
    assert_eq!(with("nbf", json!(NOW + 30)), Ok(()));
    assert_eq!(with("iat", json!(NOW + 31)), Err(JwtError::IssuedInFuture));
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::MissingExpiration));
    let lax = provider(json!({"require_expiration": false}), None);
    assert_eq!(check(&hs_token(c, None), &lax), Ok(()));
}

#[test]
fn lifetime_audience_and_required_claims() {
    let p = provider(
        json!({"max_lifetime_s": 600, "required_claims": [{"name": "sub"}, {"name": "role", "one_of": ["admin", "user"]}]}),
        None,
    );
    let mut c = good_claims();
    c["role"] = json!("user");
    assert_eq!(check(&hs_token(c.clone(), None), &p), Ok(()));
    c["role"] = json!(["guest", "admin"]);
    assert_eq!(check(&hs_token(c.clone(), None), &p), Ok(()));
    c["role"] = json!("root");
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::ClaimMismatch));
    c["role"] = json!("user");
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::MissingClaim));
    c["sub"] = Value::Null;
    assert_eq!(
        check(&hs_token(c.clone(), None), &p),
        Err(JwtError::Malformed),
        "sub must be a string"
    );
    c["sub"] = json!("a");
    c["role"] = Value::Null;
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::MissingClaim));
    c["role"] = json!("user");
    c["exp"] = json!(NOW - 10 + 601);
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::LifetimeTooLong));
    c["exp"] = json!(NOW + 100);
    c.as_object_mut().unwrap().remove("iat");
    assert_eq!(check(&hs_token(c.clone(), None), &p), Err(JwtError::LifetimeTooLong));

    let p = provider(json!({}), None);
    for aud in [json!("nope"), json!([]), json!("API")] {
        let mut c = good_claims();
        c["aud"] = aud.clone();
        assert_eq!(check(&hs_token(c, None), &p), Err(JwtError::BadAudience), "{aud}");
    }
    for aud in [json!(["api", 5]), json!({"a": 1}), json!(null), json!(7)] {
        let mut c = good_claims();
        c["aud"] = aud.clone();
        assert_eq!(check(&hs_token(c, None), &p), Err(JwtError::Malformed), "{aud}");
    }
    for (claim, v) in [
        ("sub", json!(5)),
        ("jti", json!(["a"])),
        ("nonce", json!({})),
        ("iss", json!(null)),
    ] {
        let mut c = good_claims();
        c[claim] = v;
        assert_eq!(check(&hs_token(c, None), &p), Err(JwtError::Malformed), "{claim}");
    }
    let mut c = good_claims();
    c["aud"] = json!(["x", "other"]);
    assert_eq!(check(&hs_token(c.clone(), None), &p), Ok(()));
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(check(&hs_token(c, None), &p), Err(JwtError::BadAudience));
    let mut c = good_claims();
    c["iss"] = json!("https://iss/");
    assert_eq!(check(&hs_token(c, None), &p), Err(JwtError::UnknownIssuer));
}

#[test]
fn tampering_and_key_confusion_are_refused() {
    let kp = ES256KeyPair::generate().with_key_id("e1");
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256",
            "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])}]});
    let p = provider(json!({"algorithms": ["HS256", "ES256"]}), Some(jwks));
    let claims = serde_json::from_value::<Map<String, Value>>(good_claims()).unwrap();
    let mut c = jwt_simple::prelude::Claims::with_custom_claims(claims, Duration::from_secs(60));
    c.expires_at = None;
    c.issued_at = None;
    c.invalid_before = None;
    let es = kp.sign(c).unwrap();
    assert_eq!(check(&es, &p), Ok(()));

    // flip one payload character: the signature no longer matches
    let mut parts: Vec<String> = es.split('.').map(str::to_owned).collect();
    let mut claims = good_claims();
    claims["sub"] = json!("mallory");
    parts[1] = b64::encode_url(claims.to_string().as_bytes());
    assert_eq!(check(&parts.join("."), &p), Err(JwtError::BadSignature));
    let mut sig = parts[2].clone().into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{}.{}.{}",
        es.split('.').next().unwrap(),
        es.split('.').nth(1).unwrap(),
        String::from_utf8(sig).unwrap()
    );
    assert_eq!(check(&tampered, &p), Err(JwtError::BadSignature));

    // HS256 signed with the public key bytes, presented with the EC key's kid
    let pub_as_secret = HS256Key::from_bytes(&raw).with_key_id("e1");
    let mut c2 = jwt_simple::prelude::Claims::with_custom_claims(
        serde_json::from_value::<Map<String, Value>>(good_claims()).unwrap(),
        Duration::from_secs(60),
    );
    // the claims' own iat and exp only: jwt-simple's would repeat them (a malformed token)
    c2.expires_at = None;
    c2.issued_at = None;
    c2.invalid_before = None;
    let confused = pub_as_secret.authenticate(c2).unwrap();
    assert!(matches!(
        check(&confused, &p),
        Err(JwtError::NoKey | JwtError::BadSignature)
    ));

    // alg none, in any spelling, with or without a signature
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = forge(json!({"alg": alg}), good_claims(), "");
        assert!(check(&t, &p).is_err());
        let t = forge(json!({"alg": alg}), good_claims(), "AAAA");
        assert_eq!(check(&t, &p), Err(JwtError::AlgNone));
    }
    // an algorithm that exists but is not allowed for this provider
    let rs = forge(json!({"alg": "RS256", "kid": "e1"}), good_claims(), "AAAA");
    assert_eq!(check(&rs, &p), Err(JwtError::AlgNotAllowed));
    let weird = forge(json!({"alg": "HS1"}), good_claims(), "AAAA");
    assert_eq!(check(&weird, &p), Err(JwtError::UnsupportedAlg));
    let crit = forge(
        json!({"alg": "ES256", "kid": "e1", "crit": ["exp"], "exp": 1}),
        good_claims(),
        "AAAA",
    );
    assert_eq!(check(&crit, &p), Err(JwtError::CritHeader));
    for typ in [json!("JWE"), json!(5), json!("jwtx")] {
        let t = forge(json!({"alg": "ES256", "kid": "e1", "typ": typ}), good_claims(), "AAAA");
        assert_eq!(check(&t, &p), Err(JwtError::Malformed), "{typ}");
    }
    // a header field changed after signing (here `x5t`, which jwt-simple would read with a
    // fixed type): the edge's own ES256 verifier checks the signature over the bytes as
    // sent, so it is a bad signature
    let odd = {
        let (h, rest) = es.split_once('.').unwrap();
        let mut header: Value = serde_json::from_slice(&b64::decode_url(h).unwrap()).unwrap();
        header["x5t"] = json!({"kty": "EC"});
        format!("{}.{rest}", b64::encode_url(header.to_string().as_bytes()))
    };
    assert_eq!(check(&odd, &p), Err(JwtError::BadSignature));
    let unknown = forge(json!({"alg": "ES256", "kid": "e2"}), good_claims(), "AAAA");
    assert_eq!(check(&unknown, &p), Err(JwtError::UnknownKid));
}

/// A token signed with the provider's own secret, with `extra` in its header.
fn hs_with_header(extra: Value) -> String {
    use hmac::{Mac, SimpleHmac};
    let mut header = json!({"alg": "HS256", "typ": "JWT", "kid": "h1"});
    for (k, v) in extra.as_object().unwrap() {
        header[k] = v.clone();
    }
    let signing_input = format!(
        "{}.{}",
        b64::encode_url(header.to_string().as_bytes()),
        b64::encode_url(good_claims().to_string().as_bytes())
    );
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64::encode_url(&mac.finalize().into_bytes()))
}

/// Issue 11, item 7: the docs said a `jwk` object made a token malformed, but a
/// token signed with the right key was accepted with the header ignored. A key
/// (or key location) in the header is refused before any signature work, whatever
/// its value, even on a token whose signature is valid.
#[test]
fn headers_that_bring_their_own_key_are_malformed() {
    let p = provider(json!({}), None);
    assert_eq!(check(&hs_with_header(json!({})), &p), Ok(()), "control");
    let thumb = json!({"x5t": "dGh1bWI", "x5t#S256": "dGh1bWI"});
    assert_eq!(check(&hs_with_header(thumb), &p), Ok(()), "thumbprints are ignored");
    let jwk = json!({"kty": "oct", "k": b64::encode_url(SECRET)});
    for (name, value) in [
        ("jwk", jwk),
        ("jwk", json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
        ("jwk", json!("not an object")),
        ("jwk", Value::Null),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("x5c", json!([])),
    ] {
        let t = hs_with_header(json!({ name: value }));
        assert_eq!(
            inspect(&t, 8192).map(|_| ()),
            Err(JwtError::Malformed),
            "{name}: {value}"
        );
        assert_eq!(check(&t, &p), Err(JwtError::Malformed), "{name}: {value}");
    }
}

#[test]
fn garbage_is_malformed_before_any_crypto() {
    let p = provider(json!({}), None);
    let long = "a".repeat(9000);
    let cases = [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.b.",
        "!!!.b.c",
        "a b.c.d",
        "eyJhbGciOiJIUzI1NiJ9.e30", // two parts
        "e30.e30.AAAA",             // {} header: no alg
        "W10.e30.AAAA",             // [] header
        "bnVsbA.e30.AAAA",          // null header
    ];
    for c in cases {
        assert_eq!(check(c, &p), Err(JwtError::Malformed), "{c:?}");
    }
    assert_eq!(inspect(&long, 8192).unwrap_err(), JwtError::TooLarge);
    let h = b64::encode_url(br#"{"alg":"HS256"}"#);
    for payload in [
        &b"[]"[..],
        b"null",
        b"\"x\"",
        b"{",
        b"{\"exp\":true}",
        b"{\"iat\":\"1\"}",
    ] {
        let t = format!("{h}.{}.AAAA", b64::encode_url(payload));
        assert_eq!(
            check(&t, &p),
            Err(JwtError::Malformed),
            "{:?}",
            String::from_utf8_lossy(payload)
        );
    }
    // padding and the standard alphabet are not base64url
    let t = hs_token(good_claims(), None);
    let (a, rest) = t.split_once('.').unwrap();
    assert_eq!(check(&format!("{a}=.{rest}"), &p), Err(JwtError::Malformed));
    assert!(check(&format!("{a}.{}", rest.replace('-', "+")), &p).is_err());
    let huge_header = format!("{}.e30.AAAA", "A".repeat(MAX_HEADER_B64 + 4));
    assert_eq!(inspect(&huge_header, 65536).unwrap_err(), JwtError::Malformed);
    let deep = format!(
        "{h}.{}.AAAA",
        b64::encode_url(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes())
    );
    assert_eq!(inspect(&deep, 65536).unwrap_err(), JwtError::Malformed);
}

#[test]
fn claim_header_values_are_safe() {
    assert_eq!(claim_header_value(&json!("alice")).as_deref(), Some("alice"));
    assert_eq!(claim_header_value(&json!(42)).as_deref(), Some("42"));
    assert_eq!(claim_header_value(&json!(true)).as_deref(), Some("true"));
    assert_eq!(claim_header_value(&json!(["a", "b", 3])).as_deref(), Some("a,b,3"));
    assert_eq!(claim_header_value(&json!({"a": 1})), None);
    assert_eq!(claim_header_value(&json!(["a", {"b": 1}])), None);
    assert_eq!(claim_header_value(&json!(null)), None);
    assert_eq!(claim_header_value(&json!("a\r\nx-admin: true")), None);
    assert_eq!(claim_header_value(&json!("nul\u{0}")), None);
    assert_eq!(claim_header_value(&json!("x".repeat(5000))), None);
    assert_eq!(claim_header_value(&json!("Zoë")).as_deref(), Some("Zoë"));
}

/// Signs `header.payload` as they are written, byte for byte (HS256 with the provider's
/// secret): a token whose JSON no serializer of ours would write.
fn hs_raw(header: &str, payload: &str) -> String {
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        b64::encode_url(header.as_bytes()),
        b64::encode_url(payload.as_bytes())
    );
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64::encode_url(&mac.finalize().into_bytes()))
}

#[test]
fn a_member_name_repeated_in_the_header_or_the_claims_is_malformed() {
    let p = provider(json!({}), None);
    let claims = format!(
        r#"{{"iss":"https://iss","aud":"api","sub":"alice","iat":{},"exp":{}}}"#,
        NOW - 10,
        NOW + 300
    );
    // the control: the same bytes without a repeat pass
    assert_eq!(check(&hs_raw(r#"{"alg":"HS256"}"#, &claims), &p), Ok(()));
    let repeated_sub = claims.replacen('{', r#"{"sub":"admin","#, 1);
    let repeated_nested = claims.replacen('{', r#"{"realm_access":{"roles":["user"],"roles":["admin"]},"#, 1);
    let escaped_repeat = claims.replacen('{', r#"{"s\u0075b":"admin","#, 1);
    for (what, header, payload) in [
        (
            "sub twice (last one would win)",
            r#"{"alg":"HS256"}"#,
            repeated_sub.as_str(),
        ),
        ("a nested claim twice", r#"{"alg":"HS256"}"#, repeated_nested.as_str()),
        ("sub twice, once escaped", r#"{"alg":"HS256"}"#, escaped_repeat.as_str()),
        ("alg twice", r#"{"alg":"none","alg":"HS256"}"#, claims.as_str()),
        ("kid twice", r#"{"alg":"HS256","kid":"a","kid":"b"}"#, claims.as_str()),
    ] {
        assert_eq!(check(&hs_raw(header, payload), &p), Err(JwtError::Malformed), "{what}");
    }
}
