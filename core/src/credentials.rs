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
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct Req(Vec<(&'static str, String)>);

    impl Req {
        fn census(&self, places: &Places, path: &str) -> Result<Census, Ambiguous> {
            census(places, path, &mut |names, f| {
                for (n, v) in &self.0 {
                    if let Some(i) = names.iter().position(|name| n.eq_ignore_ascii_case(name)) {
                        f(i, v.clone());
                    }
                }
            })
        }
    }

    fn places() -> Places {
        let sources = [
            TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("Bearer".into()),
            },
            TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("ApiKey".into()),
            },
            TokenSource::Header {
                name: "Cf-Access-Jwt-Assertion".into(),
                scheme: None,
            },
            TokenSource::Cookie {
                name: "CF_Authorization".into(),
            },
            TokenSource::Cookie { name: "session".into() },
            TokenSource::Query {
                name: "access_token".into(),
            },
        ];
        Places::new(&sources, KeyFormat::default())
    }

    const KEY: &str = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

    fn run(path: &str, headers: &[(&'static str, &str)]) -> Result<Census, Ambiguous> {
        Req(headers.iter().map(|(n, v)| (*n, v.to_string())).collect()).census(&places(), path)
    }

    #[test]
    fn places_cover_every_source_and_the_defaults() {
        let p = places();
        let names: Vec<&str> = p.header_names().collect();
        assert_eq!(names, ["authorization", "x-api-key", "cf-access-jwt-assertion"]);
        assert_eq!(p.headers[0].1, ["Bearer", "ApiKey"]);
        assert_eq!(p.cookies, ["CF_Authorization", "session"]);
        assert_eq!(p.queries, ["access_token"]);
        let none = Places::new([], KeyFormat::default());
        assert_eq!(none.header_names().collect::<Vec<_>>(), ["authorization", "x-api-key"]);
    }

    #[test]
    fn one_credential_in_one_place_is_read() {
        let bearer = format!("Bearer {JWT}");
        let apikey = format!("apikey {KEY}");
        let cookie = format!("theme=dark; session={JWT}");
        let quoted = format!("session=\"{JWT}\"");
        for headers in [
            vec![("authorization", bearer.as_str())],
            vec![("authorization", apikey.as_str())],
            vec![("x-api-key", KEY)],
            vec![("cookie", cookie.as_str())],
            vec![("cookie", quoted.as_str())],
            vec![("cf-access-jwt-assertion", JWT)],
            vec![("authorization", "Basic dXNlcg==")],
        ] {
            assert!(run("/a", &headers).is_ok(), "{headers:?}");
        }
        for path in [
            format!("/a?access_token={JWT}"),
            format!("/a?x=1&k={KEY}"),
            "/a?x=1".into(),
        ] {
            assert!(run(&path, &[]).is_ok(), "{path}");
        }
    }

    #[test]
    fn the_same_credential_in_two_places_is_one_credential() {
        // Cloudflare Access: the header and the browser's cookie carry the same token
        let cookie = format!("CF_Authorization={JWT}");
        assert!(run("/a", &[("cf-access-jwt-assertion", JWT), ("cookie", &cookie)]).is_ok());
        let bearer = format!("Bearer {JWT}");
        assert!(run(&format!("/a?access_token={JWT}"), &[("authorization", &bearer)]).is_ok());
        let apikey = format!("ApiKey {KEY}");
        assert!(run(
            &format!("/a?k={KEY}"),
            &[("authorization", &apikey), ("x-api-key", KEY)]
        )
        .is_ok());
    }

    /// Issue 11, item 4: two credentials, or one place twice, in every form an attacker
    /// would try: refused, whatever the rule reads.
    #[test]
    fn a_second_credential_or_a_second_copy_is_ambiguous() {
        let bearer = format!("Bearer {JWT}");
        let apikey = format!("ApiKey {KEY}");
        let other = "sk_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        let cases: Vec<(String, Vec<(&'static str, String)>)> = vec![
            // twice in one place
            (
                "/a".into(),
                vec![("x-api-key", KEY.into()), ("x-api-key", other.into())],
            ),
            ("/a".into(), vec![("x-api-key", KEY.into()), ("x-api-key", KEY.into())]),
            ("/a".into(), vec![("x-api-key", KEY.into()), ("x-api-key", "".into())]),
            (
                "/a".into(),
                vec![("X-Api-Key", KEY.into()), ("x-api-key", other.into())],
            ),
            (
                "/a".into(),
                vec![("authorization", bearer.clone()), ("authorization", bearer.clone())],
            ),
            (
                "/a".into(),
                vec![("authorization", format!("Bearer {JWT}, Bearer {JWT}"))],
            ),
            ("/a".into(), vec![("x-api-key", format!("{KEY},{other}"))]),
            ("/a".into(), vec![("cookie", format!("session={JWT}; session={JWT}"))]),
            ("/a".into(), vec![("cookie", format!("session={JWT}; SESSION=x"))]),
            (
                "/a".into(),
                vec![("cookie", format!("session={JWT}")), ("cookie", "session=".into())],
            ),
            ("/a".into(), vec![("cookie", format!("session=; Session={JWT}"))]),
            (format!("/a?access_token={JWT}&access_token={JWT}"), vec![]),
            (format!("/a?access_token={JWT}&ACCESS_TOKEN=x"), vec![]),
            (format!("/a?access_token={JWT}&Access%5FToken="), vec![]),
            ("/a?access_token=%zz".into(), vec![]),
            ("/a?access_token=%FF".into(), vec![]),
            // two places
            (
                "/a".into(),
                vec![("authorization", apikey.clone()), ("x-api-key", other.into())],
            ),
            (
                "/a".into(),
                vec![("authorization", bearer.clone()), ("x-api-key", KEY.into())],
            ),
            (
                "/a".into(),
                vec![("authorization", "Basic dXNlcg==".into()), ("x-api-key", KEY.into())],
            ),
            (
                "/a".into(),
                vec![("authorization", bearer.clone()), ("cookie", "session=other".into())],
            ),
            (
                "/a".into(),
                vec![
                    ("cf-access-jwt-assertion", JWT.into()),
                    ("cookie", "CF_Authorization=x".into()),
                ],
            ),
            (
                format!("/a?access_token={KEY}"),
                vec![("authorization", bearer.clone())],
            ),
            (format!("/a?api_key={other}"), vec![("x-api-key", KEY.into())]),
            (format!("/a?token={JWT}x"), vec![("x-api-key", KEY.into())]),
            (format!("/a?k={KEY}&j={JWT}"), vec![]),
        ];
        for (path, headers) in cases {
            let h: Vec<(&'static str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert_eq!(run(&path, &h).map(|_| ()), Err(Ambiguous), "{path} {headers:?}");
        }
    }

    #[test]
    fn empty_places_hold_nothing() {
        // empty places next to each other, or next to a credential: one credential at most
        let empties = [
            ("x-api-key", ""),
            ("authorization", "Bearer"),
            ("cookie", "session=; a=b"),
        ];
        assert!(run("/a?access_token=&x=1", &empties).is_ok());
        assert!(run("/a?access_token=", &[("x-api-key", KEY)]).is_ok());
        assert!(run("/a?access_token=", &[("x-api-key", KEY), ("cookie", "session=")]).is_ok());
    }

    #[test]
    fn only_credential_shapes_count_in_other_parameters() {
        for v in [
            "sk_0123",
            "SK_0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
            "eyJ.a",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            "a.b.c",
            "eyJhbGciOiJIUzI1NiJ9.e30.c2ln.x",
            "%zz",
        ] {
            let path = format!("/a?state={v}");
            let c = run(&path, &[("x-api-key", KEY)]).unwrap();
            assert_eq!(c.strip(&places(), &path, |_| false).path, None, "{v}: not a credential");
        }
        // encoded, the shape is still seen
        let path = format!("/a?x={}&y=1", KEY.replace('_', "%5F"));
        let c = run(&path, &[]).unwrap();
        assert_eq!(c.strip(&places(), &path, |_| false).path.as_deref(), Some("/a?y=1"));
        assert_eq!(run(&path, &[("x-api-key", JWT)]).map(|_| ()), Err(Ambiguous));
    }

    /// More header places than [`ByPlace`] keeps inline: the ones past it count alike.
    #[test]
    fn many_header_places() {
        let sources: Vec<TokenSource> = (0..7)
            .map(|i| TokenSource::Header {
                name: format!("x-token-{i}"),
                scheme: None,
            })
            .collect();
        let p = Places::new(&sources, KeyFormat::default());
        assert_eq!(p.header_names().count(), 9);
        let req = |h: Vec<(&'static str, String)>| Req(h).census(&p, "/a");
        let c = req(vec![("x-token-6", JWT.into()), ("x-token-5", String::new())]).unwrap();
        assert_eq!(c.header(&p, "x-token-6"), Some(JWT));
        let strip = c.strip(&p, "/a", |_| false);
        assert_eq!(strip.headers.names().collect::<Vec<_>>(), ["x-token-5", "x-token-6"]);
        let kept = c.strip(&p, "/a", |k| k == Kept::Header("x-token-6"));
        assert_eq!(kept.headers.names().collect::<Vec<_>>(), ["x-token-5"]);
        for dup in [
            vec![("x-token-6", JWT.into()), ("x-token-6", JWT.into())],
            vec![("x-token-6", JWT.into()), ("x-token-1", KEY.into())],
            vec![("x-token-5", format!("{JWT},{JWT}"))],
        ] {
            assert_eq!(req(dup).map(|_| ()), Err(Ambiguous));
        }
    }

    #[test]
    fn strip_empties_every_place_but_the_kept_ones() {
        let p = places();
        let path = format!("/a?x=1&access_token={JWT}&y=2&other={JWT}");
        let cookie = format!("a=1; session={JWT}; CF_Authorization={JWT}; b=2");
        let bearer = format!("Bearer {JWT}");
        let req = Req(vec![
            ("authorization", bearer.clone()),
            ("x-api-key", String::new()),
            ("cookie", cookie),
        ]);
        let c = req.census(&p, &path).unwrap();
        assert_eq!(c.header(&p, "authorization"), Some(bearer.as_str()));
        let all = c.strip(&p, &path, |_| false);
        assert_eq!(all.headers.names().collect::<Vec<_>>(), ["authorization", "x-api-key"]);
        assert_eq!(all.cookie.as_deref(), Some("a=1; b=2"));
        assert_eq!(all.path.as_deref(), Some("/a?x=1&y=2"));
        // keep what a forward_token rule reads: the Bearer header and the session cookie
        let kept = c.strip(&p, &path, |k| {
            k == Kept::Header("authorization") || k == Kept::Cookie("session")
        });
        assert_eq!(kept.headers.names().collect::<Vec<_>>(), ["x-api-key"]);
        assert_eq!(
            kept.cookie.as_deref(),
            Some(format!("a=1; session={JWT}; b=2").as_str())
        );
        assert_eq!(kept.path.as_deref(), Some("/a?x=1&y=2"), "query credentials always go");
        // nothing to strip: no edits
        let c = Req(vec![("cookie", "a=1".into())]).census(&p, "/a?x=1").unwrap();
        assert_eq!(c.strip(&p, "/a?x=1", |_| false), Strip::default());
    }
}
