//! ECDSA P-256 with SHA-256 (ES256) signature verification, written for the
//! edge's hot path on wasm32.
//!
//! jwt-simple's pure-Rust backend verifies with constant-time code (complete
//! point formulas, constant-time table scans and inversions), which a
//! verifier does not need: the signature, the message and the key are all
//! public. This verifier uses variable-time arithmetic instead: Montgomery
//! field multiplication on 32-bit limbs ([`super::montgomery`]), Jacobian
//! coordinates with the `a = -3` doubling, mixed additions against affine
//! tables of odd multiples (width-5 NAF) computed once for the base point and
//! once per key, and a final check `X == r * Z^2` that needs no inversion.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::montgomery::{add_in_place, less_than, neg_inverse, r2_mod, sub_in_place, to_limbs};

/// A number below the modulus, little-endian 32-bit limbs.
type Fe = [u32; 8];

const ZERO: Fe = [0; 8];
/// The field prime `p = 2^256 - 2^224 + 2^192 + 2^96 - 1`.
const P: Fe = [0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0, 0, 0, 1, 0xffff_ffff];
const ONE: Fe = [1, 0, 0, 0, 0, 0, 0, 0];

/// Arithmetic modulo an odd 256-bit number, in Montgomery form.
struct Modulus {
    m: Fe,
    /// `m` is the field prime [`P`].
    is_p: bool,
    n0inv: u32,
    rr: Fe,
    /// `R mod m`: one, in Montgomery form.
    one: Fe,
}

impl Modulus {
    fn new(m: Fe) -> Modulus {
        Modulus::with_representation(m, m == P)
    }

    /// `is_p`: plain numbers reduced with the field prime's special form;
    /// otherwise Montgomery form.
    fn with_representation(m: Fe, is_p: bool) -> Modulus {
        let mut rr = ZERO;
        rr.copy_from_slice(&r2_mod(&m));
        let mut md = Modulus {
            m,
            is_p,
            n0inv: neg_inverse(m[0]),
            rr,
            one: ZERO,
        };
        md.one = md.to_mont(&ONE);
        md
    }

    #[inline]
    fn mul(&self, a: &Fe, b: &Fe) -> Fe {
        if self.is_p {
            // field elements are plain numbers, reduced with p's special form
            solinas(&product8(a, b))
        } else {
            mont_mul8(&self.m, self.n0inv, a, b)
        }
    }

    #[inline]
    fn sqr(&self, a: &Fe) -> Fe {
        if self.is_p {
            solinas(&square8(a))
        } else {
            mont_sqr8(&self.m, self.n0inv, a)
        }
    }

    /// `a + b mod m`: the sum and the sum minus `m` are computed in one
    /// pass each (no comparison loop), and the one below `m` is kept.
    #[inline]
    fn add(&self, a: &Fe, b: &Fe) -> Fe {
        let m = if self.is_p { &P } else { &self.m };
        let mut sum = ZERO;
        let mut carry = 0u64;
        for i in 0..8 {
            let s = u64::from(a[i]) + u64::from(b[i]) + carry;
            sum[i] = s as u32;
            carry = s >> 32;
        }
        let mut reduced = ZERO;
        let mut borrow = 0u64;
        for i in 0..8 {
            let d = u64::from(sum[i]).wrapping_sub(u64::from(m[i])).wrapping_sub(borrow);
            reduced[i] = d as u32;
            borrow = (d >> 63) & 1;
        }
        // sum >= m exactly when the 257-bit sum minus m did not borrow
        if carry == 1 || borrow == 0 {
            reduced
        } else {
            sum
        }
    }

    /// `a - b mod m`, adding `m` back when the difference borrowed.
    #[inline]
    fn sub(&self, a: &Fe, b: &Fe) -> Fe {
        let m = if self.is_p { &P } else { &self.m };
        let mut diff = ZERO;
        let mut borrow = 0u64;
        for i in 0..8 {
            let d = u64::from(a[i]).wrapping_sub(u64::from(b[i])).wrapping_sub(borrow);
            diff[i] = d as u32;
            borrow = (d >> 63) & 1;
        }
        if borrow == 0 {
            return diff;
        }
        let mut carry = 0u64;
        for i in 0..8 {
            let s = u64::from(diff[i]) + u64::from(m[i]) + carry;
            diff[i] = s as u32;
            carry = s >> 32;
        }
        diff
    }

    /// Into the working representation: Montgomery form, except modulo
    /// the field prime, whose elements stay plain (see [`solinas`]).
    fn to_mont(&self, a: &Fe) -> Fe {
        if self.is_p {
            *a
        } else {
            self.mul(a, &self.rr)
        }
    }

    /// `a^e` for `a` in Montgomery form and a plain exponent.
    fn pow(&self, a: &Fe, e: &Fe) -> Fe {
        let mut x = self.one;
        for limb in e.iter().rev() {
            for bit in (0..32).rev() {
                x = self.sqr(&x);
                if (limb >> bit) & 1 == 1 {
                    x = self.mul(&x, a);
                }
            }
        }
        x
    }

    /// `a^-1 mod m` for a plain `0 < a < m` (binary extended Euclid: variable
    /// time, several times cheaper than Fermat's exponentiation), plain.
    fn inv_plain(&self, a: &Fe) -> Fe {
        let m = &self.m;
        let (mut u, mut v) = (*a, *m);
        let (mut x1, mut x2) = (ONE, ZERO);
        // halves x modulo m (m odd): x / 2 or (x + m) / 2
        let half = |x: &mut Fe| {
            let carry = if x[0] & 1 == 1 { add_in_place(x, m) } else { false };
            shift_right(x, carry);
        };
        // u and v stay odd at the loop's head, and both reach 1 or the other's gcd
        while u != ONE && v != ONE {
            if is_zero(&u) || is_zero(&v) {
                return ZERO; // not invertible (a == 0): refused by the caller
            }
            while u[0] & 1 == 0 {
                shift_right(&mut u, false);
                half(&mut x1);
            }
            while v[0] & 1 == 0 {
                shift_right(&mut v, false);
                half(&mut x2);
            }
            if less_than(&u, &v) {
                let _ = sub_in_place(&mut v, &u);
                x2 = self.sub(&x2, &x1);
            } else {
                let _ = sub_in_place(&mut u, &v);
                x1 = self.sub(&x1, &x2);
            }
        }
        if u == ONE {
            x1
        } else {
            x2
        }
    }

    /// `a^-1` (Fermat: `a^(m-2)`), for `a != 0` in Montgomery form.
    fn inv(&self, a: &Fe) -> Fe {
        let mut e = self.m;
        let _ = sub_in_place(&mut e, &[2, 0, 0, 0, 0, 0, 0, 0]);
        self.pow(a, &e)
    }
}

/// Montgomery multiplication on fixed-size arrays (arithmetic modulo the
/// group order): the same operand scanning as [`super::montgomery::mont_mul`],
/// unrolled by the compiler for 8 limbs.
#[inline(always)]
fn mont_mul8(m: &Fe, n0inv: u32, a: &Fe, b: &Fe) -> Fe {
    let mut t = [0u32; 10];
    for &ai in a {
        let ai = u64::from(ai);
        let mut c: u64 = 0;
        for j in 0..8 {
            let s = u64::from(t[j]) + ai * u64::from(b[j]) + c;
            t[j] = s as u32;
            c = s >> 32;
        }
        let s = u64::from(t[8]) + c;
        t[8] = s as u32;
        t[9] = (s >> 32) as u32;
        let q = u64::from(t[0].wrapping_mul(n0inv));
        let mut c = (u64::from(t[0]) + q * u64::from(m[0])) >> 32;
        for j in 1..8 {
            let s = u64::from(t[j]) + q * u64::from(m[j]) + c;
            t[j - 1] = s as u32;
            c = s >> 32;
        }
        let s = u64::from(t[8]) + c;
        t[7] = s as u32;
        t[8] = t[9] + (s >> 32) as u32;
        t[9] = 0;
    }
    let mut out = [t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]];
    if t[8] != 0 || !less_than(&out, m) {
        let _ = sub_in_place(&mut out, m);
    }
    out
}

/// Montgomery squaring: the 512-bit square from 36 products (each cross
/// product once, doubled, plus the diagonal), then 8 rounds of reduction.
#[inline(always)]
fn mont_sqr8(m: &Fe, n0inv: u32, a: &Fe) -> Fe {
    let wide = square8(a);
    let mut t = [0u32; 17];
    t[..16].copy_from_slice(&wide);
    for i in 0..8 {
        let q = u64::from(t[i].wrapping_mul(n0inv));
        let mut c: u64 = 0;
        for j in 0..8 {
            let s = u64::from(t[i + j]) + q * u64::from(m[j]) + c;
            t[i + j] = s as u32;
            c = s >> 32;
        }
        let mut k = i + 8;
        while c != 0 && k < 17 {
            let s = u64::from(t[k]) + c;
            t[k] = s as u32;
            c = s >> 32;
            k += 1;
        }
    }
    let mut out = [t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]];
    if t[16] != 0 || !less_than(&out, m) {
        let _ = sub_in_place(&mut out, m);
    }
    out
}

/// The 512-bit square of `a`: each cross product once, doubled, plus the diagonal.
#[inline(always)]
fn square8(a: &Fe) -> [u32; 16] {
    let mut t = [0u32; 16];
    for i in 0..8 {
        let ai = u64::from(a[i]);
        let mut c: u64 = 0;
        for j in (i + 1)..8 {
            let s = u64::from(t[i + j]) + ai * u64::from(a[j]) + c;
            t[i + j] = s as u32;
            c = s >> 32;
        }
        t[i + 8] = c as u32;
    }
    let mut top = 0u32;
    for w in t.iter_mut() {
        let v = *w;
        *w = (v << 1) | top;
        top = v >> 31;
    }
    let mut c: u64 = 0;
    for i in 0..8 {
        let sq = u64::from(a[i]) * u64::from(a[i]);
        let s = u64::from(t[2 * i]) + (sq & 0xffff_ffff) + c;
        t[2 * i] = s as u32;
        let s = u64::from(t[2 * i + 1]) + (sq >> 32) + (s >> 32);
        t[2 * i + 1] = s as u32;
        c = s >> 32;
    }
    t
}

/// The 512-bit product of `a` and `b`.
#[inline(always)]
fn product8(a: &Fe, b: &Fe) -> [u32; 16] {
    let mut t = [0u32; 16];
    for i in 0..8 {
        let ai = u64::from(a[i]);
        let mut c: u64 = 0;
        for j in 0..8 {
            let s = u64::from(t[i + j]) + ai * u64::from(b[j]) + c;
            t[i + j] = s as u32;
            c = s >> 32;
        }
        t[i + 8] = c as u32;
    }
    t
}

/// A 512-bit number modulo the field prime by NIST's fast reduction (FIPS
/// 186-4 D.2.3; Hankerson, Menezes and Vanstone, Algorithm 2.29): the high
/// words folded in with additions and subtractions only, then a few
/// additions or subtractions of `p`.
#[inline(always)]
fn solinas(c: &[u32; 16]) -> Fe {
    let w = |i: usize| i64::from(c[i]);
    let acc: [i64; 8] = [
        w(0) + w(8) + w(9) - w(11) - w(12) - w(13) - w(14),
        w(1) + w(9) + w(10) - w(12) - w(13) - w(14) - w(15),
        w(2) + w(10) + w(11) - w(13) - w(14) - w(15),
        w(3) + 2 * w(11) + 2 * w(12) + w(13) - w(15) - w(8) - w(9),
        w(4) + 2 * w(12) + 2 * w(13) + w(14) - w(9) - w(10),
        w(5) + 2 * w(13) + 2 * w(14) + w(15) - w(10) - w(11),
        w(6) + 3 * w(14) + 2 * w(15) + w(13) - w(8) - w(9),
        w(7) + 3 * w(15) + w(8) - w(10) - w(11) - w(12) - w(13),
    ];
    let mut out = ZERO;
    let mut carry: i64 = 0;
    for i in 0..8 {
        let v = acc[i] + carry;
        out[i] = v as u32; // the low 32 bits (two's complement)
        carry = v >> 32; // floor division: the signed carry
    }
    // out + carry * 2^256, with a small carry: move it into range by whole p
    while carry > 0 {
        if sub_in_place(&mut out, &P) {
            carry -= 1;
        }
    }
    while carry < 0 {
        if add_in_place(&mut out, &P) {
            carry += 1;
        }
    }
    if !less_than(&out, &P) {
        let _ = sub_in_place(&mut out, &P);
    }
    out
}

fn fe_from_hex(hex: &str) -> Fe {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    fe_from_be(&bytes)
}

/// 32 big-endian bytes (or fewer) as limbs.
fn fe_from_be(bytes: &[u8]) -> Fe {
    let mut out = ZERO;
    out.copy_from_slice(&to_limbs(bytes, 8));
    out
}

/// `x >>= 1`, shifting `top` in as the new highest bit.
fn shift_right(x: &mut Fe, top: bool) {
    for j in 0..8 {
        let next = if j == 7 { u32::from(top) } else { x[j + 1] };
        x[j] = (x[j] >> 1) | (next << 31);
    }
}

fn is_zero(a: &Fe) -> bool {
    a.iter().all(|l| *l == 0)
}

/// The curve: its field, its order, `b` and the base point's table.
struct Curve {
    p: Modulus,
    n: Modulus,
    /// `b`, Montgomery form.
    b: Fe,
    /// Odd multiples `1G, 3G, ..., 63G` (affine, Montgomery form).
    g: Vec<Affine>,
}

/// NAF widths: the base point's table is built once per process, a key's
/// once per key. A width-w table holds `2^(w-2)` odd multiples.
const G_WIDTH: u32 = 7;
const KEY_WIDTH: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// Jacobian coordinates `(X / Z^2, Y / Z^3)`; `Z == 0` is the point at infinity.
#[derive(Debug, Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

fn curve() -> &'static Curve {
    static CURVE: OnceLock<Curve> = OnceLock::new();
    CURVE.get_or_init(|| {
        let p = Modulus::new(fe_from_hex(
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        ));
        let n = Modulus::new(fe_from_hex(
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
        ));
        let b = p.to_mont(&fe_from_hex(
            "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
        ));
        let g = Affine {
            x: p.to_mont(&fe_from_hex(
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
            )),
            y: p.to_mont(&fe_from_hex(
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
            )),
        };
        let mut c = Curve { p, n, b, g: Vec::new() };
        c.g = c.odd_multiples(&g, G_WIDTH);
        c
    })
}

impl Curve {
    /// Whether `a` (Montgomery form) is on `y^2 = x^3 - 3x + b`.
    fn on_curve(&self, a: &Affine) -> bool {
        let f = &self.p;
        let x3 = f.mul(&f.sqr(&a.x), &a.x);
        let three_x = f.add(&f.add(&a.x, &a.x), &a.x);
        let rhs = f.add(&f.sub(&x3, &three_x), &self.b);
        f.sqr(&a.y) == rhs
    }

    fn double(&self, q: &Jacobian) -> Jacobian {
        let f = &self.p;
        if is_zero(&q.z) {
            return *q;
        }
        let delta = f.sqr(&q.z);
        let gamma = f.sqr(&q.y);
        let beta = f.mul(&q.x, &gamma);
        let t = f.mul(&f.sub(&q.x, &delta), &f.add(&q.x, &delta));
        let alpha = f.add(&f.add(&t, &t), &t);
        let beta2 = f.add(&beta, &beta);
        let beta4 = f.add(&beta2, &beta2);
        let beta8 = f.add(&beta4, &beta4);
        let x = f.sub(&f.sqr(&alpha), &beta8);
        let yz = f.add(&q.y, &q.z);
        let z = f.sub(&f.sub(&f.sqr(&yz), &gamma), &delta);
        let g2 = f.sqr(&gamma);
        let g4 = f.add(&g2, &g2);
        let g8 = f.add(&g4, &g4);
        let y = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x)), &f.add(&g8, &g8));
        Jacobian { x, y, z }
    }

    /// `q + a` with `a` affine (not infinity).
    fn add_affine(&self, q: &Jacobian, a: &Affine) -> Jacobian {
        let f = &self.p;
        if is_zero(&q.z) {
            return Jacobian {
                x: a.x,
                y: a.y,
                z: f.one,
            };
        }
        let z1z1 = f.sqr(&q.z);
        let u2 = f.mul(&a.x, &z1z1);
        let s2 = f.mul(&f.mul(&a.y, &q.z), &z1z1);
        let h = f.sub(&u2, &q.x);
        let s = f.sub(&s2, &q.y);
        if is_zero(&h) {
            return if is_zero(&s) {
                self.double(q)
            } else {
                Jacobian {
                    x: f.one,
                    y: f.one,
                    z: ZERO,
                }
            };
        }
        let r = f.add(&s, &s);
        let hh = f.sqr(&h);
        let i = f.add(&f.add(&hh, &hh), &f.add(&hh, &hh));
        let j = f.mul(&h, &i);
        let v = f.mul(&q.x, &i);
        let x = f.sub(&f.sub(&f.sqr(&r), &j), &f.add(&v, &v));
        let y1j = f.mul(&q.y, &j);
        let y = f.sub(&f.mul(&r, &f.sub(&v, &x)), &f.add(&y1j, &y1j));
        let zh = f.add(&q.z, &h);
        let z = f.sub(&f.sub(&f.sqr(&zh), &z1z1), &hh);
        Jacobian { x, y, z }
    }

    fn to_affine(&self, q: &Jacobian) -> Affine {
        let f = &self.p;
        let zi = f.inv(&q.z);
        let zi2 = f.sqr(&zi);
        Affine {
            x: f.mul(&q.x, &zi2),
            y: f.mul(&f.mul(&q.y, &zi2), &zi),
        }
    }

    /// `1a, 3a, ..., (2^(w-1) - 1)a`, affine (an inversion each: once per key).
    fn odd_multiples(&self, a: &Affine, width: u32) -> Vec<Affine> {
        let one = Jacobian {
            x: a.x,
            y: a.y,
            z: self.p.one,
        };
        let two = self.to_affine(&self.double(&one));
        let count = 1usize << (width - 2);
        let mut out = Vec::with_capacity(count);
        out.push(*a);
        while let Some(&last) = out.last() {
            if out.len() == count {
                break;
            }
            let prev = Jacobian {
                x: last.x,
                y: last.y,
                z: self.p.one,
            };
            out.push(self.to_affine(&self.add_affine(&prev, &two)));
        }
        out
    }

    fn neg(&self, a: &Affine) -> Affine {
        Affine {
            x: a.x,
            y: self.p.sub(&ZERO, &a.y),
        }
    }
}

/// Width-`w` NAF digits of `k` (least significant first, `2 <= w <= 7`):
/// odd digits below `2^(w-1)` in absolute value, or 0; at most 257 of them.
fn wnaf(k: &Fe, w: u32) -> [i8; 257] {
    let mask = (1u32 << w) - 1;
    let half = 1i16 << (w - 1);
    let mut digits = [0i8; 257];
    let mut k = [k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], 0u32];
    let mut i = 0;
    while k.iter().any(|l| *l != 0) && i < digits.len() {
        if k[0] & 1 == 1 {
            let low = (k[0] & mask) as i16;
            let d = (if low >= half { low - 2 * half } else { low }) as i8;
            digits[i] = d;
            if d > 0 {
                let _ = sub_in_place(&mut k, &[d as u32, 0, 0, 0, 0, 0, 0, 0, 0]);
            } else {
                let _ = add_in_place(&mut k, &[(-d) as u32, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        // k >>= 1
        for j in 0..k.len() {
            let next = k.get(j + 1).copied().unwrap_or(0);
            k[j] = (k[j] >> 1) | (next << 31);
        }
        i += 1;
    }
    digits
}

/// A P-256 public key prepared for verification.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct P256Public {
    /// Odd multiples of the key's point, affine, Montgomery form.
    table: Vec<Affine>,
}

impl std::fmt::Debug for P256Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Public")
    }
}

impl P256Public {
    /// The key from its uncompressed SEC1 encoding (`04 || x || y`). `None`
    /// when the encoding is wrong or the point is not on the curve.
    pub(crate) fn from_uncompressed(sec1: &[u8]) -> Option<P256Public> {
        if sec1.len() != 65 || sec1[0] != 4 {
            return None;
        }
        let c = curve();
        let (x, y) = (fe_from_be(&sec1[1..33]), fe_from_be(&sec1[33..65]));
        if !less_than(&x, &c.p.m) || !less_than(&y, &c.p.m) {
            return None;
        }
        let a = Affine {
            x: c.p.to_mont(&x),
            y: c.p.to_mont(&y),
        };
        if !c.on_curve(&a) {
            return None;
        }
        Some(P256Public {
            table: c.odd_multiples(&a, KEY_WIDTH),
        })
    }

    /// Whether `signature` (`r || s`, 32 bytes each, as in JWS) is a valid
    /// ES256 signature of `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != 64 {
            return false;
        }
        let c = curve();
        let (r, s) = (fe_from_be(&signature[..32]), fe_from_be(&signature[32..]));
        if is_zero(&r) || is_zero(&s) || !less_than(&r, &c.n.m) || !less_than(&s, &c.n.m) {
            return false;
        }
        let mut e = fe_from_be(&Sha256::digest(message));
        if !less_than(&e, &c.n.m) {
            let _ = sub_in_place(&mut e, &c.n.m);
        }
        // w = s^-1 (Montgomery form); a plain number times it is plain again
        let w = c.n.to_mont(&c.n.inv_plain(&s));
        let u1 = c.n.mul(&e, &w);
        let u2 = c.n.mul(&r, &w);
        let (d1, d2) = (wnaf(&u1, G_WIDTH), wnaf(&u2, KEY_WIDTH));
        let mut acc = Jacobian {
            x: c.p.one,
            y: c.p.one,
            z: ZERO,
        };
        for i in (0..d1.len()).rev() {
            acc = c.double(&acc);
            for (d, table) in [(d1[i], &c.g), (d2[i], &self.table)] {
                if d != 0 {
                    let Some(&point) = table.get(usize::from(d.unsigned_abs() / 2)) else {
                        return false;
                    };
                    let point = if d > 0 { point } else { c.neg(&point) };
                    acc = c.add_affine(&acc, &point);
                }
            }
        }
        if is_zero(&acc.z) {
            return false;
        }
        // x(acc) mod n == r, i.e. X == r' * Z^2 for r' = r or r + n (when below p)
        let zz = c.p.sqr(&acc.z);
        if c.p.mul(&c.p.to_mont(&r), &zz) == acc.x {
            return true;
        }
        let mut r_plus_n = r;
        if add_in_place(&mut r_plus_n, &c.n.m) || !less_than(&r_plus_n, &c.p.m) {
            return false;
        }
        c.p.mul(&c.p.to_mont(&r_plus_n), &zz) == acc.x
    }
}

#[cfg(test)]
mod tests {
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
    fn euclid_and_fermat_inverses_agree() {
        let c = curve();
        for m in [&c.n, &c.p] {
            for seed in [1u32, 2, 3, 0xffff_ffff, 12345] {
                let mut a = ZERO;
                for (i, l) in a.iter_mut().enumerate() {
                    *l = seed.wrapping_mul(0x9e37_79b9).rotate_left(i as u32 * 5) ^ (i as u32);
                }
                a[7] &= 0x7fff_ffff; // below m
                let plain = m.inv_plain(&a);
                let fermat = m.mul(&m.inv(&m.to_mont(&a)), &ONE); // out of Montgomery form
                assert_eq!(plain, fermat, "seed {seed}");
                // a * a^-1 == 1
                assert_eq!(m.mul(&m.to_mont(&a), &plain), ONE);
            }
            assert_eq!(m.inv_plain(&ONE), ONE);
        }
    }

    #[test]
    fn squaring_matches_multiplication() {
        let c = curve();
        for m in [&c.n, &c.p] {
            let mut a = m.one;
            for round in 0..200 {
                // walk through varied values, including ones near m
                a = m.add(&m.mul(&a, &a), &m.rr);
                let mut near = m.m;
                near[0] -= 1 + round;
                for x in [a, near, ZERO, m.one] {
                    assert_eq!(m.sqr(&x), m.mul(&x, &x), "round {round}");
                }
            }
        }
    }

    #[test]
    fn addition_and_subtraction_reduce() {
        let c = curve();
        for m in [&c.n, &c.p] {
            let mut top = m.m;
            top[0] -= 1; // m - 1
            let one = ONE;
            assert_eq!(m.add(&top, &one), ZERO, "(m - 1) + 1");
            assert_eq!(m.sub(&ZERO, &one), top, "0 - 1");
            assert_eq!(m.add(&top, &top), m.sub(&top, &one), "(m - 1) * 2 = m - 2");
            let mut a = m.one;
            for _ in 0..100 {
                a = m.mul(&a, &m.rr);
                let b = m.sqr(&a);
                let s = m.add(&a, &b);
                assert!(less_than(&s, &m.m));
                assert_eq!(m.sub(&s, &b), a);
                assert_eq!(m.add(&m.sub(&a, &b), &b), a);
            }
        }
    }

    #[test]
    fn fast_reduction_matches_montgomery_arithmetic() {
        let fast = Modulus::new(P);
        let monty = Modulus::with_representation(P, false);
        assert!(fast.is_p && !monty.is_p);
        // out of Montgomery form
        let plain = |x: &Fe| monty.mul(x, &ONE);
        let mut near_p = P;
        near_p[0] -= 1;
        let mut values = vec![
            ZERO,
            ONE,
            near_p,
            [0xffff_ffff, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0x8000_0000],
        ];
        let mut x: Fe = [
            0x1234_5678,
            0x9abc_def0,
            0x0fed_cba9,
            0x8765_4321,
            7,
            0xffff_fffe,
            1,
            0x7fff_ffff,
        ];
        for _ in 0..300 {
            x = fast.add(&fast.mul(&x, &x), &ONE);
            values.push(x);
        }
        for a in &values {
            for b in values.iter().step_by(37) {
                let want = plain(&monty.mul(&monty.to_mont(a), &monty.to_mont(b)));
                assert_eq!(fast.mul(a, b), want);
            }
            let want = plain(&monty.sqr(&monty.to_mont(a)));
            assert_eq!(fast.sqr(a), want);
        }
    }

    #[test]
    fn the_prime_constant_is_p() {
        let c = curve();
        assert!(c.p.is_p);
        assert!(!c.n.is_p);
        assert_eq!(c.p.m, P);
        // -p^-1 mod 2^32 is 1, as mont_mul8's constant path assumes
        assert_eq!(neg_inverse(P[0]), 1);
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
}
