//! The P-256 field and group-order arithmetic the verifier in [`super`]
//! runs on: 256-bit numbers as eight 32-bit limbs, Montgomery multiplication,
//! and the field prime's special-form (Solinas) reduction.

use super::super::montgomery::{add_in_place, less_than, neg_inverse, r2_mod, sub_in_place, to_limbs};

/// A number below the modulus, little-endian 32-bit limbs.
pub(super) type Fe = [u32; 8];

pub(super) const ZERO: Fe = [0; 8];
/// The field prime `p = 2^256 - 2^224 + 2^192 + 2^96 - 1`.
const P: Fe = [0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0, 0, 0, 1, 0xffff_ffff];
const ONE: Fe = [1, 0, 0, 0, 0, 0, 0, 0];

/// Arithmetic modulo an odd 256-bit number, in Montgomery form.
pub(super) struct Modulus {
    pub(super) m: Fe,
    /// `m` is the field prime [`P`].
    is_p: bool,
    n0inv: u32,
    rr: Fe,
    /// `R mod m`: one, in Montgomery form.
    pub(super) one: Fe,
}

impl Modulus {
    pub(super) fn new(m: Fe) -> Modulus {
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
    pub(super) fn mul(&self, a: &Fe, b: &Fe) -> Fe {
        if self.is_p {
            // field elements are plain numbers, reduced with p's special form
            solinas(&product8(a, b))
        } else {
            mont_mul8(&self.m, self.n0inv, a, b)
        }
    }

    #[inline]
    pub(super) fn sqr(&self, a: &Fe) -> Fe {
        if self.is_p {
            solinas(&square8(a))
        } else {
            mont_sqr8(&self.m, self.n0inv, a)
        }
    }

    /// `a + b mod m`: the sum and the sum minus `m` are computed in one
    /// pass each (no comparison loop), and the one below `m` is kept.
    #[inline]
    pub(super) fn add(&self, a: &Fe, b: &Fe) -> Fe {
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
    pub(super) fn sub(&self, a: &Fe, b: &Fe) -> Fe {
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
    pub(super) fn to_mont(&self, a: &Fe) -> Fe {
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
    pub(super) fn inv_plain(&self, a: &Fe) -> Fe {
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
    pub(super) fn inv(&self, a: &Fe) -> Fe {
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

pub(super) fn fe_from_hex(hex: &str) -> Fe {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    fe_from_be(&bytes)
}

/// 32 big-endian bytes (or fewer) as limbs.
pub(super) fn fe_from_be(bytes: &[u8]) -> Fe {
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

pub(super) fn is_zero(a: &Fe) -> bool {
    a.iter().all(|l| *l == 0)
}

#[cfg(test)]
mod tests;
