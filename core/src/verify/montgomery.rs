//! Multi-precision arithmetic modulo an odd number, on little-endian 32-bit
//! limbs (the width wasm multiplies natively): Montgomery multiplication and
//! the helpers around it, shared by the RSA and P-256 verifiers. Every input
//! is public (signatures, public keys), so nothing here is constant-time.

/// `-n0^-1 mod 2^32` for an odd `n0` (the low limb of the modulus).
pub(crate) fn neg_inverse(n0: u32) -> u32 {
    // Newton's iteration doubles the correct low bits: 1 -> 2 -> ... -> 32.
    let mut inv: u32 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// `R^2 mod n` with `R = 2^(32 * limbs)`, by doubling 1 modulo `n`
/// `2 * 32 * limbs` times (once per modulus).
pub(crate) fn r2_mod(n: &[u32]) -> Vec<u32> {
    let mut rr = vec![0u32; n.len()];
    if let Some(first) = rr.first_mut() {
        *first = 1;
    }
    for _ in 0..2 * 32 * n.len() {
        double_mod(&mut rr, n);
    }
    rr
}

/// Montgomery multiplication: `out = a * b / R mod n`, with `a, b < n`.
/// `t` is scratch of `2 * limbs + 2` words. Row `i` adds `a[i] * b + m * n`
/// at offset `i` in one pass (`m` chosen so that word `i` becomes zero), so
/// the result is the top half; the loop runs over zipped slices, without
/// bounds checks. Each step keeps two carries: `t + a[i] * b[j] + c1` and
/// `low half + m * n[j] + c2` each stay below 2^64.
pub(crate) fn mont_mul(n: &[u32], n0inv: u32, a: &[u32], b: &[u32], out: &mut [u32], t: &mut [u32]) {
    let l = n.len();
    t.fill(0);
    let Some(&b0) = b.first() else { return };
    for (i, &ai) in a.iter().enumerate().take(l) {
        let Some(row) = t.get_mut(i..i + l + 2) else { return };
        let Some(&t0) = row.first() else { return };
        // the low word after adding a[i] * b, times -n^-1: clears that word
        let m = u64::from(t0.wrapping_add(ai.wrapping_mul(b0)).wrapping_mul(n0inv));
        let ai = u64::from(ai);
        let (mut c1, mut c2): (u64, u64) = (0, 0);
        for ((tj, &bj), &nj) in row.iter_mut().zip(b).zip(n) {
            let s1 = u64::from(*tj) + ai * u64::from(bj) + c1;
            c1 = s1 >> 32;
            let s2 = (s1 & 0xffff_ffff) + m * u64::from(nj) + c2;
            c2 = s2 >> 32;
            *tj = s2 as u32;
        }
        carry_into(&mut row[l..], c1 + c2);
    }
    // the top half is below 2n: one conditional subtraction brings it below n
    let top = &mut t[l..2 * l + 1];
    if top[l] != 0 || !less_than(&top[..l], n) {
        let _ = sub_in_place(&mut top[..l], n);
    }
    out.copy_from_slice(&top[..l]);
}

pub(crate) fn strip(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Big-endian bytes to `limbs` little-endian limbs (bytes beyond are ignored
/// by construction: callers pass at most `4 * limbs` significant bytes).
pub(crate) fn to_limbs(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, b) in be.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*b) << (8 * (i % 4));
        }
    }
    out
}

/// Little-endian limbs to `len` big-endian bytes.
pub(crate) fn to_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, byte) in out.iter_mut().rev().enumerate() {
        if let Some(limb) = limbs.get(i / 4) {
            *byte = (limb >> (8 * (i % 4))) as u8;
        }
    }
    out
}

/// Adds `c` at `words[0]`, propagating the carry.
pub(crate) fn carry_into(words: &mut [u32], c: u64) {
    let mut c = c;
    for w in words {
        if c == 0 {
            break;
        }
        let s = u64::from(*w) + c;
        *w = s as u32;
        c = s >> 32;
    }
}

/// `a < b` for equal-length little-endian numbers.
pub(crate) fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` (mod 2^(32 * len)); whether it borrowed.
pub(crate) fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x).wrapping_sub(u64::from(*y)).wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow == 1
}

/// `a += b` (mod 2^(32 * len)); whether it carried.
pub(crate) fn add_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut carry = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let s = u64::from(*x) + u64::from(*y) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry == 1
}

/// `x = 2x mod n`, for `x < n`.
pub(crate) fn double_mod(x: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for limb in x.iter_mut() {
        let v = *limb;
        *limb = (v << 1) | carry;
        carry = v >> 31;
    }
    if carry == 1 || !less_than(x, n) {
        let _ = sub_in_place(x, n);
    }
}
