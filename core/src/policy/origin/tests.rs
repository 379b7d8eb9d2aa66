use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn origin(s: &str) -> Origin {
    match parse_origin(s) {
        Ok(o) => o,
        Err(e) => panic!("{s:?} refused: {e}"),
    }
}

fn norm(s: &str) -> String {
    origin(s).as_str().to_owned()
}

fn refused(s: &str) -> bool {
    Origin::parse(s).is_none()
}

fn pattern(s: &str) -> OriginPattern {
    match OriginPattern::parse(s) {
        Ok(p) => p,
        Err(e) => panic!("{s:?} refused: {e}"),
    }
}

fn pattern_err(s: &str) -> String {
    match OriginPattern::parse(s) {
        Ok(p) => panic!("{s:?} accepted as {p}"),
        Err(e) => e,
    }
}

fn matches(p: &str, o: &str) -> bool {
    pattern(p).matches(&origin(o))
}

fn cors() -> Cors {
    Cors {
        allow_methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
        allow_headers: vec!["authorization".into(), "content-type".into()],
        expose_headers: vec!["x-request-id".into()],
        max_age_s: 600,
        allow_credentials: true,
    }
}

fn get<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    let mut found = h.iter().filter(|(n, _)| *n == name);
    let first = found.next().map(|(_, v)| v.as_str());
    assert!(found.next().is_none(), "{name} repeated");
    first
}

#[test]
fn normalises_case_and_default_ports() {
    let cases = [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://APP.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("Http://Localhost:80", "http://localhost"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("https://app.example.com:80", "https://app.example.com:80"),
        ("http://app.example.com:443", "http://app.example.com:443"),
        ("https://x.example.com:65535", "https://x.example.com:65535"),
        ("http://x:1", "http://x:1"),
        ("https://xn--caf-dma.example", "https://xn--caf-dma.example"),
        ("https://a-b.c-d.example", "https://a-b.c-d.example"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw), want, "{raw}");
    }
    let o = origin("HTTP://App.Example.com:8080");
    assert_eq!(
        (o.scheme(), o.host(), o.port()),
        ("http", "app.example.com", Some(8080))
    );
    let o = origin("https://app.example.com:443");
    assert_eq!((o.scheme(), o.host(), o.port()), ("https", "app.example.com", None));
    assert_eq!(o.to_string(), "https://app.example.com");
}

#[test]
fn ip_literals() {
    let o = origin("http://[::1]:8080");
    assert_eq!(
        (o.as_str(), o.host(), o.port()),
        ("http://[::1]:8080", "[::1]", Some(8080))
    );
    assert_eq!(norm("http://[::1]"), "http://[::1]");
    assert_eq!(norm("https://[::1]:443"), "https://[::1]");
    assert_eq!(norm("http://[0:0:0:0:0:0:0:1]"), "http://[::1]");
    assert_eq!(norm("http://[2001:DB8::A]"), "http://[2001:db8::a]");
    let o = origin("http://127.0.0.1:3000");
    assert_eq!((o.host(), o.port()), ("127.0.0.1", Some(3000)));
    assert_eq!(norm("https://10.0.0.255"), "https://10.0.0.255");
    assert_eq!(norm("http://0.0.0.0"), "http://0.0.0.0");
    for bad in [
        "http://[::1",
        "http://[]",
        "http://[::1]x",
        "http://[::1]:",
        "http://[::1]:0",
        "http://[:::1]",
        "http://[::1%25eth0]",
        "http://[fe80::1%eth0]",
        "http://[127.0.0.1]",
        "http://::1",
        "http://::1:8080",
        "http://[::1]]",
        "http://[[::1]]",
    ] {
        assert!(refused(bad), "{bad}");
    }
}

#[test]
fn numeric_hosts_must_be_dotted_quads() {
    for bad in [
        "http://127.1",
        "http://2130706433",
        "http://0x7f.0.0.1",
        "http://127.0.0.0x1",
        "http://0x7f000001",
        "http://127.000.000.001",
        "http://127.0.0.01",
        "http://256.0.0.1",
        "http://1.2.3.4.5",
        "http://1.2.3",
        "http://example.123",
        "http://a.0x",
    ] {
        assert!(refused(bad), "{bad}");
    }
    // A numeric label elsewhere is fine.
    assert_eq!(norm("http://123.example.com"), "http://123.example.com");
    assert_eq!(norm("http://1.2.3.4.example"), "http://1.2.3.4.example");
    assert_eq!(norm("http://0xab.example"), "http://0xab.example");
}

#[test]
fn non_origin_forms_are_refused() {
    let cases = [
        ("", "not of the form"),
        ("null", "not of the form"),
        ("NULL", "not of the form"),
        ("app.example.com", "not of the form"),
        ("//app.example.com", "not of the form"),
        ("https:app.example.com", "not of the form"),
        ("https:/app.example.com", "not of the form"),
        ("https://app.example.com/", "path"),
        ("https://app.example.com/x", "path"),
        ("https://app.example.com:8080/", "path"),
        ("https://app.example.com?", "query"),
        ("https://app.example.com?a=b", "query"),
        ("https://app.example.com#", "fragment"),
        ("https://app.example.com#x", "fragment"),
        ("https://user@app.example.com", "userinfo"),
        ("https://user:pw@app.example.com", "userinfo"),
        ("https://evil.net@app.example.com", "userinfo"),
        ("ftp://app.example.com", "scheme"),
        ("ws://app.example.com", "scheme"),
        ("file://app.example.com", "scheme"),
        ("httpss://app.example.com", "scheme"),
        ("://app.example.com", "scheme"),
        ("https://", "empty"),
        ("https://:8080", "empty"),
        ("https:///", "path"),
    ];
    for (raw, why) in cases {
        match parse_origin(raw) {
            Ok(o) => panic!("{raw:?} accepted as {o}"),
            Err(e) => assert!(e.contains(why), "{raw:?}: {e}"),
        }
    }
}

#[test]
fn whitespace_and_odd_bytes_are_refused() {
    for bad in [
        " https://a.example.com",
        "https://a.example.com ",
        "https://a.example .com",
        "https://a.example.com\t",
        "https://a.example.com\r\nx-evil: 1",
        "https://a.example.com\0",
        "https://a.example.com\x7f",
        "https://caf\u{e9}.example.com",
        "https://a.example.com, https://b.example.com",
        "https://a_b.example.com",
        "https://a%2eexample.com",
        "https://a*.example.com",
        "https://*.example.com",
        "https://a.example.com\\",
        "https://a;b.example.com",
        "https://a,b.example.com",
    ] {
        assert!(refused(bad), "{bad:?}");
    }
}

#[test]
fn empty_labels_and_trailing_dots_are_refused() {
    for bad in [
        "https://.example.com",
        "https://a..example.com",
        "https://example.com.",
        "https://example.com..",
        "https://.",
        "https://..",
        "https://example.com.:443",
    ] {
        assert!(refused(bad), "{bad}");
    }
}

#[test]
fn bad_ports_are_refused() {
    for bad in [
        "https://a.example.com:",
        "https://a.example.com:0",
        "https://a.example.com:00",
        "https://a.example.com:0443",
        "https://a.example.com:65536",
        "https://a.example.com:99999",
        "https://a.example.com:100000",
        "https://a.example.com:4294967297",
        "https://a.example.com:+443",
        "https://a.example.com:-1",
        "https://a.example.com:44a",
        "https://a.example.com:0x1bb",
        "https://a.example.com:443:443",
        "https://a.example.com::443",
        "https://a.example.com:１２",
    ] {
        assert!(refused(bad), "{bad}");
    }
}

#[test]
fn length_is_bounded() {
    let prefix = "https://";
    let ok = format!("{prefix}{}.com", "a".repeat(MAX_ORIGIN_BYTES - prefix.len() - 4));
    assert_eq!(ok.len(), MAX_ORIGIN_BYTES);
    assert_eq!(norm(&ok), ok);
    let long = format!("{prefix}{}.com", "a".repeat(MAX_ORIGIN_BYTES - prefix.len() - 3));
    assert!(refused(&long));
    assert!(refused(&"a".repeat(1 << 20)));
    let p = format!("https://*.{}", "a".repeat(MAX_ORIGIN_BYTES));
    assert!(pattern_err(&p).contains("too long"));
}

#[test]
fn classification() {
    assert_eq!(classify(None), OriginHeader::Missing);
    assert_eq!(classify(Some("null")), OriginHeader::Null);
    assert_eq!(classify(Some("NULL")), OriginHeader::Null);
    assert_eq!(classify(Some("Null")), OriginHeader::Null);
    assert_eq!(classify(Some(" null")), OriginHeader::Invalid);
    assert_eq!(classify(Some("null ")), OriginHeader::Invalid);
    assert_eq!(classify(Some("nul")), OriginHeader::Invalid);
    assert_eq!(classify(Some("")), OriginHeader::Invalid);
    assert_eq!(classify(Some("https://a.example.com/")), OriginHeader::Invalid);
    assert_eq!(classify(Some("null, https://a.example.com")), OriginHeader::Invalid);
    assert_eq!(
        classify(Some("HTTPS://A.example.com:443")),
        OriginHeader::Present(origin("https://a.example.com"))
    );
}

#[test]
fn exact_patterns() {
    let p = pattern("https://app.example.com");
    assert!(!p.is_wildcard());
    assert_eq!(p.as_str(), "https://app.example.com");
    assert!(matches("https://app.example.com", "https://app.example.com"));
    assert!(matches("https://app.example.com", "HTTPS://APP.EXAMPLE.COM"));
    assert!(matches("https://app.example.com", "https://app.example.com:443"));
    assert!(matches("https://app.example.com:443", "https://app.example.com"));
    assert!(matches("HTTPS://App.Example.Com:443", "https://app.example.com"));
    assert_eq!(pattern("https://app.example.com:443"), p);
    assert!(matches("http://localhost:8080", "http://localhost:8080"));
    assert!(matches("http://[::1]:8080", "http://[0::1]:8080"));
    for other in [
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com:80",
        "https://a.app.example.com",
        "https://example.com",
        "https://app.example.com.evil.net",
        "https://evilapp.example.com",
    ] {
        assert!(!matches("https://app.example.com", other), "{other}");
    }
    assert!(matches("https://app.example.com:8443", "https://app.example.com:8443"));
    assert!(!matches("https://app.example.com:8443", "https://app.example.com"));
    assert!(!matches("https://app.example.com:8443", "https://app.example.com:443"));
    assert!(!matches("http://localhost:8080", "http://localhost"));
}

#[test]
fn wildcard_patterns_match_only_real_subdomains() {
    let p = pattern("https://*.example.com");
    assert!(p.is_wildcard());
    assert_eq!(p.as_str(), "https://*.example.com");
    for yes in [
        "https://a.example.com",
        "https://a.b.example.com",
        "https://x-y.example.com",
        "HTTPS://A.EXAMPLE.COM",
        "https://A.Example.Com:443",
        "https://1.example.com",
    ] {
        assert!(p.matches(&origin(yes)), "{yes}");
    }
    for no in [
        "https://example.com",
        "https://example.com.evil.net",
        "https://a.example.com.evil.net",
        "https://evil-example.com",
        "https://aexample.com",
        "https://a.example.co",
        "https://a.example.comm",
        "https://example.net",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a.example.com:80",
        "http://[::1]",
        "https://127.0.0.1",
    ] {
        assert!(!p.matches(&origin(no)), "{no}");
    }
    // Malformed lookalikes are refused before any matching.
    for bad in ["https://.example.com", "https://a..example.com", "https://example.com."] {
        assert!(refused(bad), "{bad}");
    }
}

#[test]
fn wildcard_ports_and_schemes() {
    let p = pattern("https://*.example.com:8443");
    assert_eq!(p.as_str(), "https://*.example.com:8443");
    assert!(p.matches(&origin("https://a.example.com:8443")));
    assert!(!p.matches(&origin("https://a.example.com")));
    assert!(!p.matches(&origin("https://a.example.com:443")));
    assert!(!p.matches(&origin("http://a.example.com:8443")));
    assert!(!p.matches(&origin("https://example.com:8443")));

    let p = pattern("HTTPS://*.Example.COM:443");
    assert_eq!(p.as_str(), "https://*.example.com");
    assert!(p.matches(&origin("https://a.example.com")));

    let p = pattern("http://*.example.com");
    assert!(p.matches(&origin("http://a.example.com:80")));
    assert!(!p.matches(&origin("https://a.example.com")));
    assert!(!p.matches(&origin("http://a.example.com:8080")));

    assert!(pattern("http://*.dev.localhost:3000").matches(&origin("http://app.dev.localhost:3000")));
}

#[test]
fn misplaced_wildcards_are_refused() {
    for bad in [
        "https://a*.example.com",
        "https://*a.example.com",
        "https://*x.com",
        "https://a.*.example.com",
        "https://example.*",
        "https://*.*.example.com",
        "https://*.example.*",
        "https://**.example.com",
        "*://example.com",
        "*://*.example.com",
        "http*://example.com",
        "https://example.com:*",
        "https://*.example.com:*",
    ] {
        assert!(pattern_err(bad).contains("wildcard"), "{bad}");
    }
    assert!(pattern_err("https://*.com").contains("two labels"));
    assert!(pattern_err("https://*.localhost").contains("two labels"));
    assert!(pattern_err("https://*.0.0.1").contains("dotted-quad"));
    assert!(pattern_err("https://*.1.2.3.4").contains("IP address"));
    assert!(pattern_err("https://*.[::1]").contains("IP address"));
    // The base must itself be a valid origin.
    assert!(pattern_err("https://*.").contains("empty"));
    assert!(pattern_err("https://*").contains("wildcard"));
    assert!(pattern_err("https://*.example.com/").contains("path"));
    assert!(pattern_err("https://*..example.com").contains("empty label"));
    assert!(pattern_err("https://*.example.com.").contains("empty label"));
    assert!(pattern_err("ftp://*.example.com").contains("scheme"));
}

#[test]
fn pattern_refusals() {
    assert!(pattern_err("*").contains("*"));
    assert!(pattern_err("null").contains("null"));
    assert!(pattern_err("NULL").contains("null"));
    assert!(pattern_err("").contains("not of the form"));
    assert!(pattern_err("example.com").contains("not of the form"));
    assert!(pattern_err("https://example.com/").contains("path"));
    assert!(pattern_err("https://example.com:0").contains("port"));
    assert!(pattern_err("https://example.com:65536").contains("port"));
    assert!(pattern_err("https://user@example.com").contains("userinfo"));
    assert!(pattern_err("https://example.com ").contains("whitespace"));
    assert!(pattern_err("https://exa_mple.com").contains("character"));
}

#[test]
fn origin_lists() {
    let list = OriginList::parse(&[
        "https://app.example.com".to_owned(),
        "https://*.preview.example.com".to_owned(),
        "http://localhost:3000".to_owned(),
    ])
    .unwrap();
    assert!(!list.is_empty());
    assert_eq!(list.patterns().len(), 3);
    assert!(list.matches(&origin("https://app.example.com")));
    assert!(list.matches(&origin("https://pr-1.preview.example.com")));
    assert!(list.matches(&origin("http://localhost:3000")));
    assert!(!list.matches(&origin("https://preview.example.com")));
    assert!(!list.matches(&origin("https://other.example.com")));
    assert!(!list.matches(&origin("http://localhost:3001")));

    let empty = OriginList::parse(&[]).unwrap();
    assert!(empty.is_empty());
    assert!(!empty.matches(&origin("https://app.example.com")));
    assert_eq!(OriginList::default(), empty);

    let (i, e) = OriginList::parse(&[
        "https://ok.example.com".to_owned(),
        "https://*.com".to_owned(),
        "*".to_owned(),
    ])
    .unwrap_err();
    assert_eq!(i, 1);
    assert!(e.contains("two labels"), "{e}");
}

#[test]
fn preflight_detection() {
    assert!(is_preflight("OPTIONS", Some("https://a.example.com"), Some("POST")));
    assert!(is_preflight("OPTIONS", Some("null"), Some("PUT")));
    assert!(!is_preflight("OPTIONS", None, Some("POST")));
    assert!(!is_preflight("OPTIONS", Some("https://a.example.com"), None));
    assert!(!is_preflight("OPTIONS", None, None));
    assert!(!is_preflight("options", Some("https://a.example.com"), Some("POST")));
    assert!(!is_preflight("POST", Some("https://a.example.com"), Some("POST")));
    assert!(!is_preflight("GET", Some("https://a.example.com"), Some("GET")));
}

#[test]
fn allowed_methods_are_case_sensitive_and_listed() {
    let c = cors();
    assert!(c.allows_method("GET"));
    assert!(c.allows_method("DELETE"));
    assert!(!c.allows_method("delete"));
    assert!(!c.allows_method("Delete"));
    assert!(!c.allows_method("PUT"));
    assert!(!c.allows_method("HEAD"));
    assert!(!c.allows_method(""));
    let none = Cors::default();
    for simple in ["GET", "HEAD", "POST"] {
        assert!(!none.allows_method(simple), "{simple}");
    }
}

#[test]
fn preflight_headers_echo_the_origin() {
    let h = cors().preflight_headers("https://app.example.com");
    assert_eq!(
        h,
        vec![
            ("access-control-allow-origin", "https://app.example.com".to_owned()),
            ("vary", "origin".to_owned()),
            ("access-control-allow-methods", "GET, POST, DELETE".to_owned()),
            ("access-control-allow-headers", "authorization, content-type".to_owned()),
            ("access-control-max-age", "600".to_owned()),
            ("access-control-allow-credentials", "true".to_owned()),
        ]
    );
    // The origin is echoed exactly as sent, not normalised.
    let h = cors().preflight_headers("https://app.example.com:8443");
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://app.example.com:8443")
    );
    let h = cors().preflight_headers("HTTPS://App.Example.com:443");
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("HTTPS://App.Example.com:443")
    );
}

#[test]
fn preflight_headers_without_credentials_or_lists() {
    let c = Cors {
        max_age_s: 0,
        ..Cors::default()
    };
    let h = c.preflight_headers("http://localhost:3000");
    assert_eq!(get(&h, "access-control-allow-origin"), Some("http://localhost:3000"));
    assert_eq!(get(&h, "vary"), Some("origin"));
    assert_eq!(get(&h, "access-control-max-age"), Some("0"));
    assert_eq!(get(&h, "access-control-allow-credentials"), None);
    assert_eq!(get(&h, "access-control-allow-methods"), None);
    assert_eq!(get(&h, "access-control-allow-headers"), None);
}

#[test]
fn response_headers() {
    let h = cors().response_headers("https://app.example.com");
    assert_eq!(
        h,
        vec![
            ("access-control-allow-origin", "https://app.example.com".to_owned()),
            ("vary", "origin".to_owned()),
            ("access-control-allow-credentials", "true".to_owned()),
            ("access-control-expose-headers", "x-request-id".to_owned()),
        ]
    );
    let c = Cors {
        allow_credentials: false,
        expose_headers: vec![],
        ..cors()
    };
    assert_eq!(
        c.response_headers("https://app.example.com"),
        vec![
            ("access-control-allow-origin", "https://app.example.com".to_owned()),
            ("vary", "origin".to_owned()),
        ]
    );
}

#[test]
fn never_star_and_always_header_safe() {
    let c = Cors {
        allow_methods: vec!["GET".into(), "BAD\r\nX: y".into(), String::new()],
        allow_headers: vec!["x-ok".into(), "x bad".into(), "x\u{e9}".into()],
        expose_headers: vec!["x-id,\nset-cookie: a".into()],
        ..cors()
    };
    for bad in [
        "*",
        "null",
        "",
        "https://a.example.com\r\nset-cookie: x=1",
        "https://a.example.com/",
        "https://*.example.com",
    ] {
        for h in [c.preflight_headers(bad), c.response_headers(bad)] {
            assert_eq!(h, vec![("vary", "origin".to_owned())], "{bad:?}");
        }
    }
    for h in [
        c.preflight_headers("https://a.example.com"),
        c.response_headers("https://a.example.com"),
    ] {
        assert_eq!(get(&h, "vary"), Some("origin"));
        for (name, value) in &h {
            assert_ne!(value, "*", "{name}");
            assert!(value.bytes().all(|b| (b' '..0x7f).contains(&b)), "{name}: {value:?}");
        }
    }
    let h = c.preflight_headers("https://a.example.com");
    assert_eq!(get(&h, "access-control-allow-methods"), Some("GET"));
    assert_eq!(get(&h, "access-control-allow-headers"), Some("x-ok"));
    assert_eq!(
        get(
            &c.response_headers("https://a.example.com"),
            "access-control-expose-headers"
        ),
        None
    );
}

#[test]
fn tokens() {
    for ok in ["GET", "x-custom", "a.b_c~d!#$%&'*+^`|", "0"] {
        assert!(is_token(ok), "{ok}");
    }
    for bad in ["", "a b", "a,b", "a:b", "a\r", "a\"", "é", "(a)", "a/b", "a;b", "a=b"] {
        assert!(!is_token(bad), "{bad:?}");
    }
}
