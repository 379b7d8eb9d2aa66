use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::super::curve;

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
