//! Verification keys, each bound to exactly one algorithm.
//!
//! A key never verifies a token whose `alg` differs from the algorithm it is
//! bound to, so an RS256 public key can never be (mis)used as an HMAC secret
//! and `alg: none` has no key at all. Keys are decoded once, when the
//! configuration is loaded or a remote JWKS arrives, never per request.

use std::fmt;

use jwt_simple::prelude::*;
use serde_json::Value;

use crate::b64;
use crate::verify::p256::P256Public;
use crate::verify::rsa::{Hash, Padding, RsaPublic};

/// The JWS algorithms edge-auth verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The family of key material an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Parses a JOSE `alg` name. Exact and case-sensitive, as RFC 7515 requires:
    /// `none`, `hs256` and unknown names are not algorithms.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            Algorithm::ES384 => KeyFamily::P384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// Minimum HMAC secret length in bytes (RFC 7518 3.2: at least the hash size).
    pub fn min_secret_len(self) -> usize {
        match self {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decoded key material, one variant per algorithm.
enum Material {
    HS256(HS256Key),
    HS384(HS384Key),
    HS512(HS512Key),
    RS256(RS256PublicKey),
    RS384(RS384PublicKey),
    RS512(RS512PublicKey),
    PS256(PS256PublicKey),
    PS384(PS384PublicKey),
    PS512(PS512PublicKey),
    ES256(ES256PublicKey),
    ES384(ES384PublicKey),
    EdDSA(Ed25519PublicKey),
}

/// A verification key bound to one algorithm, with an optional key id.
pub struct BoundKey {
    kid: Option<String>,
    alg: Algorithm,
    material: Material,
    /// RS/PS keys, prepared once for the edge's own verifier ([`crate::verify::rsa`]).
    rsa: Option<RsaPublic>,
    /// ES256 keys, prepared once for the edge's own verifier ([`crate::verify::p256`]).
    p256: Option<P256Public>,
}

impl fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material (an HMAC key is a secret).
        f.debug_struct("BoundKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn key_err(msg: impl Into<String>) -> KeyError {
    KeyError(msg.into())
}

impl BoundKey {
    fn new(kid: Option<String>, alg: Algorithm, material: Material) -> BoundKey {
        let components = match &material {
            Material::RS256(k) => Some(k.to_components()),
            Material::RS384(k) => Some(k.to_components()),
            Material::RS512(k) => Some(k.to_components()),
            Material::PS256(k) => Some(k.to_components()),
            Material::PS384(k) => Some(k.to_components()),
            Material::PS512(k) => Some(k.to_components()),
            _ => None,
        };
        let rsa = components.and_then(|c| RsaPublic::new(&c.n, &c.e));
        let p256 = match &material {
            Material::ES256(k) => P256Public::from_uncompressed(&k.public_key().to_bytes_uncompressed()),
            _ => None,
        };
        BoundKey {
            kid,
            alg,
            material,
            rsa,
            p256,
        }
    }

    /// Verifies an RS/PS/ES256 token's signature with the edge's own verifier:
    /// `Some(valid)`, or `None` for other keys (verified by jwt-simple). The
    /// caller has already checked `alg`, the structure and the claims.
    pub(crate) fn verify_fast(&self, token: &str) -> Option<bool> {
        if let Some(key) = &self.p256 {
            let (input, signature) = token.rsplit_once('.')?;
            let mut buf = [0u8; 64];
            return Some(b64::decode_url_into(signature, &mut buf).is_some_and(|s| key.verify(input.as_bytes(), s)));
        }
        let key = self.rsa.as_ref()?;
        let (padding, hash) = match self.alg {
            Algorithm::RS256 => (Padding::Pkcs1v15, Hash::Sha256),
            Algorithm::RS384 => (Padding::Pkcs1v15, Hash::Sha384),
            Algorithm::RS512 => (Padding::Pkcs1v15, Hash::Sha512),
            Algorithm::PS256 => (Padding::Pss, Hash::Sha256),
            Algorithm::PS384 => (Padding::Pss, Hash::Sha384),
            Algorithm::PS512 => (Padding::Pss, Hash::Sha512),
            _ => return None,
        };
        let Some((input, signature)) = token.rsplit_once('.') else {
            return Some(false);
        };
        // 1024 bytes: the largest modulus RsaPublic accepts (8192 bits)
        let mut buf = [0u8; 1024];
        let Some(signature) = b64::decode_url_into(signature, &mut buf) else {
            return Some(false);
        };
        Some(key.verify(padding, hash, input.as_bytes(), signature))
    }
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// An HMAC key from secret bytes. Refuses secrets shorter than the hash.
    pub fn hmac(alg: Algorithm, secret: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        if alg.family() != KeyFamily::Hmac {
            return Err(key_err(format!("{alg} is not an HMAC algorithm")));
        }
        if secret.len() < alg.min_secret_len() {
            return Err(key_err(format!(
                "{alg} needs a secret of at least {} bytes, got {}",
                alg.min_secret_len(),
                secret.len()
            )));
        }
        let material = match alg {
            Algorithm::HS384 => Material::HS384(HS384Key::from_bytes(secret)),
            Algorithm::HS512 => Material::HS512(HS512Key::from_bytes(secret)),
            _ => Material::HS256(HS256Key::from_bytes(secret)),
        };
        Ok(BoundKey::new(kid, alg, material))
    }

    /// A public key from PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(alg: Algorithm, pem: &str, kid: Option<String>) -> Result<BoundKey, KeyError> {
        let bad = |e: jwt_simple::Error| key_err(format!("not a valid {alg} public key PEM: {e}"));
        let material = match alg {
            Algorithm::RS256 => Material::RS256(RS256PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::RS384 => Material::RS384(RS384PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::RS512 => Material::RS512(RS512PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::PS256 => Material::PS256(PS256PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::PS384 => Material::PS384(PS384PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::PS512 => Material::PS512(PS512PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::ES256 => Material::ES256(ES256PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::ES384 => Material::ES384(ES384PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::EdDSA => Material::EdDSA(Ed25519PublicKey::from_pem(pem).map_err(bad)?),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(key_err(format!(
                    "{alg} is an HMAC algorithm: its secret comes from hmac_secrets (an environment variable), never from a PEM"
                )))
            }
        };
        Ok(BoundKey::new(kid, alg, material))
    }

    fn rsa(alg: Algorithm, n: &[u8], e: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        let bits = n.iter().position(|b| *b != 0).map_or(0, |i| (n.len() - i) * 8);
        if !(2048..=4096).contains(&bits) {
            return Err(key_err(format!("RSA modulus of {bits} bits (2048 to 4096 accepted)")));
        }
        let bad = |e: jwt_simple::Error| key_err(format!("invalid RSA key: {e}"));
        let material = match alg {
            Algorithm::RS256 => Material::RS256(RS256PublicKey::from_components(n, e).map_err(bad)?),
            Algorithm::RS384 => Material::RS384(RS384PublicKey::from_components(n, e).map_err(bad)?),
            Algorithm::RS512 => Material::RS512(RS512PublicKey::from_components(n, e).map_err(bad)?),
            Algorithm::PS256 => Material::PS256(PS256PublicKey::from_components(n, e).map_err(bad)?),
            Algorithm::PS384 => Material::PS384(PS384PublicKey::from_components(n, e).map_err(bad)?),
            Algorithm::PS512 => Material::PS512(PS512PublicKey::from_components(n, e).map_err(bad)?),
            _ => return Err(key_err(format!("{alg} cannot use an RSA key"))),
        };
        Ok(BoundKey::new(kid, alg, material))
    }

    /// Verifies the token's signature (and, redundantly, its time claims) with
    /// jwt-simple. The caller has already checked `alg` and the claims.
    pub(crate) fn verify(&self, token: &str, options: VerificationOptions) -> Result<(), jwt_simple::Error> {
        let o = Some(options);
        match &self.material {
            Material::HS256(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::HS384(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::HS512(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::RS256(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::RS384(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::RS512(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::PS256(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::PS384(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::PS512(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::ES256(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::ES384(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
            Material::EdDSA(k) => k.verify_token::<NoCustomClaims>(token, o).map(drop),
        }
    }
}

/// The keys of one provider (or one source of a provider).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<BoundKey>,
}

/// Most keys a JWKS may hold; more is refused (a JWKS is small, a huge one is an attack).
pub const MAX_JWKS_KEYS: usize = 64;

impl KeySet {
    pub fn new(keys: Vec<BoundKey>) -> KeySet {
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BoundKey> {
        self.keys.iter()
    }

    pub fn extend(&mut self, other: KeySet) {
        self.keys.extend(other.keys);
    }

    /// Whether any key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that may verify a token with this `alg` and `kid`: the key's
    /// algorithm must match, and a token naming a `kid` only meets keys with
    /// that `kid`. A token without `kid` meets every key of its algorithm.
    pub fn candidates<'a>(&'a self, alg: Algorithm, kid: Option<&'a str>) -> impl Iterator<Item = &'a BoundKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
    }
}

/// A JWKS key that was passed over, and why (remote sets skip bad keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub reason: String,
}

/// Parses a JWK Set (RFC 7517) into keys bound to the `allowed` algorithms.
///
/// A key with `alg` is bound to that algorithm only (and skipped if the
/// provider does not allow it); a key without `alg` is bound to every allowed
/// algorithm of its family. `use` other than `sig`, `key_ops` without
/// `verify`, symmetric (`oct`) keys and unknown key types are skipped. With
/// `strict`, the first skipped key is an error naming the key, as inline JWKS
/// in the configuration must be exactly right.
pub fn parse_jwks(jwks: &Value, allowed: &[Algorithm], strict: bool) -> Result<(KeySet, Vec<SkippedKey>), KeyError> {
    let keys = jwks
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| key_err("a JWKS is an object with a \"keys\" array"))?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(key_err(format!(
            "{} keys in the JWKS (at most {MAX_JWKS_KEYS})",
            keys.len()
        )));
    }
    let mut set = Vec::new();
    let mut skipped = Vec::new();
    for (index, jwk) in keys.iter().enumerate() {
        match parse_jwk(jwk, allowed) {
            Ok(bound) => set.extend(bound),
            Err(e) if strict => return Err(key_err(format!("keys[{index}]: {e}"))),
            Err(e) => skipped.push(SkippedKey { index, reason: e.0 }),
        }
    }
    Ok((KeySet::new(set), skipped))
}

fn jwk_str<'a>(jwk: &'a serde_json::Map<String, Value>, field: &str) -> Result<Option<&'a str>, KeyError> {
    match jwk.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(key_err(format!("\"{field}\" must be a string"))),
    }
}

fn jwk_bytes(jwk: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<u8>, KeyError> {
    let s = jwk_str(jwk, field)?.ok_or_else(|| key_err(format!("missing \"{field}\"")))?;
    b64::decode_url(s.trim_end_matches('=')).ok_or_else(|| key_err(format!("\"{field}\" is not base64url")))
}

fn parse_jwk(jwk: &Value, allowed: &[Algorithm]) -> Result<Vec<BoundKey>, KeyError> {
    let jwk = jwk.as_object().ok_or_else(|| key_err("a key must be an object"))?;
    let kty = jwk_str(jwk, "kty")?.ok_or_else(|| key_err("missing \"kty\""))?;
    let kid = jwk_str(jwk, "kid")?.map(str::to_owned);
    if let Some(u) = jwk_str(jwk, "use")? {
        if u != "sig" {
            return Err(key_err(format!("\"use\" is \"{u}\", not \"sig\"")));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err(key_err("\"key_ops\" does not include \"verify\""));
        }
    }
    let family = match kty {
        "RSA" => KeyFamily::Rsa,
        "EC" => match jwk_str(jwk, "crv")? {
            Some("P-256") => KeyFamily::P256,
            Some("P-384") => KeyFamily::P384,
            other => return Err(key_err(format!("unsupported EC curve {other:?}"))),
        },
        "OKP" => match jwk_str(jwk, "crv")? {
            Some("Ed25519") => KeyFamily::Ed25519,
            other => return Err(key_err(format!("unsupported OKP curve {other:?}"))),
        },
        "oct" => {
            return Err(key_err(
                "symmetric (\"oct\") keys are not accepted in a JWKS: use hmac_secrets",
            ))
        }
        other => return Err(key_err(format!("unsupported key type \"{other}\""))),
    };
    let algs: Vec<Algorithm> = match jwk_str(jwk, "alg")? {
        Some(name) => {
            let alg = Algorithm::from_name(name).ok_or_else(|| key_err(format!("unsupported \"alg\" \"{name}\"")))?;
            if alg.family() != family {
                return Err(key_err(format!("\"alg\" {alg} does not fit a {kty} key")));
            }
            if !allowed.contains(&alg) {
                return Err(key_err(format!("\"alg\" {alg} is not among the provider's algorithms")));
            }
            vec![alg]
        }
        None => allowed.iter().copied().filter(|a| a.family() == family).collect(),
    };
    if algs.is_empty() {
        return Err(key_err(format!("no allowed algorithm uses a {kty} key")));
    }
    let mut out = Vec::with_capacity(algs.len());
    match family {
        KeyFamily::Rsa => {
            let n = jwk_bytes(jwk, "n")?;
            let e = jwk_bytes(jwk, "e")?;
            if e.is_empty() || e.len() > 8 {
                return Err(key_err("invalid RSA exponent"));
            }
            for alg in algs {
                out.push(BoundKey::rsa(alg, &n, &e, kid.clone())?);
            }
        }
        KeyFamily::P256 | KeyFamily::P384 => {
            let len = if family == KeyFamily::P256 { 32 } else { 48 };
            let x = jwk_bytes(jwk, "x")?;
            let y = jwk_bytes(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(key_err(format!("EC coordinates must be {len} bytes each")));
            }
            let mut sec1 = Vec::with_capacity(1 + 2 * len);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let material = if family == KeyFamily::P256 {
                Material::ES256(
                    ES256PublicKey::from_bytes(&sec1).map_err(|e| key_err(format!("invalid P-256 point: {e}")))?,
                )
            } else {
                Material::ES384(
                    ES384PublicKey::from_bytes(&sec1).map_err(|e| key_err(format!("invalid P-384 point: {e}")))?,
                )
            };
            out.push(BoundKey::new(kid, algs[0], material));
        }
        KeyFamily::Ed25519 => {
            let x = jwk_bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err(key_err("Ed25519 \"x\" must be 32 bytes"));
            }
            let key = Ed25519PublicKey::from_bytes(&x).map_err(|e| key_err(format!("invalid Ed25519 key: {e}")))?;
            out.push(BoundKey::new(kid, Algorithm::EdDSA, Material::EdDSA(key)));
        }
        KeyFamily::Hmac => return Err(key_err("symmetric keys are not accepted in a JWKS")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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
        for bad in ["none", "None", "hs256", "HS256 ", "", "RS1", "ES512", "Ed25519"] {
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
        assert!(key.verify(&token, VerificationOptions::default()).is_ok());
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
}
