//! What a verified token may do, and what a route requires.
//!
//! A token's [`Grants`] are its scopes (from the provider's scope claims) plus
//! the permissions of its roles, flattened through the configured
//! [`RoleHierarchy`]. A route's [`ScopeRequirement`] is met when the grants
//! hold any or all of its scopes. Claims are hostile input: only valid scope
//! tokens are taken, and the work is bounded whatever their size.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::claim_path::ClaimPath;

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
    pub scope_claims: Vec<ClaimPath>,
    /// The claim holding role names: a string or an array of strings.
    pub role_claim: Option<ClaimPath>,
}

/// A token's effective permissions: its scopes plus the flattened permissions
/// of each of its roles, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    sorted: Vec<String>,
}

impl Grants {
    /// The grants of a token whose claims `get` looks up by path.
    ///
    /// Scope claims: a string is split on ASCII spaces only; an array's string
    /// items are taken whole; anything else is ignored. Only valid scope tokens
    /// are taken (an item holding a tab, newline, quote or non-ASCII is dropped
    /// whole, never split), at most [`MAX_TOKEN_ITEMS`] in all, repeats
    /// included. Role claim: a string or an array's string items, at most
    /// [`MAX_TOKEN_ITEMS`], each granting the role's flattened permissions;
    /// unknown roles grant nothing.
    pub fn from_claim_values<'a>(
        get: impl Fn(&ClaimPath) -> Option<&'a Value>,
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
mod tests;
