use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const B: Option<&str> = Some("Bearer");

#[test]
fn the_word_at_a_time_check_agrees_with_the_byte_check() {
    // Every byte value at every position of strings from 0 to 24 bytes,
    // among valid bytes, next to the edges of the valid range and commas.
    for len in 0..=24usize {
        for at in 0..len {
            for b in 0..=255u8 {
                for fill in [b'a', b'!', b'~', b'+', b'-'] {
                    let mut s = vec![fill; len];
                    s[at] = b;
                    let expected = s.iter().all(|&c| token_char(c));
                    assert_eq!(all_token_chars(&s), expected, "len {len} at {at} byte {b:#x}");
                }
            }
        }
    }
    // Pseudo-random mixes of valid and invalid bytes, several bad at once.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut s = Vec::new();
        for _ in 0..(x % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = (x >> 24) as u8;
            s.push(if x.is_multiple_of(7) { r } else { b'!' + r % 94 });
        }
        let expected = s.iter().all(|&c| token_char(c));
        assert_eq!(all_token_chars(&s), expected, "{s:?}");
    }
}

#[test]
fn header_with_scheme() {
    assert_eq!(from_header_value("Bearer abc.def.ghi", B), Some("abc.def.ghi"));
    assert_eq!(from_header_value("bEaReR abc", B), Some("abc"));
    assert_eq!(from_header_value("BEARER abc", B), Some("abc"));
    assert_eq!(from_header_value("Bearer\tabc", B), Some("abc"));
    assert_eq!(from_header_value("Bearer \t  abc", B), Some("abc"));
    assert_eq!(from_header_value("  Bearer abc \t", B), Some("abc"));
    assert_eq!(from_header_value("DPoP abc", Some("dpop")), Some("abc"));
}

#[test]
fn header_with_scheme_refusals() {
    for v in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer \t ",
        "Bearerabc",
        "Bearer: abc",
        "Bearer a b",
        "Bearer a\tb",
        "Bearer a,b",
        "Bearer abc, Bearer def",
        "Basic xyz",
        "Bear abc",
        "Bearers abc",
        "abc",
        "Bearer abc\u{e9}",
        "Bearer ab\u{0}c",
        "Bearer ab\u{7f}c",
        "Bear\u{e9}r abc",
        "Be\u{e9}rer abc",
        "\u{e9} abc",
        "Bearer\nabc",
        "Bearer\r\nabc",
    ] {
        assert_eq!(from_header_value(v, B), None, "{v:?}");
    }
}

#[test]
fn header_scheme_slicing_is_char_safe() {
    // The scheme length falls inside a multi-byte character.
    assert_eq!(from_header_value("B\u{e9}arer x", Some("Bea")), None);
    assert_eq!(from_header_value("\u{1f600}", Some("ab")), None);
    assert_eq!(from_header_value("x", Some("longer than value")), None);
    assert_eq!(from_header_value("abc", Some("")), None);
}

#[test]
fn header_without_scheme() {
    assert_eq!(from_header_value("abc.def", None), Some("abc.def"));
    assert_eq!(from_header_value("  abc.def\t", None), Some("abc.def"));
    assert_eq!(from_header_value("Bearer abc", None), None);
    assert_eq!(from_header_value("a,b", None), None);
    assert_eq!(from_header_value("", None), None);
    assert_eq!(from_header_value(" \t ", None), None);
    let long = "a".repeat(1 << 20);
    assert_eq!(from_header_value(&long, None), Some(long.as_str()));
}

#[test]
fn cookies() {
    let h = "a=1; token=abc.def; b=2";
    assert_eq!(from_cookie_header(h, "token"), Some("abc.def"));
    assert_eq!(from_cookie_header(h, "a"), Some("1"));
    assert_eq!(from_cookie_header(h, "b"), Some("2"));
    assert_eq!(from_cookie_header(h, "c"), None);
    assert_eq!(from_cookie_header("token=abc", "token"), Some("abc"));
    assert_eq!(from_cookie_header("  token = abc ;", "token"), Some("abc"));
    assert_eq!(from_cookie_header("a=1;token=abc", "token"), Some("abc"));
    assert_eq!(from_cookie_header("a=1;\ttoken=abc", "token"), Some("abc"));
    // The value may itself contain '='.
    assert_eq!(from_cookie_header("token=abc==", "token"), Some("abc=="));
}

#[test]
fn cookie_names_are_exact() {
    let h = "tok=short; Token=upper; token2=other; xtoken=x; token=right";
    assert_eq!(from_cookie_header(h, "token"), Some("right"));
    assert_eq!(from_cookie_header(h, "tok"), Some("short"));
    assert_eq!(from_cookie_header("tokenx=1", "token"), None);
    assert_eq!(from_cookie_header("token=1", "tok"), None);
    assert_eq!(from_cookie_header("TOKEN=1", "token"), None);
}

#[test]
fn cookie_first_match_wins() {
    assert_eq!(from_cookie_header("token=first; token=second", "token"), Some("first"));
    // An empty first value decides: no token rather than a later one.
    assert_eq!(from_cookie_header("token=; token=second", "token"), None);
}

#[test]
fn cookie_quotes_and_malformed_values() {
    assert_eq!(from_cookie_header("token=\"abc\"", "token"), Some("abc"));
    assert_eq!(from_cookie_header("token=\"\"", "token"), None);
    assert_eq!(from_cookie_header("token=\"", "token"), None);
    assert_eq!(from_cookie_header("token=\"abc", "token"), None);
    assert_eq!(from_cookie_header("token=abc\"", "token"), None);
    assert_eq!(from_cookie_header("token=\"a\"b\"", "token"), None);
    assert_eq!(from_cookie_header("token=a b", "token"), None);
    assert_eq!(from_cookie_header("token=a,b", "token"), None);
    assert_eq!(from_cookie_header("token=a\\b", "token"), None);
    assert_eq!(from_cookie_header("token=caf\u{e9}", "token"), None);
    assert_eq!(from_cookie_header("token=", "token"), None);
    assert_eq!(from_cookie_header("token", "token"), None);
    // A pair without '=' is skipped, not taken as a name.
    assert_eq!(from_cookie_header("token; token=abc", "token"), Some("abc"));
    assert_eq!(from_cookie_header(";;; =x; token=abc;;", "token"), Some("abc"));
    assert_eq!(from_cookie_header("", "token"), None);
    assert_eq!(from_cookie_header(";", "token"), None);
}

#[test]
fn cookie_header_large_and_many() {
    let mut h = "a=b; ".repeat(10_000);
    h.push_str("token=t");
    assert_eq!(from_cookie_header(&h, "token"), Some("t"));
    assert_eq!(
        cookie_without(&h, |n| n == "token"),
        "a=b; ".repeat(10_000).trim_end_matches("; ")
    );
}

#[test]
fn cookie_removal() {
    assert_eq!(cookie_without("a=1; token=abc; b=2", |n| n == "token"), "a=1; b=2");
    assert_eq!(cookie_without("token=abc", |n| n == "token"), "");
    assert_eq!(cookie_without("token=abc; token=def", |n| n == "token"), "");
    assert_eq!(
        cookie_without("token=x;a=1;;  b=2 ; tokenx=3", |n| n == "token"),
        "a=1; b=2; tokenx=3"
    );
    assert_eq!(cookie_without("tok=1; token=2", |n| n == "tok"), "token=2");
    assert_eq!(cookie_without("flag; token=1", |n| n == "token"), "flag");
    assert_eq!(cookie_without("", |n| n == "token"), "");
}

fn found(path: &str, name: &str) -> (String, String) {
    match from_query(path, name) {
        QueryToken::Found { token, path_without } => (token.into_owned(), path_without),
        other => panic!("{path}: {other:?}"),
    }
}

const AT: &str = "access_token";

#[test]
fn query_found_and_removed() {
    assert_eq!(found("/p?access_token=abc", AT), ("abc".into(), "/p".into()));
    assert_eq!(
        found("/p?a=1&access_token=abc&b=2", AT),
        ("abc".into(), "/p?a=1&b=2".into())
    );
    assert_eq!(found("/p?access_token=abc&b=2", AT), ("abc".into(), "/p?b=2".into()));
    assert_eq!(found("/p?a=1&access_token=abc", AT), ("abc".into(), "/p?a=1".into()));
    // Other parameters stay byte-for-byte, escapes and empties included.
    assert_eq!(
        found("/p?x=%2F%zz&&access_token=t&y&z=a+b", AT),
        ("t".into(), "/p?x=%2F%zz&&y&z=a+b".into())
    );
    assert_eq!(found("/p?&access_token=abc", AT).1, "/p");
    assert_eq!(found("/p?access_token=abc&", AT).1, "/p");
    assert_eq!(found("/p?access_token=abc&#f", AT).1, "/p#f");
    assert_eq!(found("/p?&&access_token=abc", AT).1, "/p?&");
    assert!(matches!(
        from_query("/p?access_token=abc", AT),
        QueryToken::Found {
            token: Cow::Borrowed(_),
            ..
        }
    ));
}

#[test]
fn query_values_are_decoded_once() {
    assert_eq!(found("/p?access_token=a%2Eb%2ec", AT).0, "a.b.c");
    assert_eq!(found("/p?access_token=a+b", AT).0, "a+b");
    assert_eq!(found("/p?access_token=%2541", AT).0, "%41");
    assert_eq!(found("/p?access_token=a=b", AT).0, "a=b");
    assert_eq!(found("/p?access_token=%C3%A9", AT).0, "\u{e9}");
}

#[test]
fn query_names_are_exact_after_decoding() {
    assert_eq!(from_query("/p?access_token2=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?xaccess_token=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?Access_Token=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?access_tok=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?access+token=abc", AT), QueryToken::Absent);
    assert_eq!(
        found("/p?access_token2=x&access_token=abc", AT),
        ("abc".into(), "/p?access_token2=x".into())
    );
    assert_eq!(found("/p?access%5Ftoken=abc", AT), ("abc".into(), "/p".into()));
    assert_eq!(found("/p?%61ccess%5ftoken=abc&b", AT), ("abc".into(), "/p?b".into()));
    // A name with an invalid escape cannot be ours.
    assert_eq!(from_query("/p?access_token%=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?access%5_token=abc", AT), QueryToken::Absent);
    assert_eq!(
        found("/p?%zz=1&access_token=abc", AT),
        ("abc".into(), "/p?%zz=1".into())
    );
}

#[test]
fn query_duplicates_are_refused() {
    assert_eq!(
        from_query("/p?access_token=a&access_token=b", AT),
        QueryToken::Duplicate
    );
    assert_eq!(
        from_query("/p?access_token=a&access_token=a", AT),
        QueryToken::Duplicate
    );
    assert_eq!(
        from_query("/p?access_token=a&access%5ftoken=b", AT),
        QueryToken::Duplicate
    );
    assert_eq!(from_query("/p?access_token=&access_token=b", AT), QueryToken::Duplicate);
    assert_eq!(from_query("/p?access_token&access_token=b", AT), QueryToken::Duplicate);
    // Duplicates win over a malformed value.
    assert_eq!(
        from_query("/p?access_token=%zz&access_token=b", AT),
        QueryToken::Duplicate
    );
}

#[test]
fn query_absent_and_empty() {
    assert_eq!(from_query("/p", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?a=1", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?access_token=", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?access_token", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?&&&", AT), QueryToken::Absent);
    assert_eq!(from_query("", AT), QueryToken::Absent);
    // The name in the path part is not a parameter.
    assert_eq!(from_query("/access_token=abc", AT), QueryToken::Absent);
}

#[test]
fn query_malformed_values() {
    for p in [
        "/p?access_token=%",
        "/p?access_token=%4",
        "/p?access_token=ab%G1",
        "/p?access_token=%%41",
        "/p?access_token=%FF",
        "/p?access_token=%C3",
    ] {
        assert_eq!(from_query(p, AT), QueryToken::Malformed, "{p}");
    }
}

#[test]
fn query_fragment_is_not_query() {
    assert_eq!(from_query("/p#?access_token=abc", AT), QueryToken::Absent);
    assert_eq!(from_query("/p?a=1#access_token=abc", AT), QueryToken::Absent);
    assert_eq!(found("/p?access_token=abc#frag", AT), ("abc".into(), "/p#frag".into()));
    assert_eq!(
        found("/p?a=1&access_token=abc#f&access_token=x", AT),
        ("abc".into(), "/p?a=1#f&access_token=x".into())
    );
}

#[test]
fn query_only_first_question_mark_splits() {
    assert_eq!(
        found("/p?a=?&access_token=abc?x", AT),
        ("abc?x".into(), "/p?a=?".into())
    );
}

#[test]
fn query_many_parameters() {
    let mut p = String::from("/p?");
    for i in 0..5_000 {
        p.push_str(&format!("k{i}=v&"));
    }
    p.push_str("access_token=abc");
    let (t, without) = found(&p, AT);
    assert_eq!(t, "abc");
    assert_eq!(without, p.trim_end_matches("&access_token=abc"));
    let dup = format!("{p}&access_token=abc");
    assert_eq!(from_query(&dup, AT), QueryToken::Duplicate);
}

#[test]
fn decoded_eq_edges() {
    assert!(decoded_eq("", ""));
    assert!(!decoded_eq("", "a"));
    assert!(!decoded_eq("a", ""));
    assert!(decoded_eq("%41", "A"));
    assert!(!decoded_eq("%4", "%4"));
    assert!(!decoded_eq("%", "%"));
    assert!(decoded_eq("%25", "%"));
}
