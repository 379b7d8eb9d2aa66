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

use crate::apikey::KeyFormat;
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
        self.key.accepts(value) || looks_like_jws(value)
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

/// What [`census`] saw of a request's credential places.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Per header place: its one value, when the request has the header.
    headers: Vec<Option<String>>,
    /// The request's `cookie` lines joined with `"; "`, when some cookie
    /// place exists and the request has the header.
    cookie: Option<String>,
    /// Per cookie place: whether the request has that cookie (any case).
    cookies: Vec<bool>,
    /// Query parameters that are credential places: their index, and the
    /// named place (`None`: a parameter of credential shape).
    params: Vec<(usize, Option<usize>)>,
    /// The credential the request carries, wherever it is; `None`: none.
    value: Option<String>,
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

/// Looks at every credential place of `places` in the request: `raw_path` is
/// the `:path`, `header_all` gives every value of a header (lower-case
/// name), in order. `Err` when a place occurs twice (two header lines, a
/// comma in a header value, a cookie or a query parameter twice, in any
/// letter case, empty values included), a query place cannot be decoded, or
/// two places hold different values.
pub fn census(
    places: &Places,
    raw_path: &str,
    header_all: &mut dyn FnMut(&str) -> Vec<String>,
) -> Result<Census, Ambiguous> {
    let mut c = Census {
        headers: vec![None; places.headers.len()],
        cookies: vec![false; places.cookies.len()],
        ..Census::default()
    };
    for (i, (name, schemes)) in places.headers.iter().enumerate() {
        let mut values = header_all(name);
        if values.len() > 1 {
            return Err(Ambiguous);
        }
        let Some(v) = values.pop() else { continue };
        // a comma is how Envoy joins two lines of one header
        if v.contains(',') {
            return Err(Ambiguous);
        }
        c.hold(strip_scheme(v.trim_ascii(), schemes))?;
        if let Some(slot) = c.headers.get_mut(i) {
            *slot = Some(v);
        }
    }
    if !places.cookies.is_empty() {
        let lines = header_all("cookie");
        if !lines.is_empty() {
            let joined = lines.join("; ");
            for (name, value) in token_source::cookie_pairs(&joined) {
                let Some(i) = places.cookie_index(name) else { continue };
                match c.cookies.get_mut(i) {
                    Some(seen) if *seen => return Err(Ambiguous),
                    Some(seen) => *seen = true,
                    None => {}
                }
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                c.hold(unquoted)?;
            }
            c.cookie = Some(joined);
        }
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
                    let decoded = token_source::percent_decode(value).ok_or(Ambiguous)?;
                    c.hold(&decoded)?;
                    c.params.push((i, Some(q)));
                }
                None => {
                    let decoded = token_source::percent_decode(value).unwrap_or(Cow::Borrowed(""));
                    if places.looks_like_credential(&decoded) {
                        c.hold(&decoded)?;
                        c.params.push((i, None));
                    }
                }
            }
        }
    }
    Ok(c)
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
    /// Headers to remove (lower-case).
    pub headers: Vec<&'p str>,
    /// The new `cookie` header (empty: remove it), when a cookie goes.
    pub cookie: Option<String>,
    /// The new `:path`, when a query parameter goes.
    pub path: Option<String>,
}

impl Census {
    /// Records a place's value: empty values hold nothing; a value other
    /// than the one already held is a second credential.
    fn hold(&mut self, value: &str) -> Result<(), Ambiguous> {
        if value.is_empty() {
            return Ok(());
        }
        match &self.value {
            Some(v) if v != value => Err(Ambiguous),
            Some(_) => Ok(()),
            None => {
                self.value = Some(value.to_owned());
                Ok(())
            }
        }
    }

    /// The credential the request carries, wherever it is.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

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
        let mut s = Strip::default();
        for ((name, _), value) in places.headers.iter().zip(&self.headers) {
            if value.is_some() && !keep(Kept::Header(name)) {
                s.headers.push(name.as_str());
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct Req(Vec<(&'static str, String)>);

    impl Req {
        fn census(&self, places: &Places, path: &str) -> Result<Census, Ambiguous> {
            census(places, path, &mut |name| {
                self.0
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
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
        for (path, headers) in [
            ("/a", vec![("authorization", format!("Bearer {JWT}"))]),
            ("/a", vec![("authorization", format!("apikey {KEY}"))]),
            ("/a", vec![("x-api-key", KEY.to_owned())]),
            ("/a", vec![("cookie", format!("theme=dark; session={JWT}"))]),
            ("/a", vec![("cookie", format!("session=\"{JWT}\""))]),
            ("/a", vec![("cf-access-jwt-assertion", JWT.to_owned())]),
        ] {
            let headers: Vec<(&'static str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let c = run(path, &headers).unwrap();
            assert!(c.value() == Some(JWT) || c.value() == Some(KEY), "{headers:?}");
        }
        assert_eq!(run(&format!("/a?access_token={JWT}"), &[]).unwrap().value(), Some(JWT));
        assert_eq!(run(&format!("/a?x=1&k={KEY}"), &[]).unwrap().value(), Some(KEY));
        assert_eq!(run("/a?x=1", &[]).unwrap().value(), None);
        assert_eq!(
            run("/a", &[("authorization", "Basic dXNlcg==")]).unwrap().value(),
            Some("Basic dXNlcg==")
        );
    }

    #[test]
    fn the_same_credential_in_two_places_is_one_credential() {
        // Cloudflare Access: the header and the browser's cookie carry the same token
        let cookie = format!("CF_Authorization={JWT}");
        let c = run("/a", &[("cf-access-jwt-assertion", JWT), ("cookie", &cookie)]).unwrap();
        assert_eq!(c.value(), Some(JWT));
        let bearer = format!("Bearer {JWT}");
        let c = run(&format!("/a?access_token={JWT}"), &[("authorization", &bearer)]).unwrap();
        assert_eq!(c.value(), Some(JWT));
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
            assert_eq!(run(&path, &h).map(|c| c.value), Err(Ambiguous), "{path} {headers:?}");
        }
    }

    #[test]
    fn empty_places_hold_nothing() {
        let c = run(
            "/a?access_token=&x=1",
            &[
                ("x-api-key", ""),
                ("authorization", "Bearer"),
                ("cookie", "session=; a=b"),
            ],
        );
        assert_eq!(c.unwrap().value(), None);
        let c = run("/a?access_token=", &[("x-api-key", KEY)]).unwrap();
        assert_eq!(c.value(), Some(KEY));
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
            assert_eq!(c.value(), Some(KEY), "{v}");
        }
        // encoded, the shape is still seen
        let encoded = KEY.replace('_', "%5F");
        assert_eq!(run(&format!("/a?x={encoded}"), &[]).unwrap().value(), Some(KEY));
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
        assert_eq!(all.headers, ["authorization", "x-api-key"]);
        assert_eq!(all.cookie.as_deref(), Some("a=1; b=2"));
        assert_eq!(all.path.as_deref(), Some("/a?x=1&y=2"));
        // keep what a forward_token rule reads: the Bearer header and the session cookie
        let kept = c.strip(&p, &path, |k| {
            k == Kept::Header("authorization") || k == Kept::Cookie("session")
        });
        assert_eq!(kept.headers, ["x-api-key"]);
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
