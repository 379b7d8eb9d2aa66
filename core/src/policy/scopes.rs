//! What a verified token may do, and what a route requires.
//!
//! A token's [`Grants`] are its scopes (from the provider's scope claims) plus
//! the permissions of its roles, flattened through the configured
//! [`RoleHierarchy`]. A route's [`ScopeRequirement`] is met when the grants
//! hold any or all of its scopes. Claims are hostile input: only valid scope
//! tokens are taken, and the work is bounded whatever their size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// The longest scope, permission or role name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The most roles a hierarchy may define.
pub const MAX_ROLES: usize = 256;
/// The most permissions one role may hold after flattening.
pub const MAX_ROLE_PERMISSIONS: usize = 1024;
/// The most scopes, and separately the most role names, taken from one token.
pub const MAX_TOKEN_ITEMS: usize = 256;

/// Whether `s` is a scope-token (RFC 6749 section 3.3): printable ASCII other
/// than space, `"` and `\`, non-empty and at most [`MAX_NAME_BYTES`] bytes.
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Whether `s` can name a role: non-empty, at most [`MAX_NAME_BYTES`] bytes,
/// no whitespace or control characters (any other Unicode is allowed).
fn valid_role_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// One role as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleDef {
    /// Roles whose permissions this role also grants.
    pub includes: Vec<String>,
    /// Permissions this role grants itself; each must be a valid scope token.
    pub permissions: Vec<String>,
}

/// The role hierarchy from configuration: each role includes other roles and grants permissions.
///
/// Compiled once: every role's permission set is flattened (its own + those of
/// every role it includes, transitively), sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleHierarchy {
    roles: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    Done,
}

impl RoleHierarchy {
    /// Validates and flattens `defs`.
    ///
    /// Errors are `(role name, message)`, for the first problem in definition
    /// order: more than [`MAX_ROLES`] roles, a role defined twice, a role name
    /// that is empty, too long or holds whitespace or control characters, a
    /// permission that is not a [valid scope token](valid_scope_token), an
    /// include of an undefined role, an include cycle (self-includes too,
    /// named as in `"admin -> ops -> admin"`), and a role holding more than
    /// [`MAX_ROLE_PERMISSIONS`] permissions after flattening.
    pub fn compile(defs: &[(String, RoleDef)]) -> Result<RoleHierarchy, (String, String)> {
        if let Some((name, _)) = defs.get(MAX_ROLES) {
            return Err((name.clone(), format!("more than {MAX_ROLES} roles defined")));
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(defs.len());
        for (i, (name, def)) in defs.iter().enumerate() {
            if !valid_role_name(name) {
                return Err((name.clone(), role_name_problem(name, "role name")));
            }
            if index.insert(name.as_str(), i).is_some() {
                return Err((name.clone(), "role defined twice".to_string()));
            }
            if let Some(p) = def.permissions.iter().find(|p| !valid_scope_token(p)) {
                return Err((name.clone(), format!("invalid permission {p:?}: {}", scope_problem(p))));
            }
        }
        let mut edges: Vec<Vec<usize>> = Vec::with_capacity(defs.len());
        for (name, def) in defs {
            let mut out = Vec::with_capacity(def.includes.len());
            for inc in &def.includes {
                match index.get(inc.as_str()) {
                    Some(&j) => out.push(j),
                    None if inc.is_empty() => return Err((name.clone(), "includes an empty role name".to_string())),
                    None => return Err((name.clone(), format!("includes undefined role {inc:?}"))),
                }
            }
            out.sort_unstable();
            out.dedup();
            edges.push(out);
        }
        let order = topological_order(defs, &edges)?;

        // Children come before parents in `order`, so every include is flat already.
        let mut flat: Vec<Vec<String>> = vec![Vec::new(); defs.len()];
        for i in order {
            let (Some((name, def)), Some(inc)) = (defs.get(i), edges.get(i)) else {
                continue;
            };
            let mut set: BTreeSet<&str> = BTreeSet::new();
            let too_many = || {
                (
                    name.clone(),
                    format!("more than {MAX_ROLE_PERMISSIONS} permissions after flattening"),
                )
            };
            for p in def
                .permissions
                .iter()
                .chain(inc.iter().filter_map(|&j| flat.get(j)).flatten())
            {
                set.insert(p.as_str());
                if set.len() > MAX_ROLE_PERMISSIONS {
                    return Err(too_many());
                }
            }
            let perms: Vec<String> = set.into_iter().map(str::to_owned).collect();
            if let Some(slot) = flat.get_mut(i) {
                *slot = perms;
            }
        }
        Ok(RoleHierarchy {
            roles: defs.iter().map(|(n, _)| n.clone()).zip(flat).collect(),
        })
    }

    /// The flattened permissions of a role, sorted (`None` if undefined).
    pub fn permissions(&self, role: &str) -> Option<&[String]> {
        self.roles.get(role).map(Vec::as_slice)
    }

    /// The number of roles defined.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// Whether no role is defined.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// Why `s` is not a valid role name (it is known not to be).
fn role_name_problem(s: &str, what: &str) -> String {
    if s.is_empty() {
        format!("empty {what}")
    } else if s.len() > MAX_NAME_BYTES {
        format!("{what} longer than {MAX_NAME_BYTES} bytes")
    } else {
        format!("{what} contains whitespace or control characters")
    }
}

/// Why `s` is not a valid scope token (it is known not to be).
fn scope_problem(s: &str) -> String {
    if s.is_empty() {
        "empty".to_string()
    } else if s.len() > MAX_NAME_BYTES {
        format!("longer than {MAX_NAME_BYTES} bytes")
    } else {
        "only printable ASCII other than space, '\"' and '\\' is allowed".to_string()
    }
}

/// Orders the roles so that every role comes after all it includes, or names
/// the first include cycle found (depth-first, in definition order).
fn topological_order(defs: &[(String, RoleDef)], edges: &[Vec<usize>]) -> Result<Vec<usize>, (String, String)> {
    let name = |i: usize| defs.get(i).map(|(n, _)| n.as_str()).unwrap_or_default();
    let mut state = vec![Visit::New; defs.len()];
    let mut order = Vec::with_capacity(defs.len());
    // The open path: (role, index of its next include to visit).
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..defs.len() {
        if state.get(root) != Some(&Visit::New) {
            continue;
        }
        if let Some(s) = state.get_mut(root) {
            *s = Visit::Open;
        }
        path.push((root, 0));
        while let Some(top) = path.last_mut() {
            let (node, next) = *top;
            let Some(&child) = edges.get(node).and_then(|e| e.get(next)) else {
                if let Some(s) = state.get_mut(node) {
                    *s = Visit::Done;
                }
                order.push(node);
                path.pop();
                continue;
            };
            top.1 += 1;
            match state.get(child) {
                Some(Visit::New) => {
                    if let Some(s) = state.get_mut(child) {
                        *s = Visit::Open;
                    }
                    path.push((child, 0));
                }
                Some(Visit::Open) => {
                    let start = path.iter().position(|&(n, _)| n == child).unwrap_or_default();
                    let cycle: Vec<&str> = path
                        .get(start..)
                        .unwrap_or_default()
                        .iter()
                        .map(|&(n, _)| name(n))
                        .chain([name(child)])
                        .collect();
                    return Err((
                        name(child).to_string(),
                        format!("include cycle: {}", cycle.join(" -> ")),
                    ));
                }
                Some(Visit::Done) | None => {}
            }
        }
    }
    Ok(order)
}

/// Where a provider's tokens carry scopes and roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSource {
    /// Claims holding scopes: a space-separated string (`scope`) or an array
    /// of strings (`scp`, Auth0 `permissions`).
    pub scope_claims: Vec<String>,
    /// The claim holding role names: a string or an array of strings.
    pub role_claim: Option<String>,
}

/// A token's effective permissions: its scopes plus the flattened permissions
/// of each of its roles, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    sorted: Vec<String>,
}

impl Grants {
    /// The grants of a token whose claims `get` looks up by name.
    ///
    /// Scope claims: a string is split on ASCII spaces only; an array's string
    /// items are taken whole; anything else is ignored. Only valid scope tokens
    /// are taken (an item holding a tab, newline, quote or non-ASCII is dropped
    /// whole, never split), at most [`MAX_TOKEN_ITEMS`] in all, repeats
    /// included. Role claim: a string or an array's string items, at most
    /// [`MAX_TOKEN_ITEMS`], each granting the role's flattened permissions;
    /// unknown roles grant nothing.
    pub fn from_claim_values<'a>(
        get: impl Fn(&str) -> Option<&'a Value>,
        source: &ScopeSource,
        roles: &RoleHierarchy,
    ) -> Grants {
        let mut all: Vec<&str> = Vec::new();
        for claim in &source.scope_claims {
            let room = MAX_TOKEN_ITEMS.saturating_sub(all.len());
            match get(claim) {
                Some(Value::String(s)) => all.extend(s.split(' ').filter(|s| valid_scope_token(s)).take(room)),
                Some(Value::Array(a)) => all.extend(
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|s| valid_scope_token(s))
                        .take(room),
                ),
                _ => {}
            }
        }
        if let Some(claim) = &source.role_claim {
            let mut names: Vec<&str> = match get(claim) {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| valid_role_name(s))
                    .take(MAX_TOKEN_ITEMS)
                    .collect(),
                _ => Vec::new(),
            };
            names.sort_unstable();
            names.dedup();
            for name in names {
                if let Some(perms) = roles.permissions(name) {
                    all.extend(perms.iter().map(String::as_str));
                }
            }
        }
        all.sort_unstable();
        all.dedup();
        Grants {
            sorted: all.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The grants of an API key: its scopes (valid scope tokens, at most
    /// [`MAX_TOKEN_ITEMS`] of them used).
    pub fn from_scopes(scopes: &[String]) -> Grants {
        let mut sorted: Vec<String> = scopes
            .iter()
            .filter(|s| valid_scope_token(s))
            .take(MAX_TOKEN_ITEMS)
            .cloned()
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        Grants { sorted }
    }

    /// Whether `permission` is granted.
    pub fn contains(&self, permission: &str) -> bool {
        self.sorted.binary_search_by(|p| p.as_str().cmp(permission)).is_ok()
    }

    /// The granted permissions, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.sorted.iter().map(String::as_str)
    }

    /// The granted permissions, in byte order, as a slice.
    pub fn as_slice(&self) -> &[String] {
        &self.sorted
    }

    /// The number of distinct permissions granted.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// A route's requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRequirement {
    /// At least one of these; an empty list is never met.
    AnyOf(Vec<String>),
    /// Every one of these; an empty list is always met.
    AllOf(Vec<String>),
}

impl ScopeRequirement {
    /// Whether `grants` satisfy the requirement.
    pub fn is_met(&self, grants: &Grants) -> bool {
        match self {
            ScopeRequirement::AnyOf(s) => s.iter().any(|p| grants.contains(p)),
            ScopeRequirement::AllOf(s) => s.iter().all(|p| grants.contains(p)),
        }
    }

    /// The scopes the route requires, space-separated in configured order, for
    /// `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`
    /// (RFC 6750 section 3: the full list, not only the missing ones).
    /// Duplicates, and anything not a valid scope token (which could break
    /// the header's quoting), are left out.
    pub fn scope_param(&self) -> String {
        let (ScopeRequirement::AnyOf(s) | ScopeRequirement::AllOf(s)) = self;
        let mut out = String::new();
        let mut seen: Vec<&str> = Vec::new();
        for p in s.iter().filter(|p| valid_scope_token(p)) {
            if seen.contains(&p.as_str()) {
                continue;
            }
            seen.push(p);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
            scope_claims: scope_claims.iter().map(|s| s.to_string()).collect(),
            role_claim: role_claim.map(str::to_string),
        }
    }

    fn grants_with(claims: Value, src: &ScopeSource, roles: &RoleHierarchy) -> Grants {
        let map: Map<String, Value> = claims.as_object().unwrap().clone();
        Grants::from_claim_values(|n| map.get(n), src, roles)
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
}
