use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use jwt_simple::prelude::*;

fn split(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input, crate::b64::decode_url(sig).unwrap())
}

fn key(kp: &ES256KeyPair) -> P256Public {
    P256Public::from_uncompressed(&kp.public_key().public_key().to_bytes_uncompressed()).unwrap()
}

#[test]
fn signatures_from_jwt_simple_verify_and_tampering_fails() {
    for round in 0..8 {
        let kp = ES256KeyPair::generate();
        let k = key(&kp);
        let token = kp
            .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("user-{round}")))
            .unwrap();
        let (input, sig) = split(&token);
        assert!(k.verify(input.as_bytes(), &sig), "round {round}");
        assert!(!k.verify(b"another message", &sig));
        for i in [0, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            assert!(!k.verify(input.as_bytes(), &bad), "round {round}, byte {i}");
        }
        // another key does not verify it
        assert!(!key(&ES256KeyPair::generate()).verify(input.as_bytes(), &sig));
    }
}

#[test]
fn hostile_signatures_fail() {
    let kp = ES256KeyPair::generate();
    let k = key(&kp);
    let token = kp.sign(Claims::create(Duration::from_mins(5))).unwrap();
    let (input, sig) = split(&token);
    let n = hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let zero = [0u8; 32];
    for (r, s) in [
        (&zero[..], &sig[32..]),
        (&sig[..32], &zero[..]),
        (&n[..], &sig[32..]),
        (&sig[..32], &n[..]),
        (&[0xff; 32][..], &sig[32..]),
    ] {
        assert!(!k.verify(input.as_bytes(), &[r, s].concat()));
    }
    for len in [0, 63, 65, 72] {
        assert!(!k.verify(input.as_bytes(), &vec![1u8; len]));
    }
    // (r, n - s) is the other valid signature of the same message in
    // plain ECDSA; JWS accepts it too (no low-s rule), as jwt-simple does
    let mut s = fe_from_be(&sig[32..]);
    let mut neg = fe_from_be(&n);
    let _ = sub_in_place(&mut neg, &s);
    s = neg;
    let mut s_bytes = [0u8; 32];
    for (i, b) in s_bytes.iter_mut().rev().enumerate() {
        *b = (s[i / 4] >> (8 * (i % 4))) as u8;
    }
    assert!(k.verify(input.as_bytes(), &[&sig[..32], &s_bytes[..]].concat()));
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn keys_off_the_curve_or_badly_encoded_are_refused() {
    let kp = ES256KeyPair::generate();
    let good = kp.public_key().public_key().to_bytes_uncompressed();
    assert!(P256Public::from_uncompressed(&good).is_some());
    let mut off = good.clone();
    off[64] ^= 1;
    assert!(P256Public::from_uncompressed(&off).is_none(), "not on the curve");
    let mut compressed = good.clone();
    compressed[0] = 2;
    assert!(P256Public::from_uncompressed(&compressed).is_none());
    assert!(P256Public::from_uncompressed(&good[..64]).is_none());
    assert!(P256Public::from_uncompressed(&[]).is_none());
    let mut big = vec![4u8];
    big.extend_from_slice(&[0xff; 64]);
    assert!(P256Public::from_uncompressed(&big).is_none(), "coordinates >= p");
    // the base point itself is a valid key
    let g = hex_bytes(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    );
    assert!(P256Public::from_uncompressed(&g).is_some());
}

#[test]
fn wnaf_digits_recompose_the_scalar() {
    for w in [5, G_WIDTH, KEY_WIDTH] {
        let bound = (1i8 << (w - 1)) - 1;
        for k in [
            1u64,
            2,
            15,
            16,
            17,
            31,
            32,
            33,
            63,
            64,
            65,
            127,
            0xdead_beef_1234,
            u64::MAX,
        ] {
            let mut fe = ZERO;
            fe[0] = k as u32;
            fe[1] = (k >> 32) as u32;
            let digits = wnaf(&fe, w);
            let mut sum: i128 = 0;
            for (i, d) in digits.iter().enumerate().take(72) {
                assert!(*d == 0 || (d % 2 != 0 && d.abs() <= bound), "w {w}: digit {d}");
                sum += i128::from(*d) << i;
            }
            assert_eq!(sum, i128::from(k), "w {w}: {k}");
        }
    }
}
