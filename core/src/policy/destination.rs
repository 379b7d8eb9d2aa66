//! Rules bound to where a request goes: the host it names (`:authority`)
//! and the route Envoy selected for it (the route's name and metadata).
//!
//! [`Authority::parse`] reads an `:authority` value into one normalised host
//! (lower case, no port, no trailing dot) and refuses anything two parsers
//! could read as different hosts: userinfo, a bad or empty port, an
//! unbracketed or zoned IPv6 address, empty labels, characters outside
//! letters, digits, `-` and `_`, and numeric hosts that are not a plain
//! dotted-quad IPv4 address (`127.1`, `0x7f.0.0.1`, `010.0.0.1`).
//! [`HostPattern`]s from configuration match a host exactly or by a
//! leftmost wildcard label, which stands for one label or more.
//! [`DestinationMatch`] is a rule's host and route conditions;
//! [`Destination`] the facts the shell gathered for them, and only those
//! some rule needs ([`Needs`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest `:authority` accepted, in bytes: a 253-byte name, a port, brackets.
pub const MAX_AUTHORITY_BYTES: usize = 262;
const MAX_NAME_BYTES: usize = 253;
const MAX_LABEL_BYTES: usize = 63;

/// The host a request names, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name: lower case, without the trailing dot.
    Name(String),
    /// An IPv4 address or a bracketed IPv6 address.
    Ip(IpAddr),
}

/// Why an authority is refused (`400 bad_authority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    Missing,
    Conflicting,
    TooLong,
    Userinfo,
    BadPort,
    BadHost,
}

impl AuthorityError {
    /// The `error_description` of the refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityError::Missing => "the request has no host",
            AuthorityError::Conflicting => "the request names more than one host",
            AuthorityError::TooLong => "host too long",
            AuthorityError::Userinfo => "userinfo in host",
            AuthorityError::BadPort => "invalid port in host",
            AuthorityError::BadHost => "invalid host name",
        }
    }
}

/// An `:authority` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: Host,
    pub port: Option<u16>,
}

impl Authority {
    /// Parses `host[:port]` (RFC 3986 section 3.2 without userinfo). A single
    /// trailing dot is dropped (`example.com.` is `example.com`); letters are
    /// lower-cased.
    pub fn parse(raw: &str) -> Result<Authority, AuthorityError> {
        if raw.is_empty() {
            return Err(AuthorityError::Missing);
        }
        if raw.len() > MAX_AUTHORITY_BYTES {
            return Err(AuthorityError::TooLong);
        }
        if raw.contains('@') {
            return Err(AuthorityError::Userinfo);
        }
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or(AuthorityError::BadHost)?;
            // std's parser takes only the address: no zone (`%25eth0`), no IPvFuture
            let ip: Ipv6Addr = inside.parse().map_err(|_| AuthorityError::BadHost)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(AuthorityError::BadHost)?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (name, port) = match raw.split_once(':') {
                None => (raw, None),
                // a second ':' is an unbracketed IPv6 address, or garbage
                Some((_, p)) if p.contains(':') => return Err(AuthorityError::BadHost),
                Some((n, p)) => (n, Some(p)),
            };
            (parse_name(name)?, port)
        };
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        Ok(Authority { host, port })
    }
}

/// 1 to 5 digits, at most 65535. An empty port (`example.com:`) is refused.
fn parse_port(p: &str) -> Result<u16, AuthorityError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::BadPort);
    }
    p.parse().map_err(|_| AuthorityError::BadPort)
}

/// A host name or an IPv4 address, without port or brackets.
fn parse_name(name: &str) -> Result<Host, AuthorityError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(AuthorityError::BadHost);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(AuthorityError::TooLong);
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_BYTES
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthorityError::BadHost);
        }
        last = label;
    }
    // A name that ends in a number is an IPv4 address to a URL parser
    // (WHATWG), in any of its spellings: only the plain dotted quad is taken.
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 1 && (last.starts_with("0x") || last.starts_with("0X")));
    if numeric {
        let ip: Ipv4Addr = name.parse().map_err(|_| AuthorityError::BadHost)?;
        if ip.to_string() != name {
            return Err(AuthorityError::BadHost);
        }
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// A configured host: an exact name or address, or `*.` and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Host),
    /// `*.example.com`, kept as `.example.com`: a name that ends with it
    /// after one label or more (`a.example.com`, `a.b.example.com`, not
    /// `example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// A pattern as configured: a host without port, brackets around an
    /// IPv6 address, no trailing dot; `*` only as the whole leftmost label.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        if let Some(rest) = s.strip_prefix("*.") {
            return match parse_name(rest) {
                Ok(Host::Name(n)) if !rest.ends_with('.') && !rest.contains('*') => {
                    Ok(HostPattern::Wildcard(format!(".{n}")))
                }
                _ => Err(format!("\"{s}\": after \"*.\" give a host name (\"*.example.com\")")),
            };
        }
        if s.contains('*') {
            return Err(format!(
                "\"{s}\": a wildcard is only \"*.\" in front of a name (\"*.example.com\")"
            ));
        }
        if s.ends_with('.') {
            return Err(format!("\"{s}\": give the host without its trailing dot"));
        }
        match Authority::parse(s) {
            Ok(Authority { host, port: None }) => Ok(HostPattern::Exact(host)),
            Ok(_) => Err(format!("\"{s}\": hosts match any port; give the host without one")),
            Err(e) => Err(format!("\"{s}\": {}", e.as_str())),
        }
    }

    pub fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Wildcard(suffix), Host::Name(n)) => n.len() > suffix.len() && n.ends_with(suffix.as_str()),
            (HostPattern::Wildcard(_), Host::Ip(_)) => false,
        }
    }
}

/// A value of the selected route's metadata: `filter_metadata[filter][key]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataKey {
    pub filter: String,
    pub key: String,
}

/// A rule's conditions on where the request goes (all must hold; an absent one always does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationMatch {
    /// The request's host must match one of these.
    pub hosts: Option<Vec<HostPattern>>,
    /// The name of the route Envoy selected must equal this.
    pub route_name: Option<String>,
    /// The selected route's metadata value at [`Needs::metadata`]`[.0]` must equal `.1`.
    pub route_metadata: Option<(usize, String)>,
}

impl DestinationMatch {
    pub fn matches(&self, d: &Destination) -> bool {
        let host = match (&self.hosts, &d.host) {
            (None, _) => true,
            (Some(list), Some(h)) => list.iter().any(|p| p.matches(h)),
            (Some(_), None) => false,
        };
        host && self
            .route_name
            .as_ref()
            .is_none_or(|n| d.route_name.as_deref() == Some(n.as_str()))
            && self
                .route_metadata
                .as_ref()
                .is_none_or(|(i, v)| d.metadata.get(*i).and_then(Option::as_deref) == Some(v.as_str()))
    }
}

/// Which facts of the destination some rule reads, decided at configure
/// time: nothing is gathered that no rule needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub host: bool,
    pub route_name: bool,
    /// The distinct metadata values the rules compare, in first-use order.
    pub metadata: Vec<MetadataKey>,
}

impl Needs {
    /// The index of `key` in [`Needs::metadata`], added if new.
    pub fn metadata_index(&mut self, key: MetadataKey) -> usize {
        match self.metadata.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                self.metadata.push(key);
                self.metadata.len() - 1
            }
        }
    }

    /// Whether any fact is needed at all.
    pub fn any(&self) -> bool {
        self.host || self.route_name || !self.metadata.is_empty()
    }
}

/// The gathered facts: `None` where not needed or not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    pub host: Option<Host>,
    pub route_name: Option<String>,
    /// One value per [`Needs::metadata`] entry.
    pub metadata: Vec<Option<String>>,
}

/// The request's one host from its `:authority` values and any `host`
/// values (HTTP/2 lets a client send both). Exactly one `:authority`
/// (or, without one, one `host`) is taken, and a `host` that is not the
/// same text, ignoring case, is a conflict: the upstream might read either.
pub fn request_host(authorities: &[String], hosts: &[String]) -> Result<Host, AuthorityError> {
    let primary = match (authorities, hosts) {
        ([a], _) => a,
        ([], [h, ..]) => h,
        ([], []) => return Err(AuthorityError::Missing),
        _ => return Err(AuthorityError::Conflicting),
    };
    if hosts.iter().any(|h| !h.eq_ignore_ascii_case(primary)) {
        return Err(AuthorityError::Conflicting);
    }
    Authority::parse(primary).map(|a| a.host)
}

#[cfg(test)]
mod tests;
