//! Where a credential is taken from: a header, a cookie or a query parameter.
//!
//! Extraction only: every function borrows from the request and refuses
//! anything ambiguous (two credentials, stray whitespace, bad escapes) rather
//! than picking one.

use std::borrow::Cow;

use crate::policy::path::escape_at;

/// A configured place to look for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header. With `scheme`, the value must be `<scheme> <token>`
    /// (scheme compared case-insensitively, one or more spaces/tabs after it);
    /// without, the whole value is the token. `name` is lower-case.
    Header { name: String, scheme: Option<String> },
    /// A cookie, by exact (case-sensitive) name.
    Cookie { name: String },
    /// A query parameter, by exact name after percent-decoding.
    Query { name: String },
}

/// A token is visible ASCII without a comma (a comma means two credentials).
fn token_char(c: u8) -> bool {
    c.is_ascii_graphic() && c != b','
}

/// Whether every byte of `s` is a [`token_char`]. Tokens are checked on
/// every request, cached or not, so this looks at eight bytes at a time:
/// with `L = 0x01` and `H = 0x80` in every byte, `(w - n*L) & !w & H` is
/// non-zero exactly when some byte of `w` is below `n` (n <= 0x80), and
/// `((w + (0x7f - n)*L) | w) & H` exactly when some byte is above `n`
/// (n < 0x80).
fn all_token_chars(s: &[u8]) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        let below_bang = w.wrapping_sub(0x21 * L) & !w & H;
        let above_tilde = (w.wrapping_add(L) | w) & H; // n = 0x7e: add (0x7f - n) * L = L
        let c = w ^ (b',' as u64 * L);
        let comma = c.wrapping_sub(L) & !c & H;
        if below_bang | above_tilde | comma != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&c| token_char(c))
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The token in a header value, or `None` if the scheme does not match or the
/// token is empty or contains whitespace, a comma or a non-visible character.
pub fn from_header_value<'a>(value: &'a str, scheme: Option<&str>) -> Option<&'a str> {
    let value = value.trim_ascii();
    let token = match scheme {
        None => value,
        Some(scheme) => {
            let head = value.get(..scheme.len())?;
            let rest = value.get(scheme.len()..)?;
            if !head.eq_ignore_ascii_case(scheme) || !rest.starts_with(is_space) {
                return None;
            }
            rest.trim_start_matches(is_space)
        }
    };
    (!token.is_empty() && all_token_chars(token.as_bytes())).then_some(token)
}

/// RFC 6265 cookie-octet: visible ASCII except `"` `,` `;` `\`.
fn cookie_octet(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'"' | b',' | b';' | b'\\')
}

/// The `(name, value)` pairs of a `cookie` header, whitespace-trimmed, in order;
/// pairs without `=` are skipped.
pub(crate) fn cookie_pairs(cookie: &str) -> impl Iterator<Item = (&str, &str)> {
    cookie.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        Some((name.trim_matches(is_space), value.trim_matches(is_space)))
    })
}

/// The value of cookie `name` in a `cookie` header. The first cookie with that
/// name decides (browsers send the most specific path first): `None` if its
/// value is empty or not a valid cookie value. Double quotes are stripped.
pub fn from_cookie_header<'a>(cookie: &'a str, name: &str) -> Option<&'a str> {
    let (_, value) = cookie_pairs(cookie).find(|&(n, _)| n == name)?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    (!value.is_empty() && value.bytes().all(cookie_octet)).then_some(value)
}

/// The `cookie` header without the cookies whose name `drop` selects; the
/// others are kept in order, joined by `"; "`. Empty when none remains
/// (remove the header then).
pub fn cookie_without(cookie: &str, drop: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(cookie.len());
    for pair in cookie.split(';') {
        let pair = pair.trim_matches(is_space);
        if pair.is_empty() {
            continue;
        }
        if pair
            .split_once('=')
            .is_some_and(|(n, _)| drop(n.trim_matches(is_space)))
        {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(pair);
    }
    out
}

/// The outcome of looking for a token in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryToken<'a> {
    /// No parameter of that name, or one with an empty value.
    Absent,
    /// Exactly one parameter of that name.
    Found {
        /// The percent-decoded value (`+` is kept as is).
        token: Cow<'a, str>,
        /// The `:path` with the parameter removed; other parameters are kept
        /// byte-for-byte, and a query left empty loses its `?`.
        path_without: String,
    },
    /// The name appears more than once.
    Duplicate,
    /// The value has an invalid escape or does not decode to UTF-8.
    Malformed,
}

/// Looks for the query parameter `name` in `path`, the full `:path`.
///
/// The query is the text after the first `?`, up to a `#` if any (none if a
/// `#` comes before the `?`). Parameter names are compared after
/// percent-decoding; a name with an invalid escape cannot equal a configured
/// name and is skipped.
pub fn from_query<'a>(path: &'a str, name: &str) -> QueryToken<'a> {
    let Some((_, query, _)) = query_parts(path) else {
        return QueryToken::Absent;
    };

    let mut found: Option<&str> = None;
    for param in query.split('&') {
        let (n, v) = param.split_once('=').unwrap_or((param, ""));
        if !decoded_eq(n, name) {
            continue;
        }
        if found.is_some() {
            return QueryToken::Duplicate;
        }
        found = Some(v);
    }
    let Some(raw) = found else {
        return QueryToken::Absent;
    };
    if raw.is_empty() {
        return QueryToken::Absent;
    }
    let Some(token) = percent_decode(raw) else {
        return QueryToken::Malformed;
    };
    let path_without = query_without(path, |_, n| decoded_eq(n, name));
    QueryToken::Found { token, path_without }
}

/// The path part, the query and what follows it (a fragment, with its `#`)
/// of a `:path`: the query is the text after the first `?`, up to a `#`;
/// `None` without a `?`, or when a `#` comes first.
pub(crate) fn query_parts(path: &str) -> Option<(&str, &str, &str)> {
    // byte scans: cheaper than str patterns on the short paths of most requests
    let b = path.as_bytes();
    let q = b.iter().position(|&c| c == b'?' || c == b'#')?;
    if b.get(q) != Some(&b'?') {
        return None;
    }
    let end = b
        .iter()
        .skip(q + 1)
        .position(|&c| c == b'#')
        .map_or(b.len(), |h| q + 1 + h);
    Some((path.get(..q)?, path.get(q + 1..end)?, path.get(end..)?))
}

/// The `(index, name, value)` of every `&`-separated parameter of a query,
/// as sent (`value` is empty for a parameter without `=`).
pub(crate) fn query_params(query: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    query.split('&').enumerate().map(|(i, param)| {
        let (n, v) = param.split_once('=').unwrap_or((param, ""));
        (i, n, v)
    })
}

/// `path` without the query parameters `drop` selects (by index and raw
/// name); the others are kept byte for byte, a query left empty loses its
/// `?`, and a fragment is kept.
pub fn query_without(path: &str, drop: impl Fn(usize, &str) -> bool) -> String {
    let Some((before, query, fragment)) = query_parts(path) else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(before);
    let mut first = true;
    for (i, param) in query.split('&').enumerate() {
        let n = param.split_once('=').map_or(param, |(n, _)| n);
        if drop(i, n) {
            continue;
        }
        out.push(if first { '?' } else { '&' });
        out.push_str(param);
        first = false;
    }
    if out.len() == before.len() + 1 {
        // Only an empty parameter is left: drop the bare `?`.
        out.truncate(before.len());
    }
    out.push_str(fragment);
    out
}

/// Whether `encoded` percent-decodes to exactly `name`, without allocating.
/// An invalid escape never matches.
fn decoded_eq(encoded: &str, name: &str) -> bool {
    decoded_eq_by(encoded, name, |a, b| a == b)
}

/// Whether `encoded` percent-decodes to `name` in any ASCII letter case
/// (`ACCESS_TOKEN`, `Access%5FToken` for `access_token`).
pub(crate) fn decoded_eq_ignore_case(encoded: &str, name: &str) -> bool {
    decoded_eq_by(encoded, name, |a, b| a.eq_ignore_ascii_case(&b))
}

fn decoded_eq_by(encoded: &str, name: &str, same: impl Fn(u8, u8) -> bool) -> bool {
    let (e, n) = (encoded.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    while let Some(&c) = e.get(i) {
        let (byte, step) = if c == b'%' {
            match escape_at(e, i) {
                Some(v) => (v, 3),
                None => return false,
            }
        } else {
            (c, 1)
        };
        if !n.get(j).is_some_and(|&b| same(byte, b)) {
            return false;
        }
        i += step;
        j += 1;
    }
    j == n.len()
}

/// Percent-decodes `s`; `None` on an invalid escape or a non-UTF-8 result.
/// Borrows when there is nothing to decode.
pub(crate) fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut k = 0;
    while let Some(&c) = b.get(k) {
        if c == b'%' {
            out.push(escape_at(b, k)?);
            k += 3;
        } else {
            out.push(c);
            k += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
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
}
