//! Request path normalisation for route matching.
//!
//! [`normalize`] turns the `:path` pseudo-header into the one form routes are
//! matched against: unreserved escapes decoded, repeated slashes merged, dot
//! segments resolved (RFC 3986 section 5.2.4). Anything that different servers
//! could read differently (encoded separators, NUL, bad escapes, backslashes,
//! control or non-ASCII bytes, parameters on dot segments) is refused rather
//! than guessed at.
//!
//! That includes what a *second* decoder would read differently: the path is
//! forwarded as sent, and a backend, framework or proxy behind Envoy may
//! percent-decode it again. An escaped `%` (`%25`) is the only way a path can
//! change under a second decoding, so every `%25` is refused: what is left,
//! decoded once, holds no `%`, and decoding it again changes nothing. Escapes
//! of control characters, and escapes that do not form UTF-8 (overlong forms
//! such as `%C0%AE`, which lenient decoders read as `.`), are refused for the
//! same reason: decoders disagree on them.

use std::borrow::Cow;

/// The longest path part (before `?`) accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 8192;

/// A normalised request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    /// The normalised path, borrowed from the input whenever possible.
    pub path: Cow<'a, str>,
    /// The raw query after the first `?`, unchanged (`Some("")` for a bare `?`).
    pub query: Option<&'a str>,
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    Empty,
    /// The path does not start with `/` (asterisk, absolute or authority form).
    NotOrigin,
    /// The path part is longer than [`MAX_PATH_BYTES`].
    TooLong,
    /// `%2F` or `%5C`: a separator hidden in an escape.
    EncodedSeparator,
    /// A `%` not followed by two hex digits, or escapes of bytes above 0x7F
    /// that do not form UTF-8 (`%C0%AE`, `%FF`, a truncated sequence).
    BadEscape,
    /// `%25`: an escaped `%`, which a second decoder would decode again
    /// (`%252e` is `%2e` once, `.` twice).
    EncodedPercent,
    /// A byte not allowed in a path: control, space, `#`, `\`, non-ASCII, or
    /// an escape of a control character (`%00` to `%1F`, `%7F`).
    ForbiddenChar,
    /// A segment that is empty, `.` or `..` before a `;` parameter (`/..;/`),
    /// which some servers resolve as a dot segment.
    AmbiguousSegment,
}

impl PathError {
    /// A short human description.
    pub fn as_str(&self) -> &'static str {
        match self {
            PathError::Empty => "empty path",
            PathError::NotOrigin => "path does not start with /",
            PathError::TooLong => "path too long",
            PathError::EncodedSeparator => "encoded / or \\ in path",
            PathError::BadEscape => "invalid percent escape in path",
            PathError::EncodedPercent => "encoded % in path (a second decoding would change it)",
            PathError::ForbiddenChar => "forbidden character in path",
            PathError::AmbiguousSegment => "ambiguous path segment (a ; parameter, a trailing dot, or .. after //)",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for PathError {}

/// Normalises `raw`, the `:path` pseudo-header (path and optional `?query`).
///
/// The result is borrowed from `raw` unless decoding or slash merging changed
/// the text. The query is returned as sent and never examined.
pub fn normalize(raw: &str) -> Result<Normalized<'_>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let bytes = raw.as_bytes();
    // Find the end of the path part without reading past the limit.
    let window = bytes.get(..=MAX_PATH_BYTES).unwrap_or(bytes);
    let (path, query) = match window.iter().position(|&b| b == b'?') {
        Some(q) => (raw.get(..q).unwrap_or_default(), raw.get(q + 1..)),
        None if bytes.len() > MAX_PATH_BYTES => return Err(PathError::TooLong),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotOrigin);
    }

    let b = path.as_bytes();
    let mut out = Out::Prefix(path, 0);
    // `i` is always the index of a '/'.
    let mut i = 0;
    loop {
        let mut start = i + 1;
        while b.get(start) == Some(&b'/') {
            start += 1;
        }
        let merged = start > i + 1;
        let end = scan_segment(b, start)?;
        let seg = b.get(start..end).unwrap_or_default();
        let last = end >= b.len();
        match classify(seg) {
            // `a//..` is `a/` to an RFC 3986 resolver but `/` after merging
            // slashes: the two readings differ, so neither is guessed.
            Segment::DotDot if merged => return Err(PathError::AmbiguousSegment),
            // `admin.` is `admin` to servers that strip trailing dots (IIS).
            Segment::Normal if ends_with_dot(seg) => return Err(PathError::AmbiguousSegment),
            Segment::Empty | Segment::Dot => {
                if last {
                    out.push(b'/');
                }
            }
            Segment::DotDot => {
                out.pop_segment();
                if last {
                    out.push(b'/');
                }
            }
            Segment::Ambiguous => return Err(PathError::AmbiguousSegment),
            Segment::Normal => {
                out.push(b'/');
                push_decoded(&mut out, seg);
            }
        }
        if last {
            break;
        }
        i = end;
    }
    Ok(Normalized {
        path: out.finish(),
        query,
    })
}

/// Validates the segment starting at `start`; returns the index of the next
/// '/' or the end.
fn scan_segment(b: &[u8], start: usize) -> Result<usize, PathError> {
    let mut k = start;
    while let Some(&c) = b.get(k) {
        match c {
            b'/' => break,
            b'%' => {
                let v = escape_at(b, k).ok_or(PathError::BadEscape)?;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    // `%25xx` is `%xx` to a second decoder: `%252e%252e` would be `..`
                    b'%' => return Err(PathError::EncodedPercent),
                    0..=0x1f | 0x7f => return Err(PathError::ForbiddenChar),
                    0x80.. => k = utf8_escapes(b, k, v)?,
                    _ => k += 3,
                }
            }
            // Matrix parameters (`/admin;x/`) are stripped before routing by
            // servlet containers, so `/admin;x/` would escape a `/admin/` rule.
            b';' => return Err(PathError::AmbiguousSegment),
            c if forbidden(c) => return Err(PathError::ForbiddenChar),
            _ => k += 1,
        }
    }
    Ok(k)
}

/// Checks that the escape at `b[k]`, of the byte `lead` (0x80 or above),
/// starts escapes that together form one UTF-8 character; returns the index
/// after them. Overlong forms (`%C0%AE` for `.`), surrogates, code points
/// past U+10FFFF, stray continuation bytes and truncated sequences are
/// refused: lenient decoders read some of them as ASCII (`.`, `/`).
fn utf8_escapes(b: &[u8], k: usize, lead: u8) -> Result<usize, PathError> {
    let width = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Err(PathError::BadEscape),
    };
    let mut buf = [lead, 0, 0, 0];
    for (i, slot) in buf.iter_mut().enumerate().take(width).skip(1) {
        let at = k + 3 * i;
        if b.get(at) != Some(&b'%') {
            return Err(PathError::BadEscape);
        }
        *slot = escape_at(b, at).ok_or(PathError::BadEscape)?;
    }
    match std::str::from_utf8(buf.get(..width).unwrap_or_default()) {
        Ok(_) => Ok(k + 3 * width),
        Err(_) => Err(PathError::BadEscape),
    }
}

fn forbidden(c: u8) -> bool {
    c <= b' ' || c >= 0x7f || c == b'\\' || c == b'#'
}

/// The byte encoded by the escape at `b[k] == '%'`, if valid.
pub(crate) fn escape_at(b: &[u8], k: usize) -> Option<u8> {
    let hi = hex(*b.get(k + 1)?)?;
    let lo = hex(*b.get(k + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

enum Segment {
    Empty,
    Dot,
    DotDot,
    Normal,
    Ambiguous,
}

/// Classifies an already validated segment, reading `%2e` as `.`.
fn classify(seg: &[u8]) -> Segment {
    if seg.is_empty() {
        return Segment::Empty;
    }
    let mut dots = 0;
    let mut k = 0;
    loop {
        match seg.get(k) {
            None => {
                return match dots {
                    1 => Segment::Dot,
                    2 => Segment::DotDot,
                    _ => Segment::Normal,
                }
            }
            Some(b'.') => k += 1,
            Some(b'%') if seg.get(k + 1) == Some(&b'2') && matches!(seg.get(k + 2), Some(b'e' | b'E')) => k += 3,
            Some(b';') if dots <= 2 => return Segment::Ambiguous,
            Some(_) => return Segment::Normal,
        }
        dots += 1;
        if dots > 2 {
            return Segment::Normal;
        }
    }
}

/// Whether a segment ends in `.` or `%2e`.
fn ends_with_dot(seg: &[u8]) -> bool {
    seg.last() == Some(&b'.')
        || (seg.len() >= 3 && seg.get(seg.len() - 3..).is_some_and(|t| t.eq_ignore_ascii_case(b"%2e")))
}

/// Appends a validated segment, decoding escapes of unreserved characters.
fn push_decoded(out: &mut Out<'_>, seg: &[u8]) {
    let mut k = 0;
    while let Some(&c) = seg.get(k) {
        if c == b'%' {
            if let Some(v) = escape_at(seg, k).filter(|&v| unreserved(v)) {
                out.push(v);
                k += 3;
                continue;
            }
        }
        out.push(c);
        k += 1;
    }
}

/// Output that stays a borrowed prefix of the input for as long as it matches it.
enum Out<'a> {
    /// The output so far is `src[..len]`.
    Prefix(&'a str, usize),
    Owned(String),
}

impl<'a> Out<'a> {
    /// Appends one ASCII byte.
    fn push(&mut self, c: u8) {
        match self {
            Out::Prefix(src, len) => {
                if src.as_bytes().get(*len) == Some(&c) {
                    *len += 1;
                } else {
                    let mut s = String::with_capacity(src.len());
                    s.push_str(src.get(..*len).unwrap_or_default());
                    s.push(char::from(c));
                    *self = Out::Owned(s);
                }
            }
            Out::Owned(s) => s.push(char::from(c)),
        }
    }

    /// Removes the last `/segment`, if any.
    fn pop_segment(&mut self) {
        match self {
            Out::Prefix(src, len) => {
                *len = src.get(..*len).and_then(|p| p.rfind('/')).unwrap_or(0);
            }
            Out::Owned(s) => {
                let cut = s.rfind('/').unwrap_or(0);
                s.truncate(cut);
            }
        }
    }

    fn finish(self) -> Cow<'a, str> {
        match self {
            Out::Prefix(src, len) => Cow::Borrowed(src.get(..len).unwrap_or_default()),
            Out::Owned(s) => Cow::Owned(s),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
