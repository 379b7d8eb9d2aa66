//! Test key material and token signing.
//!
//! Keys are generated at test time (nothing secret is committed) with
//! jwt-simple, one per algorithm, cached per process ([`key`]): RSA key
//! generation is slow, so each of the 6 RSA keys is only made when first used.
//!
//! Tokens are assembled here, not by jwt-simple: the header and claims are
//! serialised exactly as given (`serde_json` order: keys sorted), then signed
//! with the raw primitive of the key's algorithm. That lets tests craft
//! anything: `alg: none`, `crit`, a wrong `typ`, a header `alg` that does not
//! match the key ([`sign_with_header`]), or non-JSON parts ([`sign_parts`]).
//!
//! ```ignore
//! let claims = tokens::claims("https://issuer", "api", "alice", 300);
//! let token = tokens::sign(Alg::ES256, Some(tokens::key(Alg::ES256).kid()), &claims);
//! let jwks = tokens::jwks(&[tokens::key(Alg::ES256)]);
//! ```

use std::fmt;
use std::sync::OnceLock;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use superboring::hash::MessageDigest;
use superboring::pkey::PKey;
use superboring::rsa::Padding;
use superboring::sign::Signer as RsaSigner;

/// A JWS algorithm the filter supports.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
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

impl Alg {
    /// Every algorithm.
    pub const ALL: [Alg; 13] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The asymmetric algorithms (those with a public key / JWKS entry).
    pub const ASYMMETRIC: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    /// The JOSE name (`"RS256"`, `"EdDSA"`...).
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// HS256/384/512.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// RS* and PS*.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
        )
    }

    /// The kid of the cached key [`key`]`(self)`: e.g. `"rs256-test"`.
    pub fn default_kid(self) -> String {
        format!("{}-test", self.name().to_ascii_lowercase())
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

enum Material {
    Hs256(HS256Key),
    Hs384(HS384Key),
    Hs512(HS512Key),
    Rs256(RS256KeyPair),
    Rs384(RS384KeyPair),
    Rs512(RS512KeyPair),
    Ps256(PS256KeyPair),
    Ps384(PS384KeyPair),
    Ps512(PS512KeyPair),
    Es256(ES256KeyPair),
    Es384(ES384KeyPair),
    /// jwt-simple has no ES512: RustCrypto's `p521` signs it.
    Es512(p521::ecdsa::SigningKey),
    EdDsa(Ed25519KeyPair),
}

/// A signing key for one algorithm, with a kid.
pub struct TestKey {
    alg: Alg,
    kid: String,
    material: Material,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

/// RSA modulus size of generated keys.
pub const RSA_BITS: usize = 2048;

fn rsa_der(der: Result<Vec<u8>, jwt_simple::Error>) -> Vec<u8> {
    match der {
        Ok(d) => d,
        Err(e) => panic!("cannot export RSA key: {e}"),
    }
}

macro_rules! ok_or_panic {
    ($e:expr, $what:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {}", $what, e),
        }
    };
}

impl TestKey {
    /// A fresh key for `alg` (2048-bit for RSA, 32/48/64 random bytes for HMAC).
    pub fn generate(alg: Alg, kid: &str) -> TestKey {
        let rsa = |bits| ok_or_panic!(RSAKeyPair::generate(bits), "RSA key generation");
        let material = match alg {
            Alg::HS256 => Material::Hs256(HS256Key::from_bytes(&random_bytes(32))),
            Alg::HS384 => Material::Hs384(HS384Key::from_bytes(&random_bytes(48))),
            Alg::HS512 => Material::Hs512(HS512Key::from_bytes(&random_bytes(64))),
            Alg::ES256 => Material::Es256(ES256KeyPair::generate()),
            Alg::ES384 => Material::Es384(ES384KeyPair::generate()),
            Alg::ES512 => {
                // a zero top byte keeps the random scalar below the group order
                let mut scalar = random_bytes(66);
                scalar[0] = 0;
                Material::Es512(ok_or_panic!(p521::ecdsa::SigningKey::from_slice(&scalar), "P-521 key"))
            }
            Alg::EdDSA => Material::EdDsa(Ed25519KeyPair::generate()),
            _ => {
                let der = rsa_der(rsa(RSA_BITS).to_der());
                return TestKey::rsa_from_der(alg, kid, &der);
            }
        };
        TestKey {
            alg,
            kid: kid.to_string(),
            material,
        }
    }

    /// An HMAC key (`alg` must be HS*) with the given secret bytes.
    pub fn hmac(alg: Alg, kid: &str, secret: &[u8]) -> TestKey {
        let material = match alg {
            Alg::HS256 => Material::Hs256(HS256Key::from_bytes(secret)),
            Alg::HS384 => Material::Hs384(HS384Key::from_bytes(secret)),
            Alg::HS512 => Material::Hs512(HS512Key::from_bytes(secret)),
            other => panic!("TestKey::hmac: {other} is not an HMAC algorithm"),
        };
        TestKey {
            alg,
            kid: kid.to_string(),
            material,
        }
    }

    fn rsa_from_der(alg: Alg, kid: &str, der: &[u8]) -> TestKey {
        let what = "RSA key import";
        let material = match alg {
            Alg::RS256 => Material::Rs256(ok_or_panic!(RS256KeyPair::from_der(der), what)),
            Alg::RS384 => Material::Rs384(ok_or_panic!(RS384KeyPair::from_der(der), what)),
            Alg::RS512 => Material::Rs512(ok_or_panic!(RS512KeyPair::from_der(der), what)),
            Alg::PS256 => Material::Ps256(ok_or_panic!(PS256KeyPair::from_der(der), what)),
            Alg::PS384 => Material::Ps384(ok_or_panic!(PS384KeyPair::from_der(der), what)),
            Alg::PS512 => Material::Ps512(ok_or_panic!(PS512KeyPair::from_der(der), what)),
            other => panic!("{other} is not an RSA algorithm"),
        };
        TestKey {
            alg,
            kid: kid.to_string(),
            material,
        }
    }

    /// The same key material used with another algorithm of the same family
    /// (RS*/PS* among themselves, HS* among themselves), e.g. for
    /// algorithm-confusion tests. Panics across families.
    pub fn with_alg(&self, alg: Alg, kid: &str) -> TestKey {
        if self.alg.is_rsa() && alg.is_rsa() {
            return TestKey::rsa_from_der(alg, kid, &rsa_der(self.rsa_pair().to_der()));
        }
        if let (Some(secret), true) = (self.secret(), alg.is_hmac()) {
            return TestKey::hmac(alg, kid, &secret);
        }
        if alg == self.alg {
            return match &self.material {
                Material::Es256(k) => TestKey {
                    alg,
                    kid: kid.to_string(),
                    material: Material::Es256(ok_or_panic!(ES256KeyPair::from_bytes(&k.to_bytes()), "EC import")),
                },
                Material::Es384(k) => TestKey {
                    alg,
                    kid: kid.to_string(),
                    material: Material::Es384(ok_or_panic!(ES384KeyPair::from_bytes(&k.to_bytes()), "EC import")),
                },
                Material::Es512(k) => TestKey {
                    alg,
                    kid: kid.to_string(),
                    material: Material::Es512(k.clone()),
                },
                Material::EdDsa(k) => TestKey {
                    alg,
                    kid: kid.to_string(),
                    material: Material::EdDsa(ok_or_panic!(
                        Ed25519KeyPair::from_bytes(&k.to_bytes()),
                        "Ed25519 import"
                    )),
                },
                _ => panic!("unreachable: RSA/HMAC handled above"),
            };
        }
        panic!("TestKey::with_alg: cannot use a {} key as {alg}", self.alg)
    }

    /// The same key under another kid.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        self.with_alg(self.alg, kid)
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn rsa_pair(&self) -> &RSAKeyPair {
        match &self.material {
            Material::Rs256(k) => k.key_pair(),
            Material::Rs384(k) => k.key_pair(),
            Material::Rs512(k) => k.key_pair(),
            Material::Ps256(k) => k.key_pair(),
            Material::Ps384(k) => k.key_pair(),
            Material::Ps512(k) => k.key_pair(),
            _ => panic!("{} is not an RSA key", self.alg),
        }
    }

    /// The HMAC secret (None for asymmetric keys).
    pub fn secret(&self) -> Option<Vec<u8>> {
        match &self.material {
            Material::Hs256(k) => Some(k.to_bytes()),
            Material::Hs384(k) => Some(k.to_bytes()),
            Material::Hs512(k) => Some(k.to_bytes()),
            _ => None,
        }
    }

    /// The HMAC secret as base64url (no padding), handy for config and env vars.
    pub fn secret_b64url(&self) -> Option<String> {
        self.secret().map(|s| b64url(&s))
    }

    /// The verification key as a JWK (RFC 7517/7518/8037) with `kid`, `alg`
    /// and `use: sig`: RSA `n`/`e`, EC `crv`/`x`/`y`, OKP `crv`/`x`; for HMAC,
    /// an `oct` JWK whose `k` is the secret.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.material {
            Material::Hs256(_) | Material::Hs384(_) | Material::Hs512(_) => {
                json!({"kty": "oct", "k": self.secret_b64url()})
            }
            Material::Es256(k) => {
                let point = k.key_pair().public_key().to_bytes_uncompressed();
                ec_jwk("P-256", &point, 32)
            }
            Material::Es384(k) => {
                let point = k.key_pair().public_key().to_bytes_uncompressed();
                ec_jwk("P-384", &point, 48)
            }
            Material::Es512(k) => ec_jwk("P-521", k.verifying_key().to_sec1_point(false).as_bytes(), 66),
            Material::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&k.public_key().to_bytes())})
            }
            _ => {
                let rsa = self.rsa_pair().as_ref();
                json!({"kty": "RSA", "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key as PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`);
    /// None for HMAC keys.
    pub fn public_pem(&self) -> Option<String> {
        let pem = match &self.material {
            Material::Hs256(_) | Material::Hs384(_) | Material::Hs512(_) => return None,
            Material::Es256(k) => ok_or_panic!(k.public_key().to_pem(), "PEM export"),
            Material::Es384(k) => ok_or_panic!(k.public_key().to_pem(), "PEM export"),
            Material::Es512(k) => {
                use p521::pkcs8::EncodePublicKey;
                ok_or_panic!(k.verifying_key().to_public_key_pem(Default::default()), "PEM export")
            }
            Material::EdDsa(k) => k.public_key().to_pem(),
            _ => ok_or_panic!(self.rsa_pair().public_key().to_pem(), "PEM export"),
        };
        Some(pem)
    }

    /// Signs (or MACs) `input` with this key's algorithm, returning the raw
    /// JWS signature bytes (ECDSA as fixed-size r||s).
    pub fn sign_raw(&self, input: &[u8]) -> Vec<u8> {
        match &self.material {
            Material::Hs256(k) => k.authentication_tag(input),
            Material::Hs384(k) => k.authentication_tag(input),
            Material::Hs512(k) => k.authentication_tag(input),
            Material::Es256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.key_pair().as_ref().sign(input);
                sig.to_bytes().to_vec()
            }
            Material::Es384(k) => {
                use p384::ecdsa::signature::Signer;
                let sig: p384::ecdsa::Signature = k.key_pair().as_ref().sign(input);
                sig.to_bytes().to_vec()
            }
            Material::Es512(k) => {
                use p521::ecdsa::signature::Signer;
                let sig: p521::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            Material::EdDsa(k) => k.key_pair().as_ref().sk.sign(input, None).to_vec(),
            _ => {
                let (digest, padding) = match self.alg {
                    Alg::RS256 => (MessageDigest::sha256(), Padding::PKCS1),
                    Alg::RS384 => (MessageDigest::sha384(), Padding::PKCS1),
                    Alg::RS512 => (MessageDigest::sha512(), Padding::PKCS1),
                    Alg::PS256 => (MessageDigest::sha256(), Padding::PKCS1_PSS),
                    Alg::PS384 => (MessageDigest::sha384(), Padding::PKCS1_PSS),
                    _ => (MessageDigest::sha512(), Padding::PKCS1_PSS),
                };
                let pkey = ok_or_panic!(PKey::from_rsa(self.rsa_pair().as_ref().clone()), "RSA key");
                let mut signer = ok_or_panic!(RsaSigner::new(digest, &pkey), "RSA signer");
                ok_or_panic!(signer.set_rsa_padding(padding), "RSA padding");
                ok_or_panic!(signer.update(input), "RSA update");
                ok_or_panic!(signer.sign_to_vec(), "RSA sign")
            }
        }
    }

    /// The standard header for this key: `{"alg","kid","typ":"JWT"}`
    /// (`kid` left out when None).
    pub fn header(&self, kid: Option<&str>) -> Value {
        let mut h = json!({"alg": self.alg.name(), "typ": "JWT"});
        if let Some(kid) = kid {
            h["kid"] = json!(kid);
        }
        h
    }

    /// A token with the standard header carrying this key's kid.
    pub fn sign(&self, claims: &Value) -> String {
        sign_with_header(&self.header(Some(&self.kid)), claims, self)
    }

    /// A token with the standard header carrying `kid` (or no kid).
    pub fn sign_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        sign_with_header(&self.header(kid), claims, self)
    }
}

fn ec_jwk(crv: &str, uncompressed: &[u8], len: usize) -> Value {
    assert_eq!(uncompressed.len(), 1 + 2 * len, "unexpected EC point encoding");
    json!({
        "kty": "EC",
        "crv": crv,
        "x": b64url(&uncompressed[1..1 + len]),
        "y": b64url(&uncompressed[1 + len..]),
    })
}

fn random_bytes(n: usize) -> Vec<u8> {
    // HS512Key::generate() gives 32 random bytes; stretch as needed.
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(&HS512Key::generate().to_bytes());
    }
    out.truncate(n);
    out
}

static KEYS: [OnceLock<TestKey>; Alg::ALL.len()] = [const { OnceLock::new() }; Alg::ALL.len()];

/// The process-wide key for `alg`, generated on first use, kid [`Alg::default_kid`].
pub fn key(alg: Alg) -> &'static TestKey {
    KEYS[alg.index()].get_or_init(|| TestKey::generate(alg, &alg.default_kid()))
}

/// A token signed by [`key`]`(alg)` with header `{"alg","typ":"JWT","kid"}`.
/// `kid` is written as given (None: no kid), so tests can also send an unknown kid.
pub fn sign(alg: Alg, kid: Option<&str>, claims: &Value) -> String {
    key(alg).sign_with_kid(kid, claims)
}

/// A token with exactly this header and these claims (serialised by
/// `serde_json`), signed with `key`'s algorithm whatever the header says.
pub fn sign_with_header(header: &Value, claims: &Value, key: &TestKey) -> String {
    sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes(), key)
}

/// A token from raw header and payload bytes (they need not be JSON), signed by `key`.
pub fn sign_parts(header: &[u8], payload: &[u8], key: &TestKey) -> String {
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let sig = key.sign_raw(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

/// An unsecured token `header.payload.` (empty signature), e.g. for `alg: none`.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A JWK Set `{"keys":[...]}` of the given keys' [`TestKey::jwk`].
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

/// A JWK Set of every cached asymmetric key (generates all of them).
pub fn jwks_all_public() -> Value {
    let keys: Vec<&TestKey> = Alg::ASYMMETRIC.iter().map(|a| key(*a)).collect();
    jwks(&keys)
}

/// Claims `{"iss","aud","sub","iat":now,"exp":now+ttl_s}`; add or remove
/// members with `claims["k"] = json!(..)` / `as_object_mut()`.
pub fn claims(iss: &str, aud: &str, sub: &str, ttl_s: i64) -> Value {
    let now = crate::now() as i64;
    json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl_s})
}

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

/// Decodes base64url without padding; None if invalid.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    Base64UrlSafeNoPadding::decode_to_vec(text, None).ok()
}

/// The decoded header and payload of a compact token (no verification).
pub fn decode_unverified(token: &str) -> Option<(Value, Value)> {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&b64url_decode(parts.next()?)?).ok()?;
    let payload = serde_json::from_slice(&b64url_decode(parts.next()?)?).ok()?;
    Some((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> VerificationOptions {
        VerificationOptions {
            time_tolerance: Some(Duration::from_secs(0)),
            ..Default::default()
        }
    }

    /// Every algorithm's token verifies with jwt-simple built from the exported
    /// JWK/PEM (independent of how we assembled the token).
    #[test]
    fn tokens_verify_with_exported_keys() {
        let claims = claims("https://iss", "aud", "sub", 300);
        for alg in Alg::ALL {
            // One RSA key for all six RSA algorithms keeps this test fast in
            // debug builds (RSA key generation is slow unoptimised).
            let derived;
            let k = if alg.is_rsa() && alg != Alg::RS256 {
                derived = key(Alg::RS256).with_alg(alg, &alg.default_kid());
                &derived
            } else {
                key(alg)
            };
            let token = k.sign(&claims);
            let (header, payload) = decode_unverified(&token).unwrap();
            assert_eq!(
                header,
                json!({"alg": alg.name(), "typ": "JWT", "kid": alg.default_kid()})
            );
            assert_eq!(payload, claims);
            let jwk = k.jwk().to_string();
            let pem = k.public_pem();
            let o = || Some(options());
            let verified: Result<JWTClaims<Value>, _> = match alg {
                Alg::HS256 => HS256Key::from_bytes(&k.secret().unwrap()).verify_token(&token, o()),
                Alg::HS384 => HS384Key::from_bytes(&k.secret().unwrap()).verify_token(&token, o()),
                Alg::HS512 => HS512Key::from_bytes(&k.secret().unwrap()).verify_token(&token, o()),
                Alg::RS256 => RS256PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
                Alg::RS384 => RS384PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
                Alg::RS512 => RS512PublicKey::from_pem(&pem.unwrap())
                    .unwrap()
                    .verify_token(&token, o()),
                Alg::PS256 => PS256PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
                Alg::PS384 => PS384PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
                Alg::PS512 => PS512PublicKey::from_pem(&pem.unwrap())
                    .unwrap()
                    .verify_token(&token, o()),
                Alg::ES256 => ES256PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
                Alg::ES384 => ES384PublicKey::from_pem(&pem.unwrap())
                    .unwrap()
                    .verify_token(&token, o()),
                // jwt-simple has no ES512: RustCrypto's verifier checks it
                Alg::ES512 => {
                    use p521::ecdsa::signature::Verifier;
                    use p521::pkcs8::DecodePublicKey;
                    let vk = p521::ecdsa::VerifyingKey::from_public_key_pem(&pem.unwrap()).unwrap();
                    let (input, sig) = token.rsplit_once('.').unwrap();
                    let sig = p521::ecdsa::Signature::from_slice(&b64url_decode(sig).unwrap()).unwrap();
                    vk.verify(input.as_bytes(), &sig).unwrap();
                    continue;
                }
                Alg::EdDSA => Ed25519PublicKey::from_jwk(&jwk).unwrap().verify_token(&token, o()),
            };
            let verified = verified.unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(verified.subject.as_deref(), Some("sub"), "{alg}");
        }
    }

    #[test]
    fn jwk_shapes() {
        let rs = key(Alg::RS256).jwk();
        assert_eq!((rs["kty"].as_str(), rs["e"].as_str()), (Some("RSA"), Some("AQAB")));
        assert_eq!(b64url_decode(rs["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(key(Alg::RS256).with_kid("other").jwk()["kid"], "other");
        let es = key(Alg::ES384).jwk();
        assert_eq!(es["crv"], "P-384");
        assert_eq!(b64url_decode(es["y"].as_str().unwrap()).unwrap().len(), 48);
        let ed = key(Alg::EdDSA).jwk();
        assert_eq!((ed["kty"].as_str(), ed["alg"].as_str()), (Some("OKP"), Some("EdDSA")));
        assert!(ed.get("d").is_none() && rs.get("d").is_none() && es.get("d").is_none());
        assert_eq!(key(Alg::HS256).jwk()["kty"], "oct");
        assert!(key(Alg::HS384).public_pem().is_none());
        assert!(key(Alg::ES256)
            .public_pem()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn crafted_tokens() {
        let claims = json!({"sub": "x"});
        let k = key(Alg::HS256);
        let t = sign_with_header(&json!({"alg": "HS512", "crit": ["exp"]}), &claims, k);
        let (h, _) = decode_unverified(&t).unwrap();
        assert_eq!(h["alg"], "HS512");
        // The signature is HS256 over the crafted signing input.
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(b64url_decode(sig).unwrap(), k.sign_raw(input.as_bytes()));
        assert!(unsigned(&json!({"alg": "none"}), &claims).ends_with('.'));
        let t = sign(Alg::ES256, None, &claims);
        assert!(decode_unverified(&t).unwrap().0.get("kid").is_none());
        let other = key(Alg::RS256).with_alg(Alg::PS384, "same-rsa");
        assert_eq!(other.jwk()["n"], key(Alg::RS256).jwk()["n"]);
        assert_eq!(other.jwk()["alg"], "PS384");
        let hs = TestKey::hmac(Alg::HS256, "k", b"secret");
        assert_eq!(hs.secret().unwrap(), b"secret");
    }
}
