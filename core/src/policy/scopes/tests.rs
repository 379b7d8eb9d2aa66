use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Map};

fn role(includes: &[&str], permissions: &[&str]) -> RoleDef {
    RoleDef {
        includes: includes.iter().map(|s| s.to_string()).collect(),
        permissions: permissions.iter().map(|s| s.to_string()).collect(),
    }
}

fn compile(defs: &[(&str, RoleDef)]) -> Result<RoleHierarchy, (String, String)> {
    let defs: Vec<(String, RoleDef)> = defs.iter().map(|(n, d)| (n.to_string(), d.clone())).collect();
    RoleHierarchy::compile(&defs)
}

fn perms<'a>(h: &'a RoleHierarchy, role: &str) -> Vec<&'a str> {
    h.permissions(role).unwrap().iter().map(String::as_str).collect()
}

fn hierarchy() -> RoleHierarchy {
    compile(&[
        ("admin", role(&["user"], &["users:write", "billing:read"])),
        ("user", role(&["viewer"], &["docs:write"])),
        ("viewer", role(&[], &["docs:read"])),
    ])
    .unwrap()
}

fn source(scope_claims: &[&str], role_claim: Option<&str>) -> ScopeSource {
    ScopeSource {
        scope_claims: scope_claims.iter().map(|s| ClaimPath::top(s)).collect(),
        role_claim: role_claim.map(ClaimPath::top),
    }
}

fn grants_with(claims: Value, src: &ScopeSource, roles: &RoleHierarchy) -> Grants {
    let map: Map<String, Value> = claims.as_object().unwrap().clone();
    Grants::from_claim_values(|p| p.lookup(&map), src, roles)
}

fn grants(claims: Value) -> Grants {
    grants_with(
        claims,
        &source(&["scope", "scp", "permissions"], Some("roles")),
        &hierarchy(),
    )
}

fn list(g: &Grants) -> Vec<&str> {
    g.iter().collect()
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn flattens_transitively() {
    let h = hierarchy();
    assert_eq!(perms(&h, "viewer"), ["docs:read"]);
    assert_eq!(perms(&h, "user"), ["docs:read", "docs:write"]);
    assert_eq!(
        perms(&h, "admin"),
        ["billing:read", "docs:read", "docs:write", "users:write"]
    );
    assert_eq!(h.permissions("nobody"), None);
    assert_eq!(h.len(), 3);
}

#[test]
fn definition_order_does_not_matter() {
    let h = compile(&[
        ("viewer", role(&[], &["docs:read"])),
        ("admin", role(&["user"], &["users:write"])),
        ("user", role(&["viewer"], &[])),
    ])
    .unwrap();
    assert_eq!(perms(&h, "admin"), ["docs:read", "users:write"]);
    assert_eq!(perms(&h, "user"), ["docs:read"]);
}

#[test]
fn diamond_includes_dedupe() {
    let h = compile(&[
        ("top", role(&["left", "right", "left"], &["shared"])),
        ("left", role(&["base"], &["l", "shared"])),
        ("right", role(&["base"], &["r"])),
        ("base", role(&[], &["b", "b"])),
    ])
    .unwrap();
    assert_eq!(perms(&h, "top"), ["b", "l", "r", "shared"]);
    assert_eq!(perms(&h, "base"), ["b"]);
}

#[test]
fn role_without_permissions() {
    let h = compile(&[("empty", RoleDef::default())]).unwrap();
    assert_eq!(h.permissions("empty"), Some(&[][..]));
    assert!(RoleHierarchy::default().is_empty());
    assert!(compile(&[]).unwrap().is_empty());
}

#[test]
fn cycles_are_named() {
    let err = compile(&[("admin", role(&["ops"], &[])), ("ops", role(&["admin"], &[]))]).unwrap_err();
    assert_eq!(err, ("admin".into(), "include cycle: admin -> ops -> admin".into()));

    let err = compile(&[("me", role(&["me"], &["x"]))]).unwrap_err();
    assert_eq!(err, ("me".into(), "include cycle: me -> me".into()));

    // The cycle is named from where it closes, not from where the walk started.
    let err = compile(&[
        ("root", role(&["a"], &[])),
        ("a", role(&["b"], &[])),
        ("b", role(&["c"], &[])),
        ("c", role(&["a"], &[])),
    ])
    .unwrap_err();
    assert_eq!(err, ("a".into(), "include cycle: a -> b -> c -> a".into()));
}

#[test]
fn undefined_include() {
    let err = compile(&[("admin", role(&["ghost"], &[]))]).unwrap_err();
    assert_eq!(err, ("admin".into(), "includes undefined role \"ghost\"".into()));
    let err = compile(&[("admin", role(&[""], &[]))]).unwrap_err();
    assert_eq!(err, ("admin".into(), "includes an empty role name".into()));
}

#[test]
fn bad_names_and_permissions() {
    assert_eq!(compile(&[("", role(&[], &[]))]).unwrap_err().1, "empty role name");
    for bad in ["has space", "tab\there", "nl\n", "nbsp\u{a0}x", "ctl\u{7f}"] {
        let err = compile(&[(bad, role(&[], &[]))]).unwrap_err();
        assert_eq!(
            err,
            (bad.into(), "role name contains whitespace or control characters".into())
        );
    }
    let long = "r".repeat(MAX_NAME_BYTES + 1);
    assert!(compile(&[(&long, role(&[], &[]))])
        .unwrap_err()
        .1
        .contains("longer than"));
    assert!(compile(&[("rôle", role(&[], &[]))]).is_ok());

    let err = compile(&[("a", role(&[], &["ok", ""]))]).unwrap_err();
    assert_eq!(err, ("a".into(), "invalid permission \"\": empty".into()));
    for bad in ["two words", "q\"uote", "back\\slash", "tab\t", "é"] {
        let err = compile(&[("a", role(&[], &[bad]))]).unwrap_err();
        assert!(err.1.starts_with("invalid permission"), "{bad:?}: {err:?}");
    }

    let err = compile(&[("a", role(&[], &[])), ("a", role(&[], &[]))]).unwrap_err();
    assert_eq!(err, ("a".into(), "role defined twice".into()));
}

#[test]
fn role_limit() {
    let defs: Vec<(String, RoleDef)> = (0..MAX_ROLES).map(|i| (format!("r{i}"), RoleDef::default())).collect();
    assert_eq!(RoleHierarchy::compile(&defs).unwrap().len(), MAX_ROLES);
    let mut defs = defs;
    defs.push(("extra".into(), RoleDef::default()));
    let err = RoleHierarchy::compile(&defs).unwrap_err();
    assert_eq!(err, ("extra".into(), "more than 256 roles defined".into()));
}

#[test]
fn permission_limit_after_flattening() {
    let half = |tag: &str, n: usize| RoleDef {
        includes: vec![],
        permissions: (0..n).map(|i| format!("{tag}{i}")).collect(),
    };
    let ok = RoleHierarchy::compile(&[
        ("a".into(), half("a", 512)),
        ("b".into(), half("b", 512)),
        ("both".into(), role(&["a", "b"], &[])),
    ])
    .unwrap();
    assert_eq!(ok.permissions("both").unwrap().len(), MAX_ROLE_PERMISSIONS);

    let err = RoleHierarchy::compile(&[
        ("a".into(), half("a", 512)),
        ("b".into(), half("b", 512)),
        ("both".into(), role(&["a", "b"], &["one-more"])),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        ("both".into(), "more than 1024 permissions after flattening".into())
    );

    // Duplicates count once.
    let mut dup = half("a", 1024);
    dup.permissions.extend(dup.permissions.clone());
    assert!(RoleHierarchy::compile(&[("a".into(), dup)]).is_ok());
    assert!(RoleHierarchy::compile(&[("a".into(), half("a", 1025))]).is_err());
}

#[test]
fn scope_string() {
    let g = grants(json!({"scope": "read write  admin:all "}));
    assert_eq!(list(&g), ["admin:all", "read", "write"]);
    assert!(g.contains("read"));
    assert!(!g.contains("rea"));
    assert!(!g.contains(""));
    assert_eq!(g.len(), 3);
}

#[test]
fn scp_and_permissions_arrays() {
    assert_eq!(list(&grants(json!({"scp": ["b", "a", "a"]}))), ["a", "b"]);
    let g = grants(json!({"permissions": ["read:messages", "write:messages"]}));
    assert_eq!(list(&g), ["read:messages", "write:messages"]);
    // An array item is one scope, never split.
    assert!(grants(json!({"scp": ["a b"]})).is_empty());
}

#[test]
fn several_claims_merge() {
    let g = grants(json!({"scope": "a c", "scp": ["b", "c"], "permissions": ["d"], "other": "x"}));
    assert_eq!(list(&g), ["a", "b", "c", "d"]);
    // Only the configured claims count.
    let g = grants_with(
        json!({"scope": "a", "scp": ["b"]}),
        &source(&["scp"], None),
        &hierarchy(),
    );
    assert_eq!(list(&g), ["b"]);
}

#[test]
fn roles_string_array_and_unknown() {
    assert_eq!(list(&grants(json!({"roles": "viewer"}))), ["docs:read"]);
    assert_eq!(
        list(&grants(json!({"roles": ["viewer", "user"]}))),
        ["docs:read", "docs:write"]
    );
    assert_eq!(list(&grants(json!({"roles": ["ghost", "viewer"]}))), ["docs:read"]);
    assert!(grants(json!({"roles": "ghost"})).is_empty());
    // A role string is one name, not a list.
    assert!(grants(json!({"roles": "viewer user"})).is_empty());
    // No role claim configured: roles grant nothing.
    let g = grants_with(json!({"roles": "admin"}), &source(&["scope"], None), &hierarchy());
    assert!(g.is_empty());
    // The role claim is not a scope claim.
    let g = grants_with(
        json!({"roles": "admin"}),
        &source(&[], Some("roles")),
        &RoleHierarchy::default(),
    );
    assert!(g.is_empty());
}

#[test]
fn roles_and_scopes_merge() {
    let g = grants(json!({"scope": "docs:read extra", "roles": ["admin"]}));
    assert_eq!(
        list(&g),
        ["billing:read", "docs:read", "docs:write", "extra", "users:write"]
    );
}

#[test]
fn hostile_scope_strings() {
    // Tabs and newlines are no separators: the item holding them is dropped.
    let g = grants(json!({"scope": "a\tb c\nd e\r f"}));
    assert_eq!(list(&g), ["f"]);
    let g = grants(json!({"scope": "ok \"quoted\" back\\slash caf\u{e9} nul\u{0}"}));
    assert_eq!(list(&g), ["ok"]);
    let g = grants(json!({"scp": ["x\ty", "\"", "", "fine"]}));
    assert_eq!(list(&g), ["fine"]);
    let long = "s".repeat(MAX_NAME_BYTES + 1);
    let edge = "s".repeat(MAX_NAME_BYTES);
    let g = grants(json!({"scope": format!("{long} {edge}")}));
    assert_eq!(list(&g), [edge.as_str()]);
    assert!(grants(json!({"scope": " ".repeat(100_000)})).is_empty());
}

#[test]
fn hostile_types_are_ignored() {
    let g = grants(json!({
        "scope": 42,
        "scp": [1, null, true, {"a": "b"}, ["nested"], "kept", 2.5],
        "permissions": {"read": true},
        "roles": [{"name": "admin"}, ["admin"], 7, "viewer"]
    }));
    assert_eq!(list(&g), ["docs:read", "kept"]);
    assert!(grants(json!({"scope": null, "scp": {"x": 1}, "roles": 1})).is_empty());
    assert!(grants(json!({"roles": {"admin": true}})).is_empty());
}

#[test]
fn scope_count_is_bounded() {
    let many: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
    let g = grants(json!({"scope": many.join(" ")}));
    assert_eq!(g.len(), MAX_TOKEN_ITEMS);
    assert!(g.contains("s0") && g.contains("s255") && !g.contains("s256"));
    // The bound is across all scope claims.
    let g = grants(json!({"scope": many[..200].join(" "), "scp": many[200..500].to_vec(), "permissions": ["z"]}));
    assert_eq!(g.len(), 256);
    assert!(g.contains("s255") && !g.contains("s256") && !g.contains("z"));
    // Invalid items do not use up the budget.
    let junk = vec!["bad\titem"; 1000].join(" ");
    assert_eq!(list(&grants(json!({"scope": format!("{junk} good")}))), ["good"]);
    // Many roles: each is looked up once, at most MAX_TOKEN_ITEMS taken.
    let roles: Vec<&str> = std::iter::repeat_n("ghost", 10_000).chain(["admin"]).collect();
    assert!(grants(json!({"roles": roles})).is_empty());
    let roles: Vec<&str> = std::iter::repeat_n("admin", 10_000).collect();
    assert_eq!(grants(json!({"roles": roles})).len(), 4);
}

#[test]
fn from_claims_reads_a_token() {
    let enc = |v: Value| crate::b64::encode_url(v.to_string().as_bytes());
    let token = format!(
        "{}.{}.{}",
        enc(json!({"alg": "HS256"})),
        enc(json!({"scope": "a b", "roles": ["viewer"]})),
        crate::b64::encode_url(b"sig")
    );
    let claims = crate::jwt::inspect(&token, 8192).unwrap().claims;
    let g = Grants::from_claims(&claims, &source(&["scope"], Some("roles")), &hierarchy());
    assert_eq!(list(&g), ["a", "b", "docs:read"]);
}

#[test]
fn requirements() {
    let g = grants(json!({"scope": "a b"}));
    let any = |s: &[&str]| ScopeRequirement::AnyOf(strings(s));
    let all = |s: &[&str]| ScopeRequirement::AllOf(strings(s));
    assert!(any(&["x", "b"]).is_met(&g));
    assert!(!any(&["x", "y"]).is_met(&g));
    assert!(all(&["a", "b"]).is_met(&g));
    assert!(!all(&["a", "x"]).is_met(&g));
    assert!(!any(&[]).is_met(&g));
    assert!(all(&[]).is_met(&g));

    let none = Grants::default();
    assert!(!any(&["a"]).is_met(&none));
    assert!(!all(&["a"]).is_met(&none));
    assert!(all(&[]).is_met(&none));

    // Role permissions satisfy requirements too.
    let g = grants(json!({"roles": "admin"}));
    assert!(all(&["docs:read", "users:write"]).is_met(&g));
}

#[test]
fn scope_param_lists_everything_required() {
    let all = ScopeRequirement::AllOf(strings(&["docs:read", "docs:write", "docs:read"]));
    assert_eq!(all.scope_param(), "docs:read docs:write");
    let any = ScopeRequirement::AnyOf(strings(&["b", "a"]));
    assert_eq!(any.scope_param(), "b a");
    assert_eq!(ScopeRequirement::AllOf(vec![]).scope_param(), "");
    // Nothing that could break the header's quoting gets through.
    let bad = ScopeRequirement::AnyOf(strings(&["ok", "x\"y", "a\\b", "two words", ""]));
    assert_eq!(bad.scope_param(), "ok");
}

#[test]
fn scope_tokens() {
    for ok in [
        "a",
        "read:messages",
        "https://api.example.com/read",
        "!#[]~",
        &"x".repeat(256),
    ] {
        assert!(valid_scope_token(ok), "{ok:?}");
    }
    for bad in [
        "",
        " ",
        "a b",
        "a\"b",
        "a\\b",
        "a\tb",
        "a\nb",
        "\u{7f}",
        "é",
        "\0",
        &"x".repeat(257),
    ] {
        assert!(!valid_scope_token(bad), "{bad:?}");
    }
}
