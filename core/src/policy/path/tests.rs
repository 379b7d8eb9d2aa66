use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn norm(raw: &str) -> String {
    match normalize(raw) {
        Ok(n) => n.path.into_owned(),
        Err(e) => panic!("{raw:?} refused: {e}"),
    }
}

fn err(raw: &str) -> PathError {
    match normalize(raw) {
        Ok(n) => panic!("{raw:?} accepted as {:?}", n.path),
        Err(e) => e,
    }
}

fn borrowed(raw: &str) -> bool {
    matches!(normalize(raw).unwrap().path, Cow::Borrowed(_))
}

#[test]
fn already_normal_paths_are_borrowed_unchanged() {
    for p in [
        "/",
        "/admin",
        "/api/v1/users",
        "/a/b/",
        "/a.b/c-d_e~f",
        "/a%20b",
        "/%C3%A9",
        "/x:y@z",
    ] {
        assert_eq!(norm(p), p);
        assert!(borrowed(p), "{p} should be borrowed");
    }
}

#[test]
fn query_is_split_off_and_untouched() {
    let n = normalize("/a/./b?x=/../y&z=%2F%00\\#").unwrap();
    assert_eq!(n.path, "/a/b");
    assert_eq!(n.query, Some("x=/../y&z=%2F%00\\#"));
    let n = normalize("/a?").unwrap();
    assert_eq!((n.path.as_ref(), n.query), ("/a", Some("")));
    let n = normalize("/a").unwrap();
    assert_eq!(n.query, None);
    // Only the first '?' splits.
    let n = normalize("/a?b?c").unwrap();
    assert_eq!((n.path.as_ref(), n.query), ("/a", Some("b?c")));
    assert!(borrowed("/public?next=/../admin"));
}

#[test]
fn unreserved_escapes_are_decoded() {
    assert_eq!(norm("/%61dmin"), "/admin");
    assert_eq!(norm("/%41%5a%30%2d%2E%5f%7e"), "/AZ0-._~");
    assert_eq!(norm("/%61%64%6D%69%6E/x"), "/admin/x");
    assert!(!borrowed("/%61dmin"));
}

#[test]
fn other_escapes_stay_as_sent() {
    assert_eq!(norm("/a%20b"), "/a%20b");
    assert_eq!(norm("/a%3fb%3F"), "/a%3fb%3F");
    assert_eq!(norm("/%e2%82%ac/%E2%82%AC"), "/%e2%82%ac/%E2%82%AC");
    assert_eq!(norm("/%F0%9F%98%80/%c3%a9"), "/%F0%9F%98%80/%c3%a9");
    assert_eq!(norm("/a%3b/%40%3A"), "/a%3b/%40%3A");
}

/// The tricks the other tests cover, written as the bytes a second
/// decoder would see after one decoding (`..`, `.`, `/`, `\\`, `%`, `;`,
/// NUL, controls), each under one more layer of `%25` (double encoding)
/// and two (triple), in every spelling: `%252e`, `%252E`, and with the
/// escape's hex digits themselves escaped, `%25%32%65` and `%25%32%45`.
fn second_decoder_tricks() -> Vec<String> {
    let targets: [&[u8]; 12] = [
        b"..", b".", b"/", b"\\", b"%", b";", b"\0", b"\n", b"\r", b"\t", b"\x7f", b"..;",
    ];
    let spell = |c: u8, style: usize| -> String {
        let hex = format!("{c:02x}");
        match style {
            0 => format!("%25{hex}"),
            1 => format!("%25{}", hex.to_ascii_uppercase()),
            2 => format!("%25{}", hex.bytes().map(|d| format!("%{d:02x}")).collect::<String>()),
            _ => format!(
                "%25{}",
                hex.to_ascii_uppercase()
                    .bytes()
                    .map(|d| format!("%{d:02X}"))
                    .collect::<String>()
            ),
        }
    };
    let mut out = Vec::new();
    for target in targets {
        for style in 0..4 {
            let double: String = target.iter().map(|&c| spell(c, style)).collect();
            out.push(double.replace("%25", "%2525"));
            out.push(double);
        }
    }
    out
}

/// Issue 11, item 1: `GET /public/%252e%252e/admin/x` reached the
/// upstream as the public `/public/` rule, and any backend that decodes
/// once more reads `/admin/x`. Every double and triple encoding, in every
/// spelling and every position, is refused.
#[test]
fn what_a_second_decoder_would_read_differently_is_refused() {
    assert_eq!(err("/public/%252e%252e/admin/x"), PathError::EncodedPercent);
    assert_eq!(err("/public/%252E%252E/admin/x"), PathError::EncodedPercent);
    assert_eq!(err("/public/%25%32%65%25%32%65/admin/x"), PathError::EncodedPercent);
    assert_eq!(err("/public/%25252e%25252e/admin/x"), PathError::EncodedPercent);
    assert_eq!(err("/public/..%252fadmin"), PathError::EncodedPercent);
    assert_eq!(err("/public/%255cadmin"), PathError::EncodedPercent);
    assert_eq!(err("/admin/%252e%252e/public"), PathError::EncodedPercent);
    assert_eq!(err("/%2561dmin"), PathError::EncodedPercent);
    assert_eq!(err("/100%25"), PathError::EncodedPercent);
    let tricks = second_decoder_tricks();
    assert!(tricks.len() >= 90, "{}", tricks.len());
    for t in &tricks {
        for raw in [
            format!("/public/{t}/admin/x"),
            format!("/public/{t}"),
            format!("/admin/x/{t}/y"),
            format!("/public/a{t}b/admin"),
            format!("/public/{t}{t}/admin"),
            format!("//public/./{t}/../x?next={t}"),
            format!("/public/%2e%2e/{t}"),
        ] {
            assert!(normalize(&raw).is_err(), "{raw:?} accepted");
        }
    }
}

/// The property behind the rule: every `%` left in an accepted path is an
/// escape of a byte other than `%`, so the path decoded once holds no `%`
/// and every further decoding reads exactly what the first one read.
#[test]
fn an_accepted_path_reads_the_same_to_every_later_decoder() {
    let alphabet: &[&str] = &[
        "/",
        "%",
        "2",
        "5",
        "e",
        "E",
        "f",
        "F",
        "c",
        "C",
        "0",
        "a",
        ".",
        "..",
        "%2e",
        "%25",
        "%2",
        "%c0%ae",
        "%e2%82%ac",
        "x",
        ";",
        "%3b",
        "%20",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut accepted = 0;
    for _ in 0..40_000 {
        let mut raw = String::from("/");
        for _ in 0..(x % 12) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            raw.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let Ok(n) = normalize(&raw) else { continue };
        accepted += 1;
        let once = decode_all(raw.as_bytes());
        assert!(!once.contains(&b'%'), "{raw:?} decodes to {once:?}");
        assert_eq!(decode_all(&once), once, "{raw:?}");
        // and the normalised path itself is stable
        assert_eq!(norm(&n.path), n.path, "{raw:?}");
    }
    assert!(accepted > 1_000, "{accepted}");
}

/// A plain percent-decoder, as a backend would run it.
fn decode_all(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while let Some(&c) = b.get(k) {
        match escape_at(b, k) {
            Some(v) if c == b'%' => {
                out.push(v);
                k += 3;
            }
            _ => {
                out.push(c);
                k += 1;
            }
        }
    }
    out
}

#[test]
fn escapes_that_are_not_utf8_are_refused() {
    for p in [
        // overlong `.` and `/` (lenient decoders: `..`, `/`), and `\`
        "/public/%c0%ae%c0%ae/admin",
        "/public/%C0%AE%C0%AE/admin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public/%f0%80%80%ae/admin",
        "/public/..%c0%afadmin",
        "/public/..%c1%9cadmin",
        // stray continuation bytes, invalid leads, truncated sequences
        "/%80",
        "/%bf",
        "/%ff",
        "/%fe%ff",
        "/caf%e9",
        "/%c3",
        "/%c3/",
        "/%e2%82",
        "/%e2%82x",
        "/%c3%28",
        // surrogates and code points past U+10FFFF
        "/%ed%a0%80",
        "/%f4%90%80%80",
        "/%f5%80%80%80",
    ] {
        assert_eq!(err(p), PathError::BadEscape, "{p}");
    }
    assert_eq!(norm("/caf%C3%A9/%F4%8F%BF%BF"), "/caf%C3%A9/%F4%8F%BF%BF");
}

#[test]
fn escapes_of_control_characters_are_refused() {
    for c in (0u8..0x20).chain([0x7f]) {
        for p in [
            format!("/a%{c:02x}b"),
            format!("/a%{c:02X}"),
            format!("/admin%{c:02x}/x"),
        ] {
            assert_eq!(err(&p), PathError::ForbiddenChar, "{p}");
        }
    }
    assert_eq!(norm("/a%20b%7e"), "/a%20b~");
}

#[test]
fn slashes_are_merged() {
    assert_eq!(norm("//admin"), "/admin");
    assert_eq!(norm("///a////b//"), "/a/b/");
    assert_eq!(norm("//"), "/");
    assert_eq!(norm("/a//"), "/a/");
}

#[test]
fn dot_segments_are_resolved() {
    let cases = [
        ("/public/../admin", "/admin"),
        ("/./a", "/a"),
        ("/a/./b", "/a/b"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("/a/b/..", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/..", "/"),
        ("/../..", "/"),
        ("/../../../admin", "/admin"),
        ("/.", "/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a/.b/c", "/a/.b/c"),
        ("/public/.//b", "/public/b"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw), want, "{raw}");
    }
}

#[test]
fn encoded_dots_are_dot_segments() {
    let cases = [
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/public/.%2e/admin", "/admin"),
        ("/public/%2e./admin", "/admin"),
        ("/%2e/admin", "/admin"),
        ("/a/%2e", "/a/"),
        ("/a/%2e%2e", "/"),
        ("/public/%2e%2e", "/"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw), want, "{raw}");
    }
}

#[test]
fn trailing_slash_is_kept_and_borrowed_when_possible() {
    assert_eq!(norm("/a/b/"), "/a/b/");
    // A prefix of the input is still borrowed.
    assert!(borrowed("/a/.."));
    assert!(borrowed("/a/b/."));
    assert_eq!(norm("/a/b/."), "/a/b/");
}

#[test]
fn encoded_separators_are_refused() {
    for p in [
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%5Cb",
        "/%2e%2e%2fadmin",
        "/public/..%2fadmin",
        "/%2F",
    ] {
        assert_eq!(err(p), PathError::EncodedSeparator, "{p}");
    }
}

#[test]
fn bad_escapes_are_refused() {
    for p in [
        "/%G1", "/%1G", "/%4", "/a%", "/%%41", "/%-1", "/% 41", "/%+1", "/%4/", "/%é",
    ] {
        assert_eq!(err(p), PathError::BadEscape, "{p}");
    }
}

#[test]
fn forbidden_bytes_are_refused() {
    for p in [
        "/a\\b",
        "/..\\admin",
        "/a\0b",
        "/%00",
        "/a%00.png",
        "/a\tb",
        "/a\rb",
        "/a\nb",
        "/a\x7fb",
        "/a b",
        "/caf\u{e9}",
        "/\u{ff0e}\u{ff0e}/admin",
        "/public#/../admin",
    ] {
        assert_eq!(err(p), PathError::ForbiddenChar, "{p:?}");
    }
}

#[test]
fn non_origin_forms_are_refused() {
    assert_eq!(err(""), PathError::Empty);
    for p in ["*", "admin", "http://host/admin", "?a=b", " /a", "%2fadmin"] {
        assert_eq!(err(p), PathError::NotOrigin, "{p:?}");
    }
}

#[test]
fn parameters_on_dot_segments_are_refused() {
    for p in [
        "/public/..;/admin",
        "/public/.;/admin",
        "/public/;x/../admin",
        "/..;",
        "/a/%2e%2e;x/b",
        "/;jsessionid=1",
    ] {
        assert_eq!(err(p), PathError::AmbiguousSegment, "{p}");
    }
}

/// Readings that differ between upstream servers are refused, not guessed.
#[test]
fn ambiguous_segments_are_refused() {
    for p in [
        // matrix parameters: servlet containers route /admin;x/users as /admin/users
        "/admin;x/users",
        "/a;b=c",
        "/a;x/b..;/c...;",
        // trailing dots: IIS routes /admin./x as /admin/x
        "/admin./x",
        "/admin%2e/x",
        "/admin%2E",
        "/a/.../b",
        "/a/%2e%2e%2e/b",
        "/a/b..",
        // `..` after `//`: `/admin/x//..` is /admin/x/ to an RFC 3986 resolver, / after merging
        "/admin/deleteAll//..//..",
        "/public//../admin",
        "/public/.//../admin",
    ] {
        assert_eq!(err(p), PathError::AmbiguousSegment, "{p}");
    }
}

#[test]
fn length_is_bounded() {
    let ok = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    assert_eq!(norm(&ok).len(), MAX_PATH_BYTES);
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    assert_eq!(err(&long), PathError::TooLong);
    // The bound applies to the path part only; a long query is fine.
    let q = format!("/a?{}", "t".repeat(4 * MAX_PATH_BYTES));
    assert_eq!(normalize(&q).unwrap().query.map(str::len), Some(4 * MAX_PATH_BYTES));
    // A long path with a late '?' is still too long.
    let late = format!("/{}?x", "a".repeat(MAX_PATH_BYTES));
    assert_eq!(err(&late), PathError::TooLong);
    let huge = "/".repeat(1 << 20);
    assert_eq!(err(&huge), PathError::TooLong);
}

#[test]
fn adversarial_inputs_at_the_limit_terminate_correctly() {
    // Many dot segments and merged slashes, just under the limit.
    let dots = "/..".repeat(MAX_PATH_BYTES / 3);
    assert_eq!(norm(&dots), "/");
    let slashes = "/".repeat(MAX_PATH_BYTES);
    assert_eq!(norm(&slashes), "/");
    let deep = format!("{}{}", "/a".repeat(1600), "/..".repeat(1600));
    assert_eq!(norm(&deep), "/");
    let enc = "/%2e%2e".repeat(MAX_PATH_BYTES / 7);
    assert_eq!(norm(&enc), "/");
    let decoded = "/%61".repeat(MAX_PATH_BYTES / 4);
    assert_eq!(norm(&decoded), "/a".repeat(MAX_PATH_BYTES / 4));
}

#[test]
fn normalisation_is_idempotent() {
    for p in [
        "//a/./b/../c/",
        "/%61/%2e%2e/b",
        "/a%20b//c/..",
        "/x/y/z/../../..",
        "/a/b/.",
    ] {
        let once = norm(p);
        assert_eq!(norm(&once), once, "{p}");
        assert!(borrowed(&once));
    }
}

#[test]
fn every_error_has_a_description() {
    for e in [
        PathError::Empty,
        PathError::NotOrigin,
        PathError::TooLong,
        PathError::EncodedSeparator,
        PathError::BadEscape,
        PathError::EncodedPercent,
        PathError::ForbiddenChar,
        PathError::AmbiguousSegment,
    ] {
        assert!(!e.as_str().is_empty());
        assert_eq!(e.to_string(), e.as_str());
    }
}
