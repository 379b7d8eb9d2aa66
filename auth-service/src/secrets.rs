//! Signing private keys at rest: sealed with a key-encryption key (KEK) from the
//! environment, never stored in clear once a KEK is configured.
//!
//! * The KEK is 32 random bytes, given as 64 hex digits in `EDGE_AUTH_SIGNING_KEK`
//!   (and, while rotating it, the previous one in `EDGE_AUTH_SIGNING_KEK_PREVIOUS`).
//!   Its id, recorded next to every key it seals, is the first 16 hex digits of
//!   SHA-256("edge-auth signing-key KEK" || KEK): it names the KEK without revealing it.
//! * A key is sealed with AES-256-GCM (RustCrypto's `aes-gcm`): a fresh random 96-bit
//!   nonce each time, the key's `kid` as associated data (a sealed key copied onto
//!   another row does not open), stored as nonce || ciphertext || tag.
//! * Opening needs the KEK the key was sealed with (current or previous); a key sealed
//!   with an unknown KEK, or altered, does not open, and the service refuses to use it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::{hex, random_bytes};

/// The environment variable holding the KEK (64 hex digits).
pub const KEK_ENV: &str = "EDGE_AUTH_SIGNING_KEK";
/// The previous KEK while rotating it (keys sealed with it still open).
pub const KEK_PREVIOUS_ENV: &str = "EDGE_AUTH_SIGNING_KEK_PREVIOUS";

const NONCE_BYTES: usize = 12;
const AAD_PREFIX: &[u8] = b"edge-auth signing key v1\0";

/// One key-encryption key.
#[derive(Clone)]
pub struct Kek {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Kek {
    /// A KEK from 64 hex digits (upper or lower case). The value is never echoed.
    pub fn from_hex(name: &str, value: &str) -> std::result::Result<Kek, String> {
        let v = value.trim();
        if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{name} must be 64 hexadecimal digits (32 random bytes: openssl rand -hex 32)"
            ));
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("{name} must be 64 hexadecimal digits"))?;
        let mut h = Sha256::new();
        h.update(b"edge-auth signing-key KEK");
        h.update(&bytes);
        let id = hex(&h.finalize()[..8]);
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| format!("{name}: not a 256-bit key"))?;
        Ok(Kek { id, cipher })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

fn aad(kid: &str) -> Vec<u8> {
    [AAD_PREFIX, kid.as_bytes()].concat()
}

/// The KEKs the service has: the current one seals, both open.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    current: Option<Kek>,
    previous: Option<Kek>,
}

impl KeyRing {
    /// No KEK: keys are stored in clear (and sealed ones cannot be opened).
    pub fn none() -> KeyRing {
        KeyRing::default()
    }

    pub fn new(current: Kek, previous: Option<Kek>) -> std::result::Result<KeyRing, String> {
        if previous.as_ref().is_some_and(|p| p.id == current.id) {
            return Err(format!(
                "{KEK_PREVIOUS_ENV} equals {KEK_ENV}: give the KEK being replaced, or unset it"
            ));
        }
        Ok(KeyRing {
            current: Some(current),
            previous,
        })
    }

    /// From the environment: `None` for either variable unset or empty.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> std::result::Result<KeyRing, String> {
        let read = |name: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .map(|v| Kek::from_hex(name, &v))
                .transpose()
        };
        match (read(KEK_ENV)?, read(KEK_PREVIOUS_ENV)?) {
            (None, None) => Ok(KeyRing::none()),
            (None, Some(_)) => Err(format!("{KEK_PREVIOUS_ENV} is set without {KEK_ENV}")),
            (Some(c), p) => KeyRing::new(c, p),
        }
    }

    /// The id of the KEK that seals new keys, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(Kek::id)
    }

    /// Seals `secret` (the key `kid`'s private scalar) with the current KEK: the blob
    /// and the KEK's id. Without a KEK: the secret itself and no id.
    pub fn seal(&self, kid: &str, secret: &[u8]) -> Result<(Vec<u8>, Option<String>)> {
        let Some(kek) = &self.current else {
            return Ok((secret.to_vec(), None));
        };
        let nonce = random_bytes::<NONCE_BYTES>()?;
        let aad = aad(kid);
        let sealed = kek
            .cipher
            .encrypt(&nonce.into(), Payload { msg: secret, aad: &aad })
            .map_err(|_| Error::internal("sealing a signing key failed"))?;
        Ok(([nonce.as_slice(), &sealed].concat(), Some(kek.id.clone())))
    }

    /// Opens a stored key: `stored` as is when `kek_id` is `None` (a clear key), else
    /// with the KEK of that id. An unknown KEK or an altered blob is an error.
    pub fn open(&self, kid: &str, stored: &[u8], kek_id: Option<&str>) -> Result<Vec<u8>> {
        let Some(kek_id) = kek_id else {
            return Ok(stored.to_vec());
        };
        let kek = [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .find(|k| k.id == kek_id)
            .ok_or_else(|| {
                Error::internal(format_args!(
                    "signing key {kid} is sealed with KEK {kek_id}, which is not configured ({KEK_ENV}, {KEK_PREVIOUS_ENV})"
                ))
            })?;
        if stored.len() < NONCE_BYTES {
            return Err(Error::internal(format_args!(
                "signing key {kid}: sealed blob too short"
            )));
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::internal("nonce"))?;
        let aad = aad(kid);
        kek.cipher
            .decrypt(&nonce.into(), Payload { msg: sealed, aad: &aad })
            .map_err(|_| Error::internal(format_args!("signing key {kid} does not open with KEK {kek_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn ring(current: &str, previous: Option<&str>) -> KeyRing {
        let p = previous.map(|p| Kek::from_hex("P", p).unwrap());
        KeyRing::new(Kek::from_hex("C", current).unwrap(), p).unwrap()
    }

    #[test]
    fn sealed_keys_open_with_their_kek_only() {
        let secret = [7u8; 32];
        let r1 = ring(K1, None);
        let (blob, id) = r1.seal("kid-1", &secret).unwrap();
        assert_eq!(id.as_deref(), r1.current_id());
        assert_eq!(blob.len(), 12 + 32 + 16);
        assert!(!blob.windows(32).any(|w| w == secret), "no clear copy");
        assert_eq!(r1.open("kid-1", &blob, id.as_deref()).unwrap(), secret);
        // a fresh nonce each time
        assert_ne!(r1.seal("kid-1", &secret).unwrap().0, blob);
        // bound to its kid
        assert!(r1.open("kid-2", &blob, id.as_deref()).is_err());
        // altered: every byte
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(r1.open("kid-1", &bad, id.as_deref()).is_err(), "byte {i}");
        }
        assert!(r1.open("kid-1", &blob[..11], id.as_deref()).is_err());
        // another KEK does not open it; the previous one does, during a rotation
        let r2 = ring(K2, None);
        assert!(r2.open("kid-1", &blob, id.as_deref()).is_err());
        let rotating = ring(K2, Some(K1));
        assert_eq!(rotating.open("kid-1", &blob, id.as_deref()).unwrap(), secret);
        // a clear key opens as it is, with or without a KEK
        assert_eq!(r1.open("kid-3", &secret, None).unwrap(), secret);
        assert_eq!(KeyRing::none().open("kid-3", &secret, None).unwrap(), secret);
        assert!(KeyRing::none().open("kid-1", &blob, id.as_deref()).is_err());
        // without a KEK, sealing is the identity
        assert_eq!(KeyRing::none().seal("kid-1", &secret).unwrap(), (secret.to_vec(), None));
    }

    #[test]
    fn keks_come_from_the_environment_checked() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let (upper, lower) = ("AB".repeat(32), "ab".repeat(32));
        let (short, not_hex) = ("a".repeat(63), "g".repeat(64));
        assert!(KeyRing::from_env(env(&[])).unwrap().current_id().is_none());
        let r = KeyRing::from_env(env(&[(KEK_ENV, K1)])).unwrap();
        assert_eq!(r.current_id().map(str::len), Some(16));
        assert_ne!(r.current_id(), ring(K2, None).current_id());
        assert_eq!(
            KeyRing::from_env(env(&[(KEK_ENV, &upper)])).unwrap().current_id(),
            KeyRing::from_env(env(&[(KEK_ENV, &lower)])).unwrap().current_id(),
            "hex case does not matter"
        );
        for bad in [short.as_str(), not_hex.as_str(), "", "0x00"] {
            let e = KeyRing::from_env(env(&[(KEK_ENV, bad)]));
            if bad.is_empty() {
                assert!(e.unwrap().current_id().is_none(), "empty is unset");
            } else {
                let e = e.unwrap_err();
                assert!(e.contains("64 hexadecimal") && !e.contains(bad), "{e}");
            }
        }
        assert!(KeyRing::from_env(env(&[(KEK_PREVIOUS_ENV, K1)])).is_err());
        assert!(KeyRing::from_env(env(&[(KEK_ENV, K1), (KEK_PREVIOUS_ENV, K1)])).is_err());
        assert!(KeyRing::from_env(env(&[(KEK_ENV, K1), (KEK_PREVIOUS_ENV, K2)])).is_ok());
    }
}
