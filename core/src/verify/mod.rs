//! Signature verification: one [`Verifier`] per key, chosen when the key is
//! loaded, so that a token's signature check is one call with the signing
//! input and the decoded signature, whatever the algorithm.
//!
//! - [`rsa`]: the edge's own RS256/384/512 (RSASSA-PKCS1-v1_5) and
//!   PS256/384/512 (RSASSA-PSS) verifier, over [`montgomery`].
//! - [`p256`]: the edge's own ES256 (ECDSA P-256 with SHA-256) verifier.
//! - [`rustcrypto`]: the same algorithms with RustCrypto's `rsa` and `p256`
//!   crates, used instead when the crate is built with the
//!   `rustcrypto-verify` feature (the hand-written code is then not built
//!   into the filter at all).
//! - HS256/384/512 (RustCrypto `hmac`, constant-time tag comparison), ES384
//!   (RustCrypto `p384`), ES512 (RustCrypto `p521`) and EdDSA (`ed25519-compact`) are always verified by
//!   those libraries.
//!
//! Nothing here is public outside the crate: tokens reach these verifiers
//! only through [`crate::jwt::keys::BoundKey`], which binds each key to one
//! algorithm. SECURITY.md at the repository root says why the RSA and P-256
//! verifiers are hand-written and how they are tested.

// (two attributes: clippy recognises test code by a plain `cfg(test)`)
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod differential;
#[cfg(any(test, not(feature = "rustcrypto-verify")))]
pub(crate) mod montgomery;
#[cfg(any(test, not(feature = "rustcrypto-verify")))]
pub(crate) mod p256;
#[cfg(any(test, not(feature = "rustcrypto-verify")))]
pub(crate) mod rsa;
#[cfg(any(test, feature = "rustcrypto-verify"))]
pub(crate) mod rustcrypto;
#[cfg(test)]
mod wycheproof;

use ::p384::ecdsa::signature::Verifier as _;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Which implementation verifies RS/PS and ES256 signatures in this build:
/// `"edge-auth"` (the hand-written verifiers) or `"RustCrypto"` (the
/// `rustcrypto-verify` feature). Logged when the filter is configured.
pub const RSA_AND_P256_VERIFIERS: &str = if cfg!(feature = "rustcrypto-verify") {
    "RustCrypto"
} else {
    "edge-auth"
};

/// The hash of an RS/PS algorithm (and of its MGF1, for PS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The RSA signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    Pkcs1v15,
    Pss,
}

/// An HMAC key with its hash, keyed once (the inner and outer pads are
/// computed when the key is loaded; each check clones them).
#[derive(Clone)]
pub(crate) enum HmacKey {
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl HmacKey {
    /// Whether `tag` is the full-length tag of `message`, compared in
    /// constant time. A truncated or longer tag is refused.
    fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        fn check<M: Mac + Clone>(key: &M, message: &[u8], tag: &[u8]) -> bool {
            let mut mac = key.clone();
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        match self {
            HmacKey::Sha256(k) => check(k, message, tag),
            HmacKey::Sha384(k) => check(k, message, tag),
            HmacKey::Sha512(k) => check(k, message, tag),
        }
    }
}

/// A public key (or HMAC secret) prepared for one algorithm.
pub(crate) enum Verifier {
    /// Boxed: an HMAC-SHA512 key is several times larger than the others.
    Hmac(Box<HmacKey>),
    /// RS/PS with the edge's own verifier.
    #[cfg(not(feature = "rustcrypto-verify"))]
    Rsa {
        key: rsa::RsaPublic,
        padding: Padding,
        hash: Hash,
    },
    /// RS/PS with RustCrypto's `rsa` (the `rustcrypto-verify` feature).
    #[cfg(feature = "rustcrypto-verify")]
    RsaRustCrypto(rustcrypto::RsaKey),
    /// ES256 with the edge's own verifier.
    #[cfg(not(feature = "rustcrypto-verify"))]
    P256(p256::P256Public),
    /// ES256 with RustCrypto's `p256` (the `rustcrypto-verify` feature).
    #[cfg(feature = "rustcrypto-verify")]
    P256RustCrypto(::p256::ecdsa::VerifyingKey),
    P384(::p384::ecdsa::VerifyingKey),
    /// Boxed: a P-521 key is the largest of the EC keys.
    P521(Box<::p521::ecdsa::VerifyingKey>),
    Ed25519(ed25519_compact::PublicKey),
}

impl Verifier {
    /// An HMAC key (HMAC takes a key of any length: callers refuse short
    /// secrets first).
    pub(crate) fn hmac(hash: Hash, secret: &[u8]) -> Option<Verifier> {
        let key = match hash {
            Hash::Sha256 => HmacKey::Sha256(Hmac::new_from_slice(secret).ok()?),
            Hash::Sha384 => HmacKey::Sha384(Hmac::new_from_slice(secret).ok()?),
            Hash::Sha512 => HmacKey::Sha512(Hmac::new_from_slice(secret).ok()?),
        };
        Some(Verifier::Hmac(Box::new(key)))
    }

    /// An RSA key from its modulus and exponent (big-endian bytes); `None`
    /// when the verifier of this build cannot use them.
    pub(crate) fn rsa(n: &[u8], e: &[u8], padding: Padding, hash: Hash) -> Option<Verifier> {
        #[cfg(not(feature = "rustcrypto-verify"))]
        return rsa::RsaPublic::new(n, e).map(|key| Verifier::Rsa { key, padding, hash });
        #[cfg(feature = "rustcrypto-verify")]
        return rustcrypto::RsaKey::new(n, e, padding, hash).map(Verifier::RsaRustCrypto);
    }

    /// A P-256 key from its uncompressed SEC1 encoding; `None` when it is not
    /// a point of the curve.
    pub(crate) fn p256(sec1: &[u8]) -> Option<Verifier> {
        #[cfg(not(feature = "rustcrypto-verify"))]
        return p256::P256Public::from_uncompressed(sec1).map(Verifier::P256);
        #[cfg(feature = "rustcrypto-verify")]
        return rustcrypto::p256_key(sec1).map(Verifier::P256RustCrypto);
    }

    /// A P-384 key from its uncompressed SEC1 encoding.
    pub(crate) fn p384(sec1: &[u8]) -> Option<Verifier> {
        if sec1.first() != Some(&4) {
            return None;
        }
        ::p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .ok()
            .map(Verifier::P384)
    }

    /// A P-521 key from its uncompressed SEC1 encoding.
    pub(crate) fn p521(sec1: &[u8]) -> Option<Verifier> {
        if sec1.first() != Some(&4) {
            return None;
        }
        ::p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .ok()
            .map(|k| Verifier::P521(Box::new(k)))
    }

    /// An Ed25519 key from its 32 bytes.
    pub(crate) fn ed25519(x: &[u8]) -> Option<Verifier> {
        ed25519_compact::PublicKey::from_slice(x).ok().map(Verifier::Ed25519)
    }

    /// The largest signature any key of this kind can make, in bytes (the
    /// buffer a token's signature is decoded into).
    pub(crate) fn max_signature_len(&self) -> usize {
        match self {
            Verifier::Hmac(_) | Verifier::Ed25519(_) => 64,
            #[cfg(not(feature = "rustcrypto-verify"))]
            Verifier::P256(_) => 64,
            #[cfg(feature = "rustcrypto-verify")]
            Verifier::P256RustCrypto(_) => 64,
            Verifier::P384(_) => 96,
            Verifier::P521(_) => 132,
            #[cfg(not(feature = "rustcrypto-verify"))]
            Verifier::Rsa { .. } => 1024,
            #[cfg(feature = "rustcrypto-verify")]
            Verifier::RsaRustCrypto(_) => 1024,
        }
    }

    /// Whether `signature` is a valid signature (or HMAC tag) of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hmac(k) => k.verify(message, signature),
            #[cfg(not(feature = "rustcrypto-verify"))]
            Verifier::Rsa { key, padding, hash } => key.verify(*padding, *hash, message, signature),
            #[cfg(feature = "rustcrypto-verify")]
            Verifier::RsaRustCrypto(key) => key.verify(message, signature),
            #[cfg(not(feature = "rustcrypto-verify"))]
            Verifier::P256(key) => key.verify(message, signature),
            #[cfg(feature = "rustcrypto-verify")]
            Verifier::P256RustCrypto(key) => rustcrypto::p256_verify(key, message, signature),
            Verifier::P384(key) => {
                ::p384::ecdsa::Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
            }
            Verifier::P521(key) => {
                ::p521::ecdsa::Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
            }
            Verifier::Ed25519(key) => {
                ed25519_compact::Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
            }
        }
    }

    /// Which implementation checks this key's signatures (for tests).
    #[cfg(test)]
    pub(crate) fn implementation(&self) -> &'static str {
        match self {
            Verifier::Hmac(_) => "hmac",
            #[cfg(not(feature = "rustcrypto-verify"))]
            Verifier::Rsa { .. } | Verifier::P256(_) => "edge-auth",
            #[cfg(feature = "rustcrypto-verify")]
            Verifier::RsaRustCrypto(_) | Verifier::P256RustCrypto(_) => "RustCrypto",
            Verifier::P384(_) => "p384",
            Verifier::P521(_) => "p521",
            Verifier::Ed25519(_) => "ed25519-compact",
        }
    }
}
