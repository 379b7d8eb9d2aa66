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

use super::montgomery::{add_in_place, less_than, sub_in_place};

mod field;

use field::{fe_from_be, fe_from_hex, is_zero, Fe, Modulus, ZERO};

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
mod tests;
