//! Property tests: the hand-written verifiers against RustCrypto's `rsa` and
//! `p256` crates ([`super::rustcrypto`], the `rustcrypto-verify` feature's
//! code), on signatures RustCrypto made and on mutations of them. Native only
//! (proptest needs a native `std`); the Wycheproof vectors cover wasm32.
//!
//! Keys. RSA key generation is slow (a 4096-bit key takes seconds), so the
//! RSA properties draw from fixed test keys of every size class the edge
//! accepts (`core/testdata/rsa/`, generated once with the `rsa` crate and
//! used nowhere else): 2048, 2049, 2056, 3071, 3072, 3073, 4095 and 4096
//! bits, i.e. both ends of the accepted range, moduli with a partial top
//! byte, and the sizes where PSS's encoded message is one byte shorter than
//! the modulus (bits = 1 mod 8). [`fresh_rsa_keys_of_random_sizes`] adds two
//! new keys of random sizes at every run. P-256 keys are cheap: every case
//! draws a new one. Messages, hashes, PSS salts and mutations are random;
//! proptest's default case count (256 per property) keeps `make test` fast,
//! and `PROPTEST_CASES` raises it.
//!
//! The property is equality: for every signature, mutated or not, and for
//! every (padding, hash) pair of the key, the edge's verifier and
//! RustCrypto's give the same answer; and an unmutated signature (or its
//! high-S twin, for ECDSA) is accepted by both.

use std::sync::OnceLock;

use ::p256::ecdsa::signature::Signer as _;
use proptest::collection::vec;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Sha256, Sha384, Sha512};

use super::{p256, rsa as edge_rsa, rustcrypto, Hash, Padding};

const PADDINGS: [Padding; 2] = [Padding::Pkcs1v15, Padding::Pss];
const HASHES: [Hash; 3] = [Hash::Sha256, Hash::Sha384, Hash::Sha512];

/// One RSA key: the private key (to sign) and the public key as each
/// verifier prepares it, for every (padding, hash) pair.
struct RsaFixture {
    bits: usize,
    private: RsaPrivateKey,
    n: Vec<u8>,
    edge: edge_rsa::RsaPublic,
    reference: Vec<((Padding, Hash), rustcrypto::RsaKey)>,
}

impl RsaFixture {
    fn new(private: RsaPrivateKey) -> RsaFixture {
        let n = private.n().to_bytes_be();
        let e = private.e().to_bytes_be();
        let mut reference = Vec::new();
        for padding in PADDINGS {
            for hash in HASHES {
                reference.push(((padding, hash), rustcrypto::RsaKey::new(&n, &e, padding, hash).unwrap()));
            }
        }
        RsaFixture {
            bits: private.n().bits(),
            edge: edge_rsa::RsaPublic::new(&n, &e).unwrap(),
            n,
            private,
            reference,
        }
    }

    fn sign(&self, padding: Padding, hash: Hash, msg: &[u8], seed: [u8; 32]) -> Vec<u8> {
        let key = self.private.clone();
        let mut rng = ChaCha8Rng::from_seed(seed);
        match (padding, hash) {
            (Padding::Pkcs1v15, Hash::Sha256) => rsa::pkcs1v15::SigningKey::<Sha256>::new(key).sign(msg).to_vec(),
            (Padding::Pkcs1v15, Hash::Sha384) => rsa::pkcs1v15::SigningKey::<Sha384>::new(key).sign(msg).to_vec(),
            (Padding::Pkcs1v15, Hash::Sha512) => rsa::pkcs1v15::SigningKey::<Sha512>::new(key).sign(msg).to_vec(),
            (Padding::Pss, Hash::Sha256) => rsa::pss::SigningKey::<Sha256>::new(key)
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
            (Padding::Pss, Hash::Sha384) => rsa::pss::SigningKey::<Sha384>::new(key)
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
            (Padding::Pss, Hash::Sha512) => rsa::pss::SigningKey::<Sha512>::new(key)
                .sign_with_rng(&mut rng, msg)
                .to_vec(),
        }
    }

    /// Both verifiers' answers for every (padding, hash) pair must agree.
    /// Returns the edge's answer for `expected`.
    fn check_all(&self, msg: &[u8], sig: &[u8], expected: (Padding, Hash)) -> Result<bool, TestCaseError> {
        let mut answer = false;
        for ((padding, hash), reference) in &self.reference {
            let edge = self.edge.verify(*padding, *hash, msg, sig);
            let rc = reference.verify(msg, sig);
            prop_assert_eq!(
                edge,
                rc,
                "{}-bit key, {:?}/{:?}, {}-byte signature: edge {} RustCrypto {}",
                self.bits,
                padding,
                hash,
                sig.len(),
                edge,
                rc
            );
            if (*padding, *hash) == expected {
                answer = edge;
            }
        }
        Ok(answer)
    }
}

fn fixed_rsa_keys() -> &'static [RsaFixture] {
    static KEYS: OnceLock<Vec<RsaFixture>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            include_str!("../../testdata/rsa/rsa-2048.pem"),
            include_str!("../../testdata/rsa/rsa-2049.pem"),
            include_str!("../../testdata/rsa/rsa-2056.pem"),
            include_str!("../../testdata/rsa/rsa-3071.pem"),
            include_str!("../../testdata/rsa/rsa-3072.pem"),
            include_str!("../../testdata/rsa/rsa-3073.pem"),
            include_str!("../../testdata/rsa/rsa-4095.pem"),
            include_str!("../../testdata/rsa/rsa-4096.pem"),
        ]
        .into_iter()
        .map(|pem| RsaFixture::new(RsaPrivateKey::from_pkcs8_pem(pem).unwrap()))
        .collect()
    })
}

/// A change to a signature (or none).
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// Flip bit `i` (taken modulo the length in bits).
    FlipBit(usize),
    /// One byte short: the first or the last byte dropped.
    Shorter {
        first: bool,
    },
    /// One byte long: a zero byte before (same number) or any byte after.
    Longer {
        prepend: bool,
        byte: u8,
    },
    Zero,
    /// The modulus (or group order) itself, or it plus a small number.
    Modulus(u8),
    /// The signature plus the modulus (the same number modulo it), when
    /// that fits in the signature's length; else the modulus plus one.
    AddModulus,
    /// All bits set: at least the modulus.
    AllOnes,
    /// Random bytes of the right length.
    Random(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => Just(Mutation::None),
        6 => any::<usize>().prop_map(Mutation::FlipBit),
        1 => any::<bool>().prop_map(|first| Mutation::Shorter { first }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(prepend, byte)| Mutation::Longer { prepend, byte }),
        1 => Just(Mutation::Zero),
        1 => any::<u8>().prop_map(Mutation::Modulus),
        1 => Just(Mutation::AllOnes),
        2 => Just(Mutation::AddModulus),
        1 => vec(any::<u8>(), 0..=64).prop_map(Mutation::Random),
    ]
}

/// `value + small` as big-endian bytes of `value`'s length (wrapping).
fn plus(value: &[u8], small: u8) -> Vec<u8> {
    let mut out = value.to_vec();
    let mut carry = u16::from(small);
    for b in out.iter_mut().rev() {
        let s = u16::from(*b) + carry;
        *b = s as u8;
        carry = s >> 8;
    }
    out
}

/// `a + b` for equal-length big-endian numbers; `None` when it overflows.
fn add(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = a.to_vec();
    let mut carry = 0u16;
    for (o, y) in out.iter_mut().rev().zip(b.iter().rev()) {
        let s = u16::from(*o) + u16::from(*y) + carry;
        *o = s as u8;
        carry = s >> 8;
    }
    (carry == 0).then_some(out)
}

/// Applies `m` to `sig`; `modulus` is what "at least the modulus" means.
fn mutate(sig: &[u8], m: &Mutation, modulus: &[u8]) -> Vec<u8> {
    let mut s = sig.to_vec();
    match m {
        Mutation::None => {}
        Mutation::FlipBit(i) => {
            let bit = i % (8 * s.len());
            s[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::Shorter { first: true } => {
            s.remove(0);
        }
        Mutation::Shorter { first: false } => {
            s.pop();
        }
        Mutation::Longer { prepend: true, .. } => s.insert(0, 0),
        Mutation::Longer { prepend: false, byte } => s.push(*byte),
        Mutation::Zero => s.fill(0),
        Mutation::Modulus(k) => s = plus(modulus, *k),
        Mutation::AllOnes => s.fill(0xff),
        Mutation::AddModulus => s = add(&s, modulus).unwrap_or_else(|| plus(modulus, 1)),
        Mutation::Random(bytes) => {
            for (i, b) in s.iter_mut().enumerate() {
                *b = bytes.get(i % bytes.len().max(1)).copied().unwrap_or(0x5a) ^ (i as u8);
            }
        }
    }
    s
}

/// The modulus as `k` big-endian bytes (a partial top byte is zero-padded).
fn modulus_bytes(f: &RsaFixture) -> Vec<u8> {
    let k = f.bits.div_ceil(8);
    let mut out = vec![0u8; k - f.n.len()];
    out.extend_from_slice(&f.n);
    out
}

/// One signature (signing is the slow part), then each mutation of it.
fn rsa_case(
    f: &RsaFixture,
    pi: usize,
    hi: usize,
    msg: &[u8],
    seed: [u8; 32],
    mutations: &[Mutation],
) -> Result<(), TestCaseError> {
    let (padding, hash) = (PADDINGS[pi], HASHES[hi]);
    let sig = f.sign(padding, hash, msg, seed);
    prop_assert_eq!(sig.len(), f.bits.div_ceil(8));
    let accepted = f.check_all(msg, &sig, (padding, hash))?;
    prop_assert!(
        accepted,
        "{}-bit {:?}/{:?}: a RustCrypto signature was refused",
        f.bits,
        padding,
        hash
    );
    for m in mutations {
        let bad = mutate(&sig, m, &modulus_bytes(f));
        let accepted = f.check_all(msg, &bad, (padding, hash))?;
        if bad != sig {
            prop_assert!(!accepted, "{}-bit {:?}/{:?}: {:?} accepted", f.bits, padding, hash, m);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn rsa_matches_rustcrypto(
        key in 0..8usize,
        pi in 0..2usize,
        hi in 0..3usize,
        msg in vec(any::<u8>(), 0..300),
        seed in any::<[u8; 32]>(),
        mutations in vec(mutation(), 1..5),
    ) {
        rsa_case(&fixed_rsa_keys()[key], pi, hi, &msg, seed, &mutations)?;
    }
}

/// The malleability case of RFC 8017 5.2.2: a signature plus the modulus is
/// the same number modulo `n`, and only the range check refuses it. (Found
/// when that check was removed on purpose: Wycheproof's "not reduced" cases
/// and this property both failed.)
#[test]
fn a_signature_plus_the_modulus_is_refused_by_both() {
    let mut checked = 0;
    for f in fixed_rsa_keys() {
        for i in 0..8u8 {
            let msg = [i; 5];
            let sig = f.sign(Padding::Pkcs1v15, Hash::Sha256, &msg, [i; 32]);
            let Some(bad) = add(&sig, &modulus_bytes(f)) else {
                continue;
            };
            assert!(f.check_all(&msg, &sig, (Padding::Pkcs1v15, Hash::Sha256)).unwrap());
            assert!(
                !f.check_all(&msg, &bad, (Padding::Pkcs1v15, Hash::Sha256)).unwrap(),
                "{}-bit key",
                f.bits
            );
            checked += 1;
            break;
        }
    }
    assert!(checked >= 4, "s + n fits for most keys ({checked})");
}

/// Two keys made for this run, of random sizes in the accepted range
/// (2048 to 4096 bits), each checked like the fixed keys on a few messages.
#[test]
fn fresh_rsa_keys_of_random_sizes() {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for round in 0..2u64 {
        let bits = 2048 + (seed.rotate_left(17 * round as u32) % 2049) as usize;
        let fixture = RsaFixture::new(RsaPrivateKey::new(&mut rng, bits).unwrap());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 16,
            ..ProptestConfig::default()
        });
        let cases = (
            0..2usize,
            0..3usize,
            vec(any::<u8>(), 0..100),
            any::<[u8; 32]>(),
            vec(mutation(), 1..5),
        );
        runner
            .run(&cases, |(pi, hi, msg, s, m)| rsa_case(&fixture, pi, hi, &msg, s, &m))
            .unwrap_or_else(|e| panic!("a fresh {bits}-bit key (seed {seed}): {e}"));
    }
}

/// The P-256 group order `n`.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `N - x` for `0 < x < N` (32-byte big-endian).
fn n_minus(x: &[u8]) -> Vec<u8> {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(x[i]) - borrow;
        out[i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out.to_vec()
}

/// A change to an ECDSA signature `r || s` (or none).
#[derive(Debug, Clone)]
enum EcMutation {
    Plain(Mutation),
    /// `s` replaced by `n - s`: the same signature in plain ECDSA.
    HighS,
    /// `r` (or `s`) replaced by zero.
    ZeroHalf {
        r: bool,
    },
    /// `r` (or `s`) replaced by `n + k` (at least `n`).
    HalfAtLeastN {
        r: bool,
        k: u8,
    },
    /// `r` and `s` swapped.
    Swap,
}

fn ec_mutation() -> impl Strategy<Value = EcMutation> {
    prop_oneof![
        6 => mutation().prop_map(EcMutation::Plain),
        2 => Just(EcMutation::HighS),
        1 => any::<bool>().prop_map(|r| EcMutation::ZeroHalf { r }),
        2 => (any::<bool>(), any::<u8>()).prop_map(|(r, k)| EcMutation::HalfAtLeastN { r, k }),
        1 => Just(EcMutation::Swap),
    ]
}

fn ec_mutate(sig: &[u8], m: &EcMutation) -> Vec<u8> {
    let (r, s) = sig.split_at(32);
    match m {
        EcMutation::Plain(m) => mutate(sig, m, &[N, N].concat()),
        EcMutation::HighS => [r, &n_minus(s)].concat(),
        EcMutation::ZeroHalf { r: true } => [&[0u8; 32][..], s].concat(),
        EcMutation::ZeroHalf { r: false } => [r, &[0u8; 32][..]].concat(),
        EcMutation::HalfAtLeastN { r: true, k } => [&plus(&N, *k)[..], s].concat(),
        EcMutation::HalfAtLeastN { r: false, k } => [r, &plus(&N, *k)[..]].concat(),
        EcMutation::Swap => [s, r].concat(),
    }
}

proptest! {
    #[test]
    fn p256_matches_rustcrypto(
        secret in any::<[u8; 32]>(),
        msg in vec(any::<u8>(), 0..300),
        m in ec_mutation(),
        key_flip in proptest::option::weighted(0.1, 0..512usize),
    ) {
        let Ok(signing) = ::p256::ecdsa::SigningKey::from_slice(&secret) else {
            return Ok(()); // zero or at least n: not a key
        };
        let sec1 = signing.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let edge = p256::P256Public::from_uncompressed(&sec1).unwrap();
        let reference = rustcrypto::p256_key(&sec1).unwrap();
        let sig: ::p256::ecdsa::Signature = signing.sign(&msg);
        let sig = sig.to_bytes().to_vec();
        prop_assert!(edge.verify(&msg, &sig), "a RustCrypto signature was refused");
        prop_assert!(rustcrypto::p256_verify(&reference, &msg, &sig));
        let bad = ec_mutate(&sig, &m);
        let (e, rc) = (edge.verify(&msg, &bad), rustcrypto::p256_verify(&reference, &msg, &bad));
        prop_assert_eq!(e, rc, "{:?}: edge {} RustCrypto {}", m, e, rc);
        match m {
            EcMutation::HighS => prop_assert!(e, "JWS has no low-S rule: (r, n - s) is valid"),
            _ if bad != sig => prop_assert!(!e, "{:?} accepted", m),
            _ => {}
        }
        // a key with one bit changed: both refuse it (off the curve), or both agree on the signature
        if let Some(bit) = key_flip {
            let mut other = sec1.clone();
            other[1 + bit / 8] ^= 1 << (bit % 8);
            let (e, rc) = (p256::P256Public::from_uncompressed(&other), rustcrypto::p256_key(&other));
            prop_assert_eq!(e.is_some(), rc.is_some(), "key with bit {} flipped", bit);
            if let (Some(e), Some(rc)) = (e, rc) {
                prop_assert_eq!(e.verify(&msg, &sig), rustcrypto::p256_verify(&rc, &msg, &sig));
            }
        }
    }
}
