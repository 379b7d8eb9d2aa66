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
mod tests;
