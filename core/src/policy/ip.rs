//! IP allowlists and denylists, and the client address they are checked against.
//!
//! [`IpList`] holds IPv4 and IPv6 networks; [`IpPolicy`] combines an allow and
//! a deny list. [`client_address`] establishes the address to check: the
//! downstream peer, or an X-Forwarded-For entry written by a trusted proxy,
//! following Envoy's `xff_num_trusted_hops` semantics. Every address is
//! canonicalised first (IPv4-mapped IPv6 becomes IPv4), so `::ffff:10.1.2.3`
//! and `10.1.2.3` are the same client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The longest X-Forwarded-For value read, in bytes; a longer one is malformed.
pub const MAX_XFF_BYTES: usize = 8192;

/// The most X-Forwarded-For entries considered, counted from the right after
/// Envoy's own entry; more trusted hops than this can never be satisfied.
pub const MAX_XFF_ENTRIES: usize = 64;

/// A list of networks (IPv4 and IPv6). A bare address is a /32 or /128.
///
/// IPv4-mapped IPv6 entries (`::ffff:a.b.c.d/96+n`) are stored as their IPv4
/// network. An IPv6 entry never matches an IPv4 or IPv4-mapped address, even
/// one as wide as `::/0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl IpList {
    /// Parses entries like `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`, `::1`.
    ///
    /// Refuses empty entries, whitespace, networks with host bits set, prefix
    /// lengths out of range, zone ids, brackets, ports and anything else that
    /// is not an address. On error returns the index of the first bad entry
    /// and a message quoting it.
    pub fn parse(entries: &[String]) -> Result<IpList, (usize, String)> {
        let mut list = IpList::default();
        for (i, entry) in entries.iter().enumerate() {
            match parse_net(entry).map_err(|m| (i, m))? {
                IpNet::V4(n) => list.v4.push(n),
                IpNet::V6(n) => list.v6.push(n),
            }
        }
        Ok(list)
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether a network in the list contains `addr` (canonicalised first).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }
}

/// Parses one list entry into its canonical network.
fn parse_net(entry: &str) -> Result<IpNet, String> {
    if entry.is_empty() {
        return Err("empty entry".to_string());
    }
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{entry:?} contains whitespace or control characters"));
    }
    if entry.contains('%') {
        return Err(format!("{entry:?}: zone ids are not allowed"));
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let addr: IpAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) if parse_host(addr).is_some() => {
            return Err(format!("{entry:?}: ports and brackets are not allowed"));
        }
        Err(_) => return Err(format!("{entry:?} is not an IP address or network")),
    };
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) => match parse_prefix(p) {
            Some(len) if len <= max => len,
            Some(len) => return Err(format!("{entry:?}: prefix length {len} is longer than {max}")),
            None => return Err(format!("{entry:?}: the prefix length must be a number from 0 to {max}")),
        },
    };
    let net = IpNet::new(addr, len).map_err(|_| format!("{entry:?}: prefix length {len} is longer than {max}"))?;
    let network = net.trunc();
    if network != net {
        return Err(format!("{entry:?} has host bits set (the network is {network})"));
    }
    // A mapped network with a prefix below 96 always has host bits set, so
    // every mapped entry that gets here has `len >= 96`.
    if let IpNet::V6(n) = net {
        if let (Some(v4), Some(len4)) = (n.addr().to_ipv4_mapped(), len.checked_sub(96)) {
            if let Ok(n4) = Ipv4Net::new(v4, len4) {
                return Ok(IpNet::V4(n4));
            }
        }
    }
    Ok(net)
}

/// A prefix length: 1 to 3 ASCII digits, no sign, no leading zero.
fn parse_prefix(p: &str) -> Option<u8> {
    let ok = matches!(p.len(), 1..=3) && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
    if ok {
        p.parse().ok()
    } else {
        None
    }
}

/// Allow/deny policy: deny wins; a non-empty allow list must contain the
/// address; an empty allow list allows everything not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpPolicy {
    /// If non-empty, only these networks are allowed.
    pub allow: IpList,
    /// These networks are refused, whatever `allow` says.
    pub deny: IpList,
    /// Proxies trusted in front of Envoy, for [`client_address`].
    pub trusted_hops: u8,
    /// Whether Envoy appended its own X-Forwarded-For entry (HCM
    /// `use_remote_address: true`), for [`client_address`].
    pub envoy_appends: bool,
}

impl IpPolicy {
    /// Whether the policy lets `addr` through.
    pub fn permits(&self, addr: IpAddr) -> bool {
        !self.deny.contains(addr) && (self.allow.is_empty() || self.allow.contains(addr))
    }
}

/// Why the client address could not be established. Every case fails
/// closed: the caller refuses the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddrError {
    /// Envoy gave no downstream peer address.
    NoPeer,
    /// The downstream peer address is not an IP address (with optional port).
    BadPeer,
    /// Hops are trusted but there is no X-Forwarded-For value, or it is blank.
    MissingForwardedFor,
    /// X-Forwarded-For has fewer entries than trusted hops.
    TooFewHops,
    /// An entry written by a trusted proxy is not an IP address, or the value
    /// is longer than [`MAX_XFF_BYTES`].
    MalformedEntry,
    /// The rightmost entry is not the peer, so Envoy did not append it (the
    /// HCM is not configured as `envoy_appends_xff` says).
    NotAppendedByEnvoy,
    /// `source.address` has port 0: Envoy took it from a request header
    /// (X-Forwarded-For), not from the connection, and the rule
    /// (`trusted_hops: 0`) would check an address the client may have written.
    PeerFromHeader,
    /// `source.address` came from a request header (port 0), so Envoy did not
    /// take the peer from the connection, while `envoy_appends_xff: true`
    /// says it appended the connection's address: the HCM is not configured
    /// as the filter is told.
    AppendsButPeerFromHeader,
}

impl ClientAddrError {
    /// A short human description, safe as an HTTP header value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClientAddrError::NoPeer => "no downstream peer address",
            ClientAddrError::BadPeer => "unparsable downstream peer address",
            ClientAddrError::MissingForwardedFor => "missing X-Forwarded-For header",
            ClientAddrError::TooFewHops => "fewer X-Forwarded-For entries than trusted hops",
            ClientAddrError::MalformedEntry => "malformed X-Forwarded-For entry",
            ClientAddrError::NotAppendedByEnvoy => "the last X-Forwarded-For entry was not appended by Envoy",
            ClientAddrError::PeerFromHeader => "the peer address came from X-Forwarded-For, not from the connection",
            ClientAddrError::AppendsButPeerFromHeader => {
                "the peer address came from X-Forwarded-For, but envoy_appends_xff says Envoy appended it"
            }
        }
    }

    /// For a refusal that only a mis-set HTTP connection manager (or a
    /// wrong `envoy_appends_xff`) causes, what the operator should change:
    /// logged once, since every request is refused the same way until the
    /// configuration changes. `None` for what a client's request causes.
    pub fn operator_hint(&self) -> Option<&'static str> {
        match self {
            ClientAddrError::PeerFromHeader => Some(
                "edge-auth: a client address check refused a request because Envoy took source.address from \
                 X-Forwarded-For instead of the connection (the HTTP connection manager has use_remote_address: \
                 false, xff_num_trusted_hops above 0, or an original_ip_detection_extensions entry), and a rule \
                 with trusted_hops 0 would check an address the client may have written. Set use_remote_address: \
                 true with xff_num_trusted_hops 0 and no original IP detection extension, or count the proxies in \
                 front of Envoy with the rule's trusted_hops (and envoy_appends_xff: false when use_remote_address \
                 is false). Until then such requests get 403 ip_not_allowed (logged once per worker).",
            ),
            ClientAddrError::AppendsButPeerFromHeader => Some(
                "edge-auth: a client address check refused a request because envoy_appends_xff is true but Envoy \
                 took source.address from X-Forwarded-For instead of the connection (the HTTP connection manager \
                 has use_remote_address: false, xff_num_trusted_hops above 0, or an original_ip_detection_extensions \
                 entry), so the last X-Forwarded-For entry is not one Envoy appended. With use_remote_address: false \
                 set envoy_appends_xff: false; with use_remote_address: true leave xff_num_trusted_hops at 0 and add \
                 no original IP detection extension. Until then such requests get 403 ip_not_allowed (logged once \
                 per worker).",
            ),
            ClientAddrError::NotAppendedByEnvoy => Some(
                "edge-auth: a client address check refused a request because envoy_appends_xff is true but the last \
                 X-Forwarded-For entry is not the peer address, so Envoy did not append it (the HTTP connection \
                 manager has skip_xff_append: true or use_remote_address: false). Set envoy_appends_xff: false for \
                 such a connection manager. Until then such requests get 403 ip_not_allowed (logged once per \
                 worker).",
            ),
            ClientAddrError::NoPeer
            | ClientAddrError::BadPeer
            | ClientAddrError::MissingForwardedFor
            | ClientAddrError::TooFewHops
            | ClientAddrError::MalformedEntry => None,
        }
    }
}

impl std::fmt::Display for ClientAddrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ClientAddrError {}

/// The client address for a route that trusts `trusted_hops` proxies in
/// front of Envoy, canonicalised (IPv4-mapped IPv6 becomes IPv4).
///
/// `peer` is Envoy's `source.address` (`127.0.0.1:54321`, `[::1]:54321`, or
/// a bare address). Port 0 there means Envoy did not take the address from
/// the connection (no TCP peer has port 0) but from a request header:
/// X-Forwarded-For under `use_remote_address: false`, `xff_num_trusted_hops`
/// or an original IP detection extension. Such a peer is never the client of
/// a rule without trusted hops ([`ClientAddrError::PeerFromHeader`]), nor
/// compatible with `envoy_appends`
/// ([`ClientAddrError::AppendsButPeerFromHeader`]). With no trusted hops the
/// client is the peer and `xff` is never read. Otherwise `xff` is the X-Forwarded-For value as the filter
/// sees it (several headers joined with `,`). With `envoy_appends` (the HCM
/// has `use_remote_address: true`), Envoy has appended exactly one entry: the
/// peer, or its own local address when the peer is a loopback address. That
/// entry is dropped (and must equal a non-loopback peer), so what remains is
/// the header as it arrived. The client is the entry `trusted_hops` from the
/// right of it (1 = the rightmost), which is Envoy's own
/// `xff_num_trusted_hops` rule. Entries in that trusted range must each be
/// an IP address (optionally bracketed, optionally with a port); entries
/// further left are client-controlled and never examined. There is no
/// fallback to the peer or to the leftmost entry.
pub fn client_address(
    peer: Option<&str>,
    xff: Option<&str>,
    trusted_hops: u8,
    envoy_appends: bool,
) -> Result<IpAddr, ClientAddrError> {
    let peer = peer.ok_or(ClientAddrError::NoPeer)?;
    let from_header = peer_port(peer) == Some(0);
    let peer = parse_host(peer).ok_or(ClientAddrError::BadPeer)?.to_canonical();
    if trusted_hops == 0 {
        return if from_header {
            Err(ClientAddrError::PeerFromHeader)
        } else {
            Ok(peer)
        };
    }
    if envoy_appends && from_header {
        return Err(ClientAddrError::AppendsButPeerFromHeader);
    }
    let xff = xff.ok_or(ClientAddrError::MissingForwardedFor)?;
    if xff.len() > MAX_XFF_BYTES {
        return Err(ClientAddrError::MalformedEntry);
    }
    if trim(xff).is_empty() {
        return Err(ClientAddrError::MissingForwardedFor);
    }
    let hops = usize::from(trusted_hops);
    if hops > MAX_XFF_ENTRIES {
        return Err(ClientAddrError::TooFewHops);
    }
    let mut entries = xff.rsplit(',').map(trim);
    if envoy_appends {
        let own = entries
            .next()
            .and_then(parse_host)
            .ok_or(ClientAddrError::MalformedEntry)?;
        if !peer.is_loopback() && own.to_canonical() != peer {
            return Err(ClientAddrError::NotAppendedByEnvoy);
        }
    }
    let mut seen = 0;
    for entry in entries {
        let addr = parse_host(entry).ok_or(ClientAddrError::MalformedEntry)?;
        seen += 1;
        if seen == hops {
            return Ok(addr.to_canonical());
        }
    }
    Err(ClientAddrError::TooFewHops)
}

/// Strips spaces and tabs around an X-Forwarded-For entry.
fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// An address in one of the forms proxies write: `IPv4`, `IPv6`, `[IPv6]`,
/// `IPv4:port` or `[IPv6]:port`. Zone ids are refused.
fn parse_host(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(valid_port) {
            return None;
        }
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    match s.split_once(':') {
        Some((host, port)) if !port.contains(':') => {
            if !valid_port(port) {
                return None;
            }
            host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
        _ => s.parse().ok(),
    }
}

/// The port of a peer address [`parse_host`] accepts (`1.2.3.4:80`,
/// `[::1]:80`), if it has one.
fn peer_port(s: &str) -> Option<u16> {
    let port = match s.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?.1,
        None => match s.split_once(':') {
            Some((_, port)) if !port.contains(':') => port,
            _ => return None,
        },
    };
    valid_port(port).then(|| port.parse().ok()).flatten()
}

/// A decimal port: 1 to 5 ASCII digits, at most 65535.
fn valid_port(p: &str) -> bool {
    matches!(p.len(), 1..=5) && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests;
