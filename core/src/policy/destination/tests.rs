use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn host(raw: &str) -> Host {
    match Authority::parse(raw) {
        Ok(a) => a.host,
        Err(e) => panic!("{raw:?} refused: {e:?}"),
    }
}

fn name(n: &str) -> Host {
    Host::Name(n.into())
}

fn pattern(s: &str) -> HostPattern {
    match HostPattern::parse(s) {
        Ok(p) => p,
        Err(m) => panic!("{s:?} refused: {m}"),
    }
}

#[test]
fn authorities_normalise_to_one_host() {
    assert_eq!(host("api.example.com"), name("api.example.com"));
    assert_eq!(host("API.Example.COM"), name("api.example.com"));
    assert_eq!(host("api.example.com:8443"), name("api.example.com"));
    assert_eq!(host("api.example.com."), name("api.example.com"));
    assert_eq!(host("api.example.com.:80"), name("api.example.com"));
    assert_eq!(host("localhost"), name("localhost"));
    assert_eq!(host("under_score.example"), name("under_score.example"));
    assert_eq!(host("127.0.0.1:10000"), Host::Ip("127.0.0.1".parse().unwrap()));
    assert_eq!(host("[::1]:10000"), Host::Ip("::1".parse().unwrap()));
    assert_eq!(
        host("[2001:DB8:0:0::1]"),
        Host::Ip("2001:db8::1".parse().unwrap()),
        "IPv6 compared as addresses"
    );
    assert_eq!(Authority::parse("a.example:0").map(|a| a.port), Ok(Some(0)));
    assert_eq!(
        Authority::parse("a.example:065535").map(|a| a.port),
        Err(AuthorityError::BadPort)
    );
}

#[test]
fn hostile_authorities_are_refused() {
    use AuthorityError::*;
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}.com", "abcdefghi.".repeat(25));
    let too_long = "a".repeat(MAX_AUTHORITY_BYTES + 1);
    let cases: &[(&str, AuthorityError)] = &[
        ("", Missing),
        ("user@api.example.com", Userinfo),
        ("user:pw@api.example.com", Userinfo),
        ("api.example.com@evil.example", Userinfo),
        ("@api.example.com", Userinfo),
        ("api.example.com:", BadPort),
        ("api.example.com:http", BadPort),
        ("api.example.com:65536", BadPort),
        ("api.example.com:+80", BadPort),
        ("api.example.com: 80", BadPort),
        ("api.example.com:80:80", BadHost),
        ("::1", BadHost),
        ("::1:80", BadHost),
        ("[::1", BadHost),
        ("[::1]x", BadHost),
        ("[::1]:", BadPort),
        ("[fe80::1%25eth0]", BadHost),
        ("[fe80::1%eth0]", BadHost),
        ("[v1.abc]", BadHost),
        ("[127.0.0.1]", BadHost),
        (".", BadHost),
        ("..", BadHost),
        ("api.example.com..", BadHost),
        ("api..example.com", BadHost),
        (".api.example.com", BadHost),
        (":80", BadHost),
        ("api example.com", BadHost),
        ("api.example.com\t", BadHost),
        ("api.example.com/x", BadHost),
        ("api.example.com\\x", BadHost),
        ("api.example.com?x", BadHost),
        ("api.example.com#x", BadHost),
        ("api%2eexample.com", BadHost),
        ("café.example", BadHost),
        ("api.example.com\u{fffd}", BadHost),
        ("api.example.com\0", BadHost),
        ("*.example.com", BadHost),
        ("127.1", BadHost),
        ("127.0.0.01", BadHost),
        ("010.0.0.1", BadHost),
        ("0x7f.0.0.1", BadHost),
        ("1.2.3.0x4", BadHost),
        ("4294967295", BadHost),
        ("1.2.3.4.5", BadHost),
        ("example.123", BadHost),
        (&long_label, BadHost),
        (&long_name, TooLong),
        (&too_long, TooLong),
    ];
    for (raw, want) in cases {
        assert_eq!(Authority::parse(raw), Err(*want), "{raw:?}");
    }
    // a punycode name (the form a client sends for an IDN) is an ordinary name
    assert_eq!(host("xn--caf-dma.example"), name("xn--caf-dma.example"));
    // a name whose last label only starts with a digit is a name
    assert_eq!(host("example.1a"), name("example.1a"));
}

#[test]
fn one_authority_or_a_conflict() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(request_host(&s(&["a.example"]), &[]), Ok(name("a.example")));
    assert_eq!(
        request_host(&s(&["a.example"]), &s(&["A.EXAMPLE"])),
        Ok(name("a.example"))
    );
    assert_eq!(request_host(&[], &s(&["a.example:80"])), Ok(name("a.example")));
    assert_eq!(request_host(&[], &[]), Err(AuthorityError::Missing));
    assert_eq!(request_host(&s(&[""]), &[]), Err(AuthorityError::Missing));
    assert_eq!(
        request_host(&s(&["a.example", "a.example"]), &[]),
        Err(AuthorityError::Conflicting),
        "a duplicated :authority is refused even when the copies agree"
    );
    assert_eq!(
        request_host(&s(&["a.example"]), &s(&["b.example"])),
        Err(AuthorityError::Conflicting)
    );
    assert_eq!(
        request_host(&s(&["a.example"]), &s(&["a.example:8080"])),
        Err(AuthorityError::Conflicting),
        "a host header must be the same text"
    );
    assert_eq!(
        request_host(&[], &s(&["a.example", "b.example"])),
        Err(AuthorityError::Conflicting)
    );
}

#[test]
fn wildcards_stand_for_one_label_or_more() {
    let p = pattern("*.example.com");
    assert!(p.matches(&host("a.example.com")));
    assert!(p.matches(&host("A.b.Example.com.:443")));
    assert!(!p.matches(&host("example.com")), "the bare name is not covered");
    assert!(
        !p.matches(&host("badexample.com")),
        "the suffix is matched at a label boundary"
    );
    assert!(!p.matches(&host("a.example.com.evil")));
    assert!(!p.matches(&host("127.0.0.1")));
    let e = pattern("Api.Example.com");
    assert!(e.matches(&host("api.example.com:10000")));
    assert!(!e.matches(&host("x.api.example.com")));
    assert!(pattern("[::1]").matches(&host("[0:0::1]:80")));
    assert!(pattern("127.0.0.1").matches(&host("127.0.0.1:1")));
    assert!(!pattern("127.0.0.1").matches(&host("[::ffff:127.0.0.1]")));
}

#[test]
fn bad_patterns_are_refused() {
    for bad in [
        "",
        "*",
        "*.",
        "**.example.com",
        "*.*.example.com",
        "a.*.example.com",
        "*example.com",
        "api*.example.com",
        "*.127.0.0.1",
        "*.example.com.",
        "example.com.",
        "example.com:443",
        "[::1]:443",
        "user@example.com",
        "127.1",
        "a..example",
        "exa mple.com",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn every_condition_must_hold() {
    let mut needs = Needs::default();
    let i = needs.metadata_index(MetadataKey {
        filter: "edge_auth".into(),
        key: "policy".into(),
    });
    assert_eq!(
        needs.metadata_index(MetadataKey {
            filter: "edge_auth".into(),
            key: "policy".into()
        }),
        i,
        "one key is read once"
    );
    let m = DestinationMatch {
        hosts: Some(vec![pattern("*.example.com")]),
        route_name: Some("admin".into()),
        route_metadata: Some((i, "strict".into())),
    };
    let d = Destination {
        host: Some(host("a.example.com")),
        route_name: Some("admin".into()),
        metadata: vec![Some("strict".into())],
    };
    assert!(m.matches(&d));
    assert!(!m.matches(&Destination {
        host: Some(host("a.example.org")),
        ..d.clone()
    }));
    assert!(!m.matches(&Destination {
        route_name: Some("Admin".into()),
        ..d.clone()
    }));
    assert!(!m.matches(&Destination {
        route_name: None,
        ..d.clone()
    }));
    assert!(!m.matches(&Destination {
        metadata: vec![None],
        ..d.clone()
    }));
    assert!(!m.matches(&Destination {
        metadata: vec![],
        ..d.clone()
    }));
    assert!(!m.matches(&Destination {
        host: None,
        ..d.clone()
    }));
    assert!(DestinationMatch::default().matches(&Destination::default()));
}
