//! RS/PS and ES256 verification with RustCrypto's `rsa` and `p256` crates:
//! what the filter uses instead of the hand-written [`super::rsa`] and
//! [`super::p256`] when built with the `rustcrypto-verify` feature, and the
//! reference the tests compare those with. Same rules as the edge's own
//! verifiers: PSS with MGF1 of the message hash and a salt as long as the
//! hash (RFC 7518 3.5), ECDSA signatures as `r || s` (32 bytes each, as JWS
//! encodes them), no low-S rule.

use ::p256::ecdsa::signature::Verifier as _;
use ::rsa::{pkcs1v15, pss, BigUint, RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};

use super::{Hash, Padding};

/// An RSA public key bound to one padding and hash.
pub(crate) enum RsaKey {
    Pkcs1v15Sha256(pkcs1v15::VerifyingKey<Sha256>),
    Pkcs1v15Sha384(pkcs1v15::VerifyingKey<Sha384>),
    Pkcs1v15Sha512(pkcs1v15::VerifyingKey<Sha512>),
    PssSha256(pss::VerifyingKey<Sha256>),
    PssSha384(pss::VerifyingKey<Sha384>),
    PssSha512(pss::VerifyingKey<Sha512>),
}

impl RsaKey {
    /// The key with modulus `n` and exponent `e` (big-endian bytes), as
    /// RustCrypto accepts it (at most 4096 bits, `e` from 2 to 2^33 - 1).
    pub(crate) fn new(n: &[u8], e: &[u8], padding: Padding, hash: Hash) -> Option<RsaKey> {
        let key = RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e)).ok()?;
        // `pss::VerifyingKey::new` expects a salt as long as the hash.
        Some(match (padding, hash) {
            (Padding::Pkcs1v15, Hash::Sha256) => RsaKey::Pkcs1v15Sha256(pkcs1v15::VerifyingKey::new(key)),
            (Padding::Pkcs1v15, Hash::Sha384) => RsaKey::Pkcs1v15Sha384(pkcs1v15::VerifyingKey::new(key)),
            (Padding::Pkcs1v15, Hash::Sha512) => RsaKey::Pkcs1v15Sha512(pkcs1v15::VerifyingKey::new(key)),
            (Padding::Pss, Hash::Sha256) => RsaKey::PssSha256(pss::VerifyingKey::new(key)),
            (Padding::Pss, Hash::Sha384) => RsaKey::PssSha384(pss::VerifyingKey::new(key)),
            (Padding::Pss, Hash::Sha512) => RsaKey::PssSha512(pss::VerifyingKey::new(key)),
        })
    }

    /// Whether `signature` is a valid signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ::rsa::signature::Verifier;
        let pkcs = || pkcs1v15::Signature::try_from(signature).ok();
        let pss = || pss::Signature::try_from(signature).ok();
        match self {
            RsaKey::Pkcs1v15Sha256(k) => pkcs().is_some_and(|s| k.verify(message, &s).is_ok()),
            RsaKey::Pkcs1v15Sha384(k) => pkcs().is_some_and(|s| k.verify(message, &s).is_ok()),
            RsaKey::Pkcs1v15Sha512(k) => pkcs().is_some_and(|s| k.verify(message, &s).is_ok()),
            RsaKey::PssSha256(k) => pss().is_some_and(|s| k.verify(message, &s).is_ok()),
            RsaKey::PssSha384(k) => pss().is_some_and(|s| k.verify(message, &s).is_ok()),
            RsaKey::PssSha512(k) => pss().is_some_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

/// A P-256 key from its uncompressed SEC1 encoding (`04 || x || y`).
pub(crate) fn p256_key(sec1: &[u8]) -> Option<::p256::ecdsa::VerifyingKey> {
    if sec1.first() != Some(&4) {
        return None;
    }
    ::p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()
}

/// Whether `signature` (`r || s`) is a valid ES256 signature of `message`.
pub(crate) fn p256_verify(key: &::p256::ecdsa::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    ::p256::ecdsa::Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use ::rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
    use ::rsa::traits::PublicKeyParts as _;
    use jwt_simple::prelude::*;

    type Check = Box<dyn Fn(&[u8], &[u8]) -> bool>;

    fn split(token: &str) -> (&str, Vec<u8>) {
        let (input, sig) = token.rsplit_once('.').unwrap();
        (input, crate::b64::decode_url(sig).unwrap())
    }

    #[test]
    fn tokens_from_jwt_simple_verify_and_tampering_fails() {
        let rs = RS256KeyPair::generate(2048).unwrap();
        let c = rs.public_key().to_components();
        let ps = PS384KeyPair::from_der(&rs.to_der().unwrap()).unwrap();
        let es = ES256KeyPair::generate();
        let claims = || jwt_simple::prelude::Claims::create(Duration::from_mins(5));
        let cases: Vec<(String, Check)> = vec![
            (rs.sign(claims()).unwrap(), {
                let k = RsaKey::new(&c.n, &c.e, Padding::Pkcs1v15, Hash::Sha256).unwrap();
                Box::new(move |m, s| k.verify(m, s))
            }),
            (ps.sign(claims()).unwrap(), {
                let k = RsaKey::new(&c.n, &c.e, Padding::Pss, Hash::Sha384).unwrap();
                Box::new(move |m, s| k.verify(m, s))
            }),
            (es.sign(claims()).unwrap(), {
                let k = p256_key(&es.public_key().public_key().to_bytes_uncompressed()).unwrap();
                Box::new(move |m, s| p256_verify(&k, m, s))
            }),
        ];
        for (token, verify) in cases {
            let (input, sig) = split(&token);
            assert!(verify(input.as_bytes(), &sig));
            assert!(!verify(b"another message", &sig));
            let mut bad = sig.clone();
            bad[7] ^= 0x10;
            assert!(!verify(input.as_bytes(), &bad));
            assert!(!verify(input.as_bytes(), &sig[1..]));
            assert!(!verify(input.as_bytes(), &[&sig[..], &[0]].concat()));
        }
        // the other padding or hash does not verify it
        let token = rs.sign(claims()).unwrap();
        let (input, sig) = split(&token);
        for (padding, hash) in [(Padding::Pss, Hash::Sha256), (Padding::Pkcs1v15, Hash::Sha512)] {
            let k = RsaKey::new(&c.n, &c.e, padding, hash).unwrap();
            assert!(!k.verify(input.as_bytes(), &sig), "{padding:?} {hash:?}");
        }
        assert!(p256_key(&[4; 65]).is_none(), "not a point");
        let mut compressed = es.public_key().public_key().to_bytes_uncompressed();
        compressed.truncate(33);
        compressed[0] = 2;
        assert!(
            p256_key(&compressed).is_none(),
            "JWKs give x and y: a compressed point is refused"
        );
    }

    /// RFC 7518 3.5: the salt is as long as the hash. A PSS signature with
    /// another salt length is refused by both RSA verifiers.
    #[test]
    fn pss_salt_must_be_as_long_as_the_hash() {
        let mut rng = ::rsa::rand_core::OsRng;
        let key = ::rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        let reference = RsaKey::new(&n, &e, Padding::Pss, Hash::Sha256).unwrap();
        let edge = super::super::rsa::RsaPublic::new(&n, &e).unwrap();
        for salt in [0, 20, 31, 32, 33, 64] {
            let signer = pss::SigningKey::<Sha256>::new_with_salt_len(key.clone(), salt);
            let sig = signer.sign_with_rng(&mut rng, b"message").to_vec();
            let ok = salt == 32;
            assert_eq!(reference.verify(b"message", &sig), ok, "RustCrypto, salt {salt}");
            assert_eq!(
                edge.verify(Padding::Pss, Hash::Sha256, b"message", &sig),
                ok,
                "edge, salt {salt}"
            );
        }
    }
}
