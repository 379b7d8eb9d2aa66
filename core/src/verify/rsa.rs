//! RSA signature verification for RS256/384/512 (RSASSA-PKCS1-v1_5) and
//! PS256/384/512 (RSASSA-PSS, salt as long as the hash, RFC 7518 3.5),
//! written for the edge's hot path on wasm32.
//!
//! Verification is one public-key exponentiation `s^e mod n`. The generic
//! big-integer code behind jwt-simple's pure-Rust backend recomputes its
//! Montgomery constants and allocates at every step; here the constants
//! (`-n^-1 mod 2^32` and `R^2 mod n`) are computed once when the key is
//! loaded, and the exponentiation runs on 32-bit limbs (the width wasm
//! multiplies natively) in a few preallocated buffers. Only public values
//! are involved, so nothing here needs to be constant-time.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::montgomery::{less_than, mont_mul, neg_inverse, r2_mod, strip, to_bytes, to_limbs};
use super::{Hash, Padding};

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The hash of the concatenation of `parts`.
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// The DER DigestInfo prefix of EMSA-PKCS1-v1_5 (RFC 8017 9.2, note 1).
    fn digest_info(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
                0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
                0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
                0x04, 0x40,
            ],
        }
    }
}

/// An RSA public key prepared for verification.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RsaPublic {
    /// The modulus, little-endian 32-bit limbs, top limb non-zero.
    n: Vec<u32>,
    /// `-n^-1 mod 2^32`.
    n0inv: u32,
    /// `R^2 mod n`, with `R = 2^(32 * limbs)`.
    rr: Vec<u32>,
    e: u32,
    /// The modulus length in bits and in bytes.
    bits: usize,
    bytes: usize,
}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublic")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish()
    }
}

/// The largest modulus accepted (the edge refuses keys over 4096 bits).
const MAX_BITS: usize = 8192;

impl RsaPublic {
    /// Prepares the key with modulus `n` and exponent `e` (big-endian bytes).
    /// `None` unless `n` is odd with 512 to 8192 bits and `e` is odd, at
    /// least 3 and fits in 32 bits.
    pub(crate) fn new(n: &[u8], e: &[u8]) -> Option<RsaPublic> {
        let n = strip(n);
        let e = strip(e);
        let bits = n.len() * 8 - n.first()?.leading_zeros() as usize;
        if !(512..=MAX_BITS).contains(&bits) || n.last()? & 1 == 0 || e.is_empty() || e.len() > 4 {
            return None;
        }
        let e = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        if e < 3 || e & 1 == 0 {
            return None;
        }
        let limbs = to_limbs(n, n.len().div_ceil(4));
        // Newton's iteration doubles the correct low bits: 1 -> 2 -> ... -> 32.
        let n0 = limbs[0];
        Some(RsaPublic {
            n0inv: neg_inverse(n0),
            rr: r2_mod(&limbs),
            e,
            bits,
            bytes: n.len(),
            n: limbs,
        })
    }

    /// The modulus length in bits.
    #[cfg(test)]
    pub(crate) fn bits(&self) -> usize {
        self.bits
    }

    /// Whether `signature` is a valid signature of `message`.
    pub(crate) fn verify(&self, padding: Padding, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let m_hash = hash.digest(&[message]);
        match padding {
            Padding::Pkcs1v15 => self.pkcs1v15_matches(&em, hash, &m_hash),
            Padding::Pss => self.pss_matches(&em, hash, &m_hash),
        }
    }

    /// `signature^e mod n` as `bytes` big-endian bytes; `None` when the
    /// signature is not exactly `bytes` long or not below `n` (RFC 8017 5.2.2).
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.bytes {
            return None;
        }
        let l = self.n.len();
        let s = to_limbs(signature, l);
        if !less_than(&s, &self.n) {
            return None;
        }
        let mut t = vec![0u32; 2 * l + 2];
        let mut a = vec![0u32; l];
        self.mul(&s, &self.rr, &mut a, &mut t); // s * R mod n
        let mut x = a.clone();
        let mut y = vec![0u32; l];
        let top = 31 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mul(&x, &x, &mut y, &mut t);
            if (self.e >> bit) & 1 == 1 {
                self.mul(&y, &a, &mut x, &mut t);
            } else {
                std::mem::swap(&mut x, &mut y);
            }
        }
        let mut one = vec![0u32; l];
        one[0] = 1;
        self.mul(&x, &one, &mut y, &mut t); // out of Montgomery form
        Some(to_bytes(&y, self.bytes))
    }

    /// `out = a * b / R mod n`.
    fn mul(&self, a: &[u32], b: &[u32], out: &mut [u32], t: &mut [u32]) {
        mont_mul(&self.n, self.n0inv, a, b, out, t);
    }

    /// EMSA-PKCS1-v1_5 (RFC 8017 9.2): `00 01 FF..FF 00 DigestInfo H`, compared whole.
    fn pkcs1v15_matches(&self, em: &[u8], hash: Hash, m_hash: &[u8]) -> bool {
        let info = hash.digest_info();
        let t_len = info.len() + m_hash.len();
        let k = self.bytes;
        if k < t_len + 11 || em.len() != k {
            return false;
        }
        let ps = k - t_len - 3;
        em[0] == 0
            && em[1] == 1
            && em[2..2 + ps].iter().all(|b| *b == 0xff)
            && em[2 + ps] == 0
            && &em[3 + ps..3 + ps + info.len()] == info
            && &em[3 + ps + info.len()..] == m_hash
    }

    /// EMSA-PSS-VERIFY (RFC 8017 9.1.2) with MGF1 of the same hash and a
    /// salt as long as the hash.
    fn pss_matches(&self, em: &[u8], hash: Hash, m_hash: &[u8]) -> bool {
        let h_len = hash.len();
        let s_len = h_len;
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // the k-byte result has k - emLen leading zero bytes
        let Some(lead) = em.len().checked_sub(em_len) else {
            return false;
        };
        if em[..lead].iter().any(|b| *b != 0) {
            return false;
        }
        let em = &em[lead..];
        if em_len < h_len + s_len + 2 || em[em_len - 1] != 0xbc {
            return false;
        }
        let (masked_db, rest) = em.split_at(em_len - h_len - 1);
        let h = &rest[..h_len];
        let top_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(top_bits as u32).unwrap_or(0);
        if masked_db[0] & !top_mask != 0 {
            return false;
        }
        let mut db = mgf1(hash, h, masked_db.len());
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        db[0] &= top_mask;
        let ps_len = em_len - h_len - s_len - 2;
        if db[..ps_len].iter().any(|b| *b != 0) || db[ps_len] != 0x01 {
            return false;
        }
        let salt = &db[db.len() - s_len..];
        hash.digest(&[&[0u8; 8], m_hash, salt]) == h
    }
}

/// MGF1 (RFC 8017 B.2.1): `len` bytes from `seed`.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use jwt_simple::prelude::*;

    /// One key pair per process (RSA generation is slow, especially under Node).
    fn pair() -> &'static RS256KeyPair {
        static PAIR: std::sync::OnceLock<RS256KeyPair> = std::sync::OnceLock::new();
        PAIR.get_or_init(|| RS256KeyPair::generate(2048).unwrap())
    }

    fn public(kp: &RS256KeyPair) -> RsaPublic {
        let c = kp.public_key().to_components();
        RsaPublic::new(&c.n, &c.e).unwrap()
    }

    fn split(token: &str) -> (&str, Vec<u8>) {
        let (input, sig) = token.rsplit_once('.').unwrap();
        (input, crate::b64::decode_url(sig).unwrap())
    }

    #[test]
    fn pkcs1v15_signatures_from_jwt_simple_verify_and_tampering_fails() {
        let kp = pair();
        let key = public(kp);
        assert_eq!(key.bits(), 2048);
        let token = kp
            .sign(Claims::create(Duration::from_mins(5)).with_subject("alice"))
            .unwrap();
        let (input, sig) = split(&token);
        assert!(key.verify(Padding::Pkcs1v15, Hash::Sha256, input.as_bytes(), &sig));
        // another message, another hash, the other padding, a flipped bit: all fail
        assert!(!key.verify(Padding::Pkcs1v15, Hash::Sha256, b"x", &sig));
        assert!(!key.verify(Padding::Pkcs1v15, Hash::Sha384, input.as_bytes(), &sig));
        assert!(!key.verify(Padding::Pss, Hash::Sha256, input.as_bytes(), &sig));
        for i in [0, 1, 100, 255] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            assert!(
                !key.verify(Padding::Pkcs1v15, Hash::Sha256, input.as_bytes(), &bad),
                "byte {i}"
            );
        }
    }

    #[test]
    fn pss_signatures_from_jwt_simple_verify() {
        let rs = pair();
        // the same key material as a PS256/PS384 pair
        let der = rs.to_der().unwrap();
        let ps256 = PS256KeyPair::from_der(&der).unwrap();
        let ps384 = PS384KeyPair::from_der(&der).unwrap();
        let key = public(rs);
        let claims = || Claims::create(Duration::from_mins(5)).with_subject("bob");
        let t256 = ps256.sign(claims()).unwrap();
        let (input, sig) = split(&t256);
        assert!(key.verify(Padding::Pss, Hash::Sha256, input.as_bytes(), &sig));
        assert!(!key.verify(Padding::Pss, Hash::Sha384, input.as_bytes(), &sig));
        assert!(!key.verify(Padding::Pkcs1v15, Hash::Sha256, input.as_bytes(), &sig));
        let mut bad = sig.clone();
        bad[17] ^= 0x80;
        assert!(!key.verify(Padding::Pss, Hash::Sha256, input.as_bytes(), &bad));
        let t384 = ps384.sign(claims()).unwrap();
        let (input, sig) = split(&t384);
        assert!(key.verify(Padding::Pss, Hash::Sha384, input.as_bytes(), &sig));
    }

    #[test]
    fn hostile_signatures_fail_without_panicking() {
        let kp = pair();
        let key = public(kp);
        let token = kp.sign(Claims::create(Duration::from_mins(5))).unwrap();
        let (input, sig) = split(&token);
        let c = kp.public_key().to_components();
        let n = strip(&c.n).to_vec();
        let mut n_minus_1 = n.clone();
        *n_minus_1.last_mut().unwrap() -= 1; // n is odd
        for bad in [
            Vec::new(),
            vec![0u8; 255],
            vec![0u8; 257],
            sig[..255].to_vec(),
            [sig.as_slice(), &[0]].concat(),
            vec![0u8; 256],    // s = 0
            vec![0xffu8; 256], // s >= n
            n.clone(),         // s = n
            n_minus_1,         // s = n - 1: (-1)^e = n - 1, not a valid encoding
        ] {
            for padding in [Padding::Pkcs1v15, Padding::Pss] {
                assert!(
                    !key.verify(padding, Hash::Sha256, input.as_bytes(), &bad),
                    "{} bytes",
                    bad.len()
                );
            }
        }
    }

    #[test]
    fn keys_are_checked() {
        let c = pair().public_key().to_components();
        assert!(RsaPublic::new(&c.n, &c.e).is_some());
        // leading zero bytes are ignored
        assert!(RsaPublic::new(&[&[0, 0][..], &c.n].concat(), &[0, 1, 0, 1]).is_some());
        let mut even = c.n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(RsaPublic::new(&even, &c.e).is_none());
        assert!(RsaPublic::new(&c.n, &[2]).is_none());
        assert!(RsaPublic::new(&c.n, &[1]).is_none());
        assert!(RsaPublic::new(&c.n, &[]).is_none());
        assert!(RsaPublic::new(&c.n, &[1, 0, 0, 0, 1]).is_none());
        assert!(RsaPublic::new(&[], &c.e).is_none());
        assert!(RsaPublic::new(&[0, 0, 0], &c.e).is_none());
        assert!(RsaPublic::new(&c.n[..32], &c.e).is_none(), "256-bit modulus");
        assert!(RsaPublic::new(&vec![0xff; 1025], &c.e).is_none(), "8200-bit modulus");
    }

    #[test]
    fn montgomery_arithmetic_matches_small_numbers() {
        // n = 0xF123_4567_89AB_CDEF_0011_2233_4455_6677 ... a 544-bit odd modulus built from bytes
        let mut n = vec![0xc3u8; 68];
        n[67] = 0x55;
        let key = RsaPublic::new(&n, &[3]).unwrap();
        // s^3 mod n against schoolbook arithmetic on small s (s^3 < n: no reduction)
        for s in [1u64, 2, 3, 255, 65_535, 1 << 40] {
            let mut sig = vec![0u8; 68];
            sig[60..].copy_from_slice(&s.to_be_bytes());
            let out = key.public_op(&sig).unwrap();
            let cube = u128::from(s).pow(3);
            let mut want = vec![0u8; 68];
            if s < (1 << 40) {
                want[52..].copy_from_slice(&cube.to_be_bytes());
                assert_eq!(out, want, "{s}^3");
            } else {
                // (2^40)^3 = 2^120: a single bit
                want[68 - 16] = 0x01;
                assert_eq!(out, want, "2^120");
            }
        }
    }
}
