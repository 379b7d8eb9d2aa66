//! One credential, read one way: every place a request may carry a
//! credential, and the check that it carries at most one.
//!
//! A backend behind the filter may read a credential from another place than
//! the one the filter checked (its own `x-api-key` middleware, a session
//! cookie, a `?token=` parameter), or read another copy of the same place
//! (the last of two headers, a cookie name in another letter case). So on a
//! rule that authenticates, the filter looks at every place where a
//! credential may be, whatever that rule reads:
//!
//! - every header, cookie and query parameter that any token source of any
//!   provider, or `api_keys.sources`, names, and the headers `authorization`
//!   and `x-api-key` always (the documented defaults);
//! - any other query parameter whose value has the shape of a credential: an
//!   API key of the configured format, or a JWS compact serialization
//!   (`eyJ...`, three base64url parts).
//!
//! [`census`] refuses a request that carries one of these places twice (two
//! header lines, a comma inside one, a cookie or a parameter twice, in any
//! letter case) or that carries different values in two places; the same
//! credential in two places (Cloudflare Access sends its token both as a
//! header and as a cookie) is one credential. [`Census::strip`] then says
//! which places to empty before the request goes upstream. [`Places`] is
//! built once, when the configuration loads.

use std::borrow::Cow;

use crate::api_key::KeyFormat;
use crate::token_source::{self, TokenSource};

/// The headers that are credential places even when no source names them,
/// with the schemes they carry by default (`Authorization: Bearer <token>`,
/// `Authorization: ApiKey <key>`).
const DEFAULT_HEADERS: [(&str, &[&str]); 2] = [("authorization", &["Bearer", "ApiKey"]), ("x-api-key", &[])];

/// Where credentials may be, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// Lower-case header names, each with the schemes sources read on it.
    headers: Vec<(String, Vec<String>)>,
    /// The headers [`census`] asks for: the header places, then `cookie`
    /// when there is a cookie place.
    names: Vec<String>,
    /// Cookie names as configured (matched in any letter case).
    cookies: Vec<String>,
    /// Query parameter names as configured (matched in any letter case, after decoding).
    queries: Vec<String>,
    /// The API-key format, for key-shaped query values.
    key: KeyFormat,
}

impl Places {
    /// Every place `sources` name, the default headers, and `key` for
    /// recognising an API key in any query parameter.
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a TokenSource>, key: KeyFormat) -> Places {
        let mut p = Places {
            key,
            ..Places::default()
        };
        for (h, schemes) in DEFAULT_HEADERS {
            p.headers
                .push((h.to_owned(), schemes.iter().map(|s| (*s).to_owned()).collect()));
        }
        for source in sources {
            match source {
                TokenSource::Header { name, scheme } => {
                    let name = name.to_ascii_lowercase();
                    let i = match p.headers.iter().position(|(n, _)| *n == name) {
                        Some(i) => i,
                        None => {
                            p.headers.push((name, Vec::new()));
                            p.headers.len() - 1
                        }
                    };
                    if let (Some(scheme), Some((_, schemes))) = (scheme, p.headers.get_mut(i)) {
                        if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                            schemes.push(scheme.clone());
                        }
                    }
                }
                TokenSource::Cookie { name } => {
                    if !p.cookies.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                        p.cookies.push(name.clone());
                    }
                }
                TokenSource::Query { name } => {
                    if !p.queries.iter().any(|q| q.eq_ignore_ascii_case(name)) {
                        p.queries.push(name.clone());
                    }
                }
            }
        }
        p.names = p.headers.iter().map(|(n, _)| n.clone()).collect();
        if !p.cookies.is_empty() {
            p.names.push("cookie".to_owned());
        }
        p
    }

    /// The header places, lower-case.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(n, _)| n.as_str())
    }

    fn cookie_index(&self, name: &str) -> Option<usize> {
        self.cookies.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    fn query_index(&self, raw_name: &str) -> Option<usize> {
        self.queries
            .iter()
            .position(|q| token_source::decoded_eq_ignore_case(raw_name, q))
    }

    /// Whether a query value (decoded) has the shape of a credential.
    fn looks_like_credential(&self, value: &str) -> bool {
        self.key.accepts(value) || (value.starts_with("eyJ") && looks_like_jws(value))
    }
}

/// A JWS compact serialization: three non-empty base64url parts, the header
/// a JSON object (`eyJ` is base64url for `{"`).
fn looks_like_jws(v: &str) -> bool {
    let b64 = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let mut parts = v.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None) if h.starts_with("eyJ") && b64(h) && b64(p) && b64(s)
    )
}

/// A list indexed by header place, its first [`INLINE`] entries inline:
/// the usual configuration has a few credential headers, and the request
/// path then allocates nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByPlace<T> {
    inline: [T; INLINE],
    more: Vec<T>,
}

/// Header places kept inline by [`ByPlace`].
const INLINE: usize = 4;

impl<T: Default + Clone> ByPlace<T> {
    fn with_len(n: usize) -> ByPlace<T> {
        ByPlace {
            inline: Default::default(),
            more: vec![T::default(); n.saturating_sub(INLINE)],
        }
    }
}

impl<T> ByPlace<T> {
    fn get(&self, i: usize) -> Option<&T> {
        match i.checked_sub(INLINE) {
            None => self.inline.get(i),
            Some(j) => self.more.get(j),
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        match i.checked_sub(INLINE) {
            None => self.inline.get_mut(i),
            Some(j) => self.more.get_mut(j),
        }
    }

    /// Every entry, in place order (the inline ones past the places' count are defaults).
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline.iter().chain(&self.more)
    }
}

impl<T: Default + Clone> Default for ByPlace<T> {
    fn default() -> Self {
        ByPlace::with_len(0)
    }
}

impl<'p> ByPlace<Option<&'p str>> {
    /// The header names set, in place order.
    pub fn names(&self) -> impl Iterator<Item = &'p str> + '_ {
        self.iter().flatten().copied()
    }
}

/// What [`census`] saw of a request's credential places.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Per header place: its one value, when the request has the header.
    headers: ByPlace<Option<String>>,
    /// The request's `cookie` lines joined with `"; "`, when some cookie
    /// place exists and the request has the header.
    cookie: Option<String>,
    /// Per cookie place: whether the request has that cookie (any case).
    cookies: Vec<bool>,
    /// Query parameters that are credential places: their index, and the
    /// named place (`None`: a parameter of credential shape).
    params: Vec<(usize, Option<usize>)>,
}

/// The request carries a credential place twice, or two different credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;

/// A credential place a rule may keep for the upstream ([`Census::strip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept<'a> {
    /// A header, by lower-case name.
    Header(&'a str),
    /// A cookie, by its configured name.
    Cookie(&'a str),
}

/// Reads the values of the headers `names` (lower-case) in one pass over the
/// request: calls the callback with each value and the index of its name,
/// in the request's order.
pub type EachHeader<'r> = dyn FnMut(&[String], &mut dyn FnMut(usize, String)) + 'r;

/// Looks at every credential place of `places` in the request: `raw_path` is
/// the `:path`, `each_header` reads headers. `Err` when a place occurs twice
/// (two header lines, a comma in a header value, a cookie or a query
/// parameter twice, in any letter case, empty values included), a query
/// place cannot be decoded, or two places hold different values.
pub fn census(places: &Places, raw_path: &str, each_header: &mut EachHeader<'_>) -> Result<Census, Ambiguous> {
    // First what each place holds, then (borrowing it) whether the values agree: the
    // common request, one credential in one place, copies nothing.
    let mut c = Census {
        headers: ByPlace::with_len(places.headers.len()),
        ..Census::default()
    };
    let mut repeated = false;
    let mut cookie_lines: Vec<String> = Vec::new();
    let slots = &mut c.headers;
    let n = places.headers.len();
    each_header(&places.names, &mut |i, v| match slots.get_mut(i) {
        _ if i >= n => cookie_lines.push(v),
        Some(slot @ None) => *slot = Some(v),
        Some(Some(_)) => repeated = true,
        None => {}
    });
    // a comma is how Envoy joins two lines of one header
    if repeated || c.headers.iter().flatten().any(|v| v.as_bytes().contains(&b',')) {
        return Err(Ambiguous);
    }
    c.cookie = match cookie_lines.len() {
        0 => None,
        1 => cookie_lines.pop(),
        _ => Some(cookie_lines.join("; ")),
    };
    let mut cookies = vec![false; places.cookies.len()];
    let mut params = Vec::new();
    let mut held = Held::default();
    for (value, (_, schemes)) in c.headers.iter().zip(&places.headers) {
        if let Some(v) = value {
            held.hold(Cow::Borrowed(strip_scheme(v.trim_ascii(), schemes)))?;
        }
    }
    for (name, value) in c.cookie.iter().flat_map(|joined| token_source::cookie_pairs(joined)) {
        let Some(i) = places.cookie_index(name) else { continue };
        match cookies.get_mut(i) {
            Some(seen) if *seen => return Err(Ambiguous),
            Some(seen) => *seen = true,
            None => {}
        }
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        held.hold(Cow::Borrowed(unquoted))?;
    }
    if let Some((_, query, _)) = token_source::query_parts(raw_path) {
        let mut seen = vec![false; places.queries.len()];
        for (i, name, value) in token_source::query_params(query) {
            match places.query_index(name) {
                Some(q) => {
                    match seen.get_mut(q) {
                        Some(s) if *s => return Err(Ambiguous),
                        Some(s) => *s = true,
                        None => {}
                    }
                    held.hold(token_source::percent_decode(value).ok_or(Ambiguous)?)?;
                    params.push((i, Some(q)));
                }
                None => {
                    let decoded = token_source::percent_decode(value).unwrap_or(Cow::Borrowed(""));
                    if places.looks_like_credential(&decoded) {
                        held.hold(decoded)?;
                        params.push((i, None));
                    }
                }
            }
        }
    }
    c.cookies = cookies;
    c.params = params;
    Ok(c)
}

/// The one credential value seen so far.
#[derive(Default)]
struct Held<'a>(Option<Cow<'a, str>>);

impl<'a> Held<'a> {
    /// Records a place's value: empty values hold nothing; a value other
    /// than the one already held is a second credential.
    fn hold(&mut self, value: Cow<'a, str>) -> Result<(), Ambiguous> {
        if value.is_empty() {
            return Ok(());
        }
        match &self.0 {
            Some(v) if *v != value => Err(Ambiguous),
            Some(_) => Ok(()),
            None => {
                self.0 = Some(value);
                Ok(())
            }
        }
    }
}

/// `value` without a leading `scheme` of `schemes` (any case) and the blanks after it.
fn strip_scheme<'v>(value: &'v str, schemes: &[String]) -> &'v str {
    for scheme in schemes {
        if let (Some(head), Some(rest)) = (value.get(..scheme.len()), value.get(scheme.len()..)) {
            if head.eq_ignore_ascii_case(scheme) && (rest.is_empty() || rest.starts_with([' ', '\t'])) {
                return rest.trim_start_matches([' ', '\t']);
            }
        }
    }
    value
}

/// The edits that keep every credential place but the kept ones from the
/// upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strip<'p> {
    /// Headers to remove (lower-case), by place: see [`ByPlace::names`].
    pub headers: ByPlace<Option<&'p str>>,
    /// The new `cookie` header (empty: remove it), when a cookie goes.
    pub cookie: Option<String>,
    /// The new `:path`, when a query parameter goes.
    pub path: Option<String>,
}

impl Census {
    /// The one value of header place `name` (lower-case), if the request has it.
    pub fn header<'s>(&'s self, places: &Places, name: &str) -> Option<&'s str> {
        let i = places.headers.iter().position(|(n, _)| n == name)?;
        self.headers.get(i)?.as_deref()
    }

    /// The request's `cookie` lines, joined, when a cookie place exists.
    pub fn cookie_header(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// The edits that empty every credential place the request has, except
    /// the header and cookie places `keep` selects (query parameters always
    /// go: a credential in the path ends up in logs). `raw_path` is the `:path`.
    pub fn strip<'p>(&self, places: &'p Places, raw_path: &str, keep: impl Fn(Kept<'_>) -> bool) -> Strip<'p> {
        let mut s = Strip {
            headers: ByPlace::with_len(places.headers.len()),
            ..Strip::default()
        };
        for (i, ((name, _), value)) in places.headers.iter().zip(self.headers.iter()).enumerate() {
            if value.is_some() && !keep(Kept::Header(name)) {
                if let Some(slot) = s.headers.get_mut(i) {
                    *slot = Some(name.as_str());
                }
            }
        }
        if let Some(cookie) = &self.cookie {
            let drop = |n: &str| {
                places
                    .cookie_index(n)
                    .and_then(|i| places.cookies.get(i))
                    .is_some_and(|c| !keep(Kept::Cookie(c)))
            };
            if token_source::cookie_pairs(cookie).any(|(n, _)| drop(n)) {
                s.cookie = Some(token_source::cookie_without(cookie, drop));
            }
        }
        if !self.params.is_empty() {
            s.path = Some(token_source::query_without(raw_path, |i, _| {
                self.params.iter().any(|(p, _)| *p == i)
            }));
        }
        s
    }
}

#[cfg(test)]
mod tests;
