//! Key tags: API keys that can be checked offline, without changing their
//! shape.
//!
//! A tagged key is `prefix` + R + T, where R is the random part (48 hex
//! digits, 24 random bytes, for the contract's `sk_` + 64) and T, its last 16
//! hex digits, is the tag: the first 8 bytes of
//! HMAC-SHA256(secret, `"edge-auth key tag v1"` || R), in lower-case hex.
//! The service that mints keys and the edges that check them share the
//! secret through the environment; an edge refuses a key whose tag does not
//! verify without asking the service, so a flood of invented keys costs the
//! service nothing (docs/configuration.md, `api_keys.key_tags`).
//!
//! An invented key passes with probability 2^-64 per try. The tag is compared
//! in constant time. During a rotation of the secret, a key tagged with the
//! previous secret still verifies. No I/O: the secrets are given as bytes.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The tag's length in hex digits (8 bytes).
pub const TAG_HEX: usize = 16;
/// The shortest accepted secret, in bytes (as long as the HMAC's output).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest accepted secret, in bytes (longer ones would be hashed down
/// by HMAC anyway; refusing them catches a file pasted by mistake).
pub const MAX_SECRET_BYTES: usize = 1024;
/// The domain-separation label: a tag is never a valid MAC of anything else
/// made with the same secret.
const LABEL: &[u8] = b"edge-auth key tag v1";
/// The label of a secret's public id.
const ID_LABEL: &[u8] = b"edge-auth key tag secret id";

/// One tag secret, keyed once (its HMAC pads are computed when it is loaded).
#[derive(Clone)]
pub struct TagSecret {
    mac: Hmac<Sha256>,
    id: String,
}

impl fmt::Debug for TagSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the secret: only its public id
        f.debug_struct("TagSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TagSecret {
    /// A secret from its bytes (the environment variable's value, as is).
    /// Refuses one shorter than [`MIN_SECRET_BYTES`] or longer than
    /// [`MAX_SECRET_BYTES`]; the error never contains the secret.
    pub fn new(secret: &[u8]) -> Result<TagSecret, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the key-tag secret must be at least {MIN_SECRET_BYTES} bytes (it has {}): \
                 generate one with `openssl rand -hex 32`",
                secret.len()
            ));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(format!("the key-tag secret must be at most {MAX_SECRET_BYTES} bytes"));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "the key-tag secret is unusable".to_owned())?;
        let mut h = Sha256::new();
        h.update(ID_LABEL);
        h.update(secret);
        let digest: [u8; 32] = h.finalize().into();
        let mut id = super::hex(&digest);
        id.truncate(TAG_HEX);
        Ok(TagSecret { mac, id })
    }

    /// The secret's public id: 16 hex digits of SHA-256 of a fixed label and
    /// the secret. It names the secret (in logs, and on the keys it tagged)
    /// without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tag of `random` (the random part, as its hex text).
    pub fn tag(&self, random: &str) -> [u8; 8] {
        let full = self.mac_of(random).finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&full[..8]);
        tag
    }

    /// Whether `tag` is `random`'s tag under this secret, compared in constant time.
    fn verifies(&self, random: &str, tag: &[u8; 8]) -> bool {
        self.mac_of(random).verify_truncated_left(tag).is_ok()
    }

    fn mac_of(&self, random: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(LABEL);
        mac.update(random.as_bytes());
        mac
    }
}

/// What a key's tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagCheck {
    /// The tag verifies under the current secret.
    Current,
    /// The tag verifies under the previous secret (a rotation is under way).
    Previous,
    /// No secret verifies it: an invented key, a key altered in transit, or a
    /// key minted before tags (or with a retired secret).
    Invalid,
}

/// The tag secrets: the current one tags new keys, both verify.
#[derive(Debug, Clone)]
pub struct KeyTags {
    current: TagSecret,
    previous: Option<TagSecret>,
}

impl KeyTags {
    /// The current secret and, during a rotation, the previous one. Refuses
    /// a previous secret equal to the current one (a rotation that rotates
    /// nothing is a mistake).
    pub fn new(current: TagSecret, previous: Option<TagSecret>) -> Result<KeyTags, String> {
        if previous.as_ref().is_some_and(|p| p.id == current.id) {
            return Err("the previous key-tag secret equals the current one".to_owned());
        }
        Ok(KeyTags { current, previous })
    }

    pub fn current(&self) -> &TagSecret {
        &self.current
    }

    pub fn previous(&self) -> Option<&TagSecret> {
        self.previous.as_ref()
    }

    /// The hex part of a new key: `random` (lower-case hex, which the caller
    /// draws from a CSPRNG) followed by its tag under the current secret.
    pub fn mint(&self, random: &str) -> String {
        let mut out = String::with_capacity(random.len() + TAG_HEX);
        out.push_str(random);
        for b in self.current.tag(random) {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Checks the hex part of a key (what follows the prefix). Anything but
    /// at least `TAG_HEX` + 16 lower-case hex digits is [`TagCheck::Invalid`]:
    /// the edge checks the key's format first, but this does not rely on it.
    /// Both secrets are always tried, each in constant time.
    pub fn check(&self, hex: &str) -> TagCheck {
        let Some(split) = hex.len().checked_sub(TAG_HEX).filter(|n| *n >= 16) else {
            return TagCheck::Invalid;
        };
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return TagCheck::Invalid;
        }
        let (random, tag_hex) = hex.split_at(split);
        let Some(tag) = crate::context::unhex::<8>(tag_hex) else {
            return TagCheck::Invalid;
        };
        let current = self.current.verifies(random, &tag);
        let previous = self.previous.as_ref().is_some_and(|p| p.verifies(random, &tag));
        match (current, previous) {
            (true, _) => TagCheck::Current,
            (false, true) => TagCheck::Previous,
            (false, false) => TagCheck::Invalid,
        }
    }
}

#[cfg(test)]
mod tests;
