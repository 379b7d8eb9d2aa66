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
