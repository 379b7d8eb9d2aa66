use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

fn dotted(s: &str) -> Result<ClaimPath, String> {
    ClaimPath::compile(&RawClaimPath::Dotted(s.into()))
}

fn segs(list: &[&str]) -> Result<ClaimPath, String> {
    ClaimPath::compile(&RawClaimPath::Segments(list.iter().map(|s| s.to_string()).collect()))
}

#[test]
fn dotted_strings_split_and_escapes_keep_dots_in_names() {
    assert_eq!(dotted("sub").unwrap().segments(), ["sub"]);
    assert_eq!(
        dotted("realm_access.roles").unwrap().segments(),
        ["realm_access", "roles"]
    );
    assert_eq!(
        dotted("resource_access.my-app.roles").unwrap().segments(),
        ["resource_access", "my-app", "roles"]
    );
    assert_eq!(
        dotted(r"https://example\.com/claims.tenant").unwrap().segments(),
        ["https://example.com/claims", "tenant"]
    );
    assert_eq!(dotted(r"a\\b.c").unwrap().segments(), [r"a\b", "c"]);
    assert_eq!(dotted(r"a\.b").unwrap().segments(), ["a.b"]);
    // a name with :// and no unescaped dot is one segment, as before
    assert_eq!(
        dotted("https://example/roles").unwrap().segments(),
        ["https://example/roles"]
    );
}

#[test]
fn arrays_are_literal_segments() {
    let p = segs(&["https://example.com/claims", "tenant"]).unwrap();
    assert_eq!(p.segments(), ["https://example.com/claims", "tenant"]);
    assert_eq!(p.to_string(), r"https://example\.com/claims.tenant");
    assert_eq!(segs(&[r"a\.b"]).unwrap().segments(), [r"a\.b"]);
    // the string form of a path compiles back to the same path
    for p in [p, segs(&[r"x\y", "a.b", "c"]).unwrap()] {
        assert_eq!(dotted(&p.to_string()).unwrap(), p);
    }
}

#[test]
fn malformed_paths_are_refused() {
    for bad in [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        r"a\",
        r"a\b",
        r"a\n",
        r"a\u002e",
        "https://example.com/roles",
        "https://example.com/claims.tenant",
        "a\u{7}b",
    ] {
        assert!(dotted(bad).is_err(), "{bad:?}");
    }
    assert!(segs(&[]).is_err());
    assert!(segs(&["a", ""]).is_err());
    assert!(segs(&["a\nb"]).is_err());
    assert!(segs(&["a"; MAX_SEGMENTS + 1]).is_err());
    assert!(segs(&["a"; MAX_SEGMENTS]).is_ok());
    assert!(dotted(&"x".repeat(MAX_PATH_BYTES + 1)).is_err());
    assert!(dotted(&"x".repeat(MAX_PATH_BYTES)).is_ok());
}

#[test]
fn lookup_walks_objects_only() {
    let claims = json!({
        "sub": "alice",
        "a.b": "literal",
        "a": {"b": "nested", "list": [{"c": 1}]},
        "realm_access": {"roles": ["admin", "viewer"]},
        "https://example.com/claims": {"tenant": "acme"},
        "s": "not an object",
    });
    let claims = claims.as_object().unwrap();
    let at = |p: ClaimPath| p.lookup(claims).cloned();
    assert_eq!(at(dotted("sub").unwrap()), Some(json!("alice")));
    assert_eq!(at(dotted("a.b").unwrap()), Some(json!("nested")));
    assert_eq!(at(dotted(r"a\.b").unwrap()), Some(json!("literal")));
    assert_eq!(
        at(dotted("realm_access.roles").unwrap()),
        Some(json!(["admin", "viewer"]))
    );
    assert_eq!(
        at(segs(&["https://example.com/claims", "tenant"]).unwrap()),
        Some(json!("acme"))
    );
    // no indexing into arrays, no walking through strings, nothing past a missing key
    assert_eq!(at(dotted("a.list.0.c").unwrap()), None);
    assert_eq!(at(dotted("a.list.c").unwrap()), None);
    assert_eq!(at(dotted("s.x").unwrap()), None);
    assert_eq!(at(dotted("missing.x").unwrap()), None);
    assert_eq!(at(dotted("a.missing").unwrap()), None);
    assert_eq!(at(ClaimPath::top("a.b")), Some(json!("literal")));
}
