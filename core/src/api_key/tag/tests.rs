use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const OTHER: &[u8] = b"another secret of at least thirty-two bytes!";
const RANDOM: &str = "00112233445566778899aabbccddeeff0011223344556677";

fn secret(s: &[u8]) -> TagSecret {
    TagSecret::new(s).unwrap()
}

fn tags(current: &[u8], previous: Option<&[u8]>) -> KeyTags {
    KeyTags::new(secret(current), previous.map(secret)).unwrap()
}

/// Deterministic pseudo-random bytes (SHA-256 in counter mode; rand_chacha is
/// not built for wasm32), as hex.
struct Rng(u64, u64);

impl Rng {
    fn seed_from_u64(seed: u64) -> Rng {
        Rng(seed, 0)
    }
}

fn random_hex(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < 2 * bytes {
        rng.1 += 1;
        let block: [u8; 32] = Sha256::digest(format!("{}/{}", rng.0, rng.1)).into();
        out.push_str(&crate::api_key::hex(&block));
    }
    out.truncate(2 * bytes);
    out
}

#[test]
fn the_tag_is_hmac_sha256_of_the_label_and_the_random_part_truncated_to_8_bytes() {
    // computed independently: Python's hmac.new(SECRET, b"edge-auth key tag v1" + RANDOM, sha256)
    let t = tags(SECRET, None);
    assert_eq!(t.mint(RANDOM), format!("{RANDOM}659eda48030bfea1"));
    assert_eq!(t.check(&t.mint(RANDOM)), TagCheck::Current);
    // sha256(b"edge-auth key tag secret id" + SECRET)[:16 hex]
    assert_eq!(secret(SECRET).id(), "42dea5df3e96e73b");
    assert!(!format!("{:?}", secret(SECRET)).contains("0123456789abcdef"));
}

#[test]
fn minted_keys_verify_and_keep_the_contract_shape() {
    let t = tags(SECRET, None);
    let format = crate::api_key::KeyFormat::default();
    let mut rng = Rng::seed_from_u64(1);
    for _ in 0..200 {
        let hex = t.mint(&random_hex(&mut rng, 24));
        assert_eq!(hex.len(), 64);
        assert!(format.accepts(&format!("sk_{hex}")), "{hex}");
        assert_eq!(t.check(&hex), TagCheck::Current);
    }
}

#[test]
fn invented_keys_do_not_verify() {
    let t = tags(SECRET, Some(OTHER));
    let mut rng = Rng::seed_from_u64(2);
    for _ in 0..10_000 {
        assert_eq!(t.check(&random_hex(&mut rng, 32)), TagCheck::Invalid);
    }
}

#[test]
fn a_tag_of_another_secret_does_not_verify() {
    let minted = tags(OTHER, None).mint(RANDOM);
    assert_eq!(tags(SECRET, None).check(&minted), TagCheck::Invalid);
}

#[test]
fn a_tag_off_by_one_bit_does_not_verify() {
    let t = tags(SECRET, None);
    let good = t.mint(RANDOM);
    for pos in 0..good.len() {
        for bit in [1u8, 2, 4, 8] {
            let mut b = good.clone().into_bytes();
            let v = u8::from_str_radix(&good[pos..=pos], 16).unwrap() ^ bit;
            b[pos] = b"0123456789abcdef"[usize::from(v)];
            let altered = String::from_utf8(b).unwrap();
            assert_eq!(t.check(&altered), TagCheck::Invalid, "digit {pos}, bit {bit}");
        }
    }
}

#[test]
fn the_right_tag_on_another_random_part_does_not_verify() {
    let t = tags(SECRET, None);
    let tag = &t.mint(RANDOM)[48..];
    let other_random = "ffeeddccbbaa99887766554433221100ffeeddccbbaa9988";
    assert_eq!(t.check(&format!("{other_random}{tag}")), TagCheck::Invalid);
    // nor moved to another place of the key
    assert_eq!(t.check(&format!("{tag}{RANDOM}")), TagCheck::Invalid);
}

#[test]
fn upper_case_hex_and_other_characters_do_not_verify() {
    let t = tags(SECRET, None);
    let good = t.mint(RANDOM);
    assert_eq!(t.check(&good.to_uppercase()), TagCheck::Invalid);
    // only the tag in upper case: the same bytes, but not the minted text
    let upper_tag = format!("{}{}", &good[..48], good[48..].to_uppercase());
    assert_ne!(upper_tag, good);
    assert_eq!(t.check(&upper_tag), TagCheck::Invalid);
    for bad in [" ", "g", "\0", "é"] {
        assert_eq!(t.check(&format!("{}{bad}", &good[..63])), TagCheck::Invalid, "{bad:?}");
    }
}

#[test]
fn keys_of_the_old_shape_and_other_lengths_do_not_verify() {
    let t = tags(SECRET, None);
    // a key minted before tags: 64 random hex digits
    assert_eq!(
        t.check("20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1"),
        TagCheck::Invalid
    );
    let good = t.mint(RANDOM);
    for hex in [
        "",
        "0",
        &good[48..],
        &good[..63],
        &format!("{good}0"),
        &"0".repeat(31),
        &"a".repeat(4096),
    ] {
        assert_eq!(t.check(hex), TagCheck::Invalid, "{} digits", hex.len());
    }
}

#[test]
fn the_tag_covers_any_random_length_the_format_allows() {
    // hex_digits 32..=128: the random part is what precedes the tag
    let t = tags(SECRET, None);
    let mut rng = Rng::seed_from_u64(3);
    for bytes in [8usize, 24, 56] {
        let hex = t.mint(&random_hex(&mut rng, bytes));
        assert_eq!(t.check(&hex), TagCheck::Current);
        assert_eq!(t.check(&hex[2..]), TagCheck::Invalid);
    }
}

#[test]
fn during_a_rotation_keys_of_both_secrets_verify_and_are_told_apart() {
    let old = tags(OTHER, None).mint(RANDOM);
    let rotating = tags(SECRET, Some(OTHER));
    let new = rotating.mint(RANDOM);
    assert_ne!(old, new);
    assert_eq!(rotating.check(&new), TagCheck::Current);
    assert_eq!(rotating.check(&old), TagCheck::Previous);
    // once the previous secret is dropped, its keys no longer verify
    assert_eq!(tags(SECRET, None).check(&old), TagCheck::Invalid);
    assert_eq!(rotating.previous().map(TagSecret::id), Some(secret(OTHER).id()));
    assert_eq!(rotating.current().id(), secret(SECRET).id());
}

#[test]
fn secrets_of_the_wrong_length_are_refused_without_being_echoed() {
    for bad in [&b""[..], b"Q", &[b'Q'; 31], &vec![b'Q'; 1025]] {
        let e = TagSecret::new(bad).unwrap_err();
        assert!(e.contains("secret must be"), "{e}");
        if !bad.is_empty() {
            assert!(!e.contains(std::str::from_utf8(bad).unwrap()), "{e}");
        }
    }
    assert!(TagSecret::new(&[b's'; 32]).is_ok());
    assert!(TagSecret::new(&[b's'; 1024]).is_ok());
    let e = KeyTags::new(secret(SECRET), Some(secret(SECRET))).unwrap_err();
    assert!(e.contains("equals the current"), "{e}");
}
