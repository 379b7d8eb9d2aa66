//! Verification keys, each bound to exactly one algorithm.
//!
//! A key never verifies a token whose `alg` differs from the algorithm it is
//! bound to, so an RS256 public key can never be (mis)used as an HMAC secret
//! and `alg: none` has no key at all. Keys are decoded once, when the
//! configuration is loaded or a remote JWKS arrives, never per request.

use std::fmt;

use jwt_simple::prelude::*;
use serde_json::Value;

use sha2::{Digest, Sha256};

use crate::b64;
use crate::verify::{Hash, Padding, Verifier};

pub use crate::verify::RSA_AND_P256_VERIFIERS;

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
    ES512,
    EdDSA,
}

/// The family of key material an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 13] = [
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
        Algorithm::ES512,
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
            Algorithm::ES512 => "ES512",
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
            Algorithm::ES512 => KeyFamily::P521,
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

/// A verification key bound to one algorithm, with an optional key id.
pub struct BoundKey {
    kid: Option<String>,
    alg: Algorithm,
    /// The key, prepared once for its algorithm's verifier ([`crate::verify`]).
    verifier: Verifier,
    /// See [`BoundKey::fingerprint`].
    fingerprint: KeyFingerprint,
}

/// A digest naming a key exactly: its algorithm, `kid` and key material.
pub type KeyFingerprint = [u8; 16];

/// The first 16 bytes of SHA-256 over a label, the algorithm, the `kid` and
/// the key material, each length-prefixed (so no two keys share an input).
fn fingerprint(alg: Algorithm, kid: Option<&str>, material: &[&[u8]]) -> KeyFingerprint {
    let mut h = Sha256::new();
    let kid = kid.map(str::as_bytes);
    for part in [
        b"edge-auth key".as_slice(),
        alg.name().as_bytes(),
        kid.unwrap_or(b"\xff"),
    ]
    .into_iter()
    .chain(material.iter().copied())
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
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

/// The RSA public exponent edge-auth accepts (docs/configuration.md 3.2).
const RSA_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// The RSA modulus sizes edge-auth accepts, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

impl BoundKey {
    /// Whether `signature` is this key's signature of `signing_input` (the
    /// token's `header.payload`, as sent).
    pub(crate) fn verify_signing_input(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(signing_input, signature)
    }

    /// Verifies a token's signature: the bytes before the last `.` are the
    /// signing input, the base64url after it the signature. The caller has
    /// already checked the token's shape, its `alg` and its claims.
    pub(crate) fn verify_token(&self, token: &str) -> bool {
        let Some((input, signature)) = token.rsplit_once('.') else {
            return false;
        };
        // 1024 bytes: the largest RSA modulus the RSA verifiers accept (8192 bits)
        // (and an ES512 signature, 132 bytes)
        if self.verifier.max_signature_len() > 96 {
            let mut buf = [0u8; 1024];
            b64::decode_url_into(signature, &mut buf).is_some_and(|s| self.verify_signing_input(input.as_bytes(), s))
        } else {
            let mut buf = [0u8; 96];
            b64::decode_url_into(signature, &mut buf).is_some_and(|s| self.verify_signing_input(input.as_bytes(), s))
        }
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Names this exact key (algorithm, `kid` and material): what the table
    /// of verified tokens the workers share records as the key that verified
    /// a token, so that a reader trusts the entry only while it still holds
    /// that key. Not secret-revealing: a truncated digest (an HMAC secret's
    /// included) that only the filter's own workers read.
    pub fn fingerprint(&self) -> &KeyFingerprint {
        &self.fingerprint
    }

    /// Which implementation checks this key's signatures (for tests).
    #[cfg(test)]
    pub(crate) fn implementation(&self) -> &'static str {
        self.verifier.implementation()
    }

    /// An HMAC key from secret bytes. Refuses secrets shorter than the hash.
    pub fn hmac(alg: Algorithm, secret: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        let hash = match alg {
            Algorithm::HS256 => Hash::Sha256,
            Algorithm::HS384 => Hash::Sha384,
            Algorithm::HS512 => Hash::Sha512,
            _ => return Err(key_err(format!("{alg} is not an HMAC algorithm"))),
        };
        if secret.len() < alg.min_secret_len() {
            return Err(key_err(format!(
                "{alg} needs a secret of at least {} bytes, got {}",
                alg.min_secret_len(),
                secret.len()
            )));
        }
        let verifier = Verifier::hmac(hash, secret).ok_or_else(|| key_err(format!("invalid {alg} secret")))?;
        let fingerprint = fingerprint(alg, kid.as_deref(), &[secret]);
        Ok(BoundKey {
            kid,
            alg,
            verifier,
            fingerprint,
        })
    }

    /// A public key from PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(alg: Algorithm, pem: &str, kid: Option<String>) -> Result<BoundKey, KeyError> {
        let bad = |e: jwt_simple::Error| key_err(format!("not a valid {alg} public key PEM: {e}"));
        match alg.family() {
            KeyFamily::Rsa => {
                let c = RS256PublicKey::from_pem(pem).map_err(bad)?.to_components();
                BoundKey::rsa(alg, &c.n, &c.e, kid)
            }
            KeyFamily::P256 => {
                let k = ES256PublicKey::from_pem(pem).map_err(bad)?;
                BoundKey::ec(alg, &k.public_key().to_bytes_uncompressed(), kid)
            }
            KeyFamily::P384 => {
                let k = ES384PublicKey::from_pem(pem).map_err(bad)?;
                BoundKey::ec(alg, &k.public_key().to_bytes_uncompressed(), kid)
            }
            KeyFamily::P521 => {
                use ::p521::pkcs8::DecodePublicKey as _;
                let k = ::p521::ecdsa::VerifyingKey::from_public_key_pem(pem)
                    .map_err(|e| key_err(format!("not a valid {alg} public key PEM: {e}")))?;
                BoundKey::ec(alg, k.to_sec1_point(false).as_bytes(), kid)
            }
            KeyFamily::Ed25519 => {
                let k = Ed25519PublicKey::from_pem(pem).map_err(bad)?;
                BoundKey::ed25519(&k.to_bytes(), kid)
            }
            KeyFamily::Hmac => Err(key_err(format!(
                "{alg} is an HMAC algorithm: its secret comes from hmac_secrets (an environment variable), never from a PEM"
            ))),
        }
    }

    /// An RSA key: a modulus of 2048 to 4096 bits and the exponent 65537.
    fn rsa(alg: Algorithm, n: &[u8], e: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        let n = n
            .get(n.iter().position(|b| *b != 0).unwrap_or(n.len())..)
            .unwrap_or_default();
        let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
        if !RSA_BITS.contains(&bits) {
            return Err(key_err(format!("RSA modulus of {bits} bits (2048 to 4096 accepted)")));
        }
        let e = e
            .get(e.iter().position(|b| *b != 0).unwrap_or(e.len())..)
            .unwrap_or_default();
        if e != RSA_EXPONENT {
            return Err(key_err("RSA public exponent other than 65537"));
        }
        let (padding, hash) = match alg {
            Algorithm::RS256 => (Padding::Pkcs1v15, Hash::Sha256),
            Algorithm::RS384 => (Padding::Pkcs1v15, Hash::Sha384),
            Algorithm::RS512 => (Padding::Pkcs1v15, Hash::Sha512),
            Algorithm::PS256 => (Padding::Pss, Hash::Sha256),
            Algorithm::PS384 => (Padding::Pss, Hash::Sha384),
            Algorithm::PS512 => (Padding::Pss, Hash::Sha512),
            _ => return Err(key_err(format!("{alg} cannot use an RSA key"))),
        };
        let verifier = Verifier::rsa(n, e, padding, hash).ok_or_else(|| key_err("invalid RSA key (even modulus)"))?;
        let fingerprint = fingerprint(alg, kid.as_deref(), &[n, e]);
        Ok(BoundKey {
            kid,
            alg,
            verifier,
            fingerprint,
        })
    }

    /// An ES256, ES384 or ES512 key from its uncompressed SEC1 encoding.
    fn ec(alg: Algorithm, sec1: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        let verifier = match alg {
            Algorithm::ES256 => Verifier::p256(sec1).ok_or_else(|| key_err("invalid P-256 point"))?,
            Algorithm::ES384 => Verifier::p384(sec1).ok_or_else(|| key_err("invalid P-384 point"))?,
            Algorithm::ES512 => Verifier::p521(sec1).ok_or_else(|| key_err("invalid P-521 point"))?,
            _ => return Err(key_err(format!("{alg} cannot use an EC key"))),
        };
        let fingerprint = fingerprint(alg, kid.as_deref(), &[sec1]);
        Ok(BoundKey {
            kid,
            alg,
            verifier,
            fingerprint,
        })
    }

    /// An EdDSA (Ed25519) key from its 32 bytes.
    fn ed25519(x: &[u8], kid: Option<String>) -> Result<BoundKey, KeyError> {
        if x.len() != 32 {
            return Err(key_err("Ed25519 \"x\" must be 32 bytes"));
        }
        let verifier = Verifier::ed25519(x).ok_or_else(|| key_err("invalid Ed25519 key"))?;
        let fingerprint = fingerprint(Algorithm::EdDSA, kid.as_deref(), &[x]);
        Ok(BoundKey {
            kid,
            alg: Algorithm::EdDSA,
            verifier,
            fingerprint,
        })
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
            Some("P-521") => KeyFamily::P521,
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
        KeyFamily::P256 | KeyFamily::P384 | KeyFamily::P521 => {
            // RFC 7518 6.2.1.2: each coordinate is the full size of the field
            let len = match family {
                KeyFamily::P256 => 32,
                KeyFamily::P384 => 48,
                _ => 66,
            };
            let x = jwk_bytes(jwk, "x")?;
            let y = jwk_bytes(jwk, "y")?;
            if x.len() != len || y.len() != len {
                return Err(key_err(format!("EC coordinates must be {len} bytes each")));
            }
            let mut sec1 = Vec::with_capacity(1 + 2 * len);
            sec1.push(4);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            out.push(BoundKey::ec(algs[0], &sec1, kid)?);
        }
        KeyFamily::Ed25519 => out.push(BoundKey::ed25519(&jwk_bytes(jwk, "x")?, kid)?),
        KeyFamily::Hmac => return Err(key_err("symmetric keys are not accepted in a JWKS")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
