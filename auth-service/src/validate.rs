//! Input validation. Origins, address lists and scopes are checked with the
//! edge's own parsers (edge-auth-core), so the service never stores a value the
//! edge would refuse.

use edge_auth_core::ip::IpList;
use edge_auth_core::origin::OriginPattern;
use edge_auth_core::scopes::valid_scope_token;

use crate::error::{Error, Result};

/// The most entries in one list (scopes, origins, addresses).
pub const MAX_LIST: usize = 100;
/// The longest subject, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// A tenant name: 1 to 63 of `a-z 0-9 -`, starting with a letter or digit.
pub fn tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_request(
            "tenant name must be 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'",
        ))
    }
}

/// A subject: 1 to 256 bytes of printable ASCII without space, `"` or `\`.
pub fn subject(s: &str) -> Result<()> {
    if !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES && s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
    {
        Ok(())
    } else {
        Err(Error::invalid_request(
            "subject must be 1 to 256 printable ASCII characters without space, '\"' or '\\'",
        ))
    }
}

/// Scopes: valid RFC 6749 scope tokens, at most [`MAX_LIST`]; duplicates removed, order kept.
pub fn scopes(list: &[String]) -> Result<Vec<String>> {
    tokens(list, "scope")
}

/// Audiences (a machine client's, its tokens' `aud`): 1 to [`MAX_LIST`], each as a scope
/// token (printable ASCII without space, `"` or `\`, as the edge's `audiences` hold them);
/// duplicates removed, order kept (the first is the default).
pub fn audiences(list: &[String]) -> Result<Vec<String>> {
    if list.is_empty() {
        return Err(Error::invalid_request("give at least one audience"));
    }
    tokens(list, "audience")
}

/// Role names: as scopes (what the edge accepts as a role name, and no `"` or `\`).
pub fn roles(list: &[String]) -> Result<Vec<String>> {
    tokens(list, "role")
}

fn tokens(list: &[String], what: &str) -> Result<Vec<String>> {
    if list.len() > MAX_LIST {
        return Err(Error::invalid_request(format!("at most {MAX_LIST} {what}s")));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        if !valid_scope_token(s) {
            return Err(Error::invalid_request(format!(
                "invalid {what} {s:?}: a {what} is 1 to 256 printable ASCII characters without space, '\"' or '\\'"
            )));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// Allowed origins, normalised as the edge normalises them.
pub fn origins(list: &[String]) -> Result<Vec<String>> {
    if list.len() > MAX_LIST {
        return Err(Error::invalid_request(format!("at most {MAX_LIST} allowed origins")));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for o in list {
        let p = OriginPattern::parse(o).map_err(|e| Error::invalid_request(format!("invalid origin {o:?}: {e}")))?;
        let s = p.as_str().to_owned();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// An IP allowlist: addresses and CIDR networks as the edge accepts them.
pub fn ip_allowlist(list: &[String]) -> Result<Vec<String>> {
    if list.len() > MAX_LIST {
        return Err(Error::invalid_request(format!(
            "at most {MAX_LIST} IP allowlist entries"
        )));
    }
    IpList::parse(list).map_err(|(_, e)| Error::invalid_request(format!("invalid IP allowlist entry: {e}")))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for e in list {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names() {
        assert!(tenant_name("acme").is_ok());
        assert!(tenant_name("acme-2").is_ok());
        for bad in ["", "-acme", "Acme", "ac me", "ac/me", &"a".repeat(64)] {
            assert!(tenant_name(bad).is_err(), "{bad}");
        }
        assert!(subject("user-123").is_ok());
        assert!(subject("").is_err());
        assert!(subject("a b").is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(scopes(&v(&["a:b", "a:b", "c"])).unwrap(), v(&["a:b", "c"]));
        assert!(scopes(&v(&["a b"])).is_err());
        assert!(scopes(&v(&[""])).is_err());
        assert_eq!(
            roles(&v(&["editor", "viewer", "editor"])).unwrap(),
            v(&["editor", "viewer"])
        );
        for bad in ["", "a b", "a\"b", "a\\b", "caf\u{e9}", "tab\t"] {
            assert!(roles(&v(&[bad])).is_err(), "{bad:?}");
        }
        assert!(roles(&vec!["r".to_string(); 101]).is_err());
        assert!(ip_allowlist(&v(&["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"])).is_ok());
        assert!(ip_allowlist(&v(&["203.0.113.1/24"])).is_err());
        assert!(ip_allowlist(&v(&["not-an-ip"])).is_err());
        assert!(ip_allowlist(&v(&["10.0.0.0/33"])).is_err());
        assert_eq!(
            origins(&v(&["https://App.Acme.example"])).unwrap(),
            v(&["https://app.acme.example"])
        );
        assert!(origins(&v(&["*"])).is_err());
        assert!(origins(&v(&["https://a.example/path"])).is_err());
        assert!(origins(&v(&["ftp//x"])).is_err());
    }
}
